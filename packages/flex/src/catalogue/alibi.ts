import * as T from '@webattn/core-tensor';
import { scoreMod, type ScoreMod, type ScoreModFn } from '../mods.js';
import { posInt } from './checks.js';

/** The function itself, shared by every instance (compiled once: the compile cache is per function object). */
const fn: ScoreModFn = (score, b, h, qIdx, kvIdx, c) => score + c.slopes[h] * (kvIdx - qIdx);

/**
 * ALiBi: adds slope_h · (kv − q) with the standard geometric slopes 2^(−8(h+1)/H).
 * @example const sm = alibi(16);
 */
export function alibi(heads: number): ScoreMod {
  posInt(heads, 'heads');
  const slopes = T.tensor(Array.from({ length: heads }, (_, i) => 2 ** ((-8 * (i + 1)) / heads)), [heads], { device: T.cpu() });
  return scoreMod(fn, { slopes });
}
