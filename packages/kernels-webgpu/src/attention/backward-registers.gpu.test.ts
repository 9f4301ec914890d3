import { afterEach, beforeAll, afterAll, describe, expect, it, type TestContext } from 'vitest';
import * as T from '@webattn/core-tensor';
import { scaledDotProductAttention, sdpaKernel, type WebGPUDevice } from '../index.js';
import { setFlashBackwardGrid, setFlashBackwardPath, setFlashBackwardScores, setFlashSpecialization } from './flash.js';
import { lastBackwardGrids } from './plan.js';
import { backwardDelta } from './backward-dq.js';
import { expectClose, gpuDevice } from '../../../../test-utils/index.js';

// The register backward (backward-dq.ts / backward-dkv.ts, hardware GPUs by default) forced on llvmpipe:
// gradients against the float64 CPU reference, on shapes crossing every tile edge.
let gpu: WebGPUDevice;
const cpu = T.cpu();
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());
afterEach(() => {
  setFlashBackwardPath('auto');
  setFlashBackwardGrid(null);
  setFlashBackwardScores('auto');
  setFlashSpecialization('auto');
});

const COMPILE_TIMEOUT = 900_000;
const built = (name: string) => gpu.pipelineStats().byKernel[name]?.created ?? 0;
const registerKernels = () => built('flash_attention_backward_dq_registers') + built('flash_attention_backward_dkv_registers');

interface Case {
  B: number;
  Hq: number;
  Hkv: number;
  Lq: number;
  Lkv: number;
  E: number;
  Ev: number;
  causal: boolean;
  mask: 'float' | 'bool' | null;
  scale?: number;
}

async function attend(c: Case, device: T.Device, dtype: T.DType) {
  const q = T.randn([c.B, c.Hq, c.Lq, c.E], { seed: 51, device, dtype }).detach().requiresGrad_();
  const k = T.randn([c.B, c.Hkv, c.Lkv, c.E], { seed: 52, device, dtype }).detach().requiresGrad_();
  const v = T.randn([c.B, c.Hkv, c.Lkv, c.Ev], { seed: 53, device, dtype }).detach().requiresGrad_();
  const dout = T.randn([c.B, c.Hq, c.Lq, c.Ev], { seed: 54, device, dtype });
  let attnMask: T.Tensor | null = null;
  if (c.mask === 'float') attnMask = T.randn([c.Lq, c.Lkv], { seed: 55, device, dtype });
  if (c.mask === 'bool') {
    // random pattern with query row 3 fully masked (its gradients are zero, its lse −∞)
    const vals = Array.from({ length: c.Lq * c.Lkv }, (_, n) => Math.floor(n / c.Lkv) !== 3 && (n * 7919) % 5 !== 0);
    attnMask = T.tensor(vals, [c.Lq, c.Lkv], { device, dtype: 'bool' });
  }
  const backend = device === cpu ? 'math' : 'flash';
  const out = sdpaKernel([backend], () =>
    scaledDotProductAttention(q, k, v, { isCausal: c.causal, attnMask, enableGqa: c.Hq !== c.Hkv, ...(c.scale ? { scale: c.scale } : {}) }),
  );
  out.backward(dout);
  return { dq: await q.grad!.toArray(), dk: await k.grad!.toArray(), dv: await v.grad!.toArray() };
}

const CASES: Case[] = [
  { B: 1, Hq: 4, Hkv: 2, Lq: 77, Lkv: 131, E: 64, Ev: 64, causal: true, mask: null },
  { B: 2, Hq: 2, Hkv: 2, Lq: 45, Lkv: 70, E: 40, Ev: 24, causal: false, mask: 'float' },
  { B: 1, Hq: 3, Hkv: 1, Lq: 70, Lkv: 45, E: 16, Ev: 32, causal: true, mask: 'bool' },
  { B: 1, Hq: 2, Hkv: 2, Lq: 33, Lkv: 100, E: 128, Ev: 16, causal: false, mask: null, scale: 0.3 },
  { B: 2, Hq: 1, Hkv: 1, Lq: 19, Lkv: 23, E: 32, Ev: 128, causal: true, mask: null },
];
// null = the adapter's default grid; prefetch = the next looped-side tile read into registers during this one
const GRIDS = [null, { tr: 8, tc: 8, prefetch: true }, { tr: 16, tc: 4, prefetch: true, turns: true }, { tr: 4, tc: 8 }, { tr: 8, tc: 4, prefetch: true }];

