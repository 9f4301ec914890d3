/// <reference types="@webgpu/types" preserve="true" />
import {
  Device,
  Storage,
  WebattnError,
  allocTyped,
  fromHalfBits,
  gpuBytesPerElement,
  toHalfBits,
  type DType,
  type DeviceInfo,
  type DeviceTier,
  type TypedArray,
} from '@webattn/core-tensor';

/** Access of one storage binding of a {@link GpuProgram}. */
export type BindingAccess = 'read' | 'read_write';

/**
 * A compute program as the device runs it: WGSL source plus its storage bindings (binding i is the
 * i-th buffer) and, when `uniform` is true, one uniform buffer at the next binding.
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

/** One cooperative-matrix shape the adapter offers (`chromium-experimental-subgroup-matrix`). */
export interface SubgroupMatrixConfig {
  /** Element type of the left/right operands, e.g. `f16`, `f32`, `i8`. */
  componentType: string;
  /** Element type of the result/accumulator. */
  resultComponentType: string;
  /** Rows of the left operand and result. */
  M: number;
  /** Columns of the right operand and result. */
  N: number;
  /** The inner dimension. */
  K: number;
}

/** What a WebGPU device can do, as kernel generators read it (`device.caps`). */
export interface DeviceCaps {
  /** `shader-f16` is enabled: float16 storage and arithmetic. */
  f16: boolean;
  /** `subgroups` is enabled (and not switched off by `subgroupsEnabled`). */
  subgroups: boolean;
  /** Smallest subgroup size the adapter may use (0 without `subgroups` or when unknown). */
  subgroupMinSize: number;
  /** Largest subgroup size (0 without `subgroups` or when unknown). */
  subgroupMaxSize: number;
  /** Subgroup-matrix shapes (empty without `chromium-experimental-subgroup-matrix`). */
  subgroupMatrix: SubgroupMatrixConfig[];
  /** `timestamp-query` is enabled. */
  timestampQuery: boolean;
  /** `maxComputeWorkgroupStorageSize` in bytes. */
  maxWorkgroupStorage: number;
  /** `maxComputeInvocationsPerWorkgroup`. */
  maxInvocations: number;
  /** `maxComputeWorkgroupSizeX/Y/Z`. */
  maxWorkgroupSize: [number, number, number];
  /** `maxStorageBuffersPerShaderStage`. */
  maxStorageBuffersPerStage: number;
  /** `maxStorageBufferBindingSize` in bytes. */
  maxStorageBufferBindingSize: number;
  /** Loop iterations one invocation may run (65535 on Mesa llvmpipe; Infinity elsewhere). */
  maxLoopIterations: number;
}

/** Compile figures of one kernel name in {@link PipelineStats.byKernel}. */
export interface KernelPipelineStats {
  /** Pipelines built for this kernel name (one per distinct program key; a failed build retried counts again). */
  created: number;
  /** Milliseconds from requesting each of them to its being ready (or failing), summed. */
  compileMs: number;
}

/**
 * Pipeline-cache figures of a {@link WebGPUDevice} (`device.pipelineStats()`): how many compute
 * pipelines were compiled and how long they took. A program whose cache key is already in the cache
 * compiles nothing, so a model's second forward with the same shapes, and every decode step of a
 * generation after the first, should leave `pipelinesCreated` unchanged.
 */
export interface PipelineStats {
  /** Compute pipelines created since the device was made (cache misses). */
  pipelinesCreated: number;
  /** Pipelines held in the cache now (failed builds are not kept). */
  cached: number;
  /** Pipelines requested but not yet ready. */
  pending: number;
  /**
   * Milliseconds from each pipeline's request (shader module creation included) to its being ready or
   * failing, summed over the finished ones. Compiles overlap (Dawn builds asynchronously), so this
   * can exceed the wall time they cost; it is what a first call waits for at most.
   */
  compileMs: number;
  /** The same figures per kernel name (the `name` of the {@link GpuProgram}). */
  byKernel: Record<string, KernelPipelineStats>;
}

/**
 * Host-side work counters of a {@link WebGPUDevice} (`device.counters()`), cumulative since the device
 * was made: subtract two snapshots to see what one call did. They show where host time goes between
 * kernels: buffers created instead of reused, readbacks and syncs that stall the queue, pipelines built.
 */
export interface DeviceCounters {
  /** Compute dispatches recorded. */
  dispatches: number;
  /** Command buffers submitted with recorded work (one per flush; readbacks not counted). */
  submits: number;
  /** Storage buffers created (pool misses). */
  buffersCreated: number;
  /** Bytes of the storage buffers created. */
  bytesCreated: number;
  /** Storage allocations served from the buffer pool (no new buffer). */
  poolHits: number;
  /** Storage buffers destroyed (freed past the pool budget, trimmed, or by `emptyCache`). */
  buffersDestroyed: number;
  /** Host → device writes of tensor data (uploads and poison fills). */
  uploads: number;
  /** Bytes of those writes. */
  uploadBytes: number;
  /** Bytes of uniform data written for dispatches. */
  uniformBytes: number;
  /** Bind groups created (cache misses). */
  bindGroupsCreated: number;
  /** Dispatches whose bind group came from the cache. */
  bindGroupHits: number;
  /** Reads of tensor data back to the host (`toArray`, validation flags). */
  readbacks: number;
  /** Milliseconds the host waited on readbacks (flush to data on the host), summed. */
  readbackWaitMs: number;
  /** `sync()` calls. */
  syncs: number;
  /** Milliseconds the host waited in `sync()`, summed. */
  syncWaitMs: number;
  /** Compute pipelines compiled (pipeline-cache misses; see {@link WebGPUDevice.pipelineStats}). */
  pipelinesCompiled: number;
}

/** GPU time of one kernel name in a {@link DeviceProfile}. */
export interface KernelProfile {
  /** Kernel name (the `name` of the {@link GpuProgram}). */
  name: string;
  /** Dispatches of it that were timed. */
  count: number;
  /** GPU milliseconds they took, summed. */
  gpuMs: number;
  /** Mean microseconds per dispatch. */
  meanUs: number;
  /** Fraction of the profile's total GPU time (0..1). */
  share: number;
}

/** What {@link WebGPUDevice.stopProfile} returns: per-kernel GPU time and the host counters of the window. */
export interface DeviceProfile {
  /**
   * How dispatches were timed: `timestamp-query` (each dispatch in its own compute pass with GPU
   * timestamps at its start and end: GPU time only) or `serialized` (adapters without
   * `timestamp-query`: each dispatch submitted alone and awaited; wall time per kernel including
   * submission, so only ratios between kernels mean something).
   */
  timing: 'timestamp-query' | 'serialized';
  /** Wall milliseconds from start to stop. */
  wallMs: number;
  /** GPU milliseconds of all timed dispatches. */
  gpuMs: number;
  /** Per kernel name, most GPU time first. */
  kernels: KernelProfile[];
  /** Counters of the window (stop minus start). */
  counters: DeviceCounters;
}

/** Options of the {@link WebGPUDevice} constructor (backend code; users call `getDevice`). */
export interface WebGPUDeviceOptions {
  /** The adapter's info (for `subgroupMatrixConfigs` and subgroup sizes). */
  adapterInfo?: GPUAdapterInfo;
  /** Objects kept alive as long as the device (the Dawn instance and adapter). */
  keepAlive?: unknown[];
  /** Called once from `destroy()`. */
  onDestroy?: () => void;
  /**
   * Bytes the buffer pool may keep (default: 256 MiB or twice the device's highest live-tensor bytes so
   * far, whichever is larger, so a repeated step of any size reuses its buffers instead of recreating them).
   */
  poolBudget?: number;
  /**
   * Dispatches per eagerly submitted chunk (default: the `WEBATTN_FLUSH_BATCH` environment variable, else 8, the
   * winner of an A/B on the H100). While a synchronous loop records work, every `flushBatch` dispatches are encoded
   * and submitted at once — when their pipelines are built, their buffers' allocations checked and their bind
   * groups cached (a repeated step) — so the GPU starts while the host records the rest; the tail goes at the next
   * microtask, a read or a `sync()`. `0`: the behaviour before chunking (everything recorded until the next
   * microtask, a read, a sync or 1024 dispatches, encoded after awaiting bind-group validation). A bigger number
   * means fewer submits, a smaller one an earlier start. Settable later as `device.flushBatch`.
   */
  flushBatch?: number;
}

