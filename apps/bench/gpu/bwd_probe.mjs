// Backward probe of the attention generator: per shape and dtype, forward+backward ms of the flash path with
// each backward variant of VARIANTS (staged = the staged dQ / dK/dV kernels, today's default; reg = the register
// backward with its default grid; regTRxTC = a forced grid), interleaved round by round on the SAME inputs so
// clock drift hits every variant alike, and (VALIDATE=1, default) the largest |difference| of dQ/dK/dV of each
// variant against the staged one, relative to the staged gradient's largest |value|.
//   node apps/bench/gpu/bwd_probe.mjs [--json out.json]    (QUICK=1: llvmpipe-sized shapes; DEADLINE_S: budget)
// mat = the subgroup-matrix backward (f16 on adapters with subgroup matrices; backward-sgmat.ts) with its default tilings,
// matR.N.C-R.N.C[s] = forced dK/dV and dQ tilings (rows per subgroup, subgroups, tile rows; s: scalar staging).
// The gradient comparison is against the first variant.
// env: VARIANTS (default "staged,reg,reg8x4,reg16x8"), DTYPES (default float32[,float16]), SHAPES_BWD ("B,H,L,E;…"), ROUNDS (5)
import * as T from "@webattn/core-tensor";
import { scaledDotProductAttention, sdpaKernel } from "@webattn/kernels-webgpu";
import { setFlashBackwardGrid, setFlashBackwardPath, setFlashBackwardSubgroupMatrix } from "@webattn/kernels-webgpu/internal";
import { QUICK, errText, median, opt, resultFile, secondsLeft } from "./common.mjs";

const dev = await T.getDevice({ kind: "webgpu" });
const hasF16 = dev.hasFeature?.("shader-f16") ?? false;
const out = resultFile(opt("--json", null), { probe: "bwd", date: new Date().toISOString(), device: dev.info });
console.log(`device ${dev.info.adapter} (${dev.info.software ? "software" : "hardware"}), f16 ${hasF16}`);
const SHAPES = process.env.SHAPES_BWD
  ? process.env.SHAPES_BWD.split(";").map((s) => s.split(",").map(Number))
  : QUICK
    ? [[1, 4, 512, 64]]
    : [[8, 16, 1024, 64], [128, 16, 196, 64], [1, 16, 4096, 64]];
// a forced grid that does not fit the adapter or dtype (reg16x8 fits float16 only at E=64 on 48 KiB) runs the default grid
const VARIANTS = (process.env.VARIANTS ?? "staged,reg,reg8x4,reg16x8").split(",");
const DTYPES = (process.env.DTYPES ?? (hasF16 ? "float32,float16" : "float32")).split(",");
const ROUNDS = Number(process.env.ROUNDS ?? (QUICK ? 3 : 5));
const VALIDATE = process.env.VALIDATE !== "0";

function setVariant(v) {
  const mat = /^mat(?:(\d+)\.(\d+)\.(\d+)-(\d+)\.(\d+)\.(\d+))?(s?)$/.exec(v);
  if (mat) {
    setFlashBackwardPath("auto");
    setFlashBackwardGrid(null);
    const t = (i) => ({ rs: Number(mat[i]), nsg: Number(mat[i + 1]), bc: Number(mat[i + 2]) });
    setFlashBackwardSubgroupMatrix("auto", mat[1] ? { dkv: t(1), dq: t(4), vec: mat[7] !== "s" } : null);
    return;
  }
  setFlashBackwardSubgroupMatrix("off");
  if (v === "staged") {
    setFlashBackwardPath("staged");
    setFlashBackwardGrid(null);
    return;
  }
  setFlashBackwardPath("registers");
  const m = /^reg(\d+)x(\d+)$/.exec(v);
  setFlashBackwardGrid(m ? { tr: Number(m[1]), tc: Number(m[2]) } : null);
}

