import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Tensor } from '@webattn/core-tensor';
import type { WebGPUDevice } from '@webattn/kernels-webgpu/internal';
import { deferFlagCheck, run } from '@webattn/kernels-webgpu/internal';

/** cu_seqlens as accepted by the varlen API: host arrays are validated; a tensor must be int32 `[B+1]`. */
export type CuSeqlensLike = Int32Array | readonly number[] | Tensor;

/**
 * Cumulative sequence lengths `[0, l0, l0+l1, ...]` (int32), the packed layout's index.
 * @example cuSeqlens([3, 1, 4]) // Int32Array [0, 3, 4, 8]
 */
export function cuSeqlens(lengths: readonly number[] | Int32Array): Int32Array {
  const out = new Int32Array(lengths.length + 1);
  for (let i = 0; i < lengths.length; i++) {
    const n = lengths[i]!;
    if (!Number.isInteger(n) || n < 0) {
      throw new WebattnError('INVALID_ARGUMENT', `lengths[${i}]: expected a non-negative integer, got ${describe(n)}`, { argument: 'lengths' });
    }
    out[i + 1] = out[i]! + n;
  }
  return out;
}

/** Host values of a cu_seqlens argument, or null for a tensor whose values live on a GPU. */
export function hostCu(cu: CuSeqlensLike, argument: string): Int32Array | null {
  if (cu instanceof Int32Array) return cu;
  if (Array.isArray(cu)) {
    cu.forEach((v, i) => {
      if (!Number.isInteger(v)) throw new WebattnError('DTYPE_UNSUPPORTED', `${argument}[${i}]: expected int32 values, got ${describe(v)}`, { argument });
    });
    return Int32Array.from(cu as number[]);
  }
  const t = cu as Tensor;
  if (!t || typeof t !== 'object' || !('dtype' in t)) {
    throw new WebattnError('INVALID_ARGUMENT', `${argument}: expected an Int32Array, number[] or int32 Tensor, got ${describe(cu)}`, { argument });
  }
  if (t.dtype !== 'int32') throw new WebattnError('DTYPE_UNSUPPORTED', `${argument}: expected an int32 tensor, got ${t.dtype}`, { argument });
  if (t.rank !== 1) throw new WebattnError('SHAPE_MISMATCH', `${argument}: expected a 1-D tensor [B+1], got shape ${describe(t.shape)}`, { argument });
  if (t.device.backend === 'cpu' && t.storage.cpu) {
    const d = t.storage.cpu as Int32Array;
    return Int32Array.from({ length: t.shape[0]! }, (_, i) => d[t.offset + i * t.strides[0]!]!);
  }
  return null;
}

/**
 * Validates cu_seqlens against the packed rows: int32, starts at 0, non-decreasing, last = `total`,
 * every length ≤ `maxSeqlen`. Throws `WebattnError` naming `argument`.
 */
export function validateCuSeqlens(cu: Int32Array, total: number, maxSeqlen: number, argument: string, maxArgument: string): void {
  if (cu.length < 1) throw new WebattnError('SHAPE_MISMATCH', `${argument}: expected at least one entry [0], got none`, { argument });
  if (cu[0] !== 0) throw new WebattnError('INVALID_ARGUMENT', `${argument}: must start at 0, got ${cu[0]}`, { argument });
  let longest = 0;
  for (let i = 1; i < cu.length; i++) {
    const n = cu[i]! - cu[i - 1]!;
    if (n < 0) throw new WebattnError('INVALID_ARGUMENT', `${argument}: must be non-decreasing, but entry ${i} (${cu[i]}) < entry ${i - 1} (${cu[i - 1]})`, { argument });
    longest = Math.max(longest, n);
  }
  if (cu[cu.length - 1] !== total) {
    throw new WebattnError('SHAPE_MISMATCH', `${argument}: last entry ${cu[cu.length - 1]} must equal the number of packed rows ${total}`, { argument });
  }
  if (!Number.isInteger(maxSeqlen) || maxSeqlen < longest) {
    throw new WebattnError('INVALID_ARGUMENT', `${maxArgument}: ${maxSeqlen} is smaller than the longest sequence (${longest}) in ${argument}`, { argument: maxArgument });
  }
}

