#!/usr/bin/env node
// Microbenchmarks of subgroup matrices (tensor cores through WGSL) on the device: where does the time of
// the subgroup-matrix matmul / attention go? Each row is one small raw kernel timed in back-to-back
// batches of dispatches in one command encoder (timeBatches of common.mjs, after a clock ramp):
//   mma          MMAs alone on register operands (16x16x16 and 16x8x16, f32 and f16 accumulate)
//   load         subgroupMatrixLoad from workgroup memory vs from storage, 4 loads + 4 MMAs per step
//   store        subgroupMatrixStore of a result matrix to workgroup memory vs storage
//   staging      copying a 128x64 f16 tile storage → workgroup: scalar f16 vs vec4<f16> loads
//   matmul       the library's f16 matmul 4096³ (single vs double-buffered staging, vec4 vs scalar)
//   toggles      the same set again in a child process with Dawn's disable_robustness,
//                disable_workgroup_init and skip_validation toggles
// Prints `ROW {...}`; --json FILE writes {device, rows} (apps/bench/gpu/report.py renders the table).
// MICRO_TOGGLES=a,b (internal) runs with those toggles; DEADLINE_S bounds the run.
//   node apps/bench/gpu/sgmat_micro.mjs [--json FILE] [--quick]
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const toggles = process.env.MICRO_TOGGLES ?? '';
if (toggles) {
  // dawn.node's create() is wrapped before the webgpu package loads it (as matmul_probe.mjs does)
  const req = createRequire(import.meta.url);
  const native = req(join(dirname(req.resolve('webgpu')), 'dist', `${process.platform}-${process.arch}`, 'dawn.node'));
  const orig = native.create;
  native.create = (opts) => orig(opts.some((o) => o.startsWith('enable-dawn-features=')) ? opts.map((o) => (o.startsWith('enable-dawn-features=') ? `${o},${toggles}` : o)) : [...opts, `enable-dawn-features=${toggles}`]);
}
const { resultFile, secondsLeft, timeBatches, errText, opt, QUICK } = await import('./common.mjs');
const T = await import('@webattn/core-tensor');
const K = await import('@webattn/kernels-webgpu/internal');

const dev = await T.getDevice({ kind: 'webgpu' });
const json = opt('--json', null);
const out = resultFile(json, { device: dev.info, toggles: toggles || 'default' });
console.log(`sgmat-micro on ${dev.info.adapter} (${dev.info.api}) toggles: ${toggles || 'default'}`);
if (!K.hasSubgroupMatrixF16(dev)) {
  out.emit({ name: 'subgroup matrices', error: `adapter "${dev.info.adapter}" has no f16 subgroup matrices` });
  dev.destroy();
  process.exit(0);
}
const g = dev.gpu;
const head = 'diagnostic(off, chromium.subgroup_matrix_uniformity);\nenable f16;\nenable subgroups;\nenable chromium_experimental_subgroup_matrix;\n';
const lines = (k, f) => Array.from({ length: k }, (_, i) => f(i)).join('\n');
const WGS = QUICK ? 132 : 132 * 8; // workgroups: 8 per SM of the H100
const ITERS = QUICK ? 16 : 256;
const buf = (bytes) => g.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE });
const big = buf(64 << 20); // 64 MiB of operand data (f16), beyond L2
const sink = buf(WGS * 4 * 4096 * 4 + 4096);

/** Times a raw kernel; `work` = {flops, bytes} per dispatch. */
async function raw(group, name, code, buffers, work) {
  const row = { group, name, toggles: toggles || 'default' };
  if (secondsLeft() < 15) return out.emit({ ...row, skipped: 'time budget' });
  try {
    g.pushErrorScope('validation');
    const c0 = performance.now();
    const module = g.createShaderModule({ code });
    const pipeline = await g.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const bind = g.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: buffers.map((b, i) => ({ binding: i, resource: { buffer: b } })) });
    const go = async (reps) => {
      const enc = g.createCommandEncoder();
      const p = enc.beginComputePass();
      p.setPipeline(pipeline);
      p.setBindGroup(0, bind);
      for (let i = 0; i < reps; i++) p.dispatchWorkgroups(WGS);
      p.end();
      g.queue.submit([enc.finish()]);
      await g.queue.onSubmittedWorkDone();
    };
    await go(1);
    const err = await g.popErrorScope();
    if (err) return out.emit({ ...row, error: errText(err.message) });
    row.compile_ms = Math.round(performance.now() - c0);
    const r = await timeBatches(async (k) => {
      const t = performance.now();
      await go(k);
      return (performance.now() - t) / k;
    }, 7, 600);
    row.ms = r.ms;
    if (work.flops) row.tflops = work.flops / r.ms / 1e9;
    if (work.bytes) row.gbps = work.bytes / r.ms / 1e6;
  } catch (e) {
    row.error = errText(e);
  }
  out.emit(row);
}

