import { WebattnError } from './errors.js';
import type { GradFn } from './autograd.js';
import type { Tensor } from './tensor.js';

/**
 * Memory scopes (TF.js `tidy` semantics). Every tensor handle created while a scope is open is
 * tracked by the innermost one; closing the scope disposes the handles that were neither returned
 * nor passed to {@link keep}. Storage is reference-counted per live handle (see `Tensor.dispose`), so
 * disposing a handle never frees memory that another live handle (a view, a saved tensor of the
 * autograd graph) still uses.
 */
export interface ScopeFrame {
  /** Handles created (or returned) in this scope that it owns. */
  readonly tensors: Set<Tensor>;
  /** Handles passed to `keep()` while this scope was open: their graphs stay alive. */
  readonly kept: Tensor[];
}

/** The tracking state of a handle (internal; lives on the Tensor). */
export interface Tracked {
  /** The scope that owns the handle, or null when none does. */
  _frame: ScopeFrame | null;
}

const stack: ScopeFrame[] = [];
let untracked = 0;

/** Called by the Tensor constructor: the innermost open scope takes the new handle. */
export function trackTensor(t: Tensor): void {
  if (untracked > 0 || stack.length === 0) return;
  const f = stack[stack.length - 1]!;
  f.tensors.add(t);
  (t as unknown as Tracked)._frame = f;
}

/** Removes `t` from the scope that owns it (the handle then lives until disposed or collected). */
export function untrack(t: Tensor): void {
  const tr = t as unknown as Tracked;
  tr._frame?.tensors.delete(t);
  tr._frame = null;
}

/** Runs `fn` with tensor tracking off (handles it creates belong to no scope). */
export function withoutTracking<T>(fn: () => T): T {
  untracked++;
  try {
    return fn();
  } finally {
    untracked--;
  }
}

/** Number of open scopes (for tests and diagnostics). */
export function scopeDepth(): number {
  return stack.length;
}

/** Opens a scope (internal building block of {@link tidy}). */
export function openScope(): ScopeFrame {
  const f: ScopeFrame = { tensors: new Set(), kept: [] };
  stack.push(f);
  return f;
}

let isTensor: (v: unknown) => v is Tensor = (v): v is Tensor => !!v && false;
let releaseFn: (fn: GradFn) => void = () => undefined;
/** Wiring from tensor.ts / autograd.ts (avoids an import cycle). */
export function wireScope(tensorCheck: (v: unknown) => v is Tensor, release: (fn: GradFn) => void): void {
  isTensor = tensorCheck;
  releaseFn = release;
}

/** Tensors inside `value` (itself, arrays, Maps, Sets, plain objects), depth-first. */
export function collectTensors(value: unknown, into: Set<Tensor> = new Set(), seen = new Set<unknown>()): Set<Tensor> {
  if (value === null || typeof value !== 'object') return into;
  if (seen.has(value)) return into;
  seen.add(value);
  if (isTensor(value)) {
    into.add(value);
    return into;
  }
  if (Array.isArray(value)) for (const v of value) collectTensors(v, into, seen);
  else if (value instanceof Map) {
    for (const [k, v] of value) {
      collectTensors(k, into, seen);
      collectTensors(v, into, seen);
    }
  }
  else if (value instanceof Set) for (const v of value) collectTensors(v, into, seen);
  else if (ArrayBuffer.isView(value) || typeof (value as { then?: unknown }).then === 'function') return into;
  else for (const k of Object.keys(value)) collectTensors((value as Record<string, unknown>)[k], into, seen);
  return into;
}

/**
 * Closes `frame`: handles in `results` move to the enclosing scope (or to none), the others are
 * disposed, and the autograd records of disposed handles that no result (nor a kept handle) can
 * reach are released, which frees the tensors they saved for backward.
 */
