import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cpu, Rng, tensor, WebattnError, type Device } from '@webattn/core-tensor';
import { sdpaAttention, eagerAttention, flexAttention, type AttentionFn } from '@webattn/models';
import { createBlockMask, slidingWindow } from '@webattn/flex';
import { IMPLS, gpt2PackedParity, gpt2Parity, modelCase, readAll, relErr, vitParity } from '../test/parity.js';
import { AttentionInterface, setAttnImplementation } from './attention-interface.js';
import { fromPretrained, savePretrained, serializePretrained } from './pretrained.js';
import { readSafetensors, writeSafetensors } from './safetensors.js';
import { DataCollatorWithFlattening } from './collator.js';

const device: Device = cpu();
const tmp = mkdtempSync(join(tmpdir(), 'webattn-hf-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function expectCode(p: Promise<unknown> | (() => unknown), code: string, ...fragments: string[]): Promise<void> {
  let caught: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a WebattnError').toBeInstanceOf(WebattnError);
  expect((caught as WebattnError).code).toBe(code);
  for (const f of fragments) expect((caught as Error).message).toContain(f);
}

describe('parity with transformers 5.17 (CPU reference device)', () => {
  for (const impl of IMPLS) {
    it(`GPT-2 ${impl}: logits/loss rel err ≤ 1e-4, grads ≤ 1e-3`, async () => {
      const r = await gpt2Parity(impl, device);
      expect(r.logits).toBeLessThanOrEqual(1e-4);
      expect(r.loss).toBeLessThanOrEqual(1e-4);
      for (const [k, v] of Object.entries(r.grads)) expect(v, k).toBeLessThanOrEqual(1e-3);
    });
    it(`ViT ${impl}: logits/loss rel err ≤ 1e-4, grads ≤ 1e-3`, async () => {
      const r = await vitParity(impl, device);
      expect(r.logits).toBeLessThanOrEqual(1e-4);
      expect(r.loss).toBeLessThanOrEqual(1e-4);
      for (const [k, v] of Object.entries(r.grads)) expect(v, k).toBeLessThanOrEqual(1e-3);
    });
    it(`GPT-2 ${impl}: a padding-free batch from DataCollatorWithFlattening matches each sequence alone`, async () => {
      expect(await gpt2PackedParity(impl, device)).toBeLessThanOrEqual(1e-4);
    });
  }
});

describe('padding-free training with DataCollatorWithFlattening', () => {
  for (const impl of ['eager', 'flash_attention_2', 'flex_attention'] as const) {
    it(`${impl}: packed loss and gradients = the token-weighted mean over sequences run alone`, async () => {
      const g = modelCase('gpt2');
      const model = await fromPretrained(g.dir, { attnImplementation: impl, device });
      const rng = new Rng(11);
      const lens = [6, 3, 9];
      const seqs = lens.map((n) => Array.from({ length: n }, () => Math.floor(rng.next() * 97)));
      const name = 'transformer.h.1.attn.c_attn.weight';
      const param = new Map(model.namedParameters()).get(name)!;
      // oracle: each sequence alone (no packing), combined with weights (n_i - 1) / Σ(n_j - 1)
      const N = lens.reduce((p, n) => p + n - 1, 0);
      let lossRef = 0;
      let gradRef: Float64Array | null = null;
      for (const s of seqs) {
        model.zeroGrad();
        const ids = tensor(Int32Array.from(s), [1, s.length], { dtype: 'int32', device });
        const { loss } = await model.forward({ inputIds: ids, labels: ids });
        loss!.backward();
        const w = (s.length - 1) / N;
        lossRef += w * (await loss!.item());
        const gr = await param.grad!.toArray();
        gradRef ??= new Float64Array(gr.length);
        for (let i = 0; i < gr.length; i++) gradRef[i]! += w * gr[i]!;
      }
      model.zeroGrad();
      const batch = new DataCollatorWithFlattening({ device }).call(seqs.map((s) => ({ input_ids: s })));
      const { loss } = await model.forward({ inputIds: batch.inputIds, positionIds: batch.positionIds!, labels: batch.labels });
      loss!.backward();
      expect(Math.abs((await loss!.item()) - lossRef) / lossRef).toBeLessThanOrEqual(1e-5);
      expect(relErr(Array.from(await param.grad!.toArray()), gradRef!)).toBeLessThanOrEqual(1e-4);
    });
  }
});

describe('the attn_implementation switch', () => {
  it('defaults to sdpa; setAttnImplementation switches at run time and reports the name', async () => {
    const { dir, ref } = modelCase('gpt2');
    const model = await fromPretrained(dir, { device });
    expect(model.config.attnImplementation).toBe('sdpa');
    const ids = ref('input_ids');
    const inputIds = tensor(ids.data, ids.shape, { dtype: 'int32', device });
    const expected = ref('eager.logits').data as Float32Array;
    for (const impl of ['eager', 'flex_attention', 'flash_attention_2'] as const) {
      model.setAttnImplementation(impl);
      expect(model.config.attnImplementation).toBe(impl);
      expect(model.config._attn_implementation).toBe(impl);
      const { logits } = await model.forward({ inputIds });
      expect(relErr(await readAll(logits), expected)).toBeLessThanOrEqual(1e-4);
    }
    // the config keeps its enumerable transformers keys only
    expect(Object.keys(model.config)).not.toContain('attnImplementation');
  });

  it('an unknown name is a coded error naming it and listing the available ones', async () => {
    const { dir } = modelCase('gpt2');
    await expectCode(fromPretrained(dir, { attnImplementation: 'flash_attention_9', device }), 'INVALID_ARGUMENT', '`attn_implementation="flash_attention_9"` is not supported', '"eager"', '"sdpa"', '"flash_attention_2"', '"flex_attention"');
    const model = await fromPretrained(dir, { device });
    await expectCode(() => model.setAttnImplementation('Sdpa'), 'INVALID_ARGUMENT', '"Sdpa"');
    expect(model.config.attnImplementation).toBe('sdpa');
    await expectCode(() => AttentionInterface.register('', sdpaAttention), 'INVALID_ARGUMENT', 'name');
    await expectCode(() => AttentionInterface.register('x', 'sdpa' as unknown as AttentionFn), 'INVALID_ARGUMENT', 'fn');
    await expectCode(() => setAttnImplementation({} as never, 'sdpa'), 'INVALID_ARGUMENT', 'model');
  });

  it('a registered logging wrapper runs inside pretrained GPT-2 and ViT (every layer, same logits)', async () => {
    const calls: string[] = [];
    const logged: AttentionFn = (m, q, k, v, o) => {
      calls.push(`L${o.layerIdx ?? '?'} ${q.shape.join('x')}`);
      return sdpaAttention(m, q, k, v, o);
    };
    AttentionInterface.register('logged_sdpa', logged);
    try {
      expect(AttentionInterface.list()).toEqual(expect.arrayContaining(['eager', 'sdpa', 'flash_attention_2', 'flex_attention', 'logged_sdpa']));
      const g = modelCase('gpt2');
      const gpt2 = await fromPretrained(g.dir, { attnImplementation: 'logged_sdpa', device });
      expect(gpt2.config.attnImplementation).toBe('logged_sdpa');
      const ids = g.ref('input_ids');
      const { logits } = await gpt2.forward({ inputIds: tensor(ids.data, ids.shape, { dtype: 'int32', device }) });
      expect(calls.length).toBe(2); // n_layer = 2
      expect(calls[0]).toContain('2x4x16x16');
      expect(relErr(await readAll(logits), g.ref('eager.logits').data as Float32Array)).toBeLessThanOrEqual(1e-4);
      const vcase = modelCase('vit');
      const vit = await fromPretrained(vcase.dir, { attnImplementation: 'logged_sdpa', device });
      calls.length = 0;
      const px = vcase.ref('pixel_values');
      const out = await vit.forward({ pixelValues: tensor(px.data, px.shape, { device }) });
      expect(calls.length).toBe(2);
      expect(calls[0]).toContain('2x4x17x16'); // 16 patches + CLS, head dim 16
      expect(relErr(await readAll(out.logits), vcase.ref('eager.logits').data as Float32Array)).toBeLessThanOrEqual(1e-4);
    } finally {
      AttentionInterface.unregister('logged_sdpa');
    }
    expect(AttentionInterface.has('logged_sdpa')).toBe(false);
  });

  it('a registered sliding-window flex variant runs inside pretrained GPT-2 and equals eager with the dense band mask', async () => {
    const g = modelCase('gpt2');
    const W = 3;
    const L = 16;
    const bm = await createBlockMask(slidingWindow(W), null, null, L, L, { device });
    const swFlex: AttentionFn = Object.assign((m: Parameters<AttentionFn>[0], q: Parameters<AttentionFn>[1], k: Parameters<AttentionFn>[2], v: Parameters<AttentionFn>[3], o: Parameters<AttentionFn>[4]) => flexAttention(m, q, k, v, { ...o, blockMask: bm }), { usesBlockMask: true });
    // oracle: eager attention with the dense band mask (q ≥ k, q − k ≤ W) built from its definition
    const band = tensor(Array.from({ length: L * L }, (_, i) => Math.floor(i / L) >= i % L && Math.floor(i / L) - (i % L) <= W), [1, 1, L, L], { dtype: 'bool', device });
    const eagerBand: AttentionFn = (m, q, k, v, o) => eagerAttention(m, q, k, v, { ...o, attentionMask: band, isCausal: false });
    AttentionInterface.register('sliding_window_flex', swFlex);
    AttentionInterface.register('eager_band', eagerBand);
    try {
      const ids = g.ref('input_ids');
      const inputIds = tensor(ids.data, ids.shape, { dtype: 'int32', device });
      const model = await fromPretrained(g.dir, { attnImplementation: 'sliding_window_flex', device });
      const a = await readAll((await model.forward({ inputIds })).logits);
      model.setAttnImplementation('eager_band');
      const b = await readAll((await model.forward({ inputIds })).logits);
      expect(relErr(a, b)).toBeLessThanOrEqual(1e-5);
      // the first W + 1 positions see the same keys as full causal attention; later ones do not
      const full = g.ref('eager.logits').data as Float32Array;
      const V = 97;
      expect(relErr(a.slice(0, (W + 1) * V), full.slice(0, (W + 1) * V))).toBeLessThanOrEqual(1e-4);
      expect(relErr(a.slice((W + 2) * V, L * V), full.slice((W + 2) * V, L * V))).toBeGreaterThan(1e-3);
    } finally {
      AttentionInterface.unregister('sliding_window_flex');
      AttentionInterface.unregister('eager_band');
    }
  });
});

describe('savePretrained / fromPretrained', () => {
  it('a saved model reloads with identical logits; files are what transformers writes', async () => {
    const g = modelCase('gpt2');
    const model = await fromPretrained(g.dir, { device });
    const out = join(tmp, 'saved-gpt2');
    await savePretrained(model, out);
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(cfg.architectures).toEqual(['GPT2LMHeadModel']);
    expect(cfg.model_type).toBe('gpt2');
    expect(cfg.n_embd).toBe(64);
    expect(cfg).not.toHaveProperty('hidden_size');
    expect(cfg).not.toHaveProperty('_attn_implementation');
    const st = readSafetensors(readFileSync(join(out, 'model.safetensors')));
    expect(st.metadata).toEqual({ format: 'pt' });
    // same tensor names as transformers' own file (tied lm_head not saved), same values
    const theirs = readSafetensors(readFileSync(join(g.dir, 'model.safetensors')));
    expect(Object.keys(st.tensors).sort()).toEqual(Object.keys(theirs.tensors).sort());
    for (const k of Object.keys(theirs.tensors)) expect(st.tensors[k]!.data).toEqual(theirs.tensors[k]!.data);
    const again = await fromPretrained(out, { device, attnImplementation: 'eager' });
    const ids = g.ref('input_ids');
    const inputIds = tensor(ids.data, ids.shape, { dtype: 'int32', device });
    model.setAttnImplementation('eager');
    expect(await readAll((await again.forward({ inputIds })).logits)).toEqual(await readAll((await model.forward({ inputIds })).logits));
    // ViT too
    const v = modelCase('vit');
    const vit = await fromPretrained(v.dir, { device });
    const vout = join(tmp, 'saved-vit');
    await savePretrained(vit, vout);
    const vcfg = JSON.parse(readFileSync(join(vout, 'config.json'), 'utf8'));
    expect(vcfg.architectures).toEqual(['ViTForImageClassification']);
    expect(Object.keys(vcfg.id2label).length).toBe(10);
    const vit2 = await fromPretrained(vout, { device });
    const px = v.ref('pixel_values');
    const pixelValues = tensor(px.data, px.shape, { device });
    expect(await readAll((await vit2.forward({ pixelValues })).logits)).toEqual(await readAll((await vit.forward({ pixelValues })).logits));
    const files = await serializePretrained(vit);
    expect(Object.keys(files).sort()).toEqual(['config.json', 'model.safetensors']);
  });

  it('loads sharded checkpoints (model.safetensors.index.json), BF16 weights and legacy GPT-2 names', async () => {
    const g = modelCase('gpt2');
    const src = readSafetensors(readFileSync(join(g.dir, 'model.safetensors')));
    const names = Object.keys(src.tensors).sort();
    const half = Math.floor(names.length / 2);
    const dir = join(tmp, 'sharded');
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(g.dir, 'config.json'), join(dir, 'config.json'));
    const shards = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    shards.forEach((s, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeFileSync(join(dir, file), writeSafetensors(Object.fromEntries(s.map((n) => [n, src.tensors[n]!])), { format: 'pt' }));
      for (const n of s) weightMap[n] = file;
    });
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    const ids = g.ref('input_ids');
    const inputIds = tensor(ids.data, ids.shape, { dtype: 'int32', device });
    const sharded = await fromPretrained(dir, { device, attnImplementation: 'eager' });
    // a broken index: a shard missing, a name not in its shard, a path outside the directory
    const bad = (name: string, map: Record<string, string>) => {
      const d = join(tmp, name);
      mkdirSync(d, { recursive: true });
      copyFileSync(join(dir, 'config.json'), join(d, 'config.json'));
      for (const f of new Set(Object.values(weightMap))) copyFileSync(join(dir, f), join(d, f));
      writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: map }));
      return d;
    };
    await expectCode(fromPretrained(bad('shard-missing', { ...weightMap, [names[0]!]: 'model-00009-of-00009.safetensors' }), { device }), 'NOT_FOUND', 'model-00009-of-00009.safetensors');
    await expectCode(fromPretrained(bad('shard-wrong', { ...weightMap, [names[0]!]: 'model-00002-of-00002.safetensors' }), { device }), 'SAFETENSORS_INVALID', names[0]!, 'not in this shard');
    await expectCode(fromPretrained(bad('shard-escape', { ...weightMap, [names[0]!]: '../model.safetensors' }), { device }), 'CONFIG_INVALID', 'weight_map');
    const expected = g.ref('eager.logits').data as Float32Array;
    expect(relErr(await readAll((await sharded.forward({ inputIds })).logits), expected)).toBeLessThanOrEqual(1e-4);
    // BF16 checkpoint without the `transformer.` prefix plus legacy attn.bias buffers (as openai-community/gpt2 ships)
    const bdir = join(tmp, 'bf16');
    mkdirSync(bdir, { recursive: true });
    copyFileSync(join(g.dir, 'config.json'), join(bdir, 'config.json'));
    const bf: Record<string, import('./safetensors.js').SafetensorsEntry> = {};
    for (const n of names) {
      const f = src.tensors[n]!.data as Float32Array;
      const u = new Uint32Array(f.buffer, f.byteOffset, f.length);
      bf[n.replace(/^transformer\./, '')] = { dtype: 'BF16', shape: src.tensors[n]!.shape, data: Uint16Array.from(u, (x) => x >>> 16) };
    }
    bf['h.0.attn.bias'] = { dtype: 'F32', shape: [1, 1, 2, 2], data: new Float32Array(4) };
    writeFileSync(join(bdir, 'model.safetensors'), writeSafetensors(bf, { format: 'pt' }));
    const m = await fromPretrained(bdir, { device });
    const wte = new Map(m.namedParameters()).get('transformer.wte.weight')!;
    const vals = await readAll(wte);
    const orig = src.tensors['transformer.wte.weight']!.data as Float32Array;
    // oracle: truncation to the top 16 bits, written as a formula on the float value
    for (let i = 0; i < 50; i++) {
      const x = orig[i]!;
      const e = Math.floor(Math.log2(Math.abs(x)));
      const q = 2 ** (e - 7);
      expect(vals[i]).toBe(Math.sign(x) * Math.floor(Math.abs(x) / q) * q);
    }
  });

  it('bad checkpoints give coded errors naming the file, key and expectation', async () => {
    const g = modelCase('gpt2');
    await expectCode(fromPretrained(join(tmp, 'nope'), { device }), 'NOT_FOUND', 'config.json');
    const mk = (name: string, cfg: object | string | null, weights: Uint8Array | null) => {
      const d = join(tmp, name);
      mkdirSync(d, { recursive: true });
      if (cfg !== null) writeFileSync(join(d, 'config.json'), typeof cfg === 'string' ? cfg : JSON.stringify(cfg));
      if (weights) writeFileSync(join(d, 'model.safetensors'), weights);
      return d;
    };
    const cfg = JSON.parse(readFileSync(join(g.dir, 'config.json'), 'utf8'));
    const weights = readFileSync(join(g.dir, 'model.safetensors'));
    await expectCode(fromPretrained(mk('noweights', cfg, null), { device }), 'NOT_FOUND', 'model.safetensors', 'model.safetensors.index.json');
    await expectCode(fromPretrained(mk('badcfg', '{"model_type": "gpt2", "n_head": "4"}', weights), { device }), 'CONFIG_INVALID', 'config.json', '"n_head"');
    await expectCode(fromPretrained(mk('llama', { model_type: 'llama' }, weights), { device }), 'MODEL_UNSUPPORTED', 'llama', 'gpt2, vit');
    await expectCode(fromPretrained(mk('wide', { ...cfg, n_embd: 128 }, weights), { device }), 'SHAPE_MISMATCH', 'model.safetensors', 'transformer.h.0.attn.c_attn.bias', '[384]', '[192]');
    const src = readSafetensors(weights);
    const partial = { ...src.tensors };
    delete partial['transformer.ln_f.bias'];
    partial['transformer.extra'] = { dtype: 'F32', shape: [1], data: new Float32Array(1) };
    await expectCode(fromPretrained(mk('missing', cfg, writeSafetensors(partial, { format: 'pt' })), { device }), 'INVALID_ARGUMENT', 'missing keys [transformer.ln_f.bias]', 'transformer.extra (model.safetensors)');
    // allowMissingKeys: the model loads; the missing parameter keeps its initial value (LayerNorm bias: zeros)
    const lenient = await fromPretrained(join(tmp, 'missing'), { device, allowMissingKeys: true });
    expect(await readAll(new Map(lenient.namedParameters()).get('transformer.ln_f.bias')!)).toEqual(new Array(64).fill(0));
    await expectCode(fromPretrained(join(tmp, 'missing'), { device, allowMissingKeys: 'yes' as unknown as boolean }), 'INVALID_ARGUMENT', 'allowMissingKeys');
    const ints = { ...src.tensors, 'transformer.ln_f.bias': { dtype: 'I64' as const, shape: [64], data: new BigInt64Array(64) } };
    await expectCode(fromPretrained(mk('ints', cfg, writeSafetensors(ints, { format: 'pt' })), { device }), 'DTYPE_UNSUPPORTED', 'transformer.ln_f.bias', 'I64');
    const broken = weights.slice(0, weights.length - 4);
    await expectCode(fromPretrained(mk('trunc', cfg, broken), { device }), 'SAFETENSORS_INVALID', 'model.safetensors', 'end of the file');
    const noF16 = new Proxy(device, { get: (t, p, r) => (p === 'info' ? { ...t.info, backend: 'webgpu', adapter: 'no-f16 adapter', features: [] } : Reflect.get(t, p, r)) });
    await expectCode(fromPretrained(g.dir, { device: noF16, dtype: 'float16' }), 'DTYPE_UNSUPPORTED', 'float16', 'no-f16 adapter');
    await expectCode(fromPretrained(g.dir, { device, dtype: 'bfloat16' as 'float16' }), 'DTYPE_UNSUPPORTED', 'bfloat16');
  });

  it("dtype: 'float16' casts the parameters; logits stay within half precision of transformers'", async () => {
    const g = modelCase('gpt2');
    const m = await fromPretrained(g.dir, { device, dtype: 'float16', attnImplementation: 'eager' });
    expect(m.parameters().every((p) => p.dtype === 'float16')).toBe(true);
    const ids = g.ref('input_ids');
    const { logits } = await m.forward({ inputIds: tensor(ids.data, ids.shape, { dtype: 'int32', device }) });
    const err = relErr(await readAll(logits), g.ref('eager.logits').data as Float32Array);
    expect(err).toBeLessThanOrEqual(2e-2);
    expect(err).toBeGreaterThan(0); // really rounded to half precision
  });

  it('reads over fetch (URLs, as in the browser)', async () => {
    const g = modelCase('gpt2');
    const served: string[] = [];
    const fakeFetch = async (url: string) => {
      served.push(url);
      const name = url.replace('https://example.test/tiny/', '');
      try {
        const b = readFileSync(join(g.dir, name));
        return { ok: true, status: 200, arrayBuffer: async () => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer };
      } catch {
        return { ok: false, status: 404, arrayBuffer: async () => new ArrayBuffer(0) };
      }
    };
    const m = await fromPretrained('https://example.test/tiny', { device, fetch: fakeFetch, attnImplementation: 'eager' });
    expect(served).toEqual(['https://example.test/tiny/config.json', 'https://example.test/tiny/model.safetensors']);
    const ids = g.ref('input_ids');
    const { logits } = await m.forward({ inputIds: tensor(ids.data, ids.shape, { dtype: 'int32', device }) });
    expect(relErr(await readAll(logits), g.ref('eager.logits').data as Float32Array)).toBeLessThanOrEqual(1e-4);
  });
});
