import * as T from '@webattn/core-tensor';
import { lastSdpaBackend, scaledDotProductAttention, sdpaKernel, type SdpaBackend } from '@webattn/kernels-webgpu';
import { progress, timeIt, type BenchRow } from '../timing.js';

/** Attention FLOPs of one forward (2 matmuls; causal halves them), as FlashAttention counts them. */
function attnFlops(B: number, H: number, L: number, E: number, causal: boolean): number {
  return (4 * B * H * L * L * E) / (causal ? 2 : 1);
}

/**
 * Forward and forward+backward time, GFLOP/s and peak device bytes of `math` and `flash` for L up to
 * 4096 (2048 on software adapters), causal and not, with the flash/math ratios.
 */
export async function attentionScenario(device: T.Device, quick: boolean): Promise<BenchRow[]> {
  const soft = device.info.software || device.backend === 'cpu';
  const lengths = quick ? [128, 256, 512] : soft ? [128, 256, 512, 1024, 2048] : [128, 256, 512, 1024, 2048, 4096];
  const B = 1;
  const H = soft ? 2 : 8;
  const E = 64;
  const rows: BenchRow[] = [];
  for (const causal of quick ? [false] : [false, true]) {
    for (const L of lengths) {
      const res: Record<string, { fwd: number; fb: number; peak: number }> = {};
      for (const backend of ['math', 'flash'] as SdpaBackend[]) {
        if (backend === 'flash' && device.backend !== 'webgpu') continue;
        progress(`attention: ${backend} L=${L}${causal ? ' causal' : ''}`);
        const mk = (seed: number) => T.randn([B, H, L, E], { seed, device, requiresGrad: true });
        const q = mk(1);
        const k = mk(2);
        const v = mk(3);
        const g = T.randn([B, H, L, E], { seed: 4, device });
        const run = (withGrad: boolean) =>
          sdpaKernel([backend], () => {
            if (!withGrad) return T.noGrad(() => scaledDotProductAttention(q, k, v, { isCausal: causal }).dispose());
            const o = scaledDotProductAttention(q, k, v, { isCausal: causal });
            o.backward(g);
            q.grad = k.grad = v.grad = null;
          });
        const budget = soft ? (quick ? 2500 : 6000) : 3000;
        const fwd = await timeIt(device, () => run(false), { reps: quick ? 3 : 5, budgetMs: budget });
        if (lastSdpaBackend() !== backend) throw new Error(`expected ${backend}, ran ${lastSdpaBackend()}`);
        const fb = await timeIt(device, () => run(true), { reps: quick ? 1 : 3, budgetMs: budget, warmup: 1 });
        await device.sync();
        device.resetPeakMemory();
        const before = device.memoryStats().currentBytes;
        run(true);
        await device.sync();
        res[backend] = { fwd: fwd.ms, fb: fb.ms, peak: device.memoryStats().peakBytes - before };
        for (const t of [q, k, v, g]) t.dispose();
      }
      const flops = attnFlops(B, H, L, E, causal);
      for (const [backend, r] of Object.entries(res)) {
        rows.push({
          scenario: 'attention',
          name: `${backend} L=${L}${causal ? ' causal' : ''}`,
          B,
          H,
          E,
          fwd_ms: r.fwd,
          fwd_gflops: flops / r.fwd / 1e6,
          fwdbwd_ms: r.fb,
          fwdbwd_gflops: (3.5 * flops) / r.fb / 1e6,
          peak_MiB: r.peak / 2 ** 20,
          flash_over_math_fwd: backend === 'flash' && res.math ? res.math.fwd / r.fwd : null,
          flash_over_math_fwdbwd: backend === 'flash' && res.math ? res.math.fb / r.fb : null,
        });
      }
    }
  }
  return rows;
}
