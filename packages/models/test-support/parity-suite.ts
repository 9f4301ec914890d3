/**
 * The transformers-parity suite of the tiny GPT-2 and ViT fixtures, run on any device: every attention
 * function's logits, loss (rel ≤ 1e-4) and grads (≤ 1e-3) against the transformers references named by
 * `refs`, and GPT-2's padding-free packed batch against each sequence alone.
 */
import { describe, expect, it } from 'vitest';
import type * as T from '@webattn/core-tensor';
import { eagerAttention, flashAttention, flexAttention, sdpaAttention, type AttentionFn } from '@webattn/models';
import { toTensor } from '../../../test-utils/fixtures.js';
import { expectRel, fixtureGpt2, fixtureVit, gpt2Case, gradOf, vitCase, vitName } from './fixtures.js';

const FNS: [string, AttentionFn][] = [['eager', eagerAttention], ['sdpa', sdpaAttention], ['flash', flashAttention], ['flex', flexAttention]];

/** Which transformers references (`eager`, `sdpa`, `flex_attention`) each attention function is compared with. */
export interface ParityRefs {
  gpt2: (fn: string) => string[];
  vit: (fn: string) => string[];
}

export function paritySuites(where: string, device: () => T.Device, refs: ParityRefs): void {
  describe(`GPT-2 parity with transformers 5.17 ${where}`, () => {
    const c = gpt2Case();
    for (const [name, fn] of FNS) {
      for (const ref of refs.gpt2(name)) {
        it(`${name} attention: logits, loss and grads vs transformers ${ref}`, async () => {
          const model = await fixtureGpt2(device(), fn);
          const ids = toTensor(c.tensors['input_ids']!, device());
          const { logits, loss } = await model.forward({ inputIds: ids, labels: ids });
          await expectRel(logits, c.tensors[`${ref}.logits`]!.data, 1e-4, 'logits');
          await expectRel(loss!, c.tensors[`${ref}.loss`]!.data, 1e-4, 'loss');
          loss!.backward();
          const grads = Object.keys(c.tensors).filter((k) => k.startsWith(`${ref}.grad.`));
          expect(grads.length).toBe(4);
          for (const g of grads) await expectRel(gradOf(model, g.slice(`${ref}.grad.`.length)), c.tensors[g]!.data, 1e-3, g);
        });
      }
      it(`${name} attention: a padding-free (packed) batch equals each sequence alone`, async () => {
        const model = await fixtureGpt2(device(), fn);
        const { logits } = await model.forward({ inputIds: toTensor(c.tensors['packed.input_ids']!, device()), positionIds: toTensor(c.tensors['packed.position_ids']!, device()) });
        await expectRel(logits, c.tensors['packed.logits']!.data, 1e-4, 'packed logits');
      });
    }
  });

  describe(`ViT parity with transformers 5.17 ${where}`, () => {
    const c = vitCase();
    for (const [name, fn] of FNS) {
      for (const ref of refs.vit(name)) {
        it(`${name} attention: logits, loss and grads vs transformers ${ref}`, async () => {
          const model = await fixtureVit(device(), fn);
          const { logits, loss } = await model.forward({ pixelValues: toTensor(c.tensors['pixel_values']!, device()), labels: toTensor(c.tensors['labels']!, device()) });
          await expectRel(logits, c.tensors[`${ref}.logits`]!.data, 1e-4, 'logits');
          await expectRel(loss!, c.tensors[`${ref}.loss`]!.data, 1e-4, 'loss');
          loss!.backward();
          const grads = Object.keys(c.tensors).filter((k) => k.startsWith(`${ref}.grad.`));
          expect(grads.length).toBe(4);
          for (const g of grads) await expectRel(gradOf(model, vitName(g.slice(`${ref}.grad.`.length))), c.tensors[g]!.data, 1e-3, g);
        });
      }
    }
  });
}
