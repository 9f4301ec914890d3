import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Tensor } from '@webattn/core-tensor';
import { FLASH_MAX_HEAD_DIM, flashBackward, flashForward, scaledDotProductAttention, type FlashHooks, type FlashParams } from '@webattn/kernels-webgpu';
import { hostCu, validateCuSeqlens, type CuSeqlensLike } from './cu-seqlens.js';

/** Options of {@link flashAttnVarlen} (FlashAttention's `flash_attn_varlen_func`). */
export interface FlashAttnVarlenOptions {
  /** int32 `[B+1]` row offsets of the queries (host arrays are validated). */
  cuSeqlensQ: CuSeqlensLike;
  /** int32 `[B+1]` row offsets of the keys/values (default: `cuSeqlensQ`). */
  cuSeqlensK?: CuSeqlensLike;
  /** Longest query sequence. */
  maxSeqlenQ: number;
  /** Longest key sequence (default: `maxSeqlenQ`). */
  maxSeqlenK?: number;
  /** Causal mask aligned bottom-right in each sequence, as FlashAttention-2: query i sees keys j ≤ i + Lk − Lq. */
  causal?: boolean;
  /** Score scale (default 1/√E). */
  scale?: number;
  /** Local window `[left, right]` around the (bottom-right aligned) diagonal; −1 = unbounded. */
  windowSize?: readonly [number, number];
  /** Soft-capping `cap · tanh(score / cap)` (0 = off). */
  softcap?: number;
  /** Also return the log-sum-exp `[Hq, totalQ]`. */
  returnLse?: boolean;
}

const softcapHooks = (cap: number): FlashHooks => ({
  key: `softcap`,
  scoreMod: true,
  scoreModGrad: true,
  wgsl: `
fn score_mod(s: f32, b: u32, h: u32, q: u32, kv: u32) -> f32 { return u_softcap() * tanh_c(s / u_softcap()); }
fn score_mod_grad(s: f32, b: u32, h: u32, q: u32, kv: u32, ds: f32) -> f32 { let t = tanh_c(s / u_softcap()); return ds * (1.0 - t * t); }
fn tanh_c(x: f32) -> f32 { let c = clamp(x, -15.0, 15.0); let e = exp(2.0 * c); return (e - 1.0) / (e + 1.0); }`,
  uniforms: [['softcap', 'f32']],
  values: { softcap: cap },
});

function checkOperand(t: unknown, name: string): asserts t is Tensor {
  if (!(t instanceof T.Tensor)) throw new WebattnError('INVALID_ARGUMENT', `${name}: expected a Tensor, got ${describe(t)}`, { argument: name });
  t.assertLive(name);
  if (t.rank !== 3) throw new WebattnError('SHAPE_MISMATCH', `${name}: expected a packed tensor [total, H, E], got shape ${describe(t.shape)}`, { argument: name });
  if (!T.isFloat(t.dtype)) throw new WebattnError('DTYPE_UNSUPPORTED', `${name}: expected a floating-point tensor, got ${t.dtype}`, { argument: name });
}

/**
 * Attention over packed variable-length sequences, like `flash_attn_varlen_func`: q `[totalQ, Hq, E]`,
 * k `[totalK, Hkv, E]`, v `[totalK, Hkv, Ev]` → `[totalQ, Hq, Ev]`. No token attends across a sequence
 * boundary; empty sequences are allowed; a query with no visible key gives zeros (lse −∞).
 * Runs the shared flash generator's packed layout on WebGPU (forward + backward); on the CPU it runs
 * each sequence through the math backend (the reference).
 *
 * @example
 * const out = flashAttnVarlen(q, k, v, { cuSeqlensQ: cu, maxSeqlenQ: 512, causal: true });
 */
