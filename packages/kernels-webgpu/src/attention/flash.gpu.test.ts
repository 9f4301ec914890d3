import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import * as T from '@webattn/core-tensor';
import { scaledDotProductAttention, sdpaKernel, type WebGPUDevice } from '../index.js';
import { setFlashBackwardPath, setFlashForwardPath, setFlashRegisterTile, setFlashSpecialization, setFlashStaging, setFlashTiles } from './flash.js';
import { expectClose, gpuDevice, skipWithoutSwiftShader } from '../../../../test-utils/index.js';

let gpu: WebGPUDevice;
const cpu = T.cpu();
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

interface Case {
  B: number;
  Hq: number;
  Hkv: number;
  Lq: number;
  Lkv: number;
  E: number;
  Ev: number;
  causal: boolean;
  mask: boolean;
}

async function attend(c: Case, device: T.Device, dtype: T.DType, backend: 'flash' | 'math', forwardOnly = false) {
  const q = T.randn([c.B, c.Hq, c.Lq, c.E], { seed: 11, device, dtype }).detach().requiresGrad_();
  const k = T.randn([c.B, c.Hkv, c.Lkv, c.E], { seed: 12, device, dtype }).detach().requiresGrad_();
  const v = T.randn([c.B, c.Hkv, c.Lkv, c.Ev], { seed: 13, device, dtype }).detach().requiresGrad_();
  const dout = T.randn([c.B, c.Hq, c.Lq, c.Ev], { seed: 14, device, dtype });
  const attnMask = c.mask ? T.randn([c.Lq, c.Lkv], { seed: 15, device, dtype }) : null;
  const out = sdpaKernel([backend], () => scaledDotProductAttention(q, k, v, { isCausal: c.causal, attnMask, enableGqa: c.Hq !== c.Hkv }));
  if (forwardOnly) return { out: await out.toArray(), dq: null, dk: null, dv: null };
  out.backward(dout);
  return { out: await out.toArray(), dq: await q.grad!.toArray(), dk: await k.grad!.toArray(), dv: await v.grad!.toArray() };
}

// each case compiles a forward and two backward pipelines of unrolled register tiles: on a loaded
// 2-core llvmpipe machine a first (uncached) compile took minutes
const COMPILE_TIMEOUT = 900_000;

// shapes that cross tile edges (rows/cols not multiples of 8, 16, 32, 64) and several key tiles
const CASES: Case[] = [
  { B: 1, Hq: 4, Hkv: 2, Lq: 77, Lkv: 131, E: 64, Ev: 64, causal: true, mask: false },
  { B: 2, Hq: 2, Hkv: 2, Lq: 45, Lkv: 70, E: 40, Ev: 24, causal: false, mask: true },
  { B: 1, Hq: 1, Hkv: 1, Lq: 19, Lkv: 23, E: 200, Ev: 130, causal: true, mask: false },
];

describe('cooperative tiles: every tile list matches the float64 reference forward and backward', () => {
  // `small` + storage staging is what SwiftShader gets (Chromium's software WebGPU)
  for (const [tiles, staging] of [['software', 'workgroup'], ['hardware', 'workgroup'], ['small', 'storage'], ['medium', 'workgroup']] as const) {
    for (const c of tiles === 'medium' ? CASES.slice(0, 2) : CASES) {
      it(`${tiles} tiles, ${staging} staging: ${JSON.stringify(c)}`, async () => {
        // the staged forward (the register forward has its own tests below) and the staged backward with each
        // list (the register backward: backward-registers.gpu.test.ts)
        setFlashForwardPath('staged');
        setFlashBackwardPath('staged');
        setFlashTiles(tiles);
        setFlashStaging(staging);
        try {
          const ref = await attend(c, cpu, 'float64', 'math');
          const got = await attend(c, gpu, 'float32', 'flash');
          expectClose(got.out, ref.out, 3e-5, 3e-4, 'out');
          expectClose(got.dv, ref.dv, 5e-5, 5e-4, 'dV');
          expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dQ');
          expectClose(got.dk, ref.dk, 1e-4, 1e-3, 'dK');
        } finally {
          setFlashForwardPath('auto');
          setFlashBackwardPath('auto');
          setFlashTiles('auto');
          setFlashStaging('auto');
        }
      }, COMPILE_TIMEOUT);
    }
  }

  it('hardware tiles with compile-time head dims (the H100 f32 kernels) match too', async () => {
    setFlashBackwardPath('staged');
    setFlashTiles('hardware');
    setFlashSpecialization('always');
    try {
      const c = CASES[0]!;
      const ref = await attend(c, cpu, 'float64', 'math');
      const got = await attend(c, gpu, 'float32', 'flash');
      expectClose(got.out, ref.out, 3e-5, 3e-4, 'out');
      expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dQ');
      expectClose(got.dk, ref.dk, 1e-4, 1e-3, 'dK');
      expectClose(got.dv, ref.dv, 5e-5, 5e-4, 'dV');
    } finally {
      setFlashBackwardPath('auto');
      setFlashTiles('auto');
      setFlashSpecialization('auto');
    }
  }, COMPILE_TIMEOUT);
});

