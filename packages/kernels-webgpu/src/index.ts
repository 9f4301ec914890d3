/**
 * `@webattn/kernels-webgpu`: the WGSL kernels of every webattn op, registered under the `webgpu`
 * backend of the core-tensor kernel registry when this module is imported, the WebGPU device (Dawn in
 * Node, `navigator.gpu` in browsers) registered as the `webgpu` backend of `getDevice()`, and the WGSL
 * helper the kernels are all written with.
 *
 * @packageDocumentation
 */
/// <reference types="@webgpu/types" preserve="true" />
import './device/backend.js';
import './basic-kernels.js';

export {
  WebGPUDevice,
  tierOf,
  type GpuProgram,
  type BindingAccess,
  type DeviceCaps,
  type SubgroupMatrixConfig,
  type WebGPUDeviceOptions,
} from './device/webgpu-device.js';
export { createWebGPUDevice, webgpuBackend, WANTED_FEATURES, type WebGPURoute } from './device/backend.js';

export { MATH_HELPERS } from './basic-kernels.js';

export {
  MAX_RANK,
  storageType,
  computeType,
  renderProgram,
  packUniforms,
  program,
  run,
  linearGrid,
  stridedOffsetFn,
  stridedFields,
  checkRank,
  wgReduce,
  useSubgroups,
  type BindingSpec,
  type UniformField,
  type UniformValues,
  type ProgramSpec,
} from './wgsl.js';
export {
  scaledDotProductAttention,
  sdpaKernel,
  lastSdpaBackend,
  type SdpaBackend,
  type SdpaOptions,
  type SdpaWithLse,
} from './attention/sdpa.js';
export {
  flashForward,
  flashBackward,
  FLASH_MAX_HEAD_DIM,
  setFlashSpecialization,
  type FlashParams,
  type FlashHooks,
  type FlashMask,
  type FlashGradInputs,
  type FlashBlocks,
} from './attention/flash.js';
