// Backward probe of the attention generator: per shape and dtype, forward+backward ms of the flash path with
// each backward variant of VARIANTS, interleaved round by round on the SAME inputs so clock drift hits every
// variant alike, (VALIDATE=1, default) the largest |difference| of dQ/dK/dV of each variant against the first
// one, relative to its largest |value|, and (PROFILE=1, default) the per-kernel GPU time of one step of the
// first and the `auto` variant (profile(): timestamp queries where the adapter has them).
//   node apps/bench/gpu/bwd_probe.mjs [--json out.json]    (QUICK=1: llvmpipe-sized shapes; DEADLINE_S: budget)
// env: VARIANTS (default "old,auto,nods,ds"), DTYPES (default float32[,float16]), SHAPES_BWD ("B,H,L,E;…"), ROUNDS (5)
// Variants: staged = the staged dQ / dK/dV kernels; auto = the register backward with the defaults of this commit;
// nods / ds = the default grids with the scores backward (dQ = dS·K, plan.ts setFlashBackwardScores) off / forced;
// old = the defaults before the prefetch (f32: 8×8 both kernels, f16: 16×8, no prefetch); pf = the old grids
// prefetching; regTRxTC[pf] = both kernels forced to one grid; dqTRxTC[pf]-dkvTRxTC[pf] = per kernel;
// mat = the subgroup-matrix backward (f16 on adapters with subgroup matrices; backward-sgmat.ts) with its default
// tilings, matR.N.C-R.N.C[s] = forced dK/dV and dQ tilings (rows per subgroup, subgroups, tile rows; s: scalar staging);
// grids may name head-dim chunks (TRxTCcCH[pf][t], plan.ts BackwardGrid.ch; pf there: the chunk prefetch, a default of the dK/dV
// kernel, forced only for the dQ kernel, e.g. dq16x16c32pf-dkv16x16c32pft); nochunk = auto without the chunked grids;
// a suffix +ds (e.g. reg16x16c32+ds) lets a forced-grid variant take the scores backward where `auto` would.
// base = auto without the dK/dV kernel's vec4 dS stores, tail skipping, dOᵀ chunk reuse and the one-kernel Δ (plan.ts
// setFlashBackwardTuning), nov4 / noskip / noreuse / nodelta = auto without one of them.
// Every variant but mat* turns the subgroup-matrix backward off.
import * as T from "@webattn/core-tensor";
import { profile, scaledDotProductAttention, sdpaKernel } from "@webattn/kernels-webgpu";
import { setFlashBackwardGrid, setFlashBackwardPath, setFlashBackwardScores, setFlashBackwardSubgroupMatrix } from "@webattn/kernels-webgpu/internal";
import { QUICK, errText, median, opt, resultFile, secondsLeft } from "./common.mjs";
// the grids the kernels ran with (plan.ts, the same module instance as the package's: not public API)
const { lastBackwardGrids, parseBackwardGrid, setFlashBackwardChunked, setFlashBackwardTuning } = await import("../../../packages/kernels-webgpu/dist/attention/plan.js");

const dev = await T.getDevice({ kind: "webgpu" });
const hasF16 = dev.hasFeature?.("shader-f16") ?? false;
const out = resultFile(opt("--json", null), { probe: "bwd", date: new Date().toISOString(), device: dev.info });
console.log(`device ${dev.info.adapter} (${dev.info.software ? "software" : "hardware"}), f16 ${hasF16}`);
const SHAPES = process.env.SHAPES_BWD
  ? process.env.SHAPES_BWD.split(";").map((s) => s.split(",").map(Number))
  : QUICK
    ? [[1, 4, 512, 64]]
    : [[128, 16, 196, 64], [8, 16, 1024, 64], [1, 16, 4096, 64], [8, 16, 4096, 64]];
// a forced grid that does not fit the adapter or dtype runs the first fitting grid of the built-in list
// VARIANTS_float32 / VARIANTS_float16 override VARIANTS for one dtype
const variantsOf = (dtype) => (process.env[`VARIANTS_${dtype}`] ?? process.env.VARIANTS ?? "old,auto,nods,ds").split(",");
const DTYPES = (process.env.DTYPES ?? (hasF16 ? "float32,float16" : "float32")).split(",");
const ROUNDS = Number(process.env.ROUNDS ?? (QUICK ? 3 : 5));
const VALIDATE = process.env.VALIDATE !== "0";
const PROFILE = process.env.PROFILE !== "0";