// The register forward is what hardware GPUs run; forced here so that CI (llvmpipe) covers it, with runtime and
// with compile-time head dims, on every thread grid that fits this adapter. E=200/Ev=130 is too wide for it
// and exercises the fallback to the staged forward.
const REGISTER_CASES: Case[] = [
  ...CASES,
  { B: 2, Hq: 2, Hkv: 1, Lq: 70, Lkv: 45, E: 16, Ev: 32, causal: true, mask: true },
  { B: 1, Hq: 2, Hkv: 2, Lq: 33, Lkv: 100, E: 128, Ev: 16, causal: false, mask: false },
  { B: 1, Hq: 2, Hkv: 1, Lq: 40, Lkv: 50, E: 32, Ev: 128, causal: true, mask: false },
  { B: 2, Hq: 1, Hkv: 1, Lq: 50, Lkv: 90, E: 16, Ev: 16, causal: false, mask: true },
  { B: 1, Hq: 4, Hkv: 2, Lq: 33, Lkv: 77, E: 16, Ev: 32, causal: false, mask: false },
  { B: 1, Hq: 2, Hkv: 2, Lq: 150, Lkv: 61, E: 16, Ev: 16, causal: true, mask: true },
  { B: 2, Hq: 2, Hkv: 1, Lq: 130, Lkv: 40, E: 16, Ev: 32, causal: false, mask: false },
  CASES[1]!,
  // head dims 96 / 80 (class 128, bounds past the data), GQA, causal, odd lengths: forward only (compile time)
  { B: 1, Hq: 4, Hkv: 2, Lq: 61, Lkv: 83, E: 96, Ev: 80, causal: true, mask: false },
];
describe('the register forward (hardware GPUs) matches the float64 reference', () => {
  // per case: the thread grid, K/V in one shared buffer or two, prefetching of the next key tile (where
  // registers allow: NK + NV ≤ 8 vec4); null = the adapter's default choice
  const grids: ({ tr: number; tc: number; rv?: number; shared?: boolean; prefetch?: boolean; qk?: number; pad?: boolean; lean?: boolean; kw?: number } | null)[] = [
    null, // llvmpipe: 8x4 rv2, separate, no prefetch, vec4 K/V loads
    { tr: 8, tc: 8, shared: true }, // shared, no prefetch
    { tr: 4, tc: 4 }, // E=200: the staged fallback
    { tr: 8, tc: 8, rv: 2 }, // 8 rows per thread, separate + prefetch
    { tr: 4, tc: 4, shared: true }, // shared, no prefetch, E=128
    { tr: 8, tc: 4, prefetch: false }, // 8 output vec4 per row
    { tr: 8, tc: 4, rv: 2, shared: true, pad: true }, // 8 rows per thread, shared + prefetch, padded staging rows
    { tr: 16, tc: 8, pad: true, lean: true }, // separate + prefetch, padded rows, NaN flags through the row-sum buffer
    { tr: 32, tc: 4 }, // 256 threads over 128 rows (the float16 grid is 32x8), separate + prefetch
    { tr: 32, tc: 4, shared: true }, // the same, shared (as float16 32x8 on the H100)
    { tr: 4, tc: 4, qk: 16, pad: true, kw: 2 }, // Q·Kᵀ in head-dim chunks of 16 (E=40 of class 64: the last chunk past E), prefetch, padded, 8 keys per thread
    { tr: 8, tc: 8, qk: 32, pad: true, lean: true }, // chunks of 32 at class 128 (the H100's f32 E=128 kind), padded, lean
  ];
  REGISTER_CASES.forEach((c, n) => {
    // the last case: 256 threads over 128 rows with chunks of 16 (the H100's f32 E=128 default) where it fits (48 KiB of
    // workgroup memory; llvmpipe's 32 KiB takes 8x8 with chunks of 32)
    const wide = { tr: 32, tc: 8, qk: 16, pad: true, lean: true };
    const gridFor = () => (n === grids.length - 1 && gpu.limits.maxComputeWorkgroupStorageSize >= 49152 ? wide : grids[n]!);
    const grid = grids[n]!;
    const spec = n % 2 === 0 ? 'always' : 'never';
    it(`grid ${grid ? JSON.stringify(grid) : 'auto'}, specialisation ${spec}: ${JSON.stringify(c)}`, async () => {
      setFlashForwardPath('registers');
      setFlashRegisterTile(gridFor());
      setFlashSpecialization(spec);
      const built = () => gpu.pipelineStats().byKernel['flash_attention_forward_registers']?.created ?? 0;
      const before = built();
      try {
        const forwardOnly = c.E === 96;
        const ref = await attend(c, cpu, 'float64', 'math', forwardOnly);
        const got = await attend(c, gpu, 'float32', 'flash', forwardOnly);
        // each case has its own pipeline key: the register kernel was built unless the head dims are too wide
        // (the default path runs it too, so earlier tests may have built the default grid's pipeline already)
        if (gpu.info.software && grid) expect(built() - before).toBe(c.Ev > 128 ? 0 : 1);
        else expect(built()).toBeGreaterThan(0);
        expectClose(got.out, ref.out, 3e-5, 3e-4, 'out');
        if (!forwardOnly) {
          expectClose(got.dv!, ref.dv!, 5e-5, 5e-4, 'dV');
          expectClose(got.dq!, ref.dq!, 1e-4, 1e-3, 'dQ');
          expectClose(got.dk!, ref.dk!, 1e-4, 1e-3, 'dK');
        }
      } finally {
        setFlashForwardPath('auto');
        setFlashRegisterTile(null);
        setFlashSpecialization('auto');
      }
    }, COMPILE_TIMEOUT);
  });
});

