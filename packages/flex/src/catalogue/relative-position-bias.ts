import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Tensor } from '@webattn/core-tensor';
import { scoreMod, type ScoreMod, type ScoreModFn } from '../mods.js';

/** The function itself, shared by every instance (compiled once: the compile cache is per function object). */
const fn: ScoreModFn = (score, b, h, qIdx, kvIdx, c) => score + c.bias[h][qIdx - kvIdx + c.offset];

/**
 * Learnable relative-position bias: adds table[h][q − kv + L − 1] for a table `[H, 2L − 1]`; mark
 * the table `requiresGrad` and its gradient flows from the attention backward.
 * @example const table = randn([H, 2 * L - 1], { device, requiresGrad: true }); const sm = relativePositionBias(table);
 */
export function relativePositionBias(table: Tensor): ScoreMod {
  if (!(table instanceof T.Tensor) || table.rank !== 2 || table.shape[1]! % 2 !== 1) {
    throw new WebattnError('INVALID_ARGUMENT', `table: expected a tensor [H, 2L − 1], got ${describe(table)}`, { argument: 'table' });
  }
  const offset = (table.shape[1]! - 1) / 2;
  return scoreMod(fn, { bias: table, offset });
}
