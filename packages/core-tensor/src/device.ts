import type { DType, TypedArray } from './dtype.js';
import { allocTyped, gpuBytesPerElement } from './dtype.js';
import { WebattnError } from './errors.js';

/**
 * Which code path a device's kernels use, best first: `subgroup-matrix` (cooperative matrix
 * multiply-accumulate, e.g. tensor cores), `subgroups` (subgroup shuffles and reductions),
 * `workgroup` (plain workgroup memory), `cpu` (a backend without GPU kernels, e.g. the reference).
 */
export type DeviceTier = 'subgroup-matrix' | 'subgroups' | 'workgroup' | 'cpu';

/** What ran: every benchmark prints this. */
export interface DeviceInfo {
  /** Registered backend name (`webgpu`, `cpu`, later `wasm`): the key of the kernel registry. */
  backend: string;
  /** Why this device was chosen (the policy of `getDevice` and what it tried), e.g. "auto: hardware adapter on vulkan". */
  reason: string;
  /** The kernel tier of this device (see {@link DeviceTier}). */
  tier: DeviceTier;
  /** Graphics API under WebGPU: `vulkan`, `opengl`, `metal`, `d3d12`, `browser`, or `cpu`. */
  api: string;
  /** Adapter description, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)" or "NVIDIA H100". */
  adapter: string;
  /** Adapter vendor as the adapter reports it. */
  vendor: string;
  /** Adapter architecture as the adapter reports it. */
  architecture: string;
  /** True for software rasterizers (llvmpipe, SwiftShader, the CPU backend): compare ratios only. */
  software: boolean;
  /** Optional features enabled on the device (WebGPU: `shader-f16`, `subgroups`, `timestamp-query`, `chromium-experimental-subgroup-matrix`). */
  features: string[];
}

/** Byte counts of device memory owned by tensors. */
export interface MemoryStats {
  /** Bytes held by live tensors now. */
  currentBytes: number;
  /** Highest `currentBytes` since creation or the last {@link Device.resetPeakMemory}. */
  peakBytes: number;
  /** Bytes kept in the buffer pool for reuse (not counted in `currentBytes`). */
  pooledBytes: number;
  /** Number of live storages. */
  liveStorages: number;
}

/**
 * Backing memory of one or more tensors (views share it). On the CPU (and any typed-array backend) a
 * typed array in `cpu`; on other backends an object the backend owns in `handle` (a `GPUBuffer` for
 * WebGPU). `dispose()` releases it at once; otherwise it returns to the pool when garbage-collected.
 */
export class Storage {
  /** Owning device. */
  readonly device: Device;
  /** Element type. */
  readonly dtype: DType;
  /** Number of elements. */
  readonly size: number;
  /** Host data (the CPU device and typed-array backends). */
  cpu: TypedArray | null = null;
  /** Backend-owned memory (e.g. a `GPUBuffer` on WebGPU); null on typed-array backends. */
  handle: unknown = null;
  /** Bytes accounted to this storage. */
  bytes = 0;
  /** True after `dispose()`. */
  disposed = false;
  /** Pool token used to return the memory. */
  token: { release: () => void } | null = null;

  constructor(device: Device, dtype: DType, size: number) {
    this.device = device;
    this.dtype = dtype;
    this.size = size;
  }

  /** Releases the memory now; tensors on it then throw `TENSOR_DISPOSED`. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.token?.release();
    this.token = null;
    this.cpu = null;
    this.handle = null;
  }
}

/** Common interface of devices; obtain one with `getDevice()`. */
export abstract class Device {
  /** Registered backend name: the key of the kernel registry (`cpu`, `webgpu`, ...). */
  abstract readonly backend: string;
  /**
   * Backend whose kernels run on this device when `backend` has none registered for an op (default
   * null: a missing kernel throws `KERNEL_NOT_REGISTERED`). A backend whose storages are typed arrays
   * sets `'cpu'` to fall back to the reference kernels.
   */
  kernelFallback: string | null = null;
  /** Which adapter runs the work. */
  abstract readonly info: DeviceInfo;
  /** Live memory accounting (see {@link Device.memoryStats}). */
  protected stats: MemoryStats = { currentBytes: 0, peakBytes: 0, pooledBytes: 0, liveStorages: 0 };
  private readonly finalizer = new FinalizationRegistry<{ release: () => void }>((t) => t.release());

