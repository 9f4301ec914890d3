/** Optimizers (PyTorch semantics) whose steps run on the parameters' device through tensor ops. */
import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type DType, type Tensor } from '@webattn/core-tensor';

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

/** The dtype optimizer state and updates use for a parameter: float64 for float64 parameters, else float32. */
function accDtype(p: Tensor): DType {
  return p.dtype === 'float64' ? 'float64' : 'float32';
}

function asAcc(t: Tensor, dt: DType): Tensor {
  return t.dtype === dt ? t : T.cast(t, dt);
}

/** Options every optimizer takes. */
export interface OptimizerOptions {
  /**
   * Keep a float32 master copy of every float16 parameter (default false): the update is applied to
   * the master and the parameter receives its float16 rounding, so updates smaller than a float16
   * step still accumulate (mixed-precision training with a float16 model, like apex O2 / a
   * master-weights trainer). Without it a float16 parameter is updated in float32 and written back
   * rounded each step.
   */
  masterWeights?: boolean;
}

/**
 * Common base of the optimizers: a learning rate the schedulers set, the parameters, `zeroGrad()`,
 * `dispose()`. State (moments, momentum buffers) and the arithmetic of every update are float32
 * whatever the parameter dtype (float64 for float64 parameters): a float16 parameter is read as
 * float32, updated, and written back rounded to float16 (or kept in a float32 master copy with
 * `masterWeights`). Gradients of another dtype than the parameter (float32 gradients of float16
 * parameters, as {@link GradScaler.unscale} leaves them) are accepted.
 * @example class Sign extends Optimizer { step() { for (const p of this.params) if (p.grad) copyInto(p, sub(p, mul(sign(p.grad), this.lr))); } }
 */
export abstract class Optimizer {
  /** Current learning rate (schedulers write it). */
  lr: number;
  /** The learning rate the optimizer was built with (schedulers scale it). */
  readonly initialLr: number;
  readonly params: Tensor[];
  /** Whether float16 parameters have float32 master copies (see {@link OptimizerOptions.masterWeights}). */
  readonly masterWeights: boolean;
  /** Steps taken. */
  stepCount = 0;
  private readonly masters = new Map<Tensor, Tensor>();
  private _disposed = false;
  constructor(params: Tensor[], lr: number, options: OptimizerOptions = {}) {
    this.params = checkParams(params);
    this.lr = num(lr, 'options.lr', (x) => x >= 0 && Number.isFinite(x), 'a finite number ≥ 0');
    this.initialLr = this.lr;
    const mw = options.masterWeights ?? false;
    if (typeof mw !== 'boolean') throw new WebattnError('INVALID_ARGUMENT', `options.masterWeights: expected a boolean, got ${describe(mw)}`, { argument: 'options.masterWeights' });
    this.masterWeights = mw;
  }
  /** True after {@link Optimizer.dispose}. */
  get disposed(): boolean {
    return this._disposed;
  }
  /** Sets every parameter's `.grad` to null. */
  zeroGrad(): void {
    for (const p of this.params) p.grad = null;
  }
  /** One update of every parameter that has a gradient. */
  abstract step(): void;

