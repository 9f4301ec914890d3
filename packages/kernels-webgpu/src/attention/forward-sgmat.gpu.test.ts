import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from '../device/webgpu-device.js';
import { scaledDotProductAttention, sdpaKernel } from '../index.js';
import { flashForward, hasSgmatAttention, setFlashSubgroupMatrix, sgmatPlan, type FlashHooks, type FlashParams, type SgmatConfig } from './flash.js';
import { sgmatSpec, vecStaging } from './forward-sgmat.js';
import { renderProgram } from '../wgsl.js';
import { expectClose, gpuDevice, skipWithoutSubgroupMatrix } from '../../../../test-utils/index.js';

// The subgroup-matrix (tensor core) forward of the attention generator against a float64 loop reference
// written here (independent of both GPU paths and of the CPU backend), from the same inputs read back
// from the GPU (f16-rounded for f16). Two ways it runs:
// - emulated: the same kernel with plain-WGSL stand-ins for the matrix builtins, f32 inputs, on every
//   adapter (CI: llvmpipe) — tests the tile logic (lazy rescale, masks, hooks, edges);
// - real: f16 inputs on an adapter with chromium-experimental-subgroup-matrix (the H100); skipped with
//   the reason elsewhere, a failure when WEBATTN_EXPECT_SGMM=1 (or WEBATTN_EXPECT_F16=1 for f16 SDPA).
let gpu: WebGPUDevice;
let real = false;
beforeAll(async () => {
  gpu = await gpuDevice();
  real = hasSgmatAttention(gpu);
});
afterAll(() => {
  setFlashSubgroupMatrix('auto');
  gpu?.destroy();
});

function needReal(ctx: TestContext): void {
  skipWithoutSubgroupMatrix(ctx, gpu, real);
}

interface Case {
  name: string;
  B: number;
  Hq: number;
  Hkv: number;
  Lq: number;
  Lkv: number;
  E: number;
  Ev: number;
  causal?: boolean;
  mask?: 'bool' | 'float';
  score?: boolean;
  /** A score_mod that grows along the keys: the reference max moves past the lazy threshold again and again. */
  ramp?: boolean;
  maskMod?: boolean;
  /** Local window around the diagonal (−1 = unbounded side). */
  window?: { left: number; right: number };
  /** Block-sparse tables (64-row blocks): per (q block, kv block) 0 = skipped, 1 = partial (mask_mod applied), 2 = full. */
  blocks?: (qb: number, kb: number) => 0 | 1 | 2;
  /** Packed varlen layout: these sequence lengths (queries and keys alike) instead of B × Lq. */
  varlen?: number[];
}

const SCORE_WGSL = 'return s - 0.25 * f32(h + 1u) * abs(f32(i32(q) - i32(kv))) / 8.0;';
const scoreJs = (s: number, _b: number, h: number, i: number, j: number) => s - (0.25 * (h + 1) * Math.abs(i - j)) / 8;
const RAMP_WGSL = 'return s + 0.25 * f32(kv);';
const rampJs = (s: number, _b: number, _h: number, _i: number, j: number) => s + 0.25 * j;
const MASK_WGSL = 'return (q + 2u * kv + h) % 5u != 1u;';
const maskJs = (_b: number, h: number, i: number, j: number) => (i + 2 * j + h) % 5 !== 1;

