import * as T from '@webattn/core-tensor';
import { createBlockMask, flexAttention, slidingWindow, softcap } from '@webattn/flex';
import { AdamW, GPT2LMHeadModel, gpt2Config, sdpaAttention } from '@webattn/models';
import { ortAttention, ortMatmul, type PeerRun } from '../peers/ort.js';
import { progress, timeIt, type BenchRow } from '../timing.js';

async function timePeer(p: PeerRun, reps: number): Promise<number> {
  await p.run();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await p.run();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)]!;
}

/** The wasm kernels beyond matmul and flash attention (kernels-wasm's elementwise.ts). */
const WASM_ELEMENTWISE = [
  'unary', 'binary', 'copy_into', 'reduce', 'softmax', 'layer_norm', 'layer_norm_backward', 'gelu_backward',
  'cross_entropy', 'cross_entropy_backward', 'embedding', 'embedding_backward',
];

/** Median wall time, mean process CPU time (every thread) and the first loss of a tiny GPT-2 training step. */
async function gpt2Step(device: T.Device, quick: boolean): Promise<{ ms: number; cpuMs: number; loss: number; reps: number }> {
  const cfg = gpt2Config({ vocab_size: 1024, n_positions: 256, n_embd: 64, n_layer: quick ? 1 : 2, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 });
  const B = 8;
  const L = quick ? 64 : 128;
  const ids = Int32Array.from({ length: B * L }, (_, i) => (i * 131 + (i % 7) * 17) % cfg.vocab_size);
  const inputIds = T.tensor(ids, [B, L], { dtype: 'int32', device });
  const model = new GPT2LMHeadModel(cfg, { attention: sdpaAttention, device, seed: 1 });
  const opt = new AdamW(model.parameters(), { lr: 1e-4 });
  let first = NaN;
  const step = async () => {
    const { loss } = await model.forward({ inputIds, labels: inputIds });
    if (Number.isNaN(first)) first = (await loss!.toArray())[0]!;
    loss!.backward();
    opt.step();
    opt.zeroGrad();
  };
  await T.tidyAsync(step); // warm-up (and the loss of the same first step on every device)
  await device.sync();
  const reps = quick ? 1 : 4; // --quick: one timed step after the warm-up (the software peers take seconds a step)
  const wall: number[] = [];
  let cpu = 0;
  const start = performance.now();
  while (wall.length < reps && (wall.length === 0 || performance.now() - start < 20_000)) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await T.tidyAsync(step);
    await device.sync();
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu += (c.user + c.system) / 1000;
  }
  wall.sort((a, b) => a - b);
  return { ms: wall[Math.floor(wall.length / 2)]!, cpuMs: cpu / wall.length, loss: first, reps: wall.length };
}

/**
 * A training step (forward, backward, AdamW) of a tiny GPT-2 (vocab 1024, 64 wide, 2 heads, 1 layer with --quick
 * else 2, batch 8 × 64|128 tokens, SDPA) on the wasm backend (all threads), on WebGPU (in this repo's CI: Mesa
 * llvmpipe) and on the float64 CPU reference, in the same run. Wall time is the median; CPU time is the process's
 * (all threads) per step, since the machine may be shared.
 */
