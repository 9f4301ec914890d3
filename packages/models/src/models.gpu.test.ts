import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from '@webattn/kernels-webgpu';
import {
  AdamW,
  GPT2LMHeadModel,
  ViTForImageClassification,
  eagerAttention,
  flashAttention,
  flexAttention,
  gpt2Config,
  sdpaAttention,
  vitConfig,
  type AttentionFn,
} from '@webattn/models';
import { gpuDevice } from '../../../test-utils/index.js';
import { relErr } from '../test-support/fixtures.js';

let device: WebGPUDevice;
beforeAll(async () => {
  device = await gpuDevice();
});
afterAll(() => device?.destroy());

const cpu = T.cpu();
const ints = (v: number[], shape: number[], dev: T.Device) => T.tensor(v, shape, { dtype: 'int32', device: dev });
const gptCfg = gpt2Config({ n_layer: 2, n_embd: 32, n_head: 4, vocab_size: 41, n_positions: 64, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 });

describe('GPT-2 on WebGPU', () => {
  const seqs = [[3, 7, 1, 9, 2], [4, 4, 8], [11, 5, 6, 2, 20, 13, 1, 40, 39]];
  for (const [name, fn] of [['eager', eagerAttention], ['sdpa', sdpaAttention], ['flash', flashAttention], ['flex', flexAttention]] as const) {
    it(`${name}: packed (padding-free) logits equal each sequence run alone on the CPU reference`, async () => {
      const m = new GPT2LMHeadModel(gptCfg, { seed: 2, attention: fn, device });
      const ref = new GPT2LMHeadModel(gptCfg, { seed: 2, attention: eagerAttention, device: cpu });
      const ids = seqs.flat();
      const pos = seqs.flatMap((s) => s.map((_, i) => i));
      const { logits } = await m.forward({ inputIds: ints(ids, [1, ids.length], device), positionIds: ints(pos, [1, pos.length], device) });
      const got = await logits.toArray();
      let at = 0;
      for (const s of seqs) {
        const { logits: l } = await ref.forward({ inputIds: ints(s, [1, s.length], cpu) });
        const want = await l.toArray();
        const slice = got.subarray(at * 41, (at + s.length) * 41);
        expect(relErr(slice, want)).toBeLessThan(1e-4);
        at += s.length;
      }
    });
    it(`${name}: KV-cache generation equals the CPU reference's`, async () => {
      const m = new GPT2LMHeadModel(gptCfg, { seed: 3, attention: fn, device });
      const ref = new GPT2LMHeadModel(gptCfg, { seed: 3, attention: eagerAttention, device: cpu });
      const prompt = [3, 7, 1, 4, 4, 8];
      const got = await (await m.generate(ints(prompt, [2, 3], device), { maxNewTokens: 6, eosTokenId: null })).toArray();
      const want = await (await ref.generate(ints(prompt, [2, 3], cpu), { maxNewTokens: 6, eosTokenId: null })).toArray();
      expect(Array.from(got)).toEqual(Array.from(want));
    });
  }
  it('a padded batch (attention mask) matches the CPU reference at real tokens (every attention function)', async () => {
    for (const fn of [eagerAttention, sdpaAttention, flashAttention, flexAttention]) {
      const m = new GPT2LMHeadModel(gptCfg, { seed: 4, attention: fn, device });
      const ref = new GPT2LMHeadModel(gptCfg, { seed: 4, attention: eagerAttention, device: cpu });
      const ids = [1, 2, 3, 0, 0, 5, 6, 7, 8, 9];
      const mask = [1, 1, 1, 0, 0, 1, 1, 1, 1, 1];
      const a = await (await m.forward({ inputIds: ints(ids, [2, 5], device), attentionMask: ints(mask, [2, 5], device) })).logits.toArray();
      const b = await (await ref.forward({ inputIds: ints(ids, [2, 5], cpu), attentionMask: ints(mask, [2, 5], cpu) })).logits.toArray();
      const real = (arr: ArrayLike<number>) => Array.from(arr).filter((_, i) => mask[Math.floor(i / 41)] === 1);
      expect(relErr(real(a), real(b))).toBeLessThan(1e-4);
    }
  });
  it('AdamW on the device matches the CPU float64 update (same gradients)', async () => {
    const m = new GPT2LMHeadModel(gptCfg, { seed: 5, device });
    const ref = new GPT2LMHeadModel(gptCfg, { seed: 5, device: cpu });
    await ref.to('float64');
    const optG = new AdamW(m.parameters(), { lr: 1e-2, weightDecay: 0.1 });
    const optC = new AdamW(ref.parameters(), { lr: 1e-2, weightDecay: 0.1 });
    const pg = m.namedParameters();
    const pc = new Map(ref.namedParameters());
    for (let i = 0; i < 3; i++) {
      for (const [n, p] of pg) {
        const g = T.randn(p.shape, { seed: 100 * i + n.length, device: cpu });
        p.grad = await g.to(device);
        pc.get(n)!.grad = T.cast(g, 'float64');
      }
      optG.step();
      optC.step();
    }
    for (const [n, p] of pg) expect(relErr(await p.toArray(), await pc.get(n)!.toArray()), n).toBeLessThan(1e-5);
  });
  it('training steps inside tidyAsync free their intermediates: device memory after step 12 is at most that after step 4', async () => {
    for (const fn of [flashAttention, flexAttention]) {
      const m = new GPT2LMHeadModel(gptCfg, { seed: 6, attention: fn, device });
      const opt = new AdamW(m.parameters(), { lr: 1e-3 });
      const ids = ints([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [2, 6], device);
      const at: [number, number][] = [];
      const losses: number[] = [];
      for (let i = 1; i <= 12; i++) {
        losses.push(
          await T.tidyAsync(async () => {
            const { loss } = await m.forward({ inputIds: ids, labels: ids });
            loss!.backward();
            opt.step();
            opt.zeroGrad();
            return loss!.item();
          }),
        );
        if (i === 4 || i === 12) at.push([device.memoryStats().currentBytes, device.memoryStats().liveStorages]);
      }
      console.log(`${fn === flexAttention ? 'flex' : 'flash'}: live device bytes/storages after step 4: ${at[0]}, after step 12: ${at[1]} (${device.info.adapter})`);
      // earlier tests' garbage may be collected meanwhile (the figures can only fall), but nothing may grow
      expect(at[1]![0]).toBeLessThanOrEqual(at[0]![0]);
      expect(at[1]![1]).toBeLessThanOrEqual(at[0]![1]);
      expect(losses[11]!).toBeLessThan(losses[0]!);
    }
  });
});

/** Oracle attention for the ViT variants: explicit math with a dense mask and score function, on the CPU. */
function oracle(mask: ((q: number, k: number) => boolean) | null, cap: number | null): AttentionFn {
  return (_m, q, k, v, o) => {
    const L = q.shape[2]!;
    let s = T.mul(T.matmul(q, k.transpose(-1, -2)), o.scaling);
    if (cap) s = T.mul(T.tanh(T.div(s, cap)), cap);
    if (mask) {
      const a = new Uint8Array(L * L);
      for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) a[i * L + j] = mask(i, j) ? 1 : 0;
      s = T.where(T.tensor(a, [L, L], { dtype: 'bool', device: q.device }), s, -Infinity);
    }
    return [T.matmul(T.softmax(s, -1), v).transpose(1, 2), null];
  };
}