/** Longest length in cu_seqlens. */
export function maxSeqlenOf(cu: Int32Array): number {
  let m = 0;
  for (let i = 1; i < cu.length; i++) m = Math.max(m, cu[i]! - cu[i - 1]!);
  return m;
}

/**
 * Position ids restarting at 0 in every sequence (padding-free batches, HF `position_ids`).
 * @example positionIds(cuSeqlens([2, 3])) // Int32Array [0, 1, 0, 1, 2]
 */
export function positionIds(cu: Int32Array | readonly number[]): Int32Array {
  const c = Int32Array.from(cu as ArrayLike<number>);
  const out = new Int32Array(c[c.length - 1] ?? 0);
  for (let b = 0; b + 1 < c.length; b++) for (let i = c[b]!; i < c[b + 1]!; i++) out[i] = i - c[b]!;
  return out;
}

/**
 * Checks GPU-held cu_seqlens with a one-workgroup kernel (starts at 0, non-decreasing, last = `total`,
 * every length ≤ `maxSeqlen`). Returns the function that ties the verdict to the call's outputs: a
 * violation raises `INVALID_ARGUMENT` naming the argument when they are read (or at the next sync);
 * the flag is read on the GPU timeline, never synchronously.
 */
export function checkCuSeqlensOnDevice(cu: Tensor, total: number, maxSeqlen: number, argument: string, maxArgument: string): (outputs: Tensor[]) => void {
  const n = cu.shape[0]!;
  if (n < 1) throw new WebattnError('SHAPE_MISMATCH', `${argument}: expected at least one entry [0], got none`, { argument });
  const device = cu.device as WebGPUDevice;
  const flag = T.zeros([1], { dtype: 'int32', device });
  run(
    {
      name: 'varlen_check_cu_seqlens',
      key: '',
      bindings: [
        { name: 'cu', dtype: 'int32', access: 'read' },
        { name: 'flag', dtype: 'int32', access: 'read_write', atomic: true },
      ],
      uniforms: [['n', 'u32'], ['total', 'i32'], ['maxlen', 'i32']],
      workgroupSize: [64],
      body: `
  var bits = 0u;
  if (lidx == 0u) {
    if (load_cu(0u) != 0i) { bits = bits | 1u; }
    if (load_cu(u_n() - 1u) != u_total()) { bits = bits | 4u; }
  }
  for (var i = lidx + 1u; i < u_n(); i = i + WG_SIZE) {
    let d = load_cu(i) - load_cu(i - 1u);
    if (d < 0i) { bits = bits | 2u; }
    if (d > u_maxlen()) { bits = bits | 8u; }
  }
  if (bits != 0u) { atomicOr(&flag[0], bits); }`,
    },
    [cu.contiguous(), flag],
    { n, total, maxlen: maxSeqlen },
    [1, 1, 1],
  );
  return (outputs) => deferFlagCheck(flag, 'varlen_check_cu_seqlens', (bits) => {
    if (!bits) return null;
    const why: string[] = [];
    if (bits & 1) why.push('must start at 0');
    if (bits & 2) why.push('must be non-decreasing');
    if (bits & 4) why.push(`last entry must equal the number of packed rows ${total}`);
    if (bits & 8 && !(bits & 3)) {
      return new WebattnError('INVALID_ARGUMENT', `${maxArgument}: ${maxSeqlen} is smaller than the longest sequence in ${argument} (checked on the GPU)`, { argument: maxArgument });
    }
    return new WebattnError('INVALID_ARGUMENT', `${argument} (GPU-held, checked by flashAttnVarlen): ${why.join('; ')}`, { argument });
  }, outputs);
}
