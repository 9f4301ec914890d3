import type { Device } from './device.js';
import { WebattnError } from './errors.js';
import type { Tensor } from './tensor.js';

/** Attributes passed to a kernel (plain data). */
export type KernelAttrs = Record<string, unknown>;

/** A kernel implementation for one backend: inputs on `device`, returns output tensor(s). */
export type KernelFn = (inputs: readonly Tensor[], attrs: KernelAttrs, device: Device) => Tensor | Tensor[];

/** One registry entry. */
export interface KernelConfig {
  /** Op name, e.g. `binary`, `matmul`, `softmax`. */
  name: string;
  /** Backend key: `cpu` or `webgpu`. */
  backend: 'cpu' | 'webgpu';
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

/** Runs kernel `name` on `device`; throws `KERNEL_NOT_REGISTERED` with a hint when it is missing. */
export function runKernel(name: string, device: Device, inputs: readonly Tensor[], attrs: KernelAttrs = {}): Tensor[] {
  device.assertAlive();
  const cfg = registry.get(k(name, device.backend));
  if (!cfg) {
    const hint = device.backend === 'webgpu' ? " (import '@webattn/kernels-webgpu' to register the WebGPU kernels)" : '';
    throw new WebattnError('KERNEL_NOT_REGISTERED', `no '${name}' kernel is registered for backend '${device.backend}'${hint}`);
  }
  const out = cfg.fn(inputs, attrs, device);
  return Array.isArray(out) ? out : [out];
}
