import { describe, expect, it } from 'vitest';
import * as T from './index.js';

const cpu = T.cpu();

/** float64 reference of dW = Σ_rows xᵀ g for x [..., k] and g [..., n] flattened to rows. */
function weightGradRef(x: ArrayLike<number>, g: ArrayLike<number>, rows: number, k: number, n: number): number[] {
  const out = new Array<number>(k * n).fill(0);
  for (let r = 0; r < rows; r++) for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) out[i * n + j]! += x[r * k + i]! * g[r * n + j]!;
  return out;
}

describe('matmul gradient of a weight shared by the batch (x @ W)', () => {
  for (const [label, wShape] of [
    ['2-D weight', [6, 5]],
    ['weight with unit batch dims', [1, 1, 6, 5]],
  ] as const) {
    it(`${label}: equals Σ xᵀg in float64, without a [batch, k, n] intermediate`, async () => {
      const [B, H, L, k, n] = [16, 3, 4, 6, 5];
      const x = T.randn([B, H, L, k], { seed: 1, device: cpu, dtype: 'float64', requiresGrad: true });
      const w = T.randn(wShape as unknown as number[], { seed: 2, device: cpu, dtype: 'float64', requiresGrad: true });
      const gw = T.randn([B, H, L, n], { seed: 3, device: cpu, dtype: 'float64' });
      const y = T.matmul(x, w);
      expect(y.shape).toEqual([B, H, L, n]);
      cpu.resetPeakMemory();
      const before = cpu.memoryStats().currentBytes;
      T.sum(T.mul(y, gw)).backward();
      const peak = cpu.memoryStats().peakBytes - before;
      const got = await w.grad!.toArray();
      expect(w.grad!.shape).toEqual(wShape);
      const ref = weightGradRef(await x.toArray(), await gw.toArray(), B * H * L, k, n);
      for (let i = 0; i < ref.length; i++) expect(Math.abs(got[i]! - ref[i]!)).toBeLessThan(1e-12 * Math.max(1, Math.abs(ref[i]!)) * B * H * L);
      // a per-batch [B, H, k, n] product alone would take B·H·k·n·8 bytes; the whole backward stays below it
      // plus what it must hold (the gradients of x and y, the weight's gradient)
      const perBatch = B * H * k * n * 8;
      const needed = (B * H * L * (k + n) + k * n) * 8;
      expect(peak).toBeLessThan(needed + perBatch);
      // dx unchanged: g Wᵀ
      const dx = await x.grad!.toArray();
      const gv = await gw.toArray();
      const wv = await w.toArray();
      for (let r = 0; r < B * H * L; r += 7) for (let i = 0; i < k; i++) {
        let s = 0;
        for (let j = 0; j < n; j++) s += gv[r * n + j]! * wv[i * n + j]!;
        expect(Math.abs(dx[r * k + i]! - s)).toBeLessThan(1e-12);
      }
    });
  }
});
