/**
 * ONNX Runtime Web's wasm backend (SIMD, optional threads) as the CPU peer: attention as the graph
 * MatMul(Q, Kᵀ) → Softmax → MatMul(·, V) (the 1/√E scale folded into Q) and a plain MatMul, on the same
 * machine in the same run.
 */
import { onnxModel } from './onnx-proto.js';

type Ort = typeof import('onnxruntime-web');

let ortModule: Ort | null = null;
async function ort(): Promise<Ort> {
  return (ortModule ??= (await import('onnxruntime-web')) as Ort);
}

/** A compiled peer graph: `run()` executes it once on fixed random inputs. */
export interface PeerRun {
  run(): Promise<void>;
  /** The ONNX Runtime Web version. */
  version: string;
}

async function session(model: Uint8Array, feeds: Record<string, readonly number[]>, threads: number): Promise<PeerRun> {
  const o = await ort();
  o.env.wasm.numThreads = threads;
  const s = await o.InferenceSession.create(model, { executionProviders: ['wasm'] });
  const inputs: Record<string, InstanceType<Ort['Tensor']>> = {};
  for (const [name, shape] of Object.entries(feeds)) {
    const n = shape.reduce((a, b) => a * b, 1);
    inputs[name] = new o.Tensor('float32', Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5), shape as number[]);
  }
  return {
    run: async () => {
      await s.run(inputs);
    },
    version: o.env.versions.web ?? 'unknown',
  };
}

/** Unfused attention `[B, H, L, E]` on ORT-web wasm with `threads` threads. */
export function ortAttention(B: number, H: number, L: number, E: number, threads: number): Promise<PeerRun> {
  const sh = [B, H, L, E];
  const model = onnxModel({ q: sh, k: sh, v: sh }, { o: sh }, [
    { op: 'Transpose', inputs: ['k'], outputs: ['kt'], attrs: { perm: [0, 1, 3, 2] } },
    { op: 'MatMul', inputs: ['q', 'kt'], outputs: ['s'] },
    { op: 'Softmax', inputs: ['s'], outputs: ['p'], attrs: { axis: -1 } },
    { op: 'MatMul', inputs: ['p', 'v'], outputs: ['o'] },
  ]);
  return session(model, { q: sh, k: sh, v: sh }, threads);
}

/** `[M, K] · [K, N]` on ORT-web wasm. */
export function ortMatmul(M: number, N: number, K: number, threads: number): Promise<PeerRun> {
  const model = onnxModel({ a: [M, K], b: [K, N] }, { c: [M, N] }, [{ op: 'MatMul', inputs: ['a', 'b'], outputs: ['c'] }]);
  return session(model, { a: [M, K], b: [K, N] }, threads);
}
