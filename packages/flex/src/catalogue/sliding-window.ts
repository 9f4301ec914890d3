import { maskMod, type MaskMod, type MaskModFn } from '../mods.js';
import { posInt } from './checks.js';

/** The function itself, shared by every instance (compiled once: the compile cache is per function object). */
const fn: MaskModFn = (b, h, qIdx, kvIdx, c) => qIdx >= kvIdx && qIdx - kvIdx <= c.window;

/**
 * Causal sliding window: kv ∈ [q − window, q].
 * @example const m = slidingWindow(256);
 */
export function slidingWindow(window: number): MaskMod {
  posInt(window, 'window', 0);
  return maskMod(fn, { window });
}