export function closeScope(frame: ScopeFrame, results: Set<Tensor>): void {
  const at = stack.lastIndexOf(frame);
  if (at < 0) return;
  stack.splice(at, 1);
  const parent = at > 0 ? stack[at - 1]! : null;
  if (parent) parent.kept.push(...frame.kept);
  const doomed: Tensor[] = [];
  for (const t of frame.tensors) {
    if (results.has(t)) {
      (t as unknown as Tracked)._frame = parent;
      parent?.tensors.add(t);
    } else doomed.push(t);
  }
  // autograd records reachable from what survives; only nodes created in this scope are walked
  let reachable: Set<GradFn> | null = null;
  if (doomed.some((t) => t.gradFn && !t.gradFn.released)) {
    reachable = new Set();
    const todo: Tensor[] = [...results, ...frame.kept];
    const roots = new Set(todo);
    const visited = new Set<Tensor>();
    while (todo.length) {
      const t = todo.pop()!;
      if (visited.has(t)) continue;
      visited.add(t);
      if (!roots.has(t) && !frame.tensors.has(t)) continue;
      const g = t.gradFn;
      if (!g || reachable.has(g)) continue;
      reachable.add(g);
      for (const i of g.inputs) todo.push(i);
    }
  }
  for (const t of doomed) {
    (t as unknown as Tracked)._frame = null;
    if (reachable && t.gradFn && !reachable.has(t.gradFn)) releaseFn(t.gradFn);
    t.dispose();
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function';
}

/**
 * Runs `fn` and disposes every tensor created inside it, except the tensors it returns (also
 * inside arrays, Maps, Sets and plain objects) and those passed to {@link keep}, like TF.js
 * `tf.tidy`. Returned tensors belong to the enclosing scope. Autograd records that only disposed
 * tensors can reach are released (their saved tensors freed); a `loss.backward()` on a returned
 * tensor still works. When `fn` throws, everything it created is disposed and the error is rethrown.
 *
 * Throws `INVALID_ARGUMENT` when `fn` is not a function or returns a promise (use {@link tidyAsync}).
 *
 * @example
 * const loss = tidy(() => crossEntropy(model(x), y)); // intermediates freed, loss kept
 * tidy(() => { const l = lossFn(); l.backward(); opt.step(); }); // one training step, nothing left
 */
export function tidy<T>(fn: () => T): T {
  if (typeof fn !== 'function') {
    throw new WebattnError('INVALID_ARGUMENT', `fn: expected a function, got ${typeof fn}`, { argument: 'fn' });
  }
  const frame = openScope();
  let result: T;
  try {
    result = fn();
  } catch (e) {
    closeScope(frame, new Set());
    throw e;
  }
  if (isThenable(result)) {
    closeScope(frame, new Set());
    throw new WebattnError('INVALID_ARGUMENT', 'fn: tidy() needs a synchronous function, got one that returned a promise; use tidyAsync()', {
      argument: 'fn',
    });
  }
  closeScope(frame, collectTensors(result));
  return result;
}

/**
 * The async form of {@link tidy}: awaits `fn`, then disposes every tensor created while it ran
 * except those it resolves to and those passed to {@link keep}. JavaScript has no portable async
 * context, so the scope owns every tensor created anywhere between the call and the settlement:
 * do not run other tensor work concurrently. A second `tidyAsync` that starts while one is open
 * (concurrent, not nested and awaited) is detected when the first one settles: it then disposes
 * what it owns and rejects with `INVALID_ARGUMENT`.
 *
 * @example
 * const v = await tidyAsync(async () => (await model(x).sum().item()));
 * await tidyAsync(async () => { const l = loss(); l.backward(); await opt.step(); });
 */
export async function tidyAsync<T>(fn: () => Promise<T> | T): Promise<T> {
  if (typeof fn !== 'function') {
    throw new WebattnError('INVALID_ARGUMENT', `fn: expected a function, got ${typeof fn}`, { argument: 'fn' });
  }
  const frame = openScope();
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    closeScope(frame, new Set());
    throw e;
  }
  const top = stack[stack.length - 1];
  if (top !== frame) {
    closeScope(frame, new Set());
    throw new WebattnError('INVALID_ARGUMENT', 'fn: a scope opened inside tidyAsync() was still open when it settled (concurrent scopes?)', {
      argument: 'fn',
    });
  }
  closeScope(frame, collectTensors(result));
  return result;
}

/**
 * Exempts `tensor` from disposal by the enclosing {@link tidy} scopes (it then lives until
 * `dispose()` or garbage collection) and returns it. Throws `INVALID_ARGUMENT` for a non-tensor.
 *
 * @example
 * let h!: Tensor; tidy(() => { h = keep(encoder(x)); });
 */
export function keep<T extends Tensor>(tensor: T): T {
  if (!isTensor(tensor)) {
    throw new WebattnError('INVALID_ARGUMENT', `tensor: keep() expects a Tensor, got ${tensor === null ? 'null' : typeof tensor}`, {
      argument: 'tensor',
    });
  }
  const f = (tensor as unknown as Tracked)._frame;
  untrack(tensor);
  (f ?? stack[stack.length - 1])?.kept.push(tensor);
  return tensor;
}
