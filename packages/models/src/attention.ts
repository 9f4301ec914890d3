/**
 * Attention as a function (transformers' attention interface): the models call whatever
 * {@link AttentionFn} they hold; the built-ins route to the explicit math, SDPA, the flash
 * generator (varlen when packed) and FlexAttention.
 */
import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Tensor } from '@webattn/core-tensor';
import { scaledDotProductAttention } from '@webattn/kernels-webgpu';
import { flexAttention as flexAttn, type BlockMask, type ScoreMod, type ScoreModFn } from '@webattn/flex';
import { flashAttnVarlen } from '@webattn/varlen';
import type { Module } from './module.js';

/**
 * What a model hands its attention function (besides q, k, v). The model resolves masks once per
 * forward: `attentionMask` already contains causality and padding when given (then `isCausal` is
 * false); `cuSeqlens` marks packed sequences (padding-free batches), over the B·L tokens of the batch
 * flattened row after row; `blockMask` is prepared for functions with `usesBlockMask`.
 */
export interface AttentionOptions {
  /** Bool (true = attend) or additive float mask broadcastable to `[B, H, Lq, Lkv]`. */
  attentionMask?: Tensor | null;
  /** Score scale (transformers' `scaling`, usually 1/√E). */
  scaling: number;
  /** Dropout probability on the attention weights (0 in eval mode). */
  dropout: number;
  /** Causal (query i sees keys j ≤ i + Lkv − Lq; models set it only for Lq = Lkv). */
  isCausal: boolean;
  /** Int32 `[N+1]` offsets of the packed sequences over the flattened B·L tokens (a CPU tensor). */
  cuSeqlens?: Tensor | null;
  /** Longest packed sequence. */
  maxSeqlen?: number;
  /** Int32 `[B, L]` position ids the model used. */
  positionIds?: Tensor | null;
  /** Block mask for FlexAttention (over `[Lq, Lkv]`, or over the flattened B·L tokens when packed). */
  blockMask?: BlockMask | null;
  /** Score modification for FlexAttention (e.g. `softcap(30)`). */
  scoreMod?: ScoreMod | ScoreModFn | null;
  /** Index of the calling layer. */
  layerIdx?: number;
}

/**
 * An attention implementation: q `[B, H, Lq, E]`, k `[B, H, Lkv, E]`, v `[B, H, Lkv, Ev]` →
 * `[output [B, Lq, H, Ev], weights [B, H, Lq, Lkv] | null]`. A function with `usesBlockMask: true`
 * gets `options.blockMask` prepared by the model (FlexAttention).
 * @example
 * const myAttn: AttentionFn = (m, q, k, v, o) => sdpaAttention(m, q, k, v, o);
 * model.setAttention(myAttn);
 */
export type AttentionFn = ((module: Module, query: Tensor, key: Tensor, value: Tensor, options: AttentionOptions) => [output: Tensor, weights: Tensor | null]) & {
  usesBlockMask?: boolean;
};

function checkQkv(q: Tensor, k: Tensor, v: Tensor): [number, number, number, number, number] {
  const names = ['query', 'key', 'value'] as const;
  [q, k, v].forEach((t, i) => {
    if (!(t instanceof T.Tensor)) throw new WebattnError('INVALID_ARGUMENT', `${names[i]}: expected a Tensor, got ${describe(t)}`, { argument: names[i] });
    if (t.rank !== 4) throw new WebattnError('SHAPE_MISMATCH', `${names[i]}: expected [B, H, L, E], got ${describe(t.shape)}`, { argument: names[i] });
  });
  const [B, H, Lq, E] = q.shape as [number, number, number, number];
  return [B, H, Lq, k.shape[2]!, E];
}

/** Host copy of a cu_seqlens tensor (CPU) or array. */
function hostCu(cu: Tensor): Int32Array {
  if (cu.device.backend !== 'cpu' || cu.dtype !== 'int32' || cu.rank !== 1) {
    throw new WebattnError('INVALID_ARGUMENT', `options.cuSeqlens: expected a 1-D int32 CPU tensor of offsets, got ${cu.dtype} ${describe(cu.shape)} on ${cu.device.backend}`, { argument: 'options.cuSeqlens' });
  }
  return Int32Array.from(T.readValues(cu));
}

/**
 * Dense boolean mask `[B, 1, L, L]` of packed sequences (tokens see only their own sequence, causally
 * when `causal`), built on the device from the cu_seqlens over the flattened B·L tokens.
 * @example const mask = packedMask(tensor([0, 5, 8], [3], { dtype: 'int32' }), 1, 8, true, device); // [1, 1, 8, 8] bool
 */