const grid = (s) => {
  const g = parseBackwardGrid(s);
  if (!g) throw new Error(`bad grid ${s}`);
  return g;
};
function setVariant(v, dtype) {
  // tuning of the backward (plan.ts setFlashBackwardTuning): base = auto with dS one float per store, no tail
  // skipping, no dOᵀ chunk reuse and Δ as a product + row sum (the defaults before them), nov4 / noskip / noreuse /
  // nodelta = auto without one of them
  const on = (x) => v !== "base" && v !== x;
  setFlashBackwardTuning?.({ dsVec4: on("nov4"), tailSkip: on("noskip"), dvReuse: on("noreuse"), fusedDelta: on("nodelta") });
  if (["base", "nov4", "noskip", "noreuse", "nodelta"].includes(v)) v = "auto";
  // a suffix +ds keeps the library's scores-backward decision (plan.ts setFlashBackwardScores auto) on a forced grid
  if (v.endsWith("+ds")) {
    setVariant(v.slice(0, -3), dtype);
    setFlashBackwardScores("auto");
    return;
  }
  // nochunk = the defaults without the head-dim-chunked grids (f32 head dim 128: staged dK/dV, 4×4 dQ)
  setFlashBackwardChunked?.(v !== "nochunk");
  if (v === "nochunk") v = "auto";
  const mat = /^mat(?:(\d+)\.(\d+)\.(\d+)-(\d+)\.(\d+)\.(\d+))?(s?)$/.exec(v);
  if (mat) {
    setFlashBackwardPath("auto");
    setFlashBackwardScores("auto");
    setFlashBackwardGrid(null);
    const t = (i) => ({ rs: Number(mat[i]), nsg: Number(mat[i + 1]), bc: Number(mat[i + 2]) });
    setFlashBackwardSubgroupMatrix("auto", mat[1] ? { dkv: t(1), dq: t(4), vec: mat[7] !== "s" } : null);
    return;
  }
  setFlashBackwardSubgroupMatrix("off");
  setFlashBackwardPath(v === "staged" ? "staged" : "registers");
  // the scores backward (dQ = dS·K): `auto` as the library decides, `ds` forced where the call qualifies, else off
  setFlashBackwardScores(v === "auto" ? "auto" : v === "ds" ? "always" : "never");
  if (v === "staged" || v === "auto" || v === "nods" || v === "ds") return setFlashBackwardGrid(null);
  const old = dtype === "float16" ? "16x8" : "8x8";
  if (v === "old" || v === "pf") return setFlashBackwardGrid(grid(old + (v === "pf" ? "pf" : "")));
  let m = /^reg(\d+x\d+(?:c\d+)?(?:pf)?t?)$/.exec(v);
  if (m) return setFlashBackwardGrid(grid(m[1]));
  m = /^dq(\d+x\d+(?:c\d+)?(?:pf)?t?)-dkv(\d+x\d+(?:c\d+)?(?:pf)?t?)$/.exec(v);
  if (m) return setFlashBackwardGrid({ dq: grid(m[1]), dkv: grid(m[2]) });
  throw new Error(`unknown variant ${v}`);
}

for (const [B, H, L, E] of SHAPES) {
  for (const dtype of DTYPES) {
    if (secondsLeft() < 10) break;
    const row = { B, H, L, E, dtype: dtype === "float16" ? "f16" : "f32" };
    const VARIANTS = variantsOf(dtype);
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
      setVariant(variant, dtype);
      try {
        const t0 = performance.now();
        step();
        await dev.sync();
        row[`${variant}_first_ms`] = +(performance.now() - t0).toFixed(0);
        const used = lastBackwardGrids();
        const fmt = (g) => (g ? `${g.tr}x${g.tc}${g.ch ? `c${g.ch}` : ""}${g.prefetch ? "pf" : ""}${g.turns ? "t" : ""}` : "none");
        row[`${variant}_grids`] = `dq ${fmt(used.dq)}, dkv ${fmt(used.dkv)}`;
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
    const base = VARIANTS[0];
    if (VALIDATE && grads[base]) {
      const f32 = (t) => (t.dtype === "float32" ? t : T.cast(t, "float32"));
      for (const variant of VARIANTS.filter((x) => x !== base && grads[x])) {
        let diff = 0;
        let scale = 0;
        for (let n = 0; n < 3; n++) {
          const a = f32(grads[base][n]);
          const d = T.abs(T.sub(a, f32(grads[variant][n])));
          // the sum turns any NaN into NaN (a maximum may drop it)
          const [mx, sm, sc] = await Promise.all([T.max(d), T.sum(d), T.max(T.abs(a))].map(async (t) => (await t.toArray())[0]));
          diff = Number.isNaN(sm) ? Infinity : Math.max(diff, mx);
          scale = Math.max(scale, sc);
        }
        row[`${variant}_vs_${base}_rel`] = +(diff / scale).toExponential(2);
      }
    }
    for (const gs of Object.values(grads)) for (const t of gs) t.dispose?.();
    // where the time goes: GPU ms per kernel of one step, the first variant and `auto`
    if (PROFILE) {
      for (const variant of [...new Set([base, "auto"])].filter((x) => VARIANTS.includes(x) && !row[`${x}_error`])) {
        setVariant(variant, dtype);
        try {
          const pr = await profile(dev, async () => {
            T.tidy(step);
            clear();
            await dev.sync();
          });
          row[`${variant}_profile`] = Object.fromEntries(pr.kernels.map((k) => [k.name, +k.gpuMs.toFixed(3)]));
          row[`${variant}_profile_timing`] = pr.timing;
        } catch (e) {
          row[`${variant}_profile_error`] = errText(e);
        }
      }
    }
    // timed rounds, variants interleaved: batches of back-to-back steps, median per variant
    const times = Object.fromEntries(VARIANTS.map((x) => [x, []]));
    let batch = 0;
    for (let r = 0; r < ROUNDS && secondsLeft() > 8; r++) {
      for (const variant of VARIANTS) {
        if (row[`${variant}_error`]) continue;
        setVariant(variant, dtype);
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
    for (const variant of VARIANTS.filter((x) => x !== base && row[`${x}_fwdbwd_ms`])) {
      if (row[`${base}_fwdbwd_ms`]) row[`${base}_over_${variant}`] = +(row[`${base}_fwdbwd_ms`] / row[`${variant}_fwdbwd_ms`]).toFixed(2);
    }
    // attention TFLOP/s as docs/benchmarks.md counts them: 4·B·H·L²·E × 3.5 for forward+backward
    for (const variant of VARIANTS) if (row[`${variant}_fwdbwd_ms`]) row[`${variant}_tflops`] = +((3.5 * 4 * B * H * L * L * E) / (row[`${variant}_fwdbwd_ms`] * 1e9)).toFixed(1);
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
