import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Device, type Tensor } from '@webattn/core-tensor';
import { cuSeqlens, maxSeqlenOf } from './cu-seqlens.js';

/** A packed batch: rows of all sequences one after another. */
export interface Packed {
  /** `[total, ...]` rows. */
  values: Tensor;
  /** int32 `[B+1]`. */
  cuSeqlens: Int32Array;
  /** Longest sequence. */
  maxSeqlen: number;
}

function checkList(list: readonly Tensor[], argument: string): void {
  if (!Array.isArray(list) || list.length === 0) {
    throw new WebattnError('INVALID_ARGUMENT', `${argument}: expected a non-empty array of tensors [len, ...], got ${describe(list)}`, { argument });
  }
  const rest = list[0]!.shape.slice(1);
  list.forEach((t, i) => {
    if (!(t instanceof T.Tensor) || t.rank < 1) throw new WebattnError('INVALID_ARGUMENT', `${argument}[${i}]: expected a tensor of rank ≥ 1, got ${describe(t)}`, { argument });
    if (!T.shapesEqual(t.shape.slice(1), rest)) {
      throw new WebattnError('SHAPE_MISMATCH', `${argument}[${i}]: trailing shape ${describe(t.shape.slice(1))} differs from ${describe(rest)}`, { argument });
    }
  });
}

/**
 * Packs sequences `[len_i, ...]` into `[Σ len_i, ...]` with their cu_seqlens (differentiable).
 * @example const { values, cuSeqlens, maxSeqlen } = packSequences([a, b, c]);
 */
export function packSequences(list: readonly Tensor[]): Packed {
  checkList(list, 'list');
  const lengths = list.map((t) => t.shape[0]!);
  return { values: T.cat(list, 0), cuSeqlens: cuSeqlens(lengths), maxSeqlen: Math.max(0, ...lengths) };
}

/** Views of each sequence of a packed tensor (inverse of {@link packSequences}). */
export function unpackSequences(values: Tensor, cu: Int32Array): Tensor[] {
  const out: Tensor[] = [];
  for (let b = 0; b + 1 < cu.length; b++) out.push(values.slice(0, cu[b]!, cu[b + 1]!));
  return out;
}

/**
 * Pads sequences to `length` rows with `padValue` → `[B, length, ...]` (differentiable).
 * Throws `INVALID_ARGUMENT` when a sequence is longer than `length`.
 */
export function padToLength(list: readonly Tensor[], length: number, padValue = 0): Tensor {
  checkList(list, 'list');
  const rest = list[0]!.shape.slice(1);
  const device = list[0]!.device;
  const rows = list.map((t, i) => {
    const n = t.shape[0]!;
    if (n > length) throw new WebattnError('INVALID_ARGUMENT', `length: ${length} is shorter than list[${i}] (${n} rows)`, { argument: 'length' });
    const fill = T.full([length - n, ...rest], padValue, { dtype: t.dtype, device });
    return (n === length ? t : T.cat([t, fill], 0)).unsqueeze(0);
  });
  return T.cat(rows, 0);
}

/** Pads sequences to the longest one → `{ padded [B, maxLen, ...], lengths }`. */
export function padToLongest(list: readonly Tensor[], padValue = 0): { padded: Tensor; lengths: number[] } {
  checkList(list, 'list');
  const lengths = list.map((t) => t.shape[0]!);
  return { padded: padToLength(list, Math.max(...lengths), padValue), lengths };
}

function hostMask(mask: Tensor | readonly (readonly number[])[] | readonly (readonly boolean[])[], B: number, S: number): Uint8Array {
  const out = new Uint8Array(B * S);
  if (mask instanceof T.Tensor) {
    if (!T.shapesEqual(mask.shape, [B, S])) {
      throw new WebattnError('SHAPE_MISMATCH', `attentionMask: expected shape [${B}, ${S}], got ${describe(mask.shape)}`, { argument: 'attentionMask' });
    }
    if (mask.device.backend !== 'cpu') {
      throw new WebattnError('DEVICE_MISMATCH', 'attentionMask: expected a CPU tensor or nested arrays (read it back with `await mask.to(cpu())` first)', {
        argument: 'attentionMask',
      });
    }
    T.readValues(mask).forEach((v, i) => (out[i] = v ? 1 : 0));
    return out;
  }
  if (!Array.isArray(mask) || mask.length !== B || mask.some((r) => !Array.isArray(r) || r.length !== S)) {
    throw new WebattnError('SHAPE_MISMATCH', `attentionMask: expected ${B} rows of ${S} values`, { argument: 'attentionMask' });
  }
  mask.forEach((r, b) => (r as readonly (number | boolean)[]).forEach((v, s) => (out[b * S + s] = v ? 1 : 0)));
  return out;
}

/** Result of {@link unpad} (HF `_upad_input`). */
export interface Unpadded extends Packed {
  /** Flat positions `b * S + s` of the kept tokens, in order. */
  indices: Int32Array;
}

/**
 * Removes padding: `padded [B, S, ...]` and a `[B, S]` attention mask (1 = token) → the kept rows
 * packed, their flat indices, cu_seqlens and the longest length (HF `_upad_input` semantics).
 * @example const { values, indices, cuSeqlens } = unpad(hidden, attentionMask);
 */
