#!/usr/bin/env node
// webattn on the shapes of shapes.json, the same ones tfjs_peer.mjs and torch_peers.py run:
//   matmul n³ (f32, f16), attention forward and forward+backward (SDPA flash; math = unfused where the
//   L×L scores fit), flex softcap / causal sliding window, varlen packed vs padded; f32 and, where the
//   adapter has shader-f16, f16. Each measurement records its first call (pipeline compiles) and the
//   number of pipelines created by the first call and by the timed repeats (which must be 0).
//   node apps/bench/gpu/webattn_peers.mjs --json out.json      (QUICK=1: tiny shapes; DEADLINE_S: budget)
// Prints `ROW {...}` lines; the JSON file is rewritten after every row.
import * as T from "@webattn/core-tensor";
import {
  lastSdpaBackend,
  scaledDotProductAttention,
  sdpaKernel,
} from "@webattn/kernels-webgpu";
import {
  createBlockMask,
  flexAttention,
  slidingWindow,
  softcap,
} from "@webattn/flex";
import { flashAttnVarlen } from "@webattn/varlen";
import { createRequire } from "node:module";
import {
  QUICK,
  SHAPES,
  attnName,
  errText,
  opt,
  resultFile,
  secondsLeft,
  timeBatches,
  varlenLengths,
} from "./common.mjs";

const require = createRequire(import.meta.url);
const pkgVersion = (p) => {
  try {
    return require(`${p}/package.json`).version;
  } catch {
    return null;
  }
};
const dev = await T.getDevice({ kind: "webgpu" });
const hasF16 = dev.hasFeature("shader-f16");
const out = resultFile(opt("--json", null), {
  peer: "webattn",
  date: new Date().toISOString(),
  quick: QUICK,
  node: process.version,
  webgpu: pkgVersion("webgpu"),
  device: dev.info,
  limits: {
    maxStorageBufferBindingSize: dev.limits?.maxStorageBufferBindingSize,
    maxComputeWorkgroupStorageSize: dev.limits?.maxComputeWorkgroupStorageSize,
  },
  f16: hasF16,
});
console.log(
  `webattn-peers on ${dev.info.adapter} (${dev.info.api}) tier ${
    dev.info.tier ?? "?"
  } features: ${dev.info.features.join(", ")}`
);
const pipelines = () => dev.pipelineCount ?? NaN;
const dtypes = hasF16 ? ["float32", "float16"] : ["float32"];
const tag = (d) => (d === "float16" ? "f16" : "f32");
const REPS = QUICK ? 2 : 5;
// seconds the attention rows leave for the varlen and flex rows that follow them
const RESERVE_S = Number(process.env.RESERVE_S ?? (QUICK ? 0 : 35));
const BUDGET_MS = QUICK ? 2000 : 3000;

/**
 * Times `fn` (each call inside a tidy scope): the first call apart (compiles), then `timeBatches`
 * (common.mjs: clock ramp, batches of back-to-back calls). Counts the pipelines each phase created.
 */
async function measure(fn, reps = REPS, budgetMs = BUDGET_MS, warmMs) {
  const p0 = pipelines();
  let t = performance.now();
  // the first call runs outside a tidy scope: objects that cache device tensors on first use (a flex
  // BlockMask) would otherwise lose them when the scope closes (TENSOR_DISPOSED on the next call)
  const r = fn();
  if (r instanceof T.Tensor) r.dispose();
  await dev.sync();
  const first = performance.now() - t;
  const p1 = pipelines();
  const batch = async (k) => {
    const b0 = performance.now();
    for (let i = 0; i < k; i++) T.tidy(() => void fn());
    await dev.sync();
    return (performance.now() - b0) / k;
  };
  const m = await timeBatches(batch, reps, budgetMs, warmMs);
  return {
    ...m,
    first_ms: first,
    pipelines_first: p1 - p0,
    pipelines_repeat: pipelines() - p1,
  };
}

