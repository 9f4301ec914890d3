import { describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { WebattnError } from '@webattn/core-tensor';
import {
  AdamW,
  CosineWithWarmup,
  GPT2LMHeadModel,
  Linear,
  SGD,
  ViTForImageClassification,
  clipGradNorm,
  eagerAttention,
  flashAttention,
  flexAttention,
  gpt2Config,
  packedOffsets,
  sdpaAttention,
  vitConfig,
  type AttentionFn,
} from '@webattn/models';

const cpu = T.cpu();
const ints = (v: number[], shape: number[]) => T.tensor(v, shape, { dtype: 'int32', device: cpu });
const tinyGpt = (attention: AttentionFn = sdpaAttention) =>
  new GPT2LMHeadModel(gpt2Config({ n_layer: 2, n_embd: 16, n_head: 2, vocab_size: 23, n_positions: 32, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 }), { seed: 1, attention, device: cpu });

async function code(p: Promise<unknown> | (() => unknown)): Promise<[string, string | undefined]> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(WebattnError);
    return [(e as WebattnError).code, (e as WebattnError).argument];
  }
  throw new Error('expected a WebattnError');
}

describe('Module', () => {
  it('GPT-2 names as transformers, lm_head tied and listed once', () => {
    const m = tinyGpt();
    const names = m.namedParameters().map(([n]) => n);
    expect(names[0]).toBe('transformer.wte.weight');
    expect(names).toContain('transformer.h.1.attn.c_attn.weight');
    expect(names).toContain('transformer.h.0.mlp.c_proj.bias');
    expect(names).toContain('transformer.ln_f.weight');
    expect(names).not.toContain('lm_head.weight');
    expect(m.lm_head.param('weight')).toBe(m.transformer.wte.param('weight'));
    expect(m.parameters().length).toBe(names.length);
    expect(names.length).toBe(2 + 2 * 12 + 2);
  });
  it('loadStateDict: strict lists missing and unexpected keys; shape and dtype checked; alias accepted', async () => {
    const a = tinyGpt();
    const b = new GPT2LMHeadModel(a.config, { seed: 99, device: cpu });
    const sd = a.stateDict();
    await b.loadStateDict({ ...sd, 'lm_head.weight': sd['transformer.wte.weight']! });
    expect(Array.from(await b.transformer.h[1]!.attn.c_attn.param('weight').toArray())).toEqual(Array.from(await sd['transformer.h.1.attn.c_attn.weight']!.toArray()));
    const partial = { ...sd, extra: T.zeros([1]) } as Record<string, T.Tensor>;
    delete partial['transformer.ln_f.bias'];
    await expect(b.loadStateDict(partial)).rejects.toThrow(/missing keys \[transformer\.ln_f\.bias\].*unexpected keys \[extra\]/);
    expect(await b.loadStateDict(partial, { strict: false })).toEqual({ missingKeys: ['transformer.ln_f.bias'], unexpectedKeys: ['extra'] });
    expect(await code(b.loadStateDict({ ...sd, 'transformer.ln_f.bias': T.zeros([3]) }))).toEqual(['SHAPE_MISMATCH', 'transformer.ln_f.bias']);
    expect(await code(b.loadStateDict({ ...sd, 'transformer.ln_f.bias': T.zeros([16], { dtype: 'float64' }) }))).toEqual(['DTYPE_UNSUPPORTED', 'transformer.ln_f.bias']);
    expect(await code(b.loadStateDict(sd, { strict: 'no' as unknown as boolean }))).toEqual(['INVALID_ARGUMENT', 'options.strict']);
  });
  it('train/eval, zeroGrad, to(dtype) keeps weights tied', async () => {
    const m = tinyGpt();
    expect(m.eval().transformer.h[0]!.attn.resid_dropout.training).toBe(false);
    expect(m.train().transformer.drop.training).toBe(true);
    const ids = ints([1, 2, 3, 4], [1, 4]);
    (await m.forward({ inputIds: ids, labels: ids })).loss!.backward();
    expect(m.parameters().every((p) => p.grad)).toBe(true);
    m.zeroGrad();
    expect(m.parameters().every((p) => p.grad === null)).toBe(true);
    await m.to('float64');
    expect(m.parameters().every((p) => p.dtype === 'float64')).toBe(true);
    expect(m.lm_head.param('weight')).toBe(m.transformer.wte.param('weight'));
  });
  it('ViT names as the transformers checkpoint', () => {
    const v = new ViTForImageClassification(vitConfig({ image_size: 8, patch_size: 4, hidden_size: 8, num_attention_heads: 2, num_hidden_layers: 1, intermediate_size: 8, num_labels: 3 }), { device: cpu });
    expect(v.namedParameters().map(([n]) => n)).toEqual([
      'vit.embeddings.cls_token', 'vit.embeddings.position_embeddings', 'vit.embeddings.patch_embeddings.projection.weight', 'vit.embeddings.patch_embeddings.projection.bias',
      'vit.encoder.layer.0.attention.attention.query.weight', 'vit.encoder.layer.0.attention.attention.query.bias', 'vit.encoder.layer.0.attention.attention.key.weight',
      'vit.encoder.layer.0.attention.attention.key.bias', 'vit.encoder.layer.0.attention.attention.value.weight', 'vit.encoder.layer.0.attention.attention.value.bias',
      'vit.encoder.layer.0.attention.output.dense.weight', 'vit.encoder.layer.0.attention.output.dense.bias', 'vit.encoder.layer.0.intermediate.dense.weight',
      'vit.encoder.layer.0.intermediate.dense.bias', 'vit.encoder.layer.0.output.dense.weight', 'vit.encoder.layer.0.output.dense.bias',
      'vit.encoder.layer.0.layernorm_before.weight', 'vit.encoder.layer.0.layernorm_before.bias', 'vit.encoder.layer.0.layernorm_after.weight',
      'vit.encoder.layer.0.layernorm_after.bias', 'vit.layernorm.weight', 'vit.layernorm.bias', 'classifier.weight', 'classifier.bias',
    ]);
  });
});

