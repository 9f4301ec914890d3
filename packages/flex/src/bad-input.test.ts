// The front doors' bad-input table (test-utils/bad-inputs.ts) on the CPU device.
import { describe, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { BAD_INPUTS, expectBadInput } from '../../../test-utils/bad-inputs.js';

describe('bad input to SDPA, flex and varlen raises a coded WebattnError naming the argument (CPU)', () => {
  for (const c of BAD_INPUTS.filter((b) => b.only !== 'webgpu')) {
    it(`${c.door}: ${c.name} → ${c.code} (${c.argument})`, async () => {
      await expectBadInput(c, T.cpu());
    });
  }
});
