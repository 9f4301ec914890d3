import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { scaledDotProductAttention, sdpaKernel, type WebGPUDevice } from './index.js';
import { expectClose, gpuDevice } from '../../../test-utils/index.js';

// float16 needs `shader-f16`, which software adapters lack: these run where the adapter has it
// (reported as skipped elsewhere, never as passed): set WEBATTN_EXPECT_F16=1 on such a machine.
let gpu: WebGPUDevice;
let hasF16 = false;
beforeAll(async () => {
  gpu = await gpuDevice();
  hasF16 = gpu.hasFeature('shader-f16');
});
afterAll(() => gpu?.destroy());

describe('float16 storage with float32 accumulation', () => {
  it('without shader-f16, float16 tensors are refused with DTYPE_UNSUPPORTED', () => {
    if (hasF16) expect(T.zeros([2], { dtype: 'float16', device: gpu }).dtype).toBe('float16');
    else expect(() => T.zeros([2], { dtype: 'float16', device: gpu })).toThrowError(/DTYPE_UNSUPPORTED.*shader-f16/);
  });

  it.runIf(process.env.WEBATTN_EXPECT_F16 === '1')('flash and math attention in float16 match float64 within half precision', async () => {
    expect(hasF16, 'this adapter has no shader-f16').toBe(true);
    const cpu = T.cpu();
    const shape = [1, 2, 37, 64];
    const ref = scaledDotProductAttention(
      T.randn(shape, { seed: 1, device: cpu, dtype: 'float16' }).cast('float64'),
      T.randn(shape, { seed: 2, device: cpu, dtype: 'float16' }).cast('float64'),
      T.randn(shape, { seed: 3, device: cpu, dtype: 'float16' }).cast('float64'),
      { isCausal: true },
    );
    const want = await ref.toArray();
    for (const b of ['flash', 'math'] as const) {
      const q = T.randn(shape, { seed: 1, device: gpu, dtype: 'float16', requiresGrad: true });
      const out = sdpaKernel([b], () => scaledDotProductAttention(q, T.randn(shape, { seed: 2, device: gpu, dtype: 'float16' }), T.randn(shape, { seed: 3, device: gpu, dtype: 'float16' }), { isCausal: true }));
      expect(out.dtype).toBe('float16');
      expectClose(await out.toArray(), want, 2e-3, 1e-2, `${b} float16`);
      out.sum().backward();
      expect((await q.grad!.toArray()).some(Number.isNaN)).toBe(false);
    }
  });
});
