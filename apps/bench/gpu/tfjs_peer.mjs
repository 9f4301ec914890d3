#!/usr/bin/env node
// TF.js 4.22 on its WebGPU backend, on the same Dawn (the `webgpu` package) and adapter webattn uses:
// matmul and unfused attention (matMul -> softmax -> matMul), f32 only (TF.js has no float16 dtype).
// TF.js is not a workspace dependency: point TFJS_DIR at a folder whose node_modules holds
// @tensorflow/tfjs-core and @tensorflow/tfjs-backend-webgpu 4.22 (`npm i --prefix DIR ...`).
//   node apps/bench/gpu/tfjs_peer.mjs --json out.json [--soft] [--only matmul|attention]
// Prints `ROW {...}` lines like the webattn bench.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
const json = opt('--json', null);
const only = opt('--only', null);
const soft = args.includes('--soft');
const dir = process.env.TFJS_DIR;
if (!dir) throw new Error('set TFJS_DIR to a folder with node_modules/@tensorflow/tfjs-core and tfjs-backend-webgpu');
const req = createRequire(`${dir.replace(/\/$/, '')}/`);
const requireHere = createRequire(import.meta.url);

// Dawn as navigator.gpu, on the route webattn's getDevice takes for this machine
const webgpu = requireHere('webgpu');
for (const [k, v] of Object.entries(webgpu.globals)) if (!(k in globalThis)) globalThis[k] = v;
let gpu;
let adapterOptions = { powerPreference: 'high-performance' };
if (soft) {
  process.env.EGL_PLATFORM ??= 'surfaceless';
  gpu = webgpu.create(['backend=opengl']);
  adapterOptions = { featureLevel: 'compatibility' };
} else {
  gpu = webgpu.create(['backend=vulkan']);
}
const keep = [gpu];
const origRequest = gpu.requestAdapter.bind(gpu);
gpu.requestAdapter = async () => {
  const a = await origRequest(adapterOptions);
  keep.push(a);
  return a;
};
Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true });

const tf = req('@tensorflow/tfjs-core');
req('@tensorflow/tfjs-backend-webgpu');
await tf.setBackend('webgpu');
await tf.ready();
const info = tf.backend().adapterInfo ?? {};
console.log(`tfjs ${tf.version_core} on webgpu (${JSON.stringify(info)})`);

async function sync(t) {
  // a one-element read forces the queue through this result
  const s = tf.slice(tf.reshape(t, [-1]), 0, 1);
  await s.data();
  s.dispose();
}

async function timeIt(fn, reps = 5, budgetMs = 6000) {
  const w = fn();
  await sync(w);
  w.dispose();
  const times = [];
  const start = performance.now();
  while (times.length < reps && (times.length === 0 || performance.now() - start < budgetMs)) {
    const t0 = performance.now();
    const r = fn();
    await sync(r);
    times.push(performance.now() - t0);
    r.dispose();
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)], reps: times.length };
}

const rows = [];
function emit(row) {
  rows.push(row);
  console.log(`ROW ${JSON.stringify(row)}`);
}

if (!only || only === 'matmul') {
  for (const n of soft ? [128, 256, 512] : [1024, 2048, 4096]) {
    const a = tf.randomNormal([n, n], 0, 1, 'float32', 1);
    const b = tf.randomNormal([n, n], 0, 1, 'float32', 2);
    const { ms, reps } = await timeIt(() => tf.matMul(a, b));
    emit({ scenario: 'tfjs', name: `matmul ${n}³ f32`, ms, reps, tflops: (2 * n ** 3) / ms / 1e9 });
    a.dispose();
    b.dispose();
  }
}
if (!only || only === 'attention') {
  const shapes = soft
    ? [{ B: 1, H: 4, L: 1024, E: 64 }]
    : [
        { B: 1, H: 16, L: 4096, E: 64 },
        { B: 8, H: 16, L: 1024, E: 64 },
        { B: 128, H: 16, L: 196, E: 64, tag: 'vit' },
      ];
  for (const s of shapes) {
    const { B, H, L, E } = s;
    const q = tf.randomNormal([B * H, L, E], 0, 1, 'float32', 3);
    const k = tf.randomNormal([B * H, L, E], 0, 1, 'float32', 4);
    const v = tf.randomNormal([B * H, L, E], 0, 1, 'float32', 5);
    const scale = 1 / Math.sqrt(E);
    const fn = () => tf.tidy(() => tf.matMul(tf.softmax(tf.mul(tf.matMul(q, k, false, true), scale)), v));
    try {
      const { ms, reps } = await timeIt(fn, 5);
      emit({ scenario: 'tfjs', name: `${s.tag ? s.tag + ' ' : ''}attention unfused B=${B} H=${H} L=${L} E=${E} f32`, ms, reps, tflops: (4 * B * H * L * L * E) / ms / 1e9 });
    } catch (e) {
      emit({ scenario: 'tfjs', name: `attention B=${B} H=${H} L=${L} E=${E} f32`, error: String(e).slice(0, 200) });
    }
    q.dispose();
    k.dispose();
    v.dispose();
  }
}
if (json) writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), tfjs: tf.version_core, adapter: info, rows }, null, 2));
process.exit(0);
