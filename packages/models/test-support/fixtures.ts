/** Test support of @webattn/models (not published): fixture models and comparisons. */
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import * as T from '@webattn/core-tensor';
import { FIXTURES, fixtureCases, readSafetensors, toTensor, type FixtureCase } from '../../../test-utils/fixtures.js';
import { GPT2LMHeadModel, ViTForImageClassification, type AttentionFn, type Module } from '@webattn/models';

export const gpt2Case = (): FixtureCase => fixtureCases('model').find((c) => c.name === 'gpt2')!;
export const vitCase = (): FixtureCase => fixtureCases('model').find((c) => c.name === 'vit')!;

function weights(dir: string, device: T.Device): Record<string, T.Tensor> {
  const raw = readSafetensors(`${FIXTURES}${dir}/model.safetensors`);
  return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, toTensor(v, device)]));
}

/** The tiny GPT-2 of the fixtures with its transformers weights, on `device`. */
export async function fixtureGpt2(device: T.Device, attention: AttentionFn): Promise<GPT2LMHeadModel> {
  const cfg = JSON.parse(readFileSync(`${FIXTURES}tiny-gpt2/config.json`, 'utf8'));
  const m = new GPT2LMHeadModel(cfg, { attention, device });
  await m.loadStateDict(weights('tiny-gpt2', device));
  return m.eval();
}

/** The tiny ViT of the fixtures with its transformers weights, on `device`. */
export async function fixtureVit(device: T.Device, attention: AttentionFn): Promise<ViTForImageClassification> {
  const cfg = JSON.parse(readFileSync(`${FIXTURES}tiny-vit/config.json`, 'utf8'));
  const m = new ViTForImageClassification(cfg, { attention, device });
  await m.loadStateDict(weights('tiny-vit', device));
  return m.eval();
}

/** transformers 5.17 runtime names of ViT (in the fixture grads) → checkpoint names. */
export function vitName(n: string): string {
  return n.replace(/^vit\.layers\./, 'vit.encoder.layer.').replace('.attention.o_proj.', '.attention.output.dense.');
}

/** max |a − b| / max |b|. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    num = Number.isNaN(d) ? Infinity : Math.max(num, d);
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

/** Expects `actual` within `tol` relative error (max-norm) of `expected`. */
export async function expectRel(actual: T.Tensor, expected: ArrayLike<number>, tol: number, label: string): Promise<number> {
  const a = await actual.toArray();
  const e = relErr(a, expected);
  expect(e, `${label}: relative error ${e}`).toBeLessThanOrEqual(tol);
  return e;
}

/** Gradient of the named parameter. */
export function gradOf(m: Module, name: string): T.Tensor {
  const p = new Map(m.namedParameters()).get(name);
  expect(p, `parameter ${name}`).toBeDefined();
  expect(p!.grad, `grad of ${name}`).not.toBeNull();
  return p!.grad!;
}