export function flashAttnVarlen(q: Tensor, k: Tensor, v: Tensor, options: FlashAttnVarlenOptions & { returnLse: true }): { output: Tensor; lse: Tensor };
export function flashAttnVarlen(q: Tensor, k: Tensor, v: Tensor, options: FlashAttnVarlenOptions): Tensor;
export function flashAttnVarlen(q: Tensor, k: Tensor, v: Tensor, options: FlashAttnVarlenOptions): Tensor | { output: Tensor; lse: Tensor } {
  checkOperand(q, 'q');
  checkOperand(k, 'k');
  checkOperand(v, 'v');
  const device = T.sameDevice([q, k, v], ['q', 'k', 'v']);
  const [TQ, Hq, E] = q.shape as [number, number, number];
  const [TK, Hkv, Ek] = k.shape as [number, number, number];
  const [TV, Hv, Ev] = v.shape as [number, number, number];
  const bad = (arg: string, msg: string): never => {
    throw new WebattnError('SHAPE_MISMATCH', `${arg}: ${msg}`, { argument: arg });
  };
  if (Ek !== E) bad('k', `head dim ${Ek} differs from q's ${E}`);
  if (TV !== TK) bad('v', `${TV} rows differ from k's ${TK}`);
  if (Hv !== Hkv) bad('v', `${Hv} heads differ from k's ${Hkv}`);
  if (Hkv === 0 || Hq % Hkv !== 0) bad('k', `${Hkv} heads must divide q's ${Hq} heads (GQA)`);
  if (k.dtype !== q.dtype || v.dtype !== q.dtype) throw new WebattnError('DTYPE_UNSUPPORTED', `k, v: expected dtype ${q.dtype} like q`, { argument: 'k' });
  if (!options || typeof options !== 'object') throw new WebattnError('INVALID_ARGUMENT', 'options: expected { cuSeqlensQ, maxSeqlenQ, ... }', { argument: 'options' });
  const maxQ = options.maxSeqlenQ;
  const maxK = options.maxSeqlenK ?? maxQ;
  const cuQIn = options.cuSeqlensQ;
  const cuKIn = options.cuSeqlensK ?? cuQIn;
  const cuQ = hostCu(cuQIn, 'cuSeqlensQ');
  const cuK = hostCu(cuKIn, 'cuSeqlensK');
  if (cuQ) validateCuSeqlens(cuQ, TQ, maxQ, 'cuSeqlensQ', 'maxSeqlenQ');
  if (cuK) validateCuSeqlens(cuK, TK, maxK, 'cuSeqlensK', 'maxSeqlenK');
  const nQ = cuQ ? cuQ.length : (cuQIn as Tensor).shape[0]!;
  const nK = cuK ? cuK.length : (cuKIn as Tensor).shape[0]!;
  if (nQ !== nK) throw new WebattnError('SHAPE_MISMATCH', `cuSeqlensK: ${nK} entries, but cuSeqlensQ has ${nQ}`, { argument: 'cuSeqlensK' });
  const scale = options.scale ?? 1 / Math.sqrt(E);
  const win = options.windowSize;
  if (win && (win.length !== 2 || !win.every((w) => Number.isInteger(w) && w >= -1))) {
    throw new WebattnError('INVALID_ARGUMENT', `windowSize: expected [left, right] integers ≥ −1, got ${describe(win)}`, { argument: 'windowSize' });
  }
  const softcap = options.softcap ?? 0;
  if (!(softcap >= 0)) throw new WebattnError('INVALID_ARGUMENT', `softcap: expected a number ≥ 0, got ${describe(softcap)}`, { argument: 'softcap' });

  if (device.backend !== 'webgpu' || E > FLASH_MAX_HEAD_DIM || Ev > FLASH_MAX_HEAD_DIM) {
    if (!cuQ || !cuK) throw new WebattnError('INVALID_ARGUMENT', 'cuSeqlensQ: the reference path needs host cu_seqlens', { argument: 'cuSeqlensQ' });
    return perSequence(q, k, v, cuQ, cuK, { ...options, scale });
  }
  const toDev = (c: Int32Array | null, src: CuSeqlensLike) => (c ? T.tensor(c, [c.length], { dtype: 'int32', device }) : (src as Tensor));
  const params: FlashParams = {
    q: q.detach(),
    k: k.detach(),
    v: v.detach(),
    scale,
    causal: !!options.causal,
    causalOffset: 0,
    mask: null,
    hooks: softcap > 0 ? softcapHooks(softcap) : null,
    varlen: { cuQ: toDev(cuQ, cuQIn), cuK: toDev(cuK, cuKIn), maxQ, maxK },
    window: win ? { left: win[0], right: win[1] } : null,
  };
  const { out, lse } = flashForward(params);
  const output = T.record([out], 'flashAttnVarlen', [q, k, v], (g) => {
    const delta = T.sum(T.mul(g, out), -1).transpose(0, 1).contiguous();
    const { dq, dk, dv } = flashBackward(params, { dout: g, lse, delta });
    return [dq, dk, dv];
  })[0]!;
  return options.returnLse ? { output, lse } : output;
}

