import { WebattnError } from './errors.js';
import { closeScope, openScope, untrack, withoutTracking } from './scope.js';
import type { Tensor } from './tensor.js';

/**
 * A recorded operation on the autograd tape: its inputs and a `backward` that maps the output's
 * gradient to one gradient per input (null where an input needs none).
 */
export interface GradFn {
  /** Op name, for debugging. */
  name: string;
  /** The inputs the gradients flow to. */
  inputs: readonly Tensor[];
  /** Gradients of the inputs given the gradient of the output. */
  backward: (grad: Tensor) => (Tensor | null)[];
  /**
   * Handles the record owns (tensors its backward reads): disposed when the record is released
   * (after `backward()` unless `retainGraph`, or when a `tidy` scope frees the graph).
   */
  saved?: Tensor[];
  /** True once released: a backward through it throws `AUTOGRAD`. */
  released?: boolean;
}

let gradEnabled = true;
/** Number of {@link noGradAsync} scopes (or async {@link noGrad} calls) not yet settled. */
let asyncNoGrad = 0;

/** True unless inside {@link noGrad} or while a {@link noGradAsync} scope is pending. */
export function isGradEnabled(): boolean {
  return gradEnabled && asyncNoGrad === 0;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function';
}

/** Keeps recording off (a counter: overlapping scopes may settle in any order) until `p` settles. */
function holdUntilSettled<R>(p: PromiseLike<R>): Promise<R> {
  asyncNoGrad++;
  let released = false;
  const release = () => {
    if (!released) {
      released = true;
      asyncNoGrad--;
    }
  };
  return Promise.resolve(p).then(
    (v) => {
      release();
      return v;
    },
    (e: unknown) => {
      release();
      throw e;
    },
  );
}

/**
 * Runs `fn` without recording operations on the tape (like `torch.no_grad`). When `fn` returns a
 * promise (an `async` function, e.g. a model forward), recording stays off until that promise
 * settles, exactly as {@link noGradAsync}; the result is then a promise of the same value.
 * @example const y = noGrad(() => T.mul(x, 2)); const out = await noGrad(() => model.forward(inputs));
 */
export function noGrad<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw new WebattnError('INVALID_ARGUMENT', `fn: expected a function, got ${typeof fn}`, { argument: 'fn' });
  const prev = gradEnabled;
  gradEnabled = false;
  let result: T;
  try {
    result = fn();
  } finally {
    gradEnabled = prev;
  }
  return isThenable(result) ? (holdUntilSettled(result) as T) : result;
}

/**
 * The async form of {@link noGrad}: awaits `fn` with recording off from the call until its promise
 * settles (resolves or rejects), then turns it back on. JavaScript has no portable async context, so
 * "off" is process-wide for that window: an op of any other async task that runs while the scope is
 * pending is not recorded either (do not interleave a training step with a pending `noGradAsync`).
 * Scopes may overlap and settle in any order: recording resumes only when the last one has settled
 * (a count, not a saved flag). Throws `INVALID_ARGUMENT` when `fn` is not a function.
 *
 * @example
 * const { logits } = await noGradAsync(() => model.forward({ inputIds })); // no tape, no saved tensors
 * logits.requiresGrad; // false
 */
export async function noGradAsync<T>(fn: () => Promise<T> | T): Promise<T> {
  if (typeof fn !== 'function') throw new WebattnError('INVALID_ARGUMENT', `fn: expected a function, got ${typeof fn}`, { argument: 'fn' });
  asyncNoGrad++;
  try {
    return await fn();
  } finally {
    asyncNoGrad--;
  }
}

/** True when an op on `inputs` must be recorded. */
export function needsGrad(inputs: readonly (Tensor | null | undefined)[]): boolean {
  return gradEnabled && asyncNoGrad === 0 && inputs.some((t) => t?.requiresGrad);
}

/** Options of `Tensor.backward`. */
export interface BackwardOptions {
  /** Keep the graph's saved tensors for another backward through it (default false, like PyTorch). */
  retainGraph?: boolean;
}

/**
 * Frees what a recorded op saved for its backward and drops its closure (after `backward()`, or
 * when a `tidy` scope disposed every tensor that could reach it). Backward through it afterwards
 * throws `AUTOGRAD`. Idempotent.
 */
