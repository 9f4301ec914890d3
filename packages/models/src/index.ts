/**
 * `@webattn/models`: nn modules with transformers' parameter names, GPT-2 and ViT whose attention is a
 * function argument (eager, SDPA, flash/varlen, flex or your own), optimizers and schedules.
 *
 * @packageDocumentation
 */
export { Module, type LoadStateDictResult } from './module.js';
export {
  Linear,
  Conv1D,
  Embedding,
  LayerNorm,
  Dropout,
  GELU,
  PatchEmbedding,
  CrossEntropyLoss,
  activation,
  type Activation,
  type LayerInit,
} from './layers.js';
export { eagerAttention, sdpaAttention, flashAttention, flexAttention, packedMask, type AttentionFn, type AttentionOptions } from './attention.js';
export {
  GPT2Model,
  GPT2LMHeadModel,
  gpt2Config,
  GPT2_DEFAULTS,
  packedOffsets,
  type GPT2Config,
  type GPT2Inputs,
  type GenerateOptions,
  type KVCache,
  type ModelOptions,
} from './gpt2.js';
export { ViTModel, ViTForImageClassification, vitConfig, VIT_DEFAULTS, VIT_PUBLISHED, type ViTConfig, type ViTOptions } from './vit.js';
export { Optimizer, SGD, AdamW, GradScaler, clipGradNorm, CosineWithWarmup, type OptimizerOptions, type GradScalerOptions } from './optim.js';
