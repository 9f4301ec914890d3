#!/usr/bin/env node
// Published-size models with @webattn/models, beside torch_models.py (transformers) on the same GPU:
//   GPT-2 small (124M: 12 layers, 12 heads, 768 wide, vocab 50257), batch 8 × 1024 tokens: forward, training
//   step (loss + backward + AdamW) and greedy generation (64-token prompt, 32 new tokens, KV cache) tokens/s;
//   ViT-B/16 (224 px, 12 layers, 12 heads, 768 wide, 1000 classes), batch 32: forward and training step.
// Attention functions: flash, sdpa, eager; float32 and (adapter with shader-f16) float16 weights.
// Random init, dropout 0. Each measurement keeps its first call apart (pipeline compiles) and counts the
// pipelines the SECOND call creates (a model's second run must compile nothing).
//   node apps/bench/gpu/webattn_models.mjs --json out.json   (QUICK=1: tiny configs; DEADLINE_S: budget)
import * as T from "@webattn/core-tensor";
import "@webattn/kernels-webgpu";
import {
  AdamW,
  GPT2LMHeadModel,
  GradScaler,
  ViTForImageClassification,
  eagerAttention,
  flashAttention,
  gpt2Config,
  sdpaAttention,
  vitConfig,
} from "@webattn/models";
import {
  QUICK,
  errText,
  median,
  opt,
  resultFile,
  secondsLeft,
} from "./common.mjs";

const dev = await T.getDevice({ kind: "webgpu" });
const hasF16 = dev.hasFeature("shader-f16");
const out = resultFile(opt("--json", null), {
  peer: "webattn-models",
  date: new Date().toISOString(),
  quick: QUICK,
  node: process.version,
  device: dev.info,
  f16: hasF16,
});
console.log(
  `webattn-models on ${dev.info.adapter} (${dev.info.api}), f16: ${hasF16}`
);
const pipelines = () => dev.pipelineCount ?? NaN;
const ATTN = {
  flash: flashAttention,
  sdpa: sdpaAttention,
  eager: eagerAttention,
};
const ONLY = process.env.MODELS_ONLY
  ? process.env.MODELS_ONLY.split(",")
  : null; // e.g. gpt2,vit

const GPT2 = QUICK
  ? {
      cfg: gpt2Config({
        vocab_size: 1024,
        n_positions: 128,
        n_embd: 64,
        n_layer: 2,
        n_head: 2,
        resid_pdrop: 0,
        embd_pdrop: 0,
        attn_pdrop: 0,
      }),
      B: 2,
      L: 64,
      prompt: 16,
      newTokens: 4,
    }
  : {
      cfg: gpt2Config({ resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 }),
      B: 8,
      L: 1024,
      prompt: 64,
      newTokens: 32,
    };
const VIT = QUICK
  ? {
      cfg: vitConfig({
        image_size: 32,
        patch_size: 8,
        hidden_size: 64,
        num_attention_heads: 2,
        num_hidden_layers: 2,
        intermediate_size: 128,
        num_labels: 10,
      }),
      B: 2,
    }
  : { cfg: vitConfig({ num_labels: 1000 }), B: 32 };
const REPS = QUICK ? 2 : 3;

/**
 * first call, second call (+ pipelines each created), then the median of up to `reps` more within `budgetMs`.
 * `fn` is async; its tensors are released by a tidy scope.
 */
async function measure(fn, reps = REPS, budgetMs = 8000) {
  const once = async () => {
    const p = pipelines();
    const t = performance.now();
    await T.tidyAsync(fn);
    await dev.sync();
    return { ms: performance.now() - t, pipelines: pipelines() - p };
  };
  const first = await once();
  const second = await once();
  const times = [second.ms];
  const start = performance.now();
  while (times.length < reps && performance.now() - start < budgetMs)
    times.push((await once()).ms);
  return {
    ms: median(times),
    reps: times.length,
    first_ms: first.ms,
    first_pipelines: first.pipelines,
    second_ms: second.ms,
    second_pipelines: second.pipelines,
  };
}
async function into(row, key, fn, reps, budgetMs) {
  try {
    const m = await measure(fn, reps, budgetMs);
    for (const [k, v] of Object.entries(m)) row[`${key}_${k}`] = v;
    return m;
  } catch (e) {
    row[`${key}_error`] = errText(e);
    return null;
  }
}
const setGrad = (model, on) => {
  for (const p of model.parameters()) p.requiresGrad = on;
};
function release(model, optimizer) {
  // frees AdamW's moments and (float16 rows) its float32 master weights; then the parameters by hand
  optimizer?.dispose?.();
  for (const p of model.parameters()) p.dispose();
  for (const s of optimizer?.state?.values?.() ?? []) {
    s.m?.dispose?.();
    s.v?.dispose?.();
  }
  dev.emptyCache?.();
}
const ints = (n, mod, seed) =>
  Int32Array.from(
    { length: n },
    (_, i) => (i * 7919 + seed * 104729 + ((i * i) % 613)) % mod
  );
// most informative first (a run cut by its deadline loses the tail): f32 flash and eager, f16 flash, sdpa, f16 eager
const variants = [
  ["flash", "float32"],
  ["eager", "float32"],
  ["flash", "float16"],
  ["sdpa", "float32"],
  ["eager", "float16"],
].flatMap(([attn, dtype]) =>
  ["gpt2", "vit"].map((model) => ({ model, attn, dtype }))
);