  /**
   * Frees the optimizer state (moments, momentum buffers, master copies); the parameters stay.
   * Idempotent; `step()` afterwards throws `TENSOR_DISPOSED` naming the optimizer.
   * @example opt.dispose(); model.dispose();
   */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    for (const t of this.stateTensors()) t.dispose();
    for (const t of this.masters.values()) t.dispose();
    this.masters.clear();
    this.clearState();
  }
  /** `using opt = new AdamW(...)` support: the same as {@link Optimizer.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** The float32 master copy of `p` (null unless `masterWeights` and `p` is float16 and has been stepped). */
  masterOf(p: Tensor): Tensor | null {
    return this.masters.get(p) ?? null;
  }

  /** Tensors of the subclass state (freed by {@link Optimizer.dispose}); subclasses with state override it. */
  protected stateTensors(): Tensor[] {
    return [];
  }
  /** Forgets the subclass state after its tensors were freed; subclasses with state override it. */
  protected clearState(): void {}

  /** Throws `TENSOR_DISPOSED` after {@link Optimizer.dispose}. */
  protected assertLive(): void {
    if (this._disposed) throw new WebattnError('TENSOR_DISPOSED', `optimizer: this ${this.constructor.name} was released by dispose()`, { argument: 'optimizer' });
  }

  /**
   * Runs `update(w, g)` for every parameter with a gradient, with `w` the weight and `g` the gradient in
   * the accumulation dtype (float32, or float64 for float64 parameters), inside a `tidy` scope, and
   * writes the returned weight back (to the master copy and, rounded, to the parameter).
   */
  protected updateEach(update: (p: Tensor, w: Tensor, g: Tensor, dt: DType) => Tensor): void {
    this.assertLive();
    T.noGrad(() => {
      for (const p of this.params) {
        if (!p.grad) continue;
        const grad = p.grad;
        T.tidy(() => {
          const dt = accDtype(p);
          const master = this.masterFor(p, dt);
          const w = master ?? asAcc(p, dt);
          const next = update(p, w, asAcc(grad, dt), dt);
          if (master) {
            T.copyInto(master, next);
            T.copyInto(p, T.cast(master, p.dtype));
          } else T.copyInto(p, asAcc(next, p.dtype));
        });
      }
    });
  }

  /** The float32 master copy of `p` (made on first use) when `masterWeights` applies to it, else null. */
  protected masterFor(p: Tensor, dt: DType): Tensor | null {
    let master = this.masters.get(p);
    if (!master && this.masterWeights && p.dtype !== dt) {
      master = T.keep(T.contiguous(T.cast(p, dt))); // state outlives tidy() scopes
      this.masters.set(p, master);
    }
    return master ?? null;
  }

  /** A zero-filled state tensor shaped like `p` in dtype `dt`, exempt from tidy() scopes. */
  protected zerosState(p: Tensor, dt: DType): Tensor {
    return T.keep(T.zeros(p.shape, { dtype: dt, device: p.device }));
  }
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
  constructor(params: Tensor[], options: OptimizerOptions & { lr?: number; momentum?: number; dampening?: number; weightDecay?: number; nesterov?: boolean } = {}) {
    super(params, options.lr ?? 1e-3, options);
    this.momentum = num(options.momentum ?? 0, 'options.momentum', (x) => x >= 0, 'a number ≥ 0');
    this.dampening = num(options.dampening ?? 0, 'options.dampening', (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
    this.weightDecay = num(options.weightDecay ?? 0, 'options.weightDecay', (x) => x >= 0, 'a number ≥ 0');
    this.nesterov = options.nesterov ?? false;
    if (typeof this.nesterov !== 'boolean') throw new WebattnError('INVALID_ARGUMENT', `options.nesterov: expected a boolean, got ${describe(options.nesterov)}`, { argument: 'options.nesterov' });
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) throw new WebattnError('INVALID_ARGUMENT', 'options.nesterov: Nesterov momentum requires momentum > 0 and dampening 0', { argument: 'options.nesterov' });
  }
  step(): void {
    this.assertLive();
    this.stepCount++;
    this.updateEach((p, w, g0, dt) => {
      let g = g0;
      if (this.weightDecay) g = T.add(g, T.mul(w, this.weightDecay));
      if (this.momentum) {
        let b = this.buf.get(p);
        if (!b) {
          b = this.zerosState(p, dt);
          T.copyInto(b, g); // first step: buf = g (PyTorch)
          this.buf.set(p, b);
        } else T.copyInto(b, T.add(T.mul(b, this.momentum), T.mul(g, 1 - this.dampening)));
        g = this.nesterov ? T.add(g, T.mul(b, this.momentum)) : b;
      }
      return T.sub(w, T.mul(g, this.lr));
    });
  }
  protected override stateTensors(): Tensor[] {
    return [...this.buf.values()];
  }
  protected override clearState(): void {
    this.buf.clear();
  }
}

/**
 * AdamW with decoupled weight decay, as `torch.optim.AdamW` (defaults lr 1e-3, betas [0.9, 0.999],
 * eps 1e-8, weightDecay 0.01): p ← p·(1 − lr·wd); m, v moments; p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps).
 * The moments and the update are float32 for every parameter dtype (float64 for float64), so eps = 1e-8
 * and tiny second moments do not underflow with float16 parameters.
 * @example const opt = new AdamW(model.parameters(), { lr: 3e-4, weightDecay: 0.1 });
 */
