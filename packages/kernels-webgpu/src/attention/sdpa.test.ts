import { describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { scaledDotProductAttention } from '../index.js';

const cpu = T.cpu();

describe('math attention gradients match central finite differences (float64, CPU)', () => {
  for (const cfg of [
    { name: 'plain', causal: false, gqa: false, mask: false },
    { name: 'causal GQA', causal: true, gqa: true, mask: false },
    { name: 'additive mask with its gradient', causal: false, gqa: false, mask: true },
  ]) {
    it(cfg.name, async () => {
      const Hq = cfg.gqa ? 2 : 1;
      const mk = (shape: number[], seed: number) => T.randn(shape, { seed, device: cpu, dtype: 'float64', requiresGrad: true });
      const xs = [mk([1, Hq, 3, 4], 1), mk([1, 1, 5, 4], 2), mk([1, 1, 5, 3], 3), ...(cfg.mask ? [mk([3, 5], 4)] : [])];
      const w = T.randn([1, Hq, 3, 3], { seed: 9, device: cpu, dtype: 'float64' });
      const f = (t: T.Tensor[]) =>
        T.sum(T.mul(scaledDotProductAttention(t[0]!, t[1]!, t[2]!, { isCausal: cfg.causal, enableGqa: cfg.gqa, attnMask: t[3] ?? null }), w));
      f(xs).backward();
      for (let i = 0; i < xs.length; i++) {
        const base = Float64Array.from(await xs[i]!.toArray());
        const g = await xs[i]!.grad!.toArray();
        for (let j = 0; j < base.length; j++) {
          const at = async (d: number) => {
            const data = base.slice();
            data[j] = data[j]! + d;
            const ys = xs.map((x, k) => (k === i ? T.tensor(data, x.shape, { dtype: 'float64', device: cpu }) : x.detach()));
            return (await T.noGrad(() => f(ys)).toArray())[0]!;
          };
          const num = ((await at(1e-6)) - (await at(-1e-6))) / 2e-6;
          expect(Math.abs(g[j]! - num), `input ${i} element ${j}`).toBeLessThan(1e-6 + 1e-6 * Math.abs(num));
        }
      }
    });
  }
});
