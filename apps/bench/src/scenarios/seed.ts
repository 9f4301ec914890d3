import * as T from '@webattn/core-tensor';
import { lastSdpaBackend, scaledDotProductAttention, sdpaKernel } from '@webattn/kernels-webgpu';
import { createBlockMask, flexAttention, slidingWindow, softcap } from '@webattn/flex';
import { flashAttnVarlen } from '@webattn/varlen';
import { progress, timeIt, type BenchRow } from '../timing.js';
import { sampleLengths } from './varlen.js';

/** One attention shape of the seed experiments. */
export interface SeedShape {
  B: number;
  H: number;
  L: number;
  E: number;
  causal: boolean;
  tag?: string;
}

/** The seed experiments' shapes (GPU run): B=8, H=16, E∈{64,128}, L=512…8192 ± causal; ViT; the long one. */
export function seedShapes(quick: boolean): SeedShape[] {
  if (quick) return [{ B: 1, H: 2, L: 128, E: 64, causal: true }, { B: 2, H: 2, L: 196, E: 64, causal: false, tag: 'vit' }];
  const out: SeedShape[] = [];
  for (const E of [64, 128]) for (const L of [512, 1024, 2048, 4096, 8192]) for (const causal of [false, true]) out.push({ B: 8, H: 16, L, E, causal });
  out.push({ B: 32, H: 16, L: 1024, E: 64, causal: true });
  out.push({ B: 128, H: 16, L: 196, E: 64, causal: false, tag: 'vit' });
  out.push({ B: 8, H: 12, L: 3136, E: 64, causal: false, tag: 'long' });
  return out;
}

const flopsOf = (s: SeedShape) => (4 * s.B * s.H * s.L * s.L * s.E) / (s.causal ? 2 : 1);

/**
 * Seed shapes through SDPA flash (forward, forward+backward), flex (softcap; sliding-window block mask)
 * and packed varlen. Shapes whose predicted time exceeds `maxSeconds` (from the rate measured so far)
 * are reported as skipped, never silently dropped.
 */
