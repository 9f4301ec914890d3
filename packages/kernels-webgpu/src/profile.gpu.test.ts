import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { WebattnError } from '@webattn/core-tensor';
import { formatProfile, profile, type WebGPUDevice } from './index.js';
import { expectClose, gpuDevice, skipWithoutSwiftShader } from '../../../test-utils/index.js';

let gpu: WebGPUDevice;
const cpu = T.cpu();
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(WebattnError);
    return (e as WebattnError).code;
  }
  return 'no error';
}

/** Work whose kernels and dispatch counts are known: 3 products and 3 additions. */
async function work(device: T.Device) {
  const a = T.randn([48, 40], { seed: 1, device });
  const b = T.randn([40, 40], { seed: 2, device });
  let c = a;
  for (let i = 0; i < 3; i++) c = T.add(T.matmul(c, b), 0.5);
  return c.toArray();
}

describe('profile(): per-kernel GPU time and host counters', () => {
  it('times every dispatch by kernel name and returns the result unchanged', async () => {
    await work(gpu); // compile outside the window
    const p = await profile(gpu, () => work(gpu));
    expectClose(p.result, await work(cpu), 1e-3, 1e-4, 'result');
    const byName = new Map(p.kernels.map((k) => [k.name, k]));
    expect(byName.get('binary_add')?.count).toBe(3);
    const products = p.kernels.filter((k) => k.name.startsWith('matmul')).reduce((n, k) => n + k.count, 0);
    expect(products).toBe(3);
    expect(p.kernels.reduce((n, k) => n + k.count, 0)).toBe(p.counters.dispatches);
    for (const k of p.kernels) {
      expect(k.gpuMs).toBeGreaterThan(0);
      expect(k.meanUs).toBeCloseTo((k.gpuMs * 1000) / k.count, 6);
    }
    expect(p.kernels.reduce((s, k) => s + k.share, 0)).toBeCloseTo(1, 6);
    expect(p.gpuMs).toBeCloseTo(
      p.kernels.reduce((s, k) => s + k.gpuMs, 0),
      6,
    );
    expect([...p.kernels].sort((x, y) => y.gpuMs - x.gpuMs)).toEqual(p.kernels);
    expect(p.timing).toBe(gpu.caps.timestampQuery ? 'timestamp-query' : 'serialized');
    // the window's counters: one readback; the inputs are uploaded, nothing compiles
    expect(p.counters.readbacks).toBe(1);
    expect(p.counters.pipelinesCompiled).toBe(0);
    expect(p.counters.uploads).toBeGreaterThanOrEqual(2);
    expect(p.counters.poolHits + p.counters.buffersCreated).toBeGreaterThanOrEqual(6);
    const table = formatProfile(p, 1);
    expect(table.split('\n')[1]).toContain(p.kernels[0]!.name);
    expect(table).toContain(`dispatches ${p.counters.dispatches}`);
    expect(gpu.profiling).toBe(false);
  });

  it('serialized timing on any adapter gives the same kernel counts', async () => {
    const p = await profile(gpu, () => work(gpu), { timing: 'serialized' });
    expect(p.timing).toBe('serialized');
    expect(p.kernels.find((k) => k.name === 'binary_add')?.count).toBe(3);
    expect(p.counters.submits).toBeGreaterThanOrEqual(6); // one submission per dispatch
  });

  it('GPU timestamps on an adapter with timestamp-query (SwiftShader)', async (ctx) => {
    skipWithoutSwiftShader(ctx);
    const ss = (await T.getDevice({
      kind: 'webgpu',
      webgpuBackend: 'swiftshader',
      cache: false,
    })) as WebGPUDevice;
    try {
      expect(ss.caps.timestampQuery).toBe(true);
      await work(ss);
      const p = await profile(ss, () => work(ss));
      expect(p.timing).toBe('timestamp-query');
      expect(p.kernels.find((k) => k.name === 'binary_add')?.count).toBe(3);
      expect(p.gpuMs).toBeGreaterThan(0);
      expect(p.counters.submits).toBeLessThan(p.counters.dispatches); // batched, not serialized
      expectClose(p.result, await work(cpu), 1e-3, 1e-4, 'result');
    } finally {
      ss.destroy();
    }
  });

  it('a failing fn ends the profile and rethrows; bad arguments are coded errors', async () => {
    const boom = new Error('boom');
    await expect(profile(gpu, () => Promise.reject(boom))).rejects.toBe(boom);
    expect(gpu.profiling).toBe(false);
    expect(await codeOf(profile(cpu, () => 1))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(profile(gpu, 'fn' as unknown as () => number))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(profile(gpu, () => 1, { timing: 'fast' as 'auto' }))).toBe('INVALID_ARGUMENT');
    await gpu.startProfile();
    try {
      expect(await codeOf(gpu.startProfile())).toBe('INVALID_ARGUMENT');
    } finally {
      await gpu.stopProfile();
    }
    expect(await codeOf(gpu.stopProfile())).toBe('INVALID_ARGUMENT');
    if (!gpu.caps.timestampQuery) expect(await codeOf(gpu.startProfile({ timing: 'timestamp-query' }))).toBe('INVALID_ARGUMENT');
  });
});

describe('host counters', () => {
  it('a repeated step creates no buffers: freed ones come back from the pool', async () => {
    const step = () => T.tidy(() => T.sum(T.mul(T.randn([64, 64], { seed: 3, device: gpu }), 2)));
    await step().toArray();
    const c0 = gpu.counters();
    await step().toArray();
    const c1 = gpu.counters();
    expect(c1.buffersCreated - c0.buffersCreated).toBe(0);
    expect(c1.poolHits - c0.poolHits).toBeGreaterThanOrEqual(3);
    expect(c1.readbacks - c0.readbacks).toBe(1);
    expect(c1.readbackWaitMs).toBeGreaterThanOrEqual(c0.readbackWaitMs);
    await gpu.sync();
    expect(gpu.counters().syncs).toBe(c1.syncs + 1);
  });

  it('the automatic pool budget follows the live high-water mark (a step larger than 256 MiB reuses its buffers)', async () => {
    const mib = 2 ** 20;
    const d = (await T.getDevice({
      kind: 'webgpu',
      cache: false,
    })) as WebGPUDevice;
    try {
      const big = () => [0, 1, 2].map(() => T.zeros([25 * mib], { device: d })); // 3 × 100 MiB
      let ts = big();
      expect(d.poolBudgetBytes).toBeGreaterThanOrEqual(600 * mib);
      for (const t of ts) t.dispose();
      expect(d.memoryStats().pooledBytes).toBeGreaterThanOrEqual(300 * mib);
      const c0 = d.counters();
      ts = big();
      expect(d.counters().buffersCreated - c0.buffersCreated).toBe(0);
      expect(d.counters().poolHits - c0.poolHits).toBe(3);
      expect(Array.from((await ts[1]!.slice(0, 0, 4).toArray()) as Float32Array)).toEqual([0, 0, 0, 0]);
      for (const t of ts) t.dispose();
      d.setPoolBudget(64 * mib); // an explicit budget wins
      expect(d.poolBudgetBytes).toBe(64 * mib);
      expect(d.memoryStats().pooledBytes).toBeLessThanOrEqual(64 * mib);
    } finally {
      d.destroy();
    }
  });
});
