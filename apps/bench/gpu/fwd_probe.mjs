// A/B probe of the f32 register forward (flash attention, no mask): per shape, the adapter's default forward
// ("default") and forced variants of the register forward, INTERLEAVED over ROUNDS rounds (default, variant 1, …,
// TF.js, then again), each round a median of batches; the row gives each one's median over the rounds, its spread
// (max/min over rounds) and TF.js-WebGPU 4.22's unfused attention (matMul → softmax → matMul) measured in the same
// process on the same device. Every variant's output is checked against the default's first (max |diff|).
//   node apps/bench/gpu/fwd_probe.mjs --json out.json
// Variants (VARIANTS, comma-separated; VARIANTS_E<E> per head dim, VARIANTS_L<L> per length): default | g<TR>x<TC>[r<N>][q<N>][pd][ln][nopf][kv][k<N>]
//   (rv N: 4·N rows per thread, Q·Kᵀ head-dim chunks of N, padded staging rows, lean NaN-flag exchange, prefetch off, K/V in one buffer, 4·N keys per thread);
//   a trailing `sp` compiles the head dims as literals (setFlashSpecialization('always'), e.g. defaultsp).
// FWD_SHAPES='[[B,H,L,E],…]' (default: the five published f32 rows; QUICK=1: llvmpipe's B=1 H=4 L=1024 E=64).
// ROUNDS (default 3; QUICK 5), DEADLINE_S (seconds this script may spend), TFJS=0 skips TF.js.
// Where the adapter has timestamp-query, each variant's GPU time per call (<variant>_gpu_ms: the kernels alone, from 10 profiled
// calls; the wall-clock <variant>_ms also holds the host's and the sync's share) and the default's kernel list; GPU_TS=0 skips it.
import * as T from "@webattn/core-tensor";
import { profile, scaledDotProductAttention, sdpaKernel } from "@webattn/kernels-webgpu";
import { setFlashForwardPath, setFlashRegisterTile, setFlashSpecialization } from "@webattn/kernels-webgpu/internal";
import { QUICK, errText, median, opt, resultFile, secondsLeft, timeBatches } from "./common.mjs";

const dev = await T.getDevice({ kind: "webgpu" });
let tf = null;
if (process.env.TFJS !== "0") {
  try {
    const { tfjsOn } = await import("../dist/peers/tfjs.js");
    tf = await tfjsOn(dev);
  } catch (e) {
    console.log(`tfjs not loaded: ${errText(e)}`);
  }
}
const out = resultFile(opt("--json", null), { probe: "fwd", date: new Date().toISOString(), device: dev.info, tfjs: tf?.version_core ?? null });
console.log(`device ${dev.info.adapter} (${dev.info.software ? "software" : "hardware"}), tfjs ${tf?.version_core ?? "-"}`);
const SHAPES = process.env.FWD_SHAPES
  ? JSON.parse(process.env.FWD_SHAPES)
  : QUICK
    ? [[1, 4, 1024, 64]]
    : [[128, 16, 196, 64], [8, 16, 1024, 64], [1, 16, 4096, 64], [8, 16, 1024, 128], [8, 16, 4096, 64]];
const VARIANTS = (process.env.VARIANTS ?? "default,g16x8pd,g16x8pdln").split(",");
const ROUNDS = Number(process.env.ROUNDS ?? (QUICK ? 5 : 3));
const REPS = QUICK ? 1 : 3;
const BUDGET_MS = QUICK ? 1500 : 300;

/** Forces one variant of the forward (see the header). */
function setVariant(v) {
  setFlashForwardPath("auto");
  setFlashRegisterTile(null);
  setFlashSpecialization(v.endsWith("sp") ? "always" : "auto");
  v = v.replace(/sp$/, "");
  if (v === "default") return;
  const m = /^g(\d+)x(\d+)(?:r(\d))?(?:q(\d+))?(pd)?(ln)?(nopf)?(kv)?(?:k(\d))?$/.exec(v);
  if (!m) throw new Error(`unknown variant ${v}`);
  setFlashForwardPath("registers");
  setFlashRegisterTile({
    tr: Number(m[1]),
    tc: Number(m[2]),
    ...(m[3] ? { rv: Number(m[3]) } : {}),
    ...(m[4] ? { qk: Number(m[4]) } : {}),
    ...(m[5] ? { pad: true } : {}),
    ...(m[6] ? { lean: true } : {}),
    ...(m[7] ? { prefetch: false } : {}),
    ...(m[8] ? { shared: true } : {}),
    ...(m[9] ? { kw: Number(m[9]) } : {}),
  });
}

