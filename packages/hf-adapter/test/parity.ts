/**
 * Shared body of the transformers-parity tests (CPU reference in `pretrained.test.ts`, WebGPU in
 * `pretrained.gpu.test.ts`): the tiny GPT-2 / ViT that transformers 5.17 saved in `fixtures/`,
 * loaded with fromPretrained under every attention implementation, against transformers' float64
 * eager logits / loss / gradients (`fixtures/model-*.safetensors`).
 */
import { expect } from 'vitest';
import { tensor, type Device, type Tensor } from '@webattn/core-tensor';
import { FIXTURES, fixtureCases, type FixtureTensor } from '../../../test-utils/fixtures.js';
import { fromPretrained, type PretrainedModel } from '../src/pretrained.js';
import { DataCollatorWithFlattening } from '../src/collator.js';

export const IMPLS = ['eager', 'sdpa', 'flash_attention_2', 'flex_attention'] as const;

/** max |a − b| / max |b| (norm-relative error; the reference is never all zeros here). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(Number(a[i]) - Number(b[i]));
    if (!(d <= num)) num = Number.isNaN(d) ? Infinity : Math.max(num, d);
    den = Math.max(den, Math.abs(Number(b[i])));
  }
  expect(den).toBeGreaterThan(0);
  return num / den;
}

/** transformers 5 in-memory ViT names (the fixture's gradient keys) → the checkpoint / webattn names. */
export function vitGradName(n: string): string {
  return n
    .replace(/^vit\.layers\.(\d+)\.attention\.o_proj\./, 'vit.encoder.layer.$1.attention.output.dense.')
    .replace(/^vit\.layers\.(\d+)\.attention\.([qkv])_proj\./, (_, i, c) => `vit.encoder.layer.${i}.attention.attention.${{ q: 'query', k: 'key', v: 'value' }[c as 'q']}.`)
    .replace(/^vit\.layers\.(\d+)\./, 'vit.encoder.layer.$1.');
}

export function modelCase(name: 'gpt2' | 'vit') {
  const c = fixtureCases('model').find((x) => x.name === name)!;
  const t = c.tensors;
  const ref = (k: string): FixtureTensor => {
    const v = t[k];
    if (!v) throw new Error(`fixture tensor ${k} missing`);
    return v;
  };
  const gradKeys = Object.keys(t).filter((k) => k.startsWith('eager.grad.')).map((k) => k.slice('eager.grad.'.length));
  return { dir: `${FIXTURES}${(c.params as { dir: string }).dir}`, t, ref, gradKeys };
}

async function gradOf(model: PretrainedModel, name: string): Promise<Float32Array> {
  const p = new Map(model.namedParameters()).get(name);
  if (!p) throw new Error(`no parameter ${name}`);
  expect(p.grad, `grad of ${name}`).toBeTruthy();
  return (await p.grad!.toArray()) as Float32Array;
}

/** Logits, loss and the fixture's gradients of GPT-2 under `impl`, against transformers' float64 eager. */
export async function gpt2Parity(impl: string, device: Device): Promise<{ logits: number; loss: number; grads: Record<string, number> }> {
  const { dir, ref, gradKeys } = modelCase('gpt2');
  const model = await fromPretrained(dir, { attnImplementation: impl, device });
  expect(model.config.attnImplementation).toBe(impl);
  const ids = ref('input_ids');
  const inputIds = tensor(ids.data, ids.shape, { dtype: 'int32', device });
  const { logits, loss } = await model.forward({ inputIds, labels: inputIds });
  loss!.backward();
  const out = { logits: relErr((await logits.toArray()) as Float32Array, ref('eager.logits').data as Float32Array), loss: relErr(await loss!.toArray(), ref('eager.loss').data as Float32Array), grads: {} as Record<string, number> };
  for (const g of gradKeys) out.grads[g] = relErr(await gradOf(model, g), ref(`eager.grad.${g}`).data as Float32Array);
  return out;
}

/** The same for ViT. */
export async function vitParity(impl: string, device: Device): Promise<{ logits: number; loss: number; grads: Record<string, number> }> {
  const { dir, ref, gradKeys } = modelCase('vit');
  const model = await fromPretrained(dir, { attnImplementation: impl, device });
  expect(model.config._attn_implementation).toBe(impl);
  const px = ref('pixel_values');
  const lab = ref('labels');
  const { logits, loss } = await model.forward({ pixelValues: tensor(px.data, px.shape, { device }), labels: tensor(Int32Array.from(lab.data as ArrayLike<number>, Number), lab.shape, { dtype: 'int32', device }) });
  loss!.backward();
  const out = { logits: relErr((await logits.toArray()) as Float32Array, ref('eager.logits').data as Float32Array), loss: relErr(await loss!.toArray(), ref('eager.loss').data as Float32Array), grads: {} as Record<string, number> };
  for (const g of gradKeys) out.grads[g] = relErr(await gradOf(model, vitGradName(g)), ref(`eager.grad.${g}`).data as Float32Array);
  return out;
}

/** Packed (padding-free) GPT-2 batch from the collator vs transformers' logits of each sequence alone. */
export async function gpt2PackedParity(impl: string, device: Device): Promise<number> {
  const { dir, ref } = modelCase('gpt2');
  const ids = Array.from(ref('packed.input_ids').data as Int32Array);
  const cu = Array.from(ref('packed.cu_seqlens').data as Int32Array);
  const features = cu.slice(1).map((end, i) => ({ input_ids: ids.slice(cu[i], end) }));
  const batch = new DataCollatorWithFlattening({ device }).call(features);
  expect(Array.from(await batch.positionIds!.toArray())).toEqual(Array.from(ref('packed.position_ids').data as Int32Array));
  const model = await fromPretrained(dir, { attnImplementation: impl, device });
  const { logits, loss } = await model.forward({ inputIds: batch.inputIds, positionIds: batch.positionIds!, labels: batch.labels });
  expect(Number.isFinite(await loss!.item())).toBe(true);
  return relErr((await logits.toArray()) as Float32Array, ref('packed.logits').data as Float32Array);
}

export async function readAll(t: Tensor): Promise<number[]> {
  return Array.from((await t.toArray()) as Float32Array);
}
