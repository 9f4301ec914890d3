import { describe, expect, it } from 'vitest';
import * as T from './index.js';
import { makeInputs, OP_CASES } from '../../../test-utils/op-cases.js';

const cpu = T.cpu();

async function lossOf(out: T.Tensor, w: T.Tensor): Promise<number> {
  return (await T.sum(T.mul(out, w)).toArray())[0]!;
}

describe('gradients match central finite differences (float64, CPU reference)', () => {
  for (const c of OP_CASES) {
    it(c.name, async () => {
      const inputs = makeInputs(c, cpu, 'float64');
      const out = c.fn(inputs, cpu);
      const w = T.randn(out.shape, { seed: 999, device: cpu, dtype: 'float64' });
      T.sum(T.mul(out, w)).backward();
      const eps = 1e-6;
      for (let i = 0; i < inputs.length; i++) {
        if (c.inputs[i]!.constant) continue;
        const analytic = await inputs[i]!.grad!.toArray();
        const base = Float64Array.from(await inputs[i]!.toArray());
        const numeric = new Float64Array(base.length);
        for (let j = 0; j < base.length; j++) {
          const eval1 = async (delta: number) => {
            const data = base.slice();
            data[j] = data[j]! + delta;
            const xs = inputs.map((x, k) => (k === i ? T.tensor(data, x.shape, { dtype: 'float64', device: cpu }) : x.detach()));
            return T.noGrad(() => lossOf(c.fn(xs, cpu), w));
          };
          numeric[j] = ((await eval1(eps)) - (await eval1(-eps))) / (2 * eps);
        }
        for (let j = 0; j < base.length; j++) {
          expect(Math.abs(analytic[j]! - numeric[j]!), `${c.name} input ${i} element ${j}: ${analytic[j]} vs ${numeric[j]}`).toBeLessThan(
            1e-5 + 1e-5 * Math.abs(numeric[j]!),
          );
        }
      }
    });
  }
});
