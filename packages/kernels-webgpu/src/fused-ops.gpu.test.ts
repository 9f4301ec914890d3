import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from './index.js';
import { expectClose, gpuDevice } from '../../../test-utils/index.js';

let gpu: WebGPUDevice;
const cpu = T.cpu();
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

describe('fused AdamW step (adamw_step) against the float64 CPU reference', () => {
  it('three steps on contiguous and strided parameters', async () => {
    const opts = (step: number) => ({
      lr: 0.03,
      beta1: 0.85,
      beta2: 0.99,
      eps: 1e-6,
      weightDecay: 0.05,
      step,
    });
    for (const strided of [false, true]) {
      const shape = [37, 29];
      const make = (d: T.Device) => {
        const base = T.randn([29, 37], { seed: 11, device: d });
        const p = strided ? base.transpose(0, 1) : T.randn(shape, { seed: 11, device: d });
        return {
          base,
          p,
          m: T.zeros(shape, { device: d }),
          v: T.zeros(shape, { device: d }),
        };
      };
      const g = make(gpu);
      const c = make(cpu);
      for (let s = 1; s <= 3; s++) {
        T.adamwUpdate(g.p, T.randn(shape, { seed: 20 + s, device: gpu }), g.m, g.v, opts(s));
        T.adamwUpdate(c.p, T.randn(shape, { seed: 20 + s, device: cpu }), c.m, c.v, opts(s));
      }
      expectClose(await g.p.contiguous().toArray(), await c.p.contiguous().toArray(), 1e-6, 1e-5, `param (strided ${strided})`);
      expectClose(await g.m.toArray(), await c.m.toArray(), 1e-6, 1e-5, 'm');
      expectClose(await g.v.toArray(), await c.v.toArray(), 1e-7, 1e-5, 'v');
      if (strided) expectClose(await g.base.toArray(), await c.base.toArray(), 1e-6, 1e-5, 'base storage');
    }
  });
});

describe('adamw_step with a fifth input (the low-precision copy of a master parameter)', () => {
  it('writes the updated master into the copy, contiguous and strided, and the update matches the CPU reference', async () => {
    const attrs = (step: number): T.AdamwStepAttrs => ({ beta1: 0.9, beta2: 0.999, eps: 1e-8, decay: 1 - 0.01 * 0.1, stepSize: 0.01 / (1 - 0.9 ** step), bc2Sqrt: Math.sqrt(1 - 0.999 ** step) });
    const opts = (step: number) => ({ lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step });
    for (const strided of [false, true]) {
      const shape = [23, 19];
      const master = T.randn(shape, { seed: 41, device: gpu });
      const [m, v] = [T.zeros(shape, { device: gpu }), T.zeros(shape, { device: gpu })];
      const base = T.full([19, 23], 12345, { device: gpu });
      const low = strided ? base.transpose(0, 1) : T.full(shape, 12345, { device: gpu });
      const c = { p: T.randn(shape, { seed: 41, device: cpu }), m: T.zeros(shape, { device: cpu }), v: T.zeros(shape, { device: cpu }) };
      for (let s = 1; s <= 2; s++) {
        T.runKernel('adamw_step', gpu, [master, T.randn(shape, { seed: 50 + s, device: gpu }), m, v, low], attrs(s));
        T.adamwUpdate(c.p, T.randn(shape, { seed: 50 + s, device: cpu }), c.m, c.v, opts(s));
      }
      expectClose(await master.toArray(), await c.p.toArray(), 1e-6, 1e-5, `master (strided copy ${strided})`);
      expect(Array.from(await low.contiguous().toArray())).toEqual(Array.from(await master.toArray()));
      // attrs.skipIf: a nonzero flag (last input) leaves everything as it was; a zero flag steps as before
      const before = await Promise.all([master, m, v, low].map(async (t) => Array.from(await t.contiguous().toArray())));
      const g3 = T.randn(shape, { seed: 53, device: gpu });
      T.runKernel('adamw_step', gpu, [master, g3, m, v, low, T.full([1], 1, { device: gpu })], { ...attrs(3), skipIf: true });
      T.runKernel('adamw_step', gpu, [master, g3, m, v, T.tensor([0, Infinity], [2], { device: gpu }).slice(0, 1, 2)], { ...attrs(3), skipIf: true });
      const after = await Promise.all([master, m, v, low].map(async (t) => Array.from(await t.contiguous().toArray())));
      expect(after).toEqual(before);
      T.runKernel('adamw_step', gpu, [master, g3, m, v, low, T.zeros([1], { device: gpu })], { ...attrs(3), skipIf: true });
      T.adamwUpdate(c.p, T.randn(shape, { seed: 53, device: cpu }), c.m, c.v, opts(3));
      expectClose(await master.toArray(), await c.p.toArray(), 1e-6, 1e-5, `master after a zero flag (strided copy ${strided})`);
      expect(Array.from(await low.contiguous().toArray())).toEqual(Array.from(await master.toArray()));
    }
  });
});

describe('device-side fill (zeros / full without an upload)', () => {
  it('large float32, int32 and bool fills hold the value in every element', async () => {
    const n = 5000; // above the upload threshold: filled by a kernel over poisoned memory
    const c0 = gpu.counters();
    const z = T.zeros([n], { device: gpu });
    const f = T.full([n], -2.5, { device: gpu });
    const i = T.full([n], -7, { dtype: 'int32', device: gpu });
    const b = T.full([n], 1, { dtype: 'bool', device: gpu });
    expect(gpu.counters().uploads - c0.uploads).toBe(gpu.poisonAllocations ? 4 : 0); // only the poison writes
    expect(new Set(await z.toArray())).toEqual(new Set([0]));
    expect(new Set(await f.toArray())).toEqual(new Set([-2.5]));
    expect(new Set(await i.toArray())).toEqual(new Set([-7]));
    expect(new Set(await b.toArray())).toEqual(new Set([1]));
    // an odd element count of a 2-byte dtype is not needed here; a small fill still uploads
    expect(Array.from(await T.full([3], 4, { device: gpu }).toArray())).toEqual([4, 4, 4]);
  });
});

describe('column reductions over a long axis (split into partial sums)', () => {
  it('sum / max over the rows of [tokens, features] and over the middle axis match the reference', async () => {
    for (const [shape, axis] of [
      [[2048, 24], 0],
      [[3, 768, 10], 1],
      [[1000, 7], 0],
    ] as [number[], number][]) {
      const x = T.randn(shape, { seed: 5, device: gpu });
      const xc = T.randn(shape, { seed: 5, device: cpu });
      expectClose(await T.sum(x, axis).toArray(), await T.sum(xc, axis).toArray(), 1e-3, 1e-4, `sum ${shape} axis ${axis}`);
      expect(Array.from(await T.max(x, axis).toArray())).toEqual(Array.from(await T.max(xc, axis).toArray()));
    }
  });
});
