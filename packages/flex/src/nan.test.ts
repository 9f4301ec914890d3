// NaN inputs propagate like PyTorch through SDPA, flex and varlen on the CPU device.
import { describe, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { NAN_DOORS, expectNaNRow } from '../../../test-utils/nan-inputs.js';

describe('a NaN query row gives a NaN output row, the others finite (CPU)', () => {
  for (const door of NAN_DOORS) it(door.name, async () => expectNaNRow(await door.run(T.cpu())));
});