/**
 * Dispatches per eagerly submitted chunk when neither the option nor `WEBATTN_FLUSH_BATCH` says (see
 * {@link WebGPUDeviceOptions.flushBatch}). 8 won an interleaved A/B of 0 (no chunks), 8, 32 and 128 on the H100
 * (Dawn/Vulkan, batches of 16 and 64 identical calls, docs/benchmarks/2026-11-25-h100-flush-ab.json): matmul 4096³
 * f16 1.304 ms per call (105 TFLOP/s) vs 1.456 without chunks, ViT attention forward f16 0.514 vs 0.772 ms, f32
 * 1.708 vs 1.979 ms, a chain of 200 elementwise ops on 1 MiB 8.4 vs 19.5 ms per chain.
 */
export const DEFAULT_FLUSH_BATCH = 8;

/** A non-negative integer dispatch count for `flushBatch`, or an `INVALID_ARGUMENT` naming where it came from. */
function checkFlushBatch(v: unknown, what: string): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
    throw new WebattnError('INVALID_ARGUMENT', `${what}: expected a non-negative integer number of dispatches (0 = no eager chunks), got ${JSON.stringify(v)}`, {
      argument: what,
    });
  }
  return n;
}

/** `WEBATTN_FLUSH_BATCH` from the environment (Node), if set; `INVALID_ARGUMENT` naming the variable when it is not a count. */
function flushBatchFromEnv(): number | undefined {
  const v = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.WEBATTN_FLUSH_BATCH;
  return v === undefined || v === '' ? undefined : checkFlushBatch(v, 'WEBATTN_FLUSH_BATCH');
}

type PipelineEntry = {
  name: string;
  /** Distinguishes layouts in bind-group cache keys. */
  layoutId: number;
  layout: GPUBindGroupLayout;
  pipeline: GPUComputePipeline | null;
  error: WebattnError | null;
  ready: Promise<void>;
};

type DispatchCmd = {
  kind: 'dispatch';
  entry: PipelineEntry;
  storages: Storage[];
  buffers: GPUBuffer[];
  access: readonly BindingAccess[];
  uniforms: ArrayBuffer | null;
  /** Bytes of the uniform binding (the uniforms rounded up to 16, at least 16; 0 without uniforms). */
  uniformSize: number;
  workgroups: [number, number, number];
};
type WriteCmd = { kind: 'write'; data: Uint8Array; dst: GPUBuffer; bytes: number; offset: number };
type Cmd = DispatchCmd | WriteCmd;
type Step = WriteCmd | { cmd: DispatchCmd; group: GPUBindGroup; offset: number };

const DEFAULT_POOL_BUDGET = 256 * 1024 * 1024;

function zeroCounters(): DeviceCounters {
  return {
    dispatches: 0,
    submits: 0,
    buffersCreated: 0,
    bytesCreated: 0,
    poolHits: 0,
    buffersDestroyed: 0,
    uploads: 0,
    uploadBytes: 0,
    uniformBytes: 0,
    bindGroupsCreated: 0,
    bindGroupHits: 0,
    readbacks: 0,
    readbackWaitMs: 0,
    syncs: 0,
    syncWaitMs: 0,
    pipelinesCompiled: 0,
  };
}

type ProfileState = {
  timing: DeviceProfile['timing'];
  t0: number;
  counters0: DeviceCounters;
  byName: Map<string, { count: number; ns: number }>;
  pending: Promise<void>[];
};

/** Fills the first `n` 32-bit words of a buffer with one bit pattern (`Device.fill` on the GPU). */
const FILL_PROGRAM: GpuProgram = {
  name: 'fill',
  key: 'webattn-device-fill-words',
  bindings: ['read_write'],
  uniform: true,
  source: () => `@group(0) @binding(0) var<storage, read_write> out: array<u32>;
struct U { n: u32, value: u32, pad0: u32, pad1: u32 };
@group(0) @binding(1) var<uniform> u: U;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * 256u;
  for (var i = gid.x; i < u.n; i = i + stride) { out[i] = u.value; }
}`,
};
/** Dispatches recorded before a flush is forced (besides the microtask, read and sync flushes). */
const MAX_BATCH = 1024;

