#!/usr/bin/env node
// f16 flash attention on subgroup matrices (tensor cores through WGSL) vs the tile path, on the shapes of
// issue #12: B=8 H=16 L=4096 E=64 (target fwd >= 60 TFLOP/s, fwd+bwd >= 30), L=1024, ViT B=128 L=196.
// Prints `ROW {...}` lines with the adapter; timings are back-to-back calls in one flush after a warm-up
// (the H100 drops its clock between bursty submissions), first-call time = compile + one call.
// usage: node apps/bench/gpu/sgmat_attn.mjs [--json out.json] [--quick]
//        node apps/bench/gpu/sgmat_attn.mjs --ab [--json out.json]
// --ab: the A/B of the SgmatConfig options (vector staging `vec`, two-lane softmax `split`, Kᵀ staging `kt`, ...)
// against the default ('auto' = what sgmatPlan picks): each config is first checked against a float64 reference
// (B=1 H=2 L=200 E=64, f16 inputs, same pipeline as the timed shapes), then timed at B=8 H=16 L=4096, B=8 L=1024
// and ViT B=128 L=196 (E=64, f16, not causal). One `AB` table at the end. Configs: SGATTN_AB_CONFIGS (JSON list,
// null = default); AB_MIN_MS: warm-up per row (default 150); DEADLINE_S as below.
import { writeFileSync } from 'node:fs';
import * as T from '@webattn/core-tensor';
import { scaledDotProductAttention, sdpaKernel } from '@webattn/kernels-webgpu';
import { hasSgmatAttention, setFlashSubgroupMatrix } from '@webattn/kernels-webgpu/internal';
import { flashAttnVarlen } from '@webattn/varlen';
import { varlenLengths } from './common.mjs';

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
/** Max |diff| of the forward under `cfg` against float64 loops from the same f16 inputs (B=1 H=2 L=200 E=64, not causal). */
// AB_EMULATE=1: a local dry run of --ab on a software adapter (the emulated kernel, f32, tiny shapes; no speed meaning)
const abEmu = process.env.AB_EMULATE === '1';
const abMode = abEmu ? 'emulate' : 'auto';
const abDtype = abEmu ? 'float32' : 'float16';
async function validateRef(cfg) {
  const [B, H, L, E] = abEmu ? [1, 1, 40, 16] : [1, 2, 200, 64];
  const mk = (seed) => T.randn([B, H, L, E], { seed, device: dev, dtype: abDtype });
  const [q, k, v] = [mk(21), mk(22), mk(23)];
  setFlashSubgroupMatrix(abMode, cfg);
  const o = T.noGrad(() => sdpaKernel(['flash'], () => scaledDotProductAttention(q, k, v)));
  const [qa, ka, va, got] = [await q.toArray(), await k.toArray(), await v.toArray(), await o.toArray()];
  for (const t of [q, k, v, o]) t.dispose();
  let m = 0;
  const s = new Float64Array(L);
  for (let bh = 0; bh < B * H; bh++)
    for (let i = 0; i < L; i++) {
      let mx = -Infinity;
      for (let j = 0; j < L; j++) {
        let x = 0;
        for (let e = 0; e < E; e++) x += qa[(bh * L + i) * E + e] * ka[(bh * L + j) * E + e];
        s[j] = x / Math.sqrt(E);
        mx = Math.max(mx, s[j]);
      }
      let l = 0;
      for (let j = 0; j < L; j++) l += (s[j] = Math.exp(s[j] - mx));
      for (let e = 0; e < E; e++) {
        let acc = 0;
        for (let j = 0; j < L; j++) acc += s[j] * va[(bh * L + j) * E + e];
        const g = got[(bh * L + i) * E + e];
        m = Math.max(m, Number.isNaN(g) ? Infinity : Math.abs(g - acc / l));
      }
    }
  return m;
}
if (args.includes('--ab')) {
  const base = abEmu ? { rs: 16, nsg: 2, bc: 16 } : { rs: 16, nsg: 8, bc: 16 };
  const abConfigs = process.env.SGATTN_AB_CONFIGS
    ? JSON.parse(process.env.SGATTN_AB_CONFIGS)
    : [
        null,
        { ...base, vec: true },
        { ...base, split: 'shuffle' },
        { ...base, split: 'wg' },
        { ...base, vec: true, split: 'shuffle' },
        { ...base, vec: true, split: 'shuffle', kt: true },
        { rs: 16, nsg: 8, bc: 32, vec: true, split: 'shuffle' },
        { rs: 16, nsg: 4, bc: 16, vec: true, split: 'shuffle' },
        { rs: 16, nsg: 4, bc: 32, vec: true, split: 'shuffle' },
      ];
  // AB_SHAPES=wide adds E=128 and causal L=1024/2048/4096 (the causal rows count half the flops)
  const wide = process.env.AB_SHAPES === 'wide';
  const abShapes = abEmu ? [{ B: 1, H: 1, L: 48, E: 16 }, ...(wide ? [{ B: 1, H: 1, L: 48, E: 16, causal: true }] : [])] : [
    { B: 8, H: 16, L: 4096, E: 64 },
    { B: 8, H: 16, L: 1024, E: 64 },
    { B: 128, H: 16, L: 196, E: 64, tag: 'vit' },
    ...(wide
      ? [
          { B: 8, H: 16, L: 1024, E: 128 },
          { B: 8, H: 16, L: 1024, E: 64, causal: true },
          { B: 8, H: 16, L: 2048, E: 64, causal: true },
          { B: 8, H: 16, L: 4096, E: 64, causal: true },
          // packed varlen (flashAttnVarlen), causal, the lengths of webattn_peers.mjs's varlen rows
          { B: 16, H: 16, L: 2048, E: 64, causal: true, varlen: true },
        ]
      : []),
  ];
  const minMs = Number(process.env.AB_MIN_MS ?? 150);
  const inputs = abShapes.map((s) => {
    if (s.varlen) {
      const lengths = varlenLengths(s.B, s.L);
      const total = lengths.reduce((a, n) => a + n, 0);
      const cu = Int32Array.from([0, ...lengths.map((_, i) => lengths.slice(0, i + 1).reduce((a, n) => a + n, 0))]);
      const mk = (seed) => T.randn([total, s.H, s.E], { seed, device: dev, dtype: abDtype });
      const [q, k, v] = [mk(1), mk(2), mk(3)];
      return {
        ...s, q, k, v, flops: (2 * s.H * s.E * lengths.reduce((a, n) => a + n * n, 0)),
        run: () => T.noGrad(() => flashAttnVarlen(q, k, v, { cuSeqlensQ: cu, maxSeqlenQ: s.L, causal: true })).dispose(),
        name: `varlen B=${s.B} H=${s.H} lengths 1..${s.L} E=${s.E} causal ${abEmu ? 'f32 emulated' : 'f16'}`,
      };
    }
    const mk = (seed) => T.randn([s.B, s.H, s.L, s.E], { seed, device: dev, dtype: abDtype });
    return { ...s, q: mk(1), k: mk(2), v: mk(3), name: `${s.tag ? s.tag + ' ' : ''}B=${s.B} H=${s.H} L=${s.L} E=${s.E}${s.causal ? ' causal' : ''} ${abEmu ? 'f32 emulated' : 'f16'}` };
  });
  const table = [];
  for (const cfg of abConfigs) {
    const config = cfg ? JSON.stringify(cfg) : 'default';
    const line = { config };
    if (secondsLeft() < 6) {
      emit({ scenario: 'sgmat-ab', config, skipped: 'time budget' });
      continue;
    }
    try {
      const t = performance.now();
      line.maxdiff = await validateRef(cfg);
      line.compile_ms = performance.now() - t;
      for (const s of inputs) {
        const flops = s.flops ?? (4 * s.B * s.H * s.L * s.L * s.E) / (s.causal ? 2 : 1);
        const fwd = s.run ?? (() => T.noGrad(() => sdpaKernel(["flash"], () => scaledDotProductAttention(s.q, s.k, s.v, { isCausal: !!s.causal }))).dispose());
        const r = await time(fwd, minMs);
        line[s.name] = { ms: r.ms, tflops: flops / r.ms / 1e9 };
        emit({ scenario: 'sgmat-ab', name: s.name, config, maxdiff: line.maxdiff, fwd_ms: r.ms, fwd_tflops: flops / r.ms / 1e9, compile_ms: line.compile_ms });
      }
    } catch (e) {
      line.error = String(e).slice(0, 300);
      emit({ scenario: 'sgmat-ab', config, error: line.error });
    }
    table.push(line);
  }
  setFlashSubgroupMatrix('auto');
  console.log(`AB on ${dev.info.adapter}: fwd ms (TFLOP/s) per shape; maxdiff vs float64 (f16 inputs, tolerance ~3e-3)`);
  console.log(`AB ${['config'.padEnd(72), ...inputs.map((s) => s.name.padEnd(30)), 'maxdiff', 'compile+check ms'].join(' | ')}`);
  for (const l of table) {
    const cells = inputs.map((s) => (l[s.name] ? `${l[s.name].ms.toFixed(2)} ms (${l[s.name].tflops.toFixed(1)})` : '-').padEnd(30));
    console.log(`AB ${[l.config.padEnd(72), ...cells, l.error ? `ERROR ${l.error}` : l.maxdiff?.toExponential(2), l.compile_ms?.toFixed(0) ?? '-'].join(' | ')}`);
  }
  for (const s of inputs) for (const t of [s.q, s.k, s.v]) t.dispose();
  dev.destroy();
  process.exit(0);
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