export function releaseGradFn(fn: GradFn): void {
  if (fn.released) return;
  fn.released = true;
  const saved = fn.saved ?? [];
  fn.saved = [];
  for (const t of saved) t.dispose();
  const name = fn.name;
  fn.backward = () => {
    throw new WebattnError('AUTOGRAD', `backward(): the graph of '${name}' was already freed`);
  };
  (fn as { inputs: readonly Tensor[] }).inputs = [];
}

/** Accumulates an autograd-owned gradient handle `h` into `t.grad` (disposing what it replaces). */
function accumulate(t: Tensor, h: Tensor, add: (a: Tensor, b: Tensor) => Tensor): void {
  untrack(h);
  const old = t.grad;
  if (!old || old.disposed || old.isReleased) {
    t.grad = h;
    t._gradOwned = true;
    return;
  }
  const s = add(old, h);
  untrack(s);
  h.dispose();
  t.grad = s;
  t._gradOwned = true;
}

/**
 * Back-propagates from `root` (see `Tensor.backward`). Gradients of leaves that require grad are
 * accumulated into their `.grad`. `makeGrad` makes the seed gradient, a handle autograd owns.
 * Intermediate gradients and the temporaries of each node's backward are disposed as soon as they
 * have been used; each node's saved tensors are freed after its backward unless `retainGraph`.
 */
export function backward(root: Tensor, makeGrad: () => Tensor, add: (a: Tensor, b: Tensor) => Tensor, retainGraph = false): void {
  if (!root.requiresGrad) {
    throw new WebattnError('AUTOGRAD', 'backward(): the tensor does not require grad and has no grad_fn');
  }
  // topological order by DFS (iterative to survive deep graphs)
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, boolean][] = [[root, false]];
  while (stack.length) {
    const [t, done] = stack.pop()!;
    if (done) {
      order.push(t);
      continue;
    }
    if (seen.has(t)) continue;
    seen.add(t);
    if (t.gradFn?.released) {
      throw new WebattnError(
        'AUTOGRAD',
        `backward(): trying to backward through the graph a second time (through '${t.gradFn.name}'): its saved tensors were freed by the first backward(); pass { retainGraph: true } to the first call`,
      );
    }
    stack.push([t, true]);
    for (const i of t.gradFn?.inputs ?? []) if (i.requiresGrad && !seen.has(i)) stack.push([i, false]);
  }
  const grads = new Map<Tensor, Tensor>();
  const prev = gradEnabled;
  gradEnabled = false;
  let ok = false;
  try {
    const seed = makeGrad();
    untrack(seed);
    grads.set(root, seed);
    for (let n = order.length - 1; n >= 0; n--) {
      const t = order[n]!;
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      if (!t.gradFn) {
        accumulate(t, g, add);
        continue;
      }
      if (t.retainsGrad) accumulate(t, withoutTracking(() => g.detach()), add);
      const fn = t.gradFn;
      const frame = openScope();
      let gs: (Tensor | null)[];
      try {
        gs = fn.backward(g);
      } catch (e) {
        closeScope(frame, new Set());
        g.dispose();
        throw e;
      }
      const fresh = new Set<Tensor>();
      for (const gi of gs) if (gi && frame.tensors.has(gi)) fresh.add(gi);
      closeScope(frame, fresh);
      fn.inputs.forEach((inp, i) => {
        const gi = gs[i];
        if (!gi || !inp.requiresGrad) return;
        const h = withoutTracking(() => gi.detach());
        const old = grads.get(inp);
        if (old) {
          const s = add(old, h);
          untrack(s);
          old.dispose();
          h.dispose();
          grads.set(inp, s);
        } else grads.set(inp, h);
      });
      for (const gi of fresh) gi.dispose();
      g.dispose();
      if (!retainGraph) releaseGradFn(fn);
    }
    ok = true;
  } finally {
    gradEnabled = prev;
    for (const g of grads.values()) g.dispose();
    if (ok && !retainGraph) for (const t of order) if (t.gradFn) releaseGradFn(t.gradFn);
  }
}