/** float64 attention by loops: out [B,Hq,Lq,Ev], lse [B,Hq,Lq]. */
function reference(c: Case, q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, mask: ArrayLike<number> | null, scale: number) {
  const out = new Float64Array(c.B * c.Hq * c.Lq * c.Ev);
  const lse = new Float64Array(c.B * c.Hq * c.Lq);
  const G = c.Hq / c.Hkv;
  for (let b = 0; b < c.B; b++)
    for (let h = 0; h < c.Hq; h++) {
      const hk = Math.floor(h / G);
      for (let i = 0; i < c.Lq; i++) {
        const s = new Float64Array(c.Lkv).fill(-Infinity);
        for (let j = 0; j < c.Lkv; j++) {
          if (c.causal && j > i) continue;
          if (c.window && ((c.window.left >= 0 && j < i - c.window.left) || (c.window.right >= 0 && j > i + c.window.right))) continue;
          const blk = c.blocks ? c.blocks(Math.floor(i / 64), Math.floor(j / 64)) : 1;
          if (blk === 0) continue;
          if (c.maskMod && blk === 1 && !maskJs(b, h, i, j)) continue;
          if (c.mask === 'bool' && !mask![i * c.Lkv + j]) continue;
          let x = 0;
          for (let e = 0; e < c.E; e++) x += q[((b * c.Hq + h) * c.Lq + i) * c.E + e]! * k[((b * c.Hkv + hk) * c.Lkv + j) * c.E + e]!;
          x *= scale;
          if (c.mask === 'float') x += mask![i * c.Lkv + j]!;
          if (c.score) x = scoreJs(x, b, h, i, j);
          if (c.ramp) x = rampJs(x, b, h, i, j);
          s[j] = x;
        }
        let m = -Infinity;
        for (const x of s) m = Math.max(m, x);
        const row = (b * c.Hq + h) * c.Lq + i;
        if (m === -Infinity) {
          lse[row] = -Infinity;
          continue;
        }
        let l = 0;
        for (let j = 0; j < c.Lkv; j++) l += Math.exp(s[j]! - m);
        lse[row] = m + Math.log(l);
        for (let j = 0; j < c.Lkv; j++) {
          const pr = Math.exp(s[j]! - m) / l;
          if (pr === 0) continue;
          for (let e = 0; e < c.Ev; e++) out[row * c.Ev + e]! += pr * v[((b * c.Hkv + hk) * c.Lkv + j) * c.Ev + e]!;
        }
      }
    }
  return { out, lse };
}

/** The block tables of `c.blocks` packed as {@link FlashParams.blocks} wants them (bm = hm = 1). */
function blockTables(c: Case): NonNullable<FlashParams['blocks']> {
  const bs = 64;
  const nqb = Math.ceil(c.Lq / bs);
  const nkb = Math.ceil(c.Lkv / bs);
  const kvNum: number[] = [], kvIdx: number[] = [], fKvNum: number[] = [], fKvIdx: number[] = [];
  for (let qb = 0; qb < nqb; qb++) {
    const part = [], full = [];
    for (let kb = 0; kb < nkb; kb++) {
      const t = c.blocks!(qb, kb);
      if (t === 1) part.push(kb);
      if (t === 2) full.push(kb);
    }
    kvNum.push(part.length);
    fKvNum.push(full.length);
    kvIdx.push(...part, ...new Array(nkb - part.length).fill(0));
    fKvIdx.push(...full, ...new Array(nkb - full.length).fill(0));
  }
  const qNum: number[] = [], qIdx: number[] = [], fQNum: number[] = [], fQIdx: number[] = [];
  for (let kb = 0; kb < nkb; kb++) {
    const part = [], full = [];
    for (let qb = 0; qb < nqb; qb++) {
      const t = c.blocks!(qb, kb);
      if (t === 1) part.push(qb);
      if (t === 2) full.push(qb);
    }
    qNum.push(part.length);
    fQNum.push(full.length);
    qIdx.push(...part, ...new Array(nqb - part.length).fill(0));
    fQIdx.push(...full, ...new Array(nqb - full.length).fill(0));
  }
  const parts = [kvNum, kvIdx, fKvNum, fKvIdx, qNum, qIdx, fQNum, fQIdx];
  const offsets: number[] = [];
  let o = 0;
  for (const t of parts) {
    offsets.push(o);
    o += t.length;
  }
  const table = T.tensor(parts.flat(), [o], { device: gpu, dtype: 'int32' });
  return { bs, bm: 1, hm: 1, nqb, nkb, table, offsets };
}

