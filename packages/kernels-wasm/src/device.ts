/**
 * The wasm backend's device: storages are plain typed arrays (like the CPU reference device), so every op the
 * wasm kernels do not cover runs the reference kernels on the same storages (`kernelFallback = 'cpu'`), and the
 * hot ops (matmul, flash attention forward and backward, float32 elementwise/reduction/norm/loss kernels) run as
 * WebAssembly SIMD on a thread pool.
 */
import {
  allocTyped,
  Device,
  gpuBytesPerElement,
  registerBackend,
  Storage,
  WebattnError,
  type BackendFactory,
  type DeviceInfo,
  type DType,
  type GetDeviceOptions,
  type TypedArray,
} from '@webattn/core-tensor';
import { WasmPool } from './pool.js';

declare module '@webattn/core-tensor' {
  interface GetDeviceOptions {
    /**
     * wasm backend: threads including the calling one (default: the `WEBATTN_WASM_THREADS` variable, else the
     * machine's cores, at most 8). Browsers need a cross-origin isolated page for more than one.
     */
    wasmThreads?: number;
  }
}

/** A device whose kernels are WebAssembly SIMD on a thread pool; obtain it with `getDevice({ kind: 'wasm' })`. */
export class WasmDevice extends Device {
  readonly backend = 'wasm';
  readonly info: DeviceInfo;
  /** The kernels' module, memory and threads. */
  readonly pool: WasmPool;
  private destroyed = false;

  constructor(pool: WasmPool) {
    super();
    this.kernelFallback = 'cpu';
    this.pool = pool;
    this.info = {
      backend: 'wasm',
      reason: '',
      tier: 'cpu',
      api: 'wasm',
      adapter: `webattn wasm SIMD (${pool.threadNote})`,
      vendor: 'webattn',
      architecture: 'wasm32-simd128',
      software: true,
      features: ['simd128', ...(pool.threads > 1 ? ['threads'] : [])],
    };
  }

  get lost(): boolean {
    return this.destroyed;
  }

  allocate(dtype: DType, size: number): Storage {
    if (this.residentDtype(dtype) && size > 0) return this.resident(dtype, null, size);
    return this.upload(dtype, allocTyped(dtype, size));
  }

  upload(dtype: DType, data: TypedArray): Storage {
    this.assertAlive();
    if (this.residentDtype(dtype) && data.length > 0) return this.resident(dtype, data, data.length);
    const s = new Storage(this, dtype, data.length);
    s.cpu = data;
    this.track(s, data.length * (dtype === 'bool' ? 1 : gpuBytesPerElement(dtype)), () => undefined);
    return s;
  }

  /** float32 / int32 storages live in the kernels' linear memory when it is shared (see `WasmPool.resident`). */
  private residentDtype(dtype: DType): dtype is 'float32' | 'int32' {
    return (dtype === 'float32' || dtype === 'int32') && this.pool.resident;
  }

  /**
   * A storage whose typed array is a view of linear memory: a kernel's result block is adopted as is, other data
   * is copied into a fresh block (zeros when `data` is null); the block returns to the pool when the storage is
   * disposed or collected.
   */
  private resident(dtype: 'float32' | 'int32', data: TypedArray | null, size: number): Storage {
    this.assertAlive();
    let p = data ? this.pool.adopt(data) : -1;
    let view: Float32Array | Int32Array;
    if (p >= 0) view = data as Float32Array | Int32Array;
    else {
      p = this.pool.block(size * 4);
      view = dtype === 'float32' ? this.pool.f32(p, size) : this.pool.i32(p, size);
      if (data) view.set(data);
      else view.fill(0);
    }
    const s = new Storage(this, dtype, size);
    s.cpu = view;
    const pool = this.pool;
    this.track(s, size * 4, () => pool.freeBlock(p));
    return s;
  }

  async read(storage: Storage, offset: number, count: number): Promise<TypedArray> {
    this.assertAlive();
    return storage.cpu!.slice(offset, offset + count);
  }

  async sync(): Promise<void> {
    this.assertAlive();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.pool.destroy();
  }
}

/**
 * The wasm backend's factory: priority 50, between a hardware GPU (WebGPU, 100) and a software one
 * (llvmpipe / SwiftShader, 10), so `getDevice()` picks it on machines whose only WebGPU is a software rasterizer.
 */
export const wasmBackend: BackendFactory = {
  name: 'wasm',
  priority: 50,
  async create(options: GetDeviceOptions): Promise<Device | null> {
    if (typeof WebAssembly === 'undefined') throw new Error('WebAssembly is unavailable');
    const t = options.wasmThreads;
    if (t !== undefined && (typeof t !== 'number' || !Number.isInteger(t) || t < 1 || t > 64)) {
      throw new WebattnError('INVALID_ARGUMENT', `wasmThreads: expected an integer in [1, 64], got ${JSON.stringify(t)}`, { argument: 'wasmThreads' });
    }
    const pool = await WasmPool.create(t === undefined ? {} : { threads: t });
    const d = new WasmDevice(pool);
    d.info.reason = 'WebAssembly SIMD beats a software WebGPU rasterizer on the same cores';
    return d;
  },
};

registerBackend(wasmBackend);
