/**
 * `@webattn/flex`: FlexAttention for TypeScript. Score and mask functions are plain TS; the same
 * function runs on the CPU path and is compiled (acorn → typed IR → WGSL) into the shared attention
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
} from './mods.js';
export {
  causalMask,
  slidingWindow,
  prefixLM,
  documentMask,
  documentScoreMod,
  neighborhood2d,
  dilatedSlidingWindow,
  globalSlidingWindow,
  alibi,
  softcap,
  relativePositionBias,
} from './catalogue.js';