/** The subgroup-matrix forward is selected, and the vector staging / split softmax asked for is in its WGSL (or its fallback where the layout forbids vectors). */
function expectPlan(p: FlashParams): void {
  const plan = sgmatPlan(p);
  expect(plan, 'the subgroup-matrix forward is selected').not.toBeNull();
  const src = renderProgram(sgmatSpec(p, plan!));
  expect(/var<storage, read> k: array<vec4</.test(src), 'vector staging of k').toBe(!!plan!.vec && vecStaging(p));
  expect(/lane l and l \^ 16/.test(src), 'softmax split over two lanes').toBe(!!plan!.split && plan!.rs === 16);
}

/** Packed varlen: one sequence per length, the dense reference run per sequence. */
async function checkVarlen(c: Case, dtype: 'float32' | 'float16', atol: number, rtol: number) {
  const lens = c.varlen!;
  const tot = lens.reduce((a, b) => a + b, 0);
  const cu = [0];
  for (const n of lens) cu.push(cu[cu.length - 1]! + n);
  const q = T.randn([tot, c.Hq, c.E], { seed: 51, device: gpu, dtype });
  const k = T.randn([tot, c.Hkv, c.E], { seed: 52, device: gpu, dtype });
  const v = T.randn([tot, c.Hkv, c.Ev], { seed: 53, device: gpu, dtype });
  const cuT = T.tensor(cu, [cu.length], { device: gpu, dtype: 'int32' });
  const maxL = Math.max(...lens);
  const scale = 1 / Math.sqrt(c.E);
  const p: FlashParams = {
    q, k, v, scale, causal: !!c.causal, causalOffset: 0, mask: null, hooks: null,
    varlen: { cuQ: cuT, cuK: cuT, maxQ: maxL, maxK: maxL, hostCuQ: Int32Array.from(cu), hostCuK: Int32Array.from(cu) },
  };
  expectPlan(p);
  const { out, lse } = flashForward(p);
  const [qa, ka, va, got, gotLse] = [await q.toArray(), await k.toArray(), await v.toArray(), await out.toArray(), await lse.toArray()];
  for (let s = 0; s < lens.length; s++) {
    const L = lens[s]!;
    // [L, H, E] rows of sequence s → [1, H, L, E]
    const dense = (a: ArrayLike<number>, H: number, D: number) => {
      const r = new Float64Array(H * L * D);
      for (let i = 0; i < L; i++) for (let h = 0; h < H; h++) for (let e = 0; e < D; e++) r[(h * L + i) * D + e] = a[((cu[s]! + i) * H + h) * D + e]!;
      return r;
    };
    const ref = reference({ ...c, B: 1, Lq: L, Lkv: L }, dense(qa, c.Hq, c.E), dense(ka, c.Hkv, c.E), dense(va, c.Hkv, c.Ev), null, scale);
    const o = new Float64Array(c.Hq * L * c.Ev);
    const l = new Float64Array(c.Hq * L);
    for (let i = 0; i < L; i++)
      for (let h = 0; h < c.Hq; h++) {
        for (let e = 0; e < c.Ev; e++) o[(h * L + i) * c.Ev + e] = got[((cu[s]! + i) * c.Hq + h) * c.Ev + e]!;
        l[h * L + i] = gotLse[h * tot + cu[s]! + i]!;
      }
    expectClose(o, ref.out, atol, rtol, `${c.name}: sequence ${s} out`);
    expectClose(l, ref.lse, atol, rtol, `${c.name}: sequence ${s} lse`);
  }
}

