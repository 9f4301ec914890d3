import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from './index.js';
import { expectClose, gpuDevice } from '../../../test-utils/index.js';
import { expectOpCaseMatchesReference, OP_CASES } from '../../../test-utils/op-cases.js';

let gpu: WebGPUDevice;
const cpu = T.cpu();

beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

describe('every op matches the CPU reference on the WebGPU adapter (forward and gradients)', () => {
  for (const c of OP_CASES) {
    it(c.name, () => expectOpCaseMatchesReference(c, gpu));
  }
});

describe('elementwise dtypes and comparisons on the GPU', () => {
  it('int32 arithmetic, comparisons, where and casts', async () => {
    const a = T.tensor([5, -7, 9, 0], [4], { dtype: 'int32', device: gpu });
    const b = T.tensor([2, 2, -4, 3], [4], { dtype: 'int32', device: gpu });
    expect(Array.from(await T.add(a, b).toArray())).toEqual([7, -5, 5, 3]);
    expect(Array.from(await T.div(a, b).toArray())).toEqual([2, -3, -2, 0]);
    expect(Array.from(await T.lt(a, b).toArray())).toEqual([0, 1, 0, 1]);
    const m = T.logicalAnd(T.gt(a, 0), T.ne(b, 2));
    expect(Array.from(await m.toArray())).toEqual([0, 0, 1, 0]);
    expect(Array.from(await T.where(m, a, b).toArray())).toEqual([2, 2, 9, 3]);
    expect(Array.from(await T.cast(T.tensor([1.7, -2.2, 0], [3], { device: gpu }), 'int32').toArray())).toEqual([1, -2, 0]);
    expect(Array.from(await T.sum(a).toArray())).toEqual([7]);
    expect(Array.from(await T.max(a).toArray())).toEqual([9]);
  });

  it('softmax of -Infinity rows is zero; max keeps -Infinity', async () => {
    const x = T.tensor([[-Infinity, -Infinity, -Infinity], [1, 2, 3]], undefined, { device: gpu });
    const s = await T.softmax(x).toArray();
    expect(Array.from(s.slice(0, 3))).toEqual([0, 0, 0]);
    expectClose(s.slice(3), [0.09003057, 0.24472847, 0.66524096], 1e-6, 1e-5);
    expect((await T.max(x, 1).toArray())[0]).toBe(-Infinity);
  });

  it('large reductions and a matmul of several tiles', async () => {
    const x = T.randn([3, 1000], { seed: 5, device: gpu });
    const xc = T.randn([3, 1000], { seed: 5, device: cpu });
    expectClose(await T.sum(x, 1).toArray(), await T.sum(xc, 1).toArray(), 1e-3, 1e-4);
    const a = T.randn([37, 45], { seed: 6, device: gpu });
    const b = T.randn([45, 33], { seed: 7, device: gpu });
    const ref = T.matmul(T.randn([37, 45], { seed: 6, device: cpu }), T.randn([45, 33], { seed: 7, device: cpu }));
    expectClose(await T.matmul(a, b).toArray(), await ref.toArray(), 1e-4, 1e-4);
  });

  it('out-of-range embedding ids give zero rows on the GPU', async () => {
    const w = T.randn([4, 3], { seed: 1, device: gpu });
    const e = await T.embedding(w, T.tensor([1, 9, -2], [3], { dtype: 'int32', device: gpu })).toArray();
    expect(Array.from(e.slice(3))).toEqual([0, 0, 0, 0, 0, 0]);
  });
});

describe('loops stay under the adapter loop cap', () => {
  it('a reduction over a long non-last axis is exact (llvmpipe caps shader loops at 65535)', async () => {
    const n = 70_000;
    const x = T.rand([n, 2], { seed: 3, device: gpu });
    const want = T.sum(T.rand([n, 2], { seed: 3, device: cpu }), 0);
    expectClose(await T.sum(x, 0).toArray(), await want.toArray(), 2e-1, 1e-5);
    const m = await T.max(x, 0).toArray();
    const mc = await T.max(T.rand([n, 2], { seed: 3, device: cpu }), 0).toArray();
    expect(Array.from(m)).toEqual(Array.from(mc));
  });
});

describe('very long rows', () => {
  it('sum and max of a 3M-element vector are exact past the per-invocation loop cap', async () => {
    const n = 3_000_000;
    const x = T.rand([n], { seed: 8, device: gpu });
    const xc = T.rand([n], { seed: 8, device: cpu });
    expectClose(await T.sum(x).toArray(), await T.sum(xc).toArray(), 5, 1e-5);
    expect((await T.max(x).toArray())[0]).toBe((await T.max(xc).toArray())[0]);
  });
});

describe('elementwise operand layouts (same index, trailing broadcast, strided) match the CPU reference', () => {
  it('contiguous, bias-like, scalar, middle-broadcast and transposed operands, contiguous and strided outputs', async () => {
    const shape = [3, 5, 8];
    const mk = (s: number[], seed: number) => [T.randn(s, { seed, device: gpu }), T.randn(s, { seed, device: cpu })] as const;
    const [x, xc] = mk(shape, 11);
    const cases: [string, readonly [T.Tensor, T.Tensor]][] = [
      ['same shape', mk(shape, 12)],
      ['bias [8]', mk([8], 13)],
      ['trailing [5, 8]', mk([5, 8], 14)],
      ['scalar [1]', mk([1], 15)],
      ['middle [3, 1, 8]', mk([3, 1, 8], 16)],
      ['leading [3, 1, 1]', mk([3, 1, 1], 17)],
    ];
    const [tg, tc] = mk([3, 8, 5], 18);
    cases.push(['transposed', [tg.transpose(1, 2), tc.transpose(1, 2)]]);
    for (const [what, [g, c]] of cases) {
      for (const [a, b, ac, bc] of [[x, g, xc, c], [g, x, c, xc]] as const) {
        const got = T.sub(a, b);
        expectClose(await got.toArray(), await T.sub(ac, bc).toArray(), 1e-6, 1e-6, what);
      }
    }
    // copy into a contiguous tensor and into a transposed view, from a transposed and a contiguous source
    const dstG = T.full([3, 5, 8], 12345, { device: gpu });
    T.copyInto(dstG, tg.transpose(1, 2));
    expectClose(await dstG.toArray(), await tc.transpose(1, 2).contiguous().toArray(), 0, 0, 'copy into contiguous');
    const dst2 = T.full([3, 8, 5], 12345, { device: gpu });
    T.copyInto(dst2.transpose(1, 2), x);
    expectClose(await dst2.toArray(), await xc.transpose(1, 2).contiguous().toArray(), 0, 0, 'copy into a transposed view');
  });
});
