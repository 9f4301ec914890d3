import * as T from '@webattn/core-tensor';
import { Rng } from '@webattn/core-tensor';
import { scaledDotProductAttention } from '@webattn/kernels-webgpu';
import { causalMask, createBlockMask, documentMask, flexAttention } from '@webattn/flex';
import { collate, flashAttnVarlen } from '@webattn/varlen';
import { progress, repsOn, timeInterleaved, type BenchRow } from '../timing.js';

/** Lengths in 1..L: uniform, or Zipf-like (most short, a few long) as in the PyTorch nested-tensor tutorial. */
export function sampleLengths(n: number, L: number, dist: 'uniform' | 'zipf', seed = 7): number[] {
  const r = new Rng(seed);
  return Array.from({ length: n }, () => {
    if (dist === 'uniform') return 1 + Math.floor(r.next() * L);
    // inverse-CDF of a Zipf(s = 1.2)-like power law over 1..L
    const u = r.next();
    return Math.min(L, Math.max(1, Math.floor(Math.pow(L, u) * (0.5 + 0.5 * r.next()))));
  });
}

/**
 * Padding vs packing (the seed experiment): causal attention over B sequences of random lengths, as
 * padded-to-max + mask, padded-to-longest + mask, and packed varlen. Prints time, useful-token
 * fraction and the speedup over padding to max. The quick part (default run): uniform lengths
 * 1..128, pad-to-max vs packed, fewer repeats (~12 s on llvmpipe).
 */
export async function varlenScenario(device: T.Device, quick: boolean): Promise<BenchRow[]> {
  const soft = device.info.software || device.backend === 'cpu';
  const B = 16;
  // the wasm backend's quick part takes the full sweep's lengths 1..512 (~5 s): at 1..128 both sides take a few ms and
  // per-call overheads (gathers, the mask, waking the threads) swung the ratio between 3.6× and 9.7× from run to run
  const L = quick && device.backend !== 'wasm' ? 128 : 512;
  const H = soft ? 2 : 16;
  const E = 64;
  const rows: BenchRow[] = [];
  for (const dist of quick ? (['uniform'] as const) : (['uniform', 'zipf'] as const)) {
    const lengths = sampleLengths(B, L, dist);
    const seqs = (seed: number) => lengths.map((n, i) => T.randn([n, H, E], { seed: seed * 1000 + i, device, requiresGrad: true }));
    const results: Record<string, { fwd: number; fb: number; useful: number }> = {};
    const strategies = quick ? (['pad-to-max', 'packed'] as const) : (['pad-to-max', 'pad-to-longest', 'packed', 'flex-document'] as const);
    const fwds: Record<string, () => void> = {};
    const fbs: Record<string, () => void> = {};
    const useful: Record<string, number> = {};
    for (const strategy of strategies) {
      progress(`varlen: ${dist} ${strategy} (set-up)`);
      const [qs, ks, vs] = [seqs(1), seqs(2), seqs(3)];
      const layout = strategy === 'flex-document' ? 'packed' : strategy;
      const cq = collate(qs, layout, L);
      const ck = collate(ks, layout, L);
      const cv = collate(vs, layout, L);
      const q = cq.values.detach().requiresGrad_();
      const k = ck.values.detach().requiresGrad_();
      const v = cv.values.detach().requiresGrad_();
      let fn: () => T.Tensor;
      if (strategy === 'packed') {
        const opts = { cuSeqlensQ: cq.cuSeqlens!, maxSeqlenQ: cq.maxSeqlen, causal: true };
        fn = () => flashAttnVarlen(q, k, v, opts);
      } else if (strategy === 'flex-document') {
        // the packed rows as one sequence [1, H, total, E] with a document mask (causal inside documents)
        const total = q.shape[0]!;
        const bm = await createBlockMask(documentMask(cq.cuSeqlens!, causalMask), null, null, total, total, { device });
        const four = (t: T.Tensor) => t.transpose(0, 1).unsqueeze(0);
        fn = () => flexAttention(four(q), four(k), four(v), { blockMask: bm });
      } else {
        const Lp = cq.maxSeqlen;
        const keep = new Uint8Array(B * Lp);
        lengths.forEach((n, b) => keep.fill(1, b * Lp, b * Lp + n));
        const mask = T.tensor(keep, [B, 1, 1, Lp], { dtype: 'bool', device });
        const tr = (t: T.Tensor) => t.transpose(1, 2); // [B, L, H, E] → [B, H, L, E]
        fn = () => scaledDotProductAttention(tr(q), tr(k), tr(v), { attnMask: mask, isCausal: true });
      }
      const g = T.randn(fn().shape, { seed: 9, device });
      fwds[strategy] = () => T.noGrad(() => fn().dispose());
      fbs[strategy] = () => {
        const o = fn();
        o.backward(g);
        o.dispose();
        for (const t of [q, k, v]) {
          t.grad?.dispose();
          t.grad = null;
        }
      };
      useful[strategy] = cq.usefulFraction;
    }
    // the strategies round-robin: each timing under the same load (best of the rounds)
    const budgetMs = (soft ? (quick ? 3000 : 8000) : 3000) * strategies.length;
    progress(`varlen: ${dist} ${strategies.join(' vs ')} round-robin`);
    const fwd = await timeInterleaved(device, fwds, { rounds: repsOn(device, quick ? 2 : 5), budgetMs });
    const fb = await timeInterleaved(device, fbs, { rounds: repsOn(device, quick ? 1 : 3), budgetMs });
    for (const st of strategies) results[st] = { fwd: fwd[st]!.ms, fb: fb[st]!.ms, useful: useful[st]! };
    const base = results['pad-to-max']!;
    for (const [strategy, r] of Object.entries(results)) {
      rows.push({
        scenario: 'varlen',
        name: `${dist} ${strategy}`,
        B,
        L,
        H,
        E,
        tokens: lengths.reduce((p, n) => p + n, 0),
        useful_fraction: r.useful,
        fwd_ms: r.fwd,
        fwdbwd_ms: r.fb,
        speedup_fwd_vs_pad_max: base.fwd / r.fwd,
        speedup_fwdbwd_vs_pad_max: base.fb / r.fb,
      });
    }
  }
  return rows;
}
