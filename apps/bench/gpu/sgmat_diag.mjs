#!/usr/bin/env node
// Diagnostics of subgroup matrices (tensor cores through WGSL) on the device, in one run: each primitive of
// the attention kernel on a tiny raw kernel against a JS oracle (exact: inputs are quarter-integers, every
// product and sum is exact in f16/f32), then the attention forward itself (debug S / P, full output) over
// its tilings, real (f16) and emulated (f32), against a float64 reference from the same inputs.
// Primitive variants:
//   pad     a 4-byte (u32) or 16-byte (vec4<u32>) workgroup variable beside the staged f16 arrays (the
//           attention kernel had a u32 flag: were the arrays then misaligned for the matrix loads?)
//   b       right matrix column-major from K staged as rows (attention's Kᵀ) or row-major
//   nsg     subgroups per workgroup, each its own 16 rows
//   zero    accumulator declared inside a loop of 2 tiles, zeroed explicitly (T()) or not (the WGSL
//           zero-init of the declaration only)
//   store   result through workgroup f32 memory (then scalar copy) or straight to storage
// usage: node apps/bench/gpu/sgmat_diag.mjs [--json out.json]
import { writeFileSync } from 'node:fs';
import * as T from '@webattn/core-tensor';
import { flashForward, hasSgmatAttention, setFlashSubgroupMatrix } from '@webattn/kernels-webgpu/internal';

const args = process.argv.slice(2);
const json = args.includes('--json') ? args[args.indexOf('--json') + 1] : null;
const dev = await T.getDevice({ kind: 'webgpu' });
const real = hasSgmatAttention(dev);
console.log(`sgmat-diag on ${dev.info.adapter} (${dev.info.api}); subgroup matrices usable: ${real}`);
const rows = [];
const emit = (r) => {
  rows.push(r);
  console.log(`ROW ${JSON.stringify(r)}`);
  if (json) writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), device: dev.info, rows }, null, 1));
};
const t0 = performance.now();
const deadline = Number(process.env.DEADLINE_S ?? 1e9) * 1000;
const left = () => deadline - (performance.now() - t0);

// ------------------------------------------------------------------------------------------ primitives
/** f16 bits of a number exactly representable in f16 (normal range or 0). */
function f16bits(x) {
  if (x === 0) return 0;
  const s = x < 0 ? 0x8000 : 0;
  let a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  const m = Math.round((a / 2 ** e - 1) * 1024);
  return s | ((e + 15) << 10) | m;
}
let seed = 7;
const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648), Math.floor((seed / 2147483648) * 17) - 8) / 4; // -2..2 step 0.25

