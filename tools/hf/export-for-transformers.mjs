#!/usr/bin/env node
// Writes directories that transformers should load, with webattn's logits to compare against:
//   node tools/hf/export-for-transformers.mjs [outDir]   (after `npm run build`)
// For the tiny GPT-2 and ViT of fixtures/: fromPretrained, three SGD steps (so the weights are ours,
// not transformers' originals), savePretrained(outDir/<name>), and outDir/<name>/webattn_check.json
// holding the inputs and our float32 logits. Then, where transformers 5.17 is installed:
//   python tools/hf/check_transformers_load.py outDir/gpt2 && python tools/hf/check_transformers_load.py outDir/vit
import { fileURLToPath } from 'node:url';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpu, tensor, randn } from '@webattn/core-tensor';
import { SGD } from '@webattn/models';
import { fromPretrained, savePretrained } from '@webattn/hf-adapter';

const root = fileURLToPath(new URL('../../', import.meta.url));
const out = process.argv[2] ?? join(root, 'tools/hf/out');
const device = cpu();

async function train(model, batch) {
  model.train();
  const opt = new SGD(model.parameters(), { lr: 0.05 });
  for (let s = 0; s < 3; s++) {
    opt.zeroGrad();
    const { loss } = await model.forward(batch);
    loss.backward();
    opt.step();
  }
  model.eval();
}

{
  const model = await fromPretrained(join(root, 'fixtures/tiny-gpt2'), { device, attnImplementation: 'eager' });
  const ids = Array.from({ length: 2 * 12 }, (_, i) => (i * 37 + 11) % 97);
  const inputIds = tensor(Int32Array.from(ids), [2, 12], { dtype: 'int32', device });
  await train(model, { inputIds, labels: inputIds });
  const { logits } = await model.forward({ inputIds });
  const dir = join(out, 'gpt2');
  await savePretrained(model, dir);
  const check = { model: 'gpt2', inputs: { input_ids: [ids.slice(0, 12), ids.slice(12)] }, logits_shape: logits.shape, logits: Array.from(await logits.toArray()) };
  writeFileSync(join(dir, 'webattn_check.json'), JSON.stringify(check));
  console.log(`wrote ${dir}`);
}
{
  const model = await fromPretrained(join(root, 'fixtures/tiny-vit'), { device, attnImplementation: 'sdpa' });
  const px = randn([2, 3, 32, 32], { seed: 5, device });
  const labels = tensor(Int32Array.from([1, 4]), [2], { dtype: 'int32', device });
  await train(model, { pixelValues: px, labels });
  const { logits } = await model.forward({ pixelValues: px });
  const dir = join(out, 'vit');
  await savePretrained(model, dir);
  const pv = Array.from(await px.toArray());
  const check = { model: 'vit', inputs: { pixel_values: pv, pixel_values_shape: px.shape }, logits_shape: logits.shape, logits: Array.from(await logits.toArray()) };
  writeFileSync(join(dir, 'webattn_check.json'), JSON.stringify(check));
  console.log(`wrote ${dir}`);
}