describe('bad input → coded WebattnError naming the argument', () => {
  it('GPT-2', async () => {
    const m = tinyGpt();
    expect(await code(m.forward({ inputIds: ints([1, 2, 3], [3]) }))).toEqual(['SHAPE_MISMATCH', 'inputIds']);
    expect(await code(m.forward({ inputIds: T.tensor([1, 2], [1, 2], { device: cpu }) }))).toEqual(['DTYPE_UNSUPPORTED', 'inputIds']);
    expect(await code(m.forward({ inputIds: ints([1, 23], [1, 2]) }))).toEqual(['INVALID_ARGUMENT', 'inputIds']);
    expect(await code(m.forward({ inputIds: ints([1, -1], [1, 2]) }))).toEqual(['INVALID_ARGUMENT', 'inputIds']);
    expect(await code(m.forward({ inputIds: ints([1, 2], [1, 2]), positionIds: ints([0, 32], [1, 2]) }))).toEqual(['INVALID_ARGUMENT', 'positionIds']);
    expect(await code(m.forward({ inputIds: ints(new Array(33).fill(1), [1, 33]) }))).toEqual(['INVALID_ARGUMENT', 'inputIds']);
    expect(await code(m.forward({ inputIds: ints([1, 2], [1, 2]), labels: ints([1, 99], [1, 2]) }))).toEqual(['INVALID_ARGUMENT', 'labels']);
    expect(await code(() => gpt2Config({ n_embd: 10, n_head: 3 }))).toEqual(['CONFIG_INVALID', 'config.n_head']);
    expect(await code(() => gpt2Config({ activation_function: 'swish9' }))).toEqual(['CONFIG_INVALID', 'config.activation_function']);
  });
  it('ViT', async () => {
    const v = new ViTForImageClassification(vitConfig({ image_size: 8, patch_size: 4, hidden_size: 8, num_attention_heads: 2, num_hidden_layers: 1, intermediate_size: 8, num_labels: 3 }), { device: cpu });
    expect(await code(v.forward({ pixelValues: T.randn([3, 8, 8]) }))).toEqual(['SHAPE_MISMATCH', 'pixelValues']);
    expect(await code(v.forward({ pixelValues: T.zeros([1, 3, 8, 8], { dtype: 'int32' }) }))).toEqual(['DTYPE_UNSUPPORTED', 'pixelValues']);
    expect(await code(v.forward({ pixelValues: T.randn([1, 3, 10, 8]) }))).toEqual(['SHAPE_MISMATCH', 'pixelValues']);
    await expect(v.forward({ pixelValues: T.randn([1, 3, 10, 8]) })).rejects.toThrow(/not a multiple of the patch size 4/);
    expect(await code(v.forward({ pixelValues: T.randn([1, 3, 12, 12]) }))).toEqual(['SHAPE_MISMATCH', 'pixelValues']);
    expect(await code(v.forward({ pixelValues: T.randn([1, 3, 8, 8]), labels: ints([3], [1]) }))).toEqual(['INVALID_ARGUMENT', 'labels']);
    expect(await code(() => vitConfig({ image_size: 30, patch_size: 8 }))).toEqual(['CONFIG_INVALID', 'config.patch_size']);
    expect(await code(() => new ViTForImageClassification(vitConfig({ image_size: 8, patch_size: 4, hidden_size: 8, num_attention_heads: 2, num_hidden_layers: 1 }), { neighborhoodRadius: -1 }))).toEqual(['INVALID_ARGUMENT', 'options.neighborhoodRadius']);
  });
});