// llvmpipe's default grids read K and V from storage as vec4 (`ld4`) where the layout allows: odd lengths, causal, an
// additive mask, GQA; a transposed (non-contiguous) K and head dims not multiples of 4 take the scalar loads instead.
// Forward only (the backward kernels do not change); each case builds its own pipeline.
describe('the register forward with vector K/V loads (software grids) matches the float64 reference', () => {
  const base: Case = { B: 1, Hq: 4, Hkv: 2, Lq: 77, Lkv: 131, E: 64, Ev: 64, causal: true, mask: true };
  const cases: [string, Case, boolean][] = [
    ['vec4 loads', base, false],
    ['transposed K: scalar loads', base, true],
    ['E=18 Ev=20: scalar loads', { ...base, E: 18, Ev: 20, causal: false }, false],
    ['E=96 Ev=80 (class 128)', { ...base, Lq: 61, Lkv: 83, E: 96, Ev: 80, mask: false }, false],
  ];
  for (const [what, c, transposedK] of cases) {
    it(`${what}: ${JSON.stringify(c)}`, async () => {
      setFlashForwardPath('registers');
      setFlashRegisterTile({ tr: 8, tc: 4, rv: 2, ld4: true });
      const built = () => gpu.pipelineStats().byKernel['flash_attention_forward_registers']?.created ?? 0;
      const before = built();
      try {
        const run = async (device: T.Device, dtype: T.DType) => {
          const q = T.randn([c.B, c.Hq, c.Lq, c.E], { seed: 21, device, dtype });
          const k = transposedK ? T.randn([c.B, c.Hkv, c.E, c.Lkv], { seed: 22, device, dtype }).transpose(2, 3) : T.randn([c.B, c.Hkv, c.Lkv, c.E], { seed: 22, device, dtype });
          const v = T.randn([c.B, c.Hkv, c.Lkv, c.Ev], { seed: 23, device, dtype });
          const attnMask = c.mask ? T.randn([c.Lq, c.Lkv], { seed: 25, device, dtype }) : null;
          const o = { isCausal: c.causal, attnMask, enableGqa: c.Hq !== c.Hkv };
          return T.noGrad(() => sdpaKernel([dtype === 'float64' ? 'math' : 'flash'], () => scaledDotProductAttention(q, k, v, o))).toArray();
        };
        const ref = await run(cpu, 'float64');
        const got = await run(gpu, 'float32');
        if (gpu.info.software) expect(built() - before).toBe(1);
        expectClose(got, ref, 3e-5, 3e-4, 'out');
      } finally {
        setFlashForwardPath('auto');
        setFlashRegisterTile(null);
      }
    }, COMPILE_TIMEOUT);
  }

  // large calls on llvmpipe hold Q in registers (qr): the same dot products in the same order, so the same bits.
  // Causal GQA E=64 without a mask: the qr kernel's WGSL is that of sdpa.gpu.test.ts's L=1500 call, so a CI run
  // compiles it once (Mesa's shader cache)
  it('Q in registers (qr, forced): the loop kernel\'s outputs bit for bit, and the reference', async () => {
    const c = { ...base, mask: false };
    const mk = (device: T.Device, dtype: T.DType) => {
      const q = T.randn([c.B, c.Hq, c.Lq, c.E], { seed: 31, device, dtype });
      const k = T.randn([c.B, c.Hkv, c.Lkv, c.E], { seed: 32, device, dtype });
      const v = T.randn([c.B, c.Hkv, c.Lkv, c.Ev], { seed: 33, device, dtype });
      return () => T.noGrad(() => sdpaKernel([dtype === 'float64' ? 'math' : 'flash'], () => scaledDotProductAttention(q, k, v, { isCausal: true, enableGqa: true }))).toArray();
    };
    const built = () => gpu.pipelineStats().byKernel['flash_attention_forward_registers']?.created ?? 0;
    const run = mk(gpu, 'float32');
    setFlashForwardPath('registers');
    try {
      setFlashRegisterTile({ tr: 8, tc: 4, rv: 2, ld4: true });
      const loop = await run();
      setFlashRegisterTile({ tr: 8, tc: 4, rv: 2, ld4: true, qr: 0 });
      const before = built();
      const held = await run();
      if (gpu.info.software) expect(built() - before).toBe(1);
      let same = 0;
      for (let i = 0; i < loop.length; i++) if (Object.is(loop[i], held[i])) same++;
      expect(same).toBe(loop.length);
      expectClose(held, await mk(cpu, 'float64')(), 3e-5, 3e-4, 'out');
    } finally {
      setFlashForwardPath('auto');
      setFlashRegisterTile(null);
    }
  }, COMPILE_TIMEOUT);
});

