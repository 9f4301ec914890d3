import { WebattnError, describe } from '@webattn/core-tensor';
import { scoreMod, type ScoreMod, type ScoreModFn } from '../mods.js';

/** The function itself, shared by every instance (compiled once: the compile cache is per function object). */
const fn: ScoreModFn = (score, b, h, qIdx, kvIdx, c) => c.cap * Math.tanh(score / c.cap);

/**
 * Soft-capping: cap · tanh(score / cap) (Gemma 2, Grok).
 * @example const sm = softcap(30);
 */
export function softcap(cap: number): ScoreMod {
  if (typeof cap !== 'number' || !(cap > 0) || !Number.isFinite(cap)) throw new WebattnError('INVALID_ARGUMENT', `cap: expected a positive finite number, got ${describe(cap)}`, { argument: 'cap' });
  return scoreMod(fn, { cap });
}