/** Rounds a byte size up to a pool size class (within 1/8 above the request). */
function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 4096) return b;
  const step = 2 ** (Math.floor(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

/** The kernel tier of a set of enabled features. */
export function tierOf(features: Iterable<string>): DeviceTier {
  const f = new Set(features);
  if (f.has('chromium-experimental-subgroup-matrix')) return 'subgroup-matrix';
  if (f.has('subgroups')) return 'subgroups';
  return 'workgroup';
}

/**
 * A WebGPU device (Dawn in Node, `navigator.gpu` in browsers) with a buffer pool, a pipeline cache,
 * batched submission and per-tensor error attribution.
 *
 * Dispatches are recorded and submitted together in one command encoder per flush (at a read, a
 * `sync()`, every {@link WebGPUDevice.flushBatch} dispatches when that chunk can go without waiting, every
 * {@link MAX_BATCH} dispatches, or on the next microtask); uniforms of a flush live in
 * one pooled uniform buffer at aligned offsets. A kernel that fails (shader compile error, invalid
 * binding) rejects the reads of the tensors it wrote — and of tensors computed from them — and no
 * others; a pipeline that failed to build is not cached.
 */
export class WebGPUDevice extends Device {
  readonly backend = 'webgpu' as const;
  readonly info: DeviceInfo;
  /** The underlying `GPUDevice`. */
  readonly gpu: GPUDevice;
  /** Limits the device was created with (the adapter's own). */
  readonly limits: GPUSupportedLimits;
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
  /** Number of compute dispatches recorded since creation (tests use it to prove multi-pass splitting). */
  dispatchCount = 0;
  /** Number of command-buffer submissions of recorded work (flushes) since creation. */
  submitCount = 0;
  private flushBatchN: number;
  /** Eager chunk submissions since creation (tests prove chunking with it). */
  eagerSubmitCount = 0;

  private isLost = false;
  private lostMessage = '';
  private pool = new Map<number, GPUBuffer[]>();
  /** Explicit pool budget (constructor option or `setPoolBudget`); null = automatic (see {@link WebGPUDeviceOptions.poolBudget}). */
  private poolBudgetFixed: number | null;
  /** Highest live-tensor bytes since creation (the automatic pool budget follows it). */
  private liveHighWater = 0;
  private cnt: DeviceCounters = zeroCounters();
  private prof: ProfileState | null = null;
  private pipelines = new Map<string, PipelineEntry>();
  private pipeStats = { created: 0, pending: 0, compileMs: 0, byKernel: new Map<string, KernelPipelineStats>() };
  private readonly onDestroy: () => void;
  private readonly keepAlive: unknown[];
  private readonly adapterInfo: GPUAdapterInfo | undefined;
  // batching
  private queue: Cmd[] = [];
  private queuedDispatches = 0;
  private unsubmitted = 0;
  /** Id of the batch being recorded; ids of submitted batches are <= `submitted`. */
  private recording = 1;
  private submitted = 0;
  /** Last batch that references each buffer: a buffer is busy while that batch is not submitted. */
  private useEpoch = new WeakMap<GPUBuffer, number>();
  private uploadRing: GPUBuffer | null = null;
  // bind groups by (layout, buffers, uniform size): training loops rebind the same pooled buffers
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextId = 1;
  private groupCache = new Map<string, GPUBindGroup>();
  private groupKeysOf = new Map<GPUBuffer, string[]>();
  private scheduled = false;
  /** The queue's eager submission was refused; no new attempt until the queue is handed on (flushed). */
  private eagerRefused = false;
  private chain: Promise<void> = Promise.resolve();
  private deferredDestroy: GPUBuffer[] = [];
  private uniformRing: GPUBuffer | null = null;
  private uniformScratch = new Uint8Array(4096);
  // errors
  private taint = new WeakMap<Storage, WebattnError>();
  /** Tensors ever tainted / buffers ever marked failed: while both are 0 (no error yet) the per-dispatch checks are skipped. */
  private taintSets = 0;
  private allocFailures = 0;
  /**
   * Buffers whose creation failed (out of device memory, or a limit): WebGPU still hands back a buffer object,
   * invalid, and reports the error asynchronously; without this every later use of it failed as "Invalid Buffer".
   */
  private allocFailed = new WeakMap<GPUBuffer, WebattnError>();
  /** Creation checks not yet settled (their error scopes resolve on the device timeline). */
  private allocPending = new Map<GPUBuffer, Promise<void>>();
  private unreported: WebattnError[] = [];
  /** Checks running on the GPU timeline (validation flags, shader compilation info); see {@link WebGPUDevice.deferCheck}. */
  private checks: { promise: Promise<WebattnError | null>; outputs: readonly Storage[] }[] = [];

  constructor(gpu: GPUDevice, info: Omit<DeviceInfo, 'tier' | 'reason' | 'features'> & Partial<DeviceInfo>, options: WebGPUDeviceOptions = {}) {
    super();
    this.keepAlive = options.keepAlive ?? [];
    this.adapterInfo = options.adapterInfo;
    this.gpu = gpu;
    const features = info.features ?? [...gpu.features].filter((f) => ['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix'].includes(f));
    this.info = { ...info, features, tier: info.tier ?? tierOf(features), reason: info.reason ?? '' };
    this.limits = gpu.limits;
    this.onDestroy = options.onDestroy ?? (() => undefined);
    this.poolBudgetFixed = options.poolBudget ?? null;
    try {
      this.flushBatchN = options.flushBatch !== undefined ? checkFlushBatch(options.flushBatch, 'flushBatch') : (flushBatchFromEnv() ?? DEFAULT_FLUSH_BATCH);
    } catch (e) {
      gpu.destroy(); // a bad option must not leave the GPUDevice it was handed alive
      throw e;
    }
    this.maxLoopIterations = /llvmpipe/i.test(info.adapter) ? 65535 : Infinity;
    void gpu.lost.then((i) => {
      this.isLost = true;
      this.lostMessage = `${i.reason}: ${i.message}`;
      this.pool.clear();
      this.stats.pooledBytes = 0;
    });
  }

  get lost(): boolean {
    return this.isLost;
  }

  /**
   * Dispatches per eagerly submitted chunk (see {@link WebGPUDeviceOptions.flushBatch}; 0 = no eager chunks).
   * Setting it throws `INVALID_ARGUMENT` for anything but a non-negative integer.
   *
   * @example
   * device.flushBatch = 64; // submit every 64 recorded dispatches while a loop records more
   */
  get flushBatch(): number {
    return this.flushBatchN;
  }

  set flushBatch(n: number) {
    this.flushBatchN = checkFlushBatch(n, 'flushBatch');
  }

  /** Number of compute pipelines built and cached so far (each distinct program key builds one). */
  get pipelineCount(): number {
    return this.pipelines.size;
  }

  /**
   * How many compute pipelines this device compiled and how long they took, in total and per kernel
   * name: a snapshot (later work does not change it). Compare two snapshots to see what one call
   * compiled; the first call of a shape pays for its pipelines, a repeated one should compile none.
   *
   * @example
   * const before = device.pipelineStats().pipelinesCreated;
   * await model.forward({ inputIds }); // device.pipelineStats().pipelinesCreated - before: what it compiled
   */
  pipelineStats(): PipelineStats {
    const byKernel: Record<string, KernelPipelineStats> = {};
    for (const [k, v] of this.pipeStats.byKernel) byKernel[k] = { ...v };
    return {
      pipelinesCreated: this.pipeStats.created,
      cached: this.pipelines.size,
      pending: this.pipeStats.pending,
      compileMs: this.pipeStats.compileMs,
      byKernel,
    };
  }

  /** True when the device has the feature (`shader-f16`, `subgroups`, ...). */
  hasFeature(name: string): boolean {
    return this.gpu.features.has(name);
  }

  /** What kernels may use on this device (features, subgroup-matrix shapes, limits). */
  get caps(): DeviceCaps {
    const ai = this.adapterInfo as (GPUAdapterInfo & { subgroupMatrixConfigs?: SubgroupMatrixConfig[] }) | undefined;
    const l = this.limits;
    const hasMatrix = this.hasFeature('chromium-experimental-subgroup-matrix');
    const sg = this.hasFeature('subgroups');
    return {
      f16: this.hasFeature('shader-f16'),
      subgroups: sg && this.subgroupsEnabled,
      subgroupMinSize: sg ? (ai?.subgroupMinSize ?? 0) : 0,
      subgroupMaxSize: sg ? (ai?.subgroupMaxSize ?? 0) : 0,
      subgroupMatrix: hasMatrix
        ? [...(ai?.subgroupMatrixConfigs ?? [])].map((c) => ({
            componentType: String(c.componentType),
            resultComponentType: String(c.resultComponentType),
            M: c.M,
            N: c.N,
            K: c.K,
          }))
        : [],
      timestampQuery: this.hasFeature('timestamp-query'),
      maxWorkgroupStorage: l.maxComputeWorkgroupStorageSize,
      maxInvocations: l.maxComputeInvocationsPerWorkgroup,
      maxWorkgroupSize: [l.maxComputeWorkgroupSizeX, l.maxComputeWorkgroupSizeY, l.maxComputeWorkgroupSizeZ],
      maxStorageBuffersPerStage: l.maxStorageBuffersPerShaderStage,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxLoopIterations: this.maxLoopIterations,
    };
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

  // ---------------------------------------------------------------------------- buffer pool

  /** True while a recorded-but-unsubmitted command references the buffer. */
  private busy(buf: GPUBuffer): boolean {
    return (this.useEpoch.get(buf) ?? 0) > this.submitted;
  }

  /**
   * A buffer of at least `bytes` from the pool, or a new one. For uploads (`idle`), a pooled buffer
   * that unsubmitted work still references is skipped, so the upload can be written at once.
   */
  private takeBuffer(bytes: number, idle = false): GPUBuffer {
    // the size class (up to 1/8 above `bytes`) never goes past the limits that `bytes` itself respects: a rounded-up
    // buffer above maxBufferSize / maxStorageBufferBindingSize was created invalid or failed at its binding
    const cap = Math.floor(Math.min(this.limits.maxBufferSize, this.limits.maxStorageBufferBindingSize) / 16) * 16;
    const cls = Math.max(Math.min(sizeClass(bytes), cap), Math.ceil(bytes / 4) * 4);
    const list = this.pool.get(cls);
    if (list?.length) {
      // each list is sorted by descending buffer id: the end holds the oldest buffer (see giveBuffer)
      let i = list.length - 1;
      // an upload takes the oldest idle one among the 64 oldest: in a loop recording small uploads the buffers freed
      // last (still referenced by unsubmitted work) sit among the idle ones; creating a buffer instead meant a creation
      // check (which holds back the eager chunk) and a new bind group
      if (idle) while (i >= 0 && list.length - i <= 64 && this.busy(list[i]!)) i--;
      if (i >= 0 && (!idle || !this.busy(list[i]!))) {
        const buf = i === list.length - 1 ? list.pop()! : list.splice(i, 1)[0]!;
        this.stats.pooledBytes -= cls;
        this.cnt.poolHits++;
        return buf;
      }
    }
    this.cnt.buffersCreated++;
    this.cnt.bytesCreated += cls;
    return this.createChecked(cls, bytes);
  }

  /**
   * Creates a storage buffer inside error scopes. WebGPU reports a failed creation (out of device memory) only
   * asynchronously and returns an invalid buffer; the scopes' verdict marks the buffer so that the first dispatch,
   * write or read that meets it raises `OUT_OF_MEMORY` (or `LIMIT_EXCEEDED`) naming this allocation, and the
   * buffer is never pooled or handed out again.
   */
  private createChecked(size: number, bytes: number): GPUBuffer {
    this.gpu.pushErrorScope('out-of-memory');
    this.gpu.pushErrorScope('validation');
    const buf = this.gpu.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    const validation = this.gpu.popErrorScope();
    const oom = this.gpu.popErrorScope();
    const held = this.stats.currentBytes;
    const check = Promise.all([oom, validation]).then(
      ([o, v]) => {
        this.allocPending.delete(buf);
        const e = o ?? v;
        if (!e) return;
        const why = String(e.message).split('\n')[0];
        const err = o
          ? new WebattnError(
              'OUT_OF_MEMORY',
              `tensor allocation: out of device memory allocating ${bytes} bytes (a ${size}-byte buffer) on "${this.info.adapter}": ${why}; webattn tensors held ${held} bytes then (peak ${this.stats.peakBytes}) — dispose tensors or run steps in tidy(), call emptyCache(), or use a smaller batch, model or sequence`,
              { argument: 'tensor' },
            )
          : new WebattnError('LIMIT_EXCEEDED', `tensor allocation: creating a ${size}-byte buffer for ${bytes} bytes failed on "${this.info.adapter}": ${why}`, { argument: 'tensor' });
        this.allocFailed.set(buf, err);
        this.allocFailures++;
        this.dropFromPool(buf);
      },
      () => {
        this.allocPending.delete(buf); // device lost: the lost handling reports it
      },
    );
    this.allocPending.set(buf, check);
    return buf;
  }

  /** Removes a failed buffer from the pool if it is there (it is destroyed, never handed out again). */
  private dropFromPool(buf: GPUBuffer): void {
    const list = this.pool.get(buf.size);
    const i = list ? list.indexOf(buf) : -1;
    if (i < 0) return;
    list!.splice(i, 1);
    this.stats.pooledBytes -= buf.size;
    this.destroyBuffer(buf);
  }

  private setTaint(s: Storage, e: WebattnError): void {
    this.taint.set(s, e);
    this.taintSets++;
  }

  /** The error of the first input of `storages` that a failed kernel wrote (none while nothing ever failed). */
  private taintOf(storages: readonly Storage[]): WebattnError | undefined {
    if (!this.taintSets) return undefined;
    for (const st of storages) {
      const e = this.taint.get(st);
      if (e) return e;
    }
    return undefined;
  }

  /** Why a recorded dispatch cannot run: its pipeline failed, a buffer's allocation failed, or an input is tainted. */
  private inputError(c: DispatchCmd): WebattnError | undefined {
    return c.entry.error ?? this.allocError(c.buffers) ?? this.taintOf(c.storages);
  }

  /** The allocation error of the first failed buffer among `buffers`, if any is known. */
  private allocError(buffers: readonly GPUBuffer[]): WebattnError | undefined {
    if (!this.allocFailures) return undefined;
    for (const b of buffers) {
      const e = this.allocFailed.get(b);
      if (e) return e;
    }
    return undefined;
  }

  /** Waits for the creation checks of `buffers` that have not settled yet. */
  private async settleAllocs(buffers: Iterable<GPUBuffer>): Promise<void> {
    if (!this.allocPending.size) return;
    const ps: Promise<void>[] = [];
    for (const b of buffers) {
      const p = this.allocPending.get(b);
      if (p) ps.push(p);
    }
    if (ps.length) await Promise.all(ps);
  }

  /** Destroys a buffer once no recorded-but-unsubmitted command can reference it. */
  private destroyBuffer(buf: GPUBuffer): void {
    if (this.busy(buf)) this.deferredDestroy.push(buf);
    else this.destroyNow(buf);
  }

  /** Destroys a buffer and forgets the cached bind groups that use it. */
  private destroyNow(buf: GPUBuffer): void {
    const keys = this.groupKeysOf.get(buf);
    if (keys) {
      for (const k of keys) this.groupCache.delete(k);
      this.groupKeysOf.delete(buf);
    }
    buf.destroy();
    this.cnt.buffersDestroyed++;
  }

  private bufferId(buf: GPUBuffer): number {
    let id = this.bufferIds.get(buf);
    if (id === undefined) {
      id = this.nextId++;
      this.bufferIds.set(buf, id);
    }
    return id;
  }

  private giveBuffer(buf: GPUBuffer): void {
    if (this.isLost) return;
    if (this.allocFailed.has(buf) || buf.size > this.poolBudget) {
      this.destroyBuffer(buf);
      return;
    }
    // over budget: free pooled buffers (largest classes first) rather than this one. Destroying the buffer just freed
    // let stale size classes of earlier shapes fill the budget, and then every output of a new shape missed the
    // pool (on the H100 each new buffer cost ~0.06 ms per MB of host time and left the GPU idle, its SM clock down)
    if (this.stats.pooledBytes + buf.size > this.poolBudget) this.trimPool(this.poolBudget - buf.size);
    // lowest buffer id first, whatever order the buffers came back in: a repeated step then allocates exactly the
    // buffers of the step before (the free set at its end equals the one at its start), so the bind-group keys repeat
    // and the cache hits. With last-in-first-out the hand-out order depended on the free order of the step before,
    // a permutation whose cycles ran long: 64 of a toy ViT forward's 81 dispatches made a new bind group every call
    let list = this.pool.get(buf.size);
    if (!list) this.pool.set(buf.size, (list = []));
    const id = this.bufferId(buf);
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.bufferId(list[mid]!) > id) lo = mid + 1;
      else hi = mid;
    }
    if (lo === list.length) list.push(buf);
    else list.splice(lo, 0, buf);
    this.stats.pooledBytes += buf.size;
  }

  /** Frees pooled buffers, largest size classes first, until the pool holds at most `budget` bytes. */
  private trimPool(budget: number): void {
    const classes = [...this.pool.keys()].sort((a, b) => b - a);
    for (const cls of classes) {
      const list = this.pool.get(cls)!;
      while (list.length && this.stats.pooledBytes > budget) {
        this.destroyBuffer(list.pop()!);
        this.stats.pooledBytes -= cls;
      }
      if (!list.length) this.pool.delete(cls);
      if (this.stats.pooledBytes <= budget) break;
    }
  }

  /** Destroys the pooled (unused) buffers. */
  override emptyCache(): void {
    this.trimPool(0);
  }

  /**
   * Sets how many bytes of freed buffers the pool keeps for reuse (default: 256 MiB or twice the live high-water mark, see {@link WebGPUDeviceOptions.poolBudget}); trims the pool
   * now if it holds more. Throws `INVALID_ARGUMENT` for a negative or non-finite number.
   *
   * @example
   * device.setPoolBudget(64 * 2 ** 20); // keep at most 64 MiB of freed buffers
   */
  override setPoolBudget(bytes: number): void {
    super.setPoolBudget(bytes);
    this.poolBudgetFixed = bytes;
    this.trimPool(bytes);
  }

  /** The pool budget in bytes now (see {@link WebGPUDevice.setPoolBudget} and {@link WebGPUDeviceOptions.poolBudget}). */
  get poolBudgetBytes(): number {
    return this.poolBudget;
  }

  private get poolBudget(): number {
    // twice the high-water mark: within one step buffers of other size classes wait in the pool while live
    // ones are made, so a budget of the mark alone still recreated ~1.7 GB per GPT-2 training step (H100)
    return this.poolBudgetFixed ?? Math.max(DEFAULT_POOL_BUDGET, 2 * this.liveHighWater);
  }

  // ---------------------------------------------------------------------------- storage

  allocate(dtype: DType, size: number): Storage {
    return this.allocateFor(dtype, size, false);
  }

  private allocateFor(dtype: DType, size: number, upload: boolean): Storage {
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
    const buf = this.takeBuffer(bytes, upload);
    s.handle = buf;
    this.track(s, buf.size, () => this.giveBuffer(buf));
    if (this.stats.currentBytes > this.liveHighWater) this.liveHighWater = this.stats.currentBytes;
    if (this.poisonAllocations) this.write(buf, new Uint32Array(buf.size / 4).fill(0xffffffff));
    return s;
  }

  /**
   * A storage of `size` elements all equal to `value`: small ones uploaded, larger ones filled by a
   * kernel on the device (no host array, no upload — `zeros` of a gradient or a logits-sized buffer).
   */
  override fill(dtype: DType, size: number, value: number): Storage {
    if (size <= 1024) return super.fill(dtype, size, value);
    const s = this.allocateFor(dtype, size, false);
    let word: number;
    if (dtype === 'float32') word = new Uint32Array(new Float32Array([value]).buffer)[0]!;
    else if (dtype === 'float16') {
      const h = toHalfBits(value);
      word = (h | (h << 16)) >>> 0;
    } else if (dtype === 'bool') word = value ? 1 : 0;
    else word = value >>> 0; // int32 / uint32 bits
    const words = Math.ceil((size * gpuBytesPerElement(dtype)) / 4);
    const u = new Uint32Array([words, word, 0, 0]);
    this.dispatch(FILL_PROGRAM, [s], u.buffer, [Math.min(Math.ceil(words / 256), 65535), 1, 1]);
    return s;
  }

  /** Writes bytes into a buffer in order with the recorded work (a staged copy while work is queued). */
  private write(dst: GPUBuffer, data: ArrayBufferView): void {
    const bytes = data.byteLength;
    this.cnt.uploads++;
    this.cnt.uploadBytes += bytes;
    if (this.allocFailed.has(dst)) return; // its storage reports the allocation error when used
    if (!this.busy(dst) && !this.allocPending.has(dst)) {
      // no unsubmitted command references dst: writing now cannot overtake a use of its old contents
      this.gpu.queue.writeBuffer(dst, 0, data.buffer, data.byteOffset, bytes);
      return;
    }
    // staged through the batch's upload buffer and copied in order with the recorded work
    const copy = new Uint8Array(bytes);
    copy.set(new Uint8Array(data.buffer, data.byteOffset, bytes));
    this.queue.push({ kind: 'write', data: copy, dst, bytes, offset: 0 });
    this.useEpoch.set(dst, this.recording);
    this.schedule();
  }

  upload(dtype: DType, data: TypedArray): Storage {
    const s = this.allocateFor(dtype, data.length, true);
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
      let padded = bytes;
      if (len !== bytes.byteLength) {
        const p = new Uint8Array(len);
        p.set(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
        padded = p;
      }
      this.write(s.handle as GPUBuffer, padded);
    }
    return s;
  }

  /** The error that makes reads of `storage` fail, if a kernel that wrote it failed. */
  private errorOf(storage: Storage): WebattnError | undefined {
    const e = this.taint.get(storage) ?? (storage.handle ? this.allocFailed.get(storage.handle as GPUBuffer) : undefined);
    if (e) this.unreported = this.unreported.filter((u) => u !== e);
    return e;
  }

  async read(storage: Storage, offset: number, count: number): Promise<TypedArray> {
    const t0 = performance.now();
    try {
      return await this.readNow(storage, offset, count);
    } finally {
      this.cnt.readbacks++;
      this.cnt.readbackWaitMs += performance.now() - t0;
    }
  }

  private async readNow(storage: Storage, offset: number, count: number): Promise<TypedArray> {
    this.assertAlive();
    await this.flush();
    const general = await this.settleChecks();
    if (general) throw general;
    if (storage.handle) await this.settleAllocs([storage.handle as GPUBuffer]);
    this.assertAlive();
    const err = this.errorOf(storage);
    if (err) throw err;
    const bpe = gpuBytesPerElement(storage.dtype);
    const start = Math.floor((offset * bpe) / 4) * 4;
    const end = Math.ceil(((offset + count) * bpe) / 4) * 4;
    const out = allocTyped(storage.dtype, count);
    if (count === 0) return out;
    const staging = this.gpu.createBuffer({ size: end - start, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.gpu.createCommandEncoder({ label: 'readback' });
    enc.copyBufferToBuffer(storage.handle as GPUBuffer, start, staging, 0, end - start);
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

  /**
   * Waits until all recorded work has run. Rejects with the first kernel error not yet reported by a
   * read (`KERNEL_COMPILE` / `KERNEL_FAILED` naming the kernel), or `DEVICE_LOST`.
   */
  async sync(): Promise<void> {
    const t0 = performance.now();
    try {
      await this.syncNow();
    } finally {
      this.cnt.syncs++;
      this.cnt.syncWaitMs += performance.now() - t0;
    }
  }

  private async syncNow(): Promise<void> {
    this.assertAlive();
    await this.flush();
    try {
      await this.gpu.queue.onSubmittedWorkDone();
    } catch (e) {
      if (this.isLost) throw this.lostError(e);
      throw e;
    }
    if (this.isLost) throw this.lostError();
    const general = await this.settleChecks();
    if (general) throw general;
    const e = this.unreported.shift();
    if (e) throw e;
  }

  /**
   * Registers a check that runs on the GPU timeline (a validation kernel's flag read back, a shader's
   * compilation info). A `WebattnError` it resolves to makes reads of `outputs` fail (the tensors of the
   * call that was checked); a check without outputs is thrown at the next `read` or `sync`.
   */
  deferCheck(name: string, check: Promise<WebattnError | null>, outputs: readonly Storage[] = []): void {
    this.checks.push({ promise: check.catch(() => null), outputs });
    void name;
  }

  /** Reads one 32-bit word of `storage` (byte offset) after all work recorded so far (validation flags). */
  async readWord(storage: Storage, byteOffset: number): Promise<number> {
    this.cnt.readbacks++;
    await this.flush();
    const staging = this.gpu.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'flag' });
    const enc = this.gpu.createCommandEncoder({ label: 'flag' });
    enc.copyBufferToBuffer(storage.handle as GPUBuffer, byteOffset, staging, 0, 4);
    this.gpu.queue.submit([enc.finish()]);
    try {
      await staging.mapAsync(GPUMapMode.READ);
      return new Uint32Array(staging.getMappedRange().slice(0))[0]!;
    } finally {
      staging.destroy();
    }
  }

  /** Awaits the pending checks: taints their outputs, returns the first error of a check without outputs. */
  private async settleChecks(): Promise<WebattnError | null> {
    let general: WebattnError | null = null;
    while (this.checks.length) {
      const cs = this.checks.splice(0);
      const errs = await Promise.all(cs.map((c) => c.promise));
      cs.forEach((c, i) => {
        const e = errs[i];
        if (!e) return;
        if (!c.outputs.length) general ??= e;
        for (const s of c.outputs) if (!this.taint.has(s)) this.setTaint(s, e);
      });
    }
    return general;
  }

  // ---------------------------------------------------------------------------- pipelines

  private getPipeline(program: GpuProgram): PipelineEntry {
    const hit = this.pipelines.get(program.key);
    if (hit) return hit;
    const entries: GPUBindGroupLayoutEntry[] = program.bindings.map((a, i) => ({
      binding: i,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: a === 'read' ? 'read-only-storage' : 'storage' },
    }));
    if (program.uniform) {
      entries.push({ binding: entries.length, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } });
    }
    const t0 = performance.now();
    const stats = this.pipeStats;
    let ks = stats.byKernel.get(program.name);
    if (!ks) stats.byKernel.set(program.name, (ks = { created: 0, compileMs: 0 }));
    const kernelStats = ks;
    stats.created++;
    this.cnt.pipelinesCompiled++;
    kernelStats.created++;
    stats.pending++;
    const finished = () => {
      const ms = performance.now() - t0;
      stats.pending--;
      stats.compileMs += ms;
      kernelStats.compileMs += ms;
    };
    this.gpu.pushErrorScope('validation');
    const layout = this.gpu.createBindGroupLayout({ label: program.name, entries });
    const module = this.gpu.createShaderModule({ label: program.name, code: program.source() });
    const moduleScope = this.gpu.popErrorScope();
    const entry: PipelineEntry = { name: program.name, layoutId: this.nextId++, layout, pipeline: null, error: null, ready: Promise.resolve() };
    entry.ready = this.gpu
      .createComputePipelineAsync({
        label: program.name,
        layout: this.gpu.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: 'main' },
      })
      .then(
        (p) => {
          finished();
          entry.pipeline = p;
        },
        async (e: unknown) => {
          finished();
          const scopeErr = await moduleScope.catch(() => null);
          let detail = '';
          try {
            const info = await module.getCompilationInfo();
            detail = info.messages
              .filter((m) => m.type === 'error')
              .slice(0, 3)
              .map((m) => `${m.lineNum}:${m.linePos}: ${m.message}`)
              .join(' | ');
          } catch {
            // getCompilationInfo is missing on some implementations
          }
          if (!detail) detail = (scopeErr?.message ?? String((e as Error)?.message ?? e)).split('\n')[0]!;
          entry.error = new WebattnError('KERNEL_COMPILE', `kernel "${program.name}": failed to build: ${detail}`, { cause: e });
          // not cached: the next call recompiles (and fails at its own call if it still cannot build)
          if (this.pipelines.get(program.key) === entry) this.pipelines.delete(program.key);
        },
      );
    void moduleScope.catch(() => null);
    this.pipelines.set(program.key, entry);
    return entry;
  }

  // ---------------------------------------------------------------------------- dispatch

  /**
   * Records one dispatch of `program` over `storages` (binding order) with `uniforms` (a plain
   * ArrayBuffer laid out by the program). It is submitted with the other recorded work at the next
   * flush. If it fails (`KERNEL_COMPILE` / `KERNEL_FAILED` naming the kernel), reads of the storages it
   * writes (`read_write` bindings) reject, and so do reads of anything later computed from them.
   */
  dispatch(program: GpuProgram, storages: readonly Storage[], uniforms: ArrayBuffer | null, workgroups: [number, number, number]): void {
    this.assertAlive();
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    const [wx, wy, wz] = workgroups;
    if (wx > max || wy > max || wz > max) {
      throw new WebattnError(
        'LIMIT_EXCEEDED',
        `kernel "${program.name}": dispatch of ${workgroups.join('×')} workgroups exceeds maxComputeWorkgroupsPerDimension (${max})`,
      );
    }
    if (wx === 0 || wy === 0 || wz === 0) return;
    const n = storages.length;
    const buffers: GPUBuffer[] = new Array(n);
    const own: Storage[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const s = storages[i]!;
      if (s.disposed || !s.handle) {
        throw new WebattnError('TENSOR_DISPOSED', `kernel "${program.name}": binding ${i} is a disposed tensor`);
      }
      own[i] = s;
      buffers[i] = s.handle as GPUBuffer;
    }
    const allocErr = this.allocError(buffers);
    if (allocErr) throw allocErr;
    const entry = this.getPipeline(program);
    const rec = this.recording;
    for (let i = 0; i < n; i++) this.useEpoch.set(buffers[i]!, rec);
    const uniformSize = uniforms ? Math.ceil(Math.max(16, uniforms.byteLength) / 16) * 16 : 0;
    this.queue.push({ kind: 'dispatch', entry, storages: own, buffers, access: program.bindings, uniforms, uniformSize, workgroups });
    this.dispatchCount++;
    this.cnt.dispatches++;
    this.queuedDispatches++;
    const fb = this.flushBatchN;
    // a full chunk goes now when it can be submitted without waiting; else it stays recorded (one batch at the microtask)
    if (fb > 0 && this.queuedDispatches % fb === 0 && this.queuedDispatches < MAX_BATCH && !this.eagerRefused && this.trySubmitNow()) return;
    if (this.queuedDispatches >= MAX_BATCH) void this.flush();
    else this.schedule();
  }

  /** True when `c` binds one buffer twice with a writable binding among them (invalid in one dispatch). */
  private static aliased(c: DispatchCmd): boolean {
    const n = c.buffers.length;
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) if (c.buffers[i] === c.buffers[j] && (c.access[i] === 'read_write' || c.access[j] === 'read_write')) return true;
    }
    return false;
  }

  /**
   * Encodes and submits everything recorded, synchronously, when nothing needs waiting for: no submission in flight
   * (order), no profile, every pipeline built (or failed), every buffer's allocation check settled, every bind group
   * cached (validated when it was made), no dispatch binding a buffer twice writably, and the uniform ring big enough.
   * Returns false (and changes nothing) otherwise: the async path ({@link WebGPUDevice.submitBatch}) then handles it.
   * The submission's own validation verdict arrives later; should it reject the chunk, the chunk's outputs fail at their
   * reads (a deferred check).
   */
  private trySubmitNow(): boolean {
    const ok = this.submitNowIfReady();
    // what blocked it (a pipeline compiling, an allocation check, an in-flight batch) settles only asynchronously and
    // stays in the queue: no new attempt (each scans the queue) until the queue is handed on
    if (!ok) this.eagerRefused = true;
    return ok;
  }

  private submitNowIfReady(): boolean {
    const cmds = this.queue;
    if (!cmds.length || this.unsubmitted > 0 || this.prof || this.isLost || this.flushBatchN === 0) return false;
    const align = this.limits.minUniformBufferOffsetAlignment;
    let uniformBytes = 0;
    const plan: Step[] = [];
    const failed: [DispatchCmd, WebattnError][] = [];
    const pendingUni: [DispatchCmd, number][] = [];
    const missing: { step: { cmd: DispatchCmd; group: GPUBindGroup; offset: number }; key: string }[] = [];
    for (const c of cmds) {
      if (c.kind === 'write') {
        if (this.allocPending.has(c.dst)) return false;
        if (!this.allocFailed.has(c.dst)) plan.push(c);
        continue;
      }
      if (!c.entry.pipeline && !c.entry.error) return false;
      if (this.allocPending.size) for (const b of c.buffers) if (this.allocPending.has(b)) return false;
      const inErr = this.inputError(c);
      if (inErr) {
        failed.push([c, inErr]);
        continue;
      }
      if (WebGPUDevice.aliased(c)) return false;
      let off = 0;
      if (c.uniforms) {
        off = uniformBytes;
        uniformBytes += Math.ceil(c.uniformSize / align) * align;
        pendingUni.push([c, off]);
      }
      const key = this.groupKey(c);
      const group = this.groupCache.get(key);
      const step = { cmd: c, group: group!, offset: off };
      if (!group) missing.push({ step, key });
      plan.push(step);
    }
    if (uniformBytes && (!this.uniformRing || this.uniformRing.size < uniformBytes)) return false;
    // committed: from here on this batch is submitted now
    this.queue = [];
    this.queuedDispatches = 0;
    this.eagerRefused = false;
    for (const [c, e] of failed) this.fail(c, e);
    for (const st of plan) if (!('kind' in st)) this.cnt.bindGroupHits++;
    // bind groups not cached yet are made now and used without awaiting their validation: their buffers are settled,
    // valid and within the limits, and aliasing was ruled out above, so nothing is expected to fail; should the scope
    // still report an error, the groups leave the cache and the chunk's outputs fail at their reads (the check below)
    let groupScope: Promise<GPUError | null> = Promise.resolve(null);
    if (missing.length) {
      this.gpu.pushErrorScope('validation');
      const made = new Map<string, GPUBindGroup>();
      for (const { step, key } of missing) {
        this.cnt.bindGroupHits--;
        let g = made.get(key);
        if (!g) {
          this.cnt.bindGroupsCreated++;
          g = this.makeGroup(step.cmd, this.uniformRing);
          made.set(key, g);
        } else this.cnt.bindGroupHits++;
        step.group = g;
      }
      groupScope = this.gpu.popErrorScope().catch((e: unknown) => e as GPUError);
      this.cacheGroups(made, missing.map(({ step, key }) => ({ key, buffers: step.cmd.buffers })));
      void groupScope.then((e) => {
        if (e) for (const k of made.keys()) this.groupCache.delete(k);
      });
    }
    this.writeUploadsAndUniforms(cmds, uniformBytes, pendingUni);
    const id = this.recording++;
    const submitVerdict = this.submitSteps(plan, null);
    const verdict = Promise.all([groupScope, submitVerdict]).then(([a, b]) => a ?? b);
    this.eagerSubmitCount++;
    this.submitted = id;
    this.releaseDeferred();
    // a clean verdict removes its check again, so a long loop without reads keeps none of them. The chunk's outputs
    // and kernel names are gathered only when it failed (settleChecks reads `outputs` after the promise settles)
    const check: { promise: Promise<WebattnError | null>; outputs: readonly Storage[] } = { promise: Promise.resolve(null), outputs: [] };
    check.promise = verdict.then(
      (e) => {
        if (!e) {
          const i = this.checks.indexOf(check);
          if (i >= 0) this.checks.splice(i, 1);
          return null;
        }
        const outputs: Storage[] = [];
        for (const st of plan) if (!('kind' in st)) st.cmd.storages.forEach((o, i) => st.cmd.access[i] === 'read_write' && outputs.push(o));
        check.outputs = outputs;
        const names = [...new Set(plan.flatMap((st) => ('kind' in st ? [] : [`"${st.cmd.entry.name}"`])))].join(', ');
        return new WebattnError('KERNEL_FAILED', `kernels ${names}: a batch submission failed: ${String(e.message).split('\n')[0]}`);
      },
      () => null,
    );
    this.checks.push(check);
    return true;
  }

  /** A new bind group of a dispatch: its buffers, then (with uniforms) the uniform ring at a dynamic offset. */
  private makeGroup(c: DispatchCmd, ring: GPUBuffer | null): GPUBindGroup {
    const bindings: GPUBindGroupEntry[] = c.buffers.map((b, i) => ({ binding: i, resource: { buffer: b } }));
    // the uniform binding starts at 0: each dispatch passes its offset in the ring dynamically
    if (c.uniforms) bindings.push({ binding: c.buffers.length, resource: { buffer: ring!, offset: 0, size: c.uniformSize } });
    return this.gpu.createBindGroup({ label: c.entry.name, layout: c.entry.layout, entries: bindings });
  }

  /** Caches new bind groups by key and remembers, per buffer, the keys that use it (evicted when it is destroyed). */
  private cacheGroups(made: Map<string, GPUBindGroup>, uses: readonly { key: string; buffers: readonly GPUBuffer[] }[]): void {
    if (this.groupCache.size + made.size > 8192) this.clearGroups();
    for (const [key, g] of made) {
      this.groupCache.set(key, g);
      const u = uses.find((x) => x.key === key);
      if (!u) continue;
      for (const b of new Set(u.buffers)) {
        const l = this.groupKeysOf.get(b);
        if (l) l.push(key);
        else this.groupKeysOf.set(b, [key]);
      }
    }
  }

  /** Cache key of a dispatch's bind group: layout, buffers, uniform binding size. */
  private groupKey(c: DispatchCmd): string {
    let k = `${c.entry.layoutId}|${c.uniformSize}|`;
    const bs = c.buffers;
    for (let i = 0; i < bs.length; i++) k += `${this.bufferId(bs[i]!)},`;
    return k;
  }

  /** Destroys deferred buffers that no unsubmitted command references any more. */
  private releaseDeferred(): void {
    if (!this.deferredDestroy.length) return;
    const still = this.deferredDestroy.filter((b) => this.busy(b));
    for (const b of this.deferredDestroy) if (!this.busy(b)) this.destroyNow(b);
    this.deferredDestroy = still;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  /** Submits everything recorded so far; resolves once it is submitted (not finished). */
  flush(): Promise<void> {
    const cmds = this.queue;
    if (!cmds.length) return this.chain;
    if (this.trySubmitNow()) return this.chain;
    this.queue = [];
    this.queuedDispatches = 0;
    this.eagerRefused = false;
    this.unsubmitted++;
    const id = this.recording++;
    const p = this.chain.then(() => this.submitBatch(cmds)).finally(() => {
      this.unsubmitted--;
      this.submitted = id;
      this.releaseDeferred();
    });
    this.chain = p.catch(() => undefined);
    return this.chain;
  }

  private fail(cmd: DispatchCmd, err: WebattnError): void {
    let any = false;
    cmd.storages.forEach((s, i) => {
      if (cmd.access[i] === 'read_write' && !this.taint.has(s)) {
        this.setTaint(s, err);
        any = true;
      }
    });
    if (any && !this.unreported.includes(err)) {
      this.unreported.push(err);
      if (this.unreported.length > 32) this.unreported.shift();
    }
  }

  private async submitBatch(cmds: Cmd[]): Promise<void> {
    try {
      const entries = new Set<PipelineEntry>();
      for (const c of cmds) if (c.kind === 'dispatch') entries.add(c.entry);
      await Promise.all([...entries].map((e) => e.ready));
      if (this.allocPending.size) await this.settleAllocs(cmds.flatMap((c) => (c.kind === 'dispatch' ? c.buffers : [c.dst])));
      if (this.isLost) {
        const err = this.lostError();
        for (const c of cmds) if (c.kind === 'dispatch') this.fail(c, err);
        return;
      }
      // drop dispatches whose pipeline failed or whose inputs hold a failed kernel's output
      type Ready = { cmd: DispatchCmd; group: GPUBindGroup | null; scope: Promise<GPUError | null> | null };
      const plan: (Ready | WriteCmd)[] = [];
      const align = this.limits.minUniformBufferOffsetAlignment;
      let uniformBytes = 0;
      const offsets = new Map<DispatchCmd, number>();
      for (const c of cmds) {
        if (c.kind === 'write') {
          if (!this.allocFailed.has(c.dst)) plan.push(c);
          continue;
        }
        const inErr = this.inputError(c);
        if (inErr) {
          this.fail(c, inErr);
          continue;
        }
        if (c.uniforms) {
          offsets.set(c, uniformBytes);
          uniformBytes += Math.ceil(c.uniformSize / align) * align;
        }
        plan.push({ cmd: c, group: null, scope: null });
      }
      const ring = this.writeUploadsAndUniforms(cmds, uniformBytes, offsets);
      const makeGroup = (c: DispatchCmd): GPUBindGroup => this.makeGroup(c, ring);
      const keyOf = (c: DispatchCmd) => this.groupKey(c);
      // cached bind groups are reused; new ones get one error scope for the batch (one each only when it caught
      // something). A batch of cache hits creates nothing and awaits no scope (flushBatch 0: the old way, always)
      const created: { r: Ready; key: string }[] = [];
      const legacy = this.flushBatchN === 0;
      let scoped = legacy;
      if (legacy) this.gpu.pushErrorScope('validation');
      for (const r of plan) {
        if ('kind' in r) continue;
        const key = keyOf(r.cmd);
        const hit = this.groupCache.get(key);
        if (hit) {
          r.group = hit;
          this.cnt.bindGroupHits++;
        } else {
          this.cnt.bindGroupsCreated++;
          if (!scoped) {
            this.gpu.pushErrorScope('validation');
            scoped = true;
          }
          r.group = makeGroup(r.cmd);
          created.push({ r, key });
        }
      }
      const anyGroupErr = scoped ? await this.gpu.popErrorScope().catch((e: unknown) => e as GPUError) : null;
      let groupErrs: (GPUError | null)[] = plan.map(() => null);
      if (anyGroupErr) {
        for (const { r } of created) {
          this.gpu.pushErrorScope('validation');
          r.group = makeGroup(r.cmd);
          r.scope = this.gpu.popErrorScope();
        }
        groupErrs = await Promise.all(plan.map((r) => ('kind' in r || !r.scope ? null : r.scope.catch((e: unknown) => e as GPUError))));
      }
      const made = new Map<string, GPUBindGroup>();
      for (const { r, key } of created) {
        if (anyGroupErr && groupErrs[plan.indexOf(r)]) continue;
        if (made.has(key)) continue;
        made.set(key, r.group!);
      }
      this.cacheGroups(
        made,
        created.map(({ r, key }) => ({ key, buffers: r.cmd.buffers })),
      );
      const steps: Step[] = [];
      plan.forEach((r, i) => {
        if ('kind' in r) {
          steps.push(r);
          return;
        }
        const ge = groupErrs[i];
        if (ge) this.fail(r.cmd, new WebattnError('KERNEL_FAILED', `kernel "${r.cmd.entry.name}": dispatch failed: ${String(ge.message).split('\n')[0]}`));
        else steps.push({ cmd: r.cmd, group: r.group!, offset: offsets.get(r.cmd) ?? 0 });
      });
      const err = await this.encodeAndSubmit(steps);
      if (err) {
        // the batch was rejected as a whole and nothing in it ran: replay it one command at a time so
        // the failing dispatch (and what depends on it) is the only one that fails
        for (const step of steps) {
          const e = await this.encodeAndSubmit([step]);
          if (e && !('kind' in step)) {
            this.fail(step.cmd, new WebattnError('KERNEL_FAILED', `kernel "${step.cmd.entry.name}": dispatch failed: ${e.message.split('\n')[0]}`));
          }
        }
      }
    } catch (e) {
      // an unexpected failure must not leave the outputs looking valid
      const err = e instanceof WebattnError ? e : new WebattnError('KERNEL_FAILED', `batch submission failed: ${String((e as Error)?.message ?? e)}`, { cause: e });
      for (const c of cmds) if (c.kind === 'dispatch') this.fail(c, err);
    }
  }

  /**
   * Submits steps: one command buffer (or, while a `serialized` profile runs, one per dispatch, each
   * awaited and timed) and returns the batch's validation error.
   */
  private async encodeAndSubmit(steps: Step[]): Promise<GPUError | null> {
    const prof = this.prof;
    if (!prof) return this.submitSteps(steps, null);
    if (prof.timing === 'timestamp-query') return this.submitSteps(steps, prof);
    // serialized: each dispatch (with the writes before it) submitted alone and waited for
    let group: Step[] = [];
    for (const st of steps) {
      group.push(st);
      if ('kind' in st) continue;
      const t0 = performance.now();
      const e = await this.submitSteps(group, null);
      await this.gpu.queue.onSubmittedWorkDone().catch(() => undefined);
      group = [];
      if (e) this.fail(st.cmd, new WebattnError('KERNEL_FAILED', `kernel "${st.cmd.entry.name}": dispatch failed: ${e.message.split('\n')[0]}`));
      else this.profAdd(prof, st.cmd.entry.name, (performance.now() - t0) * 1e6);
    }
    return group.length ? this.submitSteps(group, null) : null;
  }

  private profAdd(prof: ProfileState, name: string, ns: number): void {
    const e = prof.byName.get(name);
    if (e) {
      e.count++;
      e.ns += ns;
    } else prof.byName.set(name, { count: 1, ns });
  }

  /**
   * Encodes steps into one command buffer (dispatches in one compute pass, copies between passes;
   * with a timestamp profile, one pass per dispatch with GPU timestamps at its start and end),
   * skipping dispatches whose inputs a failed kernel wrote, submits it and returns its validation error.
   */
  private async submitSteps(steps: Step[], prof: ProfileState | null): Promise<GPUError | null> {
    this.gpu.pushErrorScope('validation');
    const enc = this.gpu.createCommandEncoder({ label: 'webattn batch' });
    let pass: GPUComputePassEncoder | null = null;
    const nDispatch = prof ? steps.reduce((n, st) => n + ('kind' in st ? 0 : 1), 0) : 0;
    const qs = nDispatch ? this.gpu.createQuerySet({ type: 'timestamp', count: 2 * nDispatch }) : null;
    const names: string[] = [];
    for (const st of steps) {
      if ('kind' in st) {
        pass?.end();
        pass = null;
        enc.copyBufferToBuffer(this.uploadRing!, st.offset, st.dst, 0, st.bytes);
        continue;
      }
      const c = st.cmd;
      const err = this.taintOf(c.storages);
      if (err) {
        this.fail(c, err);
        continue;
      }
      if (qs) {
        pass?.end();
        const i = names.length;
        names.push(c.entry.name);
        pass = enc.beginComputePass({ label: c.entry.name, timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
      }
      pass ??= enc.beginComputePass({ label: 'webattn batch' });
      pass.setPipeline(c.entry.pipeline!);
      if (c.uniforms) pass.setBindGroup(0, st.group, [st.offset]);
      else pass.setBindGroup(0, st.group);
      pass.dispatchWorkgroups(c.workgroups[0], c.workgroups[1], c.workgroups[2]);
    }
    (pass as GPUComputePassEncoder | null)?.end();
    let afterSubmit: (() => void) | null = null;
    if (qs && prof && names.length) {
      const bytes = 16 * names.length;
      const resolveBuf = this.gpu.createBuffer({ label: 'webattn timestamps', size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      const rb = this.gpu.createBuffer({ label: 'webattn timestamps read', size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      enc.resolveQuerySet(qs, 0, 2 * names.length, resolveBuf, 0);
      enc.copyBufferToBuffer(resolveBuf, 0, rb, 0, bytes);
      const release = () => {
        rb.destroy();
        resolveBuf.destroy();
        qs.destroy();
      };
      afterSubmit = () =>
        prof.pending.push(
          rb.mapAsync(GPUMapMode.READ).then(() => {
            const t = new BigUint64Array(rb.getMappedRange().slice(0));
            names.forEach((name, i) => {
              const ns = Number(t[2 * i + 1]! - t[2 * i]!);
              // a zero or wrapped pair (an unwritten query) is not a measurement
              if (ns >= 0 && ns < 1e12) this.profAdd(prof, name, ns);
            });
            rb.unmap();
            release();
          }, release),
        );
    } else qs?.destroy();
    this.gpu.queue.submit([enc.finish()]);
    afterSubmit?.(); // maps the timestamps only once the copy into them is submitted
    this.cnt.submits++;
    this.submitCount++;
    return this.gpu.popErrorScope().catch((e: unknown) => e as GPUError);
  }

  // ---------------------------------------------------------------------------- counters and profiling

  /**
   * Host-side work counters since the device was made (a snapshot; see {@link DeviceCounters}).
   *
   * @example
   * const c0 = device.counters(); await model.forward(batch); await device.sync();
   * const made = device.counters().buffersCreated - c0.buffersCreated; // 0 once the pool is warm
   */
  counters(): DeviceCounters {
    return { ...this.cnt };
  }

  /** True while a profile started by {@link WebGPUDevice.startProfile} runs. */
  get profiling(): boolean {
    return this.prof !== null;
  }

  /**
   * Starts timing every dispatch until {@link WebGPUDevice.stopProfile}: with GPU timestamps when the
   * device has `timestamp-query` (`timing: 'auto'`, the default, or `'timestamp-query'`), else by
   * submitting each dispatch alone and waiting for it (`'serialized'`: slow, ratios only). Work
   * recorded before the call is flushed first and not counted. Throws `INVALID_ARGUMENT` when a
   * profile already runs, for `'timestamp-query'` on a device without it, and for another timing.
   * Prefer the `profile(device, fn)` helper.
   *
   * @example
   * await device.startProfile(); await model.forward(batch); const p = await device.stopProfile();
   */
  async startProfile(options: { timing?: 'auto' | 'timestamp-query' | 'serialized' } = {}): Promise<void> {
    this.assertAlive();
    const want = options.timing ?? 'auto';
    if (want !== 'auto' && want !== 'timestamp-query' && want !== 'serialized') {
      throw new WebattnError('INVALID_ARGUMENT', `options.timing: expected 'auto', 'timestamp-query' or 'serialized', got ${String(want)}`, { argument: 'options.timing' });
    }
    if (this.prof) throw new WebattnError('INVALID_ARGUMENT', 'startProfile: a profile is already running on this device (call stopProfile first)');
    const ts = this.hasFeature('timestamp-query');
    if (want === 'timestamp-query' && !ts) {
      throw new WebattnError('INVALID_ARGUMENT', `options.timing: 'timestamp-query' needs the feature, which adapter "${this.info.adapter}" lacks (use 'serialized')`, {
        argument: 'options.timing',
      });
    }
    await this.flush();
    await this.chain;
    this.prof = { timing: want === 'serialized' || !ts ? 'serialized' : 'timestamp-query', t0: performance.now(), counters0: this.counters(), byName: new Map(), pending: [] };
  }

  /**
   * Ends the profile: waits for the recorded work and its timestamps, and returns per-kernel GPU time
   * (most first) and the host counters of the window. Throws `INVALID_ARGUMENT` when no profile runs.
   */
  async stopProfile(): Promise<DeviceProfile> {
    const prof = this.prof;
    if (!prof) throw new WebattnError('INVALID_ARGUMENT', 'stopProfile: no profile is running on this device (call startProfile first)');
    try {
      await this.flush();
      await this.chain;
      await this.gpu.queue.onSubmittedWorkDone().catch(() => undefined);
      await Promise.all(prof.pending);
    } finally {
      this.prof = null;
    }
    const wallMs = performance.now() - prof.t0;
    const now = this.counters();
    const counters = { ...now };
    for (const k of Object.keys(now) as (keyof DeviceCounters)[]) counters[k] = now[k] - prof.counters0[k];
    let total = 0;
    for (const v of prof.byName.values()) total += v.ns;
    const kernels: KernelProfile[] = [...prof.byName]
      .map(([name, v]) => ({ name, count: v.count, gpuMs: v.ns / 1e6, meanUs: v.ns / 1e3 / v.count, share: total ? v.ns / total : 0 }))
      .sort((a, b) => b.gpuMs - a.gpuMs);
    return { timing: prof.timing, wallMs, gpuMs: total / 1e6, kernels, counters };
  }

  /**
   * Writes a batch's staged uploads into the upload buffer (setting each write's offset) and its uniforms into the
   * uniform ring at `offsets`; returns the ring.
   */
  private writeUploadsAndUniforms(cmds: Cmd[], uniformBytes: number, offsets: Iterable<[DispatchCmd, number]>): GPUBuffer | null {
    let uploadBytes = 0;
    for (const c of cmds) {
      if (c.kind !== 'write') continue;
      c.offset = uploadBytes;
      uploadBytes += Math.ceil(c.bytes / 4) * 4;
    }
    if (uploadBytes) {
      const up = this.uploads(uploadBytes);
      const data = new Uint8Array(uploadBytes);
      for (const c of cmds) if (c.kind === 'write') data.set(c.data, c.offset);
      this.gpu.queue.writeBuffer(up, 0, data);
    }
    const ring = this.ring(uniformBytes);
    if (ring && uniformBytes) {
      // one reused host array (writeBuffer copies it at the call); the bytes between a dispatch's uniforms and the
      // next aligned offset are never read
      if (this.uniformScratch.byteLength < uniformBytes) this.uniformScratch = new Uint8Array(2 ** Math.ceil(Math.log2(uniformBytes)));
      const data = this.uniformScratch;
      for (const [c, off] of offsets) data.set(new Uint8Array(c.uniforms!), off);
      this.gpu.queue.writeBuffer(ring, 0, data.buffer, 0, uniformBytes);
      this.cnt.uniformBytes += uniformBytes;
    }
    return ring;
  }

  /** The pooled upload staging buffer, grown to hold `bytes`. */
  private uploads(bytes: number): GPUBuffer {
    if (!this.uploadRing || this.uploadRing.size < bytes) {
      this.uploadRing?.destroy(); // previous submissions keep it until they finish
      const size = 2 ** Math.ceil(Math.log2(Math.max(bytes, 64 * 1024)));
      this.uploadRing = this.gpu.createBuffer({ label: 'webattn uploads', size, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    }
    return this.uploadRing;
  }

  /** The pooled uniform buffer, grown to hold `bytes`. */
  private clearGroups(): void {
    this.groupCache.clear();
    this.groupKeysOf.clear();
  }

  private ring(bytes: number): GPUBuffer | null {
    if (!bytes) return this.uniformRing;
    if (!this.uniformRing || this.uniformRing.size < bytes) {
      this.clearGroups(); // cached bind groups point at the old ring
      this.uniformRing?.destroy(); // previous submissions keep it until they finish
      const size = 2 ** Math.ceil(Math.log2(Math.max(bytes, 64 * 1024)));
      this.uniformRing = this.gpu.createBuffer({ label: 'webattn uniforms', size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    }
    return this.uniformRing;
  }

  destroy(): void {
    if (!this.isLost) {
      this.queue = [];
      this.trimPool(0);
      for (const b of this.deferredDestroy.splice(0)) b.destroy();
      this.clearGroups();
      this.uniformRing?.destroy();
      this.uniformRing = null;
      this.uploadRing?.destroy();
      this.uploadRing = null;
      this.pipelines.clear();
      this.gpu.destroy();
    }
    this.isLost = true;
    this.onDestroy();
    this.keepAlive.length = 0;
  }
}
