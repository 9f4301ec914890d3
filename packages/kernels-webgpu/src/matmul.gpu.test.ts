import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from './device/webgpu-device.js';
import { expectClose, gpuDevice } from '../../../test-utils/index.js';
import { setTiledMatmul, SPLIT_128, SPLIT_128_K32, SPLIT_128_T128, SPLIT_128X64, SPLIT_64 } from './internal.js';

// The tiled matmul against the float64 CPU reference: odd sizes (partial tiles), transposed operands
// read in place (vec4 and scalar staging), broadcast batch dims, K split into passes under llvmpipe's
// loop cap, and gradients.
let gpu: WebGPUDevice;
const cpu = T.cpu();
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

function pair(shape: number[], seed: number) {
  return { g: T.randn(shape, { seed, device: gpu }), c: T.randn(shape, { seed, device: cpu, dtype: 'float32' }).cast('float64') };
}

async function check(a: { g: T.Tensor; c: T.Tensor }, b: { g: T.Tensor; c: T.Tensor }, fa: (t: T.Tensor) => T.Tensor, fb: (t: T.Tensor) => T.Tensor, label: string, atol = 2e-4) {
  const got = T.matmul(fa(a.g), fb(b.g));
  const want = T.matmul(fa(a.c), fb(b.c));
  expect(got.shape).toEqual(want.shape);
  expectClose(await got.toArray(), await want.toArray(), atol, 1e-4, label);
}

const id = (t: T.Tensor) => t;
const tr = (t: T.Tensor) => t.transpose(-1, -2);

