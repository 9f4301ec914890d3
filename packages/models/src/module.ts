/** `Module`: a tree of named parameters and sub-modules with PyTorch / transformers naming. */
import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Device, type DType, type Tensor } from '@webattn/core-tensor';

/**
 * What {@link Module.loadStateDict} found: keys the dict lacked and keys the module does not have.
 * @example const { missingKeys, unexpectedKeys } = await model.loadStateDict(dict, { strict: false });
 */
export interface LoadStateDictResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

/**
 * Base class of every layer and model: holds parameters (leaf tensors with `requiresGrad`) and
 * child modules under names, so that `namedParameters()` yields transformers' dotted names
 * (`transformer.h.0.attn.c_attn.weight`). A parameter shared by two modules (tied weights) is listed
 * once, under its first name; the other name is an alias accepted by {@link Module.loadStateDict}.
 *
 * @example
 * for (const [name, p] of model.namedParameters()) console.log(name, p.shape);
 * const { missingKeys } = await model.loadStateDict(weights, { strict: false });
 */
export class Module {
  /** True in training mode (dropout active); see {@link Module.train} / {@link Module.eval}. */
  training = true;
  private readonly _params = new Map<string, Tensor | null>();
  private readonly _modules = new Map<string, Module>();
  private readonly _aliases = new Map<string, string>();
  private _disposed = false;

  /** Registers (or replaces) a parameter under `name`; it becomes a grad-requiring leaf. */
  registerParameter(name: string, t: Tensor | null): Tensor | null {
    if (t && !t.requiresGrad) t.requiresGrad = true;
    if (t) T.keep(t); // parameters outlive any tidy() scope they were created in
    this._params.set(name, t);
    return t;
  }

  /** Registers (or replaces) a child module under `name` (a number-like name for lists). */
  registerModule<M extends Module>(name: string, m: M): M {
    this._modules.set(name, m);
    return m;
  }

  /** Declares `alias` (a dotted key relative to this module) as another name of the parameter `target`. */
  protected tieAlias(alias: string, target: string): void {
    this._aliases.set(alias, target);
  }

  /** The parameter registered directly on this module under `name` (throws `NOT_FOUND` otherwise). */
  param(name: string): Tensor {
    this.assertLive();
    const t = this._params.get(name);
    if (!t) throw new WebattnError('NOT_FOUND', `name: no parameter '${name}' on ${this.constructor.name}`, { argument: 'name' });
    return t;
  }

  /** Direct children as `[name, module]` pairs, in registration order. */
  namedChildren(): [string, Module][] {
    return [...this._modules.entries()];
  }

  /** All modules of the tree (this one first, name '') with dotted names. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, m] of this._modules) out.push(...m.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  /** Every parameter once, with its dotted transformers name, in registration order. */
  namedParameters(prefix = ''): [string, Tensor][] {
    this.assertLive();
    const seen = new Set<Tensor>();
    const out: [string, Tensor][] = [];
    for (const [mp, m] of this.namedModules(prefix)) {
      for (const [n, t] of m._params) {
        if (!t || seen.has(t)) continue;
        seen.add(t);
        out.push([mp ? `${mp}.${n}` : n, t]);
      }
    }
    return out;
  }

  /** Every parameter once (tied weights once). */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Name → tensor of every parameter (tied aliases omitted, as transformers saves them). */
  stateDict(): Record<string, Tensor> {
    return Object.fromEntries(this.namedParameters());
  }

  /** Alias keys (dotted, from the root) → the parameter name they stand for. */
  namedAliases(prefix = ''): Map<string, string> {
    const out = new Map<string, string>();
    for (const [mp, m] of this.namedModules(prefix)) {
      for (const [a, t] of m._aliases) out.set(mp ? `${mp}.${a}` : a, mp ? `${mp}.${t}` : t);
    }
    return out;
  }

