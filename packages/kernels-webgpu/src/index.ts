/**
 * `@webattn/kernels-webgpu`: the WGSL kernels of every webattn op, registered under the `webgpu`
 * backend of the core-tensor kernel registry when this module is imported, and the WGSL helper
 * they are all written with.
 *
 * @packageDocumentation
 */
import './basic-kernels.js';
import './matmul.js';

export { MATH_HELPERS } from './basic-kernels.js';
export { setTiledMatmul, type TiledMatmulConfig, setSubgroupMatrixMatmul, hasSubgroupMatrixF16, subgroupMatrixMatmulSource, SGMM_DEFAULT, type SgmmConfig } from './matmul.js';

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
