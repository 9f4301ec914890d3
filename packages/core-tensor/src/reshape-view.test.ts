import { describe, expect, it } from 'vitest';
import * as T from './index.js';

/** Row-major values of `x` computed independently of reshape: read with the tensor's own strides. */
async function rowMajor(x: T.Tensor): Promise<number[]> {
  const data = await x.contiguous().toArray();
  return Array.from(data);
}

describe('reshape of a strided tensor is a view where strides allow (PyTorch view rule)', () => {
  it('splitting the last dim of a column slice, merging leading dims of a transpose-free slice: views with the right values', async () => {
    const qkv = T.randn([2, 5, 12], { seed: 1 });
    const all = Array.from(await qkv.toArray());
    const k = qkv.slice(2, 4, 8); // [2, 5, 4] row stride 12
    const heads = k.reshape([2, 5, 2, 2]);
    expect(heads.storage).toBe(qkv.storage); // no copy
    expect(heads.strides).toEqual([60, 12, 2, 1]);
    const want: number[] = [];
    for (let b = 0; b < 2; b++) for (let l = 0; l < 5; l++) for (let j = 4; j < 8; j++) want.push(all[b * 60 + l * 12 + j]!);
    expect(await rowMajor(heads)).toEqual(want);
    const merged = qkv.slice(1, 1, 4).reshape([2, 36]); // [2, 3, 12] → merge (3, 12): contiguous run
    expect(merged.storage).toBe(qkv.storage);
    expect(merged.strides).toEqual([60, 1]);
  });

  it('a layout that cannot be viewed is copied (values still row-major), and gradients flow through views', async () => {
    const x = T.randn([3, 4], { seed: 2, requiresGrad: true });
    const t = x.transpose(0, 1); // [4, 3]
    const flat = t.reshape([12]);
    expect(flat.storage).not.toBe(x.storage);
    const xs = Array.from(await x.toArray());
    expect(await rowMajor(flat)).toEqual([0, 1, 2, 3].flatMap((c) => [0, 1, 2].map((r) => xs[r * 4 + c]!)));
    const y = T.sum(T.mul(x.slice(1, 1, 3).reshape([3, 2, 1]), 2));
    y.backward();
    expect(Array.from(await x.grad!.toArray())).toEqual([0, 2, 2, 0, 0, 2, 2, 0, 0, 2, 2, 0]);
  });
});
