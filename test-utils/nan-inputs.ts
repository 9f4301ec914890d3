/**
 * NaN propagation through the three attention front doors, as PyTorch: a NaN in one query row makes
 * that output row NaN and leaves every other row finite (never zeros, never NaN elsewhere).
 */
import { expect } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { Device, Tensor } from '@webattn/core-tensor';
import { scaledDotProductAttention } from '@webattn/kernels-webgpu';
import { flexAttention, softcap } from '@webattn/flex';
import { flashAttnVarlen } from '@webattn/varlen';

/** q `[rows, E]`-major data with a NaN at row `bad`, element 1. */
function withNaN(shape: number[], bad: number, rowLen: number, d: Device): Tensor {
  const data = Float64Array.from(T.readValues(T.randn(shape, { seed: 21, device: T.cpu() })));
  data[bad * rowLen + 1] = Number.NaN;
  return T.tensor(data, shape, { device: d });
}

export const NAN_DOORS: { name: string; run: (d: Device) => Promise<{ rows: number[][]; bad: number }> }[] = [
  {
    name: 'SDPA',
    run: async (d) => {
      const q = withNaN([1, 1, 6, 8], 2, 8, d);
      const k = T.randn([1, 1, 7, 8], { seed: 22, device: d });
      const out = await scaledDotProductAttention(q, k, k).toArray();
      return { rows: Array.from({ length: 6 }, (_, i) => Array.from(out.slice(i * 8, i * 8 + 8))), bad: 2 };
    },
  },
  {
    name: 'flex (softcap)',
    run: async (d) => {
      const q = withNaN([1, 1, 6, 8], 4, 8, d);
      const k = T.randn([1, 1, 7, 8], { seed: 22, device: d });
      const out = await flexAttention(q, k, k, { scoreMod: softcap(20) }).toArray();
      return { rows: Array.from({ length: 6 }, (_, i) => Array.from(out.slice(i * 8, i * 8 + 8))), bad: 4 };
    },
  },
  {
    name: 'varlen',
    run: async (d) => {
      const q = withNaN([6, 1, 8], 1, 8, d);
      const k = T.randn([6, 1, 8], { seed: 22, device: d });
      const out = await flashAttnVarlen(q, k, k, { cuSeqlensQ: [0, 3, 6], maxSeqlenQ: 3 }).toArray();
      return { rows: Array.from({ length: 6 }, (_, i) => Array.from(out.slice(i * 8, i * 8 + 8))), bad: 1 };
    },
  },
];

/** Asserts the bad row is all NaN and the others (of other sequences too) are finite. */
export function expectNaNRow({ rows, bad }: { rows: number[][]; bad: number }): void {
  rows.forEach((r, i) => {
    if (i === bad) expect(r.every(Number.isNaN), `row ${i} (NaN query) = ${r.join(', ')}`).toBe(true);
    else expect(r.every(Number.isFinite), `row ${i} = ${r.join(', ')}`).toBe(true);
  });
}
