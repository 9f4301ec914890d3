/**
 * A tiny GPT-2 and a tiny ViT (random seeded weights, nothing downloaded) whose attention is switched
 * by name, as transformers' `attn_implementation`: `withAttnImplementation` / `setAttnImplementation`
 * from @webattn/hf-adapter over the models of @webattn/models. Every implementation runs on the
 * visitor's WebGPU device and is checked against the same weights on the float64 CPU reference.
 */
import * as T from '@webattn/core-tensor';
import { AttentionInterface, DEFAULT_ATTN_IMPLEMENTATION, withAttnImplementation } from '@webattn/hf-adapter';
import { GPT2LMHeadModel, ViTForImageClassification, eagerAttention, gpt2Config, vitConfig, type AttentionFn } from '@webattn/models';
import { $, devices, escapeHtml, finish, setStatus, timeAsyncMs } from './common.js';

// ---- the two models: small enough for a software adapter (SwiftShader) -------------------------------
/** A toy character vocabulary (32 tokens), so the ids can be shown as text. */
const VOCAB = ' abcdefghijklmnopqrstuvwxyz.,!?\'';
const PROMPT = 'hello webgpu';
// initializer_range 0.3 (not GPT-2's 0.02): random weights that still give logits of order 1, so the
// greedy choice and the class logits are clear-cut and the comparison is not between near-zero numbers
const GPT = gpt2Config({ vocab_size: VOCAB.length, n_positions: 32, n_embd: 16, n_layer: 2, n_head: 2, initializer_range: 0.3, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, bos_token_id: null, eos_token_id: null });
const CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
const VIT = vitConfig({ image_size: 16, patch_size: 4, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, initializer_range: 0.3, id2label: Object.fromEntries(CLASSES.map((c, i) => [String(i), c])) });
const SEED = 2026;
/**
 * Pass/fail bound on max |GPU float32 − CPU float64| of the logits (both models' logits are of order 1).
 * float32 rounding through 2 layers of 16-wide reductions and WGSL's exp/tanh (a few ulp) gives ~1e-6;
 * 1e-4 leaves two orders of magnitude for a software adapter's arithmetic, yet the smallest bug we guard
 * against (attention without the causal mask, or without the 1/√E scale) moves the logits by ~1e-1,
 * which the page measures and shows below the table.
 */
const TOL = 1e-4;

interface Row {
  name: string;
  gptMs: number;
  genMs: number;
  gptDiff: number;
  tokens: number[];
  tokensOk: boolean;
  vitMs: number;
  vitDiff: number;
  vitLogits: ArrayLike<number>;
  top1Ok: boolean;
  ok: boolean;
}

const ids = (s: string) => Array.from(s, (ch) => Math.max(0, VOCAB.indexOf(ch)));
const text = (t: number[]) => t.map((i) => VOCAB[i] ?? '?').join('');
const argmax = (a: ArrayLike<number>, from = 0, n = a.length) => {
  let b = from;
  for (let i = from + 1; i < from + n; i++) if (a[i]! > a[b]!) b = i;
  return b - from;
};
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(Number(a[i]) - Number(b[i]));
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}
const fmt = (x: number) => (x === 0 ? '0' : x.toExponential(1));

/** A seeded 16×16 RGB image in [-1, 1] (ViT's normalisation): a disc on a gradient, plus noise. */
function image(): Float32Array {
  const S = VIT.image_size;
  const noise = T.readValues(T.randn([3 * S * S], { seed: SEED + 5, device: T.cpu() }));
  const px = new Float32Array(3 * S * S);
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) {
      const disc = (x - 9.5) ** 2 + (y - 6.5) ** 2 < 20 ? 1 : 0;
      const rgb = disc ? [0.9, 0.55, 0.1] : [0.15 + 0.04 * y, 0.35 + 0.02 * x, 0.85 - 0.02 * y];
      for (let c = 0; c < 3; c++) px[c * S * S + y * S + x] = Math.max(-1, Math.min(1, 2 * rgb[c]! - 1 + 0.08 * Number(noise[c * S * S + y * S + x])));
    }
  return px;
}

