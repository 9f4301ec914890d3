import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import '@webattn/kernels-wasm';
import type { WasmDevice } from './device.js';
import { expectClose } from '../../../test-utils/index.js';

// Tensors' float32/int32 storages live in the kernels' (shared) linear memory: kernels read inputs in place and
// their outputs become storages without a copy; disposing returns the block. The oracle for values is the float64
// CPU reference on the same seeded inputs.
describe.each([1, 2])('resident storages in wasm memory (%i threads)', (threads) => {
  let dev: WasmDevice;
  beforeAll(async () => {
    dev = (await T.getDevice({ kind: 'wasm', wasmThreads: threads, cache: false })) as WasmDevice;
  });
  afterAll(() => dev.destroy());

  const inMemory = (t: T.Tensor) => (t.storage.cpu as Float32Array).buffer instanceof SharedArrayBuffer;

  it('a chain of wasm ops keeps every result in linear memory and copies no input into it', async () => {
    expect(dev.pool.resident).toBe(true);
    const mk = (d: T.Device) => {
      const a = T.randn([7, 33], { seed: 1, device: d });
      const b = T.randn([33, 19], { seed: 2, device: d });
      const w = T.randn([19], { seed: 3, device: d });
      return { a, b, w };
    };
    const x = mk(dev);
    // count the bytes `put` copies during the chain (0: every input already lies in memory)
    const pool = dev.pool as unknown as { put(d: ArrayBufferView): number; resident: boolean };
    const put = pool.put.bind(pool);
    let copied = 0;
    let calls = 0;
    const buffers = (dev.pool as unknown as { buffers: WeakSet<ArrayBufferLike> }).buffers;
    pool.put = (d: ArrayBufferView) => {
      calls++;
      if (!buffers.has(d.buffer)) copied += d.byteLength;
      return put(d);
    };
    let y: T.Tensor;
    try {
      y = T.layerNorm(T.gelu(T.matmul(x.a, x.b)), [19], x.w, null);
      y = T.softmax(T.mul(y, 3), -1);
    } finally {
      pool.put = put;
    }
    expect(calls).toBeGreaterThanOrEqual(5); // matmul's two operands, gelu, layerNorm, mul, softmax
    expect(copied).toBe(0);
    expect(inMemory(y)).toBe(true);
    const r = mk(T.cpu());
    const ref = T.softmax(T.mul(T.layerNorm(T.gelu(T.matmul(r.a, r.b)), [19], r.w, null), 3), -1);
    expectClose(await y.toArray(), await ref.toArray(), 1e-5, 1e-4, 'chain');
  });

  it('disposed storages return their blocks, and a same-size result reuses one', () => {
    const a = T.randn([64, 64], { seed: 4, device: dev });
    const before = dev.pool.heapBytes();
    const b = T.exp(a);
    const grown = dev.pool.heapBytes();
    expect(grown).toBeGreaterThanOrEqual(before + 64 * 64 * 4);
    const at = (b.storage.cpu as Float32Array).byteOffset;
    b.dispose();
    expect(dev.pool.heapBytes()).toBe(grown - 64 * 64 * 4);
    const c = T.tanh(a);
    expect((c.storage.cpu as Float32Array).byteOffset).toBe(at);
    c.dispose();
    a.dispose();
  });

  it('storages stay valid when the memory grows (views over shared memory are not detached)', async () => {
    const a = T.randn([1000], { seed: 5, device: dev });
    const want = Array.from(T.readValues(a));
    // a 64 MiB tensor makes the memory grow
    const big = T.add(T.zeros([16 * 1024 * 1024], { device: dev }), 1);
    expect(big.storage.cpu!.length).toBe(16 * 1024 * 1024);
    expectClose(await T.mul(a, 1).toArray(), want, 0, 0, 'after growth');
    big.dispose();
  });

  it('bool and int32 tensors, views and host uploads round-trip', async () => {
    const data = Float32Array.from({ length: 12 }, (_, i) => i * 0.5 - 2);
    const t = T.tensor(data, [3, 4], { device: dev });
    data[0] = 99; // the device copied the host array
    expect((await t.toArray())[0]).toBe(-2);
    const i = T.tensor([1, -2, 3], [3], { dtype: 'int32', device: dev });
    expect(Array.from(await T.add(i, i).toArray())).toEqual([2, -4, 6]);
    const m = T.gt(t, 0);
    expect(m.dtype).toBe('bool');
    expect(Array.from(await T.where(m, t.transpose(0, 1).contiguous().transpose(0, 1), 0).toArray())).toEqual(Array.from(data, (x, k) => (k === 0 ? 0 : Math.max(x, 0))));
  });
});