/** Puts `m` into `row` under `key` (`key_ms`, `key_first_ms`, ...), or `key_error`. */
async function into(row, key, fn, reps, budgetMs, warmMs) {
  try {
    const m = await measure(fn, reps, budgetMs, warmMs);
    row[`${key}_ms`] = m.ms;
    row[`${key}_first_ms`] = m.first_ms;
    row[`${key}_reps`] = m.reps;
    row[`${key}_pipelines_first`] = m.pipelines_first;
    row[`${key}_pipelines_repeat`] = m.pipelines_repeat;
    return m;
  } catch (e) {
    row[`${key}_error`] = errText(e);
    return null;
  }
}

const clearGrads = (ts) => {
  for (const t of ts) {
    t.grad?.dispose?.();
    t.grad = null;
  }
};
const enough = (row, need) => {
  if (secondsLeft() > need) return true;
  row.skipped = `time budget (${secondsLeft().toFixed(0)} s left)`;
  out.emit(row);
  return false;
};

// ---- matmul n³ (1.5 s of back-to-back calls before the timed batches: the SM clock, see timeBatches)
const MATMUL_WARM_MS = 1500;
for (const n of SHAPES.matmul) {
  for (const dtype of dtypes) {
    const row = { kind: "matmul", name: `matmul ${n}³`, dtype: tag(dtype), n };
    if (!enough(row, 5)) continue;
    const a = T.randn([n, n], { seed: 1, device: dev, dtype });
    const b = T.randn([n, n], { seed: 2, device: dev, dtype });
    await into(
      row,
      "fwd",
      () => T.noGrad(() => T.matmul(a, b)),
      QUICK ? 2 : 10,
      BUDGET_MS,
      QUICK ? 100 : MATMUL_WARM_MS
    );
    out.emit(row);
    a.dispose();
    b.dispose();
  }
}

// ---- attention: SDPA flash forward, forward+backward; math where its L×L scores stay under 1 GiB
for (const s of SHAPES.attention) {
  for (const dtype of dtypes) {
    const { B, H, L, E, causal } = s;
    const row = {
      kind: "attention",
      name: attnName(s),
      dtype: tag(dtype),
      B,
      H,
      L,
      E,
      causal,
    };
    if (!enough(row, 8 + RESERVE_S)) continue;
    const mk = (seed) =>
      T.randn([B, H, L, E], { seed, device: dev, dtype, requiresGrad: true });
    const [q, k, v] = [mk(1), mk(2), mk(3)];
    const g = T.randn([B, H, L, E], { seed: 4, device: dev, dtype });
    const flash = () =>
      sdpaKernel(["flash"], () =>
        scaledDotProductAttention(q, k, v, { isCausal: causal })
      );
    const f = await into(row, "flash_fwd", () => T.noGrad(flash));
    row.flash_backend = lastSdpaBackend();
    if (f && secondsLeft() > 8 + RESERVE_S) {
      await into(
        row,
        "flash_fwdbwd",
        () => {
          flash().backward(g);
          clearGrads([q, k, v]);
        },
        REPS,
        BUDGET_MS
      );
    }
    if (B * H * L * L * 4 <= 2 ** 30 && secondsLeft() > 10 + RESERVE_S) {
      await into(
        row,
        "math_fwd",
        () =>
          T.noGrad(() =>
            sdpaKernel(["math"], () =>
              scaledDotProductAttention(q, k, v, { isCausal: causal })
            )
          ),
        3
      );
    }
    out.emit(row);
    for (const t of [q, k, v, g]) t.dispose();
    dev.emptyCache?.();
  }
}