function drawImage(px: Float32Array): void {
  const S = VIT.image_size;
  const c = $<HTMLCanvasElement>('img');
  const ctx = c.getContext('2d')!;
  const cell = c.width / S;
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) {
      const v = [0, 1, 2].map((k) => Math.round(((px[k * S * S + y * S + x]! + 1) / 2) * 255));
      ctx.fillStyle = `rgb(${v.join(',')})`;
      ctx.fillRect(x * cell, y * cell, cell, cell);
    }
  // the 4×4 patch grid the model sees
  ctx.strokeStyle = 'rgba(255,255,255,.6)';
  for (let i = 1; i < S / VIT.patch_size; i++) {
    const p = (i * c.width * VIT.patch_size) / S;
    ctx.beginPath();
    ctx.moveTo(p, 0);
    ctx.lineTo(p, c.height);
    ctx.moveTo(0, p);
    ctx.lineTo(c.width, p);
    ctx.stroke();
  }
}

/** Horizontal bars of the GPU logits with the CPU reference as a tick on each. */
function bars(got: ArrayLike<number>, ref: ArrayLike<number>): string {
  const W = 330;
  const rowH = 20;
  const labelW = 78;
  const valueW = 50;
  const m = Math.max(1e-9, ...Array.from(got, Math.abs), ...Array.from(ref, Math.abs));
  const half = (W - labelW - valueW) / 2;
  const x0 = labelW + half;
  const top = argmax(got);
  const rows = CLASSES.map((c, i) => {
    const g = Number(got[i]);
    const r = Number(ref[i]);
    const y = i * rowH;
    const w = (Math.abs(g) / m) * half;
    const xr = x0 + (r / m) * half;
    return `<text x="${labelW - 6}" y="${y + 14}" text-anchor="end" font-weight="${i === top ? 700 : 400}">${c}</text>
<rect x="${g < 0 ? x0 - w : x0}" y="${y + 4}" width="${w.toFixed(1)}" height="${rowH - 8}" fill="${i === top ? '#2563eb' : '#93c5fd'}"/>
<line x1="${xr.toFixed(1)}" x2="${xr.toFixed(1)}" y1="${y + 1}" y2="${y + rowH - 1}" stroke="#111827" stroke-width="2"/>
<text x="${W - 4}" y="${y + 14}" text-anchor="end" fill="#4b5563">${g.toFixed(3)}</text>`;
  }).join('');
  const H = CLASSES.length * rowH;
  return `<svg viewBox="0 0 ${W} ${H + 4}" width="${W}" height="${H + 4}" font-size="12" font-family="system-ui, sans-serif" role="img" aria-label="class logits">
<line x1="${x0}" x2="${x0}" y1="0" y2="${H}" stroke="#9ca3af"/>${rows}</svg>`;
}

function chips(tokens: number[], promptLen: number, ref?: number[]): string {
  return tokens
    .map((t, i) => {
      const cls = i < promptLen ? 'tok prompt' : ref && ref[i] !== t ? 'tok bad' : 'tok';
      const ch = VOCAB[t] ?? '?';
      return `<span class="${cls}" title="token ${t}">${ch === ' ' ? '␣' : escapeHtml(ch)}<sub>${t}</sub></span>`;
    })
    .join('');
}

