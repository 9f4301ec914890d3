import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { WebGPUDevice } from './index.js';
import { expectClose, gpuDevice } from '../../../test-utils/index.js';

let gpu: WebGPUDevice;
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

/**
 * One step of a toy layer stack on `dev`: seven temporaries of one size class, then freed in an order that is neither
 * first-in-first-out nor last-in-first-out (what a model's tidy scopes, views and autograd do); the last one is the
 * result (freed by the caller after its read). Under a last-in-first-out pool this order permutes the buffers in one
 * cycle of length 7: each step got them in another order and made all its bind groups anew for 7 steps.
 */
function step(x: T.Tensor, w: T.Tensor, b: T.Tensor): T.Tensor {
  return T.noGrad(() => {
    const t0 = T.add(x, b);
    const t1 = T.tanh(t0);
    const t2 = T.mul(t1, t0);
    const t3 = T.sub(t2, x);
    const t4 = T.add(t3, t1);
    const t5 = T.matmul(t4, w);
    const y = T.add(t5, t2);
    for (const t of [t3, t0, t1, t4, t5, t2]) t.dispose();
    return y;
  });
}

describe('buffer pool and bind-group cache in a steady loop', () => {
  it('a repeated step gets the same buffers back (lowest id first), so after warm-up it creates no buffer and no bind group, with results equal to the CPU reference', async () => {
    const xs = T.randn([24, 32], { seed: 41 });
    const ws = T.mul(T.randn([32, 32], { seed: 42 }), 0.2);
    const bs = T.randn([32], { seed: 43 });
    const [x, w, b] = await Promise.all([xs, ws, bs].map(async (t) => T.tensor(await t.toArray(), t.shape, { device: gpu })));
    const cpu = T.tidy(() => step(xs, ws, bs));
    const want = await cpu.toArray();
    const perStep: { dispatches: number; groups: number; hits: number; buffers: number }[] = [];
    for (let i = 0; i < 9; i++) {
      const c0 = gpu.counters();
      const y = step(x!, w!, b!);
      const got = await y.toArray();
      y.dispose();
      const c1 = gpu.counters();
      perStep.push({
        dispatches: c1.dispatches - c0.dispatches,
        groups: c1.bindGroupsCreated - c0.bindGroupsCreated,
        hits: c1.bindGroupHits - c0.bindGroupHits,
        buffers: c1.buffersCreated - c0.buffersCreated,
      });
      expectClose(got, want, 1e-5, 1e-4, `step ${i}`);
    }
    const first = perStep[0]!;
    expect(first.dispatches).toBe(7);
    expect(first.groups).toBeGreaterThan(0); // a cold step makes its bind groups: the counters see them
    for (const s of perStep.slice(2)) {
      // steps 3..9: the pool hands out the buffers of the step before, so every bind group comes from the cache
      expect(s).toEqual({ dispatches: first.dispatches, groups: 0, hits: first.dispatches, buffers: 0 });
    }
    for (const t of [x, w, b]) t!.dispose();
  });
});
