/**
 * What the kernels emit for a front door's {@link FlashHooks}: the hook functions with the generator's
 * signatures around the front door's bodies, and their call sites' pieces. Nothing here patches WGSL text.
 */
import type { Tensor } from '@webattn/core-tensor';
import type { BindingSpec } from '../wgsl.js';
import type { FlashHooks, FlashParams } from './plan.js';

/**
 * The module-scope WGSL of `hooks`: helpers, `score_mod`, `score_mod_grad`, `mask_mod`, and with
 * `captureGrads` the capture-gradient helpers and `capture_grads`. Also used by front doors that compile
 * the same functions into their own kernels (flex's block-mask builder and compile probe).
 */
export function hookWgsl(hooks: FlashHooks | null | undefined, captureGrads = false): string {
  if (!hooks) return '';
  const out = [hooks.helpers ?? ''];
  if (hooks.scoreMod) out.push(`fn score_mod(s: f32, b: u32, h: u32, q: u32, kv: u32) -> f32 {\n${hooks.scoreMod}\n}`);
  if (hooks.scoreMod && hooks.scoreModGrad) out.push(`fn score_mod_grad(s: f32, b: u32, h: u32, q: u32, kv: u32, g: f32) -> f32 {\n${hooks.scoreModGrad}\n}`);
  if (hooks.maskMod) out.push(`fn mask_mod(b: u32, h: u32, q: u32, kv: u32) -> bool {\n${hooks.maskMod}\n}`);
  if (captureGrads && hooks.captureGrads) {
    out.push(hooks.captureGrads.helpers, `fn capture_grads(s: f32, b: u32, h: u32, q: u32, kv: u32, g: f32) {\n${hooks.captureGrads.body}\n}`);
  }
  return out.join('\n');
}

/** d(loss)/d(raw score) given `ds` = d(loss)/d(modified score), in the pair loop of both backward kernels. */
export const scoreModGrad = (p: FlashParams): string => (p.hooks?.scoreMod ? 'score_mod_grad(raw, b, h, i, j, ds)' : 'ds');
/** The capture-gradient call of the dQ kernel's pair loop (empty without captured gradients). */
export const captureGradCall = (p: FlashParams): string => (p.hooks?.captureGrads ? 'capture_grads(raw, b, h, i, j, ds);' : '');
/** Read-write bindings of the capture gradients (dQ kernel only). */
export const hookGradBindings = (p: FlashParams): BindingSpec[] => p.hooks?.captureGrads?.bindings ?? [];
/** The tensors of {@link hookGradBindings}. */
export const hookGradTensors = (p: FlashParams): Tensor[] => p.hooks?.captureGrads?.tensors ?? [];
/** The capture-gradient WGSL of the dQ kernel (the other kernels emit {@link hookWgsl} without it). */
export const hookGradWgsl = (p: FlashParams): string => (p.hooks?.captureGrads ? hookWgsl({ key: '', captureGrads: p.hooks.captureGrads }, true) : '');
