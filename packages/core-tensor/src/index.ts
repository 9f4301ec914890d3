/**
 * `@webattn/core-tensor`: tensors, devices, the kernel registry, autograd and the CPU reference
 * backend that every other webattn package stands on.
 *
 * @packageDocumentation
 */
import './cpu/kernels.js';

export { WebattnError, check, type ErrorCode } from './errors.js';
export { type DType, type TypedArray, isFloat, toHalfBits, fromHalfBits, roundTo, allocTyped, gpuBytesPerElement } from './dtype.js';
export {
  type Shape,
  validateShape,
  sizeOf,
  contiguousStrides,
  broadcastShapes,
  broadcastStrides,
  isContiguous,
  normAxis,
  shapesEqual,
  describe,
} from './shape.js';
export { Rng, manualSeed } from './rng.js';
export { Device, CpuDevice, Storage, cpu, setDefaultDevice, getDefaultDevice, type DeviceInfo, type DeviceTier, type MemoryStats } from './device.js';
export { getDevice, type GetDeviceOptions } from './get-device.js';
export {
  registerKernel,
  getKernel,
  listKernels,
  runKernel,
  registerBackend,
  listBackends,
  type BackendFactory,
  type KernelConfig,
  type KernelFn,
  type KernelAttrs,
  type KernelAttrMap,
  type FlashKernelAttrs,
  type AdamwStepAttrs,
  type FlexKernelAttrs,
  type AttrsOf,
} from './registry.js';
export { noGrad, noGradAsync, isGradEnabled, needsGrad, releaseGradFn, type GradFn, type BackwardOptions } from './autograd.js';
export { Tensor, tensor, randn, rand, empty, fromTyped, liveHandles, type TensorOptions, type RandomOptions, type Nested } from './tensor.js';
export { tidy, tidyAsync, keep } from './scope.js';
export * from './ops.js';
export { UNARY, BINARY, erf, geluGrad, readValues, stridedOffsets } from './cpu/kernels.js';
