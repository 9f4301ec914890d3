import type { DType, TypedArray } from './dtype.js';
import { allocTyped, fromHalfBits, gpuBytesPerElement, toHalfBits } from './dtype.js';
import { Device, Storage, type DeviceInfo } from './device.js';
import { WebattnError } from './errors.js';

/** Access of one storage binding of a {@link GpuProgram}. */
export type BindingAccess = 'read' | 'read_write';

/**
 * A compute program as the device runs it: WGSL source plus its storage bindings (binding i is the
 * i-th buffer) and, when `uniformBytes > 0`, one uniform buffer at the next binding.
 * Pipelines are cached by `key`; shapes travel in the uniform so one pipeline serves all sizes.
 */
export interface GpuProgram {
  /** Kernel name, used in error messages and labels. */
  name: string;
  /** Cache key: everything that changes the WGSL text. */
  key: string;
  /** Produces the WGSL source (called once per key). */
  source: () => string;
  /** Access of each storage binding, in binding order. */
  bindings: readonly BindingAccess[];
  /** Whether the program reads a uniform buffer after the storage bindings. */
  uniform: boolean;
}

interface Pending {
  name: string;
  promise: Promise<GPUError | null>;
}

const POOL_LIMIT_BYTES = 256 * 1024 * 1024;