const L = 'subgroup_matrix_left<f16, 16, 16>';
const R = (n) => `subgroup_matrix_right<f16, ${n}, 16>`;
const C = (t, n) => `subgroup_matrix_result<${t}, ${n}, 16>`;
const MAIN = (wg = 128) => `@compute @workgroup_size(${wg})\nfn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {\n  let sg = lidx / 32u;\n  let gsg = wid.x * ${wg / 32}u + sg;`;

// ---------------------------------------------------------------- MMA throughput alone
for (const [n, acc, tm, tn] of [[16, 'f32', 4, 4], [8, 'f32', 4, 8], [16, 'f16', 4, 4], [16, 'f32', 2, 2]]) {
  const code = `${head}@group(0) @binding(0) var<storage, read_write> out: array<${acc}>;
var<workgroup> s: array<f16, 4096>;
${MAIN()}
  s[lidx] = f16(f32(lidx % 7u) * 0.01);
  workgroupBarrier();
${lines(tm, (i) => `  let l${i} = subgroupMatrixLoad<${L}>(&s, ${i * 256}u, false, 16u);`)}
${lines(tn, (j) => `  let r${j} = subgroupMatrixLoad<${R(n)}>(&s, ${1024 + j * 128}u, false, ${n}u);`)}
${lines(tm * tn, (i) => `  var c${i}: ${C(acc, n)};`)}
  for (var it = 0u; it < ${ITERS}u; it = it + 1u) {
${lines(tm, (i) => lines(tn, (j) => `    c${i * tn + j} = subgroupMatrixMultiplyAccumulate(l${i}, r${j}, c${i * tn + j});`))}
  }
${lines(tm * tn, (i) => `  subgroupMatrixStore(&out, gsg * ${tm * tn * 16 * n}u + ${i * 16 * n}u, c${i}, false, ${n}u);`)}
}`;
  await raw('mma', `MMA only, 16x${n}x16 ${acc === 'f32' ? 'f16→f32' : 'f16→f16'}, ${tm}x${tn} accumulators/subgroup`, code, [sink], { flops: WGS * 4 * ITERS * tm * tn * 2 * 16 * n * 16 });
}

