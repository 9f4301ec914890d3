import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from '@webattn/kernels-webgpu';
import {
  alibi,
  andMasks,
  causalMask,
  createBlockMask,
  createMask,
  dilatedSlidingWindow,
  documentMask,
  flexAttention,
  globalSlidingWindow,
  neighborhood2d,
  prefixLM,
  relativePositionBias,
  documentScoreMod,
  slidingWindow,
  softcap,
  maskMod,
  scoreMod,
  type MaskMod,
  type MaskModFn,
  type ScoreMod,
  type ScoreModFn,
} from './index.js';
import { boolExpr, floatExpr } from '../../../test-utils/random-mods.js';
import { expectClose, gpuDevice } from '../../../test-utils/index.js';
import { fixtureCases, toTensor } from '../../../test-utils/fixtures.js';

let gpu: WebGPUDevice;
const cpu = T.cpu();
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

interface Case {
  name: string;
  L: number;
  H: number;
  score?: (d: T.Device) => ScoreMod;
  mask?: MaskMod;
  bs?: number;
  tableGrad?: boolean;
}

async function run(c: Case, device: T.Device, dtype: T.DType) {
  const shape = [1, c.H, c.L, 16];
  const q = T.randn(shape, { seed: 1, device, dtype, requiresGrad: true });
  const k = T.randn(shape, { seed: 2, device, dtype, requiresGrad: true });
  const v = T.randn(shape, { seed: 3, device, dtype, requiresGrad: true });
  const g = T.randn(shape, { seed: 4, device, dtype });
  // per-head tables: random masks may depend on b and h (B/H = null promises they do not)
  const blockMask = c.mask ? await createBlockMask(c.mask, 1, c.H, c.L, c.L, { device, blockSize: c.bs ?? 64 }) : null;
  const sm = c.score?.(device) ?? null;
  const { output, lse } = flexAttention(q, k, v, { scoreMod: sm, blockMask, returnLse: true });
  output.backward(g);
  const table = c.tableGrad ? (sm!.captures.bias as T.Tensor) : null;
  return {
    out: await output.toArray(),
    lse: await lse.toArray(),
    dq: await q.grad!.toArray(),
    dk: await k.grad!.toArray(),
    dv: await v.grad!.toArray(),
    dtable: table ? await table.grad!.toArray() : null,
    classes: blockMask?.classes ?? null,
  };
}

const CASES: Case[] = [
  { name: 'softcap', L: 70, H: 2, score: () => softcap(5) },
  { name: 'alibi', L: 67, H: 4, score: () => alibi(4) },
  { name: 'causal (block-sparse)', L: 150, H: 1, mask: causalMask },
  { name: 'sliding window', L: 200, H: 1, mask: slidingWindow(40) },
  { name: 'prefix LM', L: 130, H: 2, mask: prefixLM(20) },
  { name: 'document + causal inside', L: 140, H: 1, mask: documentMask([0, 50, 51, 140], causalMask) },
  { name: 'neighborhood2d 12×12 r=2', L: 144, H: 1, mask: neighborhood2d(12, 12, 2) },
  { name: 'dilated sliding window', L: 100, H: 1, mask: dilatedSlidingWindow(10, 3) },
  { name: 'global + sliding window', L: 160, H: 1, mask: globalSlidingWindow(16, 3) },
  { name: 'and(causal, window) + alibi', L: 96, H: 2, mask: andMasks(causalMask, slidingWindow(30)), score: () => alibi(2) },
  { name: 'document: per-document ALiBi with local indices + causal', L: 100, H: 2, mask: documentMask([0, 37, 100], causalMask), score: () => documentScoreMod([0, 37, 100], alibi(2)) },
  {
    name: 'relative position bias (learnable table)',
    L: 33,
    H: 2,
    tableGrad: true,
    score: (d) => relativePositionBias(T.randn([2, 65], { seed: 9, device: d, requiresGrad: true })),
    mask: causalMask,
  },
];

