/** `flexAttention`: FlexAttention for TypeScript, a front door to the shared attention generator. */
import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Tensor } from '@webattn/core-tensor';
import { FLASH_MAX_HEAD_DIM, flashBackward, flashForward, type FlashParams } from '@webattn/kernels-webgpu';
import { collectLoads, derivative, evaluate, type EvalEnv } from './codegen.js';
import type { IR } from './ir.js';
import type { BlockMask } from './block-mask.js';
import { asScore, compileMod, hostMask, hostScore, type Captures, type CompiledMod, type ScoreMod, type ScoreModFn } from './mods.js';
import { modResources } from './wgsl-mods.js';

/** Options of {@link flexAttention}. */
export interface FlexAttentionOptions {
  /** `(score, b, h, qIdx, kvIdx) => number`, or a {@link ScoreMod} from the catalogue. */
  scoreMod?: ScoreMod | ScoreModFn | null;
  /** Block-sparse mask from `createBlockMask` (its mask function runs inside partial blocks only). */
  blockMask?: BlockMask | null;
  /** Score scale (default 1/√E). */
  scale?: number;
  /** Grouped-query attention: query head h reads key/value head ⌊h / (Hq/Hkv)⌋. */
  enableGqa?: boolean;
  /** Captures of a bare `scoreMod` function: numbers and 1-D/2-D tensors (gradients flow to float tensors that require grad). */
  captures?: Captures;
}

/**
 * FlexAttention: attention whose scores are modified by a plain TS function and masked block-sparsely.
 * query `[B, Hq, L, E]`, key `[B, Hkv, S, E]`, value `[B, Hkv, S, Ev]` → `[B, Hq, L, Ev]` (and lse `[B, Hq, L]`).
 * On WebGPU the functions are compiled to WGSL inside the shared flash generator (forward and backward,
 * gradients into captured tensors); on the CPU the same JS functions run on materialised scores.
 *
 * @example
 * const out = flexAttention(q, k, v, { scoreMod: (s, b, h, q, kv) => 30 * Math.tanh(s / 30), blockMask });
 */
export function flexAttention(query: Tensor, key: Tensor, value: Tensor, options?: FlexAttentionOptions & { returnLse?: false }): Tensor;
export function flexAttention(query: Tensor, key: Tensor, value: Tensor, options: FlexAttentionOptions & { returnLse: true }): { output: Tensor; lse: Tensor };
export function flexAttention(query: Tensor, key: Tensor, value: Tensor, options: FlexAttentionOptions & { returnLse?: boolean } = {}): Tensor | { output: Tensor; lse: Tensor } {
  const names = ['query', 'key', 'value'] as const;
  [query, key, value].forEach((t, i) => {
    if (!(t instanceof T.Tensor)) throw new WebattnError('INVALID_ARGUMENT', `${names[i]}: expected a Tensor, got ${describe(t)}`, { argument: names[i] });
    if (t.rank !== 4) throw new WebattnError('SHAPE_MISMATCH', `${names[i]}: expected [B, H, L, E], got ${describe(t.shape)}`, { argument: names[i] });
    if (!T.isFloat(t.dtype)) throw new WebattnError('DTYPE_UNSUPPORTED', `${names[i]}: expected a floating-point tensor, got ${t.dtype}`, { argument: names[i] });
  });
  const device = T.sameDevice([query, key, value], names);
  const [B, Hq, L, E] = query.shape as [number, number, number, number];
  const [Bk, Hkv, S, Ek] = key.shape as [number, number, number, number];
  const bad = (arg: string, msg: string): never => {
    throw new WebattnError('SHAPE_MISMATCH', `${arg}: ${msg}`, { argument: arg });
  };
  if (Bk !== B || value.shape[0] !== B) bad('key', `batch ${Bk} differs from the query's ${B}`);
  if (Ek !== E) bad('key', `head dim ${Ek} differs from the query's ${E}`);
  if (value.shape[2] !== S || value.shape[1] !== Hkv) bad('value', `shape ${describe(value.shape)} does not match key ${describe(key.shape)}`);
  if (Hkv !== Hq && (!options.enableGqa || Hq % Hkv !== 0)) bad('key', `${Hkv} heads vs the query's ${Hq}: pass enableGqa with Hq % Hkv == 0`);
  const bm = options.blockMask ?? null;
  if (bm) {
    if (bm.qLen !== L || bm.kvLen !== S) bad('options.blockMask', `built for qLen=${bm.qLen}, kvLen=${bm.kvLen}, but the inputs have L=${L}, S=${S}`);
    if (bm.B !== 1 && bm.B !== B) bad('options.blockMask', `batch ${bm.B} neither 1 nor the query's ${B}`);
    if (bm.H !== 1 && bm.H !== Hq) bad('options.blockMask', `heads ${bm.H} neither 1 nor the query's ${Hq}`);
  }
  const scale = options.scale ?? 1 / Math.sqrt(E);
  const score = options.scoreMod ? asScore(options.scoreMod, options.captures ?? {}) : null;
  const sc = score ? compileMod(score, 's', 'scoreMod') : null;
  const mc = bm ? compileMod(bm.maskMod, 'm', 'blockMask.maskMod') : null;
  const useGpu = device.backend === 'webgpu' && E <= FLASH_MAX_HEAD_DIM && value.shape[3]! <= FLASH_MAX_HEAD_DIM;
  const r = useGpu ? gpuFlex(query, key, value, scale, sc, mc, bm) : cpuFlex(query, key, value, scale, score, sc, bm, !!options.enableGqa);
  return options.returnLse ? r : r.output;
}

