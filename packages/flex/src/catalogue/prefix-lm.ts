import { maskMod, type MaskMod } from '../mods.js';
import { posInt } from './checks.js';

/**
 * Prefix LM: the first `prefix` keys are visible to everyone, the rest causally.
 * @example const m = prefixLM(64);
 */
export function prefixLM(prefix: number): MaskMod {
  posInt(prefix, 'prefix', 0);
  return maskMod((b, h, qIdx, kvIdx, c) => kvIdx < c.prefix || qIdx >= kvIdx, { prefix });
}