describe('flexAttention on the GPU equals the CPU path running the same JS functions (forward and backward)', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const ref = await run(c, cpu, 'float64');
      const got = await run(c, gpu, 'float32');
      if (ref.classes) expect(Array.from(got.classes!)).toEqual(Array.from(ref.classes));
      expectClose(got.out, ref.out, 3e-5, 3e-4, 'out');
      expectClose(got.lse, ref.lse, 1e-4, 1e-5, 'lse');
      expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dq');
      expectClose(got.dk, ref.dk, 1e-4, 1e-3, 'dk');
      expectClose(got.dv, ref.dv, 1e-4, 1e-3, 'dv');
      if (ref.dtable) expectClose(got.dtable!, ref.dtable, 1e-4, 1e-3, 'd table');
    });
  }
});

describe('flexAttention matches PyTorch 2.11 FlexAttention fixtures', () => {
  for (const f of fixtureCases('flex')) {
    it(f.name, async () => {
      const t = f.tensors;
      const p = f.params as Record<string, unknown>;
      const L = p.L as number;
      const H = p.H as number;
      const q = toTensor(t.q!, gpu, true);
      const k = toTensor(t.k!, gpu, true);
      const v = toTensor(t.v!, gpu, true);
      let score: ScoreMod | null = null;
      let mask: MaskMod | null = null;
      let table: T.Tensor | null = null;
      switch (f.name) {
        case 'softcap':
          score = softcap(p.cap as number);
          break;
        case 'alibi':
          score = alibi(p.heads as number);
          break;
        case 'sliding-window':
          mask = slidingWindow(p.window as number);
          break;
        case 'prefix-lm':
          mask = prefixLM(p.prefix as number);
          break;
        case 'document-causal': {
          const lengths = p.lengths as number[];
          const offs = [0];
          for (const n of lengths) offs.push(offs[offs.length - 1]! + n);
          mask = documentMask(offs, causalMask);
          break;
        }
        case 'rel-pos-bias':
          table = toTensor(t.table!, gpu, true);
          score = relativePositionBias(table);
          break;
        default:
          throw new Error(`unknown fixture ${f.name}`);
      }
      const blockMask = mask ? await createBlockMask(mask, null, null, L, L, { device: gpu, blockSize: 64 }) : null;
      const { output, lse } = flexAttention(q, k, v, { scoreMod: score, blockMask, returnLse: true });
      output.backward(toTensor(t.dout!, gpu));
      expectClose(await output.toArray(), t.out!.data, 1e-4, 1e-3, 'out');
      expectClose(await lse.toArray(), t.lse!.data, 1e-4, 1e-4, 'lse');
      expectClose(await q.grad!.toArray(), t.dq!.data, 3e-4, 2e-3, 'dq');
      expectClose(await k.grad!.toArray(), t.dk!.data, 3e-4, 2e-3, 'dk');
      expectClose(await v.grad!.toArray(), t.dv!.data, 1e-4, 1e-3, 'dv');
      if (table) expectClose(await table.grad!.toArray(), t.dtable!.data, 3e-4, 2e-3, 'd table');
      expect(H).toBe(q.shape[1]);
    });
  }
});