describe('the register backward matches the float64 reference (dQ, dK, dV)', () => {
  CASES.forEach((c, n) => {
    const grid = GRIDS[n]!;
    const spec = n % 2 === 0 ? 'always' : 'never';
    it(`grid ${grid ? JSON.stringify(grid) : 'auto'}, specialisation ${spec}: ${JSON.stringify(c)}`, async () => {
      const ref = await attend(c, cpu, 'float64');
      setFlashBackwardPath('registers');
      setFlashBackwardGrid(grid);
      setFlashSpecialization(spec);
      // the two register kernels (hardware GPUs would take dQ from the scores on the non-causal cases: tested below)
      setFlashBackwardScores('never');
      const before = registerKernels();
      const got = await attend(c, gpu, 'float32');
      // a new pipeline key per case: both register kernels were built where they fit (head dims ≤ 64 on every
      // adapter; at 128 the dK/dV kernel needs more workgroup memory than llvmpipe's 32 KiB and falls back)
      if (Math.max(c.E, c.Ev) <= 64) expect(registerKernels() - before).toBe(2);
      else expect(registerKernels() - before).toBeGreaterThan(0);
      expectClose(got.dv, ref.dv, 5e-5, 5e-4, 'dV');
      expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dQ');
      expectClose(got.dk, ref.dk, 1e-4, 1e-3, 'dK');
    }, COMPILE_TIMEOUT);
  });

  it('head dims over 128 (f32) fall back to the staged kernels by default and still match', async () => {
    const c: Case = { B: 1, Hq: 1, Hkv: 1, Lq: 19, Lkv: 23, E: 200, Ev: 130, causal: true, mask: null };
    const ref = await attend(c, cpu, 'float64');
    setFlashBackwardPath('registers');
    const before = registerKernels();
    const got = await attend(c, gpu, 'float32');
    expect(registerKernels() - before).toBe(0);
    expectClose(got.dv, ref.dv, 5e-5, 5e-4, 'dV');
    expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dQ');
    expectClose(got.dk, ref.dk, 1e-4, 1e-3, 'dK');
  }, COMPILE_TIMEOUT);
});

