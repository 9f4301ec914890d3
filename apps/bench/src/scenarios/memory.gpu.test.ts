import { describe, expect, it } from 'vitest';
import { gpuDevice } from '../../../../test-utils/index.js';
import { memoryLoop } from './memory.js';

describe('memory of a training loop on WebGPU (SDPA flash, SGD, persistent parameters)', () => {
  for (const userDispose of [false, true]) {
    it(`device bytes and live storages are flat over 40 steps (tidy${userDispose ? ' + user dispose()' : ''})`, async () => {
      const device = await gpuDevice();
      const { marks, backend } = await memoryLoop(device, 40, userDispose, [1, 10, 40]);
      expect(backend).toBe('flash');
      const [first, ten, last] = marks as [(typeof marks)[0], (typeof marks)[0], (typeof marks)[0]];
      expect(last.loss).toBeLessThan(first.loss); // it trains
      expect(last.currentBytes).toBe(ten.currentBytes);
      expect(last.liveStorages).toBe(ten.liveStorages);
    });
  }
});
