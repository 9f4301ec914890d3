#!/usr/bin/env node
// Host-side dispatch overhead of the WebGPU device (issue 12, "Dispatch overhead"): for batches of N identical
// calls, the wall time per call (N calls recorded in one synchronous loop, then one sync) against the GPU time per
// call (profile(): timestamp queries where the adapter has them, else serialized), and where the host time goes:
// the recording loop, loop end → first queue.submit, createBindGroup, writeBuffer, submit, popErrorScope waits.
// Variants are the device's runtime knob `flushBatch` (FLUSH_VARIANTS, default "0,64,16": 0 = the old behaviour,
// everything encoded at the next microtask after awaiting bind-group validation), interleaved round by round so clock
// drift hits all variants alike. TF.js-WebGPU matMul runs in the same process (TFJS=0 skips it).
//   node apps/bench/gpu/flush_probe.mjs [--json FILE] [--quick]      (PROBE_SECONDS bounds the whole run)
import { writeFileSync } from 'node:fs';

const T = await import('@webattn/core-tensor');
const { scaledDotProductAttention, sdpaKernel, profile } = await import('@webattn/kernels-webgpu');
const args = process.argv.slice(2);
const json = args.includes('--json') ? args[args.indexOf('--json') + 1] : null;
const quick = args.includes('--quick') || process.env.QUICK === '1';
const budget = Number(process.env.PROBE_SECONDS ?? 200) * 1000;
const t0 = performance.now();
const left = () => budget - (performance.now() - t0);
const ROUNDS = Number(process.env.ROUNDS ?? (quick ? 2 : 3));
const variants = (process.env.FLUSH_VARIANTS ?? '0,64,16').split(',').map(Number);

const dev = await T.getDevice({ kind: 'webgpu' });
if (!('flushBatch' in dev)) console.log('note: this device has no flushBatch knob (old code): variants all run the default');
const hasF16 = dev.hasFeature('shader-f16');
console.log(`flush-probe on ${dev.info.adapter} (${dev.info.api}) tier ${dev.info.tier} features: ${dev.info.features.join(', ')}`);
const rows = [];
const emit = (r) => {
  rows.push(r);
  console.log(`ROW ${JSON.stringify(r)}`);
  if (json) writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), device: dev.info, rows }, null, 1));
};

// ---- host instrumentation: wrap the GPUDevice / GPUQueue methods the device calls
const acc = {};
const add = (k, ms) => {
  const a = (acc[k] ??= { n: 0, ms: 0 });
  a.n++;
  a.ms += ms;
};
let firstSubmitAt = null;
const wrap = (obj, name, key, after) => {
  const orig = obj[name].bind(obj);
  obj[name] = (...a) => {
    const s = performance.now();
    const r = orig(...a);
    add(key, performance.now() - s);
    after?.(s, r);
    return r;
  };
};
const g = dev.gpu;
wrap(g, 'createBindGroup', 'createBindGroup');
wrap(g, 'createCommandEncoder', 'createCommandEncoder');
wrap(g.queue, 'writeBuffer', 'writeBuffer');
wrap(g.queue, 'submit', 'submit', (s) => {
  firstSubmitAt ??= s;
});
{
  const orig = g.popErrorScope.bind(g);
  g.popErrorScope = () => {
    const s = performance.now();
    const p = orig();
    add('popErrorScope(call)', 0);
    return p.then(
      (v) => (add('popErrorScope(resolve)', performance.now() - s), v),
      (e) => (add('popErrorScope(resolve)', performance.now() - s), Promise.reject(e))
    );
  };
}

