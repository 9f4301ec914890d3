#!/usr/bin/env node
// Matmul microbenchmarks on a real GPU (the H100 through Dawn/Vulkan): the f32 tilings, the f16 tiled
// kernel, a sweep of subgroup-matrix tilings (each checked against the tiled f16 result), and two
// probes of where subgroup-matrix time goes: MMAs alone on register matrices, and matrices loaded
// straight from storage (no workgroup staging). Prints `ROW {...}` lines; PROBE_SECONDS bounds the sweep
// (each subgroup-matrix pipeline takes tens of seconds to compile on the H100).
// PROBE_PART=ab (default): an interleaved A/B of the f32 and f16 kernel variants against TF.js-WebGPU's matMul on
// the same device, at n³ and the models' shapes (GPT-2 small forward, input- and weight-gradient products,
// ViT-B/16 at batch 32 = 6304 rows): every variant of a shape is timed in each of ROUNDS rounds (batches of
// ≥ 40 ms, back to back), the median reported, so clock drift hits all variants alike.
// PROBE_PART=all | f32 | repeat: the older sweeps below.
//   node apps/bench/gpu/matmul_probe.mjs [--json FILE] [--quick]
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

// PROBE_TOGGLES=a,b adds Dawn toggles (disable_robustness, skip_validation, disable_workgroup_init) to
// the device webattn creates: dawn.node's create() is wrapped before the webgpu package loads it.
const toggles = process.env.PROBE_TOGGLES;
if (toggles) {
  const req = createRequire(import.meta.url);
  const native = req(join(dirname(req.resolve('webgpu')), 'dist', `${process.platform}-${process.arch}`, 'dawn.node'));
  const orig = native.create;
  native.create = (opts) => orig(opts.some((o) => o.startsWith('enable-dawn-features=')) ? opts.map((o) => (o.startsWith('enable-dawn-features=') ? `${o},${toggles}` : o)) : [...opts, `enable-dawn-features=${toggles}`]);
}
const part = process.env.PROBE_PART ?? 'ab';
const T = await import('@webattn/core-tensor');
const K = await import('@webattn/kernels-webgpu/internal');
const { profile } = await import('@webattn/kernels-webgpu');

const args = process.argv.slice(2);
const json = args.includes('--json') ? args[args.indexOf('--json') + 1] : null;
const quick = args.includes('--quick');
const budget = Number(process.env.PROBE_SECONDS ?? 240) * 1000;
const start = performance.now();
const left = () => budget - (performance.now() - start);
const dev = await T.getDevice({ kind: 'webgpu' });
console.log(`matmul-probe on ${dev.info.adapter} (${dev.info.api}) features: ${dev.info.features.join(', ')} toggles: ${toggles ?? 'default'}`);
const rows = [];
const emit = (r) => {
  rows.push(r);
  console.log(`ROW ${JSON.stringify(r)}`);
  if (json) writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), device: dev.info, rows }, null, 1));
};

/** First call (compile + run) and the mean of `reps` back-to-back runs, synced once. */
async function time(fn, reps = 10) {
  const t0 = performance.now();
  fn().dispose();
  await dev.sync();
  const first = performance.now() - t0;
  fn().dispose();
  await dev.sync();
  const t1 = performance.now();
  for (let i = 0; i < reps; i++) fn().dispose();
  await dev.sync();
  return { first_ms: first, ms: (performance.now() - t1) / reps };
}
const tf = (n, ms) => (2 * n ** 3) / ms / 1e9;

async function maxRelDiff(x, y) {
  const a = await x.toArray();
  const b = await y.toArray();
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return Number.isNaN(d) ? Infinity : d / m;
}

