import type { Tensor } from '@webattn/core-tensor';
import { packSequences, padToLength, padToLongest, JaggedTensor } from './pack.js';

/** Batch layouts the padding-vs-packing experiment compares. */
export type CollateStrategy = 'pad-to-max' | 'pad-to-longest' | 'jagged' | 'packed';

/** One collated batch. */
export interface Collated {
  strategy: CollateStrategy;
  /** `[B, L, ...]` for padded strategies, `[total, ...]` for jagged/packed. */
  values: Tensor;
  /** Sequence lengths. */
  lengths: number[];
  /** cu_seqlens (jagged/packed) */
  cuSeqlens: Int32Array | null;
  /** Padded length (padded strategies) or longest sequence. */
  maxSeqlen: number;
  /** Useful rows / computed rows. */
  usefulFraction: number;
}

/**
 * Collates sequences `[len_i, ...]` by `strategy` (the seed experiment's four): pad to a fixed
 * `maxLength`, pad to the longest in the batch, jagged (values + offsets), or concatenated with cu_seqlens.
 */
export function collate(list: readonly Tensor[], strategy: CollateStrategy, maxLength?: number): Collated {
  const lengths = list.map((t) => t.shape[0]!);
  const useful = lengths.reduce((p, n) => p + n, 0);
  switch (strategy) {
    case 'pad-to-max': {
      const L = maxLength ?? Math.max(...lengths);
      return { strategy, values: padToLength(list, L), lengths, cuSeqlens: null, maxSeqlen: L, usefulFraction: useful / (L * list.length) };
    }
    case 'pad-to-longest': {
      const { padded } = padToLongest(list);
      const L = padded.shape[1]!;
      return { strategy, values: padded, lengths, cuSeqlens: null, maxSeqlen: L, usefulFraction: useful / (L * list.length) };
    }
    case 'jagged': {
      const j = JaggedTensor.fromList(list);
      return { strategy, values: j.values, lengths, cuSeqlens: j.offsets, maxSeqlen: Math.max(...lengths), usefulFraction: 1 };
    }
    case 'packed': {
      const p = packSequences(list);
      return { strategy, values: p.values, lengths, cuSeqlens: p.cuSeqlens, maxSeqlen: p.maxSeqlen, usefulFraction: 1 };
    }
  }
}
