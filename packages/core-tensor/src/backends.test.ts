import { describe, expect, it } from 'vitest';
import * as T from './index.js';
import { allocTyped, gpuBytesPerElement, type DType, type TypedArray } from './dtype.js';

/** A typed-array backend (like a future wasm one): no kernels of its own, the CPU reference kernels run on it. */
class ArrayDevice extends T.Device {
  readonly backend: string;
  readonly info: T.DeviceInfo;
  dead = false;
  constructor(name: string) {
    super();
    this.backend = name;
    this.kernelFallback = 'cpu';
    this.info = { backend: name, reason: '', tier: 'cpu', api: 'test', adapter: `${name} test device`, vendor: 'test', architecture: 'js', software: true, features: [] };
  }
  get lost(): boolean {
    return this.dead;
  }
  allocate(dtype: DType, size: number): T.Storage {
    return this.upload(dtype, allocTyped(dtype, size));
  }
  upload(dtype: DType, data: TypedArray): T.Storage {
    const s = new T.Storage(this, dtype, data.length);
    s.cpu = data;
    this.track(s, data.length * gpuBytesPerElement(dtype), () => undefined);
    return s;
  }
  async read(storage: T.Storage, offset: number, count: number): Promise<TypedArray> {
    return storage.cpu!.slice(offset, offset + count);
  }
  async sync(): Promise<void> {}
  destroy(): void {
    this.dead = true;
  }
}

const created: string[] = [];
function factory(name: string, priority: number, opts: { softwarePriority?: number; hardware?: boolean; fail?: string } = {}): T.BackendFactory {
  return {
    name,
    priority,
    softwarePriority: opts.softwarePriority,
    create: async (o) => {
      created.push(`${name}:${o.allowSoftware === false ? 'hw' : 'any'}`);
      if (opts.fail) throw new Error(opts.fail);
      if (o.allowSoftware === false && !opts.hardware) return null;
      return new ArrayDevice(name);
    },
  };
}

describe('backend registry and getDevice policy', () => {
  it('auto: a backend ranked between hardware and software of another wins over that one\'s software device', async () => {
    T.registerBackend(factory('gpuish', 100, { softwarePriority: 10 })); // only a software device here
    T.registerBackend(factory('middle', 50));
    T.registerBackend(factory('broken', 70, { fail: 'driver missing' }));
    expect(T.listBackends()).toEqual(['gpuish', 'broken', 'middle', 'cpu']);
    created.length = 0;
    const d = await T.getDevice({ cache: false, warn: false });
    expect(d.backend).toBe('middle');
    expect(created).toEqual(['gpuish:hw', 'broken:any', 'middle:any']);
    expect(d.info.reason).toMatch(/^auto: middle/);
    expect(d.info.reason).toMatch(/gpuish \(hardware\): unavailable/);
    expect(d.info.reason).toMatch(/broken: driver missing/);
  });

  it('a named kind asks that backend only; an unavailable one is DEVICE_UNAVAILABLE with its reason', async () => {
    const d = await T.getDevice({ kind: 'gpuish', cache: false });
    expect(d.backend).toBe('gpuish');
    expect(d.info.reason).toMatch(/kind 'gpuish'/);
    await expect(T.getDevice({ kind: 'broken', cache: false })).rejects.toThrowError(/DEVICE_UNAVAILABLE.*driver missing/);
    await expect(T.getDevice({ kind: 'nope' })).rejects.toThrowError(/INVALID_ARGUMENT.*kind.*'gpuish'.*got "nope"/);
    await expect(T.getDevice({ kind: 'webgpu' })).rejects.toThrowError(/import '@webattn\/kernels-webgpu'/);
  });

  it('WEBATTN_DEVICE picks the kind and is named when wrong', async () => {
    process.env.WEBATTN_DEVICE = 'middle';
    try {
      expect((await T.getDevice({ cache: false })).backend).toBe('middle');
      process.env.WEBATTN_DEVICE = 'vulkan';
      await expect(T.getDevice({ cache: false })).rejects.toThrowError(/WEBATTN_DEVICE: expected/);
    } finally {
      delete process.env.WEBATTN_DEVICE;
    }
  });

  it('registerBackend refuses reserved names and bad priorities', () => {
    expect(() => T.registerBackend({ ...factory('x', 1), name: 'cpu' })).toThrowError(/INVALID_ARGUMENT.*factory.name/);
    expect(() => T.registerBackend({ ...factory('x', 1), name: 'auto' })).toThrowError(/factory.name/);
    expect(() => T.registerBackend({ ...factory('x', 1), priority: Number.NaN })).toThrowError(/factory.priority/);
    expect(() => T.registerBackend({ ...factory('x', 1), priority: '5' as unknown as number })).toThrowError(/factory.priority/);
  });

  it('the default device stays until destroyed, then one new one serves every caller', async () => {
    const a = await T.getDevice({ kind: 'middle' });
    expect(await T.getDevice({ kind: 'middle' })).toBe(a);
    a.destroy();
    const next = await Promise.all(Array.from({ length: 50 }, () => T.getDevice({ kind: 'middle' })));
    expect(new Set(next).size).toBe(1);
    expect(next[0]).not.toBe(a);
    expect(next[0]!.lost).toBe(false);
  });

  it('kernelFallback: the CPU reference kernels run on a typed-array device and allocate their outputs there', async () => {
    const d = new ArrayDevice('arrays');
    const x = T.randn([3, 5], { seed: 4, device: d, requiresGrad: true });
    const w = T.randn([5, 2], { seed: 5, device: d });
    const y = T.softmax(T.matmul(x, w));
    expect(y.device).toBe(d);
    T.sum(T.mul(y, y)).backward();
    expect(x.grad!.device).toBe(d);
    // oracle: the same computation on the reference device
    const xc = T.randn([3, 5], { seed: 4, requiresGrad: true });
    const yc = T.softmax(T.matmul(xc, T.randn([5, 2], { seed: 5 })));
    T.sum(T.mul(yc, yc)).backward();
    expect(Array.from(await y.toArray())).toEqual(Array.from(await yc.toArray()));
    expect(Array.from(await x.grad!.toArray())).toEqual(Array.from(await xc.grad!.toArray()));
    d.kernelFallback = null;
    expect(() => T.exp(x)).toThrowError(/KERNEL_NOT_REGISTERED.*'unary'.*'arrays'/);
  });

  it('typed kernel attributes: runKernel checks the attrs of known kernels', () => {
    const x = T.randn([2, 3], { seed: 1 });
    const [y] = T.runKernel('softmax', x.device, [x], { log: true });
    expect(y!.shape).toEqual([2, 3]);
    // unknown kernels take any attributes (and fail at run time when missing)
    expect(() => T.runKernel('not_a_kernel', x.device, [x], { anything: 1 })).toThrowError(/KERNEL_NOT_REGISTERED/);
  });
});
