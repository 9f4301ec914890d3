/**
 * The attention kernel generator: FlashAttention-2-style tiled online softmax. The forward never
 * materialises Lq×Lkv and writes the log-sum-exp; the backward recomputes probabilities from it
 * (one kernel for dQ, one for dK/dV). Every front door — SDPA, flex, varlen — calls these functions
 * with its hooks (mask tensor, causal offset, score/mask functions, extra bindings); none copies them.
 *
 * Files: `plan.ts` (parameters, dims, uniforms, tiles, passes), `shared.ts` (score, loops, staging,
 * tile products), `forward.ts`, `backward-dq.ts`, `backward-dkv.ts`; on subgroup matrices (tensor cores)
 * `forward-sgmat.ts`, `backward-sgmat.ts`.
 */
import { WebattnError, type Tensor } from '@webattn/core-tensor';
import type { WebGPUDevice } from '../device/webgpu-device.js';
import { backwardDkv, backwardViaScores } from './backward-dkv.js';
import { backwardDq } from './backward-dq.js';
import { checkGrid, dims, type FlashGradInputs, type FlashParams } from './plan.js';
import { flashForward as flashForwardTiles } from './forward.js';
import { flashForwardSgmat, sgmatPlan } from './forward-sgmat.js';
import { flashBackwardSgmat, sgmatBackwardPlan } from './backward-sgmat.js';

export {
  FLASH_MAX_HEAD_DIM, passes, setFlashBackwardGrid, setFlashBackwardPath, setFlashBackwardScores, setFlashForwardPath, setFlashRegisterTile, setFlashSpecialization, setFlashStaging, setFlashTiles,
  type FlashBlocks, type FlashCaptureGrads, type FlashCaptures, type FlashGradInputs, type FlashHooks, type FlashMask, type FlashParams,
} from './plan.js';
export { hookWgsl } from './hooks.js';
export { setFlashSubgroupMatrix, sgmatPlan, hasSgmatAttention, type SgmatConfig, type SgmatMode } from './forward-sgmat.js';
export { setFlashBackwardSubgroupMatrix, sgmatBackwardPlan, type SgmatBackwardMode, type SgmatBwdConfig, type SgmatBwdTile } from './backward-sgmat.js';

/**
 * Forward: output `[B, Hq, Lq, Ev]` (contiguous, input dtype) and lse `[B, Hq, Lq]` (float32, natural log) —
 * on subgroup matrices (tensor cores) where the device has them and the inputs are float16, else the tiles.
 */
export function flashForward(p: FlashParams): {
  /** The attention output. */
  out: Tensor;
  /** Natural-log log-sum-exp per query row (−∞ when fully masked). */
  lse: Tensor;
} {
  const plan = sgmatPlan(p);
  return plan ? flashForwardSgmat(p, plan) : flashForwardTiles(p);
}

/** Backward: dQ `[B,Hq,Lq,E]`, dK `[B,Hkv,Lkv,E]`, dV `[B,Hkv,Lkv,Ev]` (contiguous, in the inputs' dtypes). */
export function flashBackward(
  p: FlashParams,
  g: FlashGradInputs,
): {
  /** Gradient of q. */
  dq: Tensor;
  /** Gradient of k (summed over the query heads of each group). */
  dk: Tensor;
  /** Gradient of v (summed likewise). */
  dv: Tensor;
} {
  const d = dims(p);
  const device = p.q.device as WebGPUDevice;
  // the kernels bind lse and delta as array<f32>: another dtype would be read as raw f32 bits
  if (g.lse.dtype !== 'float32' || g.delta.dtype !== 'float32') throw new Error(`internal: flash backward needs float32 lse and delta, got ${g.lse.dtype} and ${g.delta.dtype}`);
  if (p.hooks?.scoreMod && !p.hooks.scoreModGrad) {
    throw new WebattnError('INVALID_ARGUMENT', 'hooks.scoreModGrad: the backward of a score function needs its derivative body, got none', { argument: 'hooks.scoreModGrad' });
  }
  // gradients accumulate in float32 across passes; cast at the end for float16 inputs
  checkGrid(device, p.varlen ? d.Hq : d.B * d.Hq, 'query');
  // f16 on subgroup matrices where the device has them (backward-sgmat.ts); else the scores backward where it
  // qualifies (dQ = dS·K as one matmul, backward-dkv.ts), else the register / staged dQ and dK/dV kernels
  const plan = sgmatBackwardPlan(p, g);
  const { dq, dk, dv } = plan ? flashBackwardSgmat(p, g, plan) : (backwardViaScores(p, g) ?? { dq: backwardDq(p, g), ...backwardDkv(p, g) });
  const cast = (t: Tensor, like: Tensor) => (like.dtype === 'float32' ? t : t.cast(like.dtype).detach());
  return { dq: cast(dq, p.q), dk: cast(dk, p.k), dv: cast(dv, p.v) };
}
