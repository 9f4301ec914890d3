#!/usr/bin/env node
// webattn on the shapes the TF.js and PyTorch peers run (apps/bench/gpu/tfjs_peer.mjs, torch_peers.py):
// attention forward through SDPA flash and math (unfused: matmul -> softmax -> matmul), f32 and, where the
// adapter has shader-f16, f16; matmul n³ f32/f16. Prints `ROW {...}`; --soft picks llvmpipe-sized shapes.
import { writeFileSync } from 'node:fs';
import * as T from '@webattn/core-tensor';
import { scaledDotProductAttention, sdpaKernel } from '@webattn/kernels-webgpu';

const args = process.argv.slice(2);
const json = args.includes('--json') ? args[args.indexOf('--json') + 1] : null;
const soft = args.includes('--soft');
const dev = await T.getDevice({ kind: 'webgpu' });
console.log(`webattn-peers on ${dev.info.adapter} (${dev.info.api}) features: ${dev.info.features.join(', ')}`);
const rows = [];
const emit = (r) => {
  rows.push(r);
  console.log(`ROW ${JSON.stringify(r)}`);
  if (json) writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), device: dev.info, rows }, null, 1));
};
async function time(fn, reps = 5) {
  const t0 = performance.now();
  fn().dispose();
  await dev.sync();
  const first = performance.now() - t0;
  const times = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    fn().dispose();
    await dev.sync();
    times.push(performance.now() - t);
  }
  times.sort((x, y) => x - y);
  return { first_ms: first, ms: times[Math.floor(times.length / 2)] };
}
const dtypes = dev.hasFeature('shader-f16') ? ['float32', 'float16'] : ['float32'];
const tag = (d) => (d === 'float16' ? 'f16' : 'f32');
const shapes = soft
  ? [{ B: 1, H: 4, L: 1024, E: 64 }]
  : [{ B: 1, H: 16, L: 4096, E: 64 }, { B: 8, H: 16, L: 1024, E: 64 }, { B: 128, H: 16, L: 196, E: 64, tag: 'vit' }];
for (const dtype of dtypes) {
  for (const s of shapes) {
    const { B, H, L, E } = s;
    const mk = (seed) => T.randn([B, H, L, E], { seed, device: dev, dtype });
    const [q, k, v] = [mk(1), mk(2), mk(3)];
    const flops = 4 * B * H * L * L * E;
    const row = { scenario: 'webattn', name: `${s.tag ? s.tag + ' ' : ''}attention B=${B} H=${H} L=${L} E=${E} ${tag(dtype)}` };
    for (const backend of ['flash', 'math']) {
      try {
        const r = await time(() => T.noGrad(() => sdpaKernel([backend], () => scaledDotProductAttention(q, k, v))));
        row[`${backend}_ms`] = r.ms;
        row[`${backend}_first_ms`] = r.first_ms;
        row[`${backend}_tflops`] = flops / r.ms / 1e9;
      } catch (e) {
        row[`${backend}_error`] = String(e).slice(0, 300);
      }
    }
    emit(row);
    for (const t of [q, k, v]) t.dispose();
  }
  for (const n of soft ? [128, 256, 512] : [1024, 2048, 4096]) {
    const a = T.randn([n, n], { seed: 1, device: dev, dtype });
    const b = T.randn([n, n], { seed: 2, device: dev, dtype });
    const r = await time(() => T.noGrad(() => T.matmul(a, b)), 10);
    emit({ scenario: 'webattn', name: `matmul ${n}³ ${tag(dtype)}`, ...r, tflops: (2 * n ** 3) / r.ms / 1e9 });
    a.dispose();
    b.dispose();
  }
}
dev.destroy();
process.exit(0);
