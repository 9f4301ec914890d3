import { describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import {
  Conv1D,
  CrossEntropyLoss,
  Dropout,
  Embedding,
  GELU,
  GPT2LMHeadModel,
  LayerNorm,
  Linear,
  Module,
  PatchEmbedding,
  ViTForImageClassification,
  eagerAttention,
  flexAttention,
  gpt2Config,
  vitConfig,
} from '@webattn/models';

const cpu = T.cpu();
const f64 = { dtype: 'float64' as const, device: cpu };

/**
 * Checks the gradients of `m`'s parameters (and of `x` when given) against central differences of
 * `loss = sum(f(x) · w)` in float64 on the CPU reference device.
 */
async function gradcheck(m: Module, f: (x: T.Tensor | null) => Promise<T.Tensor> | T.Tensor, x: T.Tensor | null, maxPerTensor = 12) {
  await m.to('float64');
  if (x) x.requiresGrad = true;
  const out0 = await f(x);
  const w = T.randn(out0.shape, { seed: 4242, ...f64 });
  T.sum(T.mul(out0, w)).backward();
  const targets: [string, T.Tensor][] = [...m.namedParameters(), ...(x ? [['x', x] as [string, T.Tensor]] : [])];
  const eps = 1e-6;
  let checked = 0;
  for (const [name, p] of targets) {
    expect(p.grad, `grad of ${name}`).not.toBeNull();
    const analytic = await p.grad!.toArray();
    const base = Float64Array.from(await p.toArray());
    const step = Math.max(1, Math.floor(base.length / maxPerTensor));
    for (let j = 0; j < base.length; j += step) {
      const at = async (d: number) => {
        const data = base.slice();
        data[j] = data[j]! + d;
        T.noGrad(() => T.copyInto(p, T.tensor(data, p.shape, f64)));
        const y = await f(x);
        return (await T.noGrad(() => T.sum(T.mul(y, w))).toArray())[0]!;
      };
      const num = ((await at(eps)) - (await at(-eps))) / (2 * eps);
      T.noGrad(() => T.copyInto(p, T.tensor(base, p.shape, f64)));
      expect(Math.abs(analytic[j]! - num), `${name}[${j}]: analytic ${analytic[j]} vs numeric ${num}`).toBeLessThan(1e-6 + 1e-5 * Math.abs(num));
      checked++;
    }
  }
  expect(checked).toBeGreaterThan(0);
}

describe('layer gradients match central differences (float64 CPU reference)', () => {
  it('Linear (with and without bias)', async () => {
    for (const bias of [true, false]) {
      const m = new Linear(5, 3, { seed: 1, bias, std: 0.5 });
      expect(m.namedParameters().map(([n]) => n)).toEqual(bias ? ['weight', 'bias'] : ['weight']);
      await gradcheck(m, (x) => m.forward(x!), T.randn([2, 4, 5], { seed: 2, ...f64 }));
    }
  });
  it('Conv1D stores weight [in, out] and computes x W + b', async () => {
    const m = new Conv1D(6, 4, { seed: 3, std: 0.5 });
    expect(m.param('weight').shape).toEqual([4, 6]);
    await gradcheck(m, (x) => m.forward(x!), T.randn([3, 4], { seed: 4, ...f64 }));
    // against an explicit formula
    const x = T.randn([2, 4], { seed: 5, ...f64 });
    const y = await m.forward(x).toArray();
    const W = await m.param('weight').toArray();
    const b = await m.param('bias').toArray();
    const xv = await x.toArray();
    for (let i = 0; i < 2; i++) for (let o = 0; o < 6; o++) {
      let s = b[o]!;
      for (let k = 0; k < 4; k++) s += xv[i * 4 + k]! * W[k * 6 + o]!;
      expect(y[i * 6 + o]!).toBeCloseTo(s, 12);
    }
  });
  it('Embedding', async () => {
    const m = new Embedding(7, 3, { seed: 6, std: 1 });
    const ids = T.tensor([1, 4, 4, 6, 0], [5], { dtype: 'int32', device: cpu });
    await gradcheck(m, () => m.forward(ids), null);
  });
  it('LayerNorm with and without bias', async () => {
    for (const bias of [true, false]) {
      const m = new LayerNorm(6, { bias, eps: 1e-5 });
      T.noGrad(() => T.copyInto(m.param('weight'), T.randn([6], { seed: 7 })));
      await gradcheck(m, (x) => m.forward(x!), T.randn([3, 6], { seed: 8, ...f64 }));
    }
  });
  it('GELU exact and tanh (gelu_new) match their formulas', async () => {
    const x = T.randn([64], { seed: 9, ...f64 });
    const xv = await x.toArray();
    const exact = await new GELU('none').forward(x).toArray();
    const tanh = await new GELU('tanh').forward(x).toArray();
    for (let i = 0; i < 64; i++) {
      const v = xv[i]!;
      expect(exact[i]!).toBeCloseTo(0.5 * v * (1 + T.erf(v / Math.SQRT2)), 10);
      expect(tanh[i]!).toBeCloseTo(0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))), 12);
    }
    const m = new Module();
    await gradcheck(m, (t) => new GELU('tanh').forward(t!), T.randn([10], { seed: 10, ...f64 }));
  });
  it('PatchEmbedding equals a strided Conv2d (explicit loops) and has correct gradients', async () => {
    const m = new PatchEmbedding(2, 3, 2, { seed: 11, std: 0.5 });
    const x = T.randn([1, 2, 4, 6], { seed: 12, ...f64 });
    await gradcheck(m, (t) => m.forward(t!), x);
    const y = await T.noGrad(() => m.forward(x)).toArray(); // [1, 2·3 patches, 3]
    const W = await m.projection.param('weight').toArray();
    const b = await m.projection.param('bias').toArray();
    const xv = await x.toArray();
    for (let ph = 0; ph < 2; ph++) for (let pw = 0; pw < 3; pw++) for (let o = 0; o < 3; o++) {
      let s = b[o]!;
      for (let c = 0; c < 2; c++) for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) s += W[((o * 2 + c) * 2 + i) * 2 + j]! * xv[(c * 4 + ph * 2 + i) * 6 + pw * 2 + j]!;
      expect(y[(ph * 3 + pw) * 3 + o]!).toBeCloseTo(s, 12);
    }
    expect(() => m.forward(T.randn([1, 2, 5, 6], f64))).toThrow(/pixelValues.*multiple of the patch/);
  });
  it('CrossEntropyLoss ignores −100 and matches the formula', async () => {
    const logits = T.randn([4, 5], { seed: 13, ...f64 });
    const target = T.tensor([1, -100, 4, 0], [4], { dtype: 'int32', device: cpu });
    const l = await new CrossEntropyLoss().forward(logits, target).item();
    const lv = await logits.toArray();
    let s = 0;
    for (const [r, t] of [[0, 1], [2, 4], [3, 0]] as const) {
      const row = Array.from(lv.slice(r * 5, r * 5 + 5));
      const m = Math.max(...row);
      s += Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) + m - row[t]!;
    }
    expect(l).toBeCloseTo(s / 3, 12);
    expect(() => new CrossEntropyLoss().forward(logits, T.tensor([1, 7, 0, 0], [4], { dtype: 'int32', device: cpu }))).toThrow(/target/);
    await gradcheck(new Module(), (t) => new CrossEntropyLoss().forward(t!, target).reshape([1]), T.randn([4, 5], { seed: 14, ...f64 }));
  });
  it('Dropout: seeded, scaled by 1/(1−p), identity in eval', async () => {
    const x = T.randn([1000], { seed: 15 });
    const a = await new Dropout(0.3, { seed: 5 }).forward(x).toArray();
    const b = await new Dropout(0.3, { seed: 5 }).forward(x).toArray();
    const xv = await x.toArray();
    expect(Array.from(a)).toEqual(Array.from(b));
    const zeros = a.filter((v) => v === 0).length;
    expect(zeros).toBeGreaterThan(230);
    expect(zeros).toBeLessThan(370);
    for (let i = 0; i < 1000; i++) if (a[i] !== 0) expect(a[i]!).toBeCloseTo(xv[i]! / 0.7, 5);
    const d = new Dropout(0.3, { seed: 5 }).eval();
    expect(d.forward(x)).toBe(x);
    expect(() => new Dropout(1.5)).toThrow(/p: expected a probability/);
  });
  it('a whole tiny GPT-2 (every parameter) and ViT', async () => {
    const g = new GPT2LMHeadModel(gpt2Config({ n_layer: 1, n_embd: 8, n_head: 2, vocab_size: 11, n_positions: 8, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, initializer_range: 0.5 }), { seed: 3, attention: eagerAttention, device: cpu });
    const ids = T.tensor([1, 5, 2, 9, 3, 3], [1, 6], { dtype: 'int32', device: cpu });
    await gradcheck(g, async () => (await g.forward({ inputIds: ids, labels: ids })).loss!.reshape([1]), null, 3);
    const v = new ViTForImageClassification(vitConfig({ image_size: 4, patch_size: 2, hidden_size: 8, num_attention_heads: 2, num_hidden_layers: 1, intermediate_size: 8, num_labels: 3, initializer_range: 0.5 }), { seed: 4, attention: flexAttention, softcap: 2, device: cpu });
    const px = T.randn([2, 3, 4, 4], { seed: 16, ...f64 });
    const labels = T.tensor([0, 2], [2], { dtype: 'int32', device: cpu });
    await gradcheck(v, async () => (await v.forward({ pixelValues: px, labels })).loss!.reshape([1]), null, 3);
  });
});