describe('the register forward splits long key ranges into passes under the adapter loop cap', () => {
  it('Lkv=4000 at E=128 takes more dispatches than Lkv=64 where there is a cap, and E=64 / E=128 both equal math', async () => {
    setFlashForwardPath('registers');
    try {
      for (const E of [64, 128]) {
        const q = T.randn([1, 4, 40, E], { seed: 1, device: gpu });
        const k4 = T.randn([1, 2, 4000, E], { seed: 2, device: gpu });
        const v4 = T.randn([1, 2, 4000, 64], { seed: 5, device: gpu });
        const k64 = T.randn([1, 2, 64, E], { seed: 3, device: gpu });
        const v64 = T.randn([1, 2, 64, 64], { seed: 6, device: gpu });
        const run = (k: T.Tensor, v: T.Tensor, backend: 'flash' | 'math') => {
          const before = gpu.dispatchCount;
          const out = T.noGrad(() => sdpaKernel([backend], () => scaledDotProductAttention(q, k, v, { enableGqa: true, isCausal: true })));
          return { n: gpu.dispatchCount - before, out };
        };
        const long = run(k4, v4, 'flash');
        if (E === 128 && gpu.maxLoopIterations < Infinity) expect(long.n).toBeGreaterThan(run(k64, v64, 'flash').n);
        expectClose(await long.out.toArray(), await run(k4, v4, 'math').out.toArray(), 3e-5, 3e-4, `out (E=${E}, Lkv=4000)`);
      }
    } finally {
      setFlashForwardPath('auto');
    }
  }, COMPILE_TIMEOUT);
});