describe('block masks', () => {
  it('GPU and CPU builds agree; sparsity, picture and dense mask', async () => {
    const m = andMasks(causalMask, slidingWindow(100));
    const g = await createBlockMask(m, 1, 2, 512, 512, { device: gpu, blockSize: 64 });
    const c = await createBlockMask(m, 1, 2, 512, 512, { device: cpu, blockSize: 64 });
    expect(Array.from(g.classes)).toEqual(Array.from(c.classes));
    // 8×8 blocks per head: diagonal partial, one sub-diagonal partial (window 100 < 128), rest empty
    expect(g.sparsity()).toBeCloseTo((100 * (64 - 8 - 7 - 6)) / 64, 5);
    expect(Array.from(g.kvNumBlocks.slice(0, 8))).toEqual([1, 2, 3, 3, 3, 3, 3, 3]);
    expect(g.toString()).toContain('░░');
    const dense = await createMask(causalMask, 1, 1, 3, 3).toArray();
    expect(Array.from(dense)).toEqual([1, 0, 0, 1, 1, 0, 1, 1, 1]);
    const full = await createBlockMask(causalMask, null, null, 256, 256, { device: gpu, blockSize: 128 });
    expect(Array.from(full.fullKvNumBlocks)).toEqual([0, 1]);
  });

  it('changing a captured tensor’s values does not recompile', async () => {
    const shape = [1, 2, 40, 16];
    const q = T.randn(shape, { seed: 1, device: gpu });
    const a = relativePositionBias(T.randn([2, 79], { seed: 1, device: gpu }));
    const b = relativePositionBias(T.randn([2, 79], { seed: 2, device: gpu }));
    const o1 = await T.noGrad(() => flexAttention(q, q, q, { scoreMod: a })).toArray();
    const before = gpu.pipelineCount;
    const o2 = await T.noGrad(() => flexAttention(q, q, q, { scoreMod: b })).toArray();
    expect(gpu.pipelineCount).toBe(before);
    expect(Array.from(o1)).not.toEqual(Array.from(o2));
  });
});

describe('flex errors', () => {
  const q = T.randn([1, 1, 8, 4], { seed: 1, device: cpu });
  const fl = (scoreMod: unknown, extra: Record<string, unknown> = {}) => () => flexAttention(q, q, q, { scoreMod: scoreMod as never, ...extra });
  it('unsupported syntax and unknown identifiers point at line:column with a hint', () => {
    expect(fl((s: number) => { var x = s; return x; })).toThrowError(/FLEX_COMPILE.*scoreMod \d+:\d+: 'var' declarations are not supported — use const/);
    expect(fl((s: number) => s + undefinedThing)).toThrowError(/FLEX_COMPILE.*unknown identifier 'undefinedThing' — pass values through the captures parameter.*minifier/);
    expect(fl((s: number) => `${s}` as unknown as number)).toThrowError(/FLEX_COMPILE.*unsupported syntax TemplateLiteral/);
    expect(fl((s: number) => Math.random() * s)).toThrowError(/Math.random is not supported/);
  });
  it('wrong return type, wrong capture dtype, mismatched block mask', async () => {
    expect(fl((s: number, b: number, h: number, qi: number, kv: number) => qi >= kv)).toThrowError(/wrong return type: a score mod must return a number/);
    const bm = await createBlockMask((b, h, qi, kv) => qi - kv, null, null, 8, 8, { device: cpu, blockSize: 64 }).catch((e: Error) => e);
    expect(String(bm)).toMatch(/wrong return type: a mask mod must return a boolean/);
    const u = T.tensor([1, 2], [2], { dtype: 'uint32', device: cpu });
    expect(fl((s: number) => s + (u as unknown as number[])[0]!, { captures: { u } })).toThrowError(/captured tensor of dtype uint32 is not supported/);
    const m = await createBlockMask(causalMask, null, null, 16, 16, { device: cpu, blockSize: 64 });
    expect(() => flexAttention(q, q, q, { blockMask: m })).toThrowError(/SHAPE_MISMATCH.*options.blockMask: built for qLen=16, kvLen=16, but the inputs have L=8, S=8/);
  });
});

declare const undefinedThing: number;

