import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from './device/webgpu-device.js';
import { scaledDotProductAttention, sdpaKernel } from './index.js';
import { gpuDevice } from '../../../test-utils/index.js';
import { fixtureCases, toTensor } from '../../../test-utils/fixtures.js';

// float16 SDPA against PyTorch's own fp16 kernels (fixtures made on the H100 by
// tools/fixtures/make_fixtures.py --only sdpa16): the same fp16 inputs, and a float64 reference from
// them. webattn's f16 result must be within twice PyTorch's fp16 error of the float64 truth (plus one
// f16 ulp at 1), tensor by tensor. Runs where the adapter has shader-f16 (WEBATTN_EXPECT_F16=1: required).
let gpu: WebGPUDevice;
let hasF16 = false;
beforeAll(async () => {
  gpu = await gpuDevice();
  hasF16 = gpu.hasFeature('shader-f16');
});
afterAll(() => gpu?.destroy());

function needF16(ctx: TestContext): void {
  if (hasF16) return;
  if (process.env.WEBATTN_EXPECT_F16 === '1') expect.fail(`WEBATTN_EXPECT_F16=1 but adapter "${gpu.info.adapter}" has no shader-f16`);
  ctx.skip();
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return Number.isNaN(m) ? Infinity : m;
}

const cases = fixtureCases('sdpa16');

describe('float16 SDPA vs PyTorch fp16 fixtures', () => {
  it('the fp16 fixture set is present', () => {
    expect(cases.map((c) => c.name).sort()).toEqual(['basic', 'causal', 'cross-e128', 'gqa-causal']);
  });
  for (const f of cases) {
    for (const backend of ['flash', 'math'] as const) {
      it(`${backend}: ${f.name}`, async (ctx) => {
        needF16(ctx);
        const p = f.params as { is_causal?: boolean; enable_gqa?: boolean };
        const t = f.tensors;
        const h = (x: T.Tensor) => x.cast('float16').detach().requiresGrad_();
        const q = h(toTensor(t.q!, gpu));
        const k = h(toTensor(t.k!, gpu));
        const v = h(toTensor(t.v!, gpu));
        const out = sdpaKernel([backend], () => scaledDotProductAttention(q, k, v, { isCausal: !!p.is_causal, enableGqa: !!p.enable_gqa }));
        expect(out.dtype).toBe('float16');
        out.backward(toTensor(t.dout!, gpu).cast('float16'));
        const got: Record<string, ArrayLike<number>> = {
          out: await out.toArray(),
          dq: await q.grad!.toArray(),
          dk: await k.grad!.toArray(),
          dv: await v.grad!.toArray(),
        };
        for (const name of ['out', 'dq', 'dk', 'dv']) {
          const ref = t[`${name}64`]!.data;
          const torchErr = maxDiff(t[name]!.data, ref);
          const ours = maxDiff(got[name]!, ref);
          expect(ours, `${backend} ${f.name} ${name}: max |webattn - f64| ${ours} vs PyTorch fp16's ${torchErr}`).toBeLessThanOrEqual(2 * torchErr + 1e-3);
        }
      });
    }
  }
});
