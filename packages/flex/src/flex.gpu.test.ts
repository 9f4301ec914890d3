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
  useDeterministicAlgorithms,
  type MaskMod,
  type MaskModFn,
  type ScoreMod,
  type ScoreModFn,
} from './index.js';
import { setFlashBackwardPath } from '@webattn/kernels-webgpu/internal';
import { boolExpr, floatExpr } from '../../../test-utils/random-mods.js';
import { expectClose, gpuDevice } from '../../../test-utils/index.js';
import { fixtureCases, toTensor } from '../../../test-utils/fixtures.js';
import { modResources, probeCompile } from './wgsl-mods.js';
import { packedAttentionReference } from '../../../test-utils/reference.js';

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

/** Runs a case on the CPU (float64, the JS functions themselves) and WebGPU (float32) and compares; `loose` scales tolerances. */
async function gpuMatchesCpu(c: Case, loose: number) {
  const ref = await run(c, cpu, 'float64');
  const got = await run(c, gpu, 'float32');
  if (ref.classes) expect(Array.from(got.classes!)).toEqual(Array.from(ref.classes));
  expectClose(got.out, ref.out, 3e-5 * loose, 3e-4 * loose, 'out');
  expectClose(got.lse, ref.lse, 1e-4 * loose, 1e-5 * loose, 'lse');
  for (const g of ['dq', 'dk', 'dv'] as const) expectClose(got[g], ref[g], 1e-4 * loose, 1e-3 * loose, g);
  if (ref.dtable) expectClose(got.dtable!, ref.dtable, 1e-4 * loose, 1e-3 * loose, 'd table');
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
      await gpuMatchesCpu(c, 1);
    });
  }
});