async function primitive(v) {
  const g = dev.gpu;
  const NSG = v.nsg;
  const M = 16 * NSG;
  const K = 32;
  const N = 16;
  const A = Array.from({ length: M * K }, rnd);
  const Bt = Array.from({ length: N * K }, rnd); // B as N rows of K (attention: keys × head dim)
  const want = [];
  for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) { let x = 0; for (let k = 0; k < K; k++) x += A[i * K + k] * Bt[j * K + k]; want.push(x); }
  const SA = 40; // pbuf-like stride (f16)
  const SBc = 40; // K rows staged, stride (f16) for the column-major load
  const SBr = 24; // Bᵀ staged as K × N, stride (f16) for the row-major load
  const SS = 20; // f32 result stride in workgroup memory
  const L = 'subgroup_matrix_left<f16, 16, 16>';
  const R = 'subgroup_matrix_right<f16, 16, 16>';
  const C = 'subgroup_matrix_result<f32, 16, 16>';
  const padDecl = v.pad === 'u32' ? 'var<workgroup> pad0: u32;' : v.pad === 'vec4' ? 'var<workgroup> pad0: vec4<u32>;' : '';
  // padAt 'last': declared after the arrays with a small f32 array too (the attention kernel's linv + wg_flag order)
  const tail = v.padAt === 'last' ? `${padDecl}\nvar<workgroup> linv0: array<f32, 32>;` : '';
  const headDecl = v.padAt === 'last' ? '' : padDecl;
  const padUse = v.pad === 'u32' ? 'if (lidx == 0u) { pad0 = 7u; }' : v.pad === 'vec4' ? 'if (lidx == 0u) { pad0 = vec4<u32>(7u); }' : '';
  const padOut = v.pad === 'u32' ? 'pad0' : v.pad === 'vec4' ? 'pad0.x' : '7u';
  const code = `diagnostic(off, chromium.subgroup_matrix_uniformity);
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> a: array<f16>;
@group(0) @binding(1) var<storage, read> bt: array<f16>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${headDecl}
var<workgroup> sa: array<f16, ${M * SA}>;
var<workgroup> sb: array<f16, ${v.b === 'col' ? N * SBc : K * SBr}>;
var<workgroup> ss: array<f32, ${M * SS}>;
${tail}
@compute @workgroup_size(${32 * NSG})
fn main(@builtin(local_invocation_index) lidx: u32) {
  let sg = lidx / 32u;
  let lane = lidx % 32u;
  ${padUse}
  for (var t = lidx; t < ${M * K}u; t = t + ${32 * NSG}u) { sa[(t / ${K}u) * ${SA}u + t % ${K}u] = a[t]; }
  for (var t = lidx; t < ${N * K}u; t = t + ${32 * NSG}u) {
    let j = t / ${K}u;
    let k = t % ${K}u;
    ${v.b === 'col' ? `sb[j * ${SBc}u + k] = bt[t];` : `sb[k * ${SBr}u + j] = bt[t];`}
  }
  workgroupBarrier();
  for (var tile = 0u; tile < 2u; tile = tile + 1u) {
    var acc: ${C};${v.zero ? ` acc = ${C}();` : ''}
    for (var kb = 0u; kb < ${K / 16}u; kb = kb + 1u) {
      let l = subgroupMatrixLoad<${L}>(&sa, sg * ${16 * SA}u + kb * 16u, false, ${SA}u);
      let r = subgroupMatrixLoad<${R}>(&sb, ${v.b === 'col' ? `kb * 16u, true, ${SBc}u` : `kb * ${16 * SBr}u, false, ${SBr}u`});
      acc = subgroupMatrixMultiplyAccumulate(l, r, acc);
    }
    ${v.store === 'storage'
      ? `subgroupMatrixStore(&out, tile * ${M * N}u + sg * ${16 * N}u, acc, false, ${N}u);`
      : `subgroupMatrixStore(&ss, sg * ${16 * SS}u, acc, false, ${SS}u);
    workgroupBarrier();
    for (var e = lane; e < 256u; e = e + 32u) { out[tile * ${M * N}u + (sg * 16u + e / 16u) * ${N}u + e % 16u] = ss[(sg * 16u + e / 16u) * ${SS}u + e % 16u]; }
    workgroupBarrier();`}
  }
  ${v.padAt === 'last' ? 'if (lidx < 32u) { linv0[lidx] = f32(lidx); }\n  workgroupBarrier();' : ''}
  if (lidx == 0u) { out[${2 * M * N}u] = f32(${padOut})${v.padAt === 'last' ? ' + linv0[3]' : ''}; }
}`;
  const buf = (data, kind) => {
    const bytes = kind === 'f16' ? Math.ceil((data.length * 2) / 4) * 4 : data.length * 4;
    const b = g.createBuffer({ size: Math.max(16, bytes), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    if (kind === 'f16') {
      const u = new Uint16Array(bytes / 2);
      data.forEach((x, i) => (u[i] = f16bits(x)));
      g.queue.writeBuffer(b, 0, u);
    } else g.queue.writeBuffer(b, 0, new Float32Array(data));
    return b;
  };
  const outLen = 2 * M * N + 1;
  const bufs = [buf(A, 'f16'), buf(Bt, 'f16'), buf(new Array(outLen).fill(-999), 'f32')];
  g.pushErrorScope('validation');
  const module = g.createShaderModule({ code });
  const pipeline = g.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const bind = g.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: bufs.map((b, i) => ({ binding: i, resource: { buffer: b } })) });
  const read = g.createBuffer({ size: outLen * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = g.createCommandEncoder();
  const p = enc.beginComputePass();
  p.setPipeline(pipeline);
  p.setBindGroup(0, bind);
  p.dispatchWorkgroups(1);
  p.end();
  enc.copyBufferToBuffer(bufs[2], 0, read, 0, outLen * 4);
  g.queue.submit([enc.finish()]);
  const err = await g.popErrorScope();
  if (err) return emit({ part: 'primitive', ...v, error: err.message.slice(0, 500) });
  await read.mapAsync(GPUMapMode.READ);
  const got = Array.from(new Float32Array(read.getMappedRange().slice(0)));
  read.unmap();
  const row = { part: 'primitive', ...v };
  for (const tile of [0, 1]) {
    let bad = 0;
    let first = -1;
    for (let i = 0; i < M * N; i++) if (got[tile * M * N + i] !== want[i]) { bad++; if (first < 0) first = i; }
    row[`tile${tile}_bad`] = bad;
    if (first >= 0) row[`tile${tile}_first`] = { i: first, got: got[tile * M * N + first], want: want[first], ratio: got[tile * M * N + first] / want[first] };
  }
  // the misalignment model: results equal Q·Kᵀ with A read dA f16 early, B read dB early, stored dS f32 early?
  if (row.tile0_bad) {
    const sa = new Float64Array(M * SA);
    for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) sa[i * SA + k] = A[i * K + k];
    const sb = new Float64Array(v.b === 'col' ? N * SBc : K * SBr);
    for (let j = 0; j < N; j++) for (let k = 0; k < K; k++) sb[v.b === 'col' ? j * SBc + k : k * SBr + j] = Bt[j * K + k];
    const at = (arr, i) => (i >= 0 && i < arr.length ? arr[i] : 0);
    const model = (dA, dB, i, j) => {
      let x = 0;
      for (let k = 0; k < K; k++) x += at(sa, dA + i * SA + k) * at(sb, v.b === 'col' ? dB + j * SBc + k : dB + k * SBr + j);
      return x;
    };
    const fits = [];
    for (const dA of [0, -1, -2, -4, -6, -8]) for (const dB of [0, -1, -2, -4, -6, -8]) {
      let ok = true;
      for (let i = 0; i < 16 && ok; i++) for (let j = 0; j < N && ok; j++) if (Math.abs(model(dA, dB, i, j) - got[i * N + j]) > 1e-3) ok = false;
      if (ok) fits.push({ dA, dB });
    }
    row.shift_model = fits;
  }
  emit(row);
  bufs.forEach((b) => b.destroy());
}