describe('padding, packing and the KV cache', () => {
  const seqs = [[3, 7, 1, 9, 2], [4, 4, 8], [11, 5, 6, 2, 20, 13, 1]];
  for (const [name, fn] of [['eager', eagerAttention], ['sdpa', sdpaAttention], ['flash', flashAttention], ['flex', flexAttention]] as const) {
    it(`${name}: packed logits equal the right-padded run's at every real token`, async () => {
      const m = tinyGpt(fn);
      const L = 7;
      const padIds: number[] = [];
      const mask: number[] = [];
      for (const s of seqs) {
        padIds.push(...s, ...new Array(L - s.length).fill(0));
        mask.push(...s.map(() => 1), ...new Array(L - s.length).fill(0));
      }
      const padded = await m.forward({ inputIds: ints(padIds, [3, L]), attentionMask: ints(mask, [3, L]) });
      const pv = await padded.logits.toArray();
      const packedIds = seqs.flat();
      const pos = seqs.flatMap((s) => s.map((_, i) => i));
      const packed = await m.forward({ inputIds: ints(packedIds, [1, packedIds.length]), positionIds: ints(pos, [1, pos.length]) });
      const kv = await packed.logits.toArray();
      const V = 23;
      let at = 0;
      let worst = 0;
      seqs.forEach((s, b) => {
        for (let i = 0; i < s.length; i++, at++) for (let c = 0; c < V; c++) worst = Math.max(worst, Math.abs(kv[at * V + c]! - pv[(b * L + i) * V + c]!));
      });
      expect(worst).toBeLessThan(1e-4);
      // and without the position ids the packed row attends across sequences: different logits
      const wrong = await (await m.forward({ inputIds: ints(packedIds, [1, packedIds.length]) })).logits.toArray();
      expect(Math.max(...Array.from(wrong, (x, i) => Math.abs(x - kv[i]!)))).toBeGreaterThan(1e-3);
    });
    it(`${name}: generate with a KV cache equals argmax of full forwards`, async () => {
      const m = tinyGpt(fn);
      const prompt = ints([3, 7, 1, 4, 4, 8], [2, 3]);
      const out = await m.generate(prompt, { maxNewTokens: 5, eosTokenId: null });
      expect(out.shape).toEqual([2, 8]);
      const got = await out.toArray();
      // oracle: no cache, full forward over the growing sequence each step
      const rows = [[3, 7, 1], [4, 4, 8]];
      for (let t = 0; t < 5; t++) {
        const L = rows[0]!.length;
        const { logits } = await m.forward({ inputIds: ints(rows.flat(), [2, L]) });
        const lv = await logits.toArray();
        rows.forEach((r, b) => {
          const base = (b * L + L - 1) * 23;
          let best = 0;
          for (let c = 1; c < 23; c++) if (lv[base + c]! > lv[base + best]!) best = c;
          r.push(best);
        });
      }
      expect(Array.from(got)).toEqual(rows.flat());
    });
  }
  it('two packed rows (B = 2) equal each sequence alone, for every attention function', async () => {
    const rowsSeqs = [[[3, 7, 1], [9, 2, 4, 4, 8]], [[11, 5], [6, 2, 20, 13, 1, 1]]];
    for (const fn of [eagerAttention, sdpaAttention, flashAttention, flexAttention]) {
      const m = tinyGpt(fn);
      const ids = rowsSeqs.flatMap((r) => r.flat());
      const pos = rowsSeqs.flatMap((r) => r.flatMap((s) => s.map((_, i) => i)));
      const got = await (await m.forward({ inputIds: ints(ids, [2, 8]), positionIds: ints(pos, [2, 8]) })).logits.toArray();
      let at = 0;
      for (const s of rowsSeqs.flat()) {
        const want = await (await m.forward({ inputIds: ints(s, [1, s.length]) })).logits.toArray();
        const slice = got.subarray(at * 23, (at + s.length) * 23);
        expect(Math.max(...Array.from(slice, (x, i) => Math.abs(x - want[i]!)))).toBeLessThan(1e-4);
        at += s.length;
      }
    }
  });
  it('a left-padded batch equals each prompt alone at the real tokens, for every attention function', async () => {
    for (const fn of [eagerAttention, sdpaAttention, flashAttention, flexAttention]) {
      const m = tinyGpt(fn);
      // a left-padded batch forward equals each prompt alone at the real tokens (positions as the unpadded run)
      const ids = [0, 0, 5, 9, 2, 7, 1, 3, 4, 8];
      const mask = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
      const pos = [0, 0, 0, 1, 2, 0, 1, 2, 3, 4];
      const got = await (await m.forward({ inputIds: ints(ids, [2, 5]), attentionMask: ints(mask, [2, 5]), positionIds: ints(pos, [2, 5]) })).logits.toArray();
      const a = await (await m.forward({ inputIds: ints([5, 9, 2], [1, 3]) })).logits.toArray();
      const b = await (await m.forward({ inputIds: ints([7, 1, 3, 4, 8], [1, 5]) })).logits.toArray();
      const rowA = got.subarray(2 * 23, 5 * 23);
      const rowB = got.subarray(5 * 23, 10 * 23);
      expect(Math.max(...Array.from(rowA, (x, i) => Math.abs(x - a[i]!)))).toBeLessThan(1e-4);
      expect(Math.max(...Array.from(rowB, (x, i) => Math.abs(x - b[i]!)))).toBeLessThan(1e-4);
    }
  });
  it('sampling is seeded and respects topK', async () => {
    const m = tinyGpt();
    const p = ints([3, 7, 1], [1, 3]);
    const a = await (await m.generate(p, { maxNewTokens: 6, temperature: 1.5, topK: 3, seed: 5, eosTokenId: null })).toArray();
    const b = await (await m.generate(p, { maxNewTokens: 6, temperature: 1.5, topK: 3, seed: 5, eosTokenId: null })).toArray();
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(await code(m.generate(p, { topP: 0 }))).toEqual(['INVALID_ARGUMENT', 'options.topP']);
  });
  it('packedOffsets finds the restarts of position ids', () => {
    expect(Array.from(packedOffsets(Int32Array.from([0, 1, 2, 0, 1, 0, 1, 2, 3, 0]), 2, 5)!)).toEqual([0, 3, 5, 9, 10]);
    expect(packedOffsets(Int32Array.from([0, 1, 2, 3]), 1, 4)).toBeNull();
  });
});