/** Rounds a byte size up to a pool size class (within 1/8 above the request). */
function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 4096) return b;
  const step = 2 ** (Math.floor(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

/** A WebGPU device (Dawn in Node, `navigator.gpu` in browsers) with a buffer pool and pipeline cache. */
export class WebGPUDevice extends Device {
  readonly backend = 'webgpu' as const;
  readonly info: DeviceInfo;
  /** The underlying `GPUDevice`. */
  readonly gpu: GPUDevice;
  /** Limits the device was created with (the adapter's own). */
  readonly limits: GPUSupportedLimits;
  private isLost = false;
  private lostMessage = '';
  private pool = new Map<number, GPUBuffer[]>();
  private pipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>();
  private pending: Pending[] = [];
  private readonly onDestroy: () => void;
  /**
   * Most loop iterations one invocation may run before the driver cuts it short (Mesa llvmpipe caps
   * every shader at 65535; others have no such cap). Kernels with long loops split their work into
   * passes below this.
   */
  readonly maxLoopIterations: number;
  /** Kernels use subgroup operations when the adapter has `subgroups` and this is true (tests turn it off to check the fallback). */
  subgroupsEnabled = true;
  /** Tests set this: every new storage is filled with NaN bits so an unwritten element fails. */
  poisonAllocations = false;
  /** Keeps the Dawn instance and adapter alive as long as the device: collecting them tears Dawn down under us. */
  private readonly keepAlive: unknown[];

  constructor(gpu: GPUDevice, info: DeviceInfo, onDestroy: () => void = () => undefined, keepAlive: unknown[] = []) {
    super();
    this.keepAlive = keepAlive;
    this.gpu = gpu;
    this.info = info;
    this.limits = gpu.limits;
    this.onDestroy = onDestroy;
    this.maxLoopIterations = /llvmpipe/i.test(info.adapter) ? 65535 : Infinity;
    void gpu.lost.then((i) => {
      this.isLost = true;
      this.lostMessage = `${i.reason}: ${i.message}`;
      this.pool.clear();
    });
  }

  get lost(): boolean {
    return this.isLost;
  }

  /** Number of compute pipelines built so far (each distinct program key builds one). */
  get pipelineCount(): number {
    return this.pipelines.size;
  }

  /** True when the device has the feature (`shader-f16`, `subgroups`, ...). */
  hasFeature(name: string): boolean {
    return this.gpu.features.has(name);
  }

  private lostError(cause?: unknown): WebattnError {
    return new WebattnError(
      'DEVICE_LOST',
      `device "${this.info.adapter}" was lost (${this.lostMessage || 'destroyed'}); pending work was rejected — call getDevice() again for a new one`,
      cause !== undefined ? { cause } : undefined,
    );
  }

  override assertAlive(): void {
    if (this.isLost) throw this.lostError();
  }

  /** Checks `bytes` against the storage-binding and buffer limits; throws `LIMIT_EXCEEDED` naming the limit. */
  checkBufferSize(bytes: number, what = 'tensor'): void {
    const lim = this.limits.maxStorageBufferBindingSize;
    if (bytes > lim) {
      throw new WebattnError(
        'LIMIT_EXCEEDED',
        `${what}: needs ${bytes} bytes in one buffer, above the adapter's maxStorageBufferBindingSize of ${lim} bytes (${this.info.adapter})`,
      );
    }
    if (bytes > this.limits.maxBufferSize) {
      throw new WebattnError('LIMIT_EXCEEDED', `${what}: needs ${bytes} bytes, above the adapter's maxBufferSize of ${this.limits.maxBufferSize}`);
    }
  }

  private takeBuffer(bytes: number): GPUBuffer {
    const cls = sizeClass(bytes);
    const list = this.pool.get(cls);
    const buf = list?.pop();
    if (buf) {
      this.stats.pooledBytes -= cls;
      return buf;
    }
    return this.gpu.createBuffer({
      size: cls,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
  }

  private giveBuffer(buf: GPUBuffer): void {
    if (this.isLost) return;
    if (this.stats.pooledBytes + buf.size > POOL_LIMIT_BYTES) {
      buf.destroy();
      return;
    }
    const list = this.pool.get(buf.size) ?? [];
    list.push(buf);
    this.pool.set(buf.size, list);
    this.stats.pooledBytes += buf.size;
  }

  /** Destroys the pooled (unused) buffers. */
  emptyCache(): void {
    for (const list of this.pool.values()) for (const b of list) b.destroy();
    this.pool.clear();
    this.stats.pooledBytes = 0;
  }

  allocate(dtype: DType, size: number): Storage {
    this.assertAlive();
    if (dtype === 'float64') {
      throw new WebattnError('DTYPE_UNSUPPORTED', `dtype: float64 is not supported on WebGPU (use float32, or the CPU device)`, {
        argument: 'dtype',
      });
    }
    if (dtype === 'float16' && !this.hasFeature('shader-f16')) {
      throw new WebattnError('DTYPE_UNSUPPORTED', `dtype: float16 needs the 'shader-f16' feature, which adapter "${this.info.adapter}" lacks`, {
        argument: 'dtype',
      });
    }
    const bytes = size * gpuBytesPerElement(dtype);
    this.checkBufferSize(bytes);
    const s = new Storage(this, dtype, size);
    const buf = this.takeBuffer(bytes);
    s.gpu = buf;
    this.track(s, buf.size, () => this.giveBuffer(buf));
    if (this.poisonAllocations) this.gpu.queue.writeBuffer(buf, 0, new Uint32Array(buf.size / 4).fill(0xffffffff));
    return s;
  }

  upload(dtype: DType, data: TypedArray): Storage {
    const s = this.allocate(dtype, data.length);
    let bytes: ArrayBufferView;
    if (dtype === 'float16') {
      const h = new Uint16Array(data.length + (data.length & 1));
      for (let i = 0; i < data.length; i++) h[i] = toHalfBits(data[i]!);
      bytes = h;
    } else if (dtype === 'bool') {
      bytes = Uint32Array.from(data as Uint8Array);
    } else {
      bytes = data;
    }
    if (bytes.byteLength > 0) {
      const len = Math.ceil(bytes.byteLength / 4) * 4;
      const padded = len === bytes.byteLength ? bytes : new Uint8Array(len);
      if (padded !== bytes) (padded as Uint8Array).set(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      this.gpu.queue.writeBuffer(s.gpu!, 0, padded.buffer, padded.byteOffset, len);
    }
    return s;
  }

  async read(storage: Storage, offset: number, count: number): Promise<TypedArray> {
    this.assertAlive();
    const bpe = gpuBytesPerElement(storage.dtype);
    const start = Math.floor((offset * bpe) / 4) * 4;
    const end = Math.ceil(((offset + count) * bpe) / 4) * 4;
    const out = allocTyped(storage.dtype, count);
    if (count === 0) {
      await this.sync();
      return out;
    }
    const staging = this.gpu.createBuffer({ size: end - start, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.gpu.createCommandEncoder({ label: 'readback' });
    enc.copyBufferToBuffer(storage.gpu!, start, staging, 0, end - start);
    this.gpu.queue.submit([enc.finish()]);
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      staging.destroy();
      if (this.isLost) throw this.lostError(e);
      throw new WebattnError('KERNEL_FAILED', `readback failed: ${String(e)}`, { cause: e });
    }
    const raw = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    await this.flushErrors();
    const skip = offset * bpe - start;
    if (storage.dtype === 'float16') {
      const h = new Uint16Array(raw, skip, count);
      for (let i = 0; i < count; i++) out[i] = fromHalfBits(h[i]!);
    } else if (storage.dtype === 'bool') {
      const u = new Uint32Array(raw, skip, count);
      for (let i = 0; i < count; i++) out[i] = u[i] ? 1 : 0;
    } else {
      const Ctor = out.constructor as unknown as { new (b: ArrayBuffer, o: number, n: number): TypedArray };
      out.set(new Ctor(raw, skip, count));
    }
    return out;
  }

  private async flushErrors(): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) {
      const err = await p.promise;
      if (err instanceof WebattnError) throw err;
      if (err) {
        const compile = /shader|wgsl|pipeline|module/i.test(err.message);
        throw new WebattnError(
          compile ? 'KERNEL_COMPILE' : 'KERNEL_FAILED',
          `kernel "${p.name}": ${compile ? 'failed to build' : 'dispatch failed'}: ${err.message.split('\n').slice(0, 6).join(' | ')}`,
        );
      }
    }
  }

  async sync(): Promise<void> {
    this.assertAlive();
    try {
      await this.gpu.queue.onSubmittedWorkDone();
    } catch (e) {
      if (this.isLost) throw this.lostError(e);
      throw e;
    }
    if (this.isLost) throw this.lostError();
    await this.flushErrors();
  }

  /**
   * Registers a check that runs on the GPU timeline (e.g. a validation kernel's flag being read back):
   * a `WebattnError` it resolves to is thrown, as is, at the next `read`/`sync`, like a failed kernel.
   */
  deferCheck(name: string, check: Promise<WebattnError | null>): void {
    this.pending.push({ name, promise: check as Promise<GPUError | null> });
  }

  private getPipeline(program: GpuProgram): { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout } {
    const hit = this.pipelines.get(program.key);
    if (hit) return hit;
    const entries: GPUBindGroupLayoutEntry[] = program.bindings.map((a, i) => ({
      binding: i,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: a === 'read' ? 'read-only-storage' : 'storage' },
    }));
    if (program.uniform) {
      entries.push({ binding: entries.length, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } });
    }
    this.gpu.pushErrorScope('validation');
    const layout = this.gpu.createBindGroupLayout({ label: program.name, entries });
    const module = this.gpu.createShaderModule({ label: program.name, code: program.source() });
    const pipeline = this.gpu.createComputePipeline({
      label: program.name,
      layout: this.gpu.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    this.pending.push({ name: program.name, promise: this.gpu.popErrorScope() });
    const entry = { pipeline, layout };
    this.pipelines.set(program.key, entry);
    return entry;
  }

  /**
   * Records and submits one dispatch of `program` over `buffers` (binding order) with `uniforms`
   * (a plain ArrayBuffer laid out by the program). Errors surface at the next `read`/`sync` as
   * `KERNEL_COMPILE`/`KERNEL_FAILED` naming the kernel.
   */
  dispatch(program: GpuProgram, buffers: GPUBuffer[], uniforms: ArrayBuffer | null, workgroups: [number, number, number]): void {
    this.assertAlive();
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    if (workgroups.some((w) => w > max)) {
      throw new WebattnError(
        'LIMIT_EXCEEDED',
        `kernel "${program.name}": dispatch of ${workgroups.join('×')} workgroups exceeds maxComputeWorkgroupsPerDimension (${max})`,
      );
    }
    if (workgroups.some((w) => w === 0)) return;
    const { pipeline, layout } = this.getPipeline(program);
    const entries: GPUBindGroupEntry[] = buffers.map((b, i) => ({ binding: i, resource: { buffer: b } }));
    let ubuf: GPUBuffer | null = null;
    if (program.uniform) {
      const size = Math.max(16, Math.ceil((uniforms?.byteLength ?? 0) / 16) * 16);
      ubuf = this.gpu.createBuffer({ size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      if (uniforms) this.gpu.queue.writeBuffer(ubuf, 0, uniforms);
      entries.push({ binding: buffers.length, resource: { buffer: ubuf } });
    }
    this.gpu.pushErrorScope('validation');
    const bindGroup = this.gpu.createBindGroup({ label: program.name, layout, entries });
    const enc = this.gpu.createCommandEncoder({ label: program.name });
    const pass = enc.beginComputePass({ label: program.name });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(workgroups[0], workgroups[1], workgroups[2]);
    pass.end();
    this.gpu.queue.submit([enc.finish()]);
    this.pending.push({ name: program.name, promise: this.gpu.popErrorScope() });
    ubuf?.destroy();
    if (this.pending.length > 256) void this.flushSettled();
  }

  private async flushSettled(): Promise<void> {
    // keep the list bounded; errors found here are re-queued for the next read
    const batch = this.pending.splice(0, 128);
    const errs = await Promise.all(batch.map((p) => p.promise));
    batch.forEach((p, i) => {
      if (errs[i]) this.pending.unshift({ name: p.name, promise: Promise.resolve(errs[i]!) });
    });
  }

  destroy(): void {
    if (!this.isLost) {
      this.emptyCache();
      this.gpu.destroy();
    }
    this.isLost = true;
    this.onDestroy();
    this.keepAlive.length = 0;
  }
}
