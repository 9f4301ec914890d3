import { describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { causalMask, createBlockMask } from './index.js';

const cpu = T.cpu();

describe('BlockMask device tables: owned by the mask, not by a tidy() scope', () => {
  it('tables first made inside tidy survive it, are reused, and dispose() frees them (storage counter)', async () => {
    const bm = await createBlockMask(causalMask, null, null, 200, 200, { device: cpu, blockSize: 64 });
    const start = cpu.memoryStats().liveStorages;
    const first = T.tidy(() => {
      const t = bm.tables(cpu);
      T.tidy(() => T.add(t.table, 1)); // the table is readable inside
      return null;
    });
    expect(first).toBeNull();
    const again = bm.tables(cpu);
    expect(again.table.isReleased).toBe(false);
    expect(cpu.memoryStats().liveStorages).toBe(start + 1);
    // the packed contents are the host tables (independent: the classes the mask was built from)
    const packed = await again.table.toArray();
    const nq = bm.numQBlocks;
    const kvNum = Array.from(packed.slice(again.offsets[0], again.offsets[0]! + nq));
    const want = Array.from({ length: nq }, (_, i) => Array.from({ length: bm.numKvBlocks }, (_, j) => bm.classes[i * bm.numKvBlocks + j]).filter((c) => c === 1).length);
    expect(kvNum).toEqual(want);
    expect(bm.tables(cpu)).toBe(again); // cached
    bm.dispose();
    expect(again.table.isReleased).toBe(true);
    expect(cpu.memoryStats().liveStorages).toBe(start);
    bm.dispose(); // idempotent
    expect(cpu.memoryStats().liveStorages).toBe(start);
    // still usable: the next use uploads the tables again
    const re = bm.tables(cpu);
    expect(Array.from(await re.table.toArray())).toEqual(Array.from(packed));
    bm[Symbol.dispose]();
    expect(cpu.memoryStats().liveStorages).toBe(start);
  });
});
