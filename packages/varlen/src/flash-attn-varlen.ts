import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Tensor } from '@webattn/core-tensor';
import { FLASH_MAX_HEAD_DIM, checkOptions, checkQkv, flashRefusal, outputOrBoth, recordFlash, referenceAttention, resolveScale, type FlashHooks, type OptionSpec } from '@webattn/kernels-webgpu/internal';
import { checkCuSeqlensOnDevice, hostCu, validateCuSeqlens, type CuSeqlensLike } from './cu-seqlens.js';

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
  /**
   * Check GPU-held cu_seqlens with a small kernel (default true): a malformed one raises
   * `INVALID_ARGUMENT` at the next read-back or sync of the device. Host arrays are always checked.
   */
  validate?: boolean;
}

const softcapHooks = (cap: number): FlashHooks => ({
  key: `softcap`,
  scoreMod: 'return u_softcap() * tanh_c(s / u_softcap());',
  scoreModGrad: 'let t = tanh_c(s / u_softcap());\nreturn g * (1.0 - t * t);',
  helpers: `fn tanh_c(x: f32) -> f32 { let c = clamp(x, -15.0, 15.0); let e = exp(2.0 * c); let u = bitcast<u32>(x); return select((e - 1.0) / (e + 1.0), x, (u & 0x7fffffffu) > 0x7f800000u); }`,
  captures: { bindings: [], tensors: [], uniforms: [['softcap', 'f32']], values: { softcap: cap } },
});

const VARLEN_OPTIONS: Record<string, OptionSpec> = {
  cuSeqlensQ: { type: 'any' },
  cuSeqlensK: { type: 'any' },
  maxSeqlenQ: { type: 'number', integer: true, min: 0 },
  maxSeqlenK: { type: 'number', integer: true, min: 0 },
  causal: { type: 'boolean' },
  scale: { type: 'number' },
  windowSize: { type: 'any' },
  softcap: { type: 'number', min: 0 },
  returnLse: { type: 'boolean' },
  validate: { type: 'boolean' },
};

/**
 * Attention over packed variable-length sequences, like `flash_attn_varlen_func`: q `[totalQ, Hq, E]`,
 * k `[totalK, Hkv, E]`, v `[totalK, Hkv, Ev]` → `[totalQ, Hq, Ev]`. No token attends across a sequence
 * boundary; empty sequences are allowed; a query with no visible key gives zeros (lse −∞).
 * Runs the shared flash generator's packed layout on WebGPU (forward + backward) over a dense tile map:
 * one workgroup per (row tile of a sequence, head), so the work follows Σ L_b², not B · maxSeqlen²
 * (`maxSeqlenQ`/`maxSeqlenK` only bound the grid when cu_seqlens are GPU-held); on the CPU it runs each
 * sequence through the reference attention. Host cu_seqlens are validated at the call; GPU-held
 * ones by a small kernel whose verdict is raised at the next read-back (`validate: false` skips it).
 * Throws `SHAPE_MISMATCH` / `DTYPE_UNSUPPORTED` / `INVALID_ARGUMENT` naming the argument.
 *
 * @example
 * const out = flashAttnVarlen(q, k, v, { cuSeqlensQ: cu, maxSeqlenQ: 512, causal: true });
 */
