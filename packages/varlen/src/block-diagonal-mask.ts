import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Device, type Tensor } from '@webattn/core-tensor';
import { cuSeqlens } from './cu-seqlens.js';

/** Pattern inside each block of a {@link BlockDiagonalMask}. */
export type BlockDiagonalKind = 'full' | 'causal' | 'causal-bottom-right' | 'local';

/**
 * A block-diagonal attention mask over packed sequences, as xFormers' `BlockDiagonalMask`:
 * query block b attends only to key block b, optionally causal or local. Use it with
 * `scaledDotProductAttention` (through {@link BlockDiagonalMask.materialize}) or convert it to a
 * flex mask function with {@link BlockDiagonalMask.toMaskMod}.
 *
 * @example
 * const m = BlockDiagonalMask.fromSeqlens([3, 5]).makeCausal();
 * const out = scaledDotProductAttention(q, k, v, { attnMask: m.materialize(device) });
 */
export class BlockDiagonalMask {
  /** Query cu_seqlens. */
  readonly qCu: Int32Array;
  /** Key cu_seqlens. */
  readonly kCu: Int32Array;
  /** Which pattern inside each block. */
  readonly kind: BlockDiagonalKind;
  /** Window of `makeLocalAttention`. */
  readonly window: number;
  private readonly qSeq: Int32Array;
  private readonly kSeq: Int32Array;

  private constructor(qCu: Int32Array, kCu: Int32Array, kind: BlockDiagonalKind, window = 0) {
    this.qCu = qCu;
    this.kCu = kCu;
    this.kind = kind;
    this.window = window;
    this.qSeq = seqOf(qCu);
    this.kSeq = seqOf(kCu);
  }

  /** Blocks of the given query lengths (and key lengths, default equal). */
  static fromSeqlens(qSeqlens: readonly number[], kvSeqlens?: readonly number[]): BlockDiagonalMask {
    const kv = kvSeqlens ?? qSeqlens;
    if (kv.length !== qSeqlens.length) {
      throw new WebattnError('SHAPE_MISMATCH', `kvSeqlens: ${kv.length} lengths but qSeqlens has ${qSeqlens.length}`, { argument: 'kvSeqlens' });
    }
    return new BlockDiagonalMask(cuSeqlens(qSeqlens), cuSeqlens(kv), 'full');
  }
  /** Causal inside each block, aligned top-left (query i sees keys j ≤ i). */
  makeCausal(): BlockDiagonalMask {
    return new BlockDiagonalMask(this.qCu, this.kCu, 'causal');
  }
  /** Causal inside each block, aligned bottom-right (j ≤ i + Lk − Lq), as FlashAttention-2 varlen. */
  makeCausalFromBottomRight(): BlockDiagonalMask {
    return new BlockDiagonalMask(this.qCu, this.kCu, 'causal-bottom-right');
  }
  /** Causal local attention inside each block: i − window < j ≤ i (top-left aligned), as xFormers. */
  makeLocalAttention(window: number): BlockDiagonalMask {
    if (!Number.isInteger(window) || window < 1) {
      throw new WebattnError('INVALID_ARGUMENT', `window: expected a positive integer, got ${describe(window)}`, { argument: 'window' });
    }
    return new BlockDiagonalMask(this.qCu, this.kCu, 'local', window);
  }
  /** Total query rows. */
  get totalQ(): number {
    return this.qCu[this.qCu.length - 1]!;
  }
  /** Total key rows. */
  get totalK(): number {
    return this.kCu[this.kCu.length - 1]!;
  }
  /** True when packed query row `q` may attend packed key row `kv`. */
  attends(q: number, kv: number): boolean {
    const b = this.qSeq[q]!;
    if (this.kSeq[kv] !== b) return false;
    const i = q - this.qCu[b]!;
    const j = kv - this.kCu[b]!;
    switch (this.kind) {
      case 'full':
        return true;
      case 'causal':
        return j <= i;
      case 'causal-bottom-right':
        return j <= i + (this.kCu[b + 1]! - this.kCu[b]!) - (this.qCu[b + 1]! - this.qCu[b]!);
      case 'local':
        return j <= i && j > i - this.window;
    }
  }
  /**
   * The mask as a flex mask function over packed indices, `{ kind: 'mask', fn, captures }`: `fn` is a
   * compilable plain function of its captures (int32 CPU tensors of sequence ids and starts), so
   * `@webattn/flex` accepts it as a `MaskMod` and compiles it; called directly it reads the same tables.
   * @example const bm = await createBlockMask(mask.toMaskMod(), null, null, mask.totalQ, mask.totalK);
   */
  toMaskMod(): { kind: 'mask'; fn: (b: number, h: number, qIdx: number, kvIdx: number) => boolean; captures: Record<string, Tensor | number>; name: string } {
    const qSeq = this.qSeq;
    const kSeq = this.kSeq;
    const qStart = Int32Array.from(qSeq, (b) => this.qCu[b]!);
    const kStart = Int32Array.from(kSeq, (b) => this.kCu[b]!);
    const shift = Int32Array.from(qSeq, (b) => this.kCu[b + 1]! - this.kCu[b]! - (this.qCu[b + 1]! - this.qCu[b]!));
    const window = this.window;
    const t = (a: Int32Array) => T.tensor(a, [a.length], { dtype: 'int32', device: T.cpu() });
    const captures = { qSeq: t(qSeq), kSeq: t(kSeq), qStart: t(qStart), kStart: t(kStart), shift: t(shift), window };
    let fn: (b: number, h: number, qIdx: number, kvIdx: number) => boolean;
    switch (this.kind) {
      case 'full':
        fn = (b, h, q, kv) => qSeq[q] === kSeq[kv];
        break;
      case 'causal':
        fn = (b, h, q, kv) => qSeq[q] === kSeq[kv] && kv - kStart[kv]! <= q - qStart[q]!;
        break;
      case 'causal-bottom-right':
        fn = (b, h, q, kv) => qSeq[q] === kSeq[kv] && kv - kStart[kv]! <= q - qStart[q]! + shift[q]!;
        break;
      case 'local':
        fn = (b, h, q, kv) => qSeq[q] === kSeq[kv] && kv - kStart[kv]! <= q - qStart[q]! && kv - kStart[kv]! > q - qStart[q]! - window;
        break;
    }
    return { kind: 'mask', fn, captures, name: `blockDiagonal(${this.kind})` };
  }
  /** The dense boolean mask `[totalQ, totalK]` (true = attend) for `scaledDotProductAttention`. */
  materialize(device?: Device): Tensor {
    const data = new Uint8Array(this.totalQ * this.totalK);
    for (let q = 0; q < this.totalQ; q++) for (let kv = this.kCu[this.qSeq[q]!]!; kv < this.kCu[this.qSeq[q]! + 1]!; kv++) data[q * this.totalK + kv] = this.attends(q, kv) ? 1 : 0;
    return T.tensor(data, [this.totalQ, this.totalK], { dtype: 'bool', ...(device ? { device } : {}) });
  }
}

function seqOf(cu: Int32Array): Int32Array {
  const out = new Int32Array(cu[cu.length - 1]!);
  for (let b = 0; b + 1 < cu.length; b++) out.fill(b, cu[b]!, cu[b + 1]!);
  return out;
}