function gpuFlex(q: Tensor, k: Tensor, v: Tensor, scale: number, sc: CompiledMod | null, mc: CompiledMod | null, bm: BlockMask | null) {
  const device = q.device;
  const res = modResources(device, sc, mc, true);
  const params: FlashParams = {
    q: q.detach(),
    k: k.detach(),
    v: v.detach(),
    scale,
    causal: false,
    causalOffset: 0,
    mask: null,
    hooks: {
      key: res.key,
      wgsl: res.wgsl,
      scoreMod: !!sc,
      maskMod: !!mc,
      bindings: res.bindings,
      tensors: res.tensors,
      uniforms: res.uniforms,
      values: res.values,
      gradBindings: res.gradBindings,
      gradTensors: res.grads.map((g) => g.buffer),
      captureGrads: res.grads.length > 0,
      gradWgsl: res.gradWgsl,
    },
    blocks: bm ? bm.tables(device) : null,
  };
  const { out, lse } = flashForward(params);
  const capInputs = res.grads.map((g) => g.source);
  const output = T.record([out], 'flexAttention', [q, k, v, ...capInputs], (g) => {
    const delta = T.sum(T.mul(g, out), -1).contiguous();
    for (const gb of res.grads) T.copyInto(gb.buffer, T.zeros([gb.buffer.size], { device }));
    const { dq, dk, dv } = flashBackward(params, { dout: g, lse, delta });
    return [dq, dk, dv, ...res.grads.map((gb) => gb.buffer.reshape(gb.source.shape).cast(gb.source.dtype))];
  })[0]!;
  return { output, lse };
}

/** CPU path: materialised scores; the same JS functions modify and mask them. */
function cpuFlex(q: Tensor, k: Tensor, v: Tensor, scale: number, score: ScoreMod | null, sc: CompiledMod | null, bm: BlockMask | null, gqa: boolean) {
  const [B, Hq, L] = q.shape as [number, number, number, number];
  const Hkv = k.shape[1]!;
  const S = k.shape[2]!;
  const G = Hq / Hkv;
  let kk = k;
  let vv = v;
  if (G > 1 && gqa) {
    kk = k.reshape([B, Hkv, 1, S, k.shape[3]!]).expand([B, Hkv, G, S, k.shape[3]!]).reshape([B, Hq, S, k.shape[3]!]);
    vv = v.reshape([B, Hkv, 1, S, v.shape[3]!]).expand([B, Hkv, G, S, v.shape[3]!]).reshape([B, Hq, S, v.shape[3]!]);
  }
  let s = T.matmul(T.mul(q, scale), kk.transpose(-1, -2));
  if (score && sc) s = applyScoreMod(s, score, sc);
  if (bm) {
    const f = hostMask(bm.maskMod);
    const allow = new Uint8Array(B * Hq * L * S);
    let n = 0;
    for (let b = 0; b < B; b++) for (let h = 0; h < Hq; h++) for (let i = 0; i < L; i++) for (let j = 0; j < S; j++) allow[n++] = f(b, h, i, j) ? 1 : 0;
    s = T.where(T.tensor(allow, [B, Hq, L, S], { dtype: 'bool', device: q.device }), s, -Infinity);
  }
  const sd = s.detach();
  const m = T.max(sd, -1, true);
  const ms = T.where(T.eq(m, -Infinity), 0, m);
  const lse = T.add(T.log(T.sum(T.exp(T.sub(sd, ms)), -1, true)), ms).reshape([B, Hq, L]);
  return { output: T.matmul(T.softmax(s, -1), vv), lse: lse.dtype === 'float32' ? lse : lse.cast('float32').detach() };
}

/** Applies a score function elementwise on the CPU with its gradient (IR derivatives) into scores and captures. */
function applyScoreMod(s: Tensor, score: ScoreMod, sc: CompiledMod): Tensor {
  if (s.device.backend !== 'cpu') throw new WebattnError('DEVICE_MISMATCH', 'scoreMod: the reference path runs on the CPU device', { argument: 'scoreMod' });
  const [B, H, L, S] = s.shape as [number, number, number, number];
  const f = hostScore(score);
  const vals = T.readValues(s);
  const out = new Float64Array(vals.length);
  let n = 0;
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < L; i++) for (let j = 0; j < S; j++, n++) out[n] = f(vals[n]!, b, h, i, j);
  const res = T.tensor(out, s.shape, { dtype: s.dtype, device: s.device });
  const capNames = [...sc.captures.keys()];
  const capTensors = capNames.map((c) => sc.captures.get(c)).filter((c): c is Tensor => c instanceof T.Tensor && c.requiresGrad && T.isFloat(c.dtype));
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
            if (gp === 0) continue;
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
