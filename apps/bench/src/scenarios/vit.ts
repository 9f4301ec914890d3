import * as T from '@webattn/core-tensor';
import { AdamW, VIT_PUBLISHED, ViTForImageClassification, eagerAttention, flashAttention, flexAttention, sdpaAttention, vitConfig, type AttentionFn, type ViTOptions } from '@webattn/models';
import { progress, repsOn, timeInterleaved, type BenchRow } from '../timing.js';

/**
 * The published ViT experiment: train-step time (forward + backward + AdamW) of ViTForImageClassification
 * with each attention function — eager, sdpa, flash, flex + softcap, flex + 5×5 neighbourhood mask.
 * The published size (224 px, patch 16, 16 heads of 64, 24 layers, batch 128) on hardware adapters;
 * scaled down (and ratios only) on software adapters and with --quick.
 */
export async function vitScenario(device: T.Device, quick: boolean): Promise<BenchRow[]> {
  const soft = device.info.software || device.backend === 'cpu';
  const small = soft || quick;
  const base = small
    ? vitConfig({ image_size: 32, patch_size: 4, hidden_size: 64, num_attention_heads: 2, num_hidden_layers: quick ? 1 : 2, intermediate_size: 128, num_labels: 10 })
    : vitConfig(VIT_PUBLISHED.patch16);
  const B = small ? 4 : 128;
  const variants: [string, AttentionFn, ViTOptions][] = [
    ['eager', eagerAttention, {}],
    ['sdpa', sdpaAttention, {}],
    ['flash', flashAttention, {}],
    ['flex+softcap', flexAttention, { softcap: 20 }],
    ['flex+neighborhood', flexAttention, { neighborhoodRadius: 2, blockSize: 64 }],
  ];
  const px = T.randn([B, base.num_channels, base.image_size, base.image_size], { seed: 3, device });
  const labels = T.tensor(Int32Array.from({ length: B }, (_, i) => i % base.num_labels), [B], { dtype: 'int32', device });
  const L = (base.image_size / base.patch_size) ** 2 + 1;
  const rows: BenchRow[] = [];
  // every implementation's model first, then their steps round-robin (same load for each; best of the rounds)
  const steps: Record<string, () => Promise<void>> = {};
  for (const [name, attention, opts] of variants) {
    const model = new ViTForImageClassification(base, { attention, device, seed: 1, ...opts });
    const opt = new AdamW(model.parameters(), { lr: 1e-4 });
    steps[name] = async () => {
      const { loss } = await model.forward({ pixelValues: px, labels });
      loss!.backward();
      opt.step();
      opt.zeroGrad();
    };
  }
  progress(`vit: ${variants.map((v) => v[0]).join(', ')} round-robin`);
  const t = await timeInterleaved(device, steps, { rounds: repsOn(device, quick ? 2 : 5), budgetMs: soft ? 20000 : 5000 * variants.length, tidy: true });
  const ref = t['sdpa']!.ms;
  for (const [name] of variants) {
    rows.push({ scenario: 'vit', name: `train step ${name}`, B, L, H: base.num_attention_heads, E: base.hidden_size / base.num_attention_heads, layers: base.num_hidden_layers, step_ms: t[name]!.ms, step_median_ms: t[name]!.median, reps: t[name]!.reps });
  }
  for (const r of rows) r['speedup_vs_sdpa'] = ref / (r['step_ms'] as number);
  return rows;
}