// ---------------------------------------------------------------- ab: variants vs TF.js, interleaved
if (part === 'ab') {
  const { execSync } = await import('node:child_process');
  const smi = () => {
    try {
      return execSync('nvidia-smi --query-gpu=clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv,noheader', { timeout: 3000 }).toString().trim();
    } catch {
      return '';
    }
  };
  let tfjs = null;
  try {
    const { tfjsOn } = await import('../dist/peers/tfjs.js');
    tfjs = await tfjsOn(dev);
  } catch (e) {
    console.log(`tfjs unavailable: ${String(e).slice(0, 200)}`);
  }
  const ROUNDS = Number(process.env.PROBE_ROUNDS ?? 4);
  const BATCH_MS = Number(process.env.PROBE_BATCH_MS ?? 80);
  const WARM_MS = Number(process.env.PROBE_WARM_MS ?? 1000);
  const only = process.env.PROBE_SHAPES ? process.env.PROBE_SHAPES.split(',') : null;
  // [name, M, K, N, layout]: nn = x[M,K]·w[K,N]; nt = x[M,K]·w[N,K]ᵀ (nn.Linear, dX of Conv1D); tn = x[K,M]ᵀ·dy[K,N] (dW)
  const SHAPES_AB = quick
    ? [['sq256', 256, 256, 256, 'nn'], ['nt 200x64x96', 200, 64, 96, 'nt'], ['tn 96x200x64', 96, 200, 64, 'tn']]
    : [
        ['4096³', 4096, 4096, 4096, 'nn'],
        ['2048³', 2048, 2048, 2048, 'nn'],
        ['gpt2 qkv 8192x768x2304', 8192, 768, 2304, 'nn'],
        ['gpt2 fc 8192x768x3072', 8192, 768, 3072, 'nn'],
        ['gpt2 proj 8192x3072x768', 8192, 3072, 768, 'nn'],
        ['gpt2 attn-out 8192x768x768', 8192, 768, 768, 'nn'],
        ['gpt2 dX qkv 8192x2304x768 (dy·Wᵀ)', 8192, 2304, 768, 'nt'],
        ['gpt2 dW qkv 768x8192x2304 (xᵀ·dy)', 768, 8192, 2304, 'tn'],
        ['vit qkv 6304x768x2304 (x·Wᵀ)', 6304, 768, 2304, 'nt'],
        ['vit fc2 6304x3072x768 (x·Wᵀ)', 6304, 3072, 768, 'nt'],
      ];
  // the per-shape default (hardwareTiling) against each hardware tiling it picks from
  const F32 = (process.env.PROBE_F32 ? JSON.parse(process.env.PROBE_F32) : [
    ['default', null],
    ['SPLIT_128 (16x16 thr, 8x8)', K.SPLIT_128],
    ['SPLIT_128_K32', K.SPLIT_128_K32],
    ['SPLIT_128_T128 (8x16 thr, 8x16)', K.SPLIT_128_T128],
    ['SPLIT_128X64 (8x16 thr, 8x8)', K.SPLIT_128X64],
  ]);
  const D = K.SGMM_DEFAULT;
  // W = 8 f16 per staging load where aligned (vec4<u32> of f16 pairs) + vectorized store with fewer barriers
  const W = { ...D, wide: true, vstore: true };
  // 'default' = SGMM_DEFAULT itself: the per-layout defaults (SGMM_COL_A / SGMM_COL_B on column-major layouts)
  const F16 = (process.env.PROBE_F16 ? JSON.parse(process.env.PROBE_F16) : [
    ['default', D],
    ['16x8', { ...D, nsz: 8, tn: 8 }],
    ['W', W],
    ['W 16x8', { ...W, nsz: 8, tn: 8 }],
    ['W tk64', { ...W, tk: 64 }],
    ['W 8sg 128x256', { ...W, sgn: 4 }],
  ]);
  const make = (M, Kd, N, layout, dtype) => {
    const ashape = layout === 'tn' ? [Kd, M] : [M, Kd];
    const bshape = layout === 'nt' ? [N, Kd] : [Kd, N];
    const a = T.randn(ashape, { seed: 1, device: dev, dtype });
    const b = T.randn(bshape, { seed: 2, device: dev, dtype });
    const fa = layout === 'tn' ? a.transpose(0, 1) : a;
    const fb = layout === 'nt' ? b.transpose(0, 1) : b;
    return { a, b, fa, fb, ashape, bshape };
  };
  /** k back-to-back calls, one sync: ms per call. */
  const batchOf = async (fn, k) => {
    const t0 = performance.now();
    let last = null;
    for (let i = 0; i < k; i++) {
      if (last) last.dispose();
      last = fn();
    }
    await dev.sync();
    last.dispose();
    return (performance.now() - t0) / k;
  };
  const tfBatch = async (fn, k) => {
    const t0 = performance.now();
    let last = null;
    for (let i = 0; i < k; i++) {
      if (last) last.dispose();
      last = fn();
    }
    const one = tfjs.slice(tfjs.reshape(last, [-1]), 0, 1);
    await one.data();
    one.dispose();
    last.dispose();
    return (performance.now() - t0) / k;
  };
  // clock warm-up: ~1.5 s of 4096³ f32 (one synced call at a time leaves the H100 at 345 MHz)
  console.log(`clock ref: epoch_ms ${Date.now()} ${new Date().toISOString()}`);
  {
    const w = make(quick ? 256 : 4096, quick ? 256 : 4096, quick ? 256 : 4096, 'nn', 'float32');
    const w0 = performance.now();
    while (performance.now() - w0 < 1500) await batchOf(() => T.matmul(w.fa, w.fb), 20);
    w.a.dispose();
    w.b.dispose();
  }
  // shape by shape, f32 then f16 (a run cut by its time budget keeps both dtypes of the first shapes)
  // PROBE_DTYPES=float32 leaves out the f16 rows (a shorter device call)
  const DTYPES = (process.env.PROBE_DTYPES ?? 'float32,float16').split(',');
  for (const [name, M, Kd, N, layout] of SHAPES_AB) {
    if (only && !only.some((o) => name.startsWith(o))) continue;
    for (const dtype of DTYPES) {
      if (dtype === 'float16' && !K.hasSubgroupMatrixF16(dev)) break;
      const variants = dtype === 'float32' ? F32 : F16;
      if (left() < 15_000) {
        emit({ name, dtype, skipped: 'probe time budget' });
        continue;
      }
      const flop = 2 * M * Kd * N;
      // a pool full of earlier shapes' size classes made every output allocate (GPU idle, SM clock down): start clean
      dev.emptyCache();
      const ops = make(M, Kd, N, layout, dtype);
      const set = (cfg) => (dtype === 'float32' ? K.setTiledMatmul(cfg) : K.setSubgroupMatrixMatmul(cfg ?? D));
      const entries = [];
      let ref = null;
      for (const [vname, cfg] of variants) {
        set(cfg);
        const t0 = performance.now();
        try {
          const out = T.matmul(ops.fa, ops.fb);
          await dev.sync();
          const first = performance.now() - t0;
          // outputs up to 6.3M elements (2048², the models' N = 768 products, dW) are checked against the first variant
          let rel = null;
          if (M * N > 6_400_000) out.dispose();
          else if (!ref) ref = out;
          else {
            rel = await maxRelDiff(out, ref);
            out.dispose();
          }
          const one = await batchOf(() => T.matmul(ops.fa, ops.fb), 2);
          entries.push({ vname, cfg, first_ms: first, rel, k: Math.max(2, Math.min(128, Math.ceil(BATCH_MS / one))), times: [], wins: [], fn: () => T.matmul(ops.fa, ops.fb) });
        } catch (e) {
          emit({ name, dtype, layout, kernel: vname, error: String(e).slice(0, 400) });
        }
      }
      let tfe = null;
      if (tfjs && dtype === 'float32') {
        const ta = tfjs.randomNormal(ops.ashape, 0, 1, 'float32', 1);
        const tb = tfjs.randomNormal(ops.bshape, 0, 1, 'float32', 2);
        const fn = () => tfjs.matMul(ta, tb, layout === 'tn', layout === 'nt');
        const t0 = performance.now();
        await tfBatch(fn, 1);
        const first = performance.now() - t0;
        const one = await tfBatch(fn, 2);
        tfe = { first_ms: first, k: Math.max(2, Math.min(128, Math.ceil(BATCH_MS / one))), times: [], wins: [], fn, ta, tb };
      }
      // untimed: ≥ WARM_MS of the same work back to back, so the SM clock is up before the timed rounds (after
      // the compiles and read-backs above the H100 sits at 345 MHz; 40 ms batches did not bring it back)
      const smiBefore = smi();
      const w0 = performance.now();
      while (performance.now() - w0 < WARM_MS) {
        for (const e of entries) {
          set(e.cfg);
          await batchOf(e.fn, Math.max(1, e.k >> 1));
        }
      }
      // timed rounds; each batch's wall-clock window (epoch ms) is kept so the background nvidia-smi log
      // (clocks.csv of the run) gives the SM clock each variant ran at
      for (let r = 0; r < ROUNDS; r++) {
        for (const e of entries) {
          set(e.cfg);
          const w0 = Date.now();
          e.times.push(await batchOf(e.fn, e.k));
          e.wins.push([w0, Date.now()]);
        }
        if (tfe) {
          const w0 = Date.now();
          tfe.times.push(await tfBatch(tfe.fn, tfe.k));
          tfe.wins.push([w0, Date.now()]);
        }
      }
      // GPU time per dispatch (timestamp queries around each dispatch) of one batch of each variant: kernel time
      // apart from host gaps between dispatches
      for (const e of entries) {
        set(e.cfg);
        try {
          const pr = await profile(dev, async () => {
            await batchOf(e.fn, Math.max(2, e.k >> 1));
          });
          e.gpu_ms = pr.timing === 'timestamp-query' ? pr.gpuMs / pr.counters.dispatches : null;
          e.wall_prof_ms = pr.wallMs / Math.max(2, e.k >> 1);
        } catch (err) {
          e.gpu_err = String(err).slice(0, 120);
        }
      }
      const clocks = `${smiBefore} -> ${smi()}`;
      const med = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
      const tfMs = tfe ? med(tfe.times) : null;
      for (const e of entries) {
        const ms = med(e.times);
        emit({ name, dtype, layout, M, K: Kd, N, kernel: e.vname, cfg: e.cfg, ms, tflops: flop / ms / 1e9, first_ms: e.first_ms, rel_vs_first: e.rel, times: e.times, wins: e.wins, gpu_ms: e.gpu_ms, gpu_tflops: e.gpu_ms ? flop / e.gpu_ms / 1e9 : null, gpu_err: e.gpu_err, tfjs_ms: tfMs, vs_tfjs: tfMs ? tfMs / ms : null, smi: clocks });
      }
      if (tfe) {
        emit({ name, dtype, layout, M, K: Kd, N, kernel: 'tfjs matMul', ms: tfMs, tflops: flop / tfMs / 1e9, first_ms: tfe.first_ms, times: tfe.times, wins: tfe.wins, smi: clocks });
        tfe.ta.dispose();
        tfe.tb.dispose();
      }
      if (ref) ref.dispose();
      ops.a.dispose();
      ops.b.dispose();
      set(null);
    }
  }
  K.setTiledMatmul(null);
  K.setSubgroupMatrixMatmul(K.SGMM_DEFAULT);
  dev.destroy();
  process.exit(0);
}