export function flashAttnVarlen(q: Tensor, k: Tensor, v: Tensor, options: FlashAttnVarlenOptions & { returnLse: true }): { output: Tensor; lse: Tensor };
export function flashAttnVarlen(q: Tensor, k: Tensor, v: Tensor, options: FlashAttnVarlenOptions): Tensor;
export function flashAttnVarlen(q: Tensor, k: Tensor, v: Tensor, options: FlashAttnVarlenOptions): Tensor | { output: Tensor; lse: Tensor } {
  const { Lq: TQ, Lkv: TK, E, Ev, device } = checkQkv(q, k, v, 'packed', 'always', ['q', 'k', 'v']);
  if (options === undefined || options === null) throw new WebattnError('INVALID_ARGUMENT', `options: expected { cuSeqlensQ, maxSeqlenQ, ... }, got ${describe(options)}`, { argument: 'options' });
  checkOptions(options, VARLEN_OPTIONS);
  if (options.maxSeqlenQ === undefined) throw new WebattnError('INVALID_ARGUMENT', 'options.maxSeqlenQ: required (the longest query sequence)', { argument: 'options.maxSeqlenQ' });
  const maxQ = options.maxSeqlenQ;
  const maxK = options.maxSeqlenK ?? maxQ;
  const cuQIn = options.cuSeqlensQ;
  const cuKIn = options.cuSeqlensK ?? cuQIn;
  const kName = options.cuSeqlensK === undefined ? 'options.cuSeqlensQ' : 'options.cuSeqlensK';
  const cuQ = hostCu(cuQIn, 'options.cuSeqlensQ');
  const cuK = hostCu(cuKIn, kName);
  const maxKName = options.maxSeqlenK === undefined ? 'options.maxSeqlenQ' : 'options.maxSeqlenK';
  if (cuQ) validateCuSeqlens(cuQ, TQ, maxQ, 'options.cuSeqlensQ', 'options.maxSeqlenQ');
  if (cuK) validateCuSeqlens(cuK, TK, maxK, kName, maxKName);
  if (!cuQ) T.sameDevice([q, cuQIn as Tensor], ['q', 'options.cuSeqlensQ']);
  if (!cuK) T.sameDevice([q, cuKIn as Tensor], ['q', kName]);
  const nQ = cuQ ? cuQ.length : (cuQIn as Tensor).shape[0]!;
  const nK = cuK ? cuK.length : (cuKIn as Tensor).shape[0]!;
  if (nQ !== nK) throw new WebattnError('SHAPE_MISMATCH', `${kName}: ${nK} entries, but options.cuSeqlensQ has ${nQ}`, { argument: kName });
  const scale = resolveScale(options.scale, E);
  const win = options.windowSize;
  if (win !== undefined && win !== null && (!Array.isArray(win) || win.length !== 2 || !win.every((w) => Number.isInteger(w) && w >= -1))) {
    throw new WebattnError('INVALID_ARGUMENT', `options.windowSize: expected [left, right] integers ≥ −1, got ${describe(win)}`, { argument: 'options.windowSize' });
  }
  const softcap = options.softcap ?? 0;

  const hooks = softcap > 0 ? softcapHooks(softcap) : null;
  const window = win ? { left: win[0], right: win[1] } : null;
  const onDevice = flashRefusal(device, q.dtype, { scale, causal: !!options.causal, causalOffset: 0, mask: null, hooks, window });
  if (onDevice || E > FLASH_MAX_HEAD_DIM || Ev > FLASH_MAX_HEAD_DIM) {
    if (!cuQ || !cuK) throw new WebattnError('INVALID_ARGUMENT', 'options.cuSeqlensQ: the reference path needs host cu_seqlens', { argument: 'options.cuSeqlensQ' });
    return perSequence(q, k, v, cuQ, cuK, { ...options, scale });
  }
  // the kernels index cu_seqlens from element 0 of its storage: copy a GPU-held view with an offset or strides
  const flat = (t: Tensor) => (t.offset === 0 && t.isContiguous ? t : T.copyInto(T.empty(t.shape, 'int32', device), t));
  const toDev = (c: Int32Array | null, src: CuSeqlensLike) => (c ? T.tensor(c, [c.length], { dtype: 'int32', device }) : flat(src as Tensor));
  const cuQT = toDev(cuQ, cuQIn);
  const cuKT = toDev(cuK, cuKIn);
  const verdicts: ((outputs: Tensor[]) => void)[] = [];
  if (options.validate !== false && device.backend === 'webgpu') {
    if (!cuQ) verdicts.push(checkCuSeqlensOnDevice(cuQT, TQ, maxQ, 'options.cuSeqlensQ', 'options.maxSeqlenQ'));
    if (!cuK && (cuKIn !== cuQIn || TK !== TQ || maxK !== maxQ)) verdicts.push(checkCuSeqlensOnDevice(cuKT, TK, maxK, kName, maxKName));
  }
  const { output, lse } = recordFlash('flashAttnVarlen', q, k, v, {
    scale,
    causal: !!options.causal,
    causalOffset: 0,
    mask: null,
    hooks,
    varlen: { cuQ: cuQT, cuK: cuKT, maxQ, maxK, hostCuQ: cuQ, hostCuK: cuK },
    window,
  });
  for (const v of verdicts) v([output, lse]);
  return outputOrBoth({ output, lse }, options.returnLse);
}

/** Reference path: each sequence alone through the math backend, with the same masks. */
function perSequence(q: Tensor, k: Tensor, v: Tensor, cuQ: Int32Array, cuK: Int32Array, o: FlashAttnVarlenOptions & { scale: number }) {
  const Hq = q.shape[1]!;
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
    const cap = o.softcap ?? 0;
    const res = referenceAttention(qs, ks, vs, {
      scale: o.scale,
      allow,
      scoreMod: cap > 0 ? (sc) => T.mul(T.tanh(T.div(sc, cap)), cap) : null,
    });
    outs.push(res.output.squeeze(0).transpose(0, 1));
    lses.push(res.lse.squeeze(0));
  }
  const output = outs.length ? T.cat(outs, 0) : T.zeros([0, Hq, v.shape[2]!], { dtype: q.dtype, device: q.device });
  if (!o.returnLse) return output;
  const lse = lses.length ? T.cat(lses, 1) : T.zeros([Hq, 0], { device: q.device });
  return { output, lse };
}
