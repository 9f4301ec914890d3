#!/usr/bin/env node
// f16 flash attention on subgroup matrices (tensor cores through WGSL) vs the tile path, on the shapes of
// issue #12: B=8 H=16 L=4096 E=64 (target fwd >= 60 TFLOP/s, fwd+bwd >= 30), L=1024, ViT B=128 L=196.
// Prints `ROW {...}` lines with the adapter; timings are back-to-back calls in one flush after a warm-up
// (the H100 drops its clock between bursty submissions), first-call time = compile + one call.
// usage: node apps/bench/gpu/sgmat_attn.mjs [--json out.json] [--quick]
import { writeFileSync } from 'node:fs';
import * as T from '@webattn/core-tensor';
import { scaledDotProductAttention, sdpaKernel } from '@webattn/kernels-webgpu';
import { hasSgmatAttention, setFlashSubgroupMatrix } from '@webattn/kernels-webgpu/internal';

const args = process.argv.slice(2);
const json = args.includes('--json') ? args[args.indexOf('--json') + 1] : null;
const quick = args.includes('--quick');
const dev = await T.getDevice({ kind: 'webgpu' });
const caps = dev.caps;
console.log(`sgmat-attn on ${dev.info.adapter} (${dev.info.api}) tier ${dev.info.tier} features: ${dev.info.features.join(', ')}`);
console.log(`sgmat-attn subgroup sizes ${caps.subgroupMinSize}-${caps.subgroupMaxSize}; matrices ${caps.subgroupMatrix.map((c) => `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`).join(', ')}; usable: ${hasSgmatAttention(dev)}`);
const rows = [];
const emit = (r) => {
  rows.push(r);
  console.log(`ROW ${JSON.stringify(r)}`);
  if (json) writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), device: dev.info, rows }, null, 1));
};
/** first-call ms (compile + run) and the median per-call ms of back-to-back batches after ~0.3 s of warm-up. */
async function time(fn, minMs = 300) {
  let t0 = performance.now();
  fn();
  await dev.sync();
  const first = performance.now() - t0;
  t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < minMs) {
    fn();
    n++;
    if (n % 4 === 0) await dev.sync();
  }
  await dev.sync();
  const per = Math.max(2, Math.min(50, Math.round(n / 3)));
  const batches = [];
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    for (let i = 0; i < per; i++) fn();
    await dev.sync();
    batches.push((performance.now() - t) / per);
  }
  batches.sort((a, b) => a - b);
  return { first_ms: first, ms: batches[1] };
}
const shapes = [
  { B: 8, H: 16, L: 4096, E: 64 },
  { B: 8, H: 16, L: 1024, E: 64 },
  { B: 128, H: 16, L: 196, E: 64, tag: 'vit' },
  { B: 8, H: 16, L: 1024, E: 128 },
  { B: 8, H: 16, L: 4096, E: 64, causal: true },
];
const configs = quick
  ? [null]
  : (process.env.SGATTN_CONFIGS ? JSON.parse(process.env.SGATTN_CONFIGS) : [null, { rs: 32, nsg: 4, bc: 32, kt: true }, { rs: 32, nsg: 2, bc: 32 }, { rs: 32, nsg: 4, bc: 16 }, { rs: 32, nsg: 2, bc: 32, qreload: true }, { rs: 16, nsg: 4, bc: 32, kt: true }]);
// DEADLINE_S: seconds this script may spend; rows that would start later are reported as skipped
const t0 = performance.now();
const secondsLeft = () => Number(process.env.DEADLINE_S ?? 1e9) - (performance.now() - t0) / 1000;
/** Max |diff| of the subgroup-matrix forward against the tile path on a small f16 case (is this tiling correct here?). */
async function validate(cfg) {
  const [B, H, L, E] = [1, 2, 200, 64];
  const mk = (seed) => T.randn([B, H, L, E], { seed, device: dev, dtype: 'float16' });
  const [q, k, v] = [mk(11), mk(12), mk(13)];
  const f = () => T.noGrad(() => sdpaKernel(['flash'], () => scaledDotProductAttention(q, k, v, { isCausal: true })));
  setFlashSubgroupMatrix('off');
  const want = await f().toArray();
  setFlashSubgroupMatrix('auto', cfg);
  const got = await f().toArray();
  let m = 0;
  for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(got[i] - want[i]) || (Number.isNaN(got[i]) ? Infinity : 0));
  return m;
}
for (const s of shapes) {
  const { B, H, L, E } = s;
  const dtype = 'float16';
  const mk = (seed) => T.randn([B, H, L, E], { seed, device: dev, dtype });
  const [q, k, v] = [mk(1), mk(2), mk(3)];
  const g = mk(4);
  const flops = (4 * B * H * L * L * E) / (s.causal ? 2 : 1);
  const name = `${s.tag ? s.tag + ' ' : ''}B=${B} H=${H} L=${L} E=${E}${s.causal ? ' causal' : ''} f16`;
  const fwd = () => T.noGrad(() => sdpaKernel(['flash'], () => scaledDotProductAttention(q, k, v, { isCausal: !!s.causal }))).dispose();
  const fwdBwd = () => {
    const [qg, kg, vg] = [q, k, v].map((t) => t.detach().requiresGrad_());
    const o = sdpaKernel(['flash'], () => scaledDotProductAttention(qg, kg, vg, { isCausal: !!s.causal }));
    o.backward(g);
    o.dispose();
    for (const t of [qg, kg, vg]) t.grad.dispose();
  };
  for (const cfg of s.E === 64 && !s.causal && s.L === 4096 ? configs : [null]) {
    const row = { scenario: 'sgmat', name, config: cfg ? JSON.stringify(cfg) : 'auto' };
    if (secondsLeft() < 12) {
      emit({ ...row, skipped: 'time budget' });
      continue;
    }
    try {
      row.maxdiff_vs_tiles = await validate(cfg);
      setFlashSubgroupMatrix('auto', cfg);
      const r = await time(fwd);
      Object.assign(row, { fwd_ms: r.ms, fwd_first_ms: r.first_ms, fwd_tflops: flops / r.ms / 1e9 });
      if (!cfg && process.env.SGATTN_BWD === '1') {
        const rb = await time(fwdBwd);
        Object.assign(row, { fwdbwd_ms: rb.ms, fwdbwd_first_ms: rb.first_ms, fwdbwd_tflops: (3.5 * flops) / rb.ms / 1e9 });
      }
    } catch (e) {
      row.error = String(e).slice(0, 400);
    }
    emit(row);
  }
  if (!quick && secondsLeft() > 8) {
    // the tile path on the same inputs (f16 storage, f32 scalar math)
    const row = { scenario: 'tiles', name };
    try {
      setFlashSubgroupMatrix('off');
      const r = await time(fwd, 200);
      Object.assign(row, { fwd_ms: r.ms, fwd_first_ms: r.first_ms, fwd_tflops: flops / r.ms / 1e9 });
    } catch (e) {
      row.error = String(e).slice(0, 400);
    }
    emit(row);
  }
  setFlashSubgroupMatrix('off');
  for (const t of [q, k, v, g]) t.dispose();
}
dev.destroy();
process.exit(0);