  /**
   * Copies `dict`'s tensors into the parameters in place (optimizers keep working), moving them to
   * each parameter's device. Shapes must match (`SHAPE_MISMATCH`) and dtypes too (`DTYPE_UNSUPPORTED`),
   * naming the key. With `strict` (default) any missing or unexpected key throws `INVALID_ARGUMENT`
   * listing all of them; otherwise they are returned.
   * @example const r = await model.loadStateDict(readSafetensors(buf), { strict: false });
   */
  async loadStateDict(dict: Record<string, Tensor>, options: { strict?: boolean } = {}): Promise<LoadStateDictResult> {
    if (!dict || typeof dict !== 'object') throw new WebattnError('INVALID_ARGUMENT', `dict: expected an object of name → Tensor, got ${describe(dict)}`, { argument: 'dict' });
    const strict = options.strict ?? true;
    if (typeof strict !== 'boolean') throw new WebattnError('INVALID_ARGUMENT', `options.strict: expected a boolean, got ${describe(strict)}`, { argument: 'options.strict' });
    const params = new Map(this.namedParameters());
    const aliases = this.namedAliases();
    const missingKeys = [...params.keys()].filter((k) => !(k in dict));
    const unexpectedKeys = Object.keys(dict).filter((k) => !params.has(k) && !aliases.has(k));
    if (strict && (missingKeys.length || unexpectedKeys.length)) {
      throw new WebattnError(
        'INVALID_ARGUMENT',
        `dict: state dict does not match ${this.constructor.name}: missing keys [${missingKeys.join(', ')}], unexpected keys [${unexpectedKeys.join(', ')}]`,
        { argument: 'dict' },
      );
    }
    const pairs: [string, Tensor, Tensor][] = [];
    for (const [k, src] of Object.entries(dict)) {
      const target = params.get(k) ?? (aliases.has(k) ? params.get(aliases.get(k)!) : undefined);
      if (!target) continue;
      if (!(src instanceof T.Tensor)) throw new WebattnError('INVALID_ARGUMENT', `dict['${k}']: expected a Tensor, got ${describe(src)}`, { argument: k });
      if (!T.shapesEqual(src.shape, target.shape)) {
        throw new WebattnError('SHAPE_MISMATCH', `dict['${k}']: expected shape ${describe(target.shape)}, got ${describe(src.shape)}`, { argument: k });
      }
      if (src.dtype !== target.dtype) {
        throw new WebattnError('DTYPE_UNSUPPORTED', `dict['${k}']: expected dtype ${target.dtype}, got ${src.dtype}`, { argument: k });
      }
      pairs.push([k, src, target]);
    }
    for (const [, src, target] of pairs) {
      const s = src.device === target.device ? src : await src.to(target.device);
      T.noGrad(() => T.copyInto(target, s));
    }
    return { missingKeys, unexpectedKeys };
  }

  /** Training mode (dropout on) for this module and all children. Returns this. */
  train(mode = true): this {
    if (typeof mode !== 'boolean') throw new WebattnError('INVALID_ARGUMENT', `mode: expected a boolean, got ${describe(mode)}`, { argument: 'mode' });
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  /** Evaluation mode (dropout off). Returns this. */
  eval(): this {
    return this.train(false);
  }

  /** Sets every parameter's `.grad` to null. */
  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = null;
  }

  /**
   * Moves every parameter to `device`, or casts floating-point parameters to `dtype` (new leaf
   * tensors; tied weights stay tied). The replaced parameter tensors are disposed (their memory is
   * freed at once; a reference taken before the call throws `TENSOR_DISPOSED`). Create optimizers
   * after this call.
   * @example await model.to(await getDevice({ kind: 'webgpu' }));
   */
  async to(target: Device | DType): Promise<this> {
    this.assertLive();
    const isDtype = typeof target === 'string';
    if (isDtype && !['float32', 'float16', 'float64'].includes(target)) {
      throw new WebattnError('DTYPE_UNSUPPORTED', `target: expected a Device or a floating dtype (float32, float16, float64), got ${describe(target)}`, { argument: 'target' });
    }
    if (!isDtype && !(target instanceof T.Device)) throw new WebattnError('INVALID_ARGUMENT', `target: expected a Device or a dtype, got ${describe(target)}`, { argument: 'target' });
    const moved = new Map<Tensor, Tensor>();
    for (const [, m] of this.namedModules()) {
      for (const [n, t] of m._params) {
        if (!t) continue;
        let nt = moved.get(t);
        if (!nt) {
          if (isDtype) nt = T.tidy(() => T.noGrad(() => T.contiguous(T.cast(t, target)))); // one handle (no leftover alias)
          else {
            const m2 = await t.to(target);
            nt = m2 === t ? t.detach() : m2;
          }
          nt.requiresGrad = true;
          T.keep(nt); // parameters outlive any tidy() scope the move runs in
          moved.set(t, nt);
        }
        m._params.set(n, nt);
      }
      m.onMoved();
    }
    // the replaced parameters free their memory now (not at garbage collection): a reference taken
    // before the call throws TENSOR_DISPOSED instead of silently reading stale values
    for (const [old, nt] of moved) {
      if (old === nt) continue;
      old.grad = null;
      old.dispose();
    }
    return this;
  }

