/** `flexAttention`: FlexAttention for TypeScript, a front door to the shared attention generator. */
import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Tensor } from '@webattn/core-tensor';
import { FLASH_MAX_HEAD_DIM, checkOptions, checkQkv, outputOrBoth, recordFlash, referenceAttention, resolveScale, type FlashHooks, type OptionSpec } from '@webattn/kernels-webgpu/internal';
import { collectLoads, derivative, evaluate, type EvalEnv } from './codegen.js';
import type { IR } from './ir.js';
import { BlockMask } from './block-mask.js';
import { asScore, checkModLengths, compileMod, hostMask, hostScore, type Captures, type CompiledMod, type ScoreMod, type ScoreModFn } from './mods.js';
import { modResources, probeCompile } from './wgsl-mods.js';
import { backendFlex, backendRunsFlex } from './tile-mods.js';

/** Options of {@link flexAttention}. */
export interface FlexAttentionOptions {
  /** `(score, b, h, qIdx, kvIdx, captures) => number`, or a {@link ScoreMod} from the catalogue. */
  scoreMod?: ScoreMod | ScoreModFn | null;
  /** Block-sparse mask from `createBlockMask` (its mask function runs inside partial blocks only). */
  blockMask?: BlockMask | null;
  /** Score scale (default 1/√E); a finite number. */
  scale?: number | null;
  /** Grouped-query attention: query head h reads key/value head ⌊h / (Hq/Hkv)⌋. */
  enableGqa?: boolean;
  /**
   * Captures of a bare `scoreMod` function: numbers and 1-D/2-D tensors (gradients flow to float
   * tensors that require grad). The function reads them through its last parameter.
   */
  captures?: Captures;
  /** Also return the log-sum-exp `[B, Hq, L]`. */
  returnLse?: boolean;
}

const FLEX_OPTIONS: Record<string, OptionSpec> = {
  scoreMod: { type: 'any' },
  blockMask: { type: 'any' },
  scale: { type: 'number' },
  enableGqa: { type: 'boolean' },
  captures: { type: 'any' },
  returnLse: { type: 'boolean' },
};

/**
 * FlexAttention: attention whose scores are modified by a plain TS function and masked block-sparsely.
 * query `[B, Hq, L, E]`, key `[B, Hkv, S, E]`, value `[B, Hkv, S, Ev]` → `[B, Hq, L, Ev]` (and lse `[B, Hq, L]`).
 * On WebGPU the functions are compiled to WGSL inside the shared flash generator (forward and backward,
 * gradients into captured tensors); on a backend that registers `flex_attention` (wasm) they are compiled from
 * the same IR to JS tile functions inside its flash kernel, with block-sparse skipping; on the CPU reference the
 * same JS functions run on materialised scores.
 * Functions are compiled at the call (`FLEX_COMPILE` naming the argument, line:column and a hint) and
 * cached per function object. Options are type-checked (`INVALID_ARGUMENT`); a captured tensor read
 * outside its shape raises `INVALID_ARGUMENT` (CPU: at the call; GPU: at the next read-back).
 *
 * @example
 * const out = flexAttention(q, k, v, { scoreMod: (s, b, h, q, kv, c) => c.cap * Math.tanh(s / c.cap), captures: { cap: 30 } });
 */
