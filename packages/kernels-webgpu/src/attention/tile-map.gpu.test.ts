import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from '../index.js';
import { deviceVarlenTable } from './tile-map.js';
import { gpuDevice } from '../../../../test-utils/index.js';

let gpu: WebGPUDevice;
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

/** The `vl` buffer by its definition: both cu_seqlens, identity order, exclusive prefix sums of ceil(L_b / rows), the total. */
function expected(cuQ: number[], cuK: number[], lengths: number[], rows: number): number[] {
  const pre = [0];
  for (const n of lengths) pre.push(pre[pre.length - 1]! + Math.ceil(n / rows));
  return [...cuQ, ...cuK, ...lengths.map((_, b) => b), ...pre];
}

const cumsum = (ls: number[]) => ls.reduce((c, n) => [...c, c[c.length - 1]! + n], [0]);

describe('varlen tile map built on the GPU (no read-back of cu_seqlens)', () => {
  const rng = new T.Rng(5);
  const cases: [string, number[], number][] = [
    ['mixed lengths with empty sequences', [5, 0, 9, 0, 0, 64, 65, 1], 32],
    ['one long and many short, more than one scan chunk (B = 600)', [4000, ...Array.from({ length: 599 }, () => Math.floor(rng.next() * 40))], 64],
    ['all empty', [0, 0, 0], 16],
    ['a single sequence', [100], 8],
  ];
  for (const [name, lq, rows] of cases) {
    it(name, async () => {
      // keys: other lengths (reversed), so the query and key sides differ
      const lk = [...lq].reverse().map((n) => n + 1);
      const [cq, ck] = [cumsum(lq), cumsum(lk)];
      const held = (c: number[]) => T.tensor(Int32Array.from(c), [c.length], { dtype: 'int32', device: gpu });
      for (const side of ['q', 'k'] as const) {
        const vl = deviceVarlenTable(held(cq), held(ck), lq.length, rows, side);
        expect(Array.from(await vl.toArray())).toEqual(expected(cq, ck, side === 'q' ? lq : lk, rows));
      }
    });
  }
});