export async function seedScenario(device: T.Device, quick: boolean, maxSeconds = 12): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  // rows stream to stdout as JSON lines, so a run cut short still reports what it measured
  const push = rows.push.bind(rows);
  rows.push = (...r: BenchRow[]) => {
    for (const x of r) console.log(`ROW ${JSON.stringify(x)}`);
    return push(...r);
  };
  let rate = 0; // FLOP per ms measured on the last shape
  // WEBATTN_SEED_MIN_FLOPS resumes a run cut short: shapes below it are not run again
  const minFlops = Number(process.env.WEBATTN_SEED_MIN_FLOPS ?? 0);
  const shapes = seedShapes(quick).filter((s) => flopsOf(s) >= minFlops).sort((a, b) => flopsOf(a) - flopsOf(b));
  for (const s of shapes) {
    const name = `${s.tag ? `${s.tag} ` : ''}B=${s.B} H=${s.H} L=${s.L} E=${s.E}${s.causal ? ' causal' : ''}`;
    const flops = flopsOf(s);
    if (rate === 0 && minFlops > 0) rate = flops / (flops / 5e9); // resumed: assume ~5 TFLOP/s until measured
    if (rate > 0 && (3.5 * flops) / rate / 1000 > maxSeconds * 3) {
      rows.push({ scenario: 'seed', name, op: 'sdpa flash', skipped: `predicted ${(flops / rate / 1000).toFixed(0)} s forward at the measured rate` });
      continue;
    }
    progress(`seed: ${name}`);
    console.log(`START ${name} ${new Date().toISOString()}`);
    const mk = (seed: number) => T.randn([s.B, s.H, s.L, s.E], { seed, device, requiresGrad: true });
    const [q, k, v] = [mk(1), mk(2), mk(3)];
    const g = T.randn([s.B, s.H, s.L, s.E], { seed: 4, device });
    device.resetPeakMemory();
    const base = device.memoryStats().currentBytes;
    const fwd = await timeIt(device, () => T.noGrad(() => sdpaKernel(['flash'], () => scaledDotProductAttention(q, k, v, { isCausal: s.causal }).dispose())), { reps: 3, budgetMs: maxSeconds * 1000 });
    const peak = device.memoryStats().peakBytes - base;
    if (lastSdpaBackend() !== 'flash') throw new Error('flash did not run');
    rate = flops / fwd.ms;
    let fb: number | null = null;
    if ((3.5 * flops) / rate / 1000 < maxSeconds) {
      fb = (
        await timeIt(
          device,
          () => {
            sdpaKernel(['flash'], () => scaledDotProductAttention(q, k, v, { isCausal: s.causal })).backward(g);
            q.grad = k.grad = v.grad = null;
          },
          { reps: 2, budgetMs: maxSeconds * 1000 },
        )
      ).ms;
    }
    rows.push({ scenario: 'seed', name, op: 'sdpa flash', fwd_ms: fwd.ms, fwd_tflops: flops / fwd.ms / 1e9, fwdbwd_ms: fb, fwdbwd_tflops: fb ? (3.5 * flops) / fb / 1e9 : null, peak_MiB: peak / 2 ** 20 });
    if (!s.causal && s.L >= 1024 && s.E === 64 && !s.tag) {
      const sc = softcap(30);
      const t1 = await timeIt(device, () => T.noGrad(() => flexAttention(q, k, v, { scoreMod: sc }).dispose()), { reps: 3, budgetMs: maxSeconds * 1000 });
      rows.push({ scenario: 'seed', name, op: 'flex softcap', fwd_ms: t1.ms, fwd_tflops: flops / t1.ms / 1e9 });
      const bm = await createBlockMask(slidingWindow(256), null, null, s.L, s.L, { device });
      const t2 = await timeIt(device, () => T.noGrad(() => flexAttention(q, k, v, { blockMask: bm }).dispose()), { reps: 3, budgetMs: maxSeconds * 1000 });
      rows.push({ scenario: 'seed', name, op: 'flex slidingWindow(256)', fwd_ms: t2.ms, density: bm.density(), speedup_vs_dense: fwd.ms / t2.ms });
    }
    for (const t of [q, k, v, g]) t.dispose();
    device.emptyCache();
  }
  // padding vs packing at the GPT experiment's scale: 16 sequences of lengths 1..L
  for (const L of quick ? [128] : [512, 2048]) {
    const lengths = sampleLengths(16, L, 'uniform');
    const total = lengths.reduce((p, n) => p + n, 0);
    const H = quick ? 2 : 16;
    const cu = Int32Array.from([0, ...lengths.map((_, i) => lengths.slice(0, i + 1).reduce((p, n) => p + n, 0))]);
    const qp = T.randn([total, H, 64], { seed: 1, device });
    const padded = T.randn([16, H, L, 64], { seed: 1, device });
    const keep = new Uint8Array(16 * L);
    lengths.forEach((n, b) => keep.fill(1, b * L, b * L + n));
    const mask = T.tensor(keep, [16, 1, 1, L], { dtype: 'bool', device });
    const tp = await timeIt(device, () => T.noGrad(() => flashAttnVarlen(qp, qp, qp, { cuSeqlensQ: cu, maxSeqlenQ: L, causal: true }).dispose()), { reps: 3 });
    const td = await timeIt(device, () => T.noGrad(() => scaledDotProductAttention(padded, padded, padded, { attnMask: mask, isCausal: true }).dispose()), { reps: 3 });
    rows.push({ scenario: 'seed', name: `varlen B=16 H=${H} lengths 1..${L} (${total} tokens)`, op: 'packed vs padded', fwd_ms: tp.ms, padded_ms: td.ms, speedup_vs_padded: td.ms / tp.ms });
  }
  return rows;
}
