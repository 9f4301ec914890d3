// The front doors' bad-input table (test-utils/bad-inputs.ts) on WebGPU: values that live on the GPU
// (captured tensors, cu_seqlens tensors) are checked by kernels and raise at the next read-back.
import { afterAll, beforeAll, describe, it } from 'vitest';
import type * as T from '@webattn/core-tensor';
import { BAD_INPUTS, expectBadInput } from '../../../test-utils/bad-inputs.js';
import { gpuDevice } from '../../../test-utils/index.js';

let gpu: T.WebGPUDevice;
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

describe('bad input to SDPA, flex and varlen raises a coded WebattnError naming the argument (WebGPU)', () => {
  for (const c of BAD_INPUTS.filter((b) => b.only !== 'cpu')) {
    it(`${c.door}: ${c.name} → ${c.code} (${c.argument})`, async () => {
      await expectBadInput(c, gpu);
    });
  }
});