async function gpt2Row(quick: boolean, threads: number): Promise<BenchRow> {
  const row: BenchRow = { scenario: 'wasm', name: `gpt2 tiny train step (${quick ? 1 : 2} layer, 8×${quick ? 64 : 128} tokens)` };
  const devices: [string, () => Promise<T.Device>][] = [
    ['wasm', () => T.getDevice({ kind: 'wasm', wasmThreads: threads, cache: false })],
    // the same device with only matmul and flash attention in wasm (everything else on the reference kernels):
    // what the elementwise/reduction/norm/loss kernels buy
    ['wasm_mm_attn_only', () => T.getDevice({ kind: 'wasm', wasmThreads: threads, cache: false })],
    ['webgpu', () => T.getDevice({ kind: 'webgpu', cache: false })],
    ['cpu_ref', async () => T.cpu()],
  ];
  for (const [key, make] of devices) {
    progress(`wasm: gpt2 train step on ${key}`);
    let dev: T.Device;
    try {
      dev = await make();
    } catch (e) {
      row[`${key}_train_ms`] = null;
      row[`${key}_note`] = `unavailable: ${String((e as Error).message ?? e).slice(0, 80)}`;
      continue;
    }
    const saved = key === 'wasm_mm_attn_only' ? WASM_ELEMENTWISE.map((n) => T.getKernel(n, 'wasm')).filter((c) => c !== undefined) : [];
    for (const c of saved) T.registerKernel({ ...T.getKernel(c.name, 'cpu')!, backend: 'wasm' });
    let r: Awaited<ReturnType<typeof gpt2Step>>;
    try {
      r = await gpt2Step(dev, quick);
    } finally {
      for (const c of saved) T.registerKernel(c);
    }
    row[`${key}_train_ms`] = r.ms;
    row[`${key}_cpu_ms`] = r.cpuMs;
    row[`${key}_loss`] = r.loss;
    if (key !== 'cpu_ref') row[`${key}_adapter`] = dev.info.adapter ?? dev.backend;
    if (key !== 'cpu_ref') dev.destroy();
  }
  const w = row.wasm_train_ms as number | null;
  if (w) {
    if (typeof row.wasm_mm_attn_only_train_ms === 'number') row.mm_attn_only_over_wasm = row.wasm_mm_attn_only_train_ms / w;
    if (typeof row.webgpu_train_ms === 'number') row.webgpu_over_wasm = row.webgpu_train_ms / w;
    if (typeof row.cpu_ref_train_ms === 'number') row.cpu_ref_over_wasm = row.cpu_ref_train_ms / w;
  }
  return row;
}

/**
 * The wasm backend against ONNX Runtime Web's wasm backend on the same cores in the same run: attention
 * B=1 H=4 L=1024 E=64 f32 forward (and webattn's forward+backward) on 1 thread and on all threads, and a
 * 1024³ matmul. Issue #16's targets: attention forward ≤ 71 ms on 1 thread (ORT-web wasm SIMD, measured in
 * Chromium), ≤ 45 ms on 2; forward+backward ≤ 3× forward; matmul ≥ 10 GFLOP/s per thread.
 */
export async function wasmScenario(_device: T.Device, quick: boolean): Promise<BenchRow[]> {
  const B = 1, H = 4, E = 64;
  const L = quick ? 512 : 1024;
  const N = quick ? 512 : 1024;
  const reps = quick ? 3 : 5;
  // imported here, not at the top: importing registers the backend, which would make it the bench's default device
  await import('@webattn/kernels-wasm');
  const rows: BenchRow[] = [];
  const all = (await import('node:os')).availableParallelism();
  for (const threads of [...new Set([1, Math.min(all, 8)])]) {
    progress(`wasm: ${threads} thread(s)`);
    const dev = await T.getDevice({ kind: 'wasm', wasmThreads: threads, cache: false });
    const q = T.randn([B, H, L, E], { seed: 1, device: dev });
    const k = T.randn([B, H, L, E], { seed: 2, device: dev });
    const v = T.randn([B, H, L, E], { seed: 3, device: dev });
    const attrs = { scale: 1 / Math.sqrt(E), causal: false, causalOffset: 0, maskKind: null, varlen: false } as const;
    const fwd = await timeIt(dev, () => T.runKernel('flash_attention', dev, [q, k, v], attrs), { reps, budgetMs: 8000 });
    const [out, lse] = T.runKernel('flash_attention', dev, [q, k, v], attrs);
    const fb = await timeIt(
      dev,
      () => {
        T.runKernel('flash_attention', dev, [q, k, v], attrs);
        T.runKernel('flash_attention_backward', dev, [q, k, v, out!, q, lse!], attrs);
      },
      { reps, budgetMs: 8000 },
    );
    const a = T.randn([N, N], { seed: 5, device: dev });
    const mm = await timeIt(dev, () => T.matmul(a, a), { reps, budgetMs: 8000 });
    progress(`wasm: ORT-web ${threads} thread(s)`);
    const peerAttn = await ortAttention(B, H, L, E, threads);
    const ortFwd = await timePeer(peerAttn, reps);
    const ortMm = await timePeer(await ortMatmul(N, N, N, threads), reps);
    const flops = 4 * B * H * L * L * E;
    rows.push({
      scenario: 'wasm',
      name: `B=${B} H=${H} L=${L} E=${E} f32, ${threads} thread${threads > 1 ? 's' : ''}`,
      webattn_fwd_ms: fwd.ms,
      ort_web_fwd_ms: ortFwd,
      fwd_speedup_vs_ort: ortFwd / fwd.ms,
      webattn_fwd_bwd_ms: fb.ms,
      fwd_bwd_over_fwd: fb.ms / fwd.ms,
      attn_gflops: flops / fwd.ms / 1e6,
      [`matmul_${N}_gflops`]: (2 * N ** 3) / mm.ms / 1e6,
      [`ort_matmul_${N}_gflops`]: (2 * N ** 3) / ortMm / 1e6,
      peer: `onnxruntime-web ${peerAttn.version} wasm (MatMul→Softmax→MatMul)`,
    });
    dev.destroy();
  }
  rows.push(await flexRow(quick, Math.min(all, 8)));
  rows.push(await gpt2Row(quick, Math.min(all, 8)));
  return rows;
}

