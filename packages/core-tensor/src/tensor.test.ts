import { describe, expect, it } from 'vitest';
import * as T from './index.js';
import { WebattnError } from './index.js';

const cpu = T.cpu();

function expectError(fn: () => unknown, code: string, argument?: string | RegExp): WebattnError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(WebattnError);
    const err = e as WebattnError;
    expect(err.code).toBe(code);
    if (argument) expect(err.message).toMatch(argument);
    return err;
  }
  throw new Error('expected a WebattnError');
}

describe('Tensor basics', () => {
  it('creates from nested arrays, typed arrays and infers dtype', async () => {
    const a = T.tensor([[1, 2, 3], [4, 5, 6]], undefined, { device: cpu });
    expect(a.shape).toEqual([2, 3]);
    expect(a.dtype).toBe('float32');
    expect(Array.from(await a.toArray())).toEqual([1, 2, 3, 4, 5, 6]);
    const b = T.tensor(new Int32Array([1, -2, 3]), [3, 1]);
    expect(b.dtype).toBe('int32');
    expect(b.strides).toEqual([1, 1]);
    const c = T.tensor([true, false]);
    expect(c.dtype).toBe('bool');
    expect(Array.from(await T.arange(0, 5, 2, { dtype: 'int32' }).toArray())).toEqual([0, 2, 4]);
    expect(Array.from(await T.full([2], 7).toArray())).toEqual([7, 7]);
  });

  it('views share storage and copy only when needed', async () => {
    const a = T.tensor([0, 1, 2, 3, 4, 5], [2, 3]);
    const t = a.transpose(0, 1);
    expect(t.storage).toBe(a.storage);
    expect(t.isContiguous).toBe(false);
    expect(Array.from(await t.toArray())).toEqual([0, 3, 1, 4, 2, 5]);
    const s = a.slice(1, 1, 3);
    expect(s.storage).toBe(a.storage);
    expect(Array.from(await s.toArray())).toEqual([1, 2, 4, 5]);
    const e = T.tensor([1, 2], [2, 1]).expand([2, 3]);
    expect(e.strides).toEqual([1, 0]);
    expect(Array.from(await e.toArray())).toEqual([1, 1, 1, 2, 2, 2]);
    expect(a.reshape([3, 2]).storage).toBe(a.storage);
    expect(a.contiguous()).toBe(a);
    expect(t.contiguous().storage).not.toBe(a.storage);
    expect(a.reshape([-1]).shape).toEqual([6]);
    expect(a.unsqueeze(0).shape).toEqual([1, 2, 3]);
  });

  it('seeded random numbers are reproducible and look normal', async () => {
    const a = await T.randn([2000], { seed: 42 }).toArray();
    const b = await T.randn([2000], { seed: 42 }).toArray();
    expect(Array.from(a)).toEqual(Array.from(b));
    const c = await T.randn([2000], { seed: 43 }).toArray();
    expect(Array.from(a)).not.toEqual(Array.from(c));
    const mean = a.reduce((p, v) => p + v, 0) / a.length;
    const varc = a.reduce((p, v) => p + (v - mean) ** 2, 0) / a.length;
    expect(Math.abs(mean)).toBeLessThan(0.1);
    expect(Math.abs(varc - 1)).toBeLessThan(0.1);
    const u = await T.rand([1000], { seed: 1 }).toArray();
    expect(Math.min(...u)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...u)).toBeLessThan(1);
  });

  it('float16 on the CPU rounds to half precision', async () => {
    const h = T.tensor([1 / 3, 65504, 1e-8], [3], { dtype: 'float16' });
    const v = await h.toArray();
    expect(v[0]).toBeCloseTo(0.333251953125, 12);
    expect(v[1]).toBe(65504);
    expect(v[2]).toBe(0);
    expect(T.fromHalfBits(T.toHalfBits(-2.5))).toBe(-2.5);
  });
});

