/**
 * The mask and score catalogue (attention-gym's masks and mods), each a plain TS function with its
 * captures, usable on the CPU as-is and compiled to WGSL for the GPU.
 */
import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Tensor } from '@webattn/core-tensor';
import { indexable, maskMod, scoreMod, type MaskMod, type ScoreMod } from './mods.js';

const posInt = (v: number, name: string, min = 1) => {
  if (!Number.isInteger(v) || v < min) throw new WebattnError('INVALID_ARGUMENT', `${name}: expected an integer ≥ ${min}, got ${describe(v)}`, { argument: name });
};

/**
 * Causal mask: query q sees keys kv ≤ q.
 * @example const bm = await createBlockMask(causalMask, null, null, L, L, { device });
 */
export const causalMask: MaskMod = { ...maskMod((b, h, qIdx, kvIdx) => qIdx >= kvIdx), name: 'causal' };

/**
 * Causal sliding window: kv ∈ [q − window, q].
 * @example const m = slidingWindow(256);
 */
export function slidingWindow(window: number): MaskMod {
  posInt(window, 'window', 0);
  return { ...maskMod((b, h, qIdx, kvIdx) => qIdx >= kvIdx && qIdx - kvIdx <= window, { window }), name: `slidingWindow(${window})` };
}

/**
 * Prefix LM: the first `prefix` keys are visible to everyone, the rest causally.
 * @example const m = prefixLM(64);
 */
export function prefixLM(prefix: number): MaskMod {
  posInt(prefix, 'prefix', 0);
  return { ...maskMod((b, h, qIdx, kvIdx) => kvIdx < prefix || qIdx >= kvIdx, { prefix }), name: `prefixLM(${prefix})` };
}

/**
 * Document mask over a packed sequence: tokens attend only within their document; `inner` (e.g.
 * causal) is applied with document-local indices. `docs` is an int32 document id per token or the
 * cu_seqlens offsets `[0, l0, l0+l1, ...]`.
 * @example const m = documentMask(cuSeqlens([100, 28]), causalMask);
 */
export function documentMask(docs: Tensor | Int32Array | readonly number[], inner: MaskMod | null = null): MaskMod {
  const { docIds, starts } = documentTables(docs);
  return { kind: 'document', docIds, starts, inner, name: 'document' };
}

/**
 * Applies a score function per document of a packed sequence with document-local indices (pair it
 * with {@link documentMask} so tokens do not attend across documents).
 * @example const sm = documentScoreMod(cuSeqlens([100, 28]), alibi(8));
 */
export function documentScoreMod(docs: Tensor | Int32Array | readonly number[], inner: ScoreMod): ScoreMod {
  const { docIds, starts } = documentTables(docs);
  return { kind: 'score-document', docIds, starts, inner, name: 'documentScore' };
}

function documentTables(docs: Tensor | Int32Array | readonly number[]): { docIds: Tensor; starts: Tensor } {
  let ids: Int32Array;
  if (docs instanceof T.Tensor) {
    if (docs.dtype !== 'int32' || docs.rank !== 1 || docs.device.backend !== 'cpu') {
      throw new WebattnError('FLEX_COMPILE', `docs: expected a 1-D int32 CPU tensor of document ids, got ${docs.dtype} ${describe(docs.shape)} on ${docs.device.backend}`, { argument: 'docs' });
    }
    ids = Int32Array.from(T.readValues(docs));
  } else {
    const off = Int32Array.from(docs as ArrayLike<number>);
    if (off[0] !== 0 || off.some((v, i) => i > 0 && v < off[i - 1]!)) {
      throw new WebattnError('INVALID_ARGUMENT', `docs: offsets must start at 0 and not decrease, got ${describe(Array.from(off))}`, { argument: 'docs' });
    }
    ids = new Int32Array(off[off.length - 1]!);
    for (let d = 0; d + 1 < off.length; d++) ids.fill(d, off[d]!, off[d + 1]!);
  }
  const starts = new Int32Array(ids.length);
  for (let i = 1; i < ids.length; i++) starts[i] = ids[i] === ids[i - 1] ? starts[i - 1]! : i;
  const cpu = T.cpu();
  return {
    docIds: T.tensor(ids, [ids.length], { dtype: 'int32', device: cpu }),
    starts: T.tensor(starts, [starts.length], { dtype: 'int32', device: cpu }),
  };
}

