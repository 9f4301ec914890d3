/** Optimizers (PyTorch semantics) whose steps run on the parameters' device through tensor ops. */
import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Tensor } from '@webattn/core-tensor';

function checkParams(params: unknown): Tensor[] {
  if (!Array.isArray(params) || params.length === 0 || !params.every((p) => p instanceof T.Tensor)) {
    throw new WebattnError('INVALID_ARGUMENT', `params: expected a non-empty array of Tensors (model.parameters()), got ${describe(params)}`, { argument: 'params' });
  }
  params.forEach((p: Tensor, i) => {
    if (!T.isFloat(p.dtype)) throw new WebattnError('DTYPE_UNSUPPORTED', `params[${i}]: expected a floating-point parameter, got ${p.dtype}`, { argument: `params[${i}]` });
  });
  return params as Tensor[];
}

function num(v: unknown, name: string, ok: (x: number) => boolean, want: string): number {
  if (typeof v !== 'number' || !ok(v)) throw new WebattnError('INVALID_ARGUMENT', `${name}: expected ${want}, got ${describe(v)}`, { argument: name });
  return v;
}

/**
 * Common base of the optimizers: a learning rate the schedulers set, the parameters, `zeroGrad()`.
 * @example class Sign extends Optimizer { step() { for (const p of this.params) if (p.grad) copyInto(p, sub(p, mul(sign(p.grad), this.lr))); } }
 */
export abstract class Optimizer {
  /** Current learning rate (schedulers write it). */
  lr: number;
  /** The learning rate the optimizer was built with (schedulers scale it). */
  readonly initialLr: number;
  readonly params: Tensor[];
  /** Steps taken. */
  stepCount = 0;
  constructor(params: Tensor[], lr: number) {
    this.params = checkParams(params);
    this.lr = num(lr, 'options.lr', (x) => x >= 0 && Number.isFinite(x), 'a finite number ≥ 0');
    this.initialLr = this.lr;
  }
  /** Sets every parameter's `.grad` to null. */
  zeroGrad(): void {
    for (const p of this.params) p.grad = null;
  }
  /** One update of every parameter that has a gradient. */
  abstract step(): void;
}

/**
 * SGD with momentum, dampening, Nesterov and (coupled) weight decay, as `torch.optim.SGD`.
 * @example const opt = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 }); loss.backward(); opt.step();
 */