// SwiftShader has subgroups (llvmpipe has none): the register forward's row maximum by subgroup shuffles,
// forced there on a small grid (SwiftShader compiles workgroup-memory initialisation slowly, so a small tile).
describe('the register forward with subgroup shuffles (SwiftShader) matches the float64 reference', () => {
  for (const useSg of [true, false]) {
    it(`${useSg ? 'subgroups' : 'workgroup-memory exchange'}: causal, GQA, mask, edges`, async (ctx) => {
      // the device machine has no chromium (no SwiftShader ICD): skipped there with the reason; CI has it
      skipWithoutSwiftShader(ctx);
      const sw = (await T.getDevice({ kind: 'webgpu', webgpuBackend: 'swiftshader', cache: false })) as WebGPUDevice;
      sw.poisonAllocations = true;
      sw.subgroupsEnabled = useSg;
      expect(sw.hasFeature('subgroups')).toBe(true);
      setFlashForwardPath('registers');
      setFlashRegisterTile({ tr: 4, tc: 4 });
      try {
        const c: Case = { B: 1, Hq: 2, Hkv: 1, Lq: 21, Lkv: 37, E: 16, Ev: 16, causal: true, mask: true };
        const built = () => sw.pipelineStats().byKernel['flash_attention_forward_registers']?.created ?? 0;
        // forward only (the backward kernels are the same as on every adapter and compile slowly here)
        const fwd = async (device: T.Device, dtype: T.DType) => {
          const q = T.randn([c.B, c.Hq, c.Lq, c.E], { seed: 11, device, dtype });
          const k = T.randn([c.B, c.Hkv, c.Lkv, c.E], { seed: 12, device, dtype });
          const v = T.randn([c.B, c.Hkv, c.Lkv, c.Ev], { seed: 13, device, dtype });
          const attnMask = T.randn([c.Lq, c.Lkv], { seed: 15, device, dtype });
          const o = { isCausal: true, attnMask, enableGqa: true };
          return T.noGrad(() => sdpaKernel([dtype === 'float64' ? 'math' : 'flash'], () => scaledDotProductAttention(q, k, v, o))).toArray();
        };
        const ref = await fwd(cpu, 'float64');
        const got = await fwd(sw, 'float32');
        expect(built()).toBe(1);
        expectClose(got, ref, 3e-5, 3e-4, 'out');
      } finally {
        setFlashForwardPath('auto');
        setFlashRegisterTile(null);
        sw.destroy();
      }
    }, COMPILE_TIMEOUT);
  }
});

// float16 operands (the register forward stages them as f16): adapters with shader-f16 only (the H100 run sets
// WEBATTN_EXPECT_F16=1, which turns a missing f16 into a failure). Reference: float64 from the same f16 values.
describe('float16 inputs match the float64 reference of the same f16 values', () => {
  const needF16 = (ctx: TestContext) => {
    if (gpu.hasFeature('shader-f16')) return;
    const why = `adapter "${gpu.info.adapter}" has no shader-f16`;
    if (process.env.WEBATTN_EXPECT_F16 === '1') expect.fail(`WEBATTN_EXPECT_F16=1 but ${why}`);
    ctx.skip(why);
  };
  for (const path of ['registers', 'registers 16x8 rv2', 'staged'] as const) {
    for (const c of [CASES[0]!, CASES[1]!, REGISTER_CASES[4]!]) {
      it(`${path} forward: ${JSON.stringify(c)}`, async (ctx) => {
        needF16(ctx);
        setFlashForwardPath(path === 'staged' ? 'staged' : 'registers');
        if (path === 'registers 16x8 rv2') setFlashRegisterTile({ tr: 16, tc: 8, rv: 2 });
        try {
          const mk = async (shape: number[], seed: number) => {
            const h = T.randn(shape, { seed, device: cpu, dtype: 'float16' });
            const vals = Array.from(await h.toArray());
            return [T.tensor(vals, shape, { device: gpu, dtype: 'float16' }), T.tensor(vals, shape, { device: cpu, dtype: 'float64' })] as const;
          };
          const [q, qc] = await mk([c.B, c.Hq, c.Lq, c.E], 41);
          const [k, kc] = await mk([c.B, c.Hkv, c.Lkv, c.E], 42);
          const [v, vc] = await mk([c.B, c.Hkv, c.Lkv, c.Ev], 43);
          const [m, mc] = c.mask ? await mk([c.Lq, c.Lkv], 44) : [null, null];
          const o = { isCausal: c.causal, enableGqa: c.Hq !== c.Hkv };
          const got = sdpaKernel(['flash'], () => scaledDotProductAttention(q, k, v, { ...o, attnMask: m }));
          const ref = scaledDotProductAttention(qc, kc, vc, { ...o, attnMask: mc });
          expect(got.dtype).toBe('float16');
          expectClose(await got.toArray(), await ref.toArray(), 3e-3, 1e-2, 'out');
        } finally {
          setFlashForwardPath('auto');
          setFlashRegisterTile(null);
        }
      }, COMPILE_TIMEOUT);
    }
  }
});

