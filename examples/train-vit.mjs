// Trains a tiny ViT on generated images (three classes: horizontal stripes, vertical stripes, a bright
// square) with @webattn/models.
//   node examples/train-vit.mjs [--attention eager|sdpa|flash|flex|flex-softcap|flex-neighborhood] [--steps N]
// Runs on WebGPU when an adapter is found (llvmpipe included), else on the CPU reference device.
import * as T from '@webattn/core-tensor';
import { AdamW, ViTForImageClassification, eagerAttention, flashAttention, flexAttention, sdpaAttention, vitConfig } from '@webattn/models';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const variant = opt('attention', 'sdpa');
const steps = Number(opt('steps', 20));
const attention = { eager: eagerAttention, sdpa: sdpaAttention, flash: flashAttention }[variant] ?? flexAttention;
const extra = variant === 'flex-softcap' ? { softcap: 20 } : variant === 'flex-neighborhood' ? { neighborhoodRadius: 1, blockSize: 64 } : {};

const S = 16;
let seed = 11;
const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
function image(label) {
  const px = new Float32Array(3 * S * S);
  const phase = Math.floor(rand() * 4);
  const [r0, c0] = [Math.floor(rand() * 10), Math.floor(rand() * 10)];
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        let v = label === 0 ? ((y + phase) % 4 < 2 ? 1 : -1) : label === 1 ? ((x + phase) % 4 < 2 ? 1 : -1) : y >= r0 && y < r0 + 6 && x >= c0 && x < c0 + 6 ? 1.5 : -0.5;
        px[(c * S + y) * S + x] = v + 0.5 * (rand() - 0.5);
      }
    }
  }
  return px;
}

const device = await T.getDevice();
console.log(`device: ${device.info.adapter} (${device.backend}); attention ${variant}`);
const config = vitConfig({ image_size: S, patch_size: 4, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, num_labels: 3 });
const model = new ViTForImageClassification(config, { attention, device, seed: 2, ...extra });
const optimizer = new AdamW(model.parameters(), { lr: 3e-3 });
const B = 12;
const t0 = performance.now();
const losses = [];
for (let step = 1; step <= steps; step++) {
  const px = new Float32Array(B * 3 * S * S);
  const labels = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    labels[b] = b % 3;
    px.set(image(labels[b]), b * 3 * S * S);
  }
  // one training step in a memory scope: every intermediate (activations, saved tensors, grads) is freed
  losses.push(
    await T.tidyAsync(async () => {
      const { loss } = await model.forward({ pixelValues: T.tensor(px, [B, 3, S, S], { device }), labels: T.tensor(labels, [B], { dtype: 'int32', device }) });
      loss.backward();
      optimizer.step();
      optimizer.zeroGrad();
      return loss.item();
    }),
  );
  if (step === 1 || step % 10 === 0) console.log(`step ${step}: loss ${losses.at(-1).toFixed(4)}, ${((performance.now() - t0) / step).toFixed(0)} ms/step`);
}
const first = losses.slice(0, 3).reduce((a, b) => a + b) / 3;
const last = losses.slice(-3).reduce((a, b) => a + b) / 3;
const mem = device.memoryStats();
console.log(`loss ${first.toFixed(3)} → ${last.toFixed(3)} in ${steps} steps (${((performance.now() - t0) / 1000).toFixed(1)} s); live device memory ${(mem.currentBytes / 1024).toFixed(0)} KiB in ${mem.liveStorages} storages`);
device.destroy?.();
if (!(last < first)) {
  console.error('loss did not go down');
  process.exit(1);
}
