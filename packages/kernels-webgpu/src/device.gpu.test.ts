import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { run } from './internal.js';
import { gpuDevice } from '../../../test-utils/index.js';

let gpu: T.WebGPUDevice;
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

describe('WebGPU device', () => {
  it('says which adapter runs the work', () => {
    expect(gpu.info.backend).toBe('webgpu');
    expect(gpu.info.adapter.length).toBeGreaterThan(3);
    expect(['vulkan', 'opengl', 'browser', 'metal', 'd3d12']).toContain(gpu.info.api);
  });

  it('reports current and peak bytes, and releases on dispose', async () => {
    gpu.resetPeakMemory();
    const before = gpu.memoryStats();
    const a = T.empty([1 << 16], 'float32', gpu);
    const mid = gpu.memoryStats();
    expect(mid.currentBytes - before.currentBytes).toBeGreaterThanOrEqual(4 << 16);
    a.dispose();
    const after = gpu.memoryStats();
    expect(after.currentBytes).toBe(before.currentBytes);
    expect(after.peakBytes).toBeGreaterThanOrEqual(mid.currentBytes);
    expect(after.pooledBytes).toBeGreaterThanOrEqual(4 << 16);
    // the pooled buffer is reused
    const b = T.empty([1 << 16], 'float32', gpu);
    expect(gpu.memoryStats().pooledBytes).toBe(after.pooledBytes - b.storage.bytes);
    b.dispose();
  });

  it('fails with LIMIT_EXCEEDED naming the limit for a tensor above maxStorageBufferBindingSize', () => {
    const n = Math.floor(gpu.limits.maxStorageBufferBindingSize / 4) + 16;
    expect(() => T.empty([n], 'float32', gpu)).toThrowError(/LIMIT_EXCEEDED.*maxStorageBufferBindingSize/);
  });

  it('rejects float64 and (without shader-f16) float16 with DTYPE_UNSUPPORTED', () => {
    expect(() => T.zeros([2], { dtype: 'float64', device: gpu })).toThrowError(/DTYPE_UNSUPPORTED.*float64/);
    if (!gpu.hasFeature('shader-f16')) expect(() => T.zeros([2], { dtype: 'float16', device: gpu })).toThrowError(/shader-f16/);
  });

  it('surfaces a shader error as KERNEL_COMPILE naming the kernel', async () => {
    const x = T.zeros([4], { device: gpu });
    run(
      {
        name: 'deliberately_broken',
        key: 'broken',
        bindings: [{ name: 'x', dtype: 'float32', access: 'read_write' }],
        uniforms: [],
        workgroupSize: [4],
        body: '  store_x(lidx, undefined_symbol);',
      },
      [x],
      {},
      [1, 1, 1],
    );
    const err = await x.toArray().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(T.WebattnError);
    expect((err as T.WebattnError).code).toBe('KERNEL_COMPILE');
    expect((err as Error).message).toMatch(/kernel "deliberately_broken"/);
    // the device stays usable
    expect(Array.from(await T.add(T.ones([2], { device: gpu }), 1).toArray())).toEqual([2, 2]);
  });

  it('mismatched devices raise DEVICE_MISMATCH', () => {
    expect(() => T.add(T.ones([2], { device: gpu }), T.ones([2], { device: T.cpu() }))).toThrowError(/DEVICE_MISMATCH/);
  });

  it('a lost device rejects pending work with DEVICE_LOST and getDevice() recovers', async () => {
    const dev = (await T.getDevice({ kind: 'webgpu', cache: true })) as T.WebGPUDevice;
    const x = T.randn([64], { seed: 3, device: dev });
    const pending = T.exp(x).toArray();
    dev.gpu.destroy();
    await expect(pending).rejects.toThrowError(/DEVICE_LOST/);
    await new Promise((r) => setTimeout(r, 50));
    expect(dev.lost).toBe(true);
    expect(() => T.exp(x)).toThrowError(/DEVICE_LOST/);
    const fresh = await T.getDevice({ kind: 'webgpu' });
    expect(fresh).not.toBe(dev);
    expect(fresh.lost).toBe(false);
    const y = T.randn([64], { seed: 3, device: fresh });
    const ref = T.exp(T.randn([64], { seed: 3, device: T.cpu() }));
    const got = await T.exp(y).toArray();
    const want = await ref.toArray();
    got.forEach((v, i) => expect(Math.abs(v - want[i]!)).toBeLessThan(1e-5));
    fresh.destroy();
  });
});

describe('process lifetime', () => {
  it('node -e with core-tensor: get a device, compute, destroy → exits by itself', () => {
    const root = fileURLToPath(new URL('../../../', import.meta.url));
    const script = `
      const T = await import('@webattn/core-tensor');
      await import('@webattn/kernels-webgpu');
      const d = await T.getDevice({ kind: 'webgpu' });
      const y = T.matmul(T.randn([5, 7], { seed: 1, device: d }), T.randn([7, 3], { seed: 2, device: d }));
      console.log('sum', (await T.sum(y).toArray())[0], d.info.adapter);
      d.destroy();`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, timeout: 60_000, encoding: 'utf8' });
    expect(r.error, String(r.error)).toBeUndefined();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^sum -?\d/m);
  });
});
