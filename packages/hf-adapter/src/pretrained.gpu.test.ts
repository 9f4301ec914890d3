import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tensor } from '@webattn/core-tensor';
import type { WebGPUDevice } from '@webattn/kernels-webgpu';
import { sdpaAttention, type AttentionFn } from '@webattn/models';
import { gpuDevice } from '../../../test-utils/index.js';
import { IMPLS, gpt2PackedParity, gpt2Parity, modelCase, readAll, relErr, vitParity } from '../test/parity.js';
import { AttentionInterface } from './attention-interface.js';
import { fromPretrained, serializePretrained } from './pretrained.js';
import { readSafetensors } from './safetensors.js';

let device: WebGPUDevice;
beforeAll(async () => {
  device = await gpuDevice();
});
afterAll(() => device?.destroy());

describe('parity with transformers 5.17 on WebGPU (fromPretrained of the fixture checkpoints)', () => {
  for (const impl of IMPLS) {
    it(`GPT-2 ${impl}: logits/loss rel err ≤ 1e-4, grads ≤ 1e-3; packed batch = sequences alone`, async () => {
      const r = await gpt2Parity(impl, device);
      expect(r.logits).toBeLessThanOrEqual(1e-4);
      expect(r.loss).toBeLessThanOrEqual(1e-4);
      for (const [k, v] of Object.entries(r.grads)) expect(v, k).toBeLessThanOrEqual(1e-3);
      expect(await gpt2PackedParity(impl, device)).toBeLessThanOrEqual(1e-4);
    });
    it(`ViT ${impl}: logits/loss rel err ≤ 1e-4, grads ≤ 1e-3`, async () => {
      const r = await vitParity(impl, device);
      expect(r.logits).toBeLessThanOrEqual(1e-4);
      expect(r.loss).toBeLessThanOrEqual(1e-4);
      for (const [k, v] of Object.entries(r.grads)) expect(v, k).toBeLessThanOrEqual(1e-3);
    });
  }

  it('a registered function runs on the GPU model; run-time switch; the weights read back from the GPU serialize unchanged', async () => {
    let calls = 0;
    const counted: AttentionFn = (m, q, k, v, o) => (calls++, sdpaAttention(m, q, k, v, o));
    AttentionInterface.register('counted_sdpa', counted);
    try {
      const g = modelCase('gpt2');
      const model = await fromPretrained(g.dir, { device, attnImplementation: 'counted_sdpa' });
      const ids = g.ref('input_ids');
      const inputIds = tensor(ids.data, ids.shape, { dtype: 'int32', device });
      const a = await readAll((await model.forward({ inputIds })).logits);
      expect(calls).toBe(2);
      expect(relErr(a, g.ref('eager.logits').data as Float32Array)).toBeLessThanOrEqual(1e-4);
      model.setAttnImplementation('flex_attention');
      expect(model.config.attnImplementation).toBe('flex_attention');
      const b = await readAll((await model.forward({ inputIds })).logits);
      expect(calls).toBe(2);
      expect(relErr(b, g.ref('eager.logits').data as Float32Array)).toBeLessThanOrEqual(1e-4);
      const files = await serializePretrained(model);
      const back = readSafetensors(files['model.safetensors']!);
      const src = readSafetensors(new Uint8Array(await (await import('node:fs/promises')).readFile(`${g.dir}/model.safetensors`)));
      for (const k of Object.keys(src.tensors)) expect(back.tensors[k]!.data, k).toEqual(src.tensors[k]!.data);
    } finally {
      AttentionInterface.unregister('counted_sdpa');
    }
  });
});
