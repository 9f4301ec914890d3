import * as T from '@webattn/core-tensor';
import { createBlockMask, flexAttention, maskMod, scoreMod, type MaskModFn, type ScoreModFn } from '@webattn/flex';
import { $, devices, escapeHtml, finish, maxAbsDiff, setStatus, shaderLog, timeMs } from './common.js';

const H = 2;
const E = 32;

/** The text of a TS arrow function → a JS function (parameter type annotations removed). */
function parse<F>(src: string, what: string): F | null {
  const s = src.trim();
  if (!s) return null;
  const js = s.replace(/:\s*(number|boolean)\b/g, '');
  let f: unknown;
  try {
    f = new Function(`"use strict"; return (${js});`)();
  } catch (e) {
    throw new Error(`${what}: not a function expression (${(e as Error).message})`);
  }
  if (typeof f !== 'function') throw new Error(`${what}: expected a function, got ${typeof f}`);
  return f as F;
}

/** `fn <name>(…) { … }` out of a WGSL module. */
function wgslFn(code: string, name: string): string | null {
  const i = code.search(new RegExp(`fn ${name}\\s*\\(`));
  if (i < 0) return null;
  let depth = 0;
  for (let j = code.indexOf('{', i); j < code.length; j++) {
    if (code[j] === '{') depth++;
    else if (code[j] === '}' && --depth === 0) return code.slice(i, j + 1);
  }
  return null;
}

function draw(fn: MaskModFn, classes: Uint8Array, L: number, bs: number): void {
  const c = $<HTMLCanvasElement>('pic');
  const ctx = c.getContext('2d')!;
  const N = c.width;
  const n = Math.ceil(L / bs);
  const cell = N / n;
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, N, N);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      const k = classes[i * n + j];
      if (k === 0) continue;
      ctx.fillStyle = k === 2 ? '#bbf7d0' : '#fde68a';
      ctx.fillRect(j * cell, i * cell, cell, cell);
    }
  // the element mask, sampled one query/key per pixel
  const img = ctx.getImageData(0, 0, N, N);
  for (let y = 0; y < N; y++)
    for (let x = 0; x < N; x++) {
      const q = Math.floor(((y + 0.5) * L) / N);
      const kv = Math.floor(((x + 0.5) * L) / N);
      if (fn(0, 0, q, kv, {})) {
        const full = classes[Math.floor(q / bs) * n + Math.floor(kv / bs)] === 2;
        img.data.set(full ? [21, 128, 61, 255] : [30, 58, 138, 255], (y * N + x) * 4);
      }
    }
  ctx.putImageData(img, 0, 0);
  ctx.strokeStyle = 'rgba(100,116,139,.45)';
  for (let i = 1; i < n; i++) {
    ctx.beginPath();
    ctx.moveTo(i * cell, 0);
    ctx.lineTo(i * cell, N);
    ctx.moveTo(0, i * cell);
    ctx.lineTo(N, i * cell);
    ctx.stroke();
  }
}