describe('ViT variants (flex) against an explicit oracle', () => {
  const cfg = vitConfig({ image_size: 40, patch_size: 4, hidden_size: 32, num_attention_heads: 2, num_hidden_layers: 2, intermediate_size: 48, num_labels: 5 });
  const gw = 10;
  const r = 1;
  const nb = (q: number, k: number) => q === 0 || k === 0 || (Math.abs(Math.floor((q - 1) / gw) - Math.floor((k - 1) / gw)) <= r && Math.abs(((q - 1) % gw) - ((k - 1) % gw)) <= r);
  for (const [label, opts, mask, cap] of [
    ['softcap 5', { softcap: 5 }, null, 5],
    ['3×3 neighbourhood', { neighborhoodRadius: r, blockSize: 64 }, nb, null],
  ] as const) {
    it(`${label}: logits and grads on WebGPU and the CPU flex path`, async () => {
      const px = T.randn([2, 3, 40, 40], { seed: 21 });
      const labels = [1, 4];
      const ref = new ViTForImageClassification(cfg, { seed: 9, attention: oracle(mask, cap), device: cpu });
      const rr = await ref.forward({ pixelValues: px, labels: ints(labels, [2], cpu) });
      rr.loss!.backward();
      const want = await rr.logits.toArray();
      for (const dev of [cpu, device] as T.Device[]) {
        const m = new ViTForImageClassification(cfg, { seed: 9, attention: flexAttention, device: dev, ...opts });
        const pxd = dev === cpu ? px : await px.to(dev);
        const res = await m.forward({ pixelValues: pxd, labels: ints(labels, [2], dev) });
        expect(relErr(await res.logits.toArray(), want), `${dev.backend} logits`).toBeLessThan(1e-4);
        res.loss!.backward();
        const refP = new Map(ref.namedParameters());
        for (const [n, p] of m.namedParameters()) {
          if (!/layer\.0\.attention\.attention\.query\.weight|cls_token|classifier\.weight/.test(n)) continue;
          expect(relErr(await p.grad!.toArray(), await refP.get(n)!.grad!.toArray()), `${dev.backend} grad ${n}`).toBeLessThan(1e-3);
        }
      }
    });
  }
});

describe('ViT long-sequence configuration (patch 4)', () => {
  it('64 px images in patches of 4 (L = 257): flash and sdpa on WebGPU equal eager on the CPU reference', async () => {
    const cfg = vitConfig({ image_size: 64, patch_size: 4, hidden_size: 32, num_attention_heads: 2, num_hidden_layers: 1, intermediate_size: 32, num_labels: 3 });
    const px = T.randn([1, 3, 64, 64], { seed: 31 });
    const ref = new ViTForImageClassification(cfg, { seed: 12, attention: eagerAttention, device: cpu });
    const want = await (await ref.forward({ pixelValues: px })).logits.toArray();
    for (const fn of [flashAttention, sdpaAttention]) {
      const m = new ViTForImageClassification(cfg, { seed: 12, attention: fn, device });
      const got = await (await m.forward({ pixelValues: await px.to(device) })).logits.toArray();
      expect(relErr(got, want)).toBeLessThan(1e-4);
    }
  });
});