describe('random score and mask functions: compiled WGSL equals the JS function on the CPU path (fast-check)', () => {
  const scores = fc.sample(floatExpr, { numRuns: 5, seed: 2026 });
  const masks = fc.sample(boolExpr, { numRuns: 4, seed: 11 });
  scores.forEach((body, i) => {
    const mbody = masks[i % masks.length]!;
    it(`#${i}: score ${body.slice(0, 60)}… mask ${mbody.slice(0, 40)}…`, async () => {
      const score = () => scoreMod(eval(`(s, b, h, q, kv) => ${body}`) as ScoreModFn);
      const mask = i < masks.length ? maskMod(eval(`(b, h, q, kv) => ${mbody}`) as MaskModFn) : undefined;
      const c: Case = { name: `random ${i}`, L: 70, H: 2, score, ...(mask ? { mask } : {}) };
      const ref = await run(c, cpu, 'float64');
      const got = await run(c, gpu, 'float32');
      if (ref.classes) expect(Array.from(got.classes!)).toEqual(Array.from(ref.classes));
      expectClose(got.out, ref.out, 5e-5, 5e-4, 'out');
      expectClose(got.dq, ref.dq, 2e-4, 2e-3, 'dq');
      expectClose(got.dk, ref.dk, 2e-4, 2e-3, 'dk');
      expectClose(got.dv, ref.dv, 2e-4, 2e-3, 'dv');
    });
  });
});

describe('the varlen bridge: BlockDiagonalMask.toMaskMod() compiles into flex', () => {
  it('flex with the block-diagonal mask equals flashAttnVarlen on the packed layout', async () => {
    const { BlockDiagonalMask, flashAttnVarlen } = await import('@webattn/varlen');
    const mask = BlockDiagonalMask.fromSeqlens([30, 70, 28], [40, 70, 50]).makeCausalFromBottomRight();
    const q = T.randn([mask.totalQ, 2, 16], { seed: 1, device: gpu });
    const k = T.randn([mask.totalK, 2, 16], { seed: 2, device: gpu });
    const v = T.randn([mask.totalK, 2, 16], { seed: 3, device: gpu });
    const bm = await createBlockMask(mask.toMaskMod() as MaskMod, null, null, mask.totalQ, mask.totalK, { device: gpu, blockSize: 64 });
    const four = (t: T.Tensor) => t.transpose(0, 1).unsqueeze(0);
    const flex = flexAttention(four(q), four(k), four(v), { blockMask: bm });
    const packed = flashAttnVarlen(q, k, v, { cuSeqlensQ: mask.qCu, cuSeqlensK: mask.kCu, maxSeqlenQ: 70, maxSeqlenK: 70, causal: true });
    expectClose(await flex.squeeze(0).transpose(0, 1).toArray(), await packed.toArray(), 3e-5, 3e-4);
    expect(bm.sparsity()).toBeGreaterThan(0);
  });
});

describe('a learnable relative-position bias trains through flexAttention', () => {
  it('gradient descent on the bias table recovers a hidden bias (loss falls by 10×)', async () => {
    const L = 24;
    const shape = [1, 2, L, 8];
    const q = T.randn(shape, { seed: 1, device: gpu });
    const k = T.randn(shape, { seed: 2, device: gpu });
    const v = T.randn(shape, { seed: 3, device: gpu });
    const hidden = T.mul(T.randn([2, 2 * L - 1], { seed: 4, device: gpu }), 2);
    const target = T.noGrad(() => flexAttention(q, k, v, { scoreMod: relativePositionBias(hidden), blockMask: null })).detach();
    let table = T.zeros([2, 2 * L - 1], { device: gpu, requiresGrad: true });
    const losses: number[] = [];
    const LR = 0.1;
    for (let step = 0; step < 60; step++) {
      const out = flexAttention(q, k, v, { scoreMod: relativePositionBias(table) });
      const loss = T.sum(T.pow(T.sub(out, target), 2));
      loss.backward();
      losses.push((await loss.toArray())[0]!);
      table = T.sub(table.detach(), T.mul(table.grad!, LR)).detach().requiresGrad_();
    }
    expect(losses[losses.length - 1]!).toBeLessThan(losses[0]! / 10);
  });
});