async function check(c: Case, dtype: 'float32' | 'float16', atol: number, rtol: number) {
  if (c.varlen) return checkVarlen(c, dtype, atol, rtol);
  const q = T.randn([c.B, c.Hq, c.Lq, c.E], { seed: 41, device: gpu, dtype });
  const k = T.randn([c.B, c.Hkv, c.Lkv, c.E], { seed: 42, device: gpu, dtype });
  const v = T.randn([c.B, c.Hkv, c.Lkv, c.Ev], { seed: 43, device: gpu, dtype });
  let maskT: T.Tensor | null = null;
  if (c.mask === 'bool') maskT = T.gt(T.randn([c.Lq, c.Lkv], { seed: 44, device: gpu }), -0.8);
  if (c.mask === 'float') maskT = T.randn([c.Lq, c.Lkv], { seed: 44, device: gpu, dtype });
  const hooks: FlashHooks | null = c.score || c.ramp || c.maskMod
    ? {
        key: `t${c.score ? 's' : ''}${c.ramp ? 'r' : ''}${c.maskMod ? 'm' : ''}`,
        scoreMod: c.score ? SCORE_WGSL : c.ramp ? RAMP_WGSL : null,
        maskMod: c.maskMod ? MASK_WGSL : null,
      }
    : null;
  const scale = 1 / Math.sqrt(c.E);
  const p: FlashParams = {
    q, k, v, scale, causal: !!c.causal, causalOffset: 0, mask: maskT ? { tensor: maskT, kind: c.mask! } : null, hooks,
    window: c.window ?? null,
    blocks: c.blocks ? blockTables(c) : null,
  };
  expectPlan(p);
  const { out, lse } = flashForward(p);
  expect(out.dtype).toBe(dtype);
  const maskA = maskT ? Array.from(await maskT.toArray(), Number) : null;
  const ref = reference(c, await q.toArray(), await k.toArray(), await v.toArray(), maskA, scale);
  const got = await out.toArray();
  const gotLse = await lse.toArray();
  expectClose(got, ref.out, atol, rtol, `${c.name}: out`);
  expectClose(gotLse, ref.lse, atol, rtol, `${c.name}: lse`);
}

/**
 * A query row with one NaN element: its output and lse must be NaN (as the tile forward and PyTorch give), every
 * other row matches the float64 reference. The NVIDIA driver folds `x != x`, so this runs on the tensor cores too.
 */
async function checkNanRow(dtype: 'float32' | 'float16', atol: number, rtol: number) {
  const c: Case = { name: 'NaN query row', B: 1, Hq: 2, Hkv: 2, Lq: 40, Lkv: 53, E: 16, Ev: 16, causal: true };
  const nanRow = c.Lq + 7;
  const qa = Array.from(await T.randn([c.B, c.Hq, c.Lq, c.E], { seed: 41, device: gpu, dtype }).toArray());
  qa[nanRow * c.E + 3] = Number.NaN;
  const q = T.tensor(qa, [c.B, c.Hq, c.Lq, c.E], { device: gpu, dtype });
  const k = T.randn([c.B, c.Hkv, c.Lkv, c.E], { seed: 42, device: gpu, dtype });
  const v = T.randn([c.B, c.Hkv, c.Lkv, c.Ev], { seed: 43, device: gpu, dtype });
  const p: FlashParams = { q, k, v, scale: 1 / Math.sqrt(c.E), causal: true, causalOffset: 0, mask: null, hooks: null };
  expectPlan(p);
  const { out, lse } = flashForward(p);
  const [got, gotLse] = [await out.toArray(), await lse.toArray()];
  const clean = qa.map((x) => (Number.isNaN(x) ? 0 : x));
  const ref = reference(c, clean, await k.toArray(), await v.toArray(), null, p.scale);
  const rows = c.B * c.Hq * c.Lq;
  for (let r = 0; r < rows; r++) {
    const o = Array.from(got.slice(r * c.Ev, (r + 1) * c.Ev));
    if (r === nanRow) {
      expect(o.every(Number.isNaN), 'NaN row: out').toBe(true);
      expect(Number.isNaN(gotLse[r]), 'NaN row: lse').toBe(true);
    } else {
      expectClose(o, ref.out.slice(r * c.Ev, (r + 1) * c.Ev), atol, rtol, `row ${r} out`);
      expectClose([gotLse[r]!], [ref.lse[r]!], atol, rtol, `row ${r} lse`);
    }
  }
}

