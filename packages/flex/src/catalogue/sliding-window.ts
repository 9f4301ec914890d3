import { maskMod, type MaskMod } from '../mods.js';
import { posInt } from './checks.js';

/**
 * Causal sliding window: kv ∈ [q − window, q].
 * @example const m = slidingWindow(256);
 */
export function slidingWindow(window: number): MaskMod {
  posInt(window, 'window', 0);
  return maskMod((b, h, qIdx, kvIdx, c) => qIdx >= kvIdx && qIdx - kvIdx <= c.window, { window });
}
