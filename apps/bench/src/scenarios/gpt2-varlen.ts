import * as T from '@webattn/core-tensor';
import { AdamW, GPT2LMHeadModel, flashAttention, gpt2Config, sdpaAttention, type AttentionFn } from '@webattn/models';
import { progress, repsOn, timeInterleaved, type BenchRow } from '../timing.js';
import { sampleLengths } from './varlen.js';

/**
 * The published GPT-2 padding-free experiment: train and eval step of GPT2LMHeadModel on lengths uniform
 * in 1..1023 (batch 32, 24 layers, 16 heads of 64, vocab 1024), padded to the longest + attention mask
 * (sdpa) vs packed into one row with position ids (flash varlen, and sdpa with the block-diagonal mask).
 * Published on an H100 (PyTorch): padded SDPA 342 ms vs packed flash varlen 160 ms (2.1×).
 * Scaled down on software adapters and with --quick.
 */
export async function gpt2VarlenScenario(device: T.Device, quick: boolean): Promise<BenchRow[]> {
  const soft = device.info.software || device.backend === 'cpu';
  const small = soft || quick;
  const maxLen = small ? (quick ? 64 : 128) : 1023;
  const B = small ? 8 : 32;
  const cfg = small
    ? gpt2Config({ vocab_size: 1024, n_positions: 1024, n_embd: 64, n_layer: quick ? 1 : 2, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 })
    : gpt2Config({ vocab_size: 1024, n_positions: 1024, n_embd: 1024, n_layer: 24, n_head: 16, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 });
  const lengths = sampleLengths(B, maxLen, 'uniform', 11);
  const { Lp, total, pIds, pMask, pLab, kIds, kPos, kLab } = varlenBatches(lengths, cfg.vocab_size);
  const t = (a: Int32Array, shape: number[]) => T.tensor(a, shape, { dtype: 'int32', device });
  const padded = { inputIds: t(pIds, [B, Lp]), attentionMask: t(pMask, [B, Lp]), labels: t(pLab, [B, Lp]) };
  const packed = { inputIds: t(kIds, [1, total]), positionIds: t(kPos, [1, total]), labels: t(kLab, [1, total]) };
  const cases: [string, AttentionFn, typeof padded | typeof packed][] = [
    ['padded sdpa', sdpaAttention, padded],
    ['packed flash-varlen', flashAttention, packed],
    ['packed sdpa (block-diagonal mask)', sdpaAttention, packed],
  ];
  const rows: BenchRow[] = [];
  const res: Record<string, { train: number; evalMs: number }> = {};
  // every case's model first, then their steps round-robin (same load for each; best of the rounds)
  const models = cases.map(([name, attention, inputs]) => {
    const model = new GPT2LMHeadModel(cfg, { attention, device, seed: 1 });
    return { name, model, inputs, opt: new AdamW(model.parameters(), { lr: 1e-4 }) };
  });
  const opts = { rounds: repsOn(device, quick ? 2 : 4), budgetMs: (soft ? 20000 : 5000) * cases.length, tidy: true };
  progress(`gpt2-varlen: train steps, ${cases.map((c) => c[0]).join(', ')} round-robin`);
  const train = await timeInterleaved(
    device,
    Object.fromEntries(
      models.map((m) => [
        m.name,
        async () => {
          const { loss } = await m.model.forward(m.inputs);
          loss!.backward();
          m.opt.step();
          m.opt.zeroGrad();
        },
      ]),
    ),
    opts,
  );
  progress('gpt2-varlen: eval steps round-robin');
  for (const m of models) m.model.eval();
  const evals = await timeInterleaved(
    device,
    Object.fromEntries(
      models.map((m) => [
        m.name,
        async () => {
          await m.model.forward(m.inputs);
        },
      ]),
    ),
    opts,
  );
  for (const [name] of cases) res[name] = { train: train[name]!.ms, evalMs: evals[name]!.ms };
  const base = res['padded sdpa']!;
  for (const [name, r] of Object.entries(res)) {
    rows.push({
      scenario: 'gpt2-varlen',
      name,
      B,
      max_len: maxLen,
      tokens: total,
      useful_fraction: total / (B * Lp),
      layers: cfg.n_layer,
      train_ms: r.train,
      eval_ms: r.evalMs,
      train_speedup_vs_padded: base.train / r.train,
      eval_speedup_vs_padded: base.evalMs / r.evalMs,
    });
  }
  return rows;
}

/**
 * The token batches of the padded-vs-packed GPT-2 experiment from a list of sequence lengths: padded to the
 * longest (`pIds`/`pMask`/`pLab`, `[B, Lp]`, labels −100 on padding) and packed into one row (`kIds`/`kPos`/`kLab`,
 * `[1, total]`, position ids restarting at 0, labels −100 on each sequence's first token so that no target crosses
 * a sequence boundary). Token `i` of sequence `b` is `(131·b + 17·i) mod vocab` in both. Shared by this scenario
 * and the GPU bench (`apps/bench/gpu/webattn_models.mjs`).
 */
export function varlenBatches(lengths: number[], vocab: number) {
  const B = lengths.length;
  const Lp = Math.max(...lengths);
  const total = lengths.reduce((a, b) => a + b, 0);
  const tok = (b: number, i: number) => (b * 131 + i * 17) % vocab;
  const pIds = new Int32Array(B * Lp);
  const pMask = new Int32Array(B * Lp);
  const pLab = new Int32Array(B * Lp).fill(-100);
  const kIds = new Int32Array(total);
  const kPos = new Int32Array(total);
  const kLab = new Int32Array(total);
  let at = 0;
  lengths.forEach((n, b) => {
    for (let i = 0; i < n; i++) {
      pIds[b * Lp + i] = kIds[at] = tok(b, i);
      pMask[b * Lp + i] = 1;
      pLab[b * Lp + i] = tok(b, i);
      kPos[at] = i;
      kLab[at] = i === 0 ? -100 : tok(b, i);
      at++;
    }
  });
  return { Lp, total, pIds, pMask, pLab, kIds, kPos, kLab };
}