export function packedMask(cuSeqlens: Tensor, B: number, L: number, causal: boolean, device: T.Device): Tensor {
  const cu = hostCu(cuSeqlens);
  if (cu[cu.length - 1] !== B * L) {
    throw new WebattnError('SHAPE_MISMATCH', `options.cuSeqlens: ends at ${cu[cu.length - 1]}, but the batch holds B·L = ${B * L} tokens`, { argument: 'options.cuSeqlens' });
  }
  const seg = new Int32Array(B * L);
  for (let d = 0; d + 1 < cu.length; d++) seg.fill(d, cu[d]!, cu[d + 1]!);
  const s = T.tensor(seg, [B, 1, L, 1], { dtype: 'int32', device });
  let allow = T.eq(s, s.reshape([B, 1, 1, L]));
  if (causal) {
    const rows = T.arange(0, L, 1, { dtype: 'int32', device }).reshape([L, 1]);
    const cols = T.arange(0, L, 1, { dtype: 'int32', device }).reshape([1, L]);
    allow = T.logicalAnd(allow, T.le(cols, rows));
  }
  return allow;
}

function causalMaskDense(Lq: number, Lkv: number, device: T.Device): Tensor {
  const rows = T.arange(Lkv - Lq, Lkv, 1, { dtype: 'int32', device }).reshape([Lq, 1]);
  const cols = T.arange(0, Lkv, 1, { dtype: 'int32', device }).reshape([1, Lkv]);
  return T.le(cols, rows);
}

function noScoreMod(o: AttentionOptions, who: string): void {
  if (o.scoreMod) throw new WebattnError('INVALID_ARGUMENT', `options.scoreMod: ${who} attention cannot apply a score function; use flexAttention`, { argument: 'options.scoreMod' });
}

/** The mask eager/sdpa apply: the given one, the packed block-diagonal one, or null (then isCausal decides). */
function denseMask(q: Tensor, Lkv: number, o: AttentionOptions): { mask: Tensor | null; causal: boolean } {
  const [B, , Lq] = q.shape as [number, number, number];
  if (o.attentionMask) return { mask: o.attentionMask, causal: false };
  if (o.cuSeqlens) return { mask: packedMask(o.cuSeqlens, B, Lq, o.isCausal, q.device), causal: false };
  if (o.isCausal && Lq !== Lkv) return { mask: causalMaskDense(Lq, Lkv, q.device), causal: false };
  return { mask: null, causal: o.isCausal };
}

/**
 * Eager attention: explicit `softmax(q kᵀ · scaling + mask) v` through core ops, returning the
 * weights `[B, H, Lq, Lkv]` too (transformers' `eager_attention_forward`). Dropout applies to the weights.
 * @example const [out, w] = eagerAttention(module, q, k, v, { scaling: 0.125, dropout: 0, isCausal: true });
 */
export const eagerAttention: AttentionFn = (module, query, key, value, options) => {
  const [, , Lq, Lkv] = checkQkv(query, key, value);
  noScoreMod(options, 'eager');
  let s = T.mul(T.matmul(query, key.transpose(-1, -2)), options.scaling);
  const { mask, causal } = denseMask(query, Lkv, options);
  const m = mask ?? (causal ? causalMaskDense(Lq, Lkv, query.device) : null);
  if (m) s = m.dtype === 'bool' ? T.where(m, s, -Infinity) : T.add(s, m);
  let w = T.softmax(s, -1);
  if (options.dropout > 0 && module.training) {
    const keep = T.cast(T.ge(T.rand(w.shape, { device: w.device }), options.dropout), w.dtype);
    w = T.mul(w, T.mul(keep, 1 / (1 - options.dropout)));
  }
  return [T.matmul(w, value).transpose(1, 2), w];
};

/**
 * SDPA attention: `scaledDotProductAttention` (flash backend on WebGPU when the inputs allow, else
 * math), with the packed block-diagonal mask when `cuSeqlens` is given. No weights are returned.
 * @example const [out] = sdpaAttention(module, q, k, v, { scaling: 0.125, dropout: 0, isCausal: true });
 */
export const sdpaAttention: AttentionFn = (module, query, key, value, options) => {
  const [, , , Lkv] = checkQkv(query, key, value);
  noScoreMod(options, 'sdpa');
  const { mask, causal } = denseMask(query, Lkv, options);
  const out = scaledDotProductAttention(query, key, value, {
    attnMask: mask,
    isCausal: causal,
    scale: options.scaling,
    dropoutP: module.training ? options.dropout : 0,
  });
  return [out.transpose(1, 2), null];
};

/**
 * Flash attention: the flash generator's varlen layout (`flashAttnVarlen`): packed sequences when
 * `cuSeqlens` is given, else every batch row as one sequence (causal aligned bottom-right, so a
 * one-token decode step sees its whole cache). A padding `attentionMask` goes through SDPA's flash
 * backend with the mask. On the CPU the same calls run the reference path. Dropout > 0 throws `NO_BACKEND`.
 * @example const [out] = flashAttention(module, q, k, v, { scaling: 0.125, dropout: 0, isCausal: true });
 */