export function flexAttention(query: Tensor, key: Tensor, value: Tensor, options?: FlexAttentionOptions & { returnLse?: false }): Tensor;
export function flexAttention(query: Tensor, key: Tensor, value: Tensor, options: FlexAttentionOptions & { returnLse: true }): { output: Tensor; lse: Tensor };
export function flexAttention(query: Tensor, key: Tensor, value: Tensor, options: FlexAttentionOptions = {}): Tensor | { output: Tensor; lse: Tensor } {
  checkOptions(options, FLEX_OPTIONS);
  const { B, Hq, Lq: L, Lkv: S, E, Ev, device } = checkQkv(query, key, value, 'dense', !!options.enableGqa);
  const bad = (arg: string, msg: string): never => {
    throw new WebattnError('SHAPE_MISMATCH', `${arg}: ${msg}`, { argument: arg });
  };
  const bm = options.blockMask ?? null;
  if (bm !== null) {
    if (!(bm instanceof BlockMask)) throw new WebattnError('INVALID_ARGUMENT', `options.blockMask: expected a BlockMask from createBlockMask, got ${describe(bm)}`, { argument: 'options.blockMask' });
    if (bm.qLen !== L || bm.kvLen !== S) bad('options.blockMask', `built for qLen=${bm.qLen}, kvLen=${bm.kvLen}, but the inputs have L=${L}, S=${S}`);
    if (bm.B !== 1 && bm.B !== B) bad('options.blockMask', `batch ${bm.B} neither 1 nor the query's ${B}`);
    if (bm.H !== 1 && bm.H !== Hq) bad('options.blockMask', `heads ${bm.H} neither 1 nor the query's ${Hq}`);
  }
  const scale = resolveScale(options.scale, E);
  const sm = options.scoreMod ?? null;
  if (options.captures !== undefined && typeof sm !== 'function') {
    throw new WebattnError('INVALID_ARGUMENT', `options.captures: only a bare scoreMod function takes captures here (a ScoreMod carries its own), got scoreMod ${describe(sm)}`, { argument: 'options.captures' });
  }
  const score = sm !== null ? asScore(sm, options.captures ?? {}, 'options.scoreMod') : null;
  if (score) checkModLengths(score, L, S, 'options.scoreMod');
  const sc = score ? compileMod(score, 's', 'options.scoreMod') : null;
  const mc = bm ? compileMod(bm.maskMod, 'm', 'options.blockMask.maskMod') : null;
  const useGpu = device.backend === 'webgpu' && E <= FLASH_MAX_HEAD_DIM && Ev <= FLASH_MAX_HEAD_DIM;
  const argument = sc && mc ? 'options.scoreMod / options.blockMask.maskMod' : sc ? 'options.scoreMod' : 'options.blockMask.maskMod';
  const r = useGpu
    ? gpuFlex(query, key, value, scale, sc, mc, bm)
    : query.dtype === 'float32' && backendRunsFlex(device)
      ? backendFlex(query, key, value, scale, sc, mc, bm, argument)
      : cpuFlex(query, key, value, scale, score, sc, bm);
  return outputOrBoth(r, options.returnLse);
}

function gpuFlex(q: Tensor, k: Tensor, v: Tensor, scale: number, sc: CompiledMod | null, mc: CompiledMod | null, bm: BlockMask | null) {
  const device = q.device;
  const [B, Hq, L] = q.shape as [number, number, number, number];
  const res = modResources(device, sc, mc, true, B * Hq * L);
  // deterministic capture gradients: the dQ kernel's rows (b, h, q) index the per-row partial buffers
  const values = res.deterministic ? { ...res.values, flex_hq: Hq, flex_lq: L } : res.values;
  const hooks: FlashHooks = { ...res.hooks, captures: { ...res.hooks.captures!, values } };
  const backwardHooks: FlashHooks = { ...res.backwardHooks, captures: { ...res.backwardHooks.captures!, values } };
  const r = recordFlash(
    'flexAttention',
    q,
    k,
    v,
    { scale, causal: false, causalOffset: 0, mask: null, hooks, blocks: bm ? bm.tables(device) : null },
    {
      backwardHooks,
      extra: res.grads.length
        ? {
            inputs: res.grads.map((g) => g.source),
            before: () => {
              for (const gb of res.grads) T.copyInto(gb.buffer, T.zeros([gb.buffer.size], { device }));
            },
            after: () =>
              res.grads.map((gb) => {
                const g = res.deterministic ? T.sum(gb.buffer.reshape([B * Hq * L, gb.source.size]), 0) : gb.buffer;
                return g.reshape(gb.source.shape).cast(gb.source.dtype);
              }),
          }
        : null,
    },
  );
  const argument = sc && mc ? 'options.scoreMod / options.blockMask.maskMod' : sc ? 'options.scoreMod' : 'options.blockMask.maskMod';
  probeCompile(device, res, argument, [r.output, r.lse]);
  res.checkBounds(argument, [r.output, r.lse]);
  return r;
}