for (const [B, H, L, E] of SHAPES) {
  for (const dtype of DTYPES) {
    if (secondsLeft() < 10) break;
    const row = { B, H, L, E, dtype: dtype === "float16" ? "f16" : "f32" };
    const mk = (seed) => T.randn([B, H, L, E], { seed, device: dev, dtype, requiresGrad: true });
    const [q, k, v] = [mk(1), mk(2), mk(3)];
    const g = T.randn([B, H, L, E], { seed: 4, device: dev, dtype });
    const step = () => {
      sdpaKernel(["flash"], () => scaledDotProductAttention(q, k, v)).backward(g);
    };
    const clear = () => {
      for (const t of [q, k, v]) {
        t.grad?.dispose?.();
        t.grad = null;
      }
    };
    const grads = {};
    // first call per variant: compile + one step (and the gradients for the comparison)
    for (const variant of VARIANTS) {
      setVariant(variant);
      try {
        const t0 = performance.now();
        step();
        await dev.sync();
        row[`${variant}_first_ms`] = +(performance.now() - t0).toFixed(0);
        // kept on the device (compared there: the larger shapes' gradients are hundreds of MB)
        if (VALIDATE) {
          // copies: clearing a tensor's grad releases the one autograd made
          grads[variant] = [q, k, v].map((t) => T.noGrad(() => T.mul(t.grad, 1)));
        }
      } catch (e) {
        row[`${variant}_error`] = errText(e);
      }
      clear();
    }
    const BASE = VARIANTS[0];
    if (VALIDATE && grads[BASE]) {
      const f32 = (t) => (t.dtype === "float32" ? t : T.cast(t, "float32"));
      for (const variant of VARIANTS.filter((x) => x !== BASE && grads[x])) {
        let diff = 0;
        let scale = 0;
        for (let n = 0; n < 3; n++) {
          const a = f32(grads[BASE][n]);
          const d = T.abs(T.sub(a, f32(grads[variant][n])));
          // the sum turns any NaN into NaN (a maximum may drop it)
          const [mx, sm, sc] = await Promise.all([T.max(d), T.sum(d), T.max(T.abs(a))].map(async (t) => (await t.toArray())[0]));
          diff = Number.isNaN(sm) ? Infinity : Math.max(diff, mx);
          scale = Math.max(scale, sc);
        }
        row[`${variant}_vs_${BASE}_rel`] = +(diff / scale).toExponential(2);
      }
    }
    for (const gs of Object.values(grads)) for (const t of gs) t.dispose?.();
    // timed rounds, variants interleaved: batches of back-to-back steps, median per variant
    const times = Object.fromEntries(VARIANTS.map((x) => [x, []]));
    let batch = 0;
    for (let r = 0; r < ROUNDS && secondsLeft() > 8; r++) {
      for (const variant of VARIANTS) {
        if (row[`${variant}_error`]) continue;
        setVariant(variant);
        if (!batch) {
          const t0 = performance.now();
          T.tidy(step);
          clear();
          await dev.sync();
          batch = Math.max(1, Math.min(16, Math.ceil(150 / (performance.now() - t0))));
        }
        const t0 = performance.now();
        for (let i = 0; i < batch; i++) {
          T.tidy(step);
          clear();
        }
        await dev.sync();
        times[variant].push((performance.now() - t0) / batch);
      }
    }
    for (const variant of VARIANTS) if (times[variant].length) row[`${variant}_fwdbwd_ms`] = +median(times[variant]).toFixed(3);
    row.batch = batch;
    if (row.staged_fwdbwd_ms && row.reg_fwdbwd_ms) row.staged_over_reg = +(row.staged_fwdbwd_ms / row.reg_fwdbwd_ms).toFixed(2);
    if (row.mat_fwdbwd_ms && row.reg_fwdbwd_ms) row.reg_over_mat = +(row.reg_fwdbwd_ms / row.mat_fwdbwd_ms).toFixed(2);
    // TFLOP/s at 3.5 × 4·B·H·L²·E (forward + backward, as issue 12 counts it)
    for (const variant of VARIANTS) if (row[`${variant}_fwdbwd_ms`]) row[`${variant}_tflops`] = +((3.5 * 4 * B * H * L * L * E) / row[`${variant}_fwdbwd_ms`] / 1e9).toFixed(1);
    out.emit(row);
    for (const t of [q, k, v, g]) t.dispose();
    dev.emptyCache?.();
  }
}
setFlashBackwardPath("auto");
setFlashBackwardSubgroupMatrix("auto");
await dev.sync();
dev.destroy?.();
process.exit(0);
