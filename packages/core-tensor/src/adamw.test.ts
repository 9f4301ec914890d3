import { describe, expect, it } from 'vitest';
import * as T from './index.js';
import { WebattnError } from './index.js';

/** torch.optim.AdamW's update, written out in float64 from its documented formula. */
function formula(p: number[], grads: number[][], o: { lr: number; b1: number; b2: number; eps: number; wd: number }) {
  const w = p.slice();
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  grads.forEach((g, s) => {
    const t = s + 1;
    for (let i = 0; i < w.length; i++) {
      w[i]! *= 1 - o.lr * o.wd;
      m[i] = o.b1 * m[i]! + (1 - o.b1) * g[i]!;
      v[i] = o.b2 * v[i]! + (1 - o.b2) * g[i]! ** 2;
      const mh = m[i]! / (1 - o.b1 ** t);
      const vh = v[i]! / (1 - o.b2 ** t);
      w[i]! -= (o.lr * mh) / (Math.sqrt(vh) + o.eps);
    }
  });
  return { w, m, v };
}

describe('adamwUpdate (fused AdamW step) on the CPU reference', () => {
  it('matches the float64 AdamW formula over several steps, in place, with weight decay', async () => {
    const o = { lr: 0.05, b1: 0.8, b2: 0.95, eps: 1e-6, wd: 0.1 };
    const p0 = Array.from(await T.randn([3, 5], { seed: 1, dtype: 'float64' }).toArray());
    const grads = await Promise.all([2, 3, 4].map(async (s) => Array.from(await T.randn([3, 5], { seed: s, dtype: 'float64' }).toArray())));
    const p = T.tensor(p0, [3, 5], { dtype: 'float64' });
    const m = T.zeros([3, 5], { dtype: 'float64' });
    const v = T.zeros([3, 5], { dtype: 'float64' });
    grads.forEach((g, s) =>
      T.adamwUpdate(p, T.tensor(g, [3, 5], { dtype: 'float64' }), m, v, {
        lr: o.lr,
        beta1: o.b1,
        beta2: o.b2,
        eps: o.eps,
        weightDecay: o.wd,
        step: s + 1,
      }),
    );
    const want = formula(p0, grads, o);
    const got = Array.from(await p.toArray());
    got.forEach((x, i) => expect(x).toBeCloseTo(want.w[i]!, 12));
    Array.from(await m.toArray()).forEach((x, i) => expect(x).toBeCloseTo(want.m[i]!, 12));
    Array.from(await v.toArray()).forEach((x, i) => expect(x).toBeCloseTo(want.v[i]!, 12));
  });

  it('updates a strided view of a parameter in place (its other elements untouched)', async () => {
    const base = T.randn([4, 6], { seed: 7, dtype: 'float64' });
    const before = Array.from(await base.toArray());
    const view = base.transpose(0, 1).slice(0, 1, 4); // [3, 4], strided
    const g = T.randn([3, 4], { seed: 8, dtype: 'float64' });
    const gv = Array.from(await g.toArray());
    const m = T.zeros([3, 4], { dtype: 'float64' });
    const v = T.zeros([3, 4], { dtype: 'float64' });
    T.adamwUpdate(view, g, m, v, {
      lr: 0.1,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0,
      step: 1,
    });
    const after = Array.from(await base.toArray());
    for (let r = 0; r < 4; r++) {
      for (let c = 0; c < 6; c++) {
        const i = r * 6 + c;
        if (c >= 1 && c < 4) {
          const gi = gv[(c - 1) * 4 + r]!;
          // first step: m̂ = g, v̂ = g², update = lr·g/(|g| + eps)
          expect(after[i]).toBeCloseTo(before[i]! - (0.1 * gi) / (Math.abs(gi) + 1e-8), 12);
        } else expect(after[i]).toBe(before[i]);
      }
    }
  });

  it('bad arguments are coded errors naming the argument', () => {
    const p = T.zeros([2, 2]);
    const ok = {
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0,
      step: 1,
    };
    const code = (fn: () => void) => {
      try {
        fn();
      } catch (e) {
        expect(e).toBeInstanceOf(WebattnError);
        return [(e as WebattnError).code, (e as WebattnError).argument];
      }
      return ['no error'];
    };
    expect(code(() => T.adamwUpdate(p, T.zeros([2, 3]), T.zeros([2, 2]), T.zeros([2, 2]), ok))).toEqual(['SHAPE_MISMATCH', 'grad']);
    expect(code(() => T.adamwUpdate(p, T.zeros([2, 2]), T.zeros([2, 2], { dtype: 'int32' }), T.zeros([2, 2]), ok))).toEqual(['DTYPE_UNSUPPORTED', 'm']);
    expect(
      code(() =>
        T.adamwUpdate(p, T.zeros([2, 2]), T.zeros([2, 2]), T.zeros([2, 2]), {
          ...ok,
          step: 0,
        }),
      ),
    ).toEqual(['INVALID_ARGUMENT', 'options.step']);
    expect(
      code(() =>
        T.adamwUpdate(p, T.zeros([2, 2]), T.zeros([2, 2]), T.zeros([2, 2]), {
          ...ok,
          beta2: 1,
        }),
      ),
    ).toEqual(['INVALID_ARGUMENT', 'options.beta2']);
    expect(
      code(() =>
        T.adamwUpdate(p, T.zeros([2, 2]), T.zeros([2, 2]), T.zeros([2, 2]), {
          ...ok,
          lr: '1' as unknown as number,
        }),
      ),
    ).toEqual(['INVALID_ARGUMENT', 'options.lr']);
    expect(code(() => T.adamwUpdate(p, 'g' as unknown as T.Tensor, T.zeros([2, 2]), T.zeros([2, 2]), ok))).toEqual(['INVALID_ARGUMENT', 'grad']);
  });
});