// ---------------------------------------------------------------- repeat: the same kernels again and again
if (part === 'repeat') {
  const { execSync } = await import('node:child_process');
  const smi = () => {
    try {
      return execSync('nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu --format=csv,noheader').toString().trim();
    } catch {
      return '';
    }
  };
  const n = 4096;
  for (let i = 0; i < 6; i++) {
    const fresh = i % 2 === 0;
    for (const dtype of ['float16', 'float32']) {
      const a = T.randn([n, n], { seed: 1 + i, device: dev, dtype });
      const b = T.randn([n, n], { seed: 2 + i, device: dev, dtype });
      const r = await time(() => T.matmul(a, b), 20);
      emit({ name: `matmul ${n}³ ${dtype === 'float16' ? 'f16' : 'f32'}`, kernel: `default (${dtype === 'float16' ? 'sgmm' : 'tiled'}), repeat ${i}`, ...r, tflops: tf(n, r.ms), smi: smi() });
      a.dispose();
      b.dispose();
    }
    void fresh;
  }
  dev.destroy();
  process.exit(0);
}

// ---------------------------------------------------------------- f32
const sizes = quick ? [256, 512] : [1024, 2048, 4096];
const N = sizes[sizes.length - 1];
for (const n of sizes) {
  const a = T.randn([n, n], { seed: 1, device: dev });
  const b = T.randn([n, n], { seed: 2, device: dev });
  const r = await time(() => T.matmul(a, b));
  emit({ name: `matmul ${n}³ f32`, kernel: 'tiled default', ...r, tflops: tf(n, r.ms), toggles });
  if (n === N && part === 'all') {
    for (const cfg of [{ wg: 16, bk: 16, tm: 8, tn: 8 }, { wg: 16, bk: 32, tm: 8, tn: 4 }, { wg: 8, bk: 16, tm: 8, tn: 8 }, { wg: 16, bk: 16, tm: 4, tn: 4 }]) {
      K.setTiledMatmul(cfg);
      const r2 = await time(() => T.matmul(a, b));
      emit({ name: `matmul ${n}³ f32`, kernel: `tiled ${JSON.stringify(cfg)}`, ...r2, tflops: tf(n, r2.ms), toggles });
    }
    K.setTiledMatmul(null);
  }
  a.dispose();
  b.dispose();
}