export class AdamW extends Optimizer {
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  private readonly state = new Map<Tensor, { m: Tensor; v: Tensor; t: number }>();
  constructor(params: Tensor[], options: OptimizerOptions & { lr?: number; betas?: [number, number]; eps?: number; weightDecay?: number } = {}) {
    super(params, options.lr ?? 1e-3, options);
    const b = options.betas ?? [0.9, 0.999];
    if (!Array.isArray(b) || b.length !== 2) throw new WebattnError('INVALID_ARGUMENT', `options.betas: expected [beta1, beta2], got ${describe(b)}`, { argument: 'options.betas' });
    this.betas = [num(b[0], 'options.betas[0]', (x) => x >= 0 && x < 1, 'a number in [0, 1)'), num(b[1], 'options.betas[1]', (x) => x >= 0 && x < 1, 'a number in [0, 1)')];
    this.eps = num(options.eps ?? 1e-8, 'options.eps', (x) => x >= 0, 'a number ≥ 0');
    this.weightDecay = num(options.weightDecay ?? 0.01, 'options.weightDecay', (x) => x >= 0, 'a number ≥ 0');
  }
  step(): void {
    this.assertLive();
    this.stepCount++;
    const [b1, b2] = this.betas;
    // one fused in-place kernel per parameter (no temporaries); a float16 parameter with master
    // weights updates its float32 master, and the parameter receives the master's rounding
    T.noGrad(() => {
      for (const p of this.params) {
        if (!p.grad) continue;
        const grad = p.grad;
        T.tidy(() => {
          const { s, master } = this.advance(p);
          const opts = { lr: this.lr, beta1: b1, beta2: b2, eps: this.eps, weightDecay: this.weightDecay, step: s.t };
          if (master && p.isContiguous && p.device.backend === 'webgpu') {
            // the WebGPU kernel's optional fifth input: the float16 parameter receives the master's rounding in the
            // same dispatch (one per parameter instead of update + cast + copy); same arithmetic as adamwUpdate's
            T.runKernel('adamw_step', p.device, [master, grad, s.m, s.v, p], this.stepAttrs(s.t));
          } else {
            T.adamwUpdate(master ?? p, grad, s.m, s.v, opts);
            if (master) T.copyInto(p, T.cast(master, p.dtype));
          }
        });
      }
    });
  }
  /** The moments of `p` (created at zero on its first step) with their step count advanced, and its master weights. */
  private advance(p: Tensor): { s: { m: Tensor; v: Tensor; t: number }; master: Tensor | null } {
    const dt = accDtype(p);
    let s = this.state.get(p);
    if (!s) {
      s = { m: this.zerosState(p, dt), v: this.zerosState(p, dt), t: 0 };
      this.state.set(p, s);
    }
    s.t++;
    return { s, master: this.masterFor(p, dt) };
  }
  /** Attributes of the WebGPU `adamw_step` kernel at step `t` (bias corrections folded in, as adamwUpdate computes them). */
  private stepAttrs(t: number): T.AdamwStepAttrs {
    const [b1, b2] = this.betas;
    return { beta1: b1, beta2: b2, eps: this.eps, decay: 1 - this.lr * this.weightDecay, stepSize: this.lr / (1 - b1 ** t), bc2Sqrt: Math.sqrt(1 - b2 ** t) };
  }
  /**
   * For {@link GradScaler.step}: records this step on the device so that it writes nothing when `flag`'s first element
   * is nonzero (the scaler's inf/NaN flag, not read back yet), as PyTorch's fused AdamW takes `found_inf`; returns
   * the function that takes back the step count when the flag turns out set, or null (nothing recorded) unless every
   * parameter with a gradient lives on the WebGPU device of `flag`. The host then reads the flag once, after the step,
   * instead of waiting for the backward before recording the update.
   */
  stepUnlessFlagged(flag: Tensor): (() => void) | null {
    this.assertLive();
    const withGrad = this.params.filter((p) => p.grad);
    if (flag.device.backend !== 'webgpu' || flag.dtype !== 'float32' || flag.size < 1 || !withGrad.every((p) => p.device === flag.device)) return null;
    this.stepCount++;
    const stepped: { t: number }[] = [];
    T.noGrad(() => {
      for (const p of withGrad) {
        const grad = p.grad!;
        T.tidy(() => {
          const { s, master } = this.advance(p);
          stepped.push(s);
          const attrs = { ...this.stepAttrs(s.t), skipIf: true };
          T.runKernel('adamw_step', p.device, master ? [master, grad, s.m, s.v, p, flag] : [p, grad, s.m, s.v, flag], attrs);
        });
      }
    });
    return () => {
      this.stepCount--;
      for (const s of stepped) s.t--;
    };
  }
  /** The moments of `p` (float32; float64 for float64 parameters), null before its first step. */
  moments(p: Tensor): { m: Tensor; v: Tensor; step: number } | null {
    const s = this.state.get(p);
    return s ? { m: s.m, v: s.v, step: s.t } : null;
  }
  protected override stateTensors(): Tensor[] {
    return [...this.state.values()].flatMap((s) => [s.m, s.v]);
  }
  protected override clearState(): void {
    this.state.clear();
  }
}