// ---------------------------------------------------------------- loads: workgroup vs storage
{
  const wgCode = `${head}@group(0) @binding(0) var<storage, read_write> out: array<f32>;
var<workgroup> s: array<f16, 8192>;
${MAIN()}
  for (var t = lidx; t < 8192u; t = t + 128u) { s[t] = f16(f32(t % 13u) * 0.01); }
  workgroupBarrier();
  let r0 = subgroupMatrixLoad<${R(16)}>(&s, 0u, false, 16u);
${lines(4, (i) => `  var c${i}: ${C('f32', 16)};`)}
  for (var it = 0u; it < ${ITERS}u; it = it + 1u) {
    let base = ((it * 4u + sg) % 8u) * 1024u;
${lines(4, (i) => `    let l${i} = subgroupMatrixLoad<${L}>(&s, base + ${i * 256}u, false, 16u);\n    c${i} = subgroupMatrixMultiplyAccumulate(l${i}, r0, c${i});`)}
  }
${lines(4, (i) => `  subgroupMatrixStore(&out, gsg * 1024u + ${i * 256}u, c${i}, false, 16u);`)}
}`;
  const bytes = WGS * 4 * ITERS * 4 * 512;
  await raw('load', 'subgroupMatrixLoad from workgroup memory (4 loads + 4 MMAs per step)', wgCode, [sink], { bytes, flops: WGS * 4 * ITERS * 4 * 8192 });
  // storage: each subgroup walks its own stretch of a 64 MiB buffer (contiguous 16x16 matrices), or reads the
  // rows of a 4096-wide row-major operand (stride 4096, as the matmul's operands)
  const stCode = (strided) => `${head}@group(0) @binding(0) var<storage, read> a: array<f16>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
var<workgroup> s: array<f16, 256>;
${MAIN()}
  s[lidx] = f16(0.01); s[lidx + 128u] = f16(0.02);
  workgroupBarrier();
  let r0 = subgroupMatrixLoad<${R(16)}>(&s, 0u, false, 16u);
${lines(4, (i) => `  var c${i}: ${C('f32', 16)};`)}
  for (var it = 0u; it < ${ITERS}u; it = it + 1u) {
    let base = ${strided ? `(gsg * 64u + (it % 16u) * ${16 * 4096}u) % ${(64 << 20) / 2 - 16 * 4096}u` : `(gsg * 32768u) % ${(64 << 20) / 2 - 32768}u + (it % 32u) * 1024u`};
${lines(4, (i) => `    let l${i} = subgroupMatrixLoad<${L}>(&a, base + ${strided ? i * 16 : i * 256}u, false, ${strided ? 4096 : 16}u);\n    c${i} = subgroupMatrixMultiplyAccumulate(l${i}, r0, c${i});`)}
  }
${lines(4, (i) => `  subgroupMatrixStore(&out, gsg * 1024u + ${i * 256}u, c${i}, false, 16u);`)}
}`;
  await raw('load', 'subgroupMatrixLoad from storage (4 loads + 4 MMAs per step, contiguous 16x16)', stCode(false), [big, sink], { bytes, flops: WGS * 4 * ITERS * 4 * 8192 });
  await raw('load', 'subgroupMatrixLoad from storage (rows of a 4096-wide operand, stride 4096)', stCode(true), [big, sink], { bytes, flops: WGS * 4 * ITERS * 4 * 8192 });
}

// ---------------------------------------------------------------- stores: workgroup vs storage
{
  const mk = (dst) => `${head}@group(0) @binding(0) var<storage, read_write> out: array<f32>;
var<workgroup> s: array<f32, ${4 * 4 * 256}>;
var<workgroup> h: array<f16, 256>;
${MAIN()}
  h[lidx] = f16(0.01); h[lidx + 128u] = f16(0.02);
  workgroupBarrier();
  let l0 = subgroupMatrixLoad<${L}>(&h, 0u, false, 16u);
  let r0 = subgroupMatrixLoad<${R(16)}>(&h, 0u, false, 16u);
  var c0: ${C('f32', 16)};
  c0 = subgroupMatrixMultiplyAccumulate(l0, r0, c0);
  for (var it = 0u; it < ${ITERS}u; it = it + 1u) {
    ${dst === 'wg' ? `subgroupMatrixStore(&s, sg * 1024u + (it % 4u) * 256u, c0, false, 16u);` : `subgroupMatrixStore(&out, gsg * 1024u + (it % 4u) * 256u, c0, false, 16u);`}
  }
  ${dst === 'wg' ? 'workgroupBarrier();\n  out[gsg * 1024u + lidx] = s[lidx * 3u];' : ''}
}`;
  const bytes = WGS * 4 * ITERS * 1024;
  await raw('store', 'subgroupMatrixStore f32 16x16 to workgroup memory', mk('wg'), [sink], { bytes });
  await raw('store', 'subgroupMatrixStore f32 16x16 to storage (L2-resident lines, rewritten)', mk('st'), [sink], { bytes });
}

