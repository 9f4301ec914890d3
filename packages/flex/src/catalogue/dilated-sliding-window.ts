import { maskMod, type MaskMod, type MaskModFn } from '../mods.js';
import { posInt } from './checks.js';

/** The function itself, shared by every instance (compiled once: the compile cache is per function object). */
const fn: MaskModFn = (b, h, qIdx, kvIdx, c) => qIdx >= kvIdx && qIdx - kvIdx <= c.window * c.dilation && (qIdx - kvIdx) % c.dilation === 0;

/**
 * Causal dilated sliding window: every `dilation`-th key within `window · dilation` back.
 * @example const m = dilatedSlidingWindow(64, 2);
 */
export function dilatedSlidingWindow(window: number, dilation: number): MaskMod {
  posInt(window, 'window', 0);
  posInt(dilation, 'dilation');
  return maskMod(fn, { window, dilation });
}