// ---------------------------------------------------------------- f16
if (dev.hasFeature('shader-f16')) {
  const a = T.randn([N, N], { seed: 1, device: dev, dtype: 'float16' });
  const b = T.randn([N, N], { seed: 2, device: dev, dtype: 'float16' });
  K.setSubgroupMatrixMatmul(null);
  const ref = T.matmul(a, b);
  const r = await time(() => T.matmul(a, b));
  emit({ name: `matmul ${N}³ f16`, kernel: 'tiled f16 (f32 accumulate)', ...r, tflops: tf(N, r.ms) });
  if (K.hasSubgroupMatrixF16(dev)) {
    const D = K.SGMM_DEFAULT;
    const sweep = part === 'all'
      ? [D, { ...D, double: true }, { ...D, sgm: 4, sgn: 2, tm: 2, tn: 4 }, { ...D, vec: false }, { ...D, nsz: 8, tn: 8 }, { ...D, tk: 64 }, { ...D, tk: 16 }, D]
      : [D];
    for (const cfg of sweep) {
      if (left() < 45_000) {
        emit({ name: `matmul ${N}³ f16`, kernel: `sgmm ${JSON.stringify(cfg)}`, skipped: 'probe time budget' });
        continue;
      }
      K.setSubgroupMatrixMatmul(cfg);
      try {
        const r2 = await time(() => T.matmul(a, b), 20);
        const out = T.matmul(a, b);
        const err = await maxRelDiff(out, ref);
        out.dispose();
        emit({ name: `matmul ${N}³ f16`, kernel: `sgmm ${JSON.stringify(cfg)}`, ...r2, tflops: tf(N, r2.ms), rel_err_vs_tiled: err, toggles });
      } catch (e) {
        emit({ name: `matmul ${N}³ f16`, kernel: `sgmm ${JSON.stringify(cfg)}`, error: String(e).slice(0, 600) });
      }
    }
    K.setSubgroupMatrixMatmul(K.SGMM_DEFAULT);
  }
  ref.dispose();
  a.dispose();
  b.dispose();
  if (K.hasSubgroupMatrixF16(dev) && !quick && left() > 20_000) {
    const M = 8192;
    const a8 = T.randn([M, M], { seed: 1, device: dev, dtype: 'float16' });
    const b8 = T.randn([M, M], { seed: 2, device: dev, dtype: 'float16' });
    const r8 = await time(() => T.matmul(a8, b8), 10);
    emit({ name: `matmul ${M}³ f16`, kernel: `sgmm ${JSON.stringify(K.SGMM_DEFAULT)}`, ...r8, tflops: tf(M, r8.ms), toggles });
    a8.dispose();
    b8.dispose();
  }
  if (K.hasSubgroupMatrixF16(dev) && part === 'all' && left() > 30_000) await microbench();
}
dev.destroy();
process.exit(0);