/** Options of {@link GradScaler} (`torch.amp.GradScaler`'s, camel-cased). */
export interface GradScalerOptions {
  /** Starting scale (default 2^16). */
  initScale?: number;
  /** Factor the scale grows by after `growthInterval` steps without inf/NaN (default 2). */
  growthFactor?: number;
  /** Factor the scale shrinks by when a step found inf/NaN (default 0.5). */
  backoffFactor?: number;
  /** Steps without inf/NaN before the scale grows (default 2000). */
  growthInterval?: number;
  /** False makes every method a pass-through (scale 1, `step` always steps); default true. */
  enabled?: boolean;
}

/**
 * Dynamic loss scaling for float16 training, as `torch.amp.GradScaler`: `scale(loss)` multiplies the
 * loss (computed in float32) by the scale (2^16 at first) so that small float16 gradients do not flush
 * to zero; `step(opt)` unscales the gradients into float32 (see {@link GradScaler.unscale}), skips the
 * optimizer step when any of them is inf or NaN, and otherwise steps; `update()` halves the scale after
 * a skipped step and doubles it after `growthInterval` (2000) good steps in a row. bfloat16 would need
 * none (webattn has no bfloat16). `step` is async: it reads one flag back from the device (PyTorch
 * synchronises there too).
 *
 * @example
 * const scaler = new GradScaler();
 * const { loss } = await model.forward(batch);
 * scaler.scale(loss).backward();
 * await scaler.step(opt); // skipped on overflow
 * scaler.update(); opt.zeroGrad();
 */
export class GradScaler {
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  readonly enabled: boolean;
  private _scale: number;
  private growthTracker = 0;
  private readonly perOpt = new Map<Optimizer, { flag: Tensor | null; stepped: boolean | null }>();
  constructor(options: GradScalerOptions = {}) {
    if (options === null || typeof options !== 'object') throw new WebattnError('INVALID_ARGUMENT', `options: expected an object, got ${describe(options)}`, { argument: 'options' });
    this._scale = num(options.initScale ?? 2 ** 16, 'options.initScale', (x) => x > 0 && Number.isFinite(x), 'a finite number > 0');
    this.growthFactor = num(options.growthFactor ?? 2, 'options.growthFactor', (x) => x > 1 && Number.isFinite(x), 'a finite number > 1');
    this.backoffFactor = num(options.backoffFactor ?? 0.5, 'options.backoffFactor', (x) => x > 0 && x < 1, 'a number in (0, 1)');
    this.growthInterval = num(options.growthInterval ?? 2000, 'options.growthInterval', (x) => Number.isInteger(x) && x >= 1, 'an integer ≥ 1');
    const en = options.enabled ?? true;
    if (typeof en !== 'boolean') throw new WebattnError('INVALID_ARGUMENT', `options.enabled: expected a boolean, got ${describe(en)}`, { argument: 'options.enabled' });
    this.enabled = en;
  }

  /** The current scale (1 when disabled). */
  getScale(): number {
    return this.enabled ? this._scale : 1;
  }

  /** Steps in a row without inf/NaN since the scale last changed. */
  get goodSteps(): number {
    return this.growthTracker;
  }

