// Forward-kernel probe of the attention generator's tile path (device machine, inside the unpacked tree):
// per shape and dtype, the flash forward with each variant of VARIANTS (staged = the per-score loop over an S
// tile in workgroup memory, what hardware GPUs ran before the register forward; reg = the register forward
// with its default grid; regTRxTC[r2][nopf][kv][qN] = a forced thread grid, 8 rows per thread, without prefetch, with K/V sharing a buffer,
// with Q·Kᵀ in head-dim chunks of N; VARIANTS_E<E> per head dim; TILE_SHAPES='[[B,H,L,E,causal],…]'; BWD= skips fwd+bwd), the default path's forward+backward, and TF.js
// 4.22's unfused attention (matMul → softmax → matMul, f32 only) on the SAME device in the same process.
// Timing: common.mjs's timeBatches (clock ramp, batches of back-to-back calls, median).
//   node apps/bench/gpu/tile_probe.mjs --json out.json   (QUICK=1: llvmpipe-sized shapes; DEADLINE_S: budget)
import * as T from "@webattn/core-tensor";
import { scaledDotProductAttention, sdpaKernel } from "@webattn/kernels-webgpu";
import { setFlashForwardPath, setFlashRegisterTile, setFlashTiles } from "@webattn/kernels-webgpu/internal";
import { QUICK, errText, opt, resultFile, secondsLeft, timeBatches } from "./common.mjs";

const dev = await T.getDevice({ kind: "webgpu" });
let tf = null;
try {
  const { tfjsOn } = await import("../dist/peers/tfjs.js");
  tf = await tfjsOn(dev);
} catch (e) {
  console.log(`tfjs not loaded: ${errText(e)}`);
}
const hasF16 = dev.hasFeature?.("shader-f16") ?? false;
const out = resultFile(opt("--json", null), { probe: "tile", date: new Date().toISOString(), device: dev.info, tfjs: tf?.version_core ?? null });
console.log(`device ${dev.info.adapter} (${dev.info.software ? "software" : "hardware"}), f16 ${hasF16}, tfjs ${tf?.version_core ?? "-"}`);
// [B, H, L, E, causal?]; TILE_SHAPES (JSON) overrides
const SHAPES = process.env.TILE_SHAPES
  ? JSON.parse(process.env.TILE_SHAPES)
  : QUICK
    ? [[1, 4, 1024, 64]]
    : [[8, 16, 1024, 64], [128, 16, 196, 64], [1, 16, 4096, 64], [8, 16, 1024, 128], [8, 16, 4096, 64]];
const VARIANTS = (process.env.VARIANTS ?? "staged,reg,reg16x8nopf,reg8x8r2,reg16x4r2,reg16x8r2,reg32x8").split(",");
const DTYPES = (process.env.DTYPES ?? (hasF16 ? "float32,float16" : "float32")).split(",");
const REPS = QUICK ? 3 : 5;
const BUDGET_MS = QUICK ? 4000 : 600;

function setVariant(v) {
  setFlashTiles("auto");
  if (v === "staged") {
    setFlashForwardPath("staged");
    setFlashRegisterTile(null);
  } else {
    setFlashForwardPath("registers");
    // regTRxTC[r2][nopf][kv][qN]: forced grid, 8 rows per thread, prefetch off, K/V in one shared buffer, Q·Kᵀ in
    // head-dim chunks of N
    const m = /^reg(\d+)x(\d+)(r2)?(nopf)?(kv)?(?:q(\d+))?$/.exec(v);
    setFlashRegisterTile(
      m
        ? {
            tr: Number(m[1]),
            tc: Number(m[2]),
            ...(m[3] ? { rv: 2 } : {}),
            ...(m[4] ? { prefetch: false } : {}),
            ...(m[5] ? { shared: true } : {}),
            ...(m[6] ? { qk: Number(m[6]) } : {}),
          }
        : null
    );
  }
}

async function time(fn) {
  const t0 = performance.now();
  fn();
  await dev.sync();
  const first = performance.now() - t0;
  const batch = async (k) => {
    const b0 = performance.now();
    for (let i = 0; i < k; i++) T.tidy(() => void fn());
    await dev.sync();
    return (performance.now() - b0) / k;
  };
  return { ...(await timeBatches(batch, REPS, BUDGET_MS)), first };
}

