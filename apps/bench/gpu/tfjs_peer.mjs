#!/usr/bin/env node
// TF.js 4.22 (WebGPU backend) on the shapes of shapes.json, on the SAME GPUDevice webattn opens
// (webattn's getDevice: same Dawn, adapter, toggles and limits; apps/bench/src/peers/tfjs.ts binds it):
//   matmul n³ f32; attention unfused — matMul(q, kᵀ)·scale (+ causal / window mask, softcap) → softmax →
//   matMul(p, v) — forward and forward+backward (tf.grads); f32 only: TF.js has no float16 dtype.
// Shapes whose L×L score tensor exceeds the device's largest storage binding are reported as skipped.
//   node apps/bench/gpu/tfjs_peer.mjs --json out.json      (QUICK=1: tiny shapes; DEADLINE_S: budget)
import * as T from "@webattn/core-tensor";
import "@webattn/kernels-webgpu";
import { createRequire, register } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  QUICK,
  SHAPES,
  attnName,
  errText,
  opt,
  resultFile,
  secondsLeft,
  timeBatches,
} from "./common.mjs";

const { tfjsOn } = await import("../dist/peers/tfjs.js");
const require = createRequire(import.meta.url);
// TF.js's gradients (what @tensorflow/tfjs registers): tfjs-core's per-file ES modules, through tfjs-esm-hooks.mjs
let gradients = "registered";
try {
  register("./tfjs-esm-hooks.mjs", import.meta.url);
  await import(
    pathToFileURL(
      join(
        dirname(require.resolve("@tensorflow/tfjs-core/package.json")),
        "dist/register_all_gradients.js"
      )
    ).href
  );
} catch (e) {
  gradients = `not loaded: ${errText(e)}`;
}
const dev = await T.getDevice({ kind: "webgpu" });
const tf = await tfjsOn(dev);
const maxBinding = Math.min(
  dev.limits.maxStorageBufferBindingSize ?? Infinity,
  dev.limits.maxBufferSize ?? Infinity
);
const out = resultFile(opt("--json", null), {
  peer: "tfjs",
  date: new Date().toISOString(),
  quick: QUICK,
  tfjs: tf.version_core,
  tfjs_webgpu: require("@tensorflow/tfjs-backend-webgpu/package.json").version,
  backend: tf.getBackend(),
  device: dev.info,
  max_binding_bytes: maxBinding,
  gradients,
  f16: false,
  f16_reason:
    "TF.js 4.22 has no float16 dtype (DataType is float32 | int32 | bool | complex64 | string)",
});
console.log(
  `tfjs ${tf.version_core} on ${tf.getBackend()} (${
    dev.info.adapter
  }), largest binding ${maxBinding} B`
);
const REPS = QUICK ? 2 : 5;
const BUDGET_MS = QUICK ? 2000 : 3000;

/** Waits for TF.js's queue (reads one element of the last result). */
async function sync(ts) {
  const last = ts[ts.length - 1];
  const one = tf.slice(tf.reshape(last, [-1]), 0, 1);
  await one.data();
  one.dispose();
}
// First call apart, then common.mjs's timeBatches (the method of webattn_peers.mjs).
async function measure(fn, reps = REPS, warmMs) {
  const batch = async (k) => {
    const b0 = performance.now();
    let last = [];
    for (let i = 0; i < k; i++) {
      for (const t of last) t.dispose();
      const r = fn();
      last = Array.isArray(r) ? r : [r];
    }
    await sync(last);
    for (const t of last) t.dispose();
    return (performance.now() - b0) / k;
  };
  const first = await batch(1);
  return { ...(await timeBatches(batch, reps, BUDGET_MS, warmMs)), first_ms: first };
}
async function into(row, key, fn, reps, warmMs) {
  try {
    const m = await measure(fn, reps, warmMs);
    row[`${key}_ms`] = m.ms;
    row[`${key}_first_ms`] = m.first_ms;
    row[`${key}_reps`] = m.reps;
    return m;
  } catch (e) {
    row[`${key}_error`] = errText(e);
    return null;
  }
}
const enough = (row, need) => {
  if (secondsLeft() > need) return true;
  row.skipped = `time budget (${secondsLeft().toFixed(0)} s left)`;
  out.emit(row);
  return false;
};