  /**
   * `loss · scale`, in float32: what to call `backward()` on. Returns `loss` unchanged when disabled.
   * The loss should be float32, as webattn's models compute it (cross-entropy of float16 logits runs
   * in float32, like under `torch.autocast`): a float16 loss is cast first, but the gradient reaching
   * it (the scale, 2^16 = 65536) overflows float16, so the first step is skipped and the halved scale is used.
   */
  scale(loss: Tensor): Tensor {
    if (!(loss instanceof T.Tensor) || !T.isFloat(loss.dtype)) throw new WebattnError('INVALID_ARGUMENT', `loss: expected a floating-point Tensor, got ${loss instanceof T.Tensor ? loss.dtype : describe(loss)}`, { argument: 'loss' });
    if (!this.enabled) return loss;
    return T.mul(loss.dtype === 'float16' ? T.cast(loss, 'float32') : loss, this._scale);
  }

  /**
   * Divides the gradients of `optimizer`'s parameters by the scale, in float32 (float64 for float64
   * parameters): each `.grad` is replaced by its unscaled float32 copy (so `clipGradNorm` between
   * `unscale` and `step` sees true gradients, as with PyTorch's `unscale_`), and records on the device
   * whether any is inf or NaN. Called by {@link GradScaler.step} when not called before. A second call
   * before {@link GradScaler.update} throws `INVALID_ARGUMENT` (as PyTorch's).
   * @example scaler.unscale(opt); clipGradNorm(model.parameters(), 1.0); await scaler.step(opt);
   */
  unscale(optimizer: Optimizer): void {
    if (!(optimizer instanceof Optimizer)) throw new WebattnError('INVALID_ARGUMENT', `optimizer: expected an Optimizer, got ${describe(optimizer)}`, { argument: 'optimizer' });
    if (!this.enabled) return;
    const st = this.perOpt.get(optimizer);
    if (st) throw new WebattnError('INVALID_ARGUMENT', `optimizer: ${st.stepped === null ? 'unscale()' : 'step()'} was already called on this optimizer since the last update()`, { argument: 'optimizer' });
    const inv = 1 / this._scale;
    const flag = T.noGrad(() =>
      T.tidy(() => {
        let bad: Tensor | null = null;
        let fused: Tensor | null = null; // the flag of the fused kernel: 1 where a gradient had inf/NaN, else 0
        for (const p of optimizer.params) {
          const g = p.grad;
          if (!g) continue;
          const dt: DType = p.dtype === 'float64' ? 'float64' : 'float32';
          if (dt === 'float32' && T.getKernel('amp_unscale', g.device.backend) && (!fused || fused.device === g.device)) {
            // one dispatch per gradient (WebGPU): unscaled float32 copy + inf/NaN flag
            fused ??= T.zeros([1], { device: g.device });
            const u = T.keep(T.runKernel('amp_unscale', g.device, [g, fused], { inv })[0]!);
            p.grad = u;
            p._gradOwned = true;
            continue;
          }
          const u = T.keep(T.contiguous(T.mul(asAcc(g, dt), inv)));
          // inf·0 and NaN·0 are NaN: the sum is NaN exactly when some element is not finite
          const part = T.cast(T.sum(T.mul(u, 0)), 'float32');
          bad = bad ? T.add(bad, part) : part;
          p.grad = u;
          p._gradOwned = true; // replaced/disposed like an autograd gradient (zeroGrad frees it)
        }
        // either flag is 0 when every gradient is finite (NaN or 1 otherwise); a mix (several devices) adds them
        if (fused) bad = bad ? T.add(bad, T.cast(fused, bad.dtype)) : fused;
        return bad;
      }),
    );
    if (flag) T.keep(flag);
    this.perOpt.set(optimizer, { flag, stepped: null });
  }

