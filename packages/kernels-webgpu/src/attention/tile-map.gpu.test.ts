import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from '../index.js';
import { deviceTileTable } from './tile-map.js';
import { gpuDevice } from '../../../../test-utils/index.js';

let gpu: WebGPUDevice;
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

/** The table by its definition: identity order, exclusive prefix sums of ceil(L_b / rows), then the total. */
function expected(lengths: number[], rows: number): number[] {
  const pre = [0];
  for (const n of lengths) pre.push(pre[pre.length - 1]! + Math.ceil(n / rows));
  return [...lengths.map((_, b) => b), ...pre];
}

describe('varlen tile map built on the GPU (no read-back of cu_seqlens)', () => {
  const rng = new T.Rng(5);
  const cases: [string, number[], number][] = [
    ['mixed lengths with empty sequences', [5, 0, 9, 0, 0, 64, 65, 1], 32],
    ['one long and many short, more than one scan chunk (B = 600)', [4000, ...Array.from({ length: 599 }, () => Math.floor(rng.next() * 40))], 64],
    ['all empty', [0, 0, 0], 16],
    ['a single sequence', [100], 8],
  ];
  for (const [name, lengths, rows] of cases) {
    it(name, async () => {
      const cu = [0];
      for (const n of lengths) cu.push(cu[cu.length - 1]! + n);
      const held = T.tensor(Int32Array.from(cu), [cu.length], { dtype: 'int32', device: gpu });
      const table = deviceTileTable(held, lengths.length, rows);
      expect(Array.from(await table.toArray())).toEqual(expected(lengths, rows));
    });
  }
});