/** CPU path: the shared reference attention; the same JS functions modify and mask the scores. */
function cpuFlex(q: Tensor, k: Tensor, v: Tensor, scale: number, score: ScoreMod | null, sc: CompiledMod | null, bm: BlockMask | null) {
  const [B, Hq, L] = q.shape as [number, number, number, number];
  const S = k.shape[2]!;
  let allow: Tensor | null = null;
  let keep: Uint8Array | null = null;
  if (bm) {
    const f = hostMask(bm.maskMod, 'options.blockMask.maskMod');
    keep = new Uint8Array(B * Hq * L * S);
    let n = 0;
    for (let b = 0; b < B; b++) for (let h = 0; h < Hq; h++) for (let i = 0; i < L; i++) for (let j = 0; j < S; j++) keep[n++] = f(b, h, i, j) ? 1 : 0;
    allow = T.tensor(keep, [B, Hq, L, S], { dtype: 'bool', device: q.device });
  }
  return referenceAttention(q, k, v, { scale, allow, scoreMod: score && sc ? (s) => applyScoreMod(s, score, sc, keep) : null });
}

/**
 * Applies a score function elementwise on the CPU (where the mask keeps the score, as the GPU does),
 * with its gradient (IR derivatives) into scores and captures.
 */
function applyScoreMod(s: Tensor, score: ScoreMod, sc: CompiledMod, keep: Uint8Array | null): Tensor {
  if (!s.storage.cpu) throw new WebattnError('DEVICE_MISMATCH', `options.scoreMod: the reference path runs on a host-memory device (cpu, wasm), got '${s.device.backend}'`, { argument: 'options.scoreMod' });
  const [B, H, L, S] = s.shape as [number, number, number, number];
  const f = hostScore(score, 'options.scoreMod');
  const vals = T.readValues(s);
  const out = new Float64Array(vals.length);
  let n = 0;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < L; i++)
        for (let j = 0; j < S; j++, n++) out[n] = keep && !keep[n] ? -Infinity : f(vals[n]!, b, h, i, j);
  const res = T.tensor(out, s.shape, { dtype: s.dtype, device: s.device });
  const capTensors = [...sc.captures.values()].filter((c): c is Tensor => c instanceof T.Tensor && c.requiresGrad && T.isFloat(c.dtype));
  const env = (): EvalEnv => {
    const numbers: Record<string, number> = {};
    const tensors: EvalEnv['tensors'] = {};
    for (const [name, val] of sc.captures) {
      if (typeof val === 'number') numbers[name] = val;
      else tensors[name] = { data: T.readValues(val), shape: val.shape };
    }
    return { score: 0, b: 0, h: 0, q: 0, kv: 0, numbers, tensors };
  };
  return T.record([res], 'scoreMod', [s, ...capTensors], (g) => {
    const e = env();
    const gv = T.readValues(g);
    const dScore = derivative(sc.ir, (x) => x.k === 'param' && x.slot === 'score');
    const loads = collectLoads(sc.ir).filter((l) => capTensors.includes(sc.captures.get(l.name) as Tensor));
    const dLoads = loads.map((l) => derivative(sc.ir, (x) => x === l));
    const ds = new Float64Array(vals.length);
    const capGrads = capTensors.map((t) => new Float64Array(t.size));
    let p = 0;
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < L; i++)
          for (let j = 0; j < S; j++, p++) {
            Object.assign(e, { score: vals[p]!, b, h, q: i, kv: j });
            const gp = gv[p]!;
            if (gp === 0 || (keep && !keep[p])) continue;
            ds[p] = gp * (evaluate(dScore, e) as number);
            loads.forEach((l, li) => {
              const t = sc.captures.get(l.name) as Tensor;
              const memo = new Map<IR, number | boolean>();
              const dims = t.shape;
              let flat = 0;
              l.idx.forEach((ix, d) => {
                const raw = evaluate(ix, e, memo) as number;
                flat = flat * dims[d]! + Math.min(Math.max(Math.trunc(raw), 0), dims[d]! - 1);
              });
              const cg = capGrads[capTensors.indexOf(t)]!;
              cg[flat] = cg[flat]! + gp * (evaluate(dLoads[li]!, e, memo) as number);
            });
          }
    return [T.tensor(ds, s.shape, { dtype: s.dtype, device: s.device }), ...capTensors.map((t, ti) => T.tensor(capGrads[ti]!, t.shape, { dtype: t.dtype, device: t.device }))];
  })[0]!;
}
