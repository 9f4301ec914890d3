import * as T from '@webattn/core-tensor';

/**
 * Which ops ran the float64 CPU reference kernels on a non-CPU device (a backend's `kernelFallback`, or a wasm kernel
 * handing a case — a bool or int32 dtype, an unsupported layout — to the reference kernel of the same name): the
 * census wraps every registered `cpu` kernel once, counting calls and time on other devices. A benchmark whose rows
 * claim a backend's speed says here what did not run on it.
 */
interface Tally {
  calls: number;
  ms: number;
}

let tallies = new Map<string, Tally>();
let installed = false;

/** Wraps the registered CPU kernels (idempotent); call after the backend packages are imported. */
export function installFallbackCensus(): void {
  if (installed) return;
  installed = true;
  for (const name of T.listKernels('cpu')) {
    const fn = T.getKernel(name, 'cpu')!.fn;
    T.registerKernel({
      name,
      backend: 'cpu',
      fn: (inputs, attrs, device) => {
        if (device.backend === 'cpu') return fn(inputs, attrs, device);
        const t0 = performance.now();
        try {
          return fn(inputs, attrs, device);
        } finally {
          // e.g. `binary:eq(int32)`: which variant of the op, on which dtype
          const key = `${name}${typeof attrs.op === 'string' ? `:${attrs.op}` : ''}(${inputs[0]?.dtype ?? ''})`;
          const t = tallies.get(key) ?? { calls: 0, ms: 0 };
          t.calls++;
          t.ms += performance.now() - t0;
          tallies.set(key, t);
        }
      },
    });
  }
}

/** The fallbacks since the last call, slowest first (and resets the count). */
export function takeFallbacks(): { op: string; calls: number; ms: number }[] {
  const out = [...tallies].map(([op, t]) => ({ op, ...t })).sort((a, b) => b.ms - a.ms);
  tallies = new Map();
  return out;
}

/** `op ×calls (ms)` list of {@link takeFallbacks}' result; '' when none. */
export function describeFallbacks(f: { op: string; calls: number; ms: number }[]): string {
  return f.map((x) => `${x.op} ×${x.calls} (${x.ms < 10 ? x.ms.toFixed(1) : x.ms.toFixed(0)} ms)`).join(', ');
}
