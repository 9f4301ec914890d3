import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from './device/webgpu-device.js';
import { hasSubgroupMatrixF16, setSubgroupMatrixMatmul, setTiledMatmul, SGMM_DEFAULT } from './internal.js';
import { expectClose, gpuDevice } from '../../../test-utils/index.js';

// float16 on the GPU: storage f16, arithmetic and accumulation in f32. Runs where the adapter has
// `shader-f16` (the H100 through Dawn's toggles); elsewhere each f16 case is reported as skipped, never
// passed, and WEBATTN_EXPECT_F16=1 turns a missing feature into a failure (WEBATTN_EXPECT_SGMM=1 does the
// same for the subgroup-matrix path). References: float64 on the CPU from the same f16-rounded inputs.
let gpu: WebGPUDevice;
let hasF16 = false;
let hasSgmm = false;
const cpu = T.cpu();
beforeAll(async () => {
  gpu = await gpuDevice();
  hasF16 = gpu.hasFeature('shader-f16');
  hasSgmm = hasSubgroupMatrixF16(gpu);
});
afterAll(() => {
  setSubgroupMatrixMatmul(SGMM_DEFAULT);
  gpu?.destroy();
});

function needF16(ctx: TestContext): void {
  if (hasF16) return;
  if (process.env.WEBATTN_EXPECT_F16 === '1') expect.fail(`WEBATTN_EXPECT_F16=1 but adapter "${gpu.info.adapter}" has no shader-f16`);
  ctx.skip();
}

/** The same seeded f16 values on the GPU (f16 storage) and on the CPU as float64. */
function half(shape: number[], seed: number, requiresGrad = false) {
  return {
    g: T.randn(shape, { seed, device: gpu, dtype: 'float16', requiresGrad }),
    c: T.randn(shape, { seed, device: cpu, dtype: 'float16' }).cast('float64').detach().requiresGrad_(requiresGrad),
  };
}

const id = (t: T.Tensor) => t;
const tr = (t: T.Tensor) => t.transpose(-1, -2);

// [a shape, b shape, a view, b view]
const CASES: [number[], number[], (t: T.Tensor) => T.Tensor, (t: T.Tensor) => T.Tensor, string][] = [
  [[37, 45], [45, 33], id, id, 'odd 37x45x33'],
  [[128, 256], [256, 192], id, id, 'aligned 128x256x192'],
  [[130, 100], [100, 70], id, id, 'partial tiles 130x100x70'],
  [[64, 96], [80, 96], id, tr, 'B transposed (Q·Kᵀ layout)'],
  [[96, 64], [96, 80], tr, id, 'A transposed'],
  [[3, 1, 40, 32], [4, 32, 48], id, id, 'batch broadcast'],
  [[2, 2048], [2048, 24], id, id, 'K=2048 accumulates in f32'],
  // 1-4 rows: the matrix-vector kernel (vec4 along N, vec4 along K, scalars), decode-step layouts
  [[1, 64], [64, 96], id, id, 'one row, vec4 along N'],
  [[2, 3, 1, 64], [2, 3, 13, 64], id, tr, 'q·kᵀ of a decode step (vec4 along K)'],
  [[2, 3, 1, 13], [2, 3, 13, 64], id, id, 'p·v of a decode step, K = 13'],
  [[37, 3], [21, 37], tr, tr, 'three rows, scalars'],
];

async function runCases(label: string) {
  for (const [sa, sb, fa, fb, name] of CASES) {
    const a = half(sa, 1);
    const b = half(sb, 2);
    const got = T.matmul(fa(a.g), fb(b.g));
    expect(got.dtype).toBe('float16');
    const want = T.matmul(fa(a.c), fb(b.c));
    // f16 output rounding (half an ulp: 4.9e-4 relative) on top of f32 accumulation
    expectClose(await got.toArray(), await want.toArray(), 2e-3, 2e-3, `${label}: ${name}`);
  }
}