  /** True when the device was lost or destroyed. */
  abstract get lost(): boolean;
  /** Allocates storage for `size` elements of `dtype` (contents unspecified). */
  abstract allocate(dtype: DType, size: number): Storage;
  /** Creates storage holding `data` (already of the dtype's CPU representation). */
  abstract upload(dtype: DType, data: TypedArray): Storage;
  /**
   * Storage of `size` elements of `dtype`, every one equal to `value` (already representable in the
   * dtype). The default uploads a filled host array; GPU backends fill on the device without one.
   */
  fill(dtype: DType, size: number, value: number): Storage {
    const arr = allocTyped(dtype, size);
    arr.fill(value);
    return this.upload(dtype, arr);
  }
  /** Reads `count` elements starting at element `offset` of a storage back to the host. */
  abstract read(storage: Storage, offset: number, count: number): Promise<TypedArray>;
  /** Waits until all submitted work has finished (and surfaces deferred kernel errors). */
  abstract sync(): Promise<void>;
  /** Releases the device; a process then exits by itself. */
  abstract destroy(): void;

  /** Current, peak and pooled memory of this device. */
  memoryStats(): MemoryStats {
    return { ...this.stats };
  }

  /** Releases memory kept for reuse (the buffer pool); a no-op on backends without one. */
  emptyCache(): void {}

  /**
   * Sets how many bytes the buffer pool may keep for reuse (freed memory past it is released at
   * once); a no-op on backends without a pool. Throws `INVALID_ARGUMENT` for a negative or non-finite
   * number.
   */
  setPoolBudget(bytes: number): void {
    if (typeof bytes !== 'number' || !(bytes >= 0) || !Number.isFinite(bytes)) {
      throw new WebattnError('INVALID_ARGUMENT', `bytes: expected a finite number >= 0, got ${String(bytes)}`, { argument: 'bytes' });
    }
  }

  /** Sets the peak to the current figure (for measuring one operation). */
  resetPeakMemory(): void {
    this.stats.peakBytes = this.stats.currentBytes;
  }

  /** Accounts `bytes` to a storage and arranges its release on dispose or garbage collection. */
  protected track(storage: Storage, bytes: number, free: () => void): void {
    storage.bytes = bytes;
    this.stats.currentBytes += bytes;
    this.stats.liveStorages++;
    if (this.stats.currentBytes > this.stats.peakBytes) this.stats.peakBytes = this.stats.currentBytes;
    let done = false;
    // a disposed storage leaves the registry at once (otherwise its cell and token stay until a GC
    // and a later task run the cleanup: ~60 KB per training step in a loop that never yields)
    const key = {};
    const token = {
      release: () => {
        if (done) return;
        done = true;
        this.finalizer.unregister(key);
        this.stats.currentBytes -= bytes;
        this.stats.liveStorages--;
        free();
      },
    };
    storage.token = token;
    this.finalizer.register(storage, token, key);
  }

  /** Throws `DEVICE_LOST` when the device is gone. */
  assertAlive(): void {
    if (this.lost) {
      throw new WebattnError('DEVICE_LOST', `device "${this.info.adapter}" was lost or destroyed; call getDevice() again for a new one`);
    }
  }
}

/** The CPU reference backend's device: plain typed arrays, float64 accumulation in every kernel. */
export class CpuDevice extends Device {
  readonly backend = 'cpu' as const;
  readonly info: DeviceInfo = {
    backend: 'cpu',
    reason: 'the CPU reference backend',
    tier: 'cpu',
    api: 'cpu',
    adapter: 'webattn CPU reference backend',
    vendor: 'webattn',
    architecture: 'javascript',
    software: true,
    features: ['float64'],
  };
  get lost(): boolean {
    return false;
  }
  allocate(dtype: DType, size: number): Storage {
    return this.upload(dtype, allocTyped(dtype, size));
  }
  upload(dtype: DType, data: TypedArray): Storage {
    const s = new Storage(this, dtype, data.length);
    s.cpu = data;
    this.track(s, data.length * (dtype === 'bool' ? 1 : gpuBytesPerElement(dtype)), () => undefined);
    return s;
  }
  async read(storage: Storage, offset: number, count: number): Promise<TypedArray> {
    const d = storage.cpu!;
    return d.slice(offset, offset + count);
  }
  async sync(): Promise<void> {}
  destroy(): void {}
}

let cpuDevice: CpuDevice | null = null;
/** The process-wide CPU device. */
export function cpu(): CpuDevice {
  return (cpuDevice ??= new CpuDevice());
}

let defaultDevice: Device | null = null;
/** Device used by creation functions that name none (initially the CPU device), like `torch.set_default_device`. */
export function setDefaultDevice(device: Device | null): void {
  defaultDevice = device;
}
/** The current default device. */
export function getDefaultDevice(): Device {
  if (defaultDevice && defaultDevice.lost) defaultDevice = null;
  return defaultDevice ?? cpu();
}