describe('autograd', () => {
  it('accumulates through shared subexpressions and into leaves', async () => {
    const a = T.tensor([[1, 2, 3], [4, 5, 6]], undefined, { requiresGrad: true });
    const b = T.tensor([10, 20, 30], undefined, { requiresGrad: true });
    const y = T.mul(T.add(a, b), a).sum();
    y.backward();
    expect(Array.from(await a.grad!.toArray())).toEqual([12, 24, 36, 18, 30, 42]);
    expect(Array.from(await b.grad!.toArray())).toEqual([5, 7, 9]);
    // a second backward accumulates like PyTorch
    T.mul(a, 2).sum().backward();
    expect(Array.from(await a.grad!.toArray())).toEqual([14, 26, 38, 20, 32, 44]);
  });

  it('noGrad records nothing; detach cuts the tape', () => {
    const a = T.tensor([1, 2], undefined, { requiresGrad: true });
    const y = T.noGrad(() => T.mul(a, a));
    expect(y.requiresGrad).toBe(false);
    expect(y.gradFn).toBeNull();
    expect(T.mul(a.detach(), 2).requiresGrad).toBe(false);
    expect(T.mul(a, 2).requiresGrad).toBe(true);
  });

  it('backward needs a scalar or an explicit gradient', () => {
    const a = T.tensor([1, 2], undefined, { requiresGrad: true });
    expectError(() => T.mul(a, a).backward(), 'AUTOGRAD', /one-element/);
    expectError(() => T.tensor([1]).backward(), 'AUTOGRAD');
  });
});

describe('bad input raises WebattnError naming the argument', () => {
  it('shape mismatch', () => {
    const e = expectError(() => T.add(T.zeros([2, 3]), T.zeros([4, 3])), 'SHAPE_MISMATCH', /a and b: shapes \[2, 3\] and \[4, 3\]/);
    expect(e.argument).toBe('b');
    expectError(() => T.matmul(T.zeros([2, 3]), T.zeros([4, 5])), 'SHAPE_MISMATCH', /b: inner dimensions differ/);
    expectError(() => T.tensor([1, 2, 3], [2, 2]), 'SHAPE_MISMATCH', /data: has 3 elements, but shape \[2, 2\] needs 4/);
    expectError(() => T.zeros([2, 3]).reshape([4, 2]), 'SHAPE_MISMATCH', /shape:/);
  });
  it('wrong dtype', () => {
    expectError(() => T.add(T.zeros([2]), T.zeros([2], { dtype: 'int32' })), 'DTYPE_UNSUPPORTED', /b: expected dtype float32/);
    expectError(() => T.embedding(T.zeros([3, 2]), T.zeros([2])), 'DTYPE_UNSUPPORTED', /ids: expected int32/);
    expectError(() => T.zeros([2], { dtype: 'complex64' as never }), 'DTYPE_UNSUPPORTED', /options.dtype/);
    expectError(() => T.exp(T.zeros([2], { dtype: 'int32' })), 'DTYPE_UNSUPPORTED', /x:/);
  });
  it('negative and non-integer dimensions', () => {
    expectError(() => T.zeros([2, -1]), 'INVALID_ARGUMENT', /shape\[1\]: expected a non-negative integer dimension, got -1/);
    expectError(() => T.zeros([2.5]), 'INVALID_ARGUMENT', /shape\[0\].*got 2.5/);
    expectError(() => T.randn(['3' as never]), 'INVALID_ARGUMENT', /shape\[0\]/);
    expectError(() => T.sum(T.zeros([2, 2]), 2), 'INVALID_ARGUMENT', /axis: expected an integer in \[-2, 1\], got 2/);
  });
  it('out-of-range ids on the CPU', () => {
    expectError(() => T.embedding(T.zeros([3, 2]), T.tensor([3], [1], { dtype: 'int32' })), 'INVALID_ARGUMENT', /ids: index 3 is out of range \[0, 3\)/);
  });
  it('disposed tensors', () => {
    const a = T.zeros([2]);
    a.dispose();
    expectError(() => T.exp(a), 'TENSOR_DISPOSED', /x:/);
  });
});

describe('CPU reference formulas', () => {
  it('erf is accurate', () => {
    const known: [number, number][] = [[0.5, 0.5204998778130465], [1, 0.8427007929497149], [2, 0.9953222650189527], [3, 0.9999779095030014], [-1.5, -0.9661051464753108]];
    for (const [x, v] of known) expect(Math.abs(T.erf(x) - v)).toBeLessThan(1e-13);
  });
  it('softmax of a fully masked row is zeros, not NaN', async () => {
    const s = T.softmax(T.tensor([[-Infinity, -Infinity], [0, 0]]));
    expect(Array.from(await s.toArray())).toEqual([0, 0, 0.5, 0.5]);
  });
  it('crossEntropy matches a float64 formula', async () => {
    const logits = [[1, 2, 3], [0.5, -1, 2]];
    const l = T.crossEntropy(T.tensor(logits, undefined, { dtype: 'float64' }), T.tensor([2, 0], [2], { dtype: 'int32' }));
    const lse = (r: number[]) => Math.log(r.reduce((p, v) => p + Math.exp(v), 0));
    const want = (lse(logits[0]!) - 3 + lse(logits[1]!) - 0.5) / 2;
    expect((await l.toArray())[0]).toBeCloseTo(want, 12);
  });
});