describe('float16 matmul', () => {
  it('without shader-f16, float16 tensors and casts are refused with DTYPE_UNSUPPORTED', () => {
    const x = T.randn([4], { seed: 1, device: gpu });
    if (hasF16) expect(x.cast('float16').dtype).toBe('float16');
    else expect(() => x.cast('float16')).toThrowError(/DTYPE_UNSUPPORTED/);
  });

  it('tiled kernels (f16 storage, f32 accumulation) match float64', async (ctx) => {
    needF16(ctx);
    setSubgroupMatrixMatmul(null);
    try {
      await runCases('tiled');
      setTiledMatmul({ wg: 16, bk: 8, tm: 8, tn: 8, split: true, prefetch: true });
      await runCases('split');
    } finally {
      setTiledMatmul(null);
      setSubgroupMatrixMatmul(SGMM_DEFAULT);
    }
  });

  it('subgroup-matrix kernel (tensor cores, f32 accumulation) matches float64', async (ctx) => {
    needF16(ctx);
    if (!hasSgmm) {
      if (process.env.WEBATTN_EXPECT_SGMM === '1') expect.fail(`WEBATTN_EXPECT_SGMM=1 but adapter "${gpu.info.adapter}" lacks chromium-experimental-subgroup-matrix`);
      ctx.skip();
    }
    const W = { ...SGMM_DEFAULT, wide: true, vstore: true };
    // the wide (8 f16 per load where aligned to 8: 'aligned', 'batch broadcast'; 4 elsewhere: K = 100) and vectorized
    // store (N a multiple of 4; scalar stores at N = 33, 70) options on each tiling the H100 A/B measures
    for (const cfg of [
      SGMM_DEFAULT,
      { ...SGMM_DEFAULT, nsz: 8 as const, double: true },
      { ...SGMM_DEFAULT, prefetch: true },
      { ...SGMM_DEFAULT, sgm: 4, tm: 2, nsz: 8 as const, tn: 8, prefetch: true },
      W,
      { ...W, nsz: 8 as const, tn: 8 },
      { ...W, tk: 64 },
      { ...W, sgn: 4 },
    ]) {
      setSubgroupMatrixMatmul(cfg);
      await runCases(`sgmm ${JSON.stringify(cfg)}`);
    }
    setSubgroupMatrixMatmul(SGMM_DEFAULT);
  });

  it('gradients flow through f16 and come back in f16', async (ctx) => {
    needF16(ctx);
    const a = half([6, 10, 12], 3, true);
    const b = half([12, 9], 4, true);
    const w = half([6, 10, 9], 5);
    T.matmul(a.g, b.g).mul(w.g).sum().backward();
    T.matmul(a.c, b.c).mul(w.c).sum().backward();
    expect(a.g.grad!.dtype).toBe('float16');
    expect(b.g.grad!.dtype).toBe('float16');
    expectClose(await a.g.grad!.toArray(), await a.c.grad!.toArray(), 3e-3, 3e-3, 'dA');
    // dB sums 60 products: one more f16 rounding of a larger magnitude
    expectClose(await b.g.grad!.toArray(), await b.c.grad!.toArray(), 2e-2, 3e-3, 'dB');
  });
});

describe('float16 elementwise, reductions and casts', () => {
  it('casts round to nearest like the CPU float16 and back exactly', async (ctx) => {
    needF16(ctx);
    const vals = [1 / 3, -2.5e-5, 65504, 70000, 1e-8, -0.1, 3.14159, 2049];
    const g = T.tensor(vals, [vals.length], { device: gpu }).cast('float16');
    const c = T.tensor(vals, [vals.length], { device: cpu, dtype: 'float16' });
    expect(Array.from(await g.toArray())).toEqual(Array.from(await c.toArray()));
    expect(Array.from(await g.cast('float32').toArray())).toEqual(Array.from(await c.toArray()));
  });

  it('sum, softmax, layerNorm and gelu in f16 match float64 from the same inputs', async (ctx) => {
    needF16(ctx);
    const x = half([7, 300], 6);
    const pairs: [string, (t: T.Tensor) => T.Tensor, number][] = [
      ['sum', (t) => T.sum(t, 1), 2e-2],
      ['softmax', (t) => T.softmax(t, -1), 2e-3],
      ['layerNorm', (t) => T.layerNorm(t, [300]), 4e-3],
      ['gelu', (t) => T.gelu(t), 2e-3],
    ];
    for (const [name, f, atol] of pairs) {
      const got = f(x.g);
      expect(got.dtype, name).toBe('float16');
      expectClose(await got.toArray(), await f(x.c).toArray(), atol, 3e-3, name);
    }
  });
});