/** Reference path: each sequence alone through the math backend, with the same masks. */
function perSequence(q: Tensor, k: Tensor, v: Tensor, cuQ: Int32Array, cuK: Int32Array, o: FlashAttnVarlenOptions & { scale: number }) {
  const Hq = q.shape[1]!;
  const Hkv = k.shape[1]!;
  const outs: Tensor[] = [];
  const lses: Tensor[] = [];
  for (let b = 0; b + 1 < cuQ.length; b++) {
    const lq = cuQ[b + 1]! - cuQ[b]!;
    const lk = cuK[b + 1]! - cuK[b]!;
    if (lq === 0) continue;
    const qs = q.slice(0, cuQ[b]!, cuQ[b + 1]!).transpose(0, 1).unsqueeze(0);
    if (lk === 0) {
      outs.push(T.zeros([lq, Hq, v.shape[2]!], { dtype: q.dtype, device: q.device }));
      lses.push(T.full([Hq, lq], -Infinity, { device: q.device }));
      continue;
    }
    const ks = k.slice(0, cuK[b]!, cuK[b + 1]!).transpose(0, 1).unsqueeze(0);
    const vs = v.slice(0, cuK[b]!, cuK[b + 1]!).transpose(0, 1).unsqueeze(0);
    const off = lk - lq;
    const rows = T.arange(0, lq, 1, { dtype: 'int32', device: q.device }).reshape([lq, 1]);
    const cols = T.arange(0, lk, 1, { dtype: 'int32', device: q.device }).reshape([1, lk]);
    const diff = T.sub(cols, T.add(rows, off)); // j − (i + off)
    let allow: Tensor | null = null;
    const and = (m: Tensor) => (allow = allow ? T.logicalAnd(allow, m) : m);
    if (o.causal) and(T.le(diff, 0));
    if (o.windowSize) {
      const [l, r] = o.windowSize;
      if (l >= 0) and(T.ge(diff, -l));
      if (r >= 0) and(T.le(diff, r));
    }
    let res: { output: Tensor; lse: Tensor };
    if (o.softcap && o.softcap > 0) {
      // softcap through the math formula: softmax(cap·tanh(s/cap)) V
      const G = Hq / Hkv;
      const kk = ks.reshape([1, Hkv, 1, lk, ks.shape[3]!]).expand([1, Hkv, G, lk, ks.shape[3]!]).reshape([1, Hq, lk, ks.shape[3]!]);
      const vv = vs.reshape([1, Hkv, 1, lk, vs.shape[3]!]).expand([1, Hkv, G, lk, vs.shape[3]!]).reshape([1, Hq, lk, vs.shape[3]!]);
      let s = T.mul(T.tanh(T.div(T.matmul(T.mul(qs, o.scale), kk.transpose(-1, -2)), o.softcap)), o.softcap);
      if (allow) s = T.where(allow, s, -Infinity);
      const sd = s.detach();
      const m = T.max(sd, -1, true);
      const ms = T.where(T.eq(m, -Infinity), 0, m);
      res = { output: T.matmul(T.softmax(s), vv), lse: T.add(T.log(T.sum(T.exp(T.sub(sd, ms)), -1, true)), ms).reshape([1, Hq, lq]) };
    } else {
      res = scaledDotProductAttention(qs, ks, vs, { attnMask: allow, scale: o.scale, enableGqa: Hq !== Hkv, returnLse: true });
    }
    outs.push(res.output.squeeze(0).transpose(0, 1));
    lses.push(res.lse.squeeze(0));
  }
  const output = outs.length ? T.cat(outs, 0) : T.zeros([0, Hq, v.shape[2]!], { dtype: q.dtype, device: q.device });
  if (!o.returnLse) return output;
  const lse = lses.length ? T.cat(lses, 1) : T.zeros([Hq, 0], { device: q.device });
  return { output, lse };
}
