/**
 * `@webattn/core-tensor`: tensors, devices, the kernel registry, autograd and the CPU reference
 * backend that every other webattn package stands on.
 *
 * @packageDocumentation
 */
/// <reference types="@webgpu/types" preserve="true" />
import './cpu/kernels.js';

export { WebattnError, check, type ErrorCode } from './errors.js';
export { type DType, type TypedArray, isFloat, toHalfBits, fromHalfBits, roundTo } from './dtype.js';
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
export { Device, CpuDevice, Storage, cpu, setDefaultDevice, getDefaultDevice, type DeviceInfo, type MemoryStats } from './device.js';
export { WebGPUDevice, type GpuProgram, type BindingAccess } from './webgpu-device.js';
export { getDevice, type GetDeviceOptions } from './get-device.js';
export { registerKernel, getKernel, listKernels, runKernel, type KernelConfig, type KernelFn, type KernelAttrs } from './registry.js';
export { noGrad, isGradEnabled, needsGrad, releaseGradFn, type GradFn, type BackwardOptions } from './autograd.js';
export { Tensor, tensor, randn, rand, empty, fromTyped, liveHandles, type TensorOptions, type RandomOptions, type Nested } from './tensor.js';
export { tidy, tidyAsync, keep } from './scope.js';
export * from './ops.js';
export { UNARY, BINARY, erf, geluGrad, readValues, stridedOffsets } from './cpu/kernels.js';
