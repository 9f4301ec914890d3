// A/B probe of the software-adapter (llvmpipe) flash forward, B=1 H=4 L=1024 E=64 f32 by default: the forward paths
// (VARIANTS, comma-separated: default | rows | registers | staged) and TF.js-WebGPU 4.22's unfused attention (the
// CLI's tfjsAttention: matMul → ·scale → softmax → matMul) INTERLEAVED over ROUNDS rounds in one process, one synced
// call each per round (after one warm-up call of each); prints each one's median, min, max and the ratios of medians.
//   node apps/bench/gpu/lvp_probe.mjs     (SHAPE='[B,H,L,E]', ROUNDS=7, CAUSAL=1)
import * as T from "@webattn/core-tensor";
import { scaledDotProductAttention, sdpaKernel } from "@webattn/kernels-webgpu";
import { setFlashForwardPath, setFlashRegisterTile } from "@webattn/kernels-webgpu/internal";
import { execSync } from "node:child_process";
import { tfjsAttention, tfjsOn, tfjsSync } from "../dist/peers/tfjs.js";

const dev = await T.getDevice({ kind: "webgpu" });
const tf = await tfjsOn(dev);
const [B, H, L, E] = JSON.parse(process.env.SHAPE ?? "[1,4,1024,64]");
const causal = process.env.CAUSAL === "1";
const ROUNDS = Number(process.env.ROUNDS ?? 7);
const VARIANTS = (process.env.VARIANTS ?? "default,rows").split(",");
const load = () => execSync("cat /proc/loadavg").toString().split(" ").slice(0, 3).join(" ");
console.log(`device ${dev.info.adapter} (${dev.info.software ? "software" : "hardware"}) · tfjs ${tf.version_core} · B=${B} H=${H} L=${L} E=${E}${causal ? " causal" : ""} · load ${load()}`);
const mk = (seed) => T.randn([B, H, L, E], { seed, device: dev });
const [q, k, v] = [mk(1), mk(2), mk(3)];
const [tq, tk, tv] = await Promise.all([q, k, v].map(async (t) => tf.tensor4d(await t.toArray(), [B, H, L, E])));
// default | registers | staged | g<TR>x<TC>[r<N>][ln][nopf][kv|sep][k<N>][ld4][qr] (a forced register grid, as fwd_probe.mjs)
function setPath(x) {
  setFlashRegisterTile(null);
  if (x === "default" || x === "registers" || x === "staged") return setFlashForwardPath(x === "default" ? "auto" : x);
  const m = /^g(\d+)x(\d+)(?:r(\d))?(ln)?(nopf)?(kv|sep)?(?:k(\d))?(ld4)?(qr)?$/.exec(x);
  if (!m) throw new Error(`unknown variant ${x}`);
  setFlashForwardPath("registers");
  setFlashRegisterTile({ tr: +m[1], tc: +m[2], ...(m[3] ? { rv: +m[3] } : {}), ...(m[4] ? { lean: true } : {}), ...(m[5] ? { prefetch: false } : {}), ...(m[6] ? { shared: m[6] === "kv" } : {}), ...(m[7] ? { kw: +m[7] } : {}), ...(m[8] ? { ld4: true } : {}), ...(m[9] ? { qr: 0 } : {}) });
}
const fwd = () => T.noGrad(() => sdpaKernel(["flash"], () => scaledDotProductAttention(q, k, v, { isCausal: causal })));
const runs = {};
let ref = null;
for (const x of VARIANTS) {
  setPath(x);
  const t0 = performance.now();
  const o = fwd();
  const a = await o.toArray();
  o.dispose();
  if (!ref) {
    const r = tfjsAttention(tq, tk, tv, causal);
    ref = await r.data();
    r.dispose();
  }
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - ref[i]));
  console.log(`${x}: first call ${Math.round(performance.now() - t0)} ms (compile), max |diff| vs TF.js ${d.toExponential(2)}`);
  runs[x] = async () => {
    setPath(x);
    fwd().dispose();
    await dev.sync();
  };
}
runs.tfjs = async () => {
  const t = tfjsAttention(tq, tk, tv, causal);
  await tfjsSync(t);
  t.dispose();
};
await runs.tfjs();
const times = Object.fromEntries(Object.keys(runs).map((x) => [x, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const x of Object.keys(runs)) {
    const t0 = performance.now();
    await runs[x]();
    times[x].push(performance.now() - t0);
  }
}
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const tfMed = med(times.tfjs);
for (const [x, ts] of Object.entries(times)) {
  const m = med(ts);
  console.log(`${x.padEnd(10)} median ${m.toFixed(1)} ms  min ${Math.min(...ts).toFixed(1)}  max ${Math.max(...ts).toFixed(1)}  tfjs/this ${(tfMed / m).toFixed(2)}  [${ts.map((t) => t.toFixed(0)).join(" ")}]`);
}
console.log(`load ${load()}`);
setPath("default");
dev.destroy();
process.exit(0);