// ---- varlen: packed (flashAttnVarlen, cu_seqlens) vs padded (SDPA + padding mask), causal
for (const s of SHAPES.varlen) {
  for (const dtype of dtypes) {
    const { B, H, maxLen, E } = s;
    const lengths = varlenLengths(B, maxLen);
    const total = lengths.reduce((p, n) => p + n, 0);
    const row = {
      kind: "varlen",
      name: `varlen B=${B} H=${H} lengths 1..${maxLen} E=${E} causal`,
      dtype: tag(dtype),
      B,
      H,
      E,
      max_len: maxLen,
      tokens: total,
      lengths: lengths.join(","),
    };
    if (!enough(row, 8)) continue;
    const cu = Int32Array.from([
      0,
      ...lengths.map((_, i) =>
        lengths.slice(0, i + 1).reduce((p, n) => p + n, 0)
      ),
    ]);
    const mk = (seed, shape) =>
      T.randn(shape, { seed, device: dev, dtype, requiresGrad: true });
    const [qp, kp, vp] = [1, 2, 3].map((sd) => mk(sd, [total, H, E]));
    const gp = T.randn([total, H, E], { seed: 4, device: dev, dtype });
    const [qd, kd, vd] = [1, 2, 3].map((sd) => mk(sd, [B, H, maxLen, E]));
    const gd = T.randn([B, H, maxLen, E], { seed: 4, device: dev, dtype });
    const keep = new Uint8Array(B * maxLen);
    lengths.forEach((n, b) => keep.fill(1, b * maxLen, b * maxLen + n));
    const mask = T.tensor(keep, [B, 1, 1, maxLen], {
      dtype: "bool",
      device: dev,
    });
    const packed = () =>
      flashAttnVarlen(qp, kp, vp, {
        cuSeqlensQ: cu,
        maxSeqlenQ: maxLen,
        causal: true,
      });
    const padded = () =>
      scaledDotProductAttention(qd, kd, vd, { attnMask: mask, isCausal: true });
    await into(row, "packed_fwd", () => T.noGrad(packed));
    await into(row, "padded_fwd", () => T.noGrad(padded));
    row.padded_backend = lastSdpaBackend();
    if (secondsLeft() > 10) {
      await into(row, "packed_fwdbwd", () => {
        packed().backward(gp);
        clearGrads([qp, kp, vp]);
      });
      await into(row, "padded_fwdbwd", () => {
        padded().backward(gd);
        clearGrads([qd, kd, vd]);
      });
    }
    out.emit(row);
    for (const t of [qp, kp, vp, gp, qd, kd, vd, gd, mask]) t.dispose();
    dev.emptyCache?.();
  }
}

// ---- flex: softcap score mod (dense) and causal sliding window (block-sparse)
for (const s of SHAPES.flex) {
  for (const dtype of dtypes) {
    const { B, H, L, E } = s;
    const mk = (seed) =>
      T.randn([B, H, L, E], { seed, device: dev, dtype, requiresGrad: true });
    const [q, k, v] = [mk(1), mk(2), mk(3)];
    const g = T.randn([B, H, L, E], { seed: 4, device: dev, dtype });
    let bm = null;
    for (const variant of ["softcap", "window"]) {
      const label =
        variant === "softcap"
          ? `flex softcap(${SHAPES.softcap})`
          : `flex slidingWindow(${SHAPES.window})`;
      const row = {
        kind: "flex",
        variant,
        name: `${label} B=${B} H=${H} L=${L} E=${E}`,
        dtype: tag(dtype),
        B,
        H,
        L,
        E,
        causal: variant === "window",
      };
      if (!enough(row, 8)) continue;
      try {
        const o =
          variant === "softcap"
            ? { scoreMod: softcap(SHAPES.softcap) }
            : {
                blockMask: (bm ??= await createBlockMask(
                  slidingWindow(SHAPES.window),
                  null,
                  null,
                  L,
                  L,
                  { device: dev }
                )),
              };
        if (bm && variant === "window") row.density = bm.density();
        const f = await into(row, "fwd", () =>
          T.noGrad(() => flexAttention(q, k, v, o))
        );
        if (f && secondsLeft() > 8) {
          await into(row, "fwdbwd", () => {
            flexAttention(q, k, v, o).backward(g);
            clearGrads([q, k, v]);
          });
        }
      } catch (e) {
        row.error = errText(e);
      }
      out.emit(row);
    }
    for (const t of [q, k, v, g]) t.dispose();
    dev.emptyCache?.();
  }
}

out.meta.pipelines_total = pipelines();
out.write();
console.log(
  `webattn-peers done: ${out.rows.length} rows, ${pipelines()} pipelines`
);
dev.destroy();
process.exit(0);