/** Unfused attention on [B·H, L, E]: optional causal / sliding-window band and tanh softcap. */
function attention(
  q,
  k,
  v,
  { causal = false, window = null, cap = null } = {}
) {
  return tf.tidy(() => {
    const [, L, E] = q.shape;
    let s = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(E));
    if (cap) s = tf.mul(tf.tanh(tf.div(s, cap)), cap);
    if (causal || window !== null) {
      const keep = tf.linalg.bandPart(tf.ones([L, L]), window ?? -1, 0);
      s = tf.add(s, tf.mul(tf.sub(1, keep), -1e30));
    }
    return tf.matMul(tf.softmax(s), v);
  });
}

/** Forward and forward+backward of one attention variant into `row` (skips what cannot fit). */
async function attnRow(row, { B, H, L, E }, mods) {
  const scoreBytes = B * H * L * L * 4;
  if (scoreBytes > maxBinding) {
    row.skipped = `the unfused L×L scores take ${(scoreBytes / 2 ** 30).toFixed(
      1
    )} GiB, over the device's largest storage binding (${(
      maxBinding /
      2 ** 30
    ).toFixed(1)} GiB)`;
    out.emit(row);
    return;
  }
  const [q, k, v, g] = [3, 4, 5, 6].map((seed) =>
    tf.randomNormal([B * H, L, E], 0, 1, "float32", seed)
  );
  const f = await into(row, "unfused_fwd", () => attention(q, k, v, mods));
  if (f && secondsLeft() > 8) {
    const grads = tf.grads((a, b, c) => attention(a, b, c, mods));
    await into(row, "unfused_fwdbwd", () => tf.tidy(() => grads([q, k, v], g)));
  }
  out.emit(row);
  for (const t of [q, k, v, g]) t.dispose();
}

for (const n of SHAPES.matmul) {
  const row = { kind: "matmul", name: `matmul ${n}³`, dtype: "f32", n };
  if (!enough(row, 5)) continue;
  const a = tf.randomNormal([n, n], 0, 1, "float32", 1);
  const b = tf.randomNormal([n, n], 0, 1, "float32", 2);
  // 1.5 s warm-up as webattn_peers.mjs's matmul rows (the SM clock)
  await into(row, "fwd", () => tf.matMul(a, b), QUICK ? 2 : 10, QUICK ? 100 : 1500);
  out.emit(row);
  a.dispose();
  b.dispose();
}
for (const s of SHAPES.attention) {
  const row = {
    kind: "attention",
    name: attnName(s),
    dtype: "f32",
    B: s.B,
    H: s.H,
    L: s.L,
    E: s.E,
    causal: s.causal,
  };
  if (!enough(row, 8)) continue;
  await attnRow(row, s, { causal: s.causal });
}
for (const s of SHAPES.flex) {
  for (const variant of ["softcap", "window"]) {
    const label =
      variant === "softcap"
        ? `flex softcap(${SHAPES.softcap})`
        : `flex slidingWindow(${SHAPES.window})`;
    const row = {
      kind: "flex",
      variant,
      name: `${label} B=${s.B} H=${s.H} L=${s.L} E=${s.E}`,
      dtype: "f32",
      B: s.B,
      H: s.H,
      L: s.L,
      E: s.E,
      causal: variant === "window",
      note: "dense unfused: the mask is an additive L×L band",
    };
    if (!enough(row, 8)) continue;
    await attnRow(
      row,
      s,
      variant === "softcap"
        ? { cap: SHAPES.softcap }
        : { window: SHAPES.window }
    );
  }
}
console.log(`tfjs done: ${out.rows.length} rows`);
dev.destroy();
process.exit(0);