// lengths off every tile edge, several key tiles, causal with Lq != Lkv, GQA, E=64 (32 rows per subgroup) and
// E=128 (16), head dims not multiples of 16
const CASES: Case[] = [
  { name: 'E64 GQA causal', B: 1, Hq: 4, Hkv: 2, Lq: 77, Lkv: 77, E: 64, Ev: 64, causal: true },
  { name: 'E40/Ev24 Lq!=Lkv bool mask', B: 2, Hq: 2, Hkv: 2, Lq: 45, Lkv: 70, E: 40, Ev: 24, mask: 'bool' },
  { name: 'E128 GQA additive mask', B: 1, Hq: 2, Hkv: 1, Lq: 33, Lkv: 50, E: 128, Ev: 128, mask: 'float' },
  { name: 'score_mod + mask_mod causal Lq<Lkv', B: 1, Hq: 2, Hkv: 2, Lq: 40, Lkv: 90, E: 32, Ev: 32, causal: true, score: true, maskMod: true },
  { name: 'lazy rescale: scores growing along the keys', B: 1, Hq: 1, Hkv: 1, Lq: 70, Lkv: 150, E: 16, Ev: 32, ramp: true },
  ...LAYOUT_CASES(64),
];
// local window, block-sparse tables (skipped, partial and full 64-blocks, mask_mod on the partial ones) and the
// packed varlen layout (causal, bottom-right per sequence)
function LAYOUT_CASES(E: number): Case[] {
  return [
    { name: `E${E} local window`, B: 1, Hq: 2, Hkv: 1, Lq: 90, Lkv: 90, E, Ev: E, window: { left: 20, right: 5 } },
    { name: `E${E} block-sparse tables + mask_mod`, B: 1, Hq: 2, Hkv: 2, Lq: 128, Lkv: 192, E, Ev: E, maskMod: true, blocks: (qb, kb) => ((qb + kb) % 3 === 0 ? 2 : (qb + 2 * kb) % 3 === 1 ? 1 : 0) },
    { name: `E${E} varlen causal`, B: 1, Hq: 2, Hkv: 1, Lq: 0, Lkv: 0, E, Ev: E, causal: true, varlen: [37, 70, 5] },
  ];
}
// the emulation (16×16 matrices per invocation, llvmpipe's compiler) stays at head dims ≤ 32
const EMU_CASES: Case[] = [
  { name: 'E32/Ev16 GQA causal', B: 1, Hq: 4, Hkv: 2, Lq: 77, Lkv: 77, E: 32, Ev: 16, causal: true },
  { name: 'E24/Ev24 Lq!=Lkv bool mask', B: 2, Hq: 1, Hkv: 1, Lq: 45, Lkv: 70, E: 24, Ev: 24, mask: 'bool' },
  { name: 'E16 additive mask', B: 1, Hq: 2, Hkv: 2, Lq: 33, Lkv: 50, E: 16, Ev: 16, mask: 'float' },
  { name: 'score_mod + mask_mod causal Lq<Lkv', B: 1, Hq: 2, Hkv: 2, Lq: 40, Lkv: 90, E: 16, Ev: 16, causal: true, score: true, maskMod: true },
  ...LAYOUT_CASES(16),
];

// small tilings keep llvmpipe's compile short
const EMU: SgmatConfig = { rs: 16, nsg: 2, bc: 16 };
const COMPILE_TIMEOUT = 600_000;