export class SGD extends Optimizer {
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  private readonly buf = new Map<Tensor, Tensor>();
  constructor(params: Tensor[], options: { lr?: number; momentum?: number; dampening?: number; weightDecay?: number; nesterov?: boolean } = {}) {
    super(params, options.lr ?? 1e-3);
    this.momentum = num(options.momentum ?? 0, 'options.momentum', (x) => x >= 0, 'a number ≥ 0');
    this.dampening = num(options.dampening ?? 0, 'options.dampening', (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
    this.weightDecay = num(options.weightDecay ?? 0, 'options.weightDecay', (x) => x >= 0, 'a number ≥ 0');
    this.nesterov = options.nesterov ?? false;
    if (typeof this.nesterov !== 'boolean') throw new WebattnError('INVALID_ARGUMENT', `options.nesterov: expected a boolean, got ${describe(options.nesterov)}`, { argument: 'options.nesterov' });
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) throw new WebattnError('INVALID_ARGUMENT', 'options.nesterov: Nesterov momentum requires momentum > 0 and dampening 0', { argument: 'options.nesterov' });
  }
  step(): void {
    this.stepCount++;
    T.noGrad(() => {
      for (const p of this.params) {
        if (!p.grad) continue;
        let g: Tensor = p.grad;
        if (this.weightDecay) g = T.add(g, T.mul(p, this.weightDecay));
        if (this.momentum) {
          let b = this.buf.get(p);
          if (!b) {
            b = T.keep(T.contiguous(T.mul(g, 1))); // optimizer state outlives tidy() scopes
            this.buf.set(p, b);
          } else T.copyInto(b, T.add(T.mul(b, this.momentum), T.mul(g, 1 - this.dampening)));
          g = this.nesterov ? T.add(g, T.mul(b, this.momentum)) : b;
        }
        T.copyInto(p, T.sub(p, T.mul(g, this.lr)));
      }
    });
  }
}

/**
 * AdamW with decoupled weight decay, as `torch.optim.AdamW` (defaults lr 1e-3, betas [0.9, 0.999],
 * eps 1e-8, weightDecay 0.01): p ← p·(1 − lr·wd); m, v moments; p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps).
 * @example const opt = new AdamW(model.parameters(), { lr: 3e-4, weightDecay: 0.1 });
 */
export class AdamW extends Optimizer {
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  private readonly state = new Map<Tensor, { m: Tensor; v: Tensor; t: number }>();
  constructor(params: Tensor[], options: { lr?: number; betas?: [number, number]; eps?: number; weightDecay?: number } = {}) {
    super(params, options.lr ?? 1e-3);
    const b = options.betas ?? [0.9, 0.999];
    if (!Array.isArray(b) || b.length !== 2) throw new WebattnError('INVALID_ARGUMENT', `options.betas: expected [beta1, beta2], got ${describe(b)}`, { argument: 'options.betas' });
    this.betas = [num(b[0], 'options.betas[0]', (x) => x >= 0 && x < 1, 'a number in [0, 1)'), num(b[1], 'options.betas[1]', (x) => x >= 0 && x < 1, 'a number in [0, 1)')];
    this.eps = num(options.eps ?? 1e-8, 'options.eps', (x) => x >= 0, 'a number ≥ 0');
    this.weightDecay = num(options.weightDecay ?? 0.01, 'options.weightDecay', (x) => x >= 0, 'a number ≥ 0');
  }
  step(): void {
    this.stepCount++;
    const [b1, b2] = this.betas;
    T.noGrad(() => {
      for (const p of this.params) {
        if (!p.grad) continue;
        const g = p.grad;
        let s = this.state.get(p);
        if (!s) {
          s = { m: T.keep(T.zerosLike(p)), v: T.keep(T.zerosLike(p)), t: 0 }; // optimizer state outlives tidy() scopes
          this.state.set(p, s);
        }
        s.t++;
        if (this.weightDecay) T.copyInto(p, T.mul(p, 1 - this.lr * this.weightDecay));
        T.copyInto(s.m, T.add(T.mul(s.m, b1), T.mul(g, 1 - b1)));
        T.copyInto(s.v, T.add(T.mul(s.v, b2), T.mul(T.mul(g, g), 1 - b2)));
        const bc1 = 1 - b1 ** s.t;
        const bc2 = 1 - b2 ** s.t;
        const denom = T.add(T.div(T.sqrt(s.v), Math.sqrt(bc2)), this.eps);
        T.copyInto(p, T.sub(p, T.mul(T.div(s.m, denom), this.lr / bc1)));
      }
    });
  }
}

/**
 * Scales all gradients in place so that their global L2 norm is at most `maxNorm` (`torch.nn.utils.clip_grad_norm_`,
 * coefficient maxNorm / (norm + 1e-6) clamped to 1, computed on the device). Returns the norm before clipping (a scalar tensor).
 * @example const norm = clipGradNorm(model.parameters(), 1.0);
 */
export function clipGradNorm(params: Tensor[], maxNorm: number): Tensor {
  checkParams(params);
  num(maxNorm, 'maxNorm', (x) => x > 0 && Number.isFinite(x), 'a finite number > 0');
  return T.noGrad(() => {
    const grads = params.map((p) => p.grad).filter((g): g is Tensor => !!g);
    if (grads.length === 0) return T.zeros([], { device: params[0]!.device });
    let sq: Tensor | null = null;
    for (const g of grads) {
      const s = T.sum(T.mul(g, g));
      sq = sq ? T.add(sq, s) : s;
    }
    const norm = T.sqrt(sq!);
    const coef = T.minimum(T.div(maxNorm, T.add(norm, 1e-6)), 1);
    for (const g of grads) T.copyInto(g, T.mul(g, coef));
    return norm;
  });
}

/**
 * Cosine learning-rate schedule with linear warmup (transformers' `get_cosine_schedule_with_warmup`):
 * factor t/warmup during warmup, then 0.5·(1 + cos(π·2·cycles·progress)) down to 0 at `totalSteps`
 * (cycles 0.5). Each `step()` advances one step and writes `optimizer.lr`; the constructor sets the step-0 rate.
 * @example const sched = new CosineWithWarmup(opt, { warmupSteps: 10, totalSteps: 200 }); opt.step(); sched.step();
 */
export class CosineWithWarmup {
  private t = 0;
  readonly warmupSteps: number;
  readonly totalSteps: number;
  readonly numCycles: number;
  constructor(readonly optimizer: Optimizer, options: { warmupSteps: number; totalSteps: number; numCycles?: number }) {
    if (!(optimizer instanceof Optimizer)) throw new WebattnError('INVALID_ARGUMENT', `optimizer: expected an Optimizer, got ${describe(optimizer)}`, { argument: 'optimizer' });
    this.warmupSteps = num(options?.warmupSteps, 'options.warmupSteps', (x) => Number.isInteger(x) && x >= 0, 'an integer ≥ 0');
    this.totalSteps = num(options?.totalSteps, 'options.totalSteps', (x) => Number.isInteger(x) && x >= 1, 'an integer ≥ 1');
    this.numCycles = num(options.numCycles ?? 0.5, 'options.numCycles', (x) => x > 0, 'a number > 0');
    optimizer.lr = optimizer.initialLr * this.factor(0);
  }
  /** The multiplier of the initial learning rate at step `t`. */
  factor(t: number): number {
    if (t < this.warmupSteps) return t / Math.max(1, this.warmupSteps);
    const progress = (t - this.warmupSteps) / Math.max(1, this.totalSteps - this.warmupSteps);
    return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * this.numCycles * 2 * progress)));
  }
  /** Advances one step and updates the optimizer's learning rate; returns it. */
  step(): number {
    this.t++;
    this.optimizer.lr = this.optimizer.initialLr * this.factor(this.t);
    return this.optimizer.lr;
  }
  /** The current learning rate. */
  get lastLr(): number {
    return this.optimizer.lr;
  }
}
