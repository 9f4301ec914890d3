import { afterAll, beforeAll } from 'vitest';
import * as T from '@webattn/core-tensor';
import '@webattn/kernels-wasm';
import { paritySuites } from '../../models/test-support/parity-suite.js';

// The models' transformers-parity suite (GPT-2 and ViT against transformers' fixtures: logits, loss, gradients)
// on the wasm device — the same suite models runs on the CPU reference and on WebGPU.
let device: T.Device;
beforeAll(async () => {
  device = await T.getDevice({ kind: 'wasm', wasmThreads: 2, cache: false });
});
afterAll(() => device?.destroy());

paritySuites('on the wasm backend', () => device, {
  gpt2: (n) => (n === 'sdpa' ? ['sdpa'] : ['eager']),
  vit: (n) => [n === 'sdpa' ? 'sdpa' : n === 'flex' ? 'flex_attention' : 'eager'],
});
