import { maskMod, type MaskMod, type MaskModFn } from '../mods.js';
import { posInt } from './checks.js';

/** The function itself, shared by every instance (compiled once: the compile cache is per function object). */
const fn: MaskModFn = (b, h, qIdx, kvIdx, c) => kvIdx < c.prefix || qIdx >= kvIdx;

/**
 * Prefix LM: the first `prefix` keys are visible to everyone, the rest causally.
 * @example const m = prefixLM(64);
 */
export function prefixLM(prefix: number): MaskMod {
  posInt(prefix, 'prefix', 0);
  return maskMod(fn, { prefix });
}
