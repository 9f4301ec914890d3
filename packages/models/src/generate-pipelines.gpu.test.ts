import { afterEach, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from '@webattn/kernels-webgpu';
import { GPT2LMHeadModel, eagerAttention, flashAttention, flexAttention, gpt2Config, sdpaAttention } from '@webattn/models';
import { gpuDevice } from '../../../test-utils/index.js';

// First-call latency (issue #12): a pipeline is compiled once per program key, and no key may hold a
// length that a generation step changes (kv length, S % 4 alignment). Prefill and the first decode step
// compile; every later decode step, a repeated forward and a repeated generation compile nothing.
// Counts of device.pipelineStats(), never timings. Each case gets a fresh device (an empty pipeline
// cache), so no case passes on pipelines another one compiled.
let device: WebGPUDevice;
afterEach(() => device?.destroy());

const cpu = T.cpu();
const cfg = gpt2Config({ n_layer: 2, n_embd: 32, n_head: 4, vocab_size: 41, n_positions: 64, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 });
const ints = (v: number[], shape: number[], dev: T.Device) => T.tensor(v, shape, { dtype: 'int32', device: dev });
const created = () => device.pipelineStats().pipelinesCreated;

/** Generates with `model`, recording the pipelines each forward (prefill, then one per decode step) created. */
async function generateCounting(model: GPT2LMHeadModel, ids: T.Tensor, maxNewTokens: number) {
  const perForward: { created: number; kernels: string[] }[] = [];
  const forward = model.forward.bind(model);
  model.forward = async (inputs) => {
    const before = device.pipelineStats();
    const out = await forward(inputs);
    await device.sync(); // the step's pipelines are requested when its kernels are recorded
    const after = device.pipelineStats();
    const kernels = Object.keys(after.byKernel).filter((k) => after.byKernel[k]!.created !== (before.byKernel[k]?.created ?? 0));
    perForward.push({ created: after.pipelinesCreated - before.pipelinesCreated, kernels });
    return out;
  };
  try {
    const tokens = Array.from(await (await model.generate(ids, { maxNewTokens, eosTokenId: null })).toArray());
    return { tokens, perForward };
  } finally {
    model.forward = forward;
  }
}

describe('pipeline cache across a KV-cache generation (tiny GPT-2)', () => {
  const N = 9; // kv lengths prompt+1 .. prompt+8: every residue mod 4, twice
  for (const [name, fn] of [['eager', eagerAttention], ['sdpa', sdpaAttention], ['flash', flashAttention], ['flex', flexAttention]] as const) {
    for (const [B, L] of [[1, 3], [2, 6]] as const) {
      it(`${name}, batch ${B}, prompt ${L}: decode steps 2..${N - 1} compile nothing; a second forward and a second generation compile nothing`, async () => {
        device = await gpuDevice();
        const seed = 11 + L;
        const m = new GPT2LMHeadModel(cfg, { seed, attention: fn, device }).eval();
        const ref = new GPT2LMHeadModel(cfg, { seed, attention: eagerAttention, device: cpu }).eval();
        const prompt = Array.from({ length: B * L }, (_, i) => (i * 7 + 3) % cfg.vocab_size);
        const ids = ints(prompt, [B, L], device);

        // a forward, then the same forward again: the second compiles nothing
        const f0 = created();
        await (await m.forward({ inputIds: ids })).logits.toArray();
        const f1 = created();
        await (await m.forward({ inputIds: ids })).logits.toArray();
        expect(created() - f1, 'second forward').toBe(0);
        expect(f1 - f0, 'first forward compiles its kernels').toBeGreaterThan(0);

        const first = await generateCounting(m, ids, N);
        // the greedy tokens are right (the float64 CPU reference of the same weights)
        const want = Array.from(await (await ref.generate(ints(prompt, [B, L], cpu), { maxNewTokens: N, eosTokenId: null })).toArray());
        expect(first.tokens).toEqual(want);
        expect(first.perForward).toHaveLength(N); // prefill + N-1 decode steps
        // forward 0 = prefill (shapes already compiled above), forward 1 = the first decode step (new
        // shapes: one-row products, the cache concatenation, non-causal attention); after that nothing
        const later = first.perForward.slice(2).map((f, i) => `decode step ${i + 2}: ${f.created} ${f.kernels.join(',')}`.trim());
        expect(later).toEqual(first.perForward.slice(2).map((_, i) => `decode step ${i + 2}: 0`));
        expect(first.perForward[0]!.created, 'prefill after an identical forward').toBe(0);

        const again = await generateCounting(m, ids, N);
        expect(again.tokens).toEqual(want);
        expect(again.perForward.map((f) => f.created), 'second generation').toEqual(new Array(N).fill(0));
      });
    }
  }
});
