// NaN inputs propagate like PyTorch through SDPA, flex and varlen on WebGPU (the flash generator).
import { afterAll, beforeAll, describe, it } from 'vitest';
import type * as T from '@webattn/core-tensor';
import { NAN_DOORS, expectNaNRow } from '../../../test-utils/nan-inputs.js';
import { gpuDevice } from '../../../test-utils/index.js';

let gpu: T.WebGPUDevice;
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

// The flash generator detects NaN scores by their bits (not x != x, which drivers fold) and carries a
// per-row flag, so this holds on NVIDIA too.
describe('a NaN query row gives a NaN output row, the others finite (WebGPU)', () => {
  for (const door of NAN_DOORS) it(door.name, async () => expectNaNRow(await door.run(gpu)));
});