// ---------------------------------------------------------------- raw subgroup-matrix probes
async function raw(label, code, buffers, grid, flops) {
  const g = dev.gpu;
  g.pushErrorScope('validation');
  const t0 = performance.now();
  const module = g.createShaderModule({ code });
  const pipeline = g.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const bind = g.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: buffers.map((b, i) => ({ binding: i, resource: { buffer: b } })) });
  const go = (reps) => {
    const enc = g.createCommandEncoder();
    for (let i = 0; i < reps; i++) {
      const p = enc.beginComputePass();
      p.setPipeline(pipeline);
      p.setBindGroup(0, bind);
      p.dispatchWorkgroups(...grid);
      p.end();
    }
    g.queue.submit([enc.finish()]);
    return g.queue.onSubmittedWorkDone();
  };
  await go(1);
  const err = await g.popErrorScope();
  if (err) return emit({ name: label, error: err.message.slice(0, 600) });
  const first = performance.now() - t0;
  await go(2);
  const t1 = performance.now();
  await go(20);
  const ms = (performance.now() - t1) / 20;
  emit({ name: label, first_ms: first, ms, tflops: flops / ms / 1e9, toggles });
}

async function microbench() {
  const g = dev.gpu;
  const n = N;
  const buf = (bytes) => g.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE });
  const A = buf(n * n * 2);
  const B = buf(n * n * 2);
  const C = buf(n * n * 4);
  const head = 'diagnostic(off, chromium.subgroup_matrix_uniformity);\nenable f16;\nenable subgroups;\nenable chromium_experimental_subgroup_matrix;\n';
  const L = 'subgroup_matrix_left<f16, 16, 16>';
  const R = 'subgroup_matrix_right<f16, 16, 16>';
  const Cm = 'subgroup_matrix_result<f32, 16, 16>';
  const lines = (k, f) => Array.from({ length: k }, (_, i) => f(i)).join('\n');
  const acc = (tm, tn) => lines(tm * tn, (i) => `  var c${i}: ${Cm};`);
  const mm = (tm, tn) => lines(tm, (i) => lines(tn, (j) => `    c${i * tn + j} = subgroupMatrixMultiplyAccumulate(l${i}, r${j}, c${i * tn + j});`));
  // 1) MMAs alone: 4 subgroups per workgroup, 4x4 accumulators, operands loaded once from workgroup memory
  {
    const iters = 256;
    const wgs = 1024;
    const code = `${head}
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
var<workgroup> s: array<f16, 4096>;
@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let sg = lidx / 32u;
  s[lidx] = f16(f32(lidx) * 0.001);
  workgroupBarrier();
${acc(4, 4)}
${lines(4, (i) => `  let l${i} = subgroupMatrixLoad<${L}>(&s, ${i * 256}u, false, 16u);`)}
${lines(4, (j) => `  let r${j} = subgroupMatrixLoad<${R}>(&s, ${j * 256 + 1024}u, false, 16u);`)}
  for (var it = 0u; it < ${iters}u; it = it + 1u) {
${mm(4, 4)}
  }
${lines(16, (i) => `  subgroupMatrixStore(&out, (wid.x * 4u + sg) * 4096u + ${i * 256}u, c${i}, false, 16u);`)}
}`;
    await raw('sgmm probe: MMA only (4x4 accumulators per subgroup, no memory traffic in the loop)', code, [C], [wgs, 1, 1], wgs * 4 * iters * 16 * 2 * 16 ** 3);
  }
  // 2) matrices straight from storage, no workgroup staging: each subgroup a 64x64 block (4x4 matrices)
  {
    const code = `${head}
@group(0) @binding(0) var<storage, read> a: array<f16>;
@group(0) @binding(1) var<storage, read> b: array<f16>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let sg = lidx / 32u;
  let m0 = wid.y * 128u + (sg % 2u) * 64u;
  let n0 = wid.x * 128u + (sg / 2u) * 64u;
${acc(4, 4)}
  for (var k = 0u; k < ${n}u; k = k + 16u) {
${lines(4, (i) => `    let l${i} = subgroupMatrixLoad<${L}>(&a, (m0 + ${i * 16}u) * ${n}u + k, false, ${n}u);`)}
${lines(4, (j) => `    let r${j} = subgroupMatrixLoad<${R}>(&b, k * ${n}u + n0 + ${j * 16}u, false, ${n}u);`)}
${mm(4, 4)}
  }
${lines(4, (i) => lines(4, (j) => `  subgroupMatrixStore(&out, (m0 + ${i * 16}u) * ${n}u + n0 + ${j * 16}u, c${i * 4 + j}, false, ${n}u);`))}
}`;
    await raw(`sgmm probe: ${n}³ loads straight from storage (128x128 workgroup tile, f32 store)`, code, [A, B, C], [n / 128, n / 128, 1], 2 * n ** 3);
  }
}