export const flashAttention: AttentionFn = (module, query, key, value, options) => {
  const [B, H, Lq, Lkv, E] = checkQkv(query, key, value);
  noScoreMod(options, 'flash');
  if (options.dropout > 0 && module.training) {
    throw new WebattnError('NO_BACKEND', `options.dropout: the flash backend does not implement attention dropout (got ${options.dropout}); use sdpa or eager, or set attn_pdrop to 0`, { argument: 'options.dropout' });
  }
  if (options.attentionMask) {
    const out = scaledDotProductAttention(query, key, value, { attnMask: options.attentionMask, scale: options.scaling });
    return [out.transpose(1, 2), null];
  }
  const Hk = key.shape[1]!;
  const Ev = value.shape[3]!;
  // packed rows [B·L, H, E]: a strided view when the heads came from one projection (the kernel reads strides), else a copy
  const q = query.transpose(1, 2).reshape([B * Lq, H, E]);
  const k = key.transpose(1, 2).reshape([B * Lkv, Hk, E]);
  const v = value.transpose(1, 2).reshape([B * Lkv, Hk, Ev]);
  let cuQ: Int32Array;
  let cuK: Int32Array;
  let maxQ: number;
  let maxK: number;
  if (options.cuSeqlens) {
    if (Lq !== Lkv) throw new WebattnError('SHAPE_MISMATCH', `options.cuSeqlens: packed sequences need Lq = Lkv, got ${Lq} and ${Lkv}`, { argument: 'options.cuSeqlens' });
    cuQ = cuK = hostCu(options.cuSeqlens);
    maxQ = maxK = options.maxSeqlen ?? Math.max(...cuQ.slice(1).map((c, i) => c - cuQ[i]!));
  } else {
    cuQ = Int32Array.from({ length: B + 1 }, (_, i) => i * Lq);
    cuK = Int32Array.from({ length: B + 1 }, (_, i) => i * Lkv);
    maxQ = Lq;
    maxK = Lkv;
  }
  const out = flashAttnVarlen(q, k, v, { cuSeqlensQ: cuQ, cuSeqlensK: cuK, maxSeqlenQ: maxQ, maxSeqlenK: maxK, causal: options.isCausal, scale: options.scaling });
  return [out.reshape([B, Lq, H, Ev]), null];
};

/**
 * FlexAttention: `flexAttention` with the model's `blockMask` and `scoreMod`. Packed sequences
 * (`cuSeqlens`) run as one row of B·L tokens under the model's document block mask; a padding mask
 * arrives as a block mask too. Causal or packed inputs without a block mask, a dense `attentionMask`,
 * or dropout > 0 throw coded errors.
 * @example model.setAttention(flexAttention); // the model builds the block masks
 */
export const flexAttention: AttentionFn = Object.assign(
  (module: Module, query: Tensor, key: Tensor, value: Tensor, options: AttentionOptions): [Tensor, Tensor | null] => {
    const [B, H, Lq, Lkv, E] = checkQkv(query, key, value);
    if (options.dropout > 0 && module.training) {
      throw new WebattnError('NO_BACKEND', `options.dropout: flex attention does not implement attention dropout (got ${options.dropout})`, { argument: 'options.dropout' });
    }
    if (options.attentionMask) throw new WebattnError('INVALID_ARGUMENT', 'options.attentionMask: flex attention takes masks as a blockMask, not a dense attentionMask', { argument: 'options.attentionMask' });
    const bm = options.blockMask ?? null;
    const needsMask = (options.isCausal && Lq > 1) || !!options.cuSeqlens;
    if (needsMask && !bm) throw new WebattnError('INVALID_ARGUMENT', 'options.blockMask: causal or packed flex attention needs a block mask (createBlockMask); models build it for functions with usesBlockMask', { argument: 'options.blockMask' });
    const scoreMod = options.scoreMod ?? null;
    if (options.cuSeqlens) {
      const Ev = value.shape[3]!;
      const flat = (t: Tensor, L: number, D: number) => t.transpose(0, 1).contiguous().reshape([1, t.shape[1]!, B * L, D]);
      const out = flexAttn(flat(query, Lq, E), flat(key, Lkv, E), flat(value, Lkv, Ev), { blockMask: bm, scoreMod, scale: options.scaling });
      // [1, H, B·L, Ev] → [B, L, H, Ev]
      return [out.reshape([H, B, Lq, Ev]).permute([1, 2, 0, 3]), null];
    }
    const out = flexAttn(query, key, value, { blockMask: bm, scoreMod, scale: options.scaling, enableGqa: key.shape[1] !== H });
    return [out.transpose(1, 2), null];
  },
  { usesBlockMask: true },
);