describe('matmul (tiled, register-blocked)', () => {
  it('odd sizes: partial tiles on every edge', async () => {
    for (const [m, k, n] of [[1, 1, 1], [37, 45, 33], [65, 17, 129], [3, 100, 2]] as const) {
      await check(pair([m, k], 1), pair([k, n], 2), id, id, `${m}x${k}x${n}`);
    }
  });

  it('aligned sizes take the vec4 paths (row-major and both transposes)', async () => {
    const [m, k, n] = [64, 48, 72];
    await check(pair([m, k], 3), pair([k, n], 4), id, id, 'nn');
    await check(pair([k, m], 3), pair([k, n], 4), tr, id, 'tn');
    await check(pair([m, k], 3), pair([n, k], 4), id, tr, 'nt');
    await check(pair([k, m], 3), pair([n, k], 4), tr, tr, 'tt');
  });

  it('transposed operands with odd sizes (scalar staging) and strided views', async () => {
    await check(pair([23, 31], 5), pair([19, 23], 6), tr, tr, 'tt odd');
    const a = pair([40, 60], 7);
    const b = pair([34, 50], 8);
    // column slices: non-contiguous rows with an offset
    await check(a, b, (t) => t.slice(1, 3, 33), (t) => t.slice(0, 2, 32).slice(1, 5, 45), 'sliced');
  });

  it('batched with broadcasting (stride-0 batch dims read in place)', async () => {
    const a = pair([3, 1, 20, 12], 9);
    const b = pair([4, 12, 8], 10);
    await check(a, b, id, id, 'broadcast');
    const c = pair([2, 3, 16, 8], 11);
    const d = pair([8, 16], 12);
    await check(c, d, id, id, '2-D rhs');
    await check(c, pair([2, 3, 24, 8], 13), id, tr, 'batched nt');
  });

  it('K past the llvmpipe loop cap is split into passes (exact, no LIMIT_EXCEEDED)', async () => {
    const k = 300_000;
    const a = pair([2, k], 14);
    const b = pair([k, 3], 15);
    await check(a, b, id, id, `K=${k}`, 5e-3);
    // aligned operands take the unstaged per-thread kernel on software adapters (4 K steps per iteration)
    await check(pair([8, 70_000], 16), pair([70_000, 8], 17), id, id, 'K=70000 aligned', 5e-3);
    // the matrix-vector kernel (<= 4 rows): vec4 along N, vec4 along K, scalars
    await check(pair([3, 70_000], 18), pair([70_000, 8], 19), id, id, 'K=70000 gemv n4', 5e-3);
    await check(pair([2, 70_000], 18), pair([5, 70_000], 19), id, tr, 'K=70000 gemv k4', 5e-3);
    await check(pair([70_001, 1], 18), pair([70_001, 3], 19), tr, id, 'K=70001 gemv scalar', 5e-3);
  });

  it('the staged kernel (software fallback; hardware whose workgroup memory cannot hold the split tiles): 8x8/16x16 workgroups, 4x4 and 8x8 per thread', async () => {
    try {
      for (const cfg of [{ wg: 8, bk: 16, tm: 8, tn: 8 }, { wg: 16, bk: 16, tm: 4, tn: 4 }, { wg: 16, bk: 32, tm: 8, tn: 4 }]) {
        setTiledMatmul(cfg);
        const tag = JSON.stringify(cfg);
        await check(pair([70, 52], 20), pair([52, 136], 21), id, id, `${tag} nn`);
        await check(pair([52, 68], 22), pair([36, 52], 23), tr, tr, `${tag} tt`);
        await check(pair([33, 17], 24), pair([17, 9], 25), id, id, `${tag} odd`);
        await check(pair([2, 3, 20, 12], 26), pair([12, 40], 27), id, id, `${tag} batched`);
      }
    } finally {
      setTiledMatmul(null);
    }
  });

  it('the split kernel (4×4 blocks spaced 4·wg apart, register staging, prefetch) is exact on every layout and edge', async () => {
    const T128_K4 = { ...SPLIT_128_T128, bk: 4 };
    try {
      // the hardware defaults (128x128 tiles, 16-deep K; 64x64; below, 8x16 threads) and the 32-deep K tiles on a tiling whose
      // workgroup memory fits llvmpipe's 32 KiB (the 128x128 one with 32-deep K tiles takes 33 KiB)
      for (const cfg of [
        SPLIT_128,
        SPLIT_64,
        { ...SPLIT_128_K32, wg: 8, tm: 4, tn: 4 },
        { wg: 8, bk: 16, tm: 8, tn: 4, split: true, prefetch: false },
        { wg: 8, bk: 4, tm: 4, tn: 8, split: true, prefetch: true },
        // double-buffered tiles (one barrier per K tile): every edge, K shorter than one tile, batched, sliced
        { wg: 8, bk: 8, tm: 8, tn: 4, split: true, prefetch: true, double: true },
        // the hardware tilings with more threads along M than along N (wgy): 8x8 outputs per thread (128x64 tiles), and
        // 8x16 (128x128 tiles) with 4-deep K tiles (its 16-deep default compiles ~3x slower on llvmpipe; it passed this
        // test on the H100: docs/benchmarks/2026-11-25-h100-matmul-ab-mm3-call1.json); every layout
        SPLIT_128X64,
        T128_K4,
      ]) {
        setTiledMatmul(cfg);
        const tag = JSON.stringify(cfg);
        // vec4 staging along K (A) / N (B), partial tiles on every edge, several K tiles
        await check(pair([140, 52], 20), pair([52, 136], 21), id, id, `${tag} nn`);
        // A contiguous along M (xᵀ·dy, the weight gradient), B contiguous along K (x·Wᵀ), both transposed
        await check(pair([52, 68], 22), pair([36, 52], 23), tr, tr, `${tag} tt`);
        if (cfg.wg === 16 || cfg.wgy !== undefined) {
          await check(pair([36, 68], 22), pair([36, 52], 23), tr, id, `${tag} tn`);
          await check(pair([68, 36], 22), pair([52, 36], 23), id, tr, `${tag} nt`);
        }
        // vec4 layouts only (fewer llvmpipe compiles): its scalar staging is the 128x64 tiling's (the same 8x16 threads)
        if (cfg === T128_K4) continue;
        // scalars (odd sizes), N not a multiple of 4 (scalar stores), K shorter than one tile
        await check(pair([33, 17], 24), pair([17, 9], 25), id, id, `${tag} odd`);
        if (cfg.wg === 8 && cfg.bk !== 32 && cfg.double !== true && cfg.wgy === undefined) continue; // the two small tilings: staging counts only (llvmpipe compile time)
        await check(pair([19, 3], 24), pair([3, 21], 25), id, id, `${tag} K=3`);
        // batched with a broadcast rhs, and an offset view (scalar staging)
        await check(pair([2, 3, 20, 12], 26), pair([12, 40], 27), id, id, `${tag} batched`);
        await check(pair([40, 60], 28), pair([34, 50], 29), (t) => t.slice(1, 3, 33), (t) => t.slice(0, 2, 32).slice(1, 5, 45), `${tag} sliced`);
      }
    } finally {
      setTiledMatmul(null);
    }
  });

  it('products of 1-4 rows (matrix-vector kernel): every layout, batched, broadcast, offset views', async () => {
    for (const m of [1, 2, 3, 4]) {
      await check(pair([m, 36], 30 + m), pair([36, 20], 40 + m), id, id, `m=${m} nn (vec4 along N)`);
      await check(pair([m, 36], 30 + m), pair([21, 36], 40 + m), id, tr, `m=${m} nt (vec4 along K)`);
      await check(pair([35, m], 30 + m), pair([21, 35], 40 + m), tr, tr, `m=${m} tt odd (scalars)`);
      await check(pair([3, 2, m, 12], 50 + m), pair([12, 8], 60 + m), id, id, `m=${m} batched, broadcast rhs`);
    }
    const a = pair([3, 40], 70);
    const b = pair([45, 50], 71);
    // offset 1 and row stride 40: not 4-aligned along N, so scalars
    await check(a, b, (t) => t.slice(1, 1, 33), (t) => t.slice(0, 1, 33).slice(1, 4, 44), 'sliced');
  });

  it('matrix-vector products with K split across the workgroup: many column groups, K not a multiple of the slices', async () => {
    await check(pair([1, 203], 80), pair([203, 777], 81), id, id, 'm=1 K=203 N=777 (scalars)', 5e-4);
    await check(pair([2, 201], 82), pair([201, 1536], 83), id, id, 'm=2 K=201 N=1536 (vec4 along N)', 5e-4);
    await check(pair([3, 204], 84), pair([1100, 204], 85), id, tr, 'm=3 K=204 N=1100 (vec4 along K)', 5e-4);
    await check(pair([4, 5], 86), pair([5, 40], 87), id, id, 'm=4 K=5: fewer K steps than slices', 5e-4);
  });

  it('both operands contiguous along K (q·kᵀ, x·Wᵀ): 4×4 dot-product blocks on software adapters, odd edges, batched, K passes', async () => {
    for (const [m, k, n] of [[5, 16, 7], [12, 64, 33], [37, 44, 30], [64, 8, 64]] as const) {
      await check(pair([m, k], 120 + m), pair([n, k], 130 + n), id, tr, `${m}x${k}x${n} nt`);
    }
    await check(pair([2, 3, 17, 16], 140), pair([2, 3, 19, 16], 141), id, tr, 'batched q·kᵀ');
    await check(pair([3, 1, 9, 8], 142), pair([4, 11, 8], 143), id, tr, 'broadcast batch');
    await check(pair([9, 70_000], 144), pair([5, 70_000], 145), id, tr, 'K=70000 in passes', 5e-3);
    // the kernel that ran these (its pipelines may have been built by an earlier case of this file)
    if (gpu.info.software) expect(gpu.pipelineStats().byKernel['matmul_k4x4']?.created).toBeGreaterThan(0);
  });

  it('decode-step attention shapes (q·kᵀ and p·v with kv length S = 9..16) reuse one pipeline each', async () => {
    const [B, H, hd] = [2, 3, 8];
    const before = new Map<number, number>();
    for (let S = 9; S <= 16; S++) {
      const q = pair([B, H, 1, hd], 80 + S);
      const k = pair([B, H, S, hd], 90 + S);
      const v = pair([B, H, S, hd], 100 + S);
      const p = pair([B, H, 1, S], 110 + S);
      const created0 = gpu.pipelineStats().pipelinesCreated;
      await check(q, k, id, tr, `q·kᵀ S=${S}`);
      await check(p, v, id, id, `p·v S=${S}`);
      before.set(S, gpu.pipelineStats().pipelinesCreated - created0);
    }
    // the first length may compile; the next seven (S % 4 takes every value) compile nothing
    expect([...before].filter(([S]) => S > 9).map(([S, n]) => `S=${S}: ${n}`)).toEqual([10, 11, 12, 13, 14, 15, 16].map((S) => `S=${S}: 0`));
    expect(gpu.pipelineStats().byKernel['matmul_gemv']?.created).toBeGreaterThan(0);
  });

  it('gradients match the float64 reference', async () => {
    const ag = T.randn([5, 7, 9], { seed: 16, device: gpu, requiresGrad: true });
    const bg = T.randn([9, 6], { seed: 17, device: gpu, requiresGrad: true });
    const ac = T.randn([5, 7, 9], { seed: 16, device: cpu, dtype: 'float32' }).cast('float64').detach().requiresGrad_();
    const bc = T.randn([9, 6], { seed: 17, device: cpu, dtype: 'float32' }).cast('float64').detach().requiresGrad_();
    const w = T.randn([5, 7, 6], { seed: 18, device: cpu, dtype: 'float32' });
    T.matmul(ag, bg).mul(T.randn([5, 7, 6], { seed: 18, device: gpu })).sum().backward();
    T.matmul(ac, bc).mul(w.cast('float64')).sum().backward();
    expectClose(await ag.grad!.toArray(), await ac.grad!.toArray(), 2e-4, 1e-4, 'dA');
    expectClose(await bg.grad!.toArray(), await bc.grad!.toArray(), 2e-4, 1e-4, 'dB');
  });
});
