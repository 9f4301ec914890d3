import type { DType, TypedArray } from './dtype.js';
import { allocTyped, gpuBytesPerElement } from './dtype.js';
import { WebattnError } from './errors.js';

/** What ran: every benchmark prints this. */
export interface DeviceInfo {
  /** `webgpu` or `cpu` (the reference backend). */
  backend: 'webgpu' | 'cpu';
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
  /** Optional WebGPU features enabled on the device (`shader-f16`, `subgroups`, `timestamp-query`). */
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
 * Backing memory of one or more tensors (views share it). On the CPU a typed array; on WebGPU a
 * `GPUBuffer`. `dispose()` releases it at once; otherwise it returns to the pool when garbage-collected.
 */
export class Storage {
  /** Owning device. */
  readonly device: Device;
  /** Element type. */
  readonly dtype: DType;
  /** Number of elements. */
  readonly size: number;
  /** CPU data (CPU device only). */
  cpu: TypedArray | null = null;
  /** GPU buffer (WebGPU device only). */
  gpu: GPUBuffer | null = null;
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
    this.gpu = null;
  }
}

/** Common interface of devices; obtain one with `getDevice()`. */
export abstract class Device {
  /** Backend kind: the key of the kernel registry. */
  abstract readonly backend: 'webgpu' | 'cpu';
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
    const token = {
      release: () => {
        if (done) return;
        done = true;
        this.stats.currentBytes -= bytes;
        this.stats.liveStorages--;
        free();
      },
    };
    storage.token = token;
    this.finalizer.register(storage, token, storage);
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
