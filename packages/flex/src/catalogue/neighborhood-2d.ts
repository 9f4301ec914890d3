import { maskMod, type MaskMod, type MaskModFn } from '../mods.js';
import { posInt } from './checks.js';

/** The function itself, shared by every instance (compiled once: the compile cache is per function object). */
const fn: MaskModFn = (b, h, qIdx, kvIdx, c) => Math.abs(Math.floor(qIdx / c.cols) - Math.floor(kvIdx / c.cols)) <= c.radius && Math.abs((qIdx % c.cols) - (kvIdx % c.cols)) <= c.radius;

/**
 * 2-D neighbourhood on a rows×cols token grid (row-major): Chebyshev distance ≤ radius (ViT 5×5 window: radius 2).
 * @example const m = neighborhood2d(14, 14, 2);
 */
export function neighborhood2d(rows: number, cols: number, radius: number): MaskMod {
  posInt(rows, 'rows');
  posInt(cols, 'cols');
  posInt(radius, 'radius', 0);
  return maskMod(fn, { cols, radius });
}