  /**
   * Unscales (unless {@link GradScaler.unscale} ran), then runs `optimizer.step()` unless a gradient
   * is inf or NaN. Resolves to true when the step ran, false when it was skipped.
   */
  async step(optimizer: Optimizer): Promise<boolean> {
    if (!(optimizer instanceof Optimizer)) throw new WebattnError('INVALID_ARGUMENT', `optimizer: expected an Optimizer, got ${describe(optimizer)}`, { argument: 'optimizer' });
    if (!this.enabled) {
      optimizer.step();
      return true;
    }
    let st = this.perOpt.get(optimizer);
    if (st && st.stepped !== null) throw new WebattnError('INVALID_ARGUMENT', 'optimizer: step() was already called on this optimizer since the last update()', { argument: 'optimizer' });
    if (!st) {
      this.unscale(optimizer);
      st = this.perOpt.get(optimizer)!;
    }
    let finite = true;
    // an optimizer that can skip on the device (AdamW on WebGPU, its step() not overridden) steps first; the flag is
    // read once, after it
    const deferrable = optimizer instanceof AdamW && optimizer.step === AdamW.prototype.step;
    const undo = st.flag && deferrable ? optimizer.stepUnlessFlagged(st.flag) : null;
    if (undo) {
      try {
        finite = (await st.flag!.item()) === 0;
      } finally {
        st.flag!.dispose();
        st.flag = null;
      }
      if (!finite) undo();
      st.stepped = finite;
      return finite;
    }
    if (st.flag) {
      try {
        finite = (await st.flag.item()) === 0; // 0 (or −0): every gradient finite; NaN or 1: some inf/NaN
      } finally {
        st.flag.dispose();
        st.flag = null;
      }
    }
    st.stepped = finite;
    if (finite) optimizer.step();
    return finite;
  }

  /**
   * Adjusts the scale after the step(s) of this iteration: × `backoffFactor` when any step since
   * the last update found inf/NaN (and the good-step count restarts), else one more good step and
   * × `growthFactor` once `growthInterval` good steps are reached. `newScale` sets the scale instead.
   * Throws `INVALID_ARGUMENT` when no `step()` ran since the last update.
   */
  update(newScale?: number): void {
    if (!this.enabled) return;
    if (newScale !== undefined) {
      this._scale = num(newScale, 'newScale', (x) => x > 0 && Number.isFinite(x), 'a finite number > 0');
      this.growthTracker = 0;
    } else {
      const states = [...this.perOpt.values()];
      if (!states.some((s) => s.stepped !== null)) throw new WebattnError('INVALID_ARGUMENT', 'scaler: update() needs a step(optimizer) since the last update() (no inf checks were recorded)', { argument: 'scaler' });
      if (states.some((s) => s.stepped === false)) {
        this._scale *= this.backoffFactor;
        this.growthTracker = 0;
      } else if (++this.growthTracker >= this.growthInterval) {
        this._scale *= this.growthFactor;
        this.growthTracker = 0;
      }
    }
    for (const s of this.perOpt.values()) s.flag?.dispose();
    this.perOpt.clear();
  }
}

/**
 * Scales all gradients in place so that their global L2 norm is at most `maxNorm` (`torch.nn.utils.clip_grad_norm_`,
 * coefficient maxNorm / (norm + 1e-6) clamped to 1, computed on the device; the norm accumulates in float32, or
 * float64 when a gradient is float64, whatever the gradient dtype). Returns the norm before clipping (a scalar tensor).
 * @example const norm = clipGradNorm(model.parameters(), 1.0);
 */
export function clipGradNorm(params: Tensor[], maxNorm: number): Tensor {
  checkParams(params);
  num(maxNorm, 'maxNorm', (x) => x > 0 && Number.isFinite(x), 'a finite number > 0');
  return T.noGrad(() =>
    T.tidy(() => {
      const grads = params.map((p) => p.grad).filter((g): g is Tensor => !!g);
      if (grads.length === 0) return T.zeros([], { device: params[0]!.device });
      // squares summed in float32 (float64 when a gradient is float64): float16 squares overflow at 256
      const dt: DType = grads.some((g) => g.dtype === 'float64') ? 'float64' : 'float32';
      let sq: Tensor | null = null;
      for (const g of grads) {
        const g32 = asAcc(g, dt);
        const s = T.sum(T.mul(g32, g32));
        sq = sq ? T.add(sq, s) : s;
      }
      const norm = T.sqrt(sq!);
      const coef = T.minimum(T.div(maxNorm, T.add(norm, 1e-6)), 1);
      for (const g of grads) T.copyInto(g, T.mul(g, asAcc(coef, g.dtype)));
      return norm;
    }),
  );
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
