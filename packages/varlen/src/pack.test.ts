import { describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { BlockDiagonalMask, collate, cuSeqlens, JaggedTensor, packSequences, pad, padToLength, padToLongest, positionIds, unpackSequences, unpad } from './index.js';

const seqs = () => [T.randn([3, 2], { seed: 1 }), T.randn([0, 2], { seed: 2 }), T.randn([5, 2], { seed: 3 })];

describe('cu_seqlens helpers', () => {
  it('cuSeqlens and positionIds', () => {
    expect(Array.from(cuSeqlens([3, 0, 5]))).toEqual([0, 3, 3, 8]);
    expect(Array.from(positionIds(cuSeqlens([2, 0, 3])))).toEqual([0, 1, 0, 1, 2]);
    expect(() => cuSeqlens([2, -1])).toThrowError(/lengths\[1\]/);
  });
});

describe('packing and padding', () => {
  it('packSequences / unpackSequences round-trip, with gradients', async () => {
    const list = seqs().map((t) => t.requiresGrad_());
    const p = packSequences(list);
    expect(p.values.shape).toEqual([8, 2]);
    expect(Array.from(p.cuSeqlens)).toEqual([0, 3, 3, 8]);
    expect(p.maxSeqlen).toBe(5);
    const back = unpackSequences(p.values, p.cuSeqlens);
    for (let i = 0; i < 3; i++) expect(Array.from(await back[i]!.toArray())).toEqual(Array.from(await list[i]!.toArray()));
    T.sum(T.mul(p.values, T.arange(0, 16).reshape([8, 2]))).backward();
    expect(Array.from(await list[2]!.grad!.toArray())).toEqual([6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
  });

  it('padToLongest / padToLength pad with the value and refuse too-short lengths', async () => {
    const { padded, lengths } = padToLongest(seqs(), -1);
    expect(padded.shape).toEqual([3, 5, 2]);
    expect(lengths).toEqual([3, 0, 5]);
    const v = await padded.toArray();
    expect(Array.from(v.slice(10, 20))).toEqual(new Array(10).fill(-1));
    expect(() => padToLength(seqs(), 4)).toThrowError(/length: 4 is shorter than list\[2\]/);
  });

  it('unpad / pad invert each other (HF _upad_input) and carry gradients', async () => {
    const x = T.randn([2, 4, 3], { seed: 5, requiresGrad: true });
    const mask = [
      [1, 1, 0, 0],
      [1, 1, 1, 1],
    ];
    const u = unpad(x, mask);
    expect(Array.from(u.indices)).toEqual([0, 1, 4, 5, 6, 7]);
    expect(Array.from(u.cuSeqlens)).toEqual([0, 2, 6]);
    expect(u.maxSeqlen).toBe(4);
    const back = pad(u.values, u.indices, 2, 4);
    const xv = await x.toArray();
    const bv = await back.toArray();
    for (let p = 0; p < 8; p++) for (let f = 0; f < 3; f++) expect(bv[p * 3 + f]).toBe(mask[p >> 2]![p & 3] ? xv[p * 3 + f] : 0);
    T.sum(back).backward();
    expect(Array.from(await x.grad!.toArray())).toEqual([1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, ...new Array(12).fill(1)]);
  });

  it('JaggedTensor from a list and from padded, back to padded', async () => {
    const j = JaggedTensor.fromList(seqs());
    expect(j.lengths()).toEqual([3, 0, 5]);
    const p = j.toPadded(0);
    const j2 = JaggedTensor.fromPadded(p, [3, 0, 5]);
    expect(Array.from(await j2.values.toArray())).toEqual(Array.from(await j.values.toArray()));
    expect(Array.from(j2.offsets)).toEqual([0, 3, 3, 8]);
  });

  it('collate strategies report the useful-token fraction', () => {
    const list = seqs();
    expect(collate(list, 'pad-to-max', 10).usefulFraction).toBeCloseTo(8 / 30);
    expect(collate(list, 'pad-to-longest').usefulFraction).toBeCloseTo(8 / 15);
    expect(collate(list, 'packed').values.shape).toEqual([8, 2]);
    expect(Array.from(collate(list, 'jagged').cuSeqlens!)).toEqual([0, 3, 3, 8]);
  });
});

describe('BlockDiagonalMask', () => {
  it('materialises block-diagonal, causal, bottom-right and local patterns', async () => {
    const m = BlockDiagonalMask.fromSeqlens([2, 3]);
    const dense = Array.from(await m.materialize().toArray());
    expect(dense).toEqual([1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1]);
    const c = Array.from(await m.makeCausal().materialize().toArray());
    expect(c).toEqual([1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1]);
    const br = BlockDiagonalMask.fromSeqlens([1], [3]).makeCausalFromBottomRight();
    expect(Array.from(await br.materialize().toArray())).toEqual([1, 1, 1]);
    const tl = BlockDiagonalMask.fromSeqlens([1], [3]).makeCausal();
    expect(Array.from(await tl.materialize().toArray())).toEqual([1, 0, 0]);
    const local = BlockDiagonalMask.fromSeqlens([4]).makeLocalAttention(2);
    expect(Array.from(await local.materialize().toArray())).toEqual([1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1]);
    const mm = m.makeCausal().toMaskMod();
    expect(mm.fn(0, 0, 3, 2)).toBe(true);
    expect(mm.fn(0, 0, 3, 4)).toBe(false);
    expect(mm.fn(0, 0, 2, 1)).toBe(false);
    const br2 = BlockDiagonalMask.fromSeqlens([2, 1], [3, 4]).makeCausalFromBottomRight();
    for (let q = 0; q < br2.totalQ; q++) for (let kv = 0; kv < br2.totalK; kv++) expect(br2.toMaskMod().fn(0, 0, q, kv)).toBe(br2.attends(q, kv));
  });
});
