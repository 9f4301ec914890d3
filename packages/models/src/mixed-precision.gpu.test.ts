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

// GradScaler.unscale and AdamW with master weights on WebGPU run fused kernels (one dispatch per gradient for the
// unscale + inf/NaN check, one per parameter for the update + float16 write-back); checked against float64 formulas
/** AdamW's float64 update of one element (torch.optim.AdamW), from step t−1 state. */
function adamw64(w: number, g: number, m: number, v: number, t: number, lr: number, wd: number, b1 = 0.9, b2 = 0.999, eps = 1e-8) {
  const m1 = b1 * m + (1 - b1) * g;
  const v1 = b2 * v + (1 - b2) * g * g;
  const w1 = w * (1 - lr * wd) - (lr / (1 - b1 ** t)) * (m1 / (Math.sqrt(v1) / Math.sqrt(1 - b2 ** t) + eps));
  return { w: w1, m: m1, v: v1 };
}

describe('GradScaler + AdamW on the GPU match float64 formulas (fused unscale / inf check / update kernels)', () => {
  async function run(dtype: 'float32' | 'float16') {
    const n = 300;
    const w0 = Array.from(await T.randn([n], { seed: 21, device: T.cpu() }).toArray());
    const p = T.tensor(w0, [n], { dtype, device: gpu, requiresGrad: true });
    const wq = Array.from(await p.toArray()); // the weights as stored (float16-rounded)
    const opt = new AdamW([p], { lr: 0.01, weightDecay: 0.1, masterWeights: true });
    const scaler = new GradScaler({ initScale: 1024 });
    // a NaN gradient, then an infinite one: both steps skipped, the parameter untouched, the scale halved twice
    for (const bad of [NaN, Infinity]) {
      const g = w0.map((x, i) => (i === 137 ? bad : x * 512));
      p.grad = T.tensor(g, [n], { dtype, device: gpu });
      expect(await scaler.step(opt)).toBe(false);
      scaler.update();
      expect(Array.from(await p.toArray())).toEqual(wq);
    }
    expect(scaler.getScale()).toBe(256);
    expect(opt.stepCount).toBe(0); // skipped steps are not counted (the bias corrections below use t = 1, 2)
    expect(opt.moments(p)?.step ?? 0).toBe(0);
    // two good steps: the unscaled float32 gradient is exactly g / 256; the update follows AdamW in float64
    let w = wq.slice();
    let m = new Array<number>(n).fill(0);
    let v = new Array<number>(n).fill(0);
    for (let t = 1; t <= 2; t++) {
      const gs = T.randn([n], { seed: 30 + t, device: gpu, dtype });
      const gq = Array.from(await T.mul(gs, 256).toArray()); // the scaled gradient as stored
      p.grad = T.mul(gs, 256);
      scaler.unscale(opt);
      expect(p.grad!.dtype).toBe('float32');
      const u = Array.from(await p.grad!.toArray());
      u.forEach((x, i) => expect(x).toBe(gq[i]! / 256));
      expect(await scaler.step(opt)).toBe(true);
      scaler.update();
      const next = w.map((x, i) => adamw64(x, gq[i]! / 256, m[i]!, v[i]!, t, 0.01, 0.1));
      w = next.map((r) => r.w);
      m = next.map((r) => r.m);
      v = next.map((r) => r.v);
      const master = opt.masterOf(p);
      const got = Array.from(await (master ?? p).toArray());
      got.forEach((x, i) => expect(Math.abs(x - w[i]!)).toBeLessThanOrEqual(1e-6 + 1e-5 * Math.abs(w[i]!)));
      if (master) {
        // the float16 parameter is the master rounded (round to nearest even, as the GPU's f32 → f16 conversion)
        const want = Array.from(await T.cast(T.tensor(got, [n], { device: T.cpu() }), 'float16').toArray());
        expect(Array.from(await p.toArray())).toEqual(want);
        w = got; // the next step starts from the float32 master
      } else w = got;
      opt.zeroGrad();
    }
    expect(opt.stepCount).toBe(2);
    expect(opt.moments(p)!.step).toBe(2);
    const mg = Array.from(await opt.moments(p)!.m.toArray());
    mg.forEach((x, i) => expect(Math.abs(x - m[i]!)).toBeLessThanOrEqual(1e-7 + 1e-5 * Math.abs(m[i]!)));
    opt.dispose();
    p.dispose();
  }
  it('float32 parameters', async () => run('float32'));
  it('float16 parameters with float32 master weights (needs shader-f16)', async (ctx) => {
    needF16(ctx);
    await run('float16');
  });
});