if (real) {
  const base = { pad: 'none', b: 'col', nsg: 1, zero: true, store: 'wg' };
  const variants = [
    base,
    { ...base, pad: 'u32' },
    { ...base, pad: 'vec4' },
    { ...base, b: 'row' },
    { ...base, b: 'row', pad: 'u32' },
    { ...base, nsg: 4 },
    { ...base, nsg: 4, pad: 'u32' },
    { ...base, zero: false },
    { ...base, store: 'storage' },
    { ...base, store: 'storage', pad: 'u32' },
    { ...base, pad: 'u32', padAt: 'last' },
    { ...base, pad: 'u32', padAt: 'last', nsg: 2, b: 'row' },
    { ...base, pad: 'vec4', padAt: 'last' },
  ].filter((v) => !process.env.DIAG_VARIANTS || process.env.DIAG_VARIANTS.split(',').includes(String(v.padAt ?? 'first')));
  for (const v of variants) {
    try {
      await primitive(v);
    } catch (e) {
      emit({ part: 'primitive', ...v, error: String(e).slice(0, 400) });
    }
  }
}

// ------------------------------------------------------------------------------------------ attention
async function attention(dtype, mode, cfg, shape) {
  const { B, H, Lq, Lkv, E, Ev, causal } = shape;
  const q = T.randn([B, H, Lq, E], { seed: 1, device: dev, dtype });
  const k = T.randn([B, H, Lkv, E], { seed: 2, device: dev, dtype });
  const v = T.randn([B, H, Lkv, Ev], { seed: 3, device: dev, dtype });
  const [qa, ka, va] = [await q.toArray(), await k.toArray(), await v.toArray()];
  const scale = 1 / Math.sqrt(E);
  const S = [];
  const O = [];
  const LSE = [];
  for (let bh = 0; bh < B * H; bh++)
    for (let i = 0; i < Lq; i++) {
      const s = [];
      for (let j = 0; j < Lkv; j++) {
        let x = 0;
        for (let e = 0; e < E; e++) x += qa[(bh * Lq + i) * E + e] * ka[(bh * Lkv + j) * E + e];
        s.push(causal && j > i ? -Infinity : x * scale);
      }
      S.push(s);
      const m = Math.max(...s);
      const pr = s.map((x) => Math.exp(x - m));
      const l = pr.reduce((a, b) => a + b, 0);
      LSE.push(m + Math.log(l));
      for (let e = 0; e < Ev; e++) { let y = 0; for (let j = 0; j < Lkv; j++) y += (pr[j] / l) * va[(bh * Lkv + j) * Ev + e]; O.push(y); }
    }
  const row = { part: 'attention', dtype, mode, cfg: JSON.stringify(cfg), shape: JSON.stringify(shape) };
  const p = { q, k, v, scale, causal: !!causal, causalOffset: 0, mask: null, hooks: null };
  const maxDiff = (got, want) => {
    let m = 0;
    let first = -1;
    for (let i = 0; i < want.length; i++) {
      const d = Math.abs(got[i] - want[i]);
      if (!(d <= 3e-3 + 1e-2 * Math.abs(want[i])) && first < 0) first = i;
      m = Math.max(m, Number.isNaN(d) ? Infinity : d);
    }
    return { max: m, first };
  };
  try {
    if (!causal) {
      // debug S: the first tile's raw dot products (B=H=1 shapes)
      setFlashSubgroupMatrix(mode, { ...cfg, debug: 'S' });
      const r = flashForward(p);
      const got = await r.out.toArray();
      const w = Math.min(cfg.bc, Ev);
      const g2 = [];
      const w2 = [];
      for (let i = 0; i < Lq; i++) for (let c = 0; c < w; c++) { g2.push(got[i * Ev + c]); w2.push(S[i][c] / scale); }
      row.S = maxDiff(g2, w2);
    }
    setFlashSubgroupMatrix(mode, cfg);
    const r = flashForward(p);
    row.out = maxDiff(await r.out.toArray(), O);
    row.lse = maxDiff(await r.lse.toArray(), LSE);
    row.ok = row.out.first < 0 && row.lse.first < 0 && (!row.S || row.S.first < 0);
  } catch (e) {
    row.error = String(e).slice(0, 400);
  } finally {
    setFlashSubgroupMatrix('off');
  }
  emit(row);
  for (const t of [q, k, v]) t.dispose();
}

