#!/usr/bin/env node
// Where a model step's time goes: GPT-2 small (B=8 × 1024) forward / AdamW training step / greedy generation
// and ViT-B/16 (B=32) forward / training step with flash attention, float32, each profiled after two warm-up
// calls with `profile()` (GPU timestamps where the adapter has `timestamp-query`): the top kernels by GPU time,
// the GPU total against the wall time, and the host counters (dispatches, submits, buffers created vs pool
// hits, uploads, readbacks / syncs and their wait, pipelines compiled).
//   node apps/bench/gpu/profile_models.mjs [--json out.json]   (QUICK=1: tiny configs; TOP=10; MODELS_ONLY=gpt2,vit;
//   VIT_ATTN=flash,eager,sdpa: the ViT attention functions to profile, in turn, default flash;
//   PROFILE_DTYPE=float32,float16: the model dtypes to profile, in turn, default float32 (float16: the model
//   cast with `model.to('float16')`, inputs in float16, training as webattn_models.mjs does it: AdamW with float32
//   master weights and a GradScaler); PROFILE_KEYS=1: kernels split by pipeline key (e.g. the matmul variant))
import * as T from "@webattn/core-tensor";
import { formatProfile, profile } from "@webattn/kernels-webgpu";
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
import { QUICK, errText, opt, resultFile, secondsLeft } from "./common.mjs";

const TOP = Number(process.env.TOP ?? 10);
const ONLY = process.env.MODELS_ONLY ? process.env.MODELS_ONLY.split(",") : null;
const DTYPES = (process.env.PROFILE_DTYPE ?? "float32").split(",");
for (const d of DTYPES) if (d !== "float32" && d !== "float16") throw new Error(`PROFILE_DTYPE: expected float32 or float16, got "${d}"`);
const dev = await T.getDevice({ kind: "webgpu" });
if (process.env.PROFILE_KEYS === "1") {
  // the profiler sums GPU time by program name; name each program by its cache key too (same pipelines, same WGSL)
  const dispatch = dev.dispatch.bind(dev);
  dev.dispatch = (prog, storages, u, grid) => dispatch({ ...prog, name: `${prog.name}|${prog.key.replace(/^[^|]*\|/, "").slice(0, 90)}` }, storages, u, grid);
}
const out = resultFile(opt("--json", null), {
  peer: "webattn-profile",
  date: new Date().toISOString(),
  quick: QUICK,
  device: dev.info,
});
console.log(`webattn-profile on ${dev.info.adapter} (${dev.info.api}), timestamp-query: ${dev.caps.timestampQuery}`);

const gptSpec = QUICK
  ? { cfg: gpt2Config({ vocab_size: 1024, n_positions: 128, n_embd: 64, n_layer: 2, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 }), B: 2, L: 64, prompt: 16, newTokens: 4 }
  : { cfg: gpt2Config({ resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 }), B: 8, L: 1024, prompt: 64, newTokens: 32 };
const vitSpec = QUICK
  ? { cfg: vitConfig({ image_size: 32, patch_size: 8, hidden_size: 64, num_attention_heads: 2, num_hidden_layers: 2, intermediate_size: 128, num_labels: 10 }), B: 2 }
  : { cfg: vitConfig({ num_labels: 1000 }), B: 32 };
const ints = (n, mod, seed) => Int32Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729 + ((i * i) % 613)) % mod);
const setGrad = (m, on) => m.parameters().forEach((p) => (p.requiresGrad = on));

async function measure(model, name, fn) {
  if (secondsLeft() < 15) return;
  const row = { kind: "profile", model, name };
  try {
    for (let i = 0; i < 2; i++) {
      await T.tidyAsync(fn);
      await dev.sync();
    }
    // the same call without the profiler's per-dispatch passes: median of REPS (default 3) runs, and the host part
    // (until `fn` resolves: recording and submitting, before waiting for the GPU)
    const plain = [];
    const host = [];
    for (let i = 0; i < Number(process.env.REPS ?? 3); i++) {
      const t0 = performance.now();
      await T.tidyAsync(async () => {
        await fn();
        host.push(performance.now() - t0);
      });
      await dev.sync();
      plain.push(performance.now() - t0);
    }
    const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
    row.plain_ms = med(plain);
    row.plain_all_ms = plain.map((x) => Number(x.toFixed(1)));
    row.host_ms = med(host);
    const p = await profile(dev, () => T.tidyAsync(fn));
    Object.assign(row, { timing: p.timing, wall_ms: p.wallMs, gpu_ms: p.gpuMs, counters: p.counters, kernels: p.kernels.slice(0, 25) });
    console.log(`\n== ${model} ${name}: ${row.plain_ms.toFixed(1)} ms unprofiled (median of ${row.plain_all_ms.join(', ')}; host ${row.host_ms.toFixed(1)} ms)\n${formatProfile(p, TOP)}`);
  } catch (e) {
    row.error = errText(e);
    console.log(`== ${model} ${name}: ERROR ${row.error}`);
  }
  out.emit(row);
}

