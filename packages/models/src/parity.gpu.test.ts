import { afterAll, beforeAll } from 'vitest';
import type { WebGPUDevice } from '@webattn/kernels-webgpu';
import { gpuDevice } from '../../../test-utils/index.js';
import { paritySuites } from '../test-support/parity-suite.js';

let device: WebGPUDevice;
beforeAll(async () => {
  device = await gpuDevice();
});
afterAll(() => device?.destroy());

paritySuites('on WebGPU', () => device, {
  gpt2: (n) => (n === 'sdpa' ? ['sdpa'] : ['eager']),
  vit: (n) => [n === 'sdpa' ? 'sdpa' : n === 'flex' ? 'flex_attention' : 'eager'],
});
