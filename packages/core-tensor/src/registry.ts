import type { Device } from './device.js';
import type { DType } from './dtype.js';
import { WebattnError } from './errors.js';
import type { GetDeviceOptions } from './get-device.js';
import type { Tensor } from './tensor.js';

/** Attributes passed to a kernel (plain data). */
export type KernelAttrs = Record<string, unknown>;

/**
 * Attributes of each built-in kernel, by kernel name: `runKernel('softmax', device, [x], { log: true })`
 * is type-checked against this map. Packages that add kernels extend it by declaration merging:
 *
 * @example
 * declare module '@webattn/core-tensor' { interface KernelAttrMap { my_op: { alpha: number } } }
 * runKernel('my_op', device, [x], { alpha: 2 });
 */
export interface KernelAttrMap {
  unary: { op: string; p?: number; outDtype?: DType };
  copy_into: Record<string, never>;
  binary: { op: string; shape: readonly number[] };
  where: { shape: readonly number[] };
  gelu_backward: { approximate: string };
  reduce: { op: string; axis: number };
  softmax: { log: boolean };
  layer_norm: { eps: number; hasWeight: boolean; hasBias: boolean };
  layer_norm_backward: { hasWeight: boolean };
  matmul: Record<string, never>;
  embedding: Record<string, never>;
  embedding_backward: { numEmbeddings: number };
  cross_entropy: { ignoreIndex: number };
  cross_entropy_backward: { ignoreIndex: number };
  flash_attention: FlashKernelAttrs;
  flash_attention_backward: FlashKernelAttrs;
}

/**
 * Attributes of the `flash_attention` / `flash_attention_backward` kernels that backends other than
 * WebGPU (whose generator takes hooks the front doors build) may register, e.g. the wasm backend.
 * Forward inputs `[q, k, v, mask?, cuQ?, cuK?]` → `[out, lse]`; backward inputs
 * `[q, k, v, out, dout, lse, mask?, cuQ?, cuK?]` → `[dq, dk, dv]`. Dense q `[B, Hq, Lq, E]`, k/v
 * `[B, Hkv, Lkv, E|Ev]`, lse `[B, Hq, Lq]`; with `varlen` packed q `[Tq, Hq, E]`, k/v `[Tk, Hkv, E|Ev]`,
 * int32 cu_seqlens `[B+1]`, lse `[Hq, Tq]`. Float32; query head h reads key/value head ⌊h / (Hq/Hkv)⌋.
 */
export interface FlashKernelAttrs {
  /** Multiplies q·k before the mask. */
  scale: number;
  /** Causal: key j visible to query i iff j ≤ i + causalOffset (dense) or j ≤ i + Lk_b − Lq_b (varlen). */
  causal: boolean;
  /** Diagonal offset of the causal mask in the dense layout (0 = PyTorch's top-left). */
  causalOffset: number;
  /** Kind of the mask input (`bool`: true = attend; `float`: additive; broadcast to [B, Hq, Lq, Lkv]), or null. */
  maskKind: 'bool' | 'float' | null;
  /** Packed varlen layout: the cu_seqlens inputs follow the mask. */
  varlen: boolean;
}

/** Attributes of kernel `N`: its {@link KernelAttrMap} entry, or any {@link KernelAttrs} for a kernel not in the map. */
export type AttrsOf<N extends string> = N extends keyof KernelAttrMap ? KernelAttrMap[N] : KernelAttrs;

/** A kernel implementation for one backend: inputs on `device`, returns output tensor(s). */
export type KernelFn = (inputs: readonly Tensor[], attrs: KernelAttrs, device: Device) => Tensor | Tensor[];

/** One registry entry. */
export interface KernelConfig {
  /** Op name, e.g. `binary`, `matmul`, `softmax`. */
  name: string;
  /** Backend key: `cpu`, `webgpu`, or another registered backend's name. */
  backend: string;
  /** The implementation. */
  fn: KernelFn;
}

const registry = new Map<string, KernelConfig>();
const k = (name: string, backend: string) => `${name}@${backend}`;

/** Registers (or replaces) a kernel for (name, backend), TF.js style. */
export function registerKernel(config: KernelConfig): void {
  registry.set(k(config.name, config.backend), config);
}

/** Looks a kernel up; undefined when none is registered. */
export function getKernel(name: string, backend: string): KernelConfig | undefined {
  return registry.get(k(name, backend));
}

/** Names of the kernels registered for a backend. */
export function listKernels(backend: string): string[] {
  return [...registry.values()].filter((c) => c.backend === backend).map((c) => c.name);
}