const ATTNS = { flash: flashAttention, eager: eagerAttention, sdpa: sdpaAttention };
async function vit(f16) {
  const { cfg, B } = vitSpec;
  const tag = f16 ? " f16" : "";
  for (const name of (process.env.VIT_ATTN ?? "flash").split(",")) {
    if (!ATTNS[name]) throw new Error(`VIT_ATTN: expected flash, eager or sdpa, got "${name}"`);
    const model = new ViTForImageClassification(cfg, { attention: ATTNS[name], device: dev, seed: 1 });
    if (f16) await model.to("float16");
    const px = T.randn([B, cfg.num_channels, cfg.image_size, cfg.image_size], { seed: 3, device: dev, dtype: f16 ? "float16" : "float32" });
    const labels = T.tensor(Int32Array.from({ length: B }, (_, i) => (i * 37) % cfg.num_labels), [B], { dtype: "int32", device: dev });
    model.eval();
    setGrad(model, false);
    await measure("ViT-B/16", `${name}${tag} fwd B=${B}`, async () => void (await model.forward({ pixelValues: px })));
    model.train();
    setGrad(model, true);
    const tr = trainer(model, f16);
    await measure("ViT-B/16", `${name}${tag} train step (AdamW)`, async () => {
      const { loss } = await model.forward({ pixelValues: px, labels });
      await tr.step(loss);
    });
    tr.opt.dispose();
    model.dispose();
    px.dispose();
    labels.dispose();
    dev.emptyCache();
  }
}

/** Training step: plain AdamW in float32; float16 as PyTorch AMP (float32 master weights and moments, GradScaler). */
function trainer(model, f16) {
  const opt = new AdamW(model.parameters(), { lr: 1e-4, masterWeights: f16 });
  const scaler = f16 ? new GradScaler() : null;
  return {
    opt,
    async step(loss) {
      if (scaler) {
        scaler.scale(loss).backward();
        await scaler.step(opt);
        scaler.update();
      } else {
        loss.backward();
        opt.step();
      }
      opt.zeroGrad();
      await loss.toArray();
    },
  };
}

for (const dtype of DTYPES) {
  const f16 = dtype === "float16";
  const tag = f16 ? " f16" : "";
  if (f16 && !dev.caps.f16) {
    console.log("skip float16: adapter without shader-f16");
    continue;
  }
  if (!ONLY || ONLY.includes("gpt2")) {
    const { cfg, B, L } = gptSpec;
    const model = new GPT2LMHeadModel(cfg, { attention: flashAttention, device: dev, seed: 1 });
    if (f16) await model.to("float16");
    const ids = T.tensor(ints(B * L, cfg.vocab_size, 1), [B, L], { dtype: "int32", device: dev });
    const prompt = T.tensor(ints(gptSpec.prompt, cfg.vocab_size, 2), [1, gptSpec.prompt], { dtype: "int32", device: dev });
    model.eval();
    setGrad(model, false);
    await measure("GPT-2 small", `fwd${tag} B=${B} L=${L}`, async () => void (await model.forward({ inputIds: ids })));
    if (!f16) await measure("GPT-2 small", `generate ${gptSpec.prompt}+${gptSpec.newTokens}`, async () => void (await model.generate(prompt, { maxNewTokens: gptSpec.newTokens, eosTokenId: null })));
    model.train();
    setGrad(model, true);
    const tr = trainer(model, f16);
    await measure("GPT-2 small", `train step${tag} (AdamW)`, async () => {
      const { loss } = await model.forward({ inputIds: ids, labels: ids });
      await tr.step(loss);
    });
    tr.opt.dispose();
    model.dispose();
    dev.emptyCache();
  }
  if (!ONLY || ONLY.includes("vit")) await vit(f16);
}
out.write();
dev.destroy();
process.exit(0);