for (const [B, H, L, E] of SHAPES) {
  if (secondsLeft() < 15) break;
  const flop = 4 * B * H * L * L * E;
  const row = { B, H, L, E, dtype: "f32", adapter: dev.info.adapter };
  const [q, k, v] = [1, 2, 3].map((seed) => T.randn([B, H, L, E], { seed, device: dev }));
  const variants = (process.env[`VARIANTS_L${L}`] ?? process.env[`VARIANTS_E${E}`] ?? VARIANTS.join(",")).split(",");
  const fwd = () => T.noGrad(() => sdpaKernel(["flash"], () => scaledDotProductAttention(q, k, v)));
  // TF.js, unless L×L scores exceed one binding
  const maxBinding = Math.min(dev.limits.maxStorageBufferBindingSize ?? Infinity, dev.limits.maxBufferSize ?? Infinity);
  let tfRun = null;
  if (tf && B * H * L * L * 4 <= maxBinding) {
    const [tq, tk, tv] = [3, 4, 5].map((s) => tf.randomNormal([B * H, L, E], 0, 1, "float32", s));
    const att = () => tf.tidy(() => tf.matMul(tf.softmax(tf.mul(tf.matMul(tq, tk, false, true), 1 / Math.sqrt(E))), tv));
    tfRun = {
      batch: async (kk) => {
        const b0 = performance.now();
        let last = null;
        for (let i = 0; i < kk; i++) { last?.dispose(); last = att(); }
        const one = tf.slice(tf.reshape(last, [-1]), 0, 1);
        await one.data();
        one.dispose();
        last.dispose();
        return (performance.now() - b0) / kk;
      },
      dispose: () => [tq, tk, tv].forEach((t) => t.dispose()),
    };
  } else if (tf) row.tfjs_skipped = "L×L scores over the largest binding";
  // first call of each variant: compile time and agreement with the default's output
  let ref = null;
  const live = [];
  for (const x of variants) {
    if (secondsLeft() < 10) break;
    try {
      setVariant(x);
      const t0 = performance.now();
      const o = fwd();
      const a = await o.toArray();
      o.dispose();
      row[`${x}_first_ms`] = Math.round(performance.now() - t0);
      if (!ref) ref = a;
      else {
        let d = 0;
        for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - ref[i]));
        row[`${x}_maxdiff`] = d;
      }
      live.push(x);
    } catch (e) {
      row[`${x}_error`] = errText(e);
    }
  }
  const times = Object.fromEntries([...live, ...(tfRun ? ["tfjs"] : [])].map((x) => [x, []]));
  for (let r = 0; r < ROUNDS && secondsLeft() > 8; r++) {
    for (const x of Object.keys(times)) {
      try {
        if (x === "tfjs") times[x].push((await timeBatches(tfRun.batch, REPS, BUDGET_MS)).ms);
        else {
          setVariant(x);
          const batch = async (kk) => {
            const b0 = performance.now();
            for (let i = 0; i < kk; i++) T.tidy(() => void fwd());
            await dev.sync();
            return (performance.now() - b0) / kk;
          };
          times[x].push((await timeBatches(batch, REPS, BUDGET_MS)).ms);
        }
      } catch (e) {
        row[`${x}_error`] = errText(e);
      }
    }
  }
  // GPU time per call of each variant (timestamp queries around each dispatch: kernel time without the host's share)
  if (dev.caps?.timestampQuery && process.env.GPU_TS !== "0") {
    for (const x of live) {
      if (secondsLeft() < 8) break;
      try {
        setVariant(x);
        const n = 10;
        const prof = await profile(dev, async () => { for (let i = 0; i < n; i++) T.tidy(() => void fwd()); });
        const kern = prof.kernels.filter((kk) => kk.name.startsWith("flash_attention_forward"));
        row[`${x}_gpu_ms`] = +(kern.reduce((a, kk) => a + kk.gpuMs, 0) / n).toFixed(3);
        // every kernel of the call (name: GPU ms per call × dispatches per call), for the first variant
        if (x === live[0]) row[`${x}_kernels`] = prof.kernels.map((kk) => `${kk.name}: ${(kk.gpuMs / n).toFixed(3)} ms x${kk.count / n}`);
      } catch (e) {
        row[`${x}_gpu_error`] = errText(e);
      }
    }
  }
  setVariant("default");
  for (const [x, ts] of Object.entries(times)) {
    if (!ts.length) continue;
    const ms = median(ts);
    row[`${x}_ms`] = +ms.toFixed(3);
    row[`${x}_spread`] = +(Math.max(...ts) / Math.min(...ts)).toFixed(3);
    row[`${x}_tflops`] = +(flop / ms / 1e9).toFixed(2);
    if (x !== "tfjs" && times.tfjs?.length) row[`${x}_vs_tfjs`] = +(median(times.tfjs) / ms).toFixed(2);
  }
  tfRun?.dispose();
  for (const t of [q, k, v]) t.dispose();
  out.emit(row);
  dev.emptyCache?.();
}
await dev.sync();
dev.destroy?.();
process.exit(0);
