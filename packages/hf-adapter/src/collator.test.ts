import { describe, expect, it } from 'vitest';
import { cpu, Rng } from '@webattn/core-tensor';
import { DataCollatorWithFlattening } from './collator.js';
import { expectCode } from '../../../test-utils/index.js';


describe('DataCollatorWithFlattening', () => {
  it("matches transformers' layout: concatenation, positions restarting at 0, -100 at each start", async () => {
    const rng = new Rng(5);
    const lens = [5, 1, 9, 2];
    const seqs = lens.map((n) => Array.from({ length: n }, () => Math.floor(rng.next() * 97)));
    const c = new DataCollatorWithFlattening({ returnFlashAttnKwargs: true, device: cpu() });
    const b = c.call(seqs.map((s) => ({ input_ids: s })));
    // oracle written out from the definition, sequence by sequence
    const expIds: number[] = [];
    const expLab: number[] = [];
    const expPos: number[] = [];
    for (const s of seqs) {
      s.forEach((t, j) => {
        expIds.push(t);
        expLab.push(j === 0 ? -100 : t);
        expPos.push(j);
      });
    }
    expect(b.inputIds.shape).toEqual([1, 17]);
    expect(Array.from(await b.inputIds.toArray())).toEqual(expIds);
    expect(Array.from(await b.labels.toArray())).toEqual(expLab);
    expect(Array.from(await b.positionIds!.toArray())).toEqual(expPos);
    expect(Array.from(await b.cuSeqLens!.toArray())).toEqual([0, 5, 6, 15, 17]);
    expect(b.cuSeqLens!.device.info.backend).toBe('cpu');
    expect(b.maxLength).toBe(9);
    expect(b.lengths).toEqual(lens);
  });

  it('uses given labels from index 1 and a custom separator; options off', async () => {
    const c = new DataCollatorWithFlattening({ separatorId: -1, returnPositionIds: false, device: cpu() });
    const b = c.call([{ inputIds: Int32Array.from([1, 2, 3]), labels: [7, 8, 9] }, { input_ids: [4, 5], labels: [10, 11] }]);
    expect(Array.from(await b.labels.toArray())).toEqual([-1, 8, 9, -1, 11]);
    expect(b.positionIds).toBeUndefined();
    expect(b.cuSeqLens).toBeUndefined();
  });

  it('refuses bad input with coded errors naming the example', () => {
    const c = new DataCollatorWithFlattening({ device: cpu() });
    expectCode(() => c.call([]), 'INVALID_ARGUMENT', 'features');
    expectCode(() => c.call([{ input_ids: [1] }, { input_ids: [] }]), 'INVALID_ARGUMENT', 'features[1].input_ids', 'empty');
    expectCode(() => c.call([{ input_ids: [1, 2.5] }]), 'INVALID_ARGUMENT', 'features[0].input_ids[1]');
    expectCode(() => c.call([{ input_ids: [1, 2], labels: [1] }]), 'INVALID_ARGUMENT', 'features[0].labels', 'expected 2');
    expectCode(() => c.call([{ input_ids: 'abc' as unknown as number[] }]), 'INVALID_ARGUMENT', 'features[0].input_ids');
    expectCode(() => new DataCollatorWithFlattening({ returnFlashAttnKwargs: 'true' as unknown as boolean }), 'INVALID_ARGUMENT', 'returnFlashAttnKwargs');
    expectCode(() => new DataCollatorWithFlattening({ separatorId: 0.5 }), 'INVALID_ARGUMENT', 'separatorId');
  });
});
