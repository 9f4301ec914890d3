import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from '@webattn/kernels-webgpu';
import { causalMask, createBlockMask, flexAttention } from './index.js';
import { expectClose, gpuDevice } from '../../../test-utils/index.js';

let gpu: WebGPUDevice;
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

describe('a BlockMask first used inside tidy() keeps its device tables', () => {
  it('first flexAttention inside tidy, second outside: same output as the CPU path; dispose() frees the tables', async () => {
    const shape = [1, 2, 130, 16];
    const inputs = (device: T.Device) => [1, 2, 3].map((seed) => T.randn(shape, { seed, device })) as [T.Tensor, T.Tensor, T.Tensor];
    const ref = await flexAttention(...inputs(T.cpu()), { blockMask: await createBlockMask(causalMask, null, null, 130, 130, { device: T.cpu(), blockSize: 64 }) }).toArray();
    const bm = await createBlockMask(causalMask, null, null, 130, 130, { device: gpu, blockSize: 64 });
    const [q, k, v] = inputs(gpu);
    const before = gpu.memoryStats().liveStorages;
    const first = await T.tidyAsync(async () => Array.from(await flexAttention(q, k, v, { blockMask: bm }).toArray()));
    expectClose(first, ref, 1e-5, 1e-4, 'inside tidy');
    expect(gpu.memoryStats().liveStorages).toBe(before + 1); // the table, owned by the mask
    const out = flexAttention(q, k, v, { blockMask: bm }); // used to throw TENSOR_DISPOSED
    expectClose(await out.toArray(), ref, 1e-5, 1e-4, 'outside tidy');
    out.dispose();
    bm.dispose();
    expect(gpu.memoryStats().liveStorages).toBe(before);
  });
});