// ---------------------------------------------------------------- staging storage → workgroup: scalar vs vec4
{
  const TILE = 128 * 64; // f16 elements per step
  const mk = (vec, double) => `${head}@group(0) @binding(0) var<storage, read> a: array<${vec ? 'vec4<f16>' : 'f16'}>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
var<workgroup> s: array<f16, ${TILE * (double ? 2 : 1)}>;
${MAIN()}
  var c0: ${C('f32', 16)};
  let region = (wid.x * ${TILE * 16}u) % ${(64 << 20) / 2 - TILE * 16}u;
  for (var it = 0u; it < ${ITERS / 4}u; it = it + 1u) {
    let src = region + (it % 16u) * ${TILE}u;
    let buf = ${double ? '(it % 2u) * ' + TILE + 'u' : '0u'};
    ${vec
      ? `for (var t = lidx; t < ${TILE / 4}u; t = t + 128u) { let v = a[src / 4u + t]; let o = buf + t * 4u; s[o] = v.x; s[o + 1u] = v.y; s[o + 2u] = v.z; s[o + 3u] = v.w; }`
      : `for (var t = lidx; t < ${TILE}u; t = t + 128u) { s[buf + t] = a[src + t]; }`}
    workgroupBarrier();
    let l0 = subgroupMatrixLoad<${L}>(&s, buf + sg * 2048u, false, 64u);
    let r0 = subgroupMatrixLoad<${R(16)}>(&s, buf + sg * 2048u + 16u, false, 64u);
    c0 = subgroupMatrixMultiplyAccumulate(l0, r0, c0);
    ${double ? '' : 'workgroupBarrier();'}
  }
  subgroupMatrixStore(&out, gsg * 256u, c0, false, 16u);
}`;
  const bytes = WGS * (ITERS / 4) * TILE * 2;
  await raw('staging', 'stage 128x64 f16 tile storage→workgroup, scalar f16 loads/stores', mk(false, false), [big, sink], { bytes });
  await raw('staging', 'stage 128x64 f16 tile storage→workgroup, vec4<f16> loads', mk(true, false), [big, sink], { bytes });
  await raw('staging', 'stage 128x64 f16 tile, vec4<f16> loads, double-buffered (one barrier per step)', mk(true, true), [big, sink], { bytes });
}

// ---------------------------------------------------------------- the library's f16 matmul 4096³
{
  const n = QUICK ? 1024 : 4096;
  const a = T.randn([n, n], { seed: 1, device: dev, dtype: 'float16' });
  const b = T.randn([n, n], { seed: 2, device: dev, dtype: 'float16' });
  const D = K.SGMM_DEFAULT;
  const variants = toggles ? [['default tiling', D]] : [['default tiling', D], ['double-buffered staging', { ...D, double: true }], ['scalar staging (no vec4)', { ...D, vec: false }], ['16x8x16 matrices', { ...D, nsz: 8, tn: 8 }]];
  for (const [label, cfg] of variants) {
    const row = { group: 'matmul', name: `f16 matmul ${n}³, ${label} ${JSON.stringify(cfg)}`, toggles: toggles || 'default' };
    if (secondsLeft() < 60) {
      out.emit({ ...row, skipped: 'time budget (each matmul pipeline compiles for tens of seconds)' });
      continue;
    }
    try {
      K.setSubgroupMatrixMatmul(cfg);
      const c0 = performance.now();
      T.matmul(a, b).dispose();
      await dev.sync();
      row.compile_ms = Math.round(performance.now() - c0);
      const r = await timeBatches(async (k) => {
        const t = performance.now();
        for (let i = 0; i < k; i++) T.matmul(a, b).dispose();
        await dev.sync();
        return (performance.now() - t) / k;
      }, 7, 800);
      row.ms = r.ms;
      row.tflops = (2 * n ** 3) / r.ms / 1e9;
    } catch (e) {
      row.error = errText(e);
    }
    out.emit(row);
  }
  K.setSubgroupMatrixMatmul(D);
  a.dispose();
  b.dispose();
}

// ---------------------------------------------------------------- Dawn toggles: the same again in a child
if (!toggles && process.env.MICRO_NO_TOGGLES !== '1') {
  const left = Math.floor(secondsLeft());
  if (left > 40) {
    const cj = json ? `${json}.toggles.json` : null;
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...(cj ? ['--json', cj] : []), ...(QUICK ? ['--quick'] : [])], {
      env: { ...process.env, MICRO_TOGGLES: 'disable_robustness,disable_workgroup_init,skip_validation', DEADLINE_S: String(left - 5) },
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: (left - 2) * 1000,
    });
    const text = r.stdout?.toString() ?? '';
    for (const line of text.split('\n')) if (line.startsWith('ROW ')) out.emit(JSON.parse(line.slice(4)));
    if (r.status !== 0) out.emit({ group: 'toggles', name: 'child run', error: `exit ${r.status} ${r.signal ?? ''}` });
  } else out.emit({ group: 'toggles', name: 'child run', skipped: 'time budget' });
}
dev.destroy();
process.exit(0);
