import { maskMod, type MaskMod, type MaskModFn } from '../mods.js';
import { posInt } from './checks.js';

/** The function itself, shared by every instance (compiled once: the compile cache is per function object). */
const fn: MaskModFn = (b, h, qIdx, kvIdx, c) => (qIdx - kvIdx <= c.window && kvIdx - qIdx <= c.window) || kvIdx < c.globalTokens || qIdx < c.globalTokens;

/**
 * Longformer-style: a bidirectional window of ±`window` plus `globalTokens` leading tokens that see and are seen by all.
 * @example const m = globalSlidingWindow(128, 4);
 */
export function globalSlidingWindow(window: number, globalTokens: number): MaskMod {
  posInt(window, 'window', 0);
  posInt(globalTokens, 'globalTokens', 0);
  return maskMod(fn, { window, globalTokens });
}
