// Trains a tiny character-level GPT-2 on a text file with @webattn/models, then samples from it.
//   node examples/train-gpt2.mjs [text-file] [--attention eager|sdpa|flash|flex] [--steps N]
// Runs on WebGPU when an adapter is found (llvmpipe included), else on the CPU reference device.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as T from '@webattn/core-tensor';
import { AdamW, CosineWithWarmup, GPT2LMHeadModel, clipGradNorm, eagerAttention, flashAttention, flexAttention, gpt2Config, sdpaAttention } from '@webattn/models';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const file = args.find((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--'))) ?? fileURLToPath(new URL('./data/tiny.txt', import.meta.url));
const attention = { eager: eagerAttention, sdpa: sdpaAttention, flash: flashAttention, flex: flexAttention }[opt('attention', 'flash')];
const steps = Number(opt("steps", 30));

const text = readFileSync(file, 'utf8');
const vocab = [...new Set(text)].sort();
const stoi = new Map(vocab.map((c, i) => [c, i]));
const data = Int32Array.from(text, (c) => stoi.get(c));

const device = await T.getDevice();
console.log(`device: ${device.info.adapter} (${device.backend}); ${text.length} characters, vocab ${vocab.length}`);
const config = gpt2Config({ vocab_size: vocab.length, n_positions: 64, n_embd: 32, n_layer: 2, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 });
const model = new GPT2LMHeadModel(config, { attention, device, seed: 1 });
const optimizer = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.01 });
const schedule = new CosineWithWarmup(optimizer, { warmupSteps: 4, totalSteps: steps });

const B = 4;
const L = 32;
let seed = 7;
const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
const t0 = performance.now();
const losses = [];
for (let step = 1; step <= steps; step++) {
  const batch = new Int32Array(B * L);
  for (let b = 0; b < B; b++) {
    const at = Math.floor(rand() * (data.length - L));
    batch.set(data.subarray(at, at + L), b * L);
  }
  // one training step in a memory scope: every intermediate (activations, saved tensors, grads) is freed
  const v = await T.tidyAsync(async () => {
    const ids = T.tensor(batch, [B, L], { dtype: 'int32', device });
    const { loss } = await model.forward({ inputIds: ids, labels: ids });
    loss.backward();
    clipGradNorm(model.parameters(), 1.0);
    optimizer.step();
    schedule.step();
    optimizer.zeroGrad();
    return loss.item();
  });
  losses.push(v);
  if (step === 1 || step % 10 === 0) console.log(`step ${step}: loss ${v.toFixed(4)}, lr ${optimizer.lr.toExponential(2)}, ${((performance.now() - t0) / step).toFixed(0)} ms/step`);
}
const first = losses.slice(0, 3).reduce((a, b) => a + b) / 3;
const last = losses.slice(-3).reduce((a, b) => a + b) / 3;
const mem = device.memoryStats();
console.log(`loss ${first.toFixed(3)} → ${last.toFixed(3)} in ${steps} steps (${((performance.now() - t0) / 1000).toFixed(1)} s); live device memory ${(mem.currentBytes / 1024).toFixed(0)} KiB in ${mem.liveStorages} storages`);

const prompt = T.tensor(Int32Array.from('The ', (c) => stoi.get(c) ?? 0), [1, 4], { dtype: 'int32', device });
const out = await model.generate(prompt, { maxNewTokens: 40, temperature: 0.8, topK: 10, seed: 3, eosTokenId: null });
console.log(`sample: ${JSON.stringify(Array.from(await out.toArray(), (i) => vocab[i]).join(''))}`);
device.destroy?.();
if (!(last < first)) {
  console.error('loss did not go down');
  process.exit(1);
}
