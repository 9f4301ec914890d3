#!/usr/bin/env node
// Published-size models with @webattn/models, beside torch_models.py (transformers) on the same GPU:
//   GPT-2 small (124M: 12 layers, 12 heads, 768 wide, vocab 50257), batch 8 × 1024 tokens: forward, training
//   step (loss + backward + AdamW) and greedy generation (64-token prompt, 32 new tokens, KV cache) tokens/s;
//   ViT-B/16 (224 px, 12 layers, 12 heads, 768 wide, 1000 classes), batch 32: forward and training step.
// Attention functions: flash, sdpa, eager; float32 and (adapter with shader-f16) float16 weights.
// Random init, dropout 0. Each measurement keeps its first call apart (pipeline compiles) and counts the
// pipelines the SECOND call creates (a model's second run must compile nothing).
//   node apps/bench/gpu/webattn_models.mjs --json out.json   (QUICK=1: tiny configs; DEADLINE_S: budget)
// --scenario (default `models`, the above) picks the published experiments of issue 13 instead, beside
// torch_models.py --scenario with the same name, always at equal depth (the depth is in every row):
//   vit          ViT 224 px, patch 16 (L = 197), 16 heads of 64 (ViT-L/16 width), batch 128, train step with
//                eager / sdpa / flash / flex+softcap(20) / flex+5×5 neighbourhood, at VIT_DEPTH layers (default 2;
//                the published 24 do not fit webattn's time or memory); then the long variant, patch 4 (L = 3137),
//                batch VIT_LONG_B (8) at VIT_LONG_DEPTH (1) layers for the fused functions.
//   gpt2-varlen  GPT-2 (16 heads of 64, vocab 1024, n_positions 1024) at VARLEN_DEPTH layers (default 1; published 24),
//                batch 32 of lengths uniform in 1..1023 (publishedLengths, seed 11), train and eval step, padded
//                (attention mask) vs packed (position ids restarting at 0) for flash and sdpa.
import * as T from "@webattn/core-tensor";
import { varlenBatches } from "../dist/scenarios/gpt2-varlen.js";
import "@webattn/kernels-webgpu";
import {
  AdamW,
  GPT2LMHeadModel,
  GradScaler,
  VIT_PUBLISHED,
  ViTForImageClassification,
  eagerAttention,
  flashAttention,
  flexAttention,
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

const SCENARIO = opt("--scenario", process.env.MODELS_SCENARIO ?? "models");
const dev = await T.getDevice({ kind: "webgpu" });
const hasF16 = dev.hasFeature("shader-f16");
const out = resultFile(opt("--json", null), {
  peer: "webattn-models",
  scenario: SCENARIO,
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

// ---------------------------------------------------------------- published scenarios (issue 13)
/**
 * B sequence lengths uniform in 1..maxLen from a 32-bit LCG (seed 11): torch_models.py's published_lengths
 * makes the same list, so both peers train on the same batch.
 */
function publishedLengths(B, maxLen, seed = 11) {
  let x = seed >>> 0;
  return Array.from({ length: B }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return 1 + ((x >>> 8) % maxLen);
  });
}
const envInt = (k, d) => (process.env[k] ? Number(process.env[k]) : d);
const mib = (b) => Math.round(b / 2 ** 20);

/** One train-step measurement (forward with labels, backward, AdamW, zero grads) into `row`, with the peak memory. */
async function trainInto(row, model, inputs, reps, budgetMs, key = "train") {
  const optimizer = new AdamW(model.parameters(), { lr: 1e-4 });
  const losses = [];
  dev.resetPeakMemory?.();
  const m = await into(
    row,
    key,
    async () => {
      const { loss } = await model.forward(inputs);
      loss.backward();
      optimizer.step();
      optimizer.zeroGrad();
      losses.push((await loss.toArray())[0]);
    },
    reps,
    budgetMs
  );
  row[`${key}_peak_mib`] = mib(dev.memoryStats().peakBytes);
  row[`${key}_losses`] = losses.map((x) => Number(x.toFixed(4))).join(",");
  row[`${key}_loss_finite`] = losses.every(Number.isFinite);
  return { m, optimizer };
}

async function vitPublished() {
  const depth = envInt("VIT_DEPTH", 2);
  const groups = [
    {
      variant: "patch16",
      cfg: QUICK
        ? vitConfig({ image_size: 32, patch_size: 4, hidden_size: 64, num_attention_heads: 4, num_hidden_layers: depth, intermediate_size: 256, num_labels: 10 })
        : vitConfig({ ...VIT_PUBLISHED.patch16, num_hidden_layers: depth }),
      B: QUICK ? 2 : envInt("VIT_B", 128),
      attns: ["eager", "sdpa", "flash", "flex+softcap", "flex+neighborhood"],
    },
    {
      variant: "patch4 (long)",
      cfg: QUICK
        ? vitConfig({ image_size: 32, patch_size: 2, hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 1, intermediate_size: 256, num_labels: 10 })
        : vitConfig({ ...VIT_PUBLISHED.patch4, num_hidden_layers: envInt("VIT_LONG_DEPTH", 1) }),
      B: QUICK ? 2 : envInt("VIT_LONG_B", 8),
      attns: ["flash", "sdpa", "flex+softcap", "flex+neighborhood"],
    },
  ];
  const fns = {
    eager: [eagerAttention, {}],
    sdpa: [sdpaAttention, {}],
    flash: [flashAttention, {}],
    "flex+softcap": [flexAttention, { softcap: 20 }],
    "flex+neighborhood": [flexAttention, { neighborhoodRadius: 2, blockSize: 64 }],
  };
  // VIT_VARIANTS=patch16 (or "patch4 (long)"): only those groups
  const only = process.env.VIT_VARIANTS ? process.env.VIT_VARIANTS.split(",") : null;
  for (const g of groups) {
    if (only && !only.includes(g.variant)) continue;
    const { cfg, B } = g;
    const L = (cfg.image_size / cfg.patch_size) ** 2 + 1;
    const px = T.randn([B, cfg.num_channels, cfg.image_size, cfg.image_size], { seed: 3, device: dev });
    const labels = T.tensor(Int32Array.from({ length: B }, (_, i) => (i * 37) % cfg.num_labels), [B], { dtype: "int32", device: dev });
    for (const attn of g.attns) {
      const row = {
        kind: "vit-published",
        variant: g.variant,
        name: `ViT ${g.variant} ${attn}`,
        attn,
        dtype: "f32",
        B,
        L,
        image: cfg.image_size,
        patch: cfg.patch_size,
        layers: cfg.num_hidden_layers,
        hidden: cfg.hidden_size,
        heads: cfg.num_attention_heads,
        head_dim: cfg.hidden_size / cfg.num_attention_heads,
      };
      if (secondsLeft() < 25) {
        row.skipped = `time budget (${secondsLeft().toFixed(0)} s left)`;
        out.emit(row);
        continue;
      }
      console.log(`model ${row.name} depth ${row.layers} B=${B}`);
      let model = null;
      let optimizer = null;
      try {
        const t0 = performance.now();
        // 5×5 neighbourhood: block size 64 on the 14×14 grid; 128 on the 56×56 one
        const opts = attn === "flex+neighborhood" && L > 1000 ? { ...fns[attn][1], blockSize: 128 } : fns[attn][1];
        model = new ViTForImageClassification(cfg, { attention: fns[attn][0], device: dev, seed: 1, ...opts });
        await dev.sync();
        row.init_ms = performance.now() - t0;
        row.params = model.parameters().reduce((p, t) => p + t.size, 0);
        model.train();
        ({ optimizer } = await trainInto(row, model, { pixelValues: px, labels }, QUICK ? 2 : 3, 6000));
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
    px.dispose();
    labels.dispose();
  }
}

async function gpt2Varlen() {
  const depth = envInt("VARLEN_DEPTH", 1);
  const cfg = QUICK
    ? gpt2Config({ vocab_size: 1024, n_positions: 128, n_embd: 64, n_layer: depth, n_head: 4, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 })
    : gpt2Config({ vocab_size: 1024, n_positions: 1024, n_embd: 1024, n_layer: depth, n_head: 16, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 });
  const B = QUICK ? 4 : 32;
  const maxLen = QUICK ? 63 : 1023;
  const lengths = publishedLengths(B, maxLen);
  const { Lp, total, pIds, pMask, pLab, kIds, kPos, kLab } = varlenBatches(lengths, cfg.vocab_size);
  const t = (a, shape) => T.tensor(a, shape, { dtype: "int32", device: dev });
  const inputs = {
    padded: { inputIds: t(pIds, [B, Lp]), attentionMask: t(pMask, [B, Lp]), labels: t(pLab, [B, Lp]) },
    packed: { inputIds: t(kIds, [1, total]), positionIds: t(kPos, [1, total]), labels: t(kLab, [1, total]) },
  };
  const cases = [
    ["flash", "packed"],
    ["flash", "padded"],
    ["sdpa", "packed"],
    ["sdpa", "padded"],
  ];
  const res = {};
  // VARLEN_ATTNS=sdpa (or flash): only those attention functions
  const onlyAttn = process.env.VARLEN_ATTNS ? process.env.VARLEN_ATTNS.split(",") : null;
  for (const [attn, layout] of cases) {
    if (onlyAttn && !onlyAttn.includes(attn)) continue;
    const row = {
      kind: "gpt2-varlen",
      name: `GPT-2 ${layout} ${attn}`,
      attn,
      layout,
      dtype: "f32",
      B,
      max_len: maxLen,
      longest: Lp,
      tokens: total,
      padded_tokens: B * Lp,
      layers: cfg.n_layer,
      hidden: cfg.n_embd,
      heads: cfg.n_head,
      vocab: cfg.vocab_size,
      lengths_seed: 11,
    };
    if (secondsLeft() < 25) {
      row.skipped = `time budget (${secondsLeft().toFixed(0)} s left)`;
      out.emit(row);
      continue;
    }
    console.log(`model ${row.name} depth ${row.layers}`);
    let model = null;
    let optimizer = null;
    try {
      model = new GPT2LMHeadModel(cfg, { attention: ATTN[attn], device: dev, seed: 1 });
      await dev.sync();
      model.train();
      ({ optimizer } = await trainInto(row, model, inputs[layout], QUICK ? 2 : 3, 6000));
      if (secondsLeft() > 15) {
        model.eval();
        setGrad(model, false);
        const fwd = { ...inputs[layout] };
        delete fwd.labels;
        await into(row, "eval", async () => {
          await model.forward(fwd);
        }, QUICK ? 2 : 3, 4000);
      }
    } catch (e) {
      row.error = errText(e);
    }
    res[`${attn} ${layout}`] = row;
    for (const k of ["train", "eval"]) {
      const pk = res[`${attn} packed`]?.[`${k}_ms`];
      const pd = res[`${attn} padded`]?.[`${k}_ms`];
      if (layout === "padded" && pk && pd) row[`${k}_padded_over_packed`] = pd / pk;
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
}

if (SCENARIO !== "models") {
  if (SCENARIO === "vit") await vitPublished();
  else if (SCENARIO === "gpt2-varlen") await gpt2Varlen();
  else throw new Error(`--scenario: expected models, vit or gpt2-varlen, got ${SCENARIO}`);
  out.meta.pipelines_total = pipelines();
  out.write();
  console.log(`webattn-models ${SCENARIO} done: ${out.rows.length} rows`);
  dev.destroy();
  process.exit(0);
}

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