for (const [B, H, L, E, causal = false] of SHAPES) {
  const flop = (4 * B * H * L * L * E) / (causal ? 2 : 1);
  for (const dtype of DTYPES) {
    if (secondsLeft() < 10) break;
    const row = { B, H, L, E, causal, dtype: dtype === "float16" ? "f16" : "f32" };
    const mk = (seed) => T.randn([B, H, L, E], { seed, device: dev, dtype, requiresGrad: true });
    const [q, k, v] = [mk(1), mk(2), mk(3)];
    const g = T.randn([B, H, L, E], { seed: 4, device: dev, dtype });
    const fwd = () => T.noGrad(() => sdpaKernel(["flash"], () => scaledDotProductAttention(q, k, v, { isCausal: causal })));
    // VARIANTS_E<E> (e.g. VARIANTS_E128) overrides VARIANTS for one head dim
    const variants = (process.env[`VARIANTS_E${E}`] ?? VARIANTS.join(",")).split(",");
    for (const variant of variants) {
      if (secondsLeft() < 8) break;
      setVariant(variant);
      try {
        const m = await time(fwd);
        row[`${variant}_ms`] = +m.ms.toFixed(3);
        row[`${variant}_tflops`] = +(flop / m.ms / 1e9).toFixed(2);
        row[`${variant}_first_ms`] = +m.first.toFixed(0);
      } catch (e) {
        row[`${variant}_error`] = errText(e);
      }
    }
    setFlashForwardPath("auto");
    setFlashRegisterTile(null);
    // forward + backward with the default forward and each backward tile list of BWD (auto = 8x8 register blocks)
    for (const tiles of (process.env.BWD ?? "auto,medium,small").split(",").filter(Boolean)) {
      if (secondsLeft() < 12 || B * L > 8 * 1024) break;
      setFlashTiles(tiles);
      try {
        const m = await time(() => {
          sdpaKernel(["flash"], () => scaledDotProductAttention(q, k, v, { isCausal: causal })).backward(g);
          for (const t of [q, k, v]) { t.grad?.dispose?.(); t.grad = null; }
        });
        row[`fwdbwd_${tiles}_ms`] = +m.ms.toFixed(3);
      } catch (e) {
        row[`fwdbwd_${tiles}_error`] = errText(e);
      }
    }
    setFlashTiles("auto");
    for (const t of [q, k, v, g]) t.dispose();
    // TF.js unfused attention, f32, same device, same process (skipped where L×L scores exceed a binding)
    if (tf && dtype === "float32" && secondsLeft() > 8) {
      const maxBinding = Math.min(dev.limits.maxStorageBufferBindingSize ?? Infinity, dev.limits.maxBufferSize ?? Infinity);
      if (B * H * L * L * 4 > maxBinding) row.tfjs_skipped = "L×L scores over the largest binding";
      else {
        const [tq, tk, tv] = [3, 4, 5].map((s) => tf.randomNormal([B * H, L, E], 0, 1, "float32", s));
        // causal: the band mask as tfjs_peer.mjs builds it (per call)
        const att = () =>
          tf.tidy(() => {
            let s = tf.mul(tf.matMul(tq, tk, false, true), 1 / Math.sqrt(E));
            if (causal) s = tf.add(s, tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([L, L]), -1, 0)), -1e30));
            return tf.matMul(tf.softmax(s), tv);
          });
        const batch = async (kk) => {
          const b0 = performance.now();
          let last = null;
          for (let i = 0; i < kk; i++) { last?.dispose(); last = att(); }
          const one = tf.slice(tf.reshape(last, [-1]), 0, 1);
          await one.data();
          one.dispose();
          last.dispose();
          return (performance.now() - b0) / kk;
        };
        try {
          await batch(1);
          const m = await timeBatches(batch, REPS, BUDGET_MS);
          row.tfjs_ms = +m.ms.toFixed(3);
        } catch (e) {
          row.tfjs_error = errText(e);
        }
        for (const t of [tq, tk, tv]) t.dispose();
      }
    }
    const best = Math.min(...variants.map((x) => row[`${x}_ms`] ?? Infinity));
    if (row.tfjs_ms) row.tfjs_over_best = +(row.tfjs_ms / best).toFixed(2);
    out.emit(row);
    dev.emptyCache?.();
  }
}
await dev.sync();
dev.destroy?.();
process.exit(0);
