/**
 * `@webattn/kernels-wasm`: webattn's fast CPU backend. Importing it registers the `wasm` backend with
 * core-tensor's `getDevice()` — WebAssembly SIMD kernels (matmul, flash attention forward and backward,
 * elementwise ops, reductions, softmax, layer norm, GELU and cross-entropy with their backward kernels) on a
 * thread pool (worker_threads in Node, Web Workers in cross-origin isolated pages) — ranked between a hardware
 * GPU and a software WebGPU rasterizer. Ops without a wasm kernel run the CPU reference kernels on the same memory.
 *
 * @example
 * import { getDevice } from '@webattn/core-tensor';
 * import '@webattn/kernels-wasm';
 * const device = await getDevice({ kind: 'wasm' }); // or getDevice() on a machine without a GPU
 *
 * @packageDocumentation
 */
import './kernels.js';
import './elementwise.js';

export { WasmDevice, wasmBackend } from './device.js';
export { WasmPool, type WasmPoolOptions } from './pool.js';
export { minParallelElements } from './elementwise.js';
export type { WasmAttentionAttrs } from './kernels.js';
export {
  matmulRaw,
  attentionForwardRaw,
  attentionBackwardRaw,
  denseStrides,
  packedStrides,
  type RawAttention,
  type RawStrides,
} from './raw.js';