async function main(): Promise<void> {
  // ?L=256&block=64 preselect the shape (the demo test uses a small one)
  const params = new URLSearchParams(location.search);
  for (const [key, id] of [['L', 'L'], ['block', 'bs']] as const) if (params.get(key)) $<HTMLSelectElement>(id).value = params.get(key)!;
  const d = await devices();
  if (!d) return;
  const { gpu, cpu } = d;
  const adapter = gpu.info.adapter || '(unnamed adapter)';
  const btn = $<HTMLButtonElement>('run');

  async function run(): Promise<void> {
    btn.disabled = true;
    const L = Number($<HTMLSelectElement>('L').value);
    const bs = Number($<HTMLSelectElement>('bs').value);
    setStatus('info', `Running on <b>${escapeHtml(adapter)}</b> at L=${L}…`);
    try {
      const mfn = parse<MaskModFn>($<HTMLTextAreaElement>('mask').value, 'maskMod');
      const sfn = parse<ScoreModFn>($<HTMLTextAreaElement>('score').value, 'scoreMod');
      const mm = mfn ? maskMod(mfn) : null;
      const sm = sfn ? scoreMod(sfn) : null;
      const t0 = performance.now();
      const bm = mm ? await createBlockMask(mm, null, null, L, L, { device: gpu, blockSize: bs }) : undefined;
      const buildMs = performance.now() - t0;
      const mk = (dev: T.Device, seed: number) => T.randn([1, H, L, E], { seed, device: dev });
      const [q, k, v] = [mk(gpu, 1), mk(gpu, 2), mk(gpu, 3)];
      const opts = { ...(bm ? { blockMask: bm } : {}), ...(sm ? { scoreMod: sm } : {}) };
      const seen = shaderLog.length;
      const out = T.noGrad(() => flexAttention(q, k, v, opts));
      await gpu.sync();
      const ms = await timeMs(gpu, () => T.noGrad(() => flexAttention(q, k, v, opts).dispose()));
      // the CPU path: the very same functions, float64
      const bmCpu = mm ? await createBlockMask(mm, null, null, L, L, { device: cpu, blockSize: bs }) : undefined;
      const ref = flexAttention(mk(cpu, 1), mk(cpu, 2), mk(cpu, 3), { ...(bmCpu ? { blockMask: bmCpu } : {}), ...(sm ? { scoreMod: sm } : {}) });
      const diff = await maxAbsDiff(out, ref);
      const ok = diff < 1e-3;
      // WGSL: the newest kernel with the mods in it
      const kernels = shaderLog.slice(seen).concat(shaderLog).filter((c) => /fn (mask_mod|score_mod)\s*\(/.test(c));
      const kernel = kernels[0] ?? shaderLog.filter((c) => /fn (mask_mod|score_mod)\s*\(/.test(c)).pop() ?? '';
      const fns = ['score_mod', 'mask_mod'].map((n) => wgslFn(kernel, n)).filter((x): x is string => !!x);
      $('wgsl').textContent = fns.length ? fns.join('\n\n') : kernel ? '(this kernel has no mask/score function: dense attention)' : '(the kernel was compiled earlier; change the function to see it again)';
      $('kernel').textContent = kernel;
      $('bmtext').textContent = bm ? bm.toString() : '(no maskMod: every block is full)';
      const n = Math.ceil(L / bs);
      draw(mfn ?? (() => true), bm ? bm.classes : new Uint8Array(n * n).fill(2), L, bs);
      const dens = bm ? bm.density() : 1;
      $('stats').innerHTML = `<table><tr><th>adapter</th><td>${escapeHtml(adapter)}</td></tr>
        <tr><th>shape</th><td>B=1 H=${H} L=${L} E=${E}, block ${bs}</td></tr>
        <tr><th>block density / sparsity</th><td>${dens.toFixed(3)} / ${(1 - dens).toFixed(3)}</td></tr>
        <tr><th>forward time (median of 3)</th><td>${ms.toFixed(2)} ms</td></tr>
        <tr><th>createBlockMask</th><td>${buildMs.toFixed(1)} ms</td></tr>
        <tr><th>max |GPU − CPU float64|</th><td>${diff.toExponential(2)} ${ok ? '✓' : '✗ (tolerance 1e-3)'}</td></tr></table>`;
      setStatus(ok ? 'ok' : 'error', `${ok ? '✓' : '✗'} Ran on <b>${escapeHtml(adapter)}</b>: output matches the CPU reference to ${diff.toExponential(2)}. Edit a function and press Run.`);
      for (const t of [q, k, v, out, ref]) t.dispose();
      finish({ status: ok ? 'ok' : 'error', adapter, maxAbsDiff: diff });
    } catch (e) {
      const msg = String((e as Error).message ?? e);
      setStatus('error', `✗ ${escapeHtml(msg)}`);
      finish({ status: 'error', adapter, maxAbsDiff: null, message: msg });
    } finally {
      btn.disabled = false;
    }
  }
  btn.onclick = () => void run();
  await run();
}

void main();