  /** Hook for subclasses that cache tensors derived from parameters (called after {@link Module.to}). */
  protected onMoved(): void {}

  /** True after {@link Module.dispose} (of this module or of a module that contains it). */
  get disposed(): boolean {
    return this._disposed;
  }

  /**
   * Frees the device memory of every parameter (tied weights once), their gradients and what
   * subclasses cache (block masks) in this module and all children. Idempotent. Afterwards the
   * module and its children throw `TENSOR_DISPOSED` naming the class on `forward`, `parameters()`,
   * `param()`, `to()` and `loadStateDict()`. Dispose the optimizer too (`opt.dispose()`): its state is its own.
   * @example model.dispose(); opt.dispose(); // device memory back to where it was before the model
   */
  dispose(): void {
    if (this._disposed) return;
    const seen = new Set<Tensor>();
    for (const [, m] of this.namedModules()) {
      if (m._disposed) continue;
      for (const t of m._params.values()) {
        if (!t || seen.has(t)) continue;
        seen.add(t);
        t.grad = null;
        t.dispose();
      }
      m.onDispose();
      m._disposed = true;
    }
  }

  /** `using model = new GPT2LMHeadModel(...)` support: the same as {@link Module.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Hook for subclasses that own device memory besides parameters (called once by {@link Module.dispose}). */
  protected onDispose(): void {}

  /** Throws `TENSOR_DISPOSED` naming the class once the module was disposed. */
  protected assertLive(): void {
    if (this._disposed) {
      throw new WebattnError('TENSOR_DISPOSED', `module: this ${this.constructor.name} was released by dispose()`, { argument: 'module' });
    }
  }

  /** The device of the first parameter (the CPU reference device when there is none). */
  get device(): Device {
    const p = this.parameters()[0];
    return p ? p.device : T.cpu();
  }
}

/**
 * Exempts every tensor reachable from `value` (objects, arrays, Maps) from the enclosing `tidy` scopes:
 * for state a module caches across calls (block masks, optimizer moments).
 */
export function keepDeep<V>(value: V, seen = new Set<unknown>()): V {
  if (value === null || typeof value !== 'object' || seen.has(value)) return value;
  seen.add(value);
  if (value instanceof T.Tensor) {
    T.keep(value);
    return value;
  }
  const items = value instanceof Map ? [...value.values()] : Array.isArray(value) ? value : Object.values(value as object);
  for (const v of items) keepDeep(v, seen);
  return value;
}

/** Float32 leaf tensor with normal(0, std) values from a seeded stream (transformers' `initializer_range`). */
export function initNormal(shape: readonly number[], std: number, seed: number, device?: Device): Tensor {
  // one handle on the storage (the random draw and any alias freed), so dispose() frees the memory
  const r = T.tidy(() => T.noGrad(() => T.mul(T.randn(shape, { seed, ...(device ? { device } : {}) }), std)));
  r.requiresGrad = true;
  return T.keep(r);
}

/** Leaf tensor filled with `value`. */
export function initFull(shape: readonly number[], value: number, device?: Device): Tensor {
  return T.keep(T.full(shape, value, { requiresGrad: true, ...(device ? { device } : {}) }));
}
