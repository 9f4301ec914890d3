import { maskMod, type MaskMod } from '../mods.js';

/**
 * Causal mask: query q sees keys kv ≤ q.
 * @example const bm = await createBlockMask(causalMask, null, null, L, L, { device });
 */
export const causalMask: MaskMod = maskMod((b, h, qIdx, kvIdx) => qIdx >= kvIdx);