const CHUNK_NONCAUSAL: Case = { B: 2, Hq: 2, Hkv: 2, Lq: 45, Lkv: 70, E: 96, Ev: 80, causal: false, mask: 'bool', scale: 0.3 };
describe('the head-dim-chunked register backward (operands staged ch columns at a time) matches the float64 reference', () => {
  // forced grids (the f32 head-dim-128 default on hardware GPUs) on every adapter: GQA + causal + odd lengths, head
  // dims that are not multiples of the chunk (the last chunk partly or wholly past the head dim), masks, P/dS by turns
  // prefetch (both kernels): the chunk steps staged through registers, Kᵀ / Vᵀ (Qᵀ / dOᵀ) rows padded, the next query
  // (key) tile's first chunk read during the last step (Lq = 70: two query tiles of 64 for the dK/dV kernel; Lkv = 100: two
  // key tiles of 64 for the dQ kernel, the second one partly causal); small head dims keep its unrolled steps few
  const cases: [Case, { tr: number; tc: number; ch: number; turns?: boolean; prefetch?: boolean }, 'always' | 'never'][] = [
    [{ B: 1, Hq: 4, Hkv: 2, Lq: 37, Lkv: 53, E: 128, Ev: 128, causal: true, mask: null }, { tr: 4, tc: 16, ch: 16 }, 'never'],
    [CHUNK_NONCAUSAL, { tr: 4, tc: 16, ch: 32, turns: true }, 'always'],
    [{ B: 1, Hq: 3, Hkv: 1, Lq: 70, Lkv: 45, E: 72, Ev: 128, causal: true, mask: 'float' }, { tr: 4, tc: 16, ch: 32 }, 'never'],
    [{ B: 1, Hq: 3, Hkv: 1, Lq: 70, Lkv: 100, E: 20, Ev: 32, causal: true, mask: 'float' }, { tr: 4, tc: 16, ch: 16, prefetch: true, turns: true }, 'never'],
  ];
  cases.forEach(([c, grid, spec]) => {
    it(`grid ${JSON.stringify(grid)}, specialisation ${spec}: ${JSON.stringify(c)}`, async () => {
      const ref = await attend(c, cpu, 'float64');
      setFlashBackwardPath('registers');
      setFlashBackwardGrid(grid);
      setFlashSpecialization(spec);
      setFlashBackwardScores('never');
      const got = await attend(c, gpu, 'float32');
      expect(lastBackwardGrids().dq?.ch).toBe(grid.ch);
      expect(lastBackwardGrids().dkv?.ch).toBe(grid.ch);
      expect(!!lastBackwardGrids().dkv?.turns).toBe(!!grid.turns);
      expect(!!lastBackwardGrids().dkv?.prefetch).toBe(!!grid.prefetch);
      // a forced chunked grid prefetches in both kernels (the dQ kernel's default chunked grid does not)
      expect(!!lastBackwardGrids().dq?.prefetch).toBe(!!grid.prefetch);
      expectClose(got.dv, ref.dv, 5e-5, 5e-4, 'dV');
      expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dQ');
      expectClose(got.dk, ref.dk, 1e-4, 1e-3, 'dK');
    }, COMPILE_TIMEOUT);
  });

  it('the scores backward with the chunked dK/dV kernel', async () => {
    // the shape of the second case above (its forward pipeline): only the dK/dV kernel is new; 72 keys (a multiple of
    // 4): dS written as vec4s
    const c = { ...CHUNK_NONCAUSAL, Lkv: 72 };
    const ref = await attend(c, cpu, 'float64');
    setFlashBackwardPath('registers');
    setFlashBackwardScores('always');
    setFlashSpecialization('always');
    setFlashBackwardGrid({ tr: 4, tc: 16, ch: 32, turns: true });
    const got = await attend(c, gpu, 'float32');
    expect(lastBackwardGrids().dq).toBe(null);
    expect(lastBackwardGrids().dkv?.ch).toBe(32);
    expectClose(got.dv, ref.dv, 5e-5, 5e-4, 'dV');
    expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dQ');
    expectClose(got.dk, ref.dk, 1e-4, 1e-3, 'dK');
  }, COMPILE_TIMEOUT);

  it('the default grids of f32 head dim 128: chunked on hardware GPUs, none of the chunked grids on software adapters', async () => {
    const c: Case = { B: 1, Hq: 2, Hkv: 2, Lq: 40, Lkv: 40, E: 128, Ev: 128, causal: true, mask: null };
    setFlashBackwardPath('registers');
    const ref = await attend(c, cpu, 'float64');
    const got = await attend(c, gpu, 'float32');
    const used = lastBackwardGrids();
    if (gpu.info.software) expect([used.dq?.ch, used.dkv?.ch]).toEqual([undefined, undefined]);
    // the dK/dV kernel's chunked grid prefetches on hardware GPUs, the dQ kernel's never
    else expect([used.dq, used.dkv].map((g) => `${g?.tr}x${g?.tc}c${g?.ch}${g?.prefetch ? 'pf' : ''}`)).toEqual(['16x16c32', '16x16c32pf']);
    expectClose(got.dv, ref.dv, 5e-5, 5e-4, 'dV');
    expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dQ');
    expectClose(got.dk, ref.dk, 1e-4, 1e-3, 'dK');
  }, COMPILE_TIMEOUT);
});

describe('the scores backward (dK/dV kernel writes dS, dQ = dS·K as a matmul) matches the float64 reference', () => {
  const cases: Case[] = [
    { B: 2, Hq: 2, Hkv: 2, Lq: 45, Lkv: 70, E: 40, Ev: 24, causal: false, mask: 'float' },
    { B: 1, Hq: 2, Hkv: 2, Lq: 77, Lkv: 131, E: 64, Ev: 32, causal: false, mask: 'bool', scale: 0.3 },
    // 52 keys: dS written as vec4s (the cases above: one float per store)
    { B: 2, Hq: 6, Hkv: 2, Lq: 33, Lkv: 52, E: 16, Ev: 16, causal: false, mask: null },
  ];
  cases.forEach((c, n) => {
    it(JSON.stringify(c), async () => {
      const ref = await attend(c, cpu, 'float64');
      setFlashBackwardPath('registers');
      setFlashBackwardScores('always');
      if (n === 1) setFlashBackwardGrid({ tr: 4, tc: 4, prefetch: true });
      const got = await attend(c, gpu, 'float32');
      // the dQ kernel did not run: dQ came from the scores the dK/dV kernel wrote
      expect(lastBackwardGrids().dq).toBe(null);
      expect(lastBackwardGrids().dkv).not.toBe(null);
      expectClose(got.dv, ref.dv, 5e-5, 5e-4, 'dV');
      expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dQ');
      expectClose(got.dk, ref.dk, 1e-4, 1e-3, 'dK');
    }, COMPILE_TIMEOUT);
  });

  it('causal calls do not qualify: the dQ kernel runs', async () => {
    const c = CASES[0]!;
    const ref = await attend(c, cpu, 'float64');
    setFlashBackwardPath('registers');
    setFlashBackwardScores('always');
    const got = await attend(c, gpu, 'float32');
    expect(lastBackwardGrids().dq).not.toBe(null);
    expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dQ');
  }, COMPILE_TIMEOUT);
});

