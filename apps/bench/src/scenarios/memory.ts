import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as T from '@webattn/core-tensor';
import { lastSdpaBackend, scaledDotProductAttention, sdpaKernel, type SdpaBackend } from '@webattn/kernels-webgpu';
import { progress, type BenchRow } from '../timing.js';

/** A 2-layer pre-LN attention model (embedding, causal SDPA, output projection, tied-free head). */
interface Model {
  params: T.Tensor[];
  loss(ids: T.Tensor, target: T.Tensor): T.Tensor;
}

function makeModel(device: T.Device, dims: { B: number; L: number; H: number; D: number; V: number; layers: number }): Model {
  const { B, L, H, D, V, layers } = dims;
  const E = H * D;
  let seed = 100;
  const params: T.Tensor[] = [];
  const param = (shape: number[], scale: number): T.Tensor => {
    const p = T.tidy(() => T.noGrad(() => T.mul(T.randn(shape, { seed: seed++, device }), scale)));
    p.requiresGrad = true;
    params.push(p);
    return p;
  };
  const emb = param([V, E], 0.5);
  const blocks = Array.from({ length: layers }, () => ({
    ln: param([E], 1),
    wqkv: param([E, 3 * E], 1 / Math.sqrt(E)),
    wo: param([E, E], 1 / Math.sqrt(E)),
  }));
  const head = param([E, V], 1 / Math.sqrt(E));
  return {
    params,
    loss(ids, target) {
      let x = T.embedding(emb, ids);
      for (const b of blocks) {
        const qkv = T.layerNorm(x, [E], b.ln).matmul(b.wqkv).reshape([B, L, 3, H, D]).permute([2, 0, 3, 1, 4]);
        const [q, k, v] = [0, 1, 2].map((i) => qkv.slice(0, i, i + 1).reshape([B, H, L, D]).contiguous());
        const a = scaledDotProductAttention(q!, k!, v!, { isCausal: true });
        x = T.add(x, a.transpose(1, 2).reshape([B, L, E]).matmul(b.wo));
      }
      return T.crossEntropy(x.matmul(head).reshape([B * L, V]), target.reshape([B * L]));
    },
  };
}

/** Plain SGD on the device: p ← p − lr·grad, then the gradient is dropped (disposed by the setter). */
function sgd(params: T.Tensor[], lr: number, userDispose: boolean): void {
  T.noGrad(() => {
    for (const p of params) {
      const g = p.grad!;
      const upd = T.sub(p, T.mul(g, lr));
      T.copyInto(p, upd);
      if (userDispose) {
        upd.dispose();
        g.dispose();
      }
      p.grad = null;
    }
  });
}

let gcFn: (() => void) | null | undefined;
/** Resident set size after a full garbage collection (so it shows what is retained, not garbage). */
function rssMiB(): number {
  if (gcFn === undefined) {
    try {
      setFlagsFromString('--expose_gc');
      gcFn = runInNewContext('gc') as () => void;
    } catch {
      gcFn = null;
    }
  }
  gcFn?.();
  return process.memoryUsage().rss / 2 ** 20;
}

/** Memory figures at one step of {@link memoryLoop}. */
export interface MemoryMark {
  step: number;
  loss: number;
  currentBytes: number;
  peakBytes: number;
  pooledBytes: number;
  liveStorages: number;
  rssMiB: number;
}

/** Shapes of the memory loop's model (small: it must run 1000 steps in under a minute on llvmpipe). */
export const MEMORY_DIMS = { B: 2, L: 16, H: 2, D: 8, V: 32, layers: 2 };

/**
 * Trains the 2-layer model for `steps` SGD steps, each inside `tidy` (with `userDispose`, the step also
 * disposes its loss, update and gradients itself), and returns the memory figures at the steps in `at`.
 * Also returns the size of the largest buffer of a step (the tolerance of "flat").
 */
