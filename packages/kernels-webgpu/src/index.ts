/**
 * `@webattn/kernels-webgpu`: the WGSL kernels of every webattn op, registered under the `webgpu`
 * backend of the core-tensor kernel registry when this module is imported, and
 * `scaledDotProductAttention` (PyTorch SDPA semantics). The attention generator and WGSL helpers that
 * the other front doors build on live in `@webattn/kernels-webgpu/internal` (not public API).
 *
 * @packageDocumentation
 */
import './basic-kernels.js';

export {
  scaledDotProductAttention,
  sdpaKernel,
  lastSdpaBackend,
  type SdpaBackend,
  type SdpaOptions,
  type SdpaWithLse,
} from './attention/sdpa.js';
