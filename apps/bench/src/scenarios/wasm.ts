import * as T from '@webattn/core-tensor';
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
  return rows;
}
