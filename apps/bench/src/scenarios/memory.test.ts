import * as T from '@webattn/core-tensor';
import '@webattn/kernels-webgpu';
import { describe, expect, it } from 'vitest';
import { memoryLoop } from './memory.js';

describe('memory of a training loop on the CPU device (SDPA math, SGD, persistent parameters)', () => {
  for (const userDispose of [false, true]) {
    it(`device bytes and live storages are flat over 40 steps (tidy${userDispose ? ' + user dispose()' : ''})`, async () => {
      const device = T.cpu();
      const before = device.memoryStats();
      const { marks, backend } = await memoryLoop(device, 40, userDispose, [1, 10, 40]);
      expect(backend).toBe('math');
      const [first, ten, last] = marks as [(typeof marks)[0], (typeof marks)[0], (typeof marks)[0]];
      expect(last.loss).toBeLessThan(first.loss);
      expect(last.currentBytes).toBe(ten.currentBytes);
      expect(last.liveStorages).toBe(ten.liveStorages);
      // parameters and data were disposed at the end: nothing of the loop is left
      expect(device.memoryStats().liveStorages).toBe(before.liveStorages);
    });
  }
});