// the two fixes, undone one at a time on the real kernel (the WGSL text is patched here, in the diagnostic only):
// 'u32flag' declares the rescale flag as a 4-byte u32 again (before: misaligned staged arrays?), 'loopzero' drops the
// explicit zeroing of the accumulators declared in the key loop
let undo = [];
const origDispatch = dev.dispatch.bind(dev);
dev.dispatch = (prog, ...rest) => {
  if (!undo.length || prog.name !== 'flash_attention_forward_sgmat') return origDispatch(prog, ...rest);
  const patch = (src) => {
    let t = src;
    if (undo.includes('u32flag')) {
      t = t.replace('var<workgroup> wg_flag: vec4<u32>;', 'var<workgroup> wg_flag: u32;').replaceAll('wg_flag = vec4<u32>(0u)', 'wg_flag = 0u')
        .replaceAll('wg_flag.x = 1u', 'wg_flag = 1u').replaceAll('workgroupUniformLoad(&wg_flag).x', 'workgroupUniformLoad(&wg_flag)');
    }
    if (undo.includes('loopzero')) t = t.replace(/ (sa_\d+) = subgroup_matrix_result<f32, 16, 16>\(\);/g, '');
    return t;
  };
  return origDispatch({ ...prog, key: `${prog.key}|undo:${undo.join(',')}`, source: () => patch(prog.source()) }, ...rest);
};
if (real) {
  for (const u of [['u32flag'], ['loopzero'], ['u32flag', 'loopzero']]) {
    undo = u;
    await attention('float16', 'auto', { rs: 32, nsg: 1, bc: 32, undo: u.join('+') }, { B: 1, H: 1, Lq: 64, Lkv: 96, E: 64, Ev: 64 });
    await attention('float16', 'auto', { rs: 16, nsg: 2, bc: 16, undo: u.join('+') }, { B: 1, H: 1, Lq: 64, Lkv: 96, E: 64, Ev: 64 });
  }
  undo = [];
}

const shapes = [
  { B: 1, H: 1, Lq: 64, Lkv: 96, E: 64, Ev: 64 },
  { B: 1, H: 2, Lq: 77, Lkv: 77, E: 32, Ev: 32, causal: true },
];
const cfgs = [
  { rs: 32, nsg: 1, bc: 32 },
  { rs: 32, nsg: 2, bc: 16 },
  { rs: 32, nsg: 4, bc: 32 },
  { rs: 16, nsg: 2, bc: 16 },
  { rs: 16, nsg: 4, bc: 32 },
  { rs: 32, nsg: 2, bc: 32, kt: true },
  { rs: 32, nsg: 2, bc: 32, qreload: true },
  { rs: 16, nsg: 2, bc: 16, kt: true, qreload: true },
];
for (const shape of process.env.DIAG_PART === 'primitive' ? [] : shapes) {
  for (const cfg of cfgs) {
    if (left() < 20_000) break;
    if (real) await attention('float16', 'auto', cfg, shape);
    if (shape.E <= 32 && cfg.nsg <= 2) await attention('float32', 'emulate', cfg, shape);
  }
}
const bad = rows.filter((r) => r.error || r.tile0_bad || r.tile1_bad || r.ok === false).length;
console.log(`sgmat-diag: ${rows.length} rows, ${bad} with errors or wrong results`);
dev.destroy();
process.exit(0);