for (const v of variants) {
  if (ONLY && !ONLY.includes(v.model)) continue;
  const tag = v.dtype === "float16" ? "f16" : "f32";
  const isGpt = v.model === "gpt2";
  const spec = isGpt ? GPT2 : VIT;
  const row = {
    kind: "model",
    model: isGpt ? "GPT-2 small" : "ViT-B/16",
    name: `${isGpt ? "GPT-2 small" : "ViT-B/16"} ${v.attn}`,
    attn: v.attn,
    dtype: tag,
    B: spec.B,
    ...(isGpt
      ? {
          L: spec.L,
          layers: spec.cfg.n_layer,
          hidden: spec.cfg.n_embd,
          heads: spec.cfg.n_head,
          vocab: spec.cfg.vocab_size,
        }
      : {
          image: spec.cfg.image_size,
          patch: spec.cfg.patch_size,
          layers: spec.cfg.num_hidden_layers,
          hidden: spec.cfg.hidden_size,
          heads: spec.cfg.num_attention_heads,
        }),
  };
  if (v.dtype === "float16" && !hasF16) {
    row.skipped = "adapter without shader-f16";
    out.emit(row);
    continue;
  }
  if (secondsLeft() < 20) {
    row.skipped = `time budget (${secondsLeft().toFixed(0)} s left)`;
    out.emit(row);
    continue;
  }
  console.log(`model ${row.name} ${tag}`);
  let model = null;
  let optimizer = null;
  try {
    const t0 = performance.now();
    model = isGpt
      ? new GPT2LMHeadModel(spec.cfg, {
          attention: ATTN[v.attn],
          device: dev,
          seed: 1,
        })
      : new ViTForImageClassification(spec.cfg, {
          attention: ATTN[v.attn],
          device: dev,
          seed: 1,
        });
    if (v.dtype === "float16") await model.to("float16");
    await dev.sync();
    row.init_ms = performance.now() - t0;
    row.params = model.parameters().reduce((p, t) => p + t.size, 0);
    let inputs;
    let promptIds = null;
    if (isGpt) {
      const { B, L } = spec;
      const ids = T.tensor(ints(B * L, spec.cfg.vocab_size, 1), [B, L], {
        dtype: "int32",
        device: dev,
      });
      inputs = { inputIds: ids, labels: ids };
      promptIds = T.tensor(
        ints(spec.prompt, spec.cfg.vocab_size, 2),
        [1, spec.prompt],
        { dtype: "int32", device: dev }
      );
    } else {
      const { B } = spec;
      const px = T.randn(
        [B, spec.cfg.num_channels, spec.cfg.image_size, spec.cfg.image_size],
        { seed: 3, device: dev, dtype: v.dtype }
      );
      const labels = T.tensor(
        Int32Array.from(
          { length: B },
          (_, i) => (i * 37) % spec.cfg.num_labels
        ),
        [B],
        { dtype: "int32", device: dev }
      );
      inputs = { pixelValues: px, labels };
    }
    const fwdInputs = isGpt
      ? { inputIds: inputs.inputIds }
      : { pixelValues: inputs.pixelValues };
    // forward: eval, parameters frozen (no tape), like torch.no_grad()
    model.eval();
    setGrad(model, false);
    await into(row, "fwd", async () => {
      await model.forward(fwdInputs);
    });
    // greedy generation: prefill + one-token steps with the KV cache, eos off so every run makes newTokens
    if (isGpt && secondsLeft() > 15) {
      const g = await into(
        row,
        "gen",
        async () => {
          await model.generate(promptIds, {
            maxNewTokens: spec.newTokens,
            eosTokenId: null,
          });
        },
        2
      );
      if (g) {
        row.gen_new_tokens = spec.newTokens;
        row.gen_prompt = spec.prompt;
        row.gen_tokens_per_s = spec.newTokens / (g.ms / 1000);
      }
    }
    // training step: forward with labels, backward, AdamW, zero grads
    if (secondsLeft() > 15) {
      model.train();
      setGrad(model, true);
      // float16: mixed precision as PyTorch AMP trains it: float32 master weights and moments in AdamW,
      // float32 loss, dynamic loss scaling (GradScaler: skip + halve on inf/NaN)
      const f16 = v.dtype === "float16";
      optimizer = new AdamW(model.parameters(), { lr: 1e-4, masterWeights: f16 });
      const scaler = f16 ? new GradScaler() : null;
      if (f16) row.train_amp = "f16 model, f32 master weights + AdamW state, GradScaler";
      let skipped = 0;
      const losses = [];
      await into(row, "train", async () => {
        const { loss } = await model.forward(inputs);
        if (scaler) {
          scaler.scale(loss).backward();
          if (!(await scaler.step(optimizer))) skipped++;
          scaler.update();
        } else {
          loss.backward();
          optimizer.step();
        }
        optimizer.zeroGrad();
        losses.push((await loss.toArray())[0]);
      });
      if (scaler) {
        row.train_skipped_steps = skipped;
        row.train_loss_scale = scaler.getScale();
      }
      row.train_losses = losses.map((x) => Number(x.toFixed(4))).join(",");
      row.train_loss_finite = losses.every(Number.isFinite);
    }
  } catch (e) {
    row.error = errText(e);
  }
  out.emit(row);
  if (model) {
    try {
      release(model, optimizer);
    } catch {
      /* a model that failed half-way */
    }
  }
}
out.meta.pipelines_total = pipelines();
out.write();
console.log(
  `webattn-models done: ${out.rows.length} rows, ${pipelines()} pipelines`
);
dev.destroy();
process.exit(0);
