import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Tensor } from '@webattn/core-tensor';
import type { MaskMod, ScoreMod } from '../mods.js';

/**
 * Document mask over a packed sequence: tokens attend only within their document; `inner` (e.g.
 * causal) is applied with document-local indices. `docs` is an int32 document id per token or the
 * cu_seqlens offsets `[0, l0, l0+l1, ...]`. Used with qLen = kvLen = the number of tokens (else `SHAPE_MISMATCH`).
 * @example const m = documentMask(cuSeqlens([100, 28]), causalMask);
 */
export function documentMask(docs: Tensor | Int32Array | readonly number[], inner: MaskMod | null = null): MaskMod {
  const { docIds, starts } = documentTables(docs);
  return { kind: 'document', docIds, starts, inner };
}

/**
 * Applies a score function per document of a packed sequence with document-local indices (pair it
 * with {@link documentMask} so tokens do not attend across documents).
 * @example const sm = documentScoreMod(cuSeqlens([100, 28]), alibi(8));
 */
export function documentScoreMod(docs: Tensor | Int32Array | readonly number[], inner: ScoreMod): ScoreMod {
  const { docIds, starts } = documentTables(docs);
  return { kind: 'score-document', docIds, starts, inner };
}

function documentTables(docs: Tensor | Int32Array | readonly number[]): { docIds: Tensor; starts: Tensor } {
  let ids: Int32Array;
  if (docs instanceof T.Tensor) {
    if (docs.dtype !== 'int32' || docs.rank !== 1 || docs.device.backend !== 'cpu') {
      throw new WebattnError('INVALID_ARGUMENT', `docs: expected a 1-D int32 CPU tensor of document ids, got ${docs.dtype} ${describe(docs.shape)} on ${docs.device.backend}`, { argument: 'docs' });
    }
    ids = Int32Array.from(T.readValues(docs));
  } else {
    if (!(docs instanceof Int32Array) && !Array.isArray(docs)) throw new WebattnError('INVALID_ARGUMENT', `docs: expected offsets (number[] or Int32Array) or an int32 tensor of ids, got ${describe(docs)}`, { argument: 'docs' });
    const arr = Array.from(docs as ArrayLike<number>);
    if (arr.some((v) => !Number.isInteger(v))) throw new WebattnError('INVALID_ARGUMENT', `docs: offsets must be integers, got ${describe(arr)}`, { argument: 'docs' });
    const off = Int32Array.from(arr);
    if (off.length < 1 || off[0] !== 0 || off.some((v, i) => i > 0 && v < off[i - 1]!)) {
      throw new WebattnError('INVALID_ARGUMENT', `docs: offsets must start at 0 and not decrease, got ${describe(arr)}`, { argument: 'docs' });
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