/**
 * flexAttention on the wasm backend, its functions inside the wasm flash kernel (all threads): softcap (a score
 * function, forward and forward+backward; its tile functions as flex's wasm module and as JS) and a 256-token sliding window (a block mask: empty key tiles skipped)
 * beside the plain wasm flash forward, and the reference path (scores materialised, the user's JS per element) on
 * the float64 CPU device — what flex ran on the wasm device before its functions were compiled into the kernel.
 */
async function flexRow(quick: boolean, threads: number): Promise<BenchRow> {
  const B = 1, H = 4, E = 64;
  const L = quick ? 512 : 1024;
  const reps = quick ? 3 : 5;
  progress('wasm: flex in the wasm kernel');
  const dev = await T.getDevice({ kind: 'wasm', wasmThreads: threads, cache: false });
  const mk = (d: T.Device, grad = false) => [1, 2, 3].map((seed) => T.randn([B, H, L, E], { seed, device: d, requiresGrad: grad })) as [T.Tensor, T.Tensor, T.Tensor];
  const [q, k, v] = mk(dev);
  const sm = softcap(20);
  const win = await createBlockMask(slidingWindow(256), 1, 1, L, L, { device: dev });
  const plain = await timeIt(dev, () => T.noGrad(() => flexAttention(q, k, v).dispose()), { reps, budgetMs: 8000 });
  const soft = await timeIt(dev, () => T.noGrad(() => flexAttention(q, k, v, { scoreMod: sm }).dispose()), { reps, budgetMs: 8000 });
  const [qg, kg, vg] = mk(dev, true);
  const softFb = await timeIt(
    dev,
    () =>
      T.tidy(() => {
        flexAttention(qg, kg, vg, { scoreMod: sm }).sum().backward();
        for (const t of [qg, kg, vg]) t.grad = null;
      }),
    { reps, budgetMs: 8000 },
  );
  const window = await timeIt(dev, () => T.noGrad(() => flexAttention(q, k, v, { blockMask: win }).dispose()), { reps, budgetMs: 8000 });
  // the same functions as JS tile functions instead of flex's wasm module
  const pool = (dev as unknown as { pool: { useWasmTiles: boolean } }).pool;
  pool.useWasmTiles = false;
  const softJs = await timeIt(dev, () => T.noGrad(() => flexAttention(q, k, v, { scoreMod: sm }).dispose()), { reps, budgetMs: 8000 });
  pool.useWasmTiles = true;
  progress('wasm: flex reference path');
  const [qc, kc, vc] = mk(T.cpu());
  const ref = await timeIt(T.cpu(), () => T.noGrad(() => flexAttention(qc, kc, vc, { scoreMod: sm }).dispose()), { reps: 1, budgetMs: 8000 });
  dev.destroy();
  return {
    scenario: 'wasm',
    name: `flex B=${B} H=${H} L=${L} E=${E} f32, ${threads} thread${threads > 1 ? 's' : ''}`,
    flash_fwd_ms: plain.ms,
    softcap_fwd_ms: soft.ms,
    softcap_fwd_bwd_ms: softFb.ms,
    softcap_js_tiles_fwd_ms: softJs.ms,
    window256_fwd_ms: window.ms,
    window256_density: win.density(),
    softcap_reference_fwd_ms: ref.ms,
    softcap_speedup_vs_reference: ref.ms / soft.ms,
    softcap_over_flash: soft.ms / plain.ms,
  };
}