// The emulation compiles slowly on llvmpipe (10-40 s per pipeline with an empty shader cache, i.e. on CI): every case
// runs once with the options of the hardware default (`vec`, `rsm`, `pf` below), each other option on a hooked or
// layout case; the real kernels run every case × option on the tensor cores (second describe).
describe('subgroup-matrix forward, emulated (f32, every adapter)', () => {
  for (const c of [EMU_CASES[0]!, EMU_CASES[3]!]) {
    it(c.name, async () => {
      setFlashSubgroupMatrix('emulate', EMU);
      try {
        await check(c, 'float32', 2e-5, 2e-4);
      } finally {
        setFlashSubgroupMatrix('auto');
      }
    }, COMPILE_TIMEOUT);
  }
  // vector staging (q/k/v as vec4 loads) and the softmax split over both halves of a subgroup, alone and together
  // (with Kᵀ staging and Q in workgroup memory): every case for the combination, the hooked/varlen/sparse ones for each
  const OPTS: [SgmatConfig, Case[]][] = [
    [{ ...EMU, vec: true, split: 'wg' }, [EMU_CASES[1]!, EMU_CASES[3]!]],
    [{ ...EMU, vec: true }, [EMU_CASES[1]!]],
    [{ ...EMU, split: 'wg' }, [EMU_CASES[3]!, LAYOUT_CASES(16)[2]!]],
    [{ ...EMU, vec: true, split: 'wg', kt: true, qreload: true }, [EMU_CASES[0]!, EMU_CASES[3]!]],
    // softmax in registers and the register prefetch of the next K/V tile, split and one lane per row, Kᵀ staging
    [{ ...EMU, vec: true, split: 'wg', rsm: true, pf: true }, EMU_CASES],
    [{ ...EMU, vec: true, rsm: true, pf: true, kt: true }, [EMU_CASES[0]!, EMU_CASES[3]!]],
    [{ ...EMU, split: 'wg', rsm: true, pf: true }, [EMU_CASES[1]!]],
    [{ rs: 32, nsg: 2, bc: 16, vec: true, rsm: true, pf: true }, [{ ...CASES[4]!, name: 'rs32 ramp' }]],
    // E and Ev not multiples of 4: the scalar staging runs (the split softmax still does)
    [{ ...EMU, vec: true, split: 'wg' }, [{ name: 'E18/Ev10 vec fallback', B: 1, Hq: 2, Hkv: 1, Lq: 40, Lkv: 53, E: 18, Ev: 10, causal: true }]],
  ];
  for (const [cfg, cases] of OPTS) {
    for (const c of cases) {
      it(`${JSON.stringify(cfg)}: ${c.name}`, async () => {
        setFlashSubgroupMatrix('emulate', cfg);
        try {
          await check(c, 'float32', 2e-5, 2e-4);
        } finally {
          setFlashSubgroupMatrix('auto');
        }
      }, COMPILE_TIMEOUT);
    }
  }
  it('split softmax by subgroup shuffles (adapters with subgroups of exactly 32)', async (ctx) => {
    const c = gpu.caps;
    if (!gpu.hasFeature('subgroups') || c.subgroupMinSize !== 32 || c.subgroupMaxSize !== 32) ctx.skip(`subgroup sizes ${c.subgroupMinSize}-${c.subgroupMaxSize}: the shuffle needs 32`);
    setFlashSubgroupMatrix('emulate', { ...EMU, vec: true, split: 'shuffle' });
    try {
      for (const c of [EMU_CASES[0]!, EMU_CASES[3]!]) await check(c, 'float32', 2e-5, 2e-4);
    } finally {
      setFlashSubgroupMatrix('auto');
    }
  }, COMPILE_TIMEOUT);
  it('vector staging only where the layout allows it', () => {
    const mk = (shape: number[]) => T.randn(shape, { seed: 1, device: gpu });
    const base = { scale: 1, causal: false, causalOffset: 0, mask: null, hooks: null } as const;
    const [q, k, v] = [mk([1, 2, 8, 16]), mk([1, 2, 8, 16]), mk([1, 2, 8, 16])];
    expect(vecStaging({ ...base, q, k, v })).toBe(true);
    // transposed view: the head dim is not the contiguous one
    expect(vecStaging({ ...base, q: mk([1, 2, 16, 8]).transpose(2, 3), k, v })).toBe(false);
    // head dim not a multiple of 4
    const [q6, k6] = [mk([1, 2, 8, 6]), mk([1, 2, 8, 6])];
    expect(vecStaging({ ...base, q: q6, k: k6, v })).toBe(false);
    // offset not 4-aligned
    const shifted = mk([2 * 8 * 16 + 1]).slice(0, 1).reshape([1, 2, 8, 16]);
    expect(shifted.offset).toBe(1);
    expect(vecStaging({ ...base, q, k: shifted, v })).toBe(false);
  });
  it('a NaN query row gives a NaN output row and lse', async () => {
    setFlashSubgroupMatrix('emulate', { ...EMU, vec: true, split: 'wg', rsm: true, pf: true, kt: true });
    try {
      await checkNanRow('float32', 2e-5, 2e-4);
    } finally {
      setFlashSubgroupMatrix('auto');
    }
  }, COMPILE_TIMEOUT);
  it('32 rows per subgroup (the E ≤ 64 tiling) and the lazy rescale over many key tiles', async () => {
    setFlashSubgroupMatrix('emulate', { rs: 32, nsg: 2, bc: 16 });
    try {
      await check({ ...CASES[4]!, name: 'rs32 ramp' }, 'float32', 2e-5, 2e-4);
    } finally {
      setFlashSubgroupMatrix('auto');
    }
  }, COMPILE_TIMEOUT);
});