export async function memoryLoop(
  device: T.Device,
  steps: number,
  userDispose: boolean,
  at: readonly number[],
  onMark?: (m: MemoryMark) => void,
): Promise<{ marks: MemoryMark[]; oneBuffer: number; backend: SdpaBackend; seconds: number }> {
  const dims = MEMORY_DIMS;
  const backend: SdpaBackend = device.backend === 'webgpu' ? 'flash' : 'math';
  const model = makeModel(device, dims);
  const n = dims.B * dims.L;
  const E = dims.H * dims.D;
  const ids = T.tensor(Int32Array.from({ length: n }, (_, i) => (i * 7 + 3) % dims.V), [dims.B, dims.L], { device });
  const target = T.tensor(Int32Array.from({ length: n }, (_, i) => (i * 5 + 1) % dims.V), [dims.B, dims.L], { device });
  const oneBuffer = 4 * Math.max(n * dims.V, 3 * E * E, dims.V * E, n * 3 * E);
  const want = new Set(at);
  const marks: MemoryMark[] = [];
  const t0 = performance.now();
  try {
    for (let s = 1; s <= steps; s++) {
      const loss = T.tidy(() =>
        sdpaKernel([backend], () => {
          const l = model.loss(ids, target);
          l.backward();
          sgd(model.params, 0.1, userDispose);
          return l;
        }),
      );
      if (s === 1 && lastSdpaBackend() !== backend) throw new Error(`memory: expected sdpa ${backend}, ran ${lastSdpaBackend()}`);
      if (want.has(s)) {
        const v = await loss.item();
        await device.sync();
        const m = device.memoryStats(); // before any forced GC: device bytes must be flat without its help
        const mark = { step: s, loss: v, currentBytes: m.currentBytes, peakBytes: m.peakBytes, pooledBytes: m.pooledBytes, liveStorages: m.liveStorages, rssMiB: rssMiB() };
        marks.push(mark);
        onMark?.(mark);
      } else if (s % 50 === 0) await device.sync();
      loss.dispose();
    }
  } finally {
    for (const t of [...model.params, ids, target]) t.dispose();
  }
  return { marks, oneBuffer, backend, seconds: (performance.now() - t0) / 1000 };
}

/**
 * Memory of a training loop: 1000 SGD steps (100 with `quick`) of a 2-layer attention model with
 * persistent parameters (SDPA flash on WebGPU, math on the CPU), each step inside `tidy`, once
 * without and once with the user's own `dispose()` of loss, update and gradients. Device bytes at the
 * last step must equal step 10 within one buffer (the largest tensor of the step). Prints current,
 * peak and pooled bytes, live storages and the process RSS at steps 1, 10, 100 and 1000.
 */
export async function memoryScenario(device: T.Device, quick: boolean): Promise<BenchRow[]> {
  const steps = quick ? 100 : 1000;
  const rows: BenchRow[] = [];
  const at = [1, 10, 100, 1000].filter((s) => s <= steps);
  for (const userDispose of [false, true]) {
    const variant = userDispose ? 'tidy + user dispose()' : 'tidy';
    const r = await memoryLoop(device, steps, userDispose, at, (m) =>
      progress(`memory (${variant}): step ${m.step}/${steps} current ${m.currentBytes} B, ${m.liveStorages} storages`),
    );
    for (const m of r.marks) {
      rows.push({
        scenario: 'memory',
        name: `${variant} step ${m.step}`,
        sdpa: r.backend,
        loss: m.loss,
        current_bytes: m.currentBytes,
        peak_bytes: m.peakBytes,
        pooled_bytes: m.pooledBytes,
        live_storages: m.liveStorages,
        rss_MiB: m.rssMiB,
      });
    }
    const ten = r.marks.find((m) => m.step === 10)!;
    const last = r.marks[r.marks.length - 1]!;
    rows.push({
      scenario: 'memory',
      name: `${variant}: step ${last.step} vs 10`,
      sdpa: r.backend,
      bytes_delta: last.currentBytes - ten.currentBytes,
      storages_delta: last.liveStorages - ten.liveStorages,
      one_buffer_bytes: r.oneBuffer,
      flat: Math.abs(last.currentBytes - ten.currentBytes) <= r.oneBuffer,
      rss_delta_MiB: last.rssMiB - ten.rssMiB,
      seconds: r.seconds,
    });
  }
  return rows;
}
