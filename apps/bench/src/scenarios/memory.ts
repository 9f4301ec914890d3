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

function rssMiB(): number {
  return process.memoryUsage().rss / 2 ** 20;
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
  const dims = { B: 2, L: 32, H: 2, D: 16, V: 64, layers: 2 };
  const backend: SdpaBackend = device.backend === 'webgpu' ? 'flash' : 'math';
  const rows: BenchRow[] = [];
  const at = new Set([1, 10, 100, 1000, steps]);
  for (const userDispose of [false, true]) {
    const variant = userDispose ? 'tidy + user dispose()' : 'tidy';
    const model = makeModel(device, dims);
    const n = dims.B * dims.L;
    const ids = T.tensor(Int32Array.from({ length: n }, (_, i) => (i * 7 + 3) % dims.V), [dims.B, dims.L], { device });
    const target = T.tensor(Int32Array.from({ length: n }, (_, i) => (i * 5 + 1) % dims.V), [dims.B, dims.L], { device });
    const biggest = 4 * Math.max(dims.B * dims.L * dims.V, 3 * dims.H * dims.D * dims.H * dims.D, dims.V * dims.H * dims.D);
    const marks: Record<number, { cur: number; peak: number; live: number; pooled: number; rss: number; loss: number }> = {};
    let firstLoss = NaN;
    const t0 = performance.now();
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
      if (at.has(s) || s === 1) {
        const v = await loss.item();
        if (s === 1) firstLoss = v;
        await device.sync();
        const m = device.memoryStats();
        marks[s] = { cur: m.currentBytes, peak: m.peakBytes, live: m.liveStorages, pooled: m.pooledBytes, rss: rssMiB(), loss: v };
        progress(`memory (${variant}): step ${s}/${steps} current ${m.currentBytes} B, ${m.liveStorages} storages`);
      } else if (s % 50 === 0) await device.sync();
      loss.dispose();
    }
    const secs = (performance.now() - t0) / 1000;
    const last = marks[steps]!;
    const ten = marks[10]!;
    for (const s of [...at].filter((v) => v <= steps).sort((a, b) => a - b)) {
      const m = marks[s]!;
      rows.push({
        scenario: 'memory',
        name: `${variant} step ${s}`,
        sdpa: backend,
        loss: m.loss,
        current_bytes: m.cur,
        peak_bytes: m.peak,
        pooled_bytes: m.pooled,
        live_storages: m.live,
        rss_MiB: m.rss,
      });
    }
    rows.push({
      scenario: 'memory',
      name: `${variant}: step ${steps} vs 10`,
      sdpa: backend,
      loss_first: firstLoss,
      loss_last: last.loss,
      bytes_delta: last.cur - ten.cur,
      storages_delta: last.live - ten.live,
      one_buffer_bytes: biggest,
      flat: Math.abs(last.cur - ten.cur) <= biggest,
      seconds: secs,
    });
    for (const t of [...model.params, ids, target]) t.dispose();
  }
  return rows;
}