// the default mode ('auto') takes the real kernel for f16 where the device has it: no mode is set here
describe('subgroup-matrix forward on tensor cores (f16)', () => {
  afterEach(() => setFlashSubgroupMatrix('auto'));
  for (const c of CASES) {
    it(c.name, async (ctx) => {
      needReal(ctx);
      // f16 output rounding and P rounded to f16 before P·V, on top of f32 accumulation
      await check(c, 'float16', 3e-3, 1e-2);
    }, COMPILE_TIMEOUT);
  }
  it('every tiling it may pick (16 or 32 rows per subgroup, 2-8 subgroups, 16- and 32-key tiles, default options)', async (ctx) => {
    needReal(ctx);
    // with the default options (vector + Kᵀ staging, shuffle softmax in registers, prefetch)
    const o: Partial<SgmatConfig> = { vec: true, split: 'shuffle', kt: true, rsm: true, pf: true };
    for (const cfg of [{ rs: 16, nsg: 8, bc: 32 }, { rs: 16, nsg: 8, bc: 16 }, { rs: 16, nsg: 4, bc: 16 }, { rs: 32, nsg: 4, bc: 16 }, { rs: 32, nsg: 4, bc: 32 }, { rs: 32, nsg: 2, bc: 16 }, { rs: 16, nsg: 2, bc: 16 }].map((c) => ({ ...c, ...o })) as SgmatConfig[]) {
      setFlashSubgroupMatrix('auto', cfg);
      try {
        await check({ ...CASES[0]!, name: JSON.stringify(cfg) }, 'float16', 3e-3, 1e-2);
      } finally {
        setFlashSubgroupMatrix('auto');
      }
    }
  }, COMPILE_TIMEOUT);
  // the staging / softmax options of the A/B bench (apps/bench/gpu/sgmat_attn.mjs --ab): vector staging + shuffle
  // softmax over every case, each option alone on the hooked and GQA cases, the 32-key tilings with both
  const D8: SgmatConfig = { rs: 16, nsg: 8, bc: 16 };
  const OPTS: [SgmatConfig, Case[]][] = [
    [{ ...D8, vec: true, split: 'shuffle' }, CASES],
    ...([{ vec: true }, { split: 'shuffle' }, { split: 'wg' }, { vec: true, split: 'shuffle', kt: true }] as Partial<SgmatConfig>[]).map((o): [SgmatConfig, Case[]] => [{ ...D8, ...o }, [CASES[0]!, CASES[3]!]]),
    [{ rs: 16, nsg: 8, bc: 32, vec: true, split: 'shuffle' }, [CASES[0]!, CASES[4]!]],
    [{ rs: 16, nsg: 4, bc: 32, vec: true, split: 'shuffle' }, [CASES[0]!, CASES[4]!]],
    [{ rs: 16, nsg: 4, bc: 16, vec: true, split: 'shuffle' }, [CASES[0]!]],
    // softmax in registers + prefetch of the next K/V tile (+ Kᵀ staging): every case, then 256 rows per workgroup,
    // 32-key tiles and one lane per row (32 rows per subgroup)
    [{ ...D8, vec: true, split: 'shuffle', kt: true, rsm: true, pf: true }, CASES],
    [{ rs: 16, nsg: 16, bc: 16, vec: true, split: 'shuffle', kt: true, rsm: true, pf: true }, [CASES[0]!, CASES[4]!]],
    [{ rs: 16, nsg: 8, bc: 32, vec: true, split: 'shuffle', kt: true, rsm: true, pf: true }, [CASES[0]!, CASES[4]!]],
    [{ rs: 32, nsg: 4, bc: 16, vec: true, rsm: true, pf: true }, [CASES[0]!, CASES[4]!]],
  ];
  for (const [cfg, cases] of OPTS) {
    it(`options ${JSON.stringify(cfg)}: ${cases.length} cases`, async (ctx) => {
      needReal(ctx);
      try {
        for (const c of cases) {
          // block-sparse tables are per 64 query rows: a forced tiling keeps its options on at most 64 rows there
          setFlashSubgroupMatrix('auto', c.blocks && cfg.rs * cfg.nsg > 64 ? { ...cfg, nsg: 64 / cfg.rs } : cfg);
          await check({ ...c, name: `${JSON.stringify(cfg)} ${c.name}` }, 'float16', 3e-3, 1e-2);
        }
      } finally {
        setFlashSubgroupMatrix('auto');
      }
    }, COMPILE_TIMEOUT);
  }
  it('a NaN query row gives a NaN output row and lse (the driver folds x != x)', async (ctx) => {
    needReal(ctx);
    await checkNanRow('float16', 3e-3, 1e-2);
  }, COMPILE_TIMEOUT);
  it('SDPA in float16 takes it and matches the float64 CPU path, with gradients', async (ctx) => {
    needReal(ctx);
    const cpu = T.cpu();
    const shape = [2, 3, 100, 64];
    const mk = (seed: number, device: T.Device, dtype: T.DType) => T.randn(shape, { seed, device, dtype: 'float16' }).cast(dtype).detach().requiresGrad_();
    const [q, k, v] = [1, 2, 3].map((s) => mk(s, gpu, 'float16'));
    const [qc, kc, vc] = [1, 2, 3].map((s) => mk(s, cpu, 'float64'));
    const out = sdpaKernel(['flash'], () => scaledDotProductAttention(q!, k!, v!, { isCausal: true }));
    const ref = scaledDotProductAttention(qc!, kc!, vc!, { isCausal: true });
    expectClose(await out.toArray(), await ref.toArray(), 3e-3, 1e-2, 'out');
    const g = T.randn(shape, { seed: 4, device: cpu, dtype: 'float16' });
    out.backward(T.tensor(Array.from(await g.toArray()), shape, { device: gpu, dtype: 'float16' }));
    ref.backward(g.cast('float64'));
    for (const [name, a, b] of [['dq', q, qc], ['dk', k, kc], ['dv', v, vc]] as const) {
      expectClose(await a!.grad!.toArray(), await b!.grad!.toArray(), 1e-2, 2e-2, name);
    }
  }, COMPILE_TIMEOUT);
});