describe('the register backward splits long loops into passes under the adapter loop cap', () => {
  // the dK/dV kernel loops over the query rows of all G query heads of its key head, the dQ kernel over the keys:
  // 8 heads × 1600 rows, and 20000 keys, take them over llvmpipe's cap (65535 iterations) with the 4×4 grid, while the
  // other side stays short (the float64 reference stays cheap); the grids' pipelines are shared by both shapes
  const cases: Case[] = [
    { B: 1, Hq: 8, Hkv: 1, Lq: 1600, Lkv: 40, E: 16, Ev: 16, causal: false, mask: null },
    { B: 1, Hq: 1, Hkv: 1, Lq: 24, Lkv: 20000, E: 16, Ev: 16, causal: false, mask: null },
  ];
  cases.forEach((c) => {
    it(`${JSON.stringify(c)}, prefetching: more dispatches than one per kernel (forward, Δ, dQ, dK/dV) where there is a cap, and the reference grads`, async () => {
      setFlashBackwardPath('registers');
      setFlashBackwardGrid({ tr: 4, tc: 4, prefetch: true });
      setFlashBackwardScores('never');
      const d0 = gpu.counters().dispatches;
      const got = await attend(c, gpu, 'float32');
      const dispatches = gpu.counters().dispatches - d0;
      if (Number.isFinite(gpu.maxLoopIterations)) expect(dispatches).toBeGreaterThan(4);
      setFlashBackwardPath('auto');
      const ref = await attend(c, cpu, 'float64');
      expectClose(got.dv, ref.dv, 5e-5, 5e-4, 'dV');
      expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dQ');
      expectClose(got.dk, ref.dk, 1e-4, 1e-3, 'dK');
    }, COMPILE_TIMEOUT);
  });
});

describe('the register backward with NaN inputs', () => {
  it('a NaN query row: dQ of the other rows match the reference, that row and the dK/dV of the keys it sees are NaN', async () => {
    const [B, H, L, E] = [1, 2, 40, 16];
    const qa = Array.from(await T.randn([B, H, L, E], { seed: 61, device: cpu, dtype: 'float64' }).toArray());
    const badRow = L + 7; // head 1, row 7
    qa[badRow * E + 3] = Number.NaN;
    const ka = Array.from(await T.randn([B, H, L, E], { seed: 62, device: cpu, dtype: 'float64' }).toArray());
    const va = Array.from(await T.randn([B, H, L, E], { seed: 63, device: cpu, dtype: 'float64' }).toArray());
    const da = Array.from(await T.randn([B, H, L, E], { seed: 64, device: cpu, dtype: 'float64' }).toArray());
    const grads = async (device: T.Device, dtype: T.DType, qv: number[]) => {
      const [q, k, v] = [qv, ka, va].map((x) => T.tensor(x, [B, H, L, E], { device, dtype, requiresGrad: true }));
      const out = sdpaKernel([device === cpu ? 'math' : 'flash'], () => scaledDotProductAttention(q!, k!, v!, { isCausal: true }));
      out.backward(T.tensor(da, [B, H, L, E], { device, dtype }));
      return { dq: await q!.grad!.toArray(), dk: await k!.grad!.toArray(), dv: await v!.grad!.toArray() };
    };
    setFlashBackwardPath('registers');
    const before = registerKernels();
    const got = await grads(gpu, 'float32', qa);
    expect(registerKernels() - before).toBeGreaterThan(0);
    const qc = qa.slice();
    qc[badRow * E + 3] = 0;
    const ref = await grads(cpu, 'float64', qc);
    for (let r = 0; r < B * H * L; r++) {
      const row = Array.from(got.dq.slice(r * E, (r + 1) * E));
      if (r === badRow) expect(row.every(Number.isNaN)).toBe(true);
      else expectClose(row, Array.from(ref.dq.slice(r * E, (r + 1) * E)), 1e-4, 1e-3, `dQ row ${r}`);
    }
    // head 1: keys ≤ 7 are visible to row 7 (causal), their dK and dV are NaN; dV of later keys is Σ P·dO over
    // rows that see them (P of row 7 is 0 there) and matches; their dK is left open: 0 · NaN-query products are
    // NaN in PyTorch's math backward (dSᵀ·Q) and skipped by tiles that never visit row 7
    for (let j = 0; j < L; j++) {
      const dk = Array.from(got.dk.slice((L + j) * E, (L + j + 1) * E));
      const dv = Array.from(got.dv.slice((L + j) * E, (L + j + 1) * E));
      if (j <= 7) {
        expect(dk.every(Number.isNaN)).toBe(true);
        expect(dv.every(Number.isNaN)).toBe(true);
      } else expectClose(dv, Array.from(ref.dv.slice((L + j) * E, (L + j + 1) * E)), 5e-5, 5e-4, `dV head 1 key ${j}`);
    }
    // head 0 never sees the NaN
    expectClose(Array.from(got.dk.slice(0, L * E)), Array.from(ref.dk.slice(0, L * E)), 1e-4, 1e-3, 'dK head 0');
    expectClose(Array.from(got.dv.slice(0, L * E)), Array.from(ref.dv.slice(0, L * E)), 5e-5, 5e-4, 'dV head 0');
  }, COMPILE_TIMEOUT);
});

