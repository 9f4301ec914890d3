/**
 * `@webattn/kernels-webgpu/internal`: the attention generator, the WGSL program helper and the shared
 * front-door module, for webattn's own front doors (`@webattn/flex`, `@webattn/varlen`). Not public
 * API: it changes without a major version.
 *
 * @packageDocumentation
 */
/// <reference types="@webgpu/types" preserve="true" />
import './device/backend.js';
import './basic-kernels.js';
import './matmul.js';

export { WebGPUDevice, type GpuProgram, type BindingAccess } from './device/webgpu-device.js';

export { MATH_HELPERS } from './basic-kernels.js';
export { setTiledMatmul, SPLIT_128, SPLIT_128_K32, SPLIT_128_T128, SPLIT_128X64, SPLIT_64, type TiledMatmulConfig, setMatmulGemvRows, setSoftwareKQuadMatmul, GEMV_MAX_M, setSubgroupMatrixMatmul, hasSubgroupMatrixF16, subgroupMatrixMatmulSource, SGMM_DEFAULT, SGMM_COL_A, SGMM_COL_B, type SgmmConfig } from './matmul.js';
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
  flashForward,
  flashBackward,
  FLASH_MAX_HEAD_DIM,
  setFlashSpecialization,
  setFlashSubgroupMatrix,
  sgmatPlan,
  hasSgmatAttention,
  type SgmatConfig,
  type SgmatMode,
  setFlashBackwardSubgroupMatrix,
  sgmatBackwardPlan,
  type SgmatBackwardMode,
  type SgmatBwdConfig,
  type SgmatBwdTile,
  setFlashStaging,
  setFlashTiles,
  setFlashForwardPath,
  setFlashBackwardPath,
  setFlashBackwardGrid,
  setFlashBackwardScores,
  setFlashRegisterTile,
  hookWgsl,
  type FlashParams,
  type FlashHooks,
  type FlashCaptures,
  type FlashCaptureGrads,
  type FlashMask,
  type FlashGradInputs,
  type FlashBlocks,
} from './attention/flash.js';
export {
  checkQkv,
  checkOptions,
  resolveScale,
  referenceAttention,
  recordFlash,
  flashRefusal,
  outputOrBoth,
  type AttentionDims,
  type OptionSpec,
  type ReferenceOptions,
  type FlashExtraGrads,
  type RecordFlashOptions,
  deferFlagCheck,
} from './attention/front-door.js';
