import { WebattnError } from './errors.js';
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
}

let gradEnabled = true;

/** True unless inside {@link noGrad}. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/**
 * Runs `fn` without recording operations on the tape (like `torch.no_grad`).
 * @example const y = noGrad(() => model.forward(x));
 */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** True when an op on `inputs` must be recorded. */
export function needsGrad(inputs: readonly (Tensor | null | undefined)[]): boolean {
  return gradEnabled && inputs.some((t) => t?.requiresGrad);
}

/**
 * Back-propagates from `root` (see `Tensor.backward`). Gradients of leaves that require grad are
 * accumulated into their `.grad`.
 */
export function backward(root: Tensor, grad: Tensor, add: (a: Tensor, b: Tensor) => Tensor): void {
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
    stack.push([t, true]);
    for (const i of t.gradFn?.inputs ?? []) if (i.requiresGrad && !seen.has(i)) stack.push([i, false]);
  }
  const grads = new Map<Tensor, Tensor>([[root, grad]]);
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    for (let n = order.length - 1; n >= 0; n--) {
      const t = order[n]!;
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      if (!t.gradFn) {
        t.grad = t.grad ? add(t.grad, g) : g;
        continue;
      }
      if (t.retainsGrad) t.grad = t.grad ? add(t.grad, g) : g;
      const gs = t.gradFn.backward(g);
      t.gradFn.inputs.forEach((inp, i) => {
        const gi = gs[i];
        if (!gi || !inp.requiresGrad) return;
        const old = grads.get(inp);
        grads.set(inp, old ? add(old, gi) : gi);
      });
    }
  } finally {
    gradEnabled = prev;
  }
}
