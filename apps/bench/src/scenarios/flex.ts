import * as T from '@webattn/core-tensor';
import { scaledDotProductAttention, sdpaKernel } from '@webattn/kernels-webgpu';
import {
  createBlockMask,
  createMask,
  documentMask,
  flexAttention,
  neighborhood2d,
  noopMask,
  causalMask,
  slidingWindow,
  softcap,
  type MaskMod,
} from '@webattn/flex';
import { progress, repsOn, timeInterleaved, type BenchRow } from '../timing.js';

/**
 * FlexAttention: softcap fused vs the same math unfused; block-sparse masks vs dense flex and vs
 * `scaledDotProductAttention` with the materialised boolean mask; block-mask build time.
 * The quick part (default run): L=1024 on software adapters (density of a 256 window 0.34), causal
 * and sliding window, fewer repeats (~20 s on llvmpipe); the full sweep: L=2048 (8192 on hardware), four masks.
 */
export async function flexScenario(device: T.Device, quick: boolean): Promise<BenchRow[]> {
  const soft = device.info.software || device.backend === 'cpu';
  const L = quick ? (soft ? 1024 : 4096) : soft ? 2048 : 8192;
  const H = soft ? 1 : 16;
  const E = 64;
  const rows: BenchRow[] = [];
  const budget = soft ? (quick ? 2500 : 8000) : 3000;
  const reps = repsOn(device, quick ? 2 : 3);
  const mk = (seed: number, len = L) => T.randn([1, H, len, E], { seed, device });

  // 1. softcap: fused score function vs the unfused math
  {
    progress('flex: softcap');
    const [q, k, v] = [mk(1), mk(2), mk(3)];
    const sm = softcap(30);
    // fused and unfused round-robin: each under the same load (best of the rounds)
    const t = await timeInterleaved(
      device,
      {
        fused: () => T.noGrad(() => flexAttention(q, k, v, { scoreMod: sm }).dispose()),
        unfused: () =>
          T.noGrad(() => {
            const s = T.matmul(T.mul(q, 1 / Math.sqrt(E)), k.transpose(-1, -2));
            T.matmul(T.softmax(T.mul(T.tanh(T.div(s, 30)), 30)), v).dispose();
          }),
      },
      { rounds: reps, budgetMs: 2 * budget },
    );
    const fused = t['fused']!;
    const unfused = t['unfused']!;
    rows.push({ scenario: 'flex', name: `softcap(30) L=${L}`, flex_ms: fused.ms, baseline: 'unfused math', baseline_ms: unfused.ms, speedup: unfused.ms / fused.ms, density: 1, meets_block_target: null });
  }

  // 2. masks: dense flex (noop) once, then each sparse mask vs dense flex and vs SDPA + dense bool mask
  const cases: [string, MaskMod, number][] = [
    ['causal', causalMask, L],
    ['slidingWindow(256)', slidingWindow(256), L],
    ['document (8 docs) + causal', documentMask(docOffsets(L, 8), causalMask), L],
    ['neighborhood2d r=2', neighborhood2d(Math.floor(Math.sqrt(L)), Math.floor(Math.sqrt(L)), 2), Math.floor(Math.sqrt(L)) ** 2],
  ].slice(0, quick ? 2 : 4) as [string, MaskMod, number][];
  for (const [name, mask, len] of cases) {
    progress(`flex: ${name} vs dense vs sdpa + bool mask`);
    const [q, k, v] = [mk(1, len), mk(2, len), mk(3, len)];
    const noop = await createBlockMask(noopMask, null, null, len, len, { device });
    const t0 = performance.now();
    const bm = await createBlockMask(mask, null, null, len, len, { device });
    const buildMs = performance.now() - t0;
    const boolMask = createMask(mask, 1, 1, len, len, { device });
    // dense flex, block-sparse flex and SDPA + the dense bool mask round-robin: the same load for each (best of the rounds)
    const t = await timeInterleaved(
      device,
      {
        dense: () => T.noGrad(() => flexAttention(q, k, v, { blockMask: noop }).dispose()),
        sparse: () => T.noGrad(() => flexAttention(q, k, v, { blockMask: bm }).dispose()),
        sdpa: () => T.noGrad(() => sdpaKernel(['flash'], () => scaledDotProductAttention(q, k, v, { attnMask: boolMask }).dispose())),
      },
      { rounds: reps, budgetMs: 3 * budget },
    );
    const dense = t['dense']!.ms;
    const sparse = t['sparse']!;
    const sdpa = t['sdpa']!;
    const d = bm.density();
    rows.push({
      scenario: 'flex',
      name: `${name} L=${len}`,
      flex_ms: sparse.ms,
      baseline: 'sdpa + bool mask',
      baseline_ms: sdpa.ms,
      speedup: sdpa.ms / sparse.ms,
      density: d,
      dense_flex_ms: dense,
      sparse_over_dense: sparse.ms / dense,
      meets_block_target: sparse.ms <= (d + 0.15) * dense,
      block_mask_build_ms: buildMs,
    });
    boolMask.dispose();
  }

  // 3. block-mask build at long L (bounded memory: one byte per block pair)
  const longL = quick ? 4096 : soft ? 8192 : 32768;
  progress(`flex: createBlockMask L=${longL}`);
  const t0 = performance.now();
  const bm = await createBlockMask(causalMask, null, null, longL, longL, { device });
  rows.push({ scenario: 'flex', name: `createBlockMask(causal) L=${longL}`, flex_ms: performance.now() - t0, baseline: '', baseline_ms: null, speedup: null, density: bm.density(), meets_block_target: null });
  return rows;
}

function docOffsets(L: number, docs: number): number[] {
  const r = new T.Rng(3);
  const cuts = Array.from({ length: docs - 1 }, () => 1 + Math.floor(r.next() * (L - 1))).sort((a, b) => a - b);
  return [0, ...new Set(cuts), L];
}
