import { describe, expect, it } from 'vitest';
import { Rng } from '@webattn/core-tensor';
import { hostTileTable } from './tile-map.js';

describe('hostTileTable', () => {
  it('covers every (sequence, row tile) exactly once, longest sequences first', () => {
    const r = new Rng(3);
    const lengths = Array.from({ length: 50 }, (_, i) => (i % 7 === 0 ? 0 : 1 + Math.floor(r.next() * 300)));
    const cu = new Int32Array(lengths.length + 1);
    lengths.forEach((n, i) => (cu[i + 1] = cu[i]! + n));
    const rows = 32;
    const t = hostTileTable(cu, rows, (b) => lengths[b]!);
    const B = lengths.length;
    const ord = Array.from(t.subarray(0, B));
    const pre = Array.from(t.subarray(B));
    expect([...ord].sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
    for (let s = 1; s < B; s++) expect(lengths[ord[s - 1]!]!).toBeGreaterThanOrEqual(lengths[ord[s]!]!);
    // decode each tile index by a linear scan (the kernel uses a binary search) and collect the tiles
    const seen = new Set<string>();
    for (let tile = 0; tile < pre[B]!; tile++) {
      let s = 0;
      while (pre[s + 1]! <= tile) s++;
      const b = ord[s]!;
      seen.add(`${b}:${tile - pre[s]!}`);
    }
    const want = new Set<string>();
    lengths.forEach((n, b) => {
      for (let k = 0; k * rows < n; k++) want.add(`${b}:${k}`);
    });
    expect(seen).toEqual(want);
    expect(pre[B]).toBe(want.size);
  });
});