/**
 * 2-D neighbourhood on a rows×cols token grid (row-major): Chebyshev distance ≤ radius (ViT 5×5 window: radius 2).
 * @example const m = neighborhood2d(14, 14, 2);
 */
export function neighborhood2d(rows: number, cols: number, radius: number): MaskMod {
  posInt(rows, 'rows');
  posInt(cols, 'cols');
  posInt(radius, 'radius', 0);
  return {
    ...maskMod((b, h, qIdx, kvIdx) => Math.abs(Math.floor(qIdx / cols) - Math.floor(kvIdx / cols)) <= radius && Math.abs((qIdx % cols) - (kvIdx % cols)) <= radius, { cols, radius }),
    name: `neighborhood2d(${rows}x${cols}, r=${radius})`,
  };
}

/**
 * Causal dilated sliding window: every `dilation`-th key within `window · dilation` back.
 * @example const m = dilatedSlidingWindow(64, 2);
 */
export function dilatedSlidingWindow(window: number, dilation: number): MaskMod {
  posInt(window, 'window', 0);
  posInt(dilation, 'dilation');
  return {
    ...maskMod((b, h, qIdx, kvIdx) => qIdx >= kvIdx && qIdx - kvIdx <= window * dilation && (qIdx - kvIdx) % dilation === 0, { window, dilation }),
    name: `dilatedSlidingWindow(${window}, ${dilation})`,
  };
}

/**
 * Longformer-style: a bidirectional window of ±`window` plus `globalTokens` leading tokens that see and are seen by all.
 * @example const m = globalSlidingWindow(128, 4);
 */
export function globalSlidingWindow(window: number, globalTokens: number): MaskMod {
  posInt(window, 'window', 0);
  posInt(globalTokens, 'globalTokens', 0);
  return {
    ...maskMod((b, h, qIdx, kvIdx) => (qIdx - kvIdx <= window && kvIdx - qIdx <= window) || kvIdx < globalTokens || qIdx < globalTokens, { window, globalTokens }),
    name: `globalSlidingWindow(${window}, ${globalTokens})`,
  };
}

/**
 * ALiBi: adds slope_h · (kv − q) with the standard geometric slopes 2^(−8(h+1)/H).
 * @example const sm = alibi(16);
 */
export function alibi(heads: number): ScoreMod {
  posInt(heads, 'heads');
  const slopesT = T.tensor(Array.from({ length: heads }, (_, i) => 2 ** ((-8 * (i + 1)) / heads)), [heads], { device: T.cpu() });
  const slopes = indexable(slopesT, 1);
  return { ...scoreMod((score, b, h, qIdx, kvIdx) => score + slopes[h]! * (kvIdx - qIdx), { slopes: slopesT }), name: `alibi(${heads})` };
}

/**
 * Soft-capping: cap · tanh(score / cap) (Gemma 2, Grok).
 * @example const sm = softcap(30);
 */
export function softcap(cap: number): ScoreMod {
  if (!(cap > 0)) throw new WebattnError('INVALID_ARGUMENT', `cap: expected a positive number, got ${describe(cap)}`, { argument: 'cap' });
  return { ...scoreMod((score, b, h, qIdx, kvIdx) => cap * Math.tanh(score / cap), { cap }), name: `softcap(${cap})` };
}

/**
 * Learnable relative-position bias: adds table[h][q − kv + L − 1] for a table `[H, 2L − 1]`; mark
 * the table `requiresGrad` and its gradient flows from the attention backward.
 * @example const table = randn([H, 2 * L - 1], { device, requiresGrad: true }); const sm = relativePositionBias(table);
 */
export function relativePositionBias(table: Tensor): ScoreMod {
  if (!(table instanceof T.Tensor) || table.rank !== 2 || table.shape[1]! % 2 !== 1) {
    throw new WebattnError('FLEX_COMPILE', `table: expected a tensor [H, 2L − 1], got ${describe(table)}`, { argument: 'table' });
  }
  const offset = (table.shape[1]! - 1) / 2;
  const bias = indexable(table, 2);
  return { ...scoreMod((score, b, h, qIdx, kvIdx) => score + bias[h]![qIdx - kvIdx + offset]!, { bias: table, offset }), name: 'relativePositionBias' };
}
