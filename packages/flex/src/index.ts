/**
 * `@webattn/flex`: FlexAttention for TypeScript. Score and mask functions are plain TS; the same
 * function runs on the CPU path and is compiled (a small parser → typed IR → WGSL) into the shared attention
 * generator, with block-sparse masks and gradients into captured tensors.
 *
 * @packageDocumentation
 */
export { flexAttention, type FlexAttentionOptions } from './flex-attention.js';
export { createBlockMask, createMask, BlockMask, type BlockMaskOptions } from './block-mask.js';
export {
  scoreMod,
  maskMod,
  andMasks,
  orMasks,
  noopMask,
  indexable,
  type ScoreMod,
  type MaskMod,
  type ScoreModFn,
  type MaskModFn,
  type Captures,
  type CaptureValues,
} from './mods.js';
export { causalMask } from './catalogue/causal.js';
export { slidingWindow } from './catalogue/sliding-window.js';
export { prefixLM } from './catalogue/prefix-lm.js';
export { documentMask, documentScoreMod } from './catalogue/document.js';
export { neighborhood2d } from './catalogue/neighborhood-2d.js';
export { dilatedSlidingWindow } from './catalogue/dilated-sliding-window.js';
export { globalSlidingWindow } from './catalogue/global-sliding-window.js';
export { alibi } from './catalogue/alibi.js';
export { softcap } from './catalogue/softcap.js';
export { relativePositionBias } from './catalogue/relative-position-bias.js';
export { useDeterministicAlgorithms, areDeterministicAlgorithmsEnabled } from './wgsl-mods.js';
