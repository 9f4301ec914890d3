import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { WasmDevice } from './index.js';

function close(a: ArrayLike<number>, b: ArrayLike<number>, atol: number, rtol: number, label: string): void {
  expect(a.length, label).toBe(b.length);
  for (let i = 0; i < b.length; i++) {
    if (a[i] === b[i]) continue;
    if (!(Math.abs(a[i]! - b[i]!) <= atol + rtol * Math.abs(b[i]!))) expect.fail(`${label}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

describe('wasm device', () => {
  let dev: T.Device;
  beforeAll(async () => {
    dev = await T.getDevice({ kind: 'wasm', wasmThreads: 2 });
  });
  afterAll(() => dev.destroy());

  it('is a registered backend and says what it is', () => {
    expect(T.listBackends()).toContain('wasm');
    expect(dev).toBeInstanceOf(WasmDevice);
    expect(dev.backend).toBe('wasm');
    expect(dev.info.adapter).toMatch(/wasm SIMD \(2 threads\)/);
    expect(dev.info.reason).toMatch(/wasm/);
  });

  it('matmul (batched, transposed, broadcast weight) matches the float64 reference, with gradients', async () => {
    const cpu = T.cpu();
    const a = T.randn([3, 17, 33], { seed: 1, device: dev, requiresGrad: true });
    const w = T.randn([29, 33], { seed: 2, device: dev, requiresGrad: true });
    const y = T.matmul(a, w.transpose(-1, -2));
    const ac = T.randn([3, 17, 33], { seed: 1, device: cpu, requiresGrad: true });
    const wc = T.randn([29, 33], { seed: 2, device: cpu, requiresGrad: true });
    const yc = T.matmul(ac, wc.transpose(-1, -2));
    close(await y.toArray(), await yc.toArray(), 1e-4, 1e-4, 'y');
    const g = T.randn([3, 17, 29], { seed: 3, device: dev });
    y.backward(g);
    yc.backward(T.randn([3, 17, 29], { seed: 3, device: cpu }));
    close(await a.grad!.toArray(), await ac.grad!.toArray(), 1e-4, 1e-4, 'da');
    close(await w.grad!.toArray(), await wc.grad!.toArray(), 1e-4, 1e-4, 'dw');
  });

  it('what the wasm kernels do not cover (int32 arithmetic, comparisons to bool) runs the reference kernels on the same storages', async () => {
    const mk = (d: T.Device) => {
      const x = T.randn([4, 9], { seed: 4, device: d });
      const i = T.add(T.cast(T.mul(x, 10), 'int32'), T.tensor([3], [1], { dtype: 'int32', device: d }));
      return T.softmax(T.where(T.gt(i, 0), T.layerNorm(x, [9]), -1));
    };
    const y = mk(dev);
    expect(y.device).toBe(dev);
    close(await y.toArray(), await mk(T.cpu()).toArray(), 1e-6, 1e-5, 'softmax(where(int32 > 0, layerNorm))');
  });

  it('flash_attention kernels equal the materialised float64 attention (causal, GQA, bool mask)', async () => {
    const B = 2, Hq = 4, Hkv = 2, Lq = 45, Lk = 70, E = 16;
    const q = T.randn([B, Hq, Lq, E], { seed: 5, device: dev });
    const k = T.randn([B, Hkv, Lk, E], { seed: 6, device: dev });
    const v = T.randn([B, Hkv, Lk, E], { seed: 7, device: dev });
    const maskVals = T.rand([B, 1, Lq, Lk], { seed: 8, device: dev });
    const mask = T.ge(maskVals, 0.2);
    const [out] = T.runKernel('flash_attention', dev, [q, k, v, mask], { scale: 0.25, causal: true, causalOffset: 0, maskKind: 'bool', varlen: false });
    // oracle: materialised scores on the CPU reference backend (float64 accumulation)
    const c = T.cpu();
    const qc = T.randn([B, Hq, Lq, E], { seed: 5, device: c });
    const kc = T.randn([B, Hkv, Lk, E], { seed: 6, device: c }).reshape([B, Hkv, 1, Lk, E]).expand([B, Hkv, 2, Lk, E]).reshape([B, Hq, Lk, E]);
    const vc = T.randn([B, Hkv, Lk, E], { seed: 7, device: c }).reshape([B, Hkv, 1, Lk, E]).expand([B, Hkv, 2, Lk, E]).reshape([B, Hq, Lk, E]);
    let s = T.mul(T.matmul(qc, kc.transpose(-1, -2)), 0.25);
    const rows = T.arange(0, Lq, 1, { dtype: 'int32', device: c }).reshape([Lq, 1]);
    const cols = T.arange(0, Lk, 1, { dtype: 'int32', device: c }).reshape([1, Lk]);
    const allow = T.logicalAnd(T.le(cols, rows), T.ge(T.rand([B, 1, Lq, Lk], { seed: 8, device: c }), 0.2));
    s = T.where(allow, s, -Infinity);
    const ref = T.matmul(T.softmax(s), vc);
    close(await out!.toArray(), await ref.toArray(), 2e-5, 2e-4, 'out');
  });

  it('getDevice() auto picks wasm when no GPU backend is registered, and can still be forced to cpu', async () => {
    // no WebGPU backend is imported in this file: auto falls to wasm (priority 50) before the CPU reference
    const d = await T.getDevice({ wasmThreads: 2 });
    expect(d.backend).toBe('wasm');
    expect((await T.getDevice({ kind: 'cpu' })).backend).toBe('cpu');
    await expect(T.getDevice({ kind: 'wasm', wasmThreads: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