describe('flexAttention matches PyTorch 2.11 FlexAttention fixtures', () => {
  for (const f of fixtureCases('flex')) {
    it(f.name, async () => {
      const t = f.tensors;
      const p = f.params as Record<string, unknown>;
      const L = p.L as number;
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
    // eslint-disable-next-line no-var -- the compiler must refuse `var`
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
  it('forward, dQ, dK, dV and block classes agree for random function pairs', async () => {
    await fc.assert(
      fc.asyncProperty(floatExpr, fc.option(boolExpr, { freq: 4 }), async (body, mbody) => {
        const score = () => scoreMod(eval(`(s, b, h, q, kv) => ${body}`) as ScoreModFn);
        const mask = mbody === null ? undefined : maskMod(eval(`(b, h, q, kv) => ${mbody}`) as MaskModFn);
        const c: Case = { name: 'random', L: 70, H: 2, score, ...(mask ? { mask } : {}) };
        await gpuMatchesCpu(c, 2);
      }),
      { numRuns: 6, seed: 2026 },
    );
  });
});

describe('the varlen bridge: BlockDiagonalMask.toMaskMod() compiles into flex', () => {
  it('flex with the block-diagonal mask and flashAttnVarlen both equal a float64 per-sequence reference', async () => {
    const { BlockDiagonalMask, flashAttnVarlen } = await import('@webattn/varlen');
    const mask = BlockDiagonalMask.fromSeqlens([30, 70, 28], [40, 70, 50]).makeCausalFromBottomRight();
    const q = T.randn([mask.totalQ, 2, 16], { seed: 1, device: gpu });
    const k = T.randn([mask.totalK, 2, 16], { seed: 2, device: gpu });
    const v = T.randn([mask.totalK, 2, 16], { seed: 3, device: gpu });
    const want = packedAttentionReference(await q.toArray(), await k.toArray(), await v.toArray(), { Hq: 2, Hkv: 2, E: 16, Ev: 16 }, mask.qCu, mask.kCu, { causal: true });
    const bm = await createBlockMask(mask.toMaskMod() as MaskMod, null, null, mask.totalQ, mask.totalK, { device: gpu, blockSize: 64 });
    const four = (t: T.Tensor) => t.transpose(0, 1).unsqueeze(0);
    const flex = flexAttention(four(q), four(k), four(v), { blockMask: bm });
    const packed = flashAttnVarlen(q, k, v, { cuSeqlensQ: mask.qCu, cuSeqlensK: mask.kCu, maxSeqlenQ: 70, maxSeqlenK: 70, causal: true });
    expectClose(await flex.squeeze(0).transpose(0, 1).toArray(), want, 3e-5, 3e-4, 'flex');
    expectClose(await packed.toArray(), want, 3e-5, 3e-4, 'varlen');
    // the three sequences are 3 diagonal blocks of a 128×160 grid at block size 64: some pairs are empty
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

describe('capture gradients equal central differences of the JS function (not the compiler\'s derivative)', () => {
  // loss(table) = Σ w ∘ flexAttention(q, k, v, s + 2·tanh(table[h][q − kv + L − 1]), causal): the
  // differences call the JS function itself (CPU path, float64); gradients come from the IR derivative
  // (CPU) and the generated WGSL (GPU)
  const L = 10;
  const H = 2;
  const mod = (table: T.Tensor) => scoreMod((s, b, h, qi, kv, c) => s + 2 * Math.tanh(c.bias[h][qi - kv + c.off]), { bias: table, off: L - 1 });
  const loss = async (d: T.Device, dtype: T.DType, tableVals: Float64Array, grad: boolean) => {
    const shape = [1, H, L, 8];
    const q = T.randn(shape, { seed: 1, device: d, dtype });
    const k = T.randn(shape, { seed: 2, device: d, dtype });
    const v = T.randn(shape, { seed: 3, device: d, dtype });
    const w = T.randn(shape, { seed: 4, device: d, dtype });
    const table = T.tensor(tableVals, [H, 2 * L - 1], { device: d, dtype: dtype === 'float64' ? 'float64' : 'float32', requiresGrad: grad });
    const bm = await createBlockMask(causalMask, null, null, L, L, { device: d, blockSize: 64 });
    const f = () => T.sum(T.mul(flexAttention(q, k, v, { scoreMod: mod(table), blockMask: bm }), w));
    if (!grad) return { value: (await T.noGrad(f).toArray())[0]!, grad: null };
    const l = f();
    l.backward();
    return { value: (await l.toArray())[0]!, grad: Float64Array.from(await table.grad!.toArray()) };
  };
  const base = Float64Array.from(T.readValues(T.randn([H, 2 * L - 1], { seed: 5, device: cpu, dtype: 'float64' })));
  let numeric: Float64Array;
  beforeAll(async () => {
    numeric = new Float64Array(base.length);
    const eps = 1e-5;
    for (let i = 0; i < base.length; i++) {
      const up = base.slice();
      const dn = base.slice();
      up[i] = up[i]! + eps;
      dn[i] = dn[i]! - eps;
      numeric[i] = ((await loss(cpu, 'float64', up, false)).value - (await loss(cpu, 'float64', dn, false)).value) / (2 * eps);
    }
    // the causal mask hides q − kv < 0: those entries have no gradient, the others do
    expect(numeric.slice(0, L - 1).every((g) => Math.abs(g) < 1e-9)).toBe(true);
    expect(numeric.slice(L - 1, 2 * L - 1).some((g) => Math.abs(g) > 1e-3)).toBe(true);
  });

  it('CPU (float64)', async () => {
    expectClose((await loss(cpu, 'float64', base, true)).grad!, numeric, 1e-7, 1e-6, 'd table');
  });

  it('WebGPU (float32 atomics)', async () => {
    expectClose((await loss(gpu, 'float32', base, true)).grad!, numeric, 2e-4, 2e-3, 'd table');
  });

  it('WebGPU register backward (float32 atomics from its dQ kernel)', async () => {
    setFlashBackwardPath('registers');
    try {
      expectClose((await loss(gpu, 'float32', base, true)).grad!, numeric, 2e-4, 2e-3, 'd table');
      // built here, or (WEBATTN_FLASH_BACKWARD=registers) by the test before
      expect(gpu.pipelineStats().byKernel['flash_attention_backward_dq_registers']?.created ?? 0).toBeGreaterThan(0);
    } finally {
      setFlashBackwardPath('auto');
    }
  });

  it('WebGPU deterministic mode: bit-identical over runs, and equal to the differences', async () => {
    useDeterministicAlgorithms(true);
    try {
      const runs: Float64Array[] = [];
      for (let r = 0; r < 4; r++) runs.push((await loss(gpu, 'float32', base, true)).grad!);
      for (const r of runs.slice(1)) expect(Array.from(r)).toEqual(Array.from(runs[0]!));
      expectClose(runs[0]!, numeric, 2e-4, 2e-3, 'd table');
    } finally {
      useDeterministicAlgorithms(false);
    }
  });
});

describe('score functions that used to fail late compile to WGSL with JS semantics', () => {
  it('s / 0, 1 / 0 and literals beyond f32 behave as in JS (no KERNEL_COMPILE at read-back)', async () => {
    const shape = [1, 1, 12, 8];
    const fns: ScoreModFn[] = [
      (s) => Math.min(s, 1 / 0) + 0 / 1e39,
      (s, b, h, q, kv) => (q >= kv ? s : s / 0 > 0 ? -1e39 : s - 1e39),
      (s) => s * 1e-50 + s,
      // eslint-disable-next-line no-constant-condition -- constant folding is what is tested
      (s, b, h, q) => s + (2147483647 * 2 - 4294967294) + q % 0.75 + (7 % 0 === 7 % 0 ? 1 : 0),
    ];
    for (const fn of fns) {
      const outs: number[][] = [];
      for (const d of [cpu, gpu]) {
        const q = T.randn(shape, { seed: 1, device: d });
        const k = T.randn(shape, { seed: 2, device: d });
        outs.push(Array.from(await flexAttention(q, k, k, { scoreMod: fn }).toArray()));
      }
      expectClose(outs[1]!, outs[0]!, 3e-5, 3e-4, fn.toString());
    }
  });
});

describe('a function whose WGSL the GPU rejects is FLEX_COMPILE on its own call, not KERNEL_COMPILE', () => {
  it('the compile probe turns a shader error into FLEX_COMPILE on the outputs it guards; other calls read fine', async () => {
    // the renderer never emits such WGSL (constants fold, literals clamp to f32): feed the probe a hand-made one
    const res = modResources(gpu, null, null, false);
    const bad = { ...res, key: 'hand-made-bad', wgsl: 'fn score_mod(s: f32, b: u32, h: u32, q: u32, kv: u32) -> f32 { return s + undefined_thing; }' };
    const guarded = T.randn([4], { seed: 1, device: gpu });
    const other = T.randn([4], { seed: 2, device: gpu });
    probeCompile(gpu, bad, 'options.scoreMod', [guarded]);
    expect((await other.toArray()).length).toBe(4);
    const err = await guarded.toArray().then(() => null, (e: T.WebattnError) => e);
    expect(err?.code).toBe('FLEX_COMPILE');
    expect(err?.argument).toBe('options.scoreMod');
    expect(String(err?.message)).toMatch(/options.scoreMod: the function compiled to WGSL that the GPU rejected/);
  });

  it('an out-of-range captured-tensor read fails its own call only', async () => {
    const q = T.randn([1, 2, 8, 4], { seed: 1, device: gpu });
    const w = T.randn([8], { seed: 2, device: gpu });
    const bad = flexAttention(q, q, q, { scoreMod: scoreMod((s, b, h, qi, kv, c) => s + c.w[qi + kv], { w }) });
    const good = flexAttention(q, q, q, { scoreMod: scoreMod((s, b, h, qi, kv, c) => s + c.w[qi], { w }) });
    expect((await good.toArray()).every(Number.isFinite)).toBe(true);
    const err = await bad.toArray().then(() => null, (e: T.WebattnError) => e);
    expect(err?.code).toBe('INVALID_ARGUMENT');
    expect(String(err?.message)).toMatch(/options.scoreMod: captured tensor 'w' indexed outside its shape/);
  });
});