async function main(): Promise<void> {
  // ?tokens=4 and ?impl=eager preselect (the demo test uses few tokens)
  const params = new URLSearchParams(location.search);
  const names = AttentionInterface.list();
  $<HTMLSelectElement>('impl').innerHTML = names.map((n) => `<option${n === DEFAULT_ATTN_IMPLEMENTATION ? ' selected' : ''}>${escapeHtml(n)}</option>`).join('');
  if (params.get('impl') && names.includes(params.get('impl')!)) $<HTMLSelectElement>('impl').value = params.get('impl')!;
  if (params.get('tokens')) $<HTMLSelectElement>('tokens').value = params.get('tokens')!;
  $('gpt-cfg').textContent = `${GPT.n_layer} layers, ${GPT.n_head} heads, n_embd ${GPT.n_embd}, vocab ${GPT.vocab_size}`;
  $('vit-cfg').textContent = `${VIT.num_hidden_layers} layers, ${VIT.num_attention_heads} heads, hidden ${VIT.hidden_size}, ${VIT.image_size}×${VIT.image_size} px / patch ${VIT.patch_size} = ${(VIT.image_size / VIT.patch_size) ** 2 + 1} tokens, ${VIT.num_labels} classes`;
  const promptIds = ids(PROMPT);
  $('prompt').innerHTML = chips(promptIds, promptIds.length);
  const pixels = image();
  drawImage(pixels);

  $('gpt-impl').textContent = $('vit-impl').textContent = $<HTMLSelectElement>('impl').value;
  const d = await devices();
  if (!d) {
    $('table').innerHTML = '<p class="muted">Nothing to compare: the models run on WebGPU only here (the CPU float64 reference is what they are checked against).</p>';
    return;
  }
  const { gpu, cpu } = d;
  const adapter = gpu.info.adapter || '(unnamed adapter)';
  const sel = $<HTMLSelectElement>('impl');
  const tokSel = $<HTMLSelectElement>('tokens');
  const btn = $<HTMLButtonElement>('run');
  const rows = new Map<string, Row>();
  let busy = false;

  try {
    setStatus('info', `Building the models and the CPU float64 reference on <b>${escapeHtml(adapter)}</b>…`);
    // the same seeded weights on both devices; the reference is eager attention in float64 on the CPU
    const gpt = withAttnImplementation(new GPT2LMHeadModel(GPT, { seed: SEED, device: gpu }), DEFAULT_ATTN_IMPLEMENTATION).eval();
    const vit = withAttnImplementation(new ViTForImageClassification(VIT, { seed: SEED + 1, device: gpu }), DEFAULT_ATTN_IMPLEMENTATION).eval();
    const gptRef = await new GPT2LMHeadModel(GPT, { seed: SEED, device: cpu, attention: eagerAttention }).to('float64');
    const vitRef = await new ViTForImageClassification(VIT, { seed: SEED + 1, device: cpu, attention: eagerAttention }).to('float64');
    gptRef.eval();
    vitRef.eval();
    const L = promptIds.length;
    const idsOn = (dev: T.Device, t: number[]) => T.tensor(Int32Array.from(t), [1, t.length], { dtype: 'int32', device: dev });
    const [idsGpu, idsCpu] = [idsOn(gpu, promptIds), idsOn(cpu, promptIds)];
    const [pxGpu, pxCpu] = [gpu, cpu].map((dev) => T.tensor(pixels, [1, 3, VIT.image_size, VIT.image_size], { device: dev }));
    const gptLogits = (m: GPT2LMHeadModel, x: T.Tensor) => T.tidyAsync(async () => (await m.forward({ inputIds: x })).logits.toArray());
    const vitLogits = (m: ViTForImageClassification, x: T.Tensor) => T.tidyAsync(async () => (await m.forward({ pixelValues: x })).logits.toArray());
    const refGpt = await gptLogits(gptRef, idsCpu);
    const refVit = await vitLogits(vitRef, pxCpu!);
    const cpuGptMs = await timeAsyncMs(cpu, async () => void (await gptRef.forward({ inputIds: idsCpu })));
    const cpuVitMs = await timeAsyncMs(cpu, async () => void (await vitRef.forward({ pixelValues: pxCpu! })));
    // what a real bug looks like at this scale (for the tolerance note): GPT-2 without its causal mask,
    // ViT without the 1/√E score scale — both on the CPU reference
    const bug = async <M extends GPT2LMHeadModel | ViTForImageClassification>(m: M, fn: AttentionFn, run: () => Promise<ArrayLike<number>>) => {
      const keep = m.attention;
      m.setAttention(fn);
      try {
        return await run();
      } finally {
        m.setAttention(keep);
      }
    };
    const noCausal: AttentionFn = (m, q, k, v, o) => eagerAttention(m, q, k, v, { ...o, isCausal: false, attentionMask: null });
    const noScale: AttentionFn = (m, q, k, v, o) => eagerAttention(m, q, k, v, { ...o, scaling: 1 });
    const bugGpt = maxDiff(await bug(gptRef, noCausal, () => gptLogits(gptRef, idsCpu)), refGpt);
    const bugVit = maxDiff(await bug(vitRef, noScale, () => vitLogits(vitRef, pxCpu!)), refVit);

    /** The CPU's greedy continuation, and the smallest top-1 − top-2 logit gap along it. */
    const refGen = new Map<number, { tokens: number[]; gap: number[] }>();
    async function cpuGeneration(n: number) {
      let r = refGen.get(n);
      if (!r) {
        const out = await gptRef.generate(idsCpu, { maxNewTokens: n, eosTokenId: null });
        const tokens = Array.from(await out.toArray(), Number);
        const lg = await gptLogits(gptRef, idsOn(cpu, tokens.slice(0, -1)));
        const V = GPT.vocab_size;
        const gap = tokens.slice(L).map((_, s) => {
          const row = Array.from(lg.subarray((L - 1 + s) * V, (L + s) * V), Number).sort((a, b) => b - a);
          return row[0]! - row[1]!;
        });
        r = { tokens, gap };
        refGen.set(n, r);
      }
      return r;
    }

    async function runOne(name: string): Promise<Row> {
      const n = Number(tokSel.value);
      const ref = await cpuGeneration(n);
      setStatus('info', `Running <code>attn_implementation="${escapeHtml(name)}"</code> on <b>${escapeHtml(adapter)}</b>…`);
      gpt.setAttnImplementation(name);
      vit.setAttnImplementation(name);
      const got = await gptLogits(gpt, idsGpu);
      const gptMs = await timeAsyncMs(gpu, async () => void (await gpt.forward({ inputIds: idsGpu })));
      const out = await gpt.generate(idsGpu, { maxNewTokens: n, eosTokenId: null });
      const tokens = Array.from(await out.toArray(), Number);
      out.dispose();
      // timed on a second run: the first one compiled the shaders of the decode steps' new shapes
      const t0 = performance.now();
      (await gpt.generate(idsGpu, { maxNewTokens: n, eosTokenId: null })).dispose();
      const genMs = performance.now() - t0;
      // greedy tokens must equal the CPU's, unless the CPU's own choice was a near tie (gap < TOL) at the first difference
      const firstDiff = tokens.findIndex((t, i) => t !== ref.tokens[i]);
      const tokensOk = tokens.length === ref.tokens.length && (firstDiff < 0 || (firstDiff >= L && ref.gap[firstDiff - L]! < TOL));
      const vitOut = await vitLogits(vit, pxGpu!);
      const vitMs = await timeAsyncMs(gpu, async () => void (await vit.forward({ pixelValues: pxGpu! })));
      const gptDiff = maxDiff(got, refGpt);
      const vitDiff = maxDiff(vitOut, refVit);
      const top1Ok = argmax(vitOut) === argmax(refVit);
      const row: Row = { name, gptMs, genMs, gptDiff, tokens, tokensOk, vitMs, vitDiff, vitLogits: vitOut, top1Ok, ok: gptDiff <= TOL && vitDiff <= TOL && tokensOk && top1Ok };
      rows.set(name, row);
      return row;
    }

    function render(): void {
      const name = sel.value;
      const r = rows.get(name);
      const ref = refGen.get(Number(tokSel.value));
      $('gpt-impl').textContent = $('vit-impl').textContent = name;
      if (r && ref) {
        $('gen').innerHTML = chips(r.tokens, L, ref.tokens) + `<span class="muted"> “${escapeHtml(text(r.tokens.slice(L)))}”</span>`;
        $('gen-ref').innerHTML = chips(ref.tokens, L) + `<span class="muted"> “${escapeHtml(text(ref.tokens.slice(L)))}”</span>`;
        $('gpt-stats').innerHTML = `<p>max |Δ logits| over the ${L}×${GPT.vocab_size} prompt logits: <b>${fmt(r.gptDiff)}</b> ${r.gptDiff <= TOL ? '✓' : '✗'} ·
          forward ${r.gptMs.toFixed(1)} ms · generating ${r.tokens.length - L} tokens ${r.genMs.toFixed(0)} ms ·
          greedy tokens ${r.tokensOk ? 'equal the CPU’s ✓' : 'differ from the CPU’s ✗'} (smallest top-1/top-2 gap on the CPU’s path: ${Math.min(...ref.gap).toFixed(3)})</p>`;
        $('bars').innerHTML = bars(r.vitLogits, refVit);
        const top = argmax(r.vitLogits);
        $('vit-stats').innerHTML = `<p>predicted <b>${CLASSES[top]}</b> (CPU: ${CLASSES[argmax(refVit)]}) ${r.top1Ok ? '✓' : '✗'} · max |Δ logits|: <b>${fmt(r.vitDiff)}</b> ${r.vitDiff <= TOL ? '✓' : '✗'} · forward ${r.vitMs.toFixed(1)} ms</p>`;
      }
      const all = names.filter((n) => rows.has(n)).map((n) => rows.get(n)!);
      $('table').innerHTML = `<div class="scroll"><table class="impls"><tr><th><code>attn_implementation</code></th><th>GPT-2 forward ms</th><th>GPT-2 generate ms</th><th>GPT-2 max |Δ logits|</th><th>greedy tokens = CPU</th><th>ViT forward ms</th><th>ViT max |Δ logits|</th><th>top-1 = CPU</th><th></th></tr>${all
        .map(
          (x) =>
            `<tr class="${x.name === name ? 'sel' : ''}"><td><code>${escapeHtml(x.name)}</code></td><td>${x.gptMs.toFixed(1)}</td><td>${x.genMs.toFixed(0)}</td><td>${fmt(x.gptDiff)}</td><td>${x.tokensOk ? '✓' : '✗'}</td><td>${x.vitMs.toFixed(1)}</td><td>${fmt(x.vitDiff)}</td><td>${x.top1Ok ? '✓' : '✗'}</td><td>${x.ok ? '<span class="good">ok</span>' : '<span class="bad">✗</span>'}</td></tr>`,
        )
        .join('')}<tr class="ref"><td>CPU float64 reference (eager)</td><td>${cpuGptMs.toFixed(1)}</td><td></td><td>—</td><td>—</td><td>${cpuVitMs.toFixed(1)}</td><td>—</td><td>—</td><td></td></tr></table></div>`;
      $('tol').innerHTML = `Times: median of 3 forwards after a warm-up, each synced on the device (the GPT-2 forward includes reading the token ids back to validate them); generate (prefill + one-token steps with the KV cache) is timed on its second run, after the first compiled the decode steps' shaders; on a software adapter compare the implementations with each other, not with a real GPU.
        Pass: max |GPU float32 − CPU float64| ≤ ${TOL} on logits of order 1 (largest |logit|: GPT-2 ${Math.max(...Array.from(refGpt, Math.abs)).toFixed(2)}, ViT ${Math.max(...Array.from(refVit, Math.abs)).toFixed(2)}): float32 rounding through these layers is ~1e-6, while a real bug is far larger —
        GPT-2 without its causal mask moves the logits by ${bugGpt.toFixed(2)}, ViT without the 1/√E scale by ${bugVit.toFixed(2)} (measured on the CPU reference).`;
    }

    function verdict(): void {
      const all = [...rows.values()];
      const diff = Math.max(...all.map((r) => Math.max(r.gptDiff, r.vitDiff)));
      const bad = all.filter((r) => !r.ok).map((r) => r.name);
      const ok = all.length === names.length && bad.length === 0;
      setStatus(
        ok ? 'ok' : 'error',
        ok
          ? `✓ <b>${escapeHtml(adapter)}</b>: all ${all.length} implementations (${names.map(escapeHtml).join(', ')}) match the CPU float64 reference: max |Δ logits| ${fmt(diff)} ≤ ${TOL}, same greedy tokens, same class. Pick one to see its output.`
          : `✗ <b>${escapeHtml(adapter)}</b>: ${bad.map(escapeHtml).join(', ')} ${bad.length === 1 ? 'differs' : 'differ'} from the CPU reference (max |Δ logits| ${fmt(diff)}, tolerance ${TOL}).`,
      );
      finish({ status: ok ? 'ok' : 'error', adapter, maxAbsDiff: diff, ...(ok ? {} : { message: `not matching the CPU reference: ${bad.join(', ')}` }) });
    }

    async function guarded(work: () => Promise<void>): Promise<void> {
      if (busy) return;
      busy = true;
      btn.disabled = sel.disabled = tokSel.disabled = true;
      try {
        await work();
        render();
        verdict();
      } catch (e) {
        const msg = String((e as Error).message ?? e);
        setStatus('error', `✗ ${escapeHtml(msg)}`);
        finish({ status: 'error', adapter, maxAbsDiff: null, message: msg });
      } finally {
        busy = false;
        btn.disabled = sel.disabled = tokSel.disabled = false;
      }
    }
    const runAll = () =>
      guarded(async () => {
        // the selected one last, so the models are left switched to it
        for (const n of [...names.filter((x) => x !== sel.value), sel.value]) {
          await runOne(n);
          render();
        }
      });
    sel.onchange = () => void guarded(async () => void (await runOne(sel.value)));
    tokSel.onchange = () => void runAll();
    btn.onclick = () => void runAll();
    await runAll();
  } catch (e) {
    const msg = String((e as Error).message ?? e);
    setStatus('error', `✗ ${escapeHtml(msg)}`);
    finish({ status: 'error', adapter, maxAbsDiff: null, message: msg });
  }
}

void main();
