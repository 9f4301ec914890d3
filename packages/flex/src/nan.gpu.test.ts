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

// KNOWN FAILURE, marked `it.fails` so it cannot pass silently: the flash generator's online softmax
// turns a NaN score row into zeros (its max() drops NaN). The fix is in attention/flash.ts (engineer
// D1, issue 11); when it lands these report "expected to fail but passed": then make them plain `it`.
describe('a NaN query row gives a NaN output row, the others finite (WebGPU)', () => {
  for (const door of NAN_DOORS) it.fails(`${door.name} [flash generator: NaN becomes 0]`, async () => expectNaNRow(await door.run(gpu)));
});