describe('optimizers (against float64 formulas)', () => {
  async function setup() {
    const lin = new Linear(3, 2, { seed: 5, std: 1, device: cpu });
    await lin.to('float64');
    const grads = [T.randn([2, 3], { seed: 6, dtype: 'float64' }), T.randn([2], { seed: 7, dtype: 'float64' })];
    return { lin, grads };
  }
  it('AdamW matches the PyTorch update over 3 steps', async () => {
    const { lin, grads } = await setup();
    const ps = lin.parameters();
    const p0 = await Promise.all(ps.map(async (p) => Float64Array.from(await p.toArray())));
    const gv = await Promise.all(grads.map(async (g) => Float64Array.from(await g.toArray())));
    const opt = new AdamW(ps, { lr: 0.01, betas: [0.8, 0.95], eps: 1e-6, weightDecay: 0.1 });
    const m = gv.map((g) => new Float64Array(g.length));
    const v = gv.map((g) => new Float64Array(g.length));
    const ref = p0.map((p) => p.slice());
    for (let t = 1; t <= 3; t++) {
      ps.forEach((p, i) => (p.grad = T.mul(grads[i]!, t)));
      opt.step();
      ref.forEach((p, i) => {
        for (let j = 0; j < p.length; j++) {
          const g = gv[i]![j]! * t;
          p[j] = p[j]! * (1 - 0.01 * 0.1);
          m[i]![j] = 0.8 * m[i]![j]! + 0.2 * g;
          v[i]![j] = 0.95 * v[i]![j]! + 0.05 * g * g;
          const mh = m[i]![j]! / (1 - 0.8 ** t);
          const vh = v[i]![j]! / (1 - 0.95 ** t);
          p[j] = p[j]! - (0.01 * mh) / (Math.sqrt(vh) + 1e-6);
        }
      });
    }
    for (let i = 0; i < ps.length; i++) {
      const got = await ps[i]!.toArray();
      // PyTorch: denom = sqrt(v)/sqrt(bc2) + eps; step = lr/bc1 — identical to mh/(sqrt(vh)+eps) up to rounding
      ref[i]!.forEach((r, j) => expect(Math.abs(got[j]! - r)).toBeLessThan(1e-12));
    }
  });
  it('SGD with momentum and weight decay matches torch.optim.SGD', async () => {
    const { lin, grads } = await setup();
    const ps = lin.parameters();
    const ref = await Promise.all(ps.map(async (p) => Float64Array.from(await p.toArray())));
    const gv = await Promise.all(grads.map(async (g) => Float64Array.from(await g.toArray())));
    const opt = new SGD(ps, { lr: 0.1, momentum: 0.9, weightDecay: 0.01, dampening: 0.1 });
    const buf = gv.map(() => null as Float64Array | null);
    for (let t = 0; t < 3; t++) {
      ps.forEach((p, i) => (p.grad = grads[i]!));
      opt.step();
      ref.forEach((p, i) => {
        const d = Float64Array.from(gv[i]!, (g, j) => g + 0.01 * p[j]!);
        buf[i] = buf[i] ? Float64Array.from(buf[i]!, (b, j) => 0.9 * b + 0.9 * d[j]!) : d;
        for (let j = 0; j < p.length; j++) p[j] = p[j]! - 0.1 * buf[i]![j]!;
      });
    }
    for (let i = 0; i < ps.length; i++) {
      const got = await ps[i]!.toArray();
      ref[i]!.forEach((r, j) => expect(Math.abs(got[j]! - r)).toBeLessThan(1e-12));
    }
  });
  it('clipGradNorm scales to maxNorm and returns the norm before clipping', async () => {
    const { lin, grads } = await setup();
    const ps = lin.parameters();
    ps.forEach((p, i) => (p.grad = T.mul(grads[i]!, 1)));
    const all = [...(await grads[0]!.toArray()), ...(await grads[1]!.toArray())];
    const norm = Math.sqrt(all.reduce((a, g) => a + g * g, 0));
    expect(await clipGradNorm(ps, 0.5).item()).toBeCloseTo(norm, 12);
    const after = [...(await ps[0]!.grad!.toArray()), ...(await ps[1]!.grad!.toArray())];
    after.forEach((g, j) => expect(g).toBeCloseTo((all[j]! * 0.5) / (norm + 1e-6), 12));
    expect(await code(() => clipGradNorm(ps, -1))).toEqual(['INVALID_ARGUMENT', 'maxNorm']);
  });
  it('cosine schedule with warmup follows transformers', () => {
    const opt = new SGD([T.zeros([1], { requiresGrad: true })], { lr: 1 });
    const s = new CosineWithWarmup(opt, { warmupSteps: 4, totalSteps: 12 });
    const lrs = [opt.lr];
    for (let i = 0; i < 12; i++) lrs.push(s.step());
    expect(lrs.slice(0, 5)).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(lrs[8]).toBeCloseTo(0.5, 12);
    expect(lrs[12]).toBeCloseTo(0, 12);
  });
  it('a few AdamW steps lower the loss of a tiny GPT-2', async () => {
    const m = tinyGpt();
    const ids = ints([1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8], [2, 8]);
    const opt = new AdamW(m.parameters(), { lr: 1e-2 });
    const losses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const { loss } = await m.forward({ inputIds: ids, labels: ids });
      losses.push(await loss!.item());
      loss!.backward();
      opt.step();
      opt.zeroGrad();
    }
    expect(losses[7]!).toBeLessThan(losses[0]! * 0.7);
  });
});

describe('generate runs without the autograd tape (noGradAsync)', () => {
  it('every attention call of generate sees recording off; a forward afterwards records again', async () => {
    const seen: boolean[] = [];
    const spy: AttentionFn = (m, q, k, v, o) => {
      seen.push(T.isGradEnabled() && q.requiresGrad);
      return sdpaAttention(m, q, k, v, o);
    };
    const m = tinyGpt(spy);
    const prompt = ints([1, 2, 3], [1, 3]);
    const out = await m.generate(prompt, { maxNewTokens: 3, eosTokenId: null });
    expect(out.shape).toEqual([1, 6]);
    expect(seen.length).toBe(2 * 3); // 2 layers × 3 steps
    expect(seen.every((x) => x === false)).toBe(true);
    expect(T.isGradEnabled()).toBe(true);
    seen.length = 0;
    const { logits } = await m.forward({ inputIds: prompt });
    expect(logits.requiresGrad).toBe(true);
    expect(seen).toEqual([true, true]);
  });
});