// ---- cases
const cases = [];
const mm = (n, dtype) => {
  const a = T.randn([n, n], { seed: 1, device: dev, dtype });
  const b = T.randn([n, n], { seed: 2, device: dev, dtype });
  return { name: `matmul ${n}³ ${dtype === 'float16' ? 'f16' : 'f32'}`, flop: 2 * n ** 3, fn: () => T.noGrad(() => T.matmul(a, b)), free: () => (a.dispose(), b.dispose()) };
};
const vit = (B, H, L, E, dtype) => {
  const mk = (seed) => T.randn([B, H, L, E], { seed, device: dev, dtype });
  const [q, k, v] = [mk(1), mk(2), mk(3)];
  return {
    name: `attn fwd B=${B} H=${H} L=${L} E=${E} ${dtype === 'float16' ? 'f16' : 'f32'}`,
    flop: 4 * B * H * L * L * E,
    fn: () => T.noGrad(() => sdpaKernel(['flash'], () => scaledDotProductAttention(q, k, v))),
    free: () => (q.dispose(), k.dispose(), v.dispose()),
  };
};
const chain = (n, ops) => {
  const x = T.randn([n], { seed: 5, device: dev });
  return {
    name: `chain ${ops}× add on ${(n * 4) / 2 ** 20} MiB f32`,
    flop: 0,
    calls: ops, // dispatches per call
    fn: () =>
      T.noGrad(() => {
        let y = x;
        for (let i = 0; i < ops; i++) {
          const z = T.add(y, 0.001);
          if (y !== x) y.dispose();
          y = z;
        }
        return y;
      }),
    free: () => x.dispose(),
  };
};
if (quick) {
  cases.push(() => mm(256, 'float32'), 'tfjs', () => vit(8, 4, 64, 32, 'float32'), () => chain(16384, 200));
} else {
  if (hasF16) cases.push(() => mm(4096, 'float16'));
  cases.push(() => mm(4096, 'float32'), 'tfjs', () => chain(262144, 200));
  cases.push(() => vit(128, 16, 196, 64, 'float32'));
  if (hasF16) cases.push(() => vit(128, 16, 196, 64, 'float16'));
}
// ---- TF.js-WebGPU matMul in the same process (peer)
// ---- TF.js-WebGPU matMul in the same process (peer)
async function tfjsPeer() {
  if (process.env.TFJS === '0' || left() < 20000) return;
  try {
    const { tfjsOn } = await import('../dist/peers/tfjs.js');
    const tf = await tfjsOn(dev);
    const n = quick ? 256 : 4096;
    const a = tf.randomNormal([n, n], 0, 1, 'float32', 1);
    const b = tf.randomNormal([n, n], 0, 1, 'float32', 2);
    const sync = async (t) => {
      const one = tf.slice(tf.reshape(t, [-1]), 0, 1);
      await one.data();
      one.dispose();
    };
    const run = async (k) => {
      const s = performance.now();
      let last = null;
      for (let i = 0; i < k; i++) {
        last?.dispose();
        last = tf.matMul(a, b);
      }
      await sync(last);
      last.dispose();
      return (performance.now() - s) / k;
    };
    await run(1);
    const w0 = performance.now();
    while (performance.now() - w0 < (quick ? 200 : 1000)) await run(8);
    const out = {};
    for (const N of NS) {
      const xs = [];
      for (let r = 0; r < ROUNDS; r++) xs.push(await run(N));
      const ms = xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
      out[`N=${N}`] = { wall_ms_per_call: +ms.toFixed(4), tflops: +((2 * n ** 3) / ms / 1e9).toFixed(2) };
    }
    emit({ case: `tfjs ${tf.version_core} matMul ${n}³ f32 (${tf.getBackend()})`, by: out });
  } catch (e) {
    emit({ case: 'tfjs matMul', error: String(e?.message ?? e).slice(0, 300) });
  }
}

const NS = (process.env.NS ?? (quick ? '1,8' : '1,16,64')).split(',').map(Number);

const setVariant = (v) => {
  if ('flushBatch' in dev) dev.flushBatch = v;
};

async function batch(fn, k) {
  for (const key of Object.keys(acc)) delete acc[key];
  firstSubmitAt = null;
  const s = performance.now();
  for (let i = 0; i < k; i++) T.tidy(() => void fn());
  const recorded = performance.now();
  await dev.sync();
  const end = performance.now();
  const host = Object.fromEntries(Object.entries(acc).map(([key, a]) => [key, { n: a.n, ms: +a.ms.toFixed(3) }]));
  return { wall: end - s, record: recorded - s, toFirstSubmit: firstSubmitAt === null ? null : firstSubmitAt - s, host };
}

for (const make of cases) {
  if (make === 'tfjs') {
    await tfjsPeer();
    continue;
  }
  if (left() < 15000) break;
  const c = make();
  // first call (compiles), ~1 s of back-to-back calls (the H100's SM clock ramps up), then GPU time per call by profile()
  const tc = performance.now();
  T.tidy(() => void c.fn());
  await dev.sync();
  const firstMs = performance.now() - tc;
  const w0 = performance.now();
  while (performance.now() - w0 < (quick ? 200 : 1000)) await batch(c.fn, 8);
  const p = await profile(dev, async () => {
    for (let i = 0; i < 8; i++) T.tidy(() => void c.fn());
  });
  const gpuPerCall = p.gpuMs / 8;
  const row = { case: c.name, first_ms: +firstMs.toFixed(1), timing: p.timing, gpu_ms_per_call: +gpuPerCall.toFixed(4), kernels: p.kernels.slice(0, 4).map((k) => `${k.name}×${k.count} ${k.gpuMs.toFixed(3)}`), by: {} };
  for (const N of NS) {
    const per = Object.fromEntries(variants.map((v) => [v, []]));
    const detail = {};
    for (let r = 0; r < ROUNDS; r++) {
      for (const v of variants) {
        setVariant(v);
        const b = await batch(c.fn, N);
        per[v].push(b.wall / N);
        detail[v] = b; // last round's breakdown
      }
    }
    for (const v of variants) {
      const xs = per[v].sort((a, b) => a - b);
      const ms = xs[Math.floor(xs.length / 2)];
      const d = detail[v];
      row.by[`N=${N} fb=${v}`] = {
        wall_ms_per_call: +ms.toFixed(4),
        tflops: c.flop ? +((c.flop / ms) / 1e9).toFixed(2) : undefined,
        wall_over_gpu: +(ms / gpuPerCall).toFixed(3),
        last: { record_ms: +d.record.toFixed(3), to_first_submit_ms: d.toFirstSubmit === null ? null : +d.toFirstSubmit.toFixed(3), wall_ms: +d.wall.toFixed(3), host: d.host },
      };
    }
  }
  setVariant(variants[0]);
  c.free();
  dev.emptyCache?.();
  emit(row);
}

console.log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
process.exit(0);