/**
 * Runs kernel `name` on `device`. When `device.backend` has no such kernel and the device names a
 * `kernelFallback` backend, that backend's kernel runs on the same device. Throws
 * `KERNEL_NOT_REGISTERED` with a hint when neither exists.
 *
 * @example
 * const [y] = runKernel('softmax', x.device, [x], { log: false });
 */
export function runKernel<N extends string>(name: N, device: Device, inputs: readonly Tensor[], attrs?: AttrsOf<N>): Tensor[] {
  device.assertAlive();
  const cfg = registry.get(k(name, device.backend)) ?? (device.kernelFallback ? registry.get(k(name, device.kernelFallback)) : undefined);
  if (!cfg) {
    const hint = registeredBackends.has(device.backend) ? '' : ` (import the package of backend '${device.backend}' to register its kernels)`;
    const fb = device.kernelFallback ? ` or its fallback '${device.kernelFallback}'` : '';
    throw new WebattnError('KERNEL_NOT_REGISTERED', `no '${name}' kernel is registered for backend '${device.backend}'${fb}${hint}`);
  }
  const out = cfg.fn(inputs, (attrs ?? {}) as KernelAttrs, device);
  return Array.isArray(out) ? out : [out];
}

// ------------------------------------------------------------------------------ backends

/**
 * A device backend as a plugin (TF.js `registerBackend` style): a package registers one when
 * imported, and `getDevice()` asks the registered factories in priority order.
 *
 * @example
 * registerBackend({ name: 'mine', priority: 50, create: async () => new MyDevice() });
 * const d = await getDevice({ kind: 'mine' });
 */
export interface BackendFactory {
  /** Registry key and `Device.backend`, e.g. `webgpu`, `wasm` (not `cpu` or `auto`). */
  name: string;
  /** `auto` tries higher first (WebGPU registers 100 for hardware adapters). */
  priority: number;
  /**
   * Priority of this backend's software devices (software rasterizers): when set, `auto` first calls
   * `create` with `allowSoftware: false` at `priority`, then again with `allowSoftware: true` at this
   * priority, so another backend (e.g. wasm) can rank between a hardware GPU and a software one.
   */
  softwarePriority?: number;
  /**
   * Creates a device. Returns null, or throws an Error whose message says why, when the backend is
   * unavailable. `options.allowSoftware === false` asks for hardware only.
   */
  create(options: GetDeviceOptions): Promise<Device | null>;
}

const backends = new Map<string, BackendFactory>();
const registeredBackends = new Set<string>(['cpu']);

/**
 * Registers (or replaces) a device backend. Throws `INVALID_ARGUMENT` for a reserved or empty name
 * or a non-finite priority.
 *
 * @example
 * registerBackend({ name: 'wasm', priority: 50, create: async () => new WasmDevice() });
 */
export function registerBackend(factory: BackendFactory): void {
  const name = factory?.name;
  if (typeof name !== 'string' || !/^[a-z][a-z0-9-]*$/.test(name) || name === 'cpu' || name === 'auto') {
    throw new WebattnError('INVALID_ARGUMENT', `factory.name: expected a lower-case name other than 'cpu' and 'auto', got ${JSON.stringify(name)}`, {
      argument: 'factory.name',
    });
  }
  for (const key of ['priority', 'softwarePriority'] as const) {
    const v = factory[key];
    if ((key === 'priority' || v !== undefined) && (typeof v !== 'number' || !Number.isFinite(v))) {
      throw new WebattnError('INVALID_ARGUMENT', `factory.${key}: expected a finite number, got ${String(v)}`, { argument: `factory.${key}` });
    }
  }
  if (typeof factory.create !== 'function') {
    throw new WebattnError('INVALID_ARGUMENT', `factory.create: expected a function, got ${typeof factory.create}`, { argument: 'factory.create' });
  }
  backends.set(name, factory);
  registeredBackends.add(name);
}

/** Names of the registered device backends, highest priority first (`cpu`, always present, last). */
export function listBackends(): string[] {
  return [...backends.values()].sort((a, b) => b.priority - a.priority).map((f) => f.name).concat('cpu');
}

/** The registered factory of a backend (internal to `getDevice`). */
export function getBackendFactory(name: string): BackendFactory | undefined {
  return backends.get(name);
}

/** Every registered factory (internal to `getDevice`). */
export function backendFactories(): BackendFactory[] {
  return [...backends.values()];
}