describe('the register backward with float16 inputs matches the float64 reference of the same f16 values', () => {
  const needF16 = (ctx: TestContext) => {
    if (gpu.hasFeature('shader-f16')) return;
    const why = `adapter "${gpu.info.adapter}" has no shader-f16`;
    if (process.env.WEBATTN_EXPECT_F16 === '1') expect.fail(`WEBATTN_EXPECT_F16=1 but ${why}`);
    ctx.skip(why);
  };
  for (const c of [CASES[0]!, CASES[2]!, CASES[3]!]) {
    it(JSON.stringify(c), async (ctx) => {
      needF16(ctx);
      setFlashBackwardPath('registers');
      const mk = async (shape: number[], seed: number) => {
        const vals = Array.from(await T.randn(shape, { seed, device: cpu, dtype: 'float16' }).toArray());
        return [T.tensor(vals, shape, { device: gpu, dtype: 'float16', requiresGrad: true }), T.tensor(vals, shape, { device: cpu, dtype: 'float64', requiresGrad: true })] as const;
      };
      const [q, qc] = await mk([c.B, c.Hq, c.Lq, c.E], 71);
      const [k, kc] = await mk([c.B, c.Hkv, c.Lkv, c.E], 72);
      const [v, vc] = await mk([c.B, c.Hkv, c.Lkv, c.Ev], 73);
      const [g, gc] = await mk([c.B, c.Hq, c.Lq, c.Ev], 74);
      const o = { isCausal: c.causal, enableGqa: c.Hq !== c.Hkv, ...(c.scale ? { scale: c.scale } : {}) };
      const before = registerKernels();
      sdpaKernel(['flash'], () => scaledDotProductAttention(q, k, v, o)).backward(g.detach());
      scaledDotProductAttention(qc, kc, vc, o).backward(gc.detach());
      expect(registerKernels() - before).toBe(2);
      expect(q.grad!.dtype).toBe('float16');
      expectClose(await q.grad!.toArray(), await qc.grad!.toArray(), 5e-3, 2e-2, 'dQ');
      expectClose(await k.grad!.toArray(), await kc.grad!.toArray(), 5e-3, 2e-2, 'dK');
      expectClose(await v.grad!.toArray(), await vc.grad!.toArray(), 5e-3, 2e-2, 'dV');
    }, COMPILE_TIMEOUT);
  }
});

describe('the backward Δ = rowsum(dO ∘ O) in one kernel (backwardDelta)', () => {
  it('matches the float64 formula: strided dO, rows past a workgroup of 16 rows, a head dim that is not a multiple of 16', async () => {
    const [B, H, L, E] = [2, 3, 37, 20]; // 222 rows: 14 workgroups, the last partial
    // float32-exact values (the formula then sees what the kernel reads)
    const vals = (n: number, seed: number) => Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 12.9898 + seed) * 2));
    const ov = vals(B * H * L * E, 1);
    const gv = vals(B * L * H * E, 2); // laid out [B, L, H, E]: dO is its [B, H, L, E] transpose view
    const o = T.tensor(ov, [B, H, L, E], { device: gpu });
    const g = T.tensor(gv, [B, L, H, E], { device: gpu }).transpose(1, 2);
    const delta = backwardDelta(g, o);
    expect(delta.shape).toEqual([B, H, L]);
    const want: number[] = [];
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let l = 0; l < L; l++) {
          let s = 0;
          for (let e = 0; e < E; e++) s += gv[((b * L + l) * H + h) * E + e]! * ov[((b * H + h) * L + l) * E + e]!;
          want.push(s);
        }
    expectClose(await delta.toArray(), want, 5e-5, 1e-4, 'delta');
  }, COMPILE_TIMEOUT);
});
