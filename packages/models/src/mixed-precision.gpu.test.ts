import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from '@webattn/kernels-webgpu';
import { AdamW, GPT2LMHeadModel, GradScaler, ViTForImageClassification, flashAttention, gpt2Config, sdpaAttention, vitConfig } from '@webattn/models';
import { gpuDevice } from '../../../test-utils/index.js';

// float16 training on the GPU: a float16 model, float32 master weights and moments in AdamW, dynamic
// loss scaling (GradScaler). Needs `shader-f16`, which software adapters lack: elsewhere the test is
// reported as skipped with the reason (never as passed), and WEBATTN_EXPECT_F16=1 turns a missing
// feature into a failure. The optimizer and scaler math is tested on the CPU in mixed-precision.test.ts.
let gpu: WebGPUDevice;
let hasF16 = false;
beforeAll(async () => {
  gpu = await gpuDevice();
  hasF16 = gpu.hasFeature('shader-f16');
});
afterAll(() => gpu?.destroy());

function needF16(ctx: TestContext): void {
  if (hasF16) return;
  if (process.env.WEBATTN_EXPECT_F16 === '1') expect.fail(`WEBATTN_EXPECT_F16=1 but adapter "${gpu.info.adapter}" has no shader-f16`);
  ctx.skip(`adapter "${gpu.info.adapter}" has no shader-f16`);
}

async function train20(model: GPT2LMHeadModel | ViTForImageClassification, batch: Record<string, T.Tensor>): Promise<number[]> {
  await model.to('float16');
  const opt = new AdamW(model.parameters(), { lr: 3e-3, masterWeights: true });
  const scaler = new GradScaler();
  const losses: number[] = [];
  for (let i = 0; i < 20; i++) {
    await T.tidyAsync(async () => {
      const { loss } = await model.forward(batch as never);
      losses.push(await loss!.item());
      scaler.scale(loss!).backward();
      await scaler.step(opt);
      scaler.update();
      opt.zeroGrad();
    });
  }
  expect(model.parameters().every((p) => p.dtype === 'float16')).toBe(true);
  opt.dispose();
  model.dispose();
  return losses;
}

describe('float16 training with master weights + GradScaler (needs shader-f16)', () => {
  for (const [name, attention] of [
    ['sdpa', sdpaAttention],
    ['flash', flashAttention],
  ] as const) {
    it(`tiny GPT-2 (${name}): 20 steps, every loss finite, the last below 0.8× the first`, async (ctx) => {
      needF16(ctx);
      const cfg = gpt2Config({ n_layer: 2, n_embd: 32, n_head: 2, vocab_size: 37, n_positions: 32, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 });
      const model = new GPT2LMHeadModel(cfg, { seed: 4, attention, device: gpu });
      const ids = T.tensor(Int32Array.from({ length: 2 * 16 }, (_, i) => (i * 7 + (i >> 4)) % 37), [2, 16], { dtype: 'int32', device: gpu });
      const losses = await train20(model, { inputIds: ids, labels: ids });
      expect(losses.every(Number.isFinite), `losses ${losses.join(', ')}`).toBe(true);
      expect(losses[19]!).toBeLessThan(losses[0]! * 0.8);
    });
  }

  it('tiny ViT (sdpa): 20 steps, every loss finite, the last below 0.8× the first', async (ctx) => {
    needF16(ctx);
    const cfg = vitConfig({ image_size: 8, patch_size: 4, hidden_size: 16, num_attention_heads: 2, num_hidden_layers: 1, intermediate_size: 32, num_labels: 3, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 });
    const model = new ViTForImageClassification(cfg, { seed: 5, attention: sdpaAttention, device: gpu });
    const px = T.randn([4, 3, 8, 8], { seed: 6, device: gpu, dtype: 'float16' });
    const labels = T.tensor([0, 1, 2, 1], [4], { dtype: 'int32', device: gpu });
    const losses = await train20(model, { pixelValues: px, labels });
    expect(losses.every(Number.isFinite), `losses ${losses.join(', ')}`).toBe(true);
    expect(losses[19]!).toBeLessThan(losses[0]! * 0.8);
  });
});
