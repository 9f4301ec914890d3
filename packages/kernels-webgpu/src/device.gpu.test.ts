import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { WebGPUDevice } from './index.js';
import { run, type ProgramSpec } from './internal.js';
import { expectClose, gpuDevice } from '../../../test-utils/index.js';

let gpu: WebGPUDevice;
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

describe('WebGPU device', () => {
  it('says which adapter runs the work, why, and its tier and capabilities', () => {
    expect(gpu.info.backend).toBe('webgpu');
    expect(gpu.info.adapter.length).toBeGreaterThan(3);
    expect(['vulkan', 'opengl', 'browser', 'metal', 'd3d12']).toContain(gpu.info.api);
    expect(gpu.info.reason).toMatch(/kind 'webgpu'.*(software|hardware) adapter via Dawn/);
    const caps = gpu.caps;
    expect(caps.f16).toBe(gpu.info.features.includes('shader-f16'));
    expect(caps.subgroups).toBe(gpu.info.features.includes('subgroups'));
    expect(gpu.info.tier).toBe(caps.subgroupMatrix.length ? 'subgroup-matrix' : caps.subgroups ? 'subgroups' : 'workgroup');
    // the device asked for the adapter's own limits, not the defaults (16 KiB workgroup storage, 256 invocations)
    expect(caps.maxWorkgroupStorage).toBe(gpu.limits.maxComputeWorkgroupStorageSize);
    expect(caps.maxWorkgroupStorage).toBeGreaterThanOrEqual(16384);
    if (/llvmpipe/i.test(gpu.info.adapter)) {
      expect(gpu.info.tier).toBe('workgroup');
      expect(caps.maxLoopIterations).toBe(65535);
      expect(caps.maxWorkgroupStorage).toBe(32768);
    }
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

  const broken = (name: string): ProgramSpec => ({
    name,
    key: 'broken',
    bindings: [{ name: 'x', dtype: 'float32', access: 'read_write' }],
    uniforms: [],
    workgroupSize: [4],
    body: '  store_x(lidx, undefined_symbol);',
  });

  it('fifty concurrent calls with one failing kernel: only the failing call rejects, the others are right', async () => {
    const calls = Array.from({ length: 50 }, (_, i) => {
      const x = T.randn([33], { seed: 100 + i, device: gpu });
      if (i !== 25) return T.exp(T.mul(x, 0.5));
      const y = T.empty([33], 'float32', gpu);
      run(broken('failing_kernel_25'), [y], {}, [1, 1, 1]);
      return y;
    });
    const derived = T.add(calls[25]!, 1); // computed from the failed output: rejects too
    const healthy = T.add(calls[24]!, 1); // recorded after the failure, from a healthy output
    const settled = await Promise.allSettled(calls.map((t) => t.toArray()));
    for (let i = 0; i < 50; i++) {
      const r = settled[i]!;
      if (i === 25) {
        expect(r.status).toBe('rejected');
        const e = (r as PromiseRejectedResult).reason as T.WebattnError;
        expect(e).toBeInstanceOf(T.WebattnError);
        expect(e.code).toBe('KERNEL_COMPILE');
        expect(e.message).toMatch(/kernel "failing_kernel_25": failed to build: .*undefined_symbol/);
        continue;
      }
      expect(r.status, `call ${i}`).toBe('fulfilled');
      const want = await T.exp(T.mul(T.randn([33], { seed: 100 + i }), 0.5)).toArray();
      expectClose((r as PromiseFulfilledResult<T.TypedArray>).value, want, 1e-6, 1e-5, `call ${i}`);
    }
    await expect(derived.toArray()).rejects.toThrowError(/failing_kernel_25/);
    const h = await healthy.toArray();
    const want24 = await T.add(T.exp(T.mul(T.randn([33], { seed: 124 }), 0.5)), 1).toArray();
    expectClose(h, want24, 1e-6, 1e-5, 'healthy after failure');
    await expect(gpu.sync()).resolves.toBeUndefined(); // already reported by the read: not raised again
  });

  it('a dispatch that fails validation inside a batch rejects only its own output (KERNEL_FAILED naming the kernel)', async () => {
    const alias: ProgramSpec = {
      name: 'aliased_kernel',
      key: 'alias',
      bindings: [
        { name: 'x', dtype: 'float32', access: 'read' },
        { name: 'y', dtype: 'float32', access: 'read_write' },
      ],
      uniforms: [],
      workgroupSize: [4],
      body: '  store_y(lidx, load_x(lidx) + 1.0);',
    };
    const outs = Array.from({ length: 10 }, (_, i) => {
      const x = T.randn([4], { seed: 300 + i, device: gpu });
      if (i !== 5) return T.mul(x, 3);
      run(alias, [x, x], {}, [1, 1, 1]); // the same buffer bound read-only and writable: invalid
      return x;
    });
    const later = T.mul(outs[6]!, 2);
    const settled = await Promise.allSettled(outs.map((t) => t.toArray()));
    await expectOnlyOneFailed(settled, 5, 'aliased_kernel', 300);
    const want6 = await T.mul(T.randn([4], { seed: 306 }), 6).toArray();
    expectClose(await later.toArray(), want6, 1e-6, 1e-6, 'after the failed batch');
  });

  it('a pipeline that failed to build is not cached: the next call builds again and fails at its own call', async () => {
    const before = gpu.pipelineCount;
    const a = T.empty([4], 'float32', gpu);
    run(broken('broken_twice'), [a], {}, [1, 1, 1]);
    await expect(a.toArray()).rejects.toThrowError(/KERNEL_COMPILE.*broken_twice/);
    expect(gpu.pipelineCount).toBe(before);
    const ok = T.exp(T.ones([3], { device: gpu }));
    const b = T.empty([4], 'float32', gpu);
    run(broken('broken_twice'), [b], {}, [1, 1, 1]);
    expectClose(await ok.toArray(), [Math.E, Math.E, Math.E], 1e-6, 1e-6, 'healthy read');
    await expect(b.toArray()).rejects.toThrowError(/KERNEL_COMPILE.*broken_twice/);
    expect(gpu.pipelineCount).toBe(before);
    // an error never read surfaces at the next sync(), once
    const c = T.empty([4], 'float32', gpu);
    run(broken('never_read'), [c], {}, [1, 1, 1]);
    await expect(gpu.sync()).rejects.toThrowError(/never_read/);
    await expect(gpu.sync()).resolves.toBeUndefined();
  });

  it('pipelineStats: a new program key compiles once (counted per kernel, with its compile time); the same key at other sizes compiles nothing', async () => {
    const spec = (name: string, scale: number): ProgramSpec => ({
      name,
      key: `scale${scale}`,
      bindings: [
        { name: 'x', dtype: 'float32', access: 'read' },
        { name: 'y', dtype: 'float32', access: 'read_write' },
      ],
      uniforms: [['n', 'u32']],
      workgroupSize: [64],
      body: `  let i = flat_wg * WG_SIZE + lidx;\n  if (i < u_n()) { store_y(i, load_x(i) * ${scale}.0); }`,
    });
    const s0 = gpu.pipelineStats();
    const results: number[][] = [];
    for (const n of [5, 70, 133]) {
      const x = T.randn([n], { seed: n, device: gpu });
      const y = T.empty([n], 'float32', gpu);
      run(spec('stats_probe', 3), [x, y], { n }, [Math.ceil(n / 64), 1, 1]);
      const got = Array.from(await y.toArray());
      expect(got).toEqual(Array.from(await x.toArray(), (v) => Math.fround(v * 3)));
      results.push(got);
    }
    const s1 = gpu.pipelineStats();
    // three sizes, one program key: one pipeline
    expect(s1.pipelinesCreated - s0.pipelinesCreated).toBe(1);
    expect(s1.byKernel['stats_probe']).toEqual({ created: 1, compileMs: expect.any(Number) });
    expect(s1.byKernel['stats_probe']!.compileMs).toBeGreaterThan(0);
    expect(s1.compileMs).toBeGreaterThan(s0.compileMs);
    expect(s1.pending).toBe(0);
    expect(s1.cached).toBe(gpu.pipelineCount);
    // a different key of the same kernel name compiles a second one
    const x = T.randn([8], { seed: 1, device: gpu });
    const y = T.empty([8], 'float32', gpu);
    run(spec('stats_probe', 5), [x, y], { n: 8 }, [1, 1, 1]);
    await y.toArray();
    const s2 = gpu.pipelineStats();
    expect(s2.byKernel['stats_probe']!.created).toBe(2);
    expect(s2.pipelinesCreated - s1.pipelinesCreated).toBe(1);
    // every creation is attributed to a kernel name
    expect(Object.values(s2.byKernel).reduce((a, k) => a + k.created, 0)).toBe(s2.pipelinesCreated);
    // a snapshot: later work does not change it
    expect(s1.byKernel['stats_probe']!.created).toBe(1);
  });

  it('pipelineStats counts a failed build each time it is retried, and the failure is not cached', async () => {
    const s0 = gpu.pipelineStats();
    for (let i = 0; i < 2; i++) {
      const a = T.empty([4], 'float32', gpu);
      run(broken('broken_counted'), [a], {}, [1, 1, 1]);
      await expect(a.toArray()).rejects.toThrowError(/KERNEL_COMPILE.*broken_counted/);
    }
    const s1 = gpu.pipelineStats();
    expect(s1.byKernel['broken_counted']?.created).toBe(2);
    expect(s1.cached).toBe(s0.cached);
    expect(s1.pending).toBe(0);
  });

  it('batches dispatches: a chain of 200 kernels is one or two submissions (no eager chunks), and counts every dispatch', async () => {
    const saved = gpu.flushBatch;
    try {
      for (const fb of [0, 50]) {
        gpu.flushBatch = fb;
        const x0 = T.randn([64], { seed: 9, device: gpu });
        await x0.toArray();
        const [d0, s0] = [gpu.dispatchCount, gpu.submitCount];
        let x = x0;
        for (let i = 0; i < 200; i++) x = T.add(x, 0.01);
        const got = await x.toArray();
        expect(gpu.dispatchCount - d0).toBe(200);
        // flushBatch 0: everything at the microtask; 50: at most one submission per chunk of 50 and the tail
        expect(gpu.submitCount - s0).toBeLessThanOrEqual(fb ? 200 / fb + 2 : 2);
        const want = await T.randn([64], { seed: 9 }).toArray();
        expectClose(got, Array.from(want, (v) => v + 2), 1e-4, 1e-5, `chain, flushBatch ${fb}`);
      }
    } finally {
      gpu.flushBatch = saved;
    }
  });

  it('eager chunks (flushBatch): 300 dispatches in one synchronous loop are submitted in chunks as recorded, in order, with the right result', async () => {
    const saved = gpu.flushBatch;
    try {
      gpu.flushBatch = 16;
      const x0 = T.randn([257], { seed: 19, device: gpu });
      const step = (x: T.Tensor) => T.tidy(() => T.add(T.mul(x, 0.5), 0.25)); // x -> x/2 + 1/4
      // 150 steps (300 dispatches) in one synchronous loop; the 5th result is kept, the others freed as they go
      const loop = () => {
        let y = x0;
        let fifth: T.Tensor | null = null;
        for (let i = 0; i < 150; i++) {
          const z = step(y);
          if (y !== x0 && i !== 5) y.dispose();
          if (i === 4) fifth = z;
          y = z;
        }
        return { y, fifth: fifth! };
      };
      const warm = loop(); // pipelines built, buffers pooled, bind groups cached
      await warm.y.toArray();
      warm.y.dispose();
      warm.fifth.dispose();
      const e0 = gpu.eagerSubmitCount;
      const { y, fifth } = loop();
      const chunksWhileRecording = gpu.eagerSubmitCount - e0;
      const got = await y.toArray();
      const mid = await fifth.toArray();
      const want = Array.from(await x0.toArray(), (v) => {
        let r = v;
        for (let i = 0; i < 150; i++) r = r * 0.5 + 0.25;
        return r;
      });
      const want5 = Array.from(await x0.toArray(), (v) => (((((v * 0.5 + 0.25) * 0.5 + 0.25) * 0.5 + 0.25) * 0.5 + 0.25) * 0.5 + 0.25));
      expectClose(got, want, 1e-6, 1e-5, 'after 300 dispatches');
      expectClose(mid, want5, 1e-6, 1e-5, 'after 10 dispatches');
      // the loop itself submitted chunks (the GPU started before the loop ended), not one batch at the end
      expect(chunksWhileRecording).toBeGreaterThanOrEqual(2);
      expect(() => (gpu.flushBatch = -1)).toThrowError(/flushBatch: expected a non-negative integer/);
      expect(() => (gpu.flushBatch = '8x' as unknown as number)).toThrowError(/INVALID_ARGUMENT/);
    } finally {
      gpu.flushBatch = saved;
    }
  });

  it('eager chunks: a failing kernel in the middle of chunked work rejects only its own output and what derives from it', async () => {
    const saved = gpu.flushBatch;
    try {
      gpu.flushBatch = 4;
      const mk = (i: number) => T.randn([33], { seed: 500 + i, device: gpu });
      // warm the pipelines (exp, mul, add) so the healthy chunks can go eagerly
      await T.add(T.exp(T.mul(mk(0), 0.5)), 1).toArray();
      const calls = Array.from({ length: 40 }, (_, i) => {
        const x = mk(i);
        if (i !== 21) return T.exp(T.mul(x, 0.5));
        const y = T.empty([33], 'float32', gpu);
        run(broken('failing_kernel_chunked'), [y], {}, [1, 1, 1]);
        return y;
      });
      const derived = T.add(calls[21]!, 1);
      const healthy = T.add(calls[22]!, 1);
      const settled = await Promise.allSettled(calls.map((t) => t.toArray()));
      for (let i = 0; i < 40; i++) {
        const r = settled[i]!;
        if (i === 21) {
          expect(r.status).toBe('rejected');
          expect(String((r as PromiseRejectedResult).reason)).toMatch(/KERNEL_COMPILE.*failing_kernel_chunked/);
          continue;
        }
        expect(r.status, `call ${i}`).toBe('fulfilled');
        const want = await T.exp(T.mul(T.randn([33], { seed: 500 + i }), 0.5)).toArray();
        expectClose((r as PromiseFulfilledResult<T.TypedArray>).value, want, 1e-6, 1e-5, `call ${i}`);
      }
      await expect(derived.toArray()).rejects.toThrowError(/failing_kernel_chunked/);
      const want22 = await T.add(T.exp(T.mul(T.randn([33], { seed: 522 }), 0.5)), 1).toArray();
      expectClose(await healthy.toArray(), want22, 1e-6, 1e-5, 'healthy after the failure');
      await expect(gpu.sync()).resolves.toBeUndefined();
    } finally {
      gpu.flushBatch = saved;
    }
  });

  it('eager chunks: a dispatch that fails validation (a buffer bound twice, one writable) amid eagerly submitted chunks rejects only its own output', async () => {
    const saved = gpu.flushBatch;
    const alias: ProgramSpec = {
      name: 'aliased_kernel_chunked',
      key: 'alias-chunked',
      bindings: [
        { name: 'x', dtype: 'float32', access: 'read' },
        { name: 'y', dtype: 'float32', access: 'read_write' },
      ],
      uniforms: [],
      workgroupSize: [4],
      body: '  store_y(lidx, load_x(lidx) + 1.0);',
    };
    try {
      gpu.flushBatch = 2;
      // warm: the mul pipeline, the alias pipeline (it builds; only its aliased dispatch is invalid) and the pool
      const w = T.randn([4], { seed: 1, device: gpu });
      run(alias, [w, w], {}, [1, 1, 1]);
      await expect(w.toArray()).rejects.toThrowError(/aliased_kernel_chunked/);
      for (let r = 0; r < 2; r++) await T.mul(T.randn([4], { seed: 2, device: gpu }), 3).toArray();
      const e0 = gpu.eagerSubmitCount;
      const outs = Array.from({ length: 24 }, (_, i) => {
        const x = T.randn([4], { seed: 700 + i, device: gpu });
        if (i !== 13) return T.mul(x, 3);
        run(alias, [x, x], {}, [1, 1, 1]);
        return x;
      });
      const later = T.mul(outs[14]!, 2);
      const settled = await Promise.allSettled(outs.map((t) => t.toArray()));
      expect(gpu.eagerSubmitCount - e0).toBeGreaterThanOrEqual(1);
      await expectOnlyOneFailed(settled, 13, 'aliased_kernel_chunked', 700);
      const want14 = await T.mul(T.randn([4], { seed: 714 }), 6).toArray();
      expectClose(await later.toArray(), want14, 1e-6, 1e-6, 'after the failed dispatch');
    } finally {
      gpu.flushBatch = saved;
    }
  });

  it('uploads stay in order with recorded work when a freed buffer is reused at once', async () => {
    const a = T.tensor([1, 2, 3, 4, 5, 6, 7, 8], [8], { device: gpu });
    await a.toArray();
    const aBuffer = a.storage.handle;
    const b = T.mul(a, 2); // recorded, not yet submitted
    a.dispose(); // a's buffer goes back to the pool while b's dispatch still reads it
    expect(gpu.poisonAllocations).toBe(true);
    // a kernel output takes a's buffer from the pool at once, and its poison (NaN) fill must wait for b's dispatch
    const poisoned = T.empty([8], 'float32', gpu);
    expect(poisoned.storage.handle).toBe(aBuffer);
    const c = T.tensor([-1, -1, -1, -1, -1, -1, -1, -1], [8], { device: gpu });
    expect(Array.from(await b.toArray())).toEqual([2, 4, 6, 8, 10, 12, 14, 16]);
    expect(Array.from(await c.toArray())).toEqual([-1, -1, -1, -1, -1, -1, -1, -1]);
  });

  it('the buffer pool trims under its budget; emptyCache empties it', async () => {
    gpu.emptyCache();
    expect(gpu.memoryStats().pooledBytes).toBe(0);
    const ts = Array.from({ length: 8 }, () => T.empty([1 << 16], 'float32', gpu)); // 256 KiB each
    const each = ts[0]!.storage.bytes;
    gpu.setPoolBudget(3 * each);
    ts.forEach((t) => t.dispose());
    expect(gpu.memoryStats().pooledBytes).toBe(3 * each);
    gpu.setPoolBudget(each);
    expect(gpu.memoryStats().pooledBytes).toBe(each);
    gpu.emptyCache();
    expect(gpu.memoryStats().pooledBytes).toBe(0);
    // a full pool of stale size classes gives way to a buffer just freed, so the next allocation of its size reuses it
    const stale = Array.from({ length: 3 }, () => T.empty([1 << 16], 'float32', gpu));
    gpu.setPoolBudget(3 * each);
    stale.forEach((t) => t.dispose());
    expect(gpu.memoryStats().pooledBytes).toBe(3 * each);
    const big = T.empty([1 << 17], 'float32', gpu); // 512 KiB: another size class
    const handle = big.storage.handle;
    big.dispose();
    expect(gpu.memoryStats().pooledBytes).toBeLessThanOrEqual(3 * each);
    expect(T.empty([1 << 17], 'float32', gpu).storage.handle).toBe(handle);
    gpu.emptyCache();
    expect(() => gpu.setPoolBudget(-1)).toThrowError(/INVALID_ARGUMENT.*bytes/);
    expect(() => gpu.setPoolBudget('1e6' as unknown as number)).toThrowError(/INVALID_ARGUMENT.*bytes/);
    gpu.setPoolBudget(256 * 2 ** 20);
  });

  it('mismatched devices raise DEVICE_MISMATCH', () => {
    expect(() => T.add(T.ones([2], { device: gpu }), T.ones([2], { device: T.cpu() }))).toThrowError(/DEVICE_MISMATCH/);
  });

  it('a lost device rejects pending work with DEVICE_LOST and getDevice() recovers', async () => {
    const dev = (await T.getDevice({ kind: 'webgpu', cache: true })) as WebGPUDevice;
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

describe('default device lifetime', () => {
  it('getDevice() returns the live default until it is destroyed, then one new default for every caller', async () => {
    const a = await T.getDevice({ kind: 'webgpu' });
    expect(await T.getDevice({ kind: 'webgpu' })).toBe(a);
    a.destroy();
    const next = await Promise.all(Array.from({ length: 50 }, () => T.getDevice({ kind: 'webgpu' })));
    expect(new Set(next).size).toBe(1);
    expect(next[0]).not.toBe(a);
    const y = T.add(T.ones([2], { device: next[0] }), T.ones([2], { device: await T.getDevice({ kind: 'webgpu' }) }));
    expect(Array.from(await y.toArray())).toEqual([2, 2]);
    next[0]!.destroy();
  });

  it('bad WebGPU options are INVALID_ARGUMENT naming the option; auto says why it chose the device', async () => {
    await expect(T.getDevice({ kind: 'webgpu', webgpuBackend: 'metal' as never, cache: false })).rejects.toThrowError(/INVALID_ARGUMENT.*webgpuBackend.*"metal"/);
    await expect(T.getDevice({ kind: 'webgpu', dawnUnsafe: 'no' as never, cache: false })).rejects.toThrowError(/INVALID_ARGUMENT.*dawnUnsafe/);
    const d = await T.getDevice({ cache: false, warn: false });
    expect(d.backend).toBe('webgpu');
    // no hardware GPU on CI: auto explains that it fell to a software adapter
    if (d.info.software) expect(d.info.reason).toMatch(/^auto: webgpu \(software\).*webgpu \(hardware\):/);
    else expect(d.info.reason).toMatch(/^auto: webgpu \(hardware\)/);
    d.destroy();
  });

  it('50 create/compute/destroy cycles keep the process RSS bounded', () => {
    const root = fileURLToPath(new URL('../../../', import.meta.url));
    const script = `
      const T = await import('@webattn/core-tensor');
      await import('@webattn/kernels-webgpu');
      const rss = () => process.memoryUsage().rss / 2 ** 20;
      const at = {};
      for (let i = 1; i <= 50; i++) {
        const d = await T.getDevice({ kind: 'webgpu', cache: false });
        const y = T.exp(T.randn([4096], { seed: i, device: d }));
        await y.toArray();
        d.destroy();
        globalThis.gc();
        await new Promise((r) => setTimeout(r, 5));
        if (i === 1 || i === 10 || i === 50) at[i] = Math.round(rss());
      }
      console.log(JSON.stringify(at));`;
    const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { cwd: root, timeout: 120_000, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const at = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
    console.log(`RSS over 50 device cycles (MB): ${JSON.stringify(at)}`);
    // llvmpipe: +1 MB from cycle 10 to 50; +67 MB before Dawn instances were reused per route
    expect(at[50]! - at[10]!).toBeLessThan(24);
  });
});

describe('process lifetime', () => {
  it('WEBATTN_FLUSH_BATCH and getDevice({ flushBatch }) set the chunk size of a new device; a value that is not a count is INVALID_ARGUMENT naming its source', () => {
    const root = fileURLToPath(new URL('../../../', import.meta.url));
    const script = `
      const T = await import('@webattn/core-tensor');
      await import('@webattn/kernels-webgpu');
      try {
        const d = await T.getDevice({ kind: 'webgpu' });
        console.log('flushBatch', d.flushBatch);
        d.destroy();
      } catch (e) {
        console.log('error', e.code, e.message);
      }
      const o = await T.getDevice({ kind: 'webgpu', flushBatch: 3 }).catch((e) => e);
      console.log('option', o.flushBatch ?? o.code);
      o.destroy?.();
      const s = await T.getDevice({ kind: 'webgpu', flushBatch: 'x' }).catch((e) => e);
      console.log('string option', s.code, s.message);`;
    const go = (v: string) =>
      spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, timeout: 60_000, encoding: 'utf8', env: { ...process.env, WEBATTN_FLUSH_BATCH: v } });
    const ok = go('16');
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^flushBatch 16$/m);
    expect(ok.stdout).toMatch(/^option 3$/m); // getDevice's option wins over the variable
    expect(ok.stdout).toMatch(/^string option INVALID_ARGUMENT .*flushBatch: expected a non-negative integer/m);
    const bad = go('lots');
    expect(bad.status, bad.stderr).toBe(0);
    expect(bad.stdout).toMatch(/^error INVALID_ARGUMENT .*WEBATTN_FLUSH_BATCH: expected a non-negative integer .*"lots"/m);
  });

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

/**
 * Reads of a chain of calls where call `bad` bound a buffer twice writably: that read rejects with KERNEL_FAILED naming
 * `kernel`; every other call i holds 3·randn([4], seed + i).
 */
async function expectOnlyOneFailed(settled: PromiseSettledResult<T.TypedArray>[], bad: number, kernel: string, seed: number): Promise<void> {
  for (let i = 0; i < settled.length; i++) {
    const r = settled[i]!;
    if (i === bad) {
      expect(r.status).toBe('rejected');
      expect(String((r as PromiseRejectedResult).reason)).toMatch(new RegExp(`KERNEL_FAILED.*kernel "${kernel}"`));
      continue;
    }
    expect(r.status, `call ${i}`).toBe('fulfilled');
    const want = await T.mul(T.randn([4], { seed: seed + i }), 3).toArray();
    expectClose((r as PromiseFulfilledResult<T.TypedArray>).value, want, 1e-6, 1e-6, `call ${i}`);
  }
}
