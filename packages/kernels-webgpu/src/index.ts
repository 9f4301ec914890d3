/**
 * `@webattn/kernels-webgpu`: the WGSL kernels of every webattn op, registered under the `webgpu`
 * backend of the core-tensor kernel registry when this module is imported, the WebGPU device (Dawn in
 * Node, `navigator.gpu` in browsers) registered as the `webgpu` backend of `getDevice()`, and
 * `scaledDotProductAttention` (PyTorch SDPA semantics). The attention generator and WGSL helpers that
 * the other front doors build on live in `@webattn/kernels-webgpu/internal` (not public API).
 *
 * @packageDocumentation
 */
/// <reference types="@webgpu/types" preserve="true" />
import './device/backend.js';
import './basic-kernels.js';
import './matmul.js';

export {
  WebGPUDevice,
  tierOf,
  type GpuProgram,
  type BindingAccess,
  type DeviceCaps,
  type DeviceCounters,
  type DeviceProfile,
  type KernelProfile,
  type KernelPipelineStats,
  type PipelineStats,
  type SubgroupMatrixConfig,
  type WebGPUDeviceOptions,
} from './device/webgpu-device.js';
export { profile, formatProfile, type ProfileResult } from './profile.js';
export { createWebGPUDevice, webgpuBackend, WANTED_FEATURES, type WebGPURoute } from './device/backend.js';
export {
  scaledDotProductAttention,
  sdpaKernel,
  lastSdpaBackend,
  type SdpaBackend,
  type SdpaOptions,
  type SdpaWithLse,
} from './attention/sdpa.js';