export function unpad(padded: Tensor, attentionMask: Tensor | readonly (readonly number[])[] | readonly (readonly boolean[])[]): Unpadded {
  if (!(padded instanceof T.Tensor) || padded.rank < 2) {
    throw new WebattnError('SHAPE_MISMATCH', `padded: expected a tensor [B, S, ...], got ${describe(padded)}`, { argument: 'padded' });
  }
  const [B, S] = padded.shape as [number, number];
  const m = hostMask(attentionMask, B, S);
  const idx: number[] = [];
  const lengths = new Array<number>(B).fill(0);
  for (let b = 0; b < B; b++) for (let s = 0; s < S; s++) if (m[b * S + s]) {
    idx.push(b * S + s);
    lengths[b]!++;
  }
  const indices = Int32Array.from(idx);
  const cu = cuSeqlens(lengths);
  const rest = padded.shape.slice(2);
  const feat = T.sizeOf(rest);
  const flat = padded.reshape([B * S, feat]);
  const ids = T.tensor(indices, [indices.length], { dtype: 'int32', device: padded.device });
  const values = T.embedding(flat, ids).reshape([indices.length, ...rest]);
  return { values, indices, cuSeqlens: cu, maxSeqlen: maxSeqlenOf(cu) };
}

/**
 * Inverse of {@link unpad}: scatters packed rows back to `[batch, seqLen, ...]`, zeros elsewhere (differentiable).
 */
export function pad(values: Tensor, indices: Int32Array, batch: number, seqLen: number): Tensor {
  if (values.shape[0] !== indices.length) {
    throw new WebattnError('SHAPE_MISMATCH', `indices: has ${indices.length} entries but values has ${values.shape[0]} rows`, { argument: 'indices' });
  }
  const rest = values.shape.slice(1);
  const feat = T.sizeOf(rest);
  const n = indices.length;
  const src = new Int32Array(batch * seqLen).fill(n); // row n is the appended zero row
  indices.forEach((p, r) => {
    if (p < 0 || p >= batch * seqLen) throw new WebattnError('INVALID_ARGUMENT', `indices[${r}]: ${p} is outside [0, ${batch * seqLen})`, { argument: 'indices' });
    src[p] = r;
  });
  const table = T.cat([values.reshape([n, feat]), T.zeros([1, feat], { dtype: values.dtype, device: values.device })], 0);
  const ids = T.tensor(src, [src.length], { dtype: 'int32', device: values.device });
  return T.embedding(table, ids).reshape([batch, seqLen, ...rest]);
}

/**
 * A jagged batch: `values [Σ len_i, ...]` and `offsets` (cu_seqlens), like `torch.nested` jagged tensors.
 */
export class JaggedTensor {
  /** Packed rows. */
  readonly values: Tensor;
  /** Row offsets `[B+1]`. */
  readonly offsets: Int32Array;
  constructor(values: Tensor, offsets: Int32Array) {
    if (offsets[offsets.length - 1] !== values.shape[0]) {
      throw new WebattnError('SHAPE_MISMATCH', `offsets: last entry ${offsets[offsets.length - 1]} must equal values' ${values.shape[0]} rows`, { argument: 'offsets' });
    }
    this.values = values;
    this.offsets = offsets;
  }
  /** From a list of `[len_i, ...]` tensors. */
  static fromList(list: readonly Tensor[]): JaggedTensor {
    const p = packSequences(list);
    return new JaggedTensor(p.values, p.cuSeqlens);
  }
  /** From `padded [B, S, ...]` keeping the first `lengths[b]` rows of each batch entry. */
  static fromPadded(padded: Tensor, lengths: readonly number[]): JaggedTensor {
    const [B, S] = padded.shape as [number, number];
    if (lengths.length !== B || lengths.some((l) => l < 0 || l > S)) {
      throw new WebattnError('INVALID_ARGUMENT', `lengths: expected ${B} lengths in [0, ${S}], got ${describe(lengths)}`, { argument: 'lengths' });
    }
    const mask = Array.from({ length: B }, (_, b) => Array.from({ length: S }, (_, s) => (s < lengths[b]! ? 1 : 0)));
    const u = unpad(padded, mask);
    return new JaggedTensor(u.values, u.cuSeqlens);
  }
  /** Number of sequences. */
  get batch(): number {
    return this.offsets.length - 1;
  }
  /** Per-row lengths. */
  lengths(): number[] {
    return Array.from({ length: this.batch }, (_, b) => this.offsets[b + 1]! - this.offsets[b]!);
  }
  /** The sequences as views. */
  unbind(): Tensor[] {
    return unpackSequences(this.values, this.offsets);
  }
  /** `[B, maxLen, ...]` padded with `padValue`. */
  toPadded(padValue = 0, length?: number): Tensor {
    const seqs = this.unbind();
    return padToLength(seqs, length ?? Math.max(0, ...this.lengths()), padValue);
  }
  /** The device of the values. */
  get device(): Device {
    return this.values.device;
  }
}
