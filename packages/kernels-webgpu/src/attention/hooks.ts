/**
 * What the kernels emit for a front door's hooks (score function, mask function, capture gradients).
 */
import type { Tensor } from '@webattn/core-tensor';
import type { BindingSpec } from '../wgsl.js';
import type { FlashParams } from './plan.js';

/** d(loss)/d(raw score) given `ds` = d(loss)/d(modified score), in the pair loop of both backward kernels. */
export const scoreModGrad = (p: FlashParams): string => (p.hooks?.scoreMod ? 'score_mod_grad(raw, b, h, i, j, ds)' : 'ds');
/** The capture-gradient call of the dQ kernel's pair loop (empty without captured gradients). */
export const captureGradCall = (p: FlashParams): string => (p.hooks?.captureGrads ? 'capture_grads(raw, b, h, i, j, ds);' : '');
/** Read-write bindings of the capture gradients (dQ kernel only). */
export const hookGradBindings = (p: FlashParams): BindingSpec[] => p.hooks?.gradBindings ?? [];
/** The tensors of {@link hookGradBindings}. */
export const hookGradTensors = (p: FlashParams): Tensor[] => p.hooks?.gradTensors ?? [];
/** WGSL of the capture gradients (dQ kernel only). */
export const hookGradWgsl = (p: FlashParams): string => p.hooks?.gradWgsl ?? '';