for (const path of ['staged', 'registers'] as const) describe(`NaN inputs propagate like PyTorch (${path} forward)`, () => {
  beforeAll(() => setFlashForwardPath(path));
  afterAll(() => setFlashForwardPath('auto'));
  it('a NaN in one query row gives NaN in that row only; the other rows match the reference', async () => {
    const [B, H, L, E] = [1, 2, 40, 16];
    const qa = Array.from(await T.randn([B, H, L, E], { seed: 21, device: cpu, dtype: 'float64' }).toArray());
    const bad = 1 * L * E + 7 * E + 3; // head 1, row 7
    qa[bad] = Number.NaN;
    const k = T.randn([B, H, L, E], { seed: 22, device: gpu });
    const v = T.randn([B, H, L, E], { seed: 23, device: gpu });
    const q = T.tensor(qa, [B, H, L, E], { device: gpu, dtype: 'float32' });
    const out = await sdpaKernel(['flash'], () => scaledDotProductAttention(q, k, v, { isCausal: true })).toArray();
    // reference: the same inputs with the NaN row replaced, on the float64 CPU backend
    const qc = qa.slice();
    qc[bad] = 0;
    const ref = await scaledDotProductAttention(
      T.tensor(qc, [B, H, L, E], { device: cpu, dtype: 'float64' }),
      T.tensor(Array.from(await k.toArray()), [B, H, L, E], { device: cpu, dtype: 'float64' }),
      T.tensor(Array.from(await v.toArray()), [B, H, L, E], { device: cpu, dtype: 'float64' }),
      { isCausal: true },
    ).toArray();
    for (let r = 0; r < B * H * L; r++) {
      const row = Array.from(out.slice(r * E, (r + 1) * E));
      if (r === L + 7) expect(row.every(Number.isNaN)).toBe(true);
      else expectClose(row, Array.from(ref.slice(r * E, (r + 1) * E)), 3e-5, 3e-4, `row ${r}`);
    }
  });

  it('a NaN value reaches every query that attends to its key (causal: rows at and after it)', async () => {
    const [B, H, L, E] = [1, 1, 24, 16];
    const va = Array.from(await T.randn([B, H, L, E], { seed: 31, device: cpu, dtype: 'float64' }).toArray());
    va[10 * E + 2] = Number.NaN; // key 10, column 2
    const q = T.randn([B, H, L, E], { seed: 32, device: gpu });
    const k = T.randn([B, H, L, E], { seed: 33, device: gpu });
    const v = T.tensor(va, [B, H, L, E], { device: gpu, dtype: 'float32' });
    const out = await sdpaKernel(['flash'], () => scaledDotProductAttention(q, k, v, { isCausal: true })).toArray();
    for (let r = 0; r < L; r++) {
      // rows before it give it probability 0; 0·NaN is NaN in PyTorch's matmul too, so only rows ≥ 10 are pinned down
      if (r >= 10) expect(Number.isNaN(out[r * E + 2]!)).toBe(true);
      expect(Number.isNaN(out[r * E + 5]!)).toBe(false);
    }
  });
});
