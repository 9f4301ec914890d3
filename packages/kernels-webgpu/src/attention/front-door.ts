/**
 * What the three attention front doors (SDPA, flex, varlen) share: q/k/v validation, runtime checks of
 * plain-JS options, the float64-capable reference (math) attention and the recording of a flash call
 * on the autograd tape. Exposed to `@webattn/flex` and `@webattn/varlen` through
 * `@webattn/kernels-webgpu/internal`; not public API.
 */
import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Device, type FlashKernelAttrs, type Tensor } from '@webattn/core-tensor';
import type { WebGPUDevice } from '../device/webgpu-device.js';
import { flashBackward, flashForward, type FlashParams } from './flash.js';
import { backwardDelta } from './backward-dq.js';
import { fusedDelta } from './plan.js';

/** Sizes of validated attention operands (dense `[B, H, L, E]` or packed `[total, H, E]`). */
export interface AttentionDims {
  /** Batch (dense), or 1 (packed). */
  B: number;
  Hq: number;
  Hkv: number;
  /** Query rows per (b, h) (dense) or packed query rows (packed). */
  Lq: number;
  /** Key rows per (b, h) (dense) or packed key rows (packed). */
  Lkv: number;
  E: number;
  Ev: number;
  device: Device;
}

const bad = (code: 'SHAPE_MISMATCH' | 'INVALID_ARGUMENT' | 'DTYPE_UNSUPPORTED', argument: string, msg: string): never => {
  throw new WebattnError(code, `${argument}: ${msg}`, { argument });
};

/**
 * Validates query/key/value: tensors, live, floating point, one dtype, one device, the layout's rank,
 * matching batch/length/head-dim, head dim ≥ 1 and the GQA head ratio. `names` are the argument names
 * the errors use. `gqa`: 'always' (varlen), true or false (`enableGqa`).
 */
export function checkQkv(
  q: unknown,
  k: unknown,
  v: unknown,
  layout: 'dense' | 'packed',
  gqa: boolean | 'always',
  names: readonly [string, string, string] = ['query', 'key', 'value'],
): AttentionDims {
  const rank = layout === 'dense' ? 4 : 3;
  const want = layout === 'dense' ? 'a 4-D tensor [B, H, L, E]' : 'a packed tensor [total, H, E]';
  [q, k, v].forEach((t, i) => {
    if (!(t instanceof T.Tensor)) bad('INVALID_ARGUMENT', names[i]!, `expected a Tensor, got ${describe(t)}`);
    (t as Tensor).assertLive(names[i]);
  });
  const ts = [q, k, v] as Tensor[];
  ts.forEach((t, i) => {
    if (t.rank !== rank) bad('SHAPE_MISMATCH', names[i]!, `expected ${want}, got shape ${describe(t.shape)}`);
    if (!T.isFloat(t.dtype)) bad('DTYPE_UNSUPPORTED', names[i]!, `expected a floating-point tensor, got ${t.dtype}`);
  });
  const [qt, kt, vt] = ts as [Tensor, Tensor, Tensor];
  if (kt.dtype !== qt.dtype || vt.dtype !== qt.dtype) {
    const which = kt.dtype !== qt.dtype ? 1 : 2;
    bad('DTYPE_UNSUPPORTED', names[which]!, `expected dtype ${qt.dtype} (the ${names[0]}'s), got ${ts[which]!.dtype}`);
  }
  const device = T.sameDevice(ts, names as unknown as string[]);
  const at = (t: Tensor) => (layout === 'dense' ? t.shape : [1, t.shape[1]!, t.shape[0]!, t.shape[2]!]) as [number, number, number, number];
  const [B, Hq, Lq, E] = at(qt);
  const [Bk, Hkv, Lkv, Ek] = at(kt);
  const [Bv, Hv, Lv, Ev] = at(vt);
  const [nq, nk, nv] = names;
  if (Bk !== B) bad('SHAPE_MISMATCH', nk, `batch ${Bk} differs from the ${nq}'s ${B}`);
  if (Bv !== B) bad('SHAPE_MISMATCH', nv, `batch ${Bv} differs from the ${nq}'s ${B}`);
  if (E < 1) bad('SHAPE_MISMATCH', nq, `head dim E must be at least 1, got shape ${describe(qt.shape)}`);
  if (Ev < 1) bad('SHAPE_MISMATCH', nv, `head dim Ev must be at least 1, got shape ${describe(vt.shape)}`);
  if (Ek !== E) bad('SHAPE_MISMATCH', nk, `head dim E=${Ek} differs from the ${nq}'s E=${E}`);
  if (Lv !== Lkv) bad('SHAPE_MISMATCH', nv, `length ${Lv} differs from the ${nk}'s length ${Lkv}`);
  if (Hv !== Hkv) bad('SHAPE_MISMATCH', nv, `${Hv} heads differ from the ${nk}'s ${Hkv}`);
  if (Hkv !== Hq || gqa === 'always') {
    if (gqa === false) bad('SHAPE_MISMATCH', nk, `${Hkv} heads differ from the ${nq}'s ${Hq}; pass enableGqa: true for grouped-query attention`);
    if (Hkv === 0 || Hq % Hkv !== 0) bad('SHAPE_MISMATCH', nk, `grouped-query attention needs Hq % Hkv == 0, got Hq=${Hq}, Hkv=${Hkv}`);
  }
  return { B, Hq, Hkv, Lq, Lkv, E, Ev, device };
}

/** Kinds of plain-JS option checks. */
export type OptionSpec =
  | { type: 'boolean' }
  | { type: 'number'; min?: number; max?: number; maxExclusive?: boolean; integer?: boolean; finite?: boolean }
  | { type: 'enum'; values: readonly unknown[] }
  | { type: 'any' };

/**
 * Runtime check of an options object for plain-JS callers: an object (or undefined), no unknown keys
 * (a typo is an error, as PyTorch's keyword arguments), booleans that are booleans (never `'false'`),
 * finite numbers in range, enum members. `undefined` and (for non-booleans) `null` mean "default".
 * Throws `INVALID_ARGUMENT` naming `options.<key>`.
 */
export function checkOptions(options: unknown, spec: Record<string, OptionSpec>, argument = 'options'): void {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) bad('INVALID_ARGUMENT', argument, `expected an options object, got ${describe(options)}`);
  for (const [key, val] of Object.entries(options as Record<string, unknown>)) {
    const s = spec[key];
    const name = `${argument}.${key}`;
    if (!s) bad('INVALID_ARGUMENT', name, `unknown option (expected one of ${Object.keys(spec).join(', ')})`);
    if (val === undefined || s!.type === 'any') continue;
    switch (s!.type) {
      case 'boolean':
        if (typeof val !== 'boolean') bad('INVALID_ARGUMENT', name, `expected a boolean, got ${describe(val)}`);
        break;
      case 'number': {
        if (val === null) break;
        const n = s as Extract<OptionSpec, { type: 'number' }>;
        if (typeof val !== 'number' || Number.isNaN(val) || (n.finite !== false && !Number.isFinite(val))) bad('INVALID_ARGUMENT', name, `expected a finite number, got ${describe(val)}`);
        const x = val as number;
        if (n.integer && !Number.isInteger(x)) bad('INVALID_ARGUMENT', name, `expected an integer, got ${describe(val)}`);
        if (n.min !== undefined && x < n.min) bad('INVALID_ARGUMENT', name, `expected a number ≥ ${n.min}, got ${describe(val)}`);
        if (n.max !== undefined && (n.maxExclusive ? x >= n.max : x > n.max)) bad('INVALID_ARGUMENT', name, `expected a number ${n.maxExclusive ? '<' : '≤'} ${n.max}, got ${describe(val)}`);
        break;
      }
      case 'enum':
        if (!(s as Extract<OptionSpec, { type: 'enum' }>).values.includes(val)) {
          bad('INVALID_ARGUMENT', name, `expected one of ${(s as Extract<OptionSpec, { type: 'enum' }>).values.map((v) => describe(v)).join(', ')}, got ${describe(val)}`);
        }
        break;
    }
  }
}

/** The score scale: the option (already checked finite) or 1/√E. */
export function resolveScale(scale: number | null | undefined, E: number): number {
  return scale ?? 1 / Math.sqrt(E);
}

/** Options of {@link referenceAttention}. */
export interface ReferenceOptions {
  scale: number;
  /** Boolean keep-mask broadcastable to the scores `[B, Hq, Lq, Lkv]` (true = attend), or null. */
  allow?: Tensor | null;
  /** Additive mask broadcastable to the scores, or null. */
  additive?: Tensor | null;
  /** Transforms the scaled scores `[B, Hq, Lq, Lkv]` (score functions; differentiable through ops). */
  scoreMod?: ((s: Tensor) => Tensor) | null;
  /** Dropout on the probabilities. */
  dropoutP?: number;
  dropoutSeed?: number;
}

/**
 * The reference attention of every front door: materialised scores through core ops (float64 on the
 * CPU device is the test oracle), GQA by head expansion, masks, score function, softmax, natural-log
 * lse (−∞ for a fully masked row, whose output is zeros). NaN in the inputs propagates (PyTorch).
 * q `[B, Hq, Lq, E]`, k `[B, Hkv, Lkv, E]`, v `[B, Hkv, Lkv, Ev]` → output `[B, Hq, Lq, Ev]`, lse `[B, Hq, Lq]` float32.
 */
export function referenceAttention(q: Tensor, k: Tensor, v: Tensor, o: ReferenceOptions): { output: Tensor; lse: Tensor } {
  const [B, Hq, Lq, E] = q.shape as [number, number, number, number];
  const [, Hkv, Lkv] = k.shape as [number, number, number, number];
  const Ev = v.shape[3]!;
  const G = Hq / Hkv;
  let kk = k;
  let vv = v;
  if (G > 1) {
    kk = k.reshape([B, Hkv, 1, Lkv, E]).expand([B, Hkv, G, Lkv, E]).reshape([B, Hq, Lkv, E]);
    vv = v.reshape([B, Hkv, 1, Lkv, Ev]).expand([B, Hkv, G, Lkv, Ev]).reshape([B, Hq, Lkv, Ev]);
  }
  let s = T.matmul(T.mul(q, o.scale), kk.transpose(-1, -2));
  if (o.scoreMod) s = o.scoreMod(s);
  if (o.additive) s = T.add(s, o.additive);
  if (o.allow) s = T.where(o.allow, s, -Infinity);
  let p = T.softmax(s, -1);
  const sd = s.detach();
  const m = T.max(sd, -1, true);
  // a fully masked row has max −∞: shift by 0 so lse is −∞ (not NaN); a NaN max stays NaN
  const mSafe = T.where(T.eq(m, -Infinity), 0, m);
  const lse = T.add(T.log(T.sum(T.exp(T.sub(sd, mSafe)), -1, true)), mSafe).reshape([B, Hq, Lq]);
  const dp = o.dropoutP ?? 0;
  if (dp > 0) {
    const rng = T.rand([B, Hq, Lq, Lkv], { device: q.device, ...(o.dropoutSeed !== undefined ? { seed: o.dropoutSeed } : {}) });
    p = T.mul(p, T.div(T.cast(T.ge(rng, dp), p.dtype), 1 - dp));
  }
  return { output: T.matmul(p, vv), lse: lse.dtype === 'float32' ? lse : T.cast(lse, 'float32').detach() };
}

/** Extra differentiable inputs of a flash call (captured tensors of score functions). */
export interface FlashExtraGrads {
  /** Tensors that receive gradients (recorded as inputs after q, k, v). */
  inputs: Tensor[];
  /** Called before the backward kernels (e.g. zero the gradient buffers). */
  before(): void;
  /** The gradients of `inputs`, in order, after the backward kernels ran. */
  after(): Tensor[];
}

/** Options of {@link recordFlash}. */
export interface RecordFlashOptions {
  /** Extra differentiable inputs (captured tensors). */
  extra?: FlashExtraGrads | null;
  /** Hooks of the backward kernels when they differ from the forward's (e.g. without a bounds-check binding). */
  backwardHooks?: FlashParams['hooks'];
}

/**
 * What a front door returns: `{output, lse}` when the caller asked for the lse, else the output alone
 * (the lse is released at once instead of waiting for the garbage collector).
 */
export function outputOrBoth(r: { output: Tensor; lse: Tensor }, returnLse: boolean | undefined): Tensor | { output: Tensor; lse: Tensor } {
  if (returnLse) return r;
  r.lse.dispose();
  return r.output;
}

/**
 * Why the flash path cannot run a call on `device` (null when it can). WebGPU runs the shared
 * generator with every hook. Another backend runs its registered `flash_attention` kernel (e.g.
 * `@webattn/kernels-wasm`), which takes dense or packed float32 attention with causal masks, mask
 * tensors and GQA, but no score/mask functions, block-sparse tables or local windows.
 */
export function flashRefusal(device: Device, dtype: string, rest: Omit<FlashParams, 'q' | 'k' | 'v'>): string | null {
  if (device.backend === 'webgpu') return null;
  if (!T.getKernel('flash_attention', device.backend)) {
    return `needs WebGPU or a backend with a flash kernel (e.g. import '@webattn/kernels-wasm'); the inputs are on '${device.backend}'`;
  }
  const on = `the '${device.backend}' flash kernel`;
  if (dtype !== 'float32') return `${on} takes float32, got ${dtype}`;
  if (rest.hooks) return `${on} takes no score or mask functions`;
  if (rest.blocks) return `${on} takes no block-sparse tables`;
  if (rest.window && (rest.window.left >= 0 || rest.window.right >= 0)) return `${on} takes no local window`;
  return null;
}

/**
 * Runs the flash forward on q/k/v (detached) with `rest` — the shared generator on WebGPU, the
 * backend's `flash_attention` kernel elsewhere (check {@link flashRefusal} first) — and records it on
 * the autograd tape as `name` with the matching backward (delta = rowsum(dout ∘ out), in the lse
 * layout). Returns the output `[B, Hq, Lq, Ev]` (`[totalQ, Hq, Ev]` packed) and lse.
 */
export function recordFlash(
  name: string,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  rest: Omit<FlashParams, 'q' | 'k' | 'v'>,
  options: RecordFlashOptions = {},
): { output: Tensor; lse: Tensor } {
  if (q.device.backend !== 'webgpu') return recordBackendFlash(name, q, k, v, rest);
  const extra = options.extra ?? null;
  const fwd: FlashParams = { ...rest, q: q.detach(), k: k.detach(), v: v.detach() };
  const params: FlashParams = options.backwardHooks !== undefined ? { ...fwd, hooks: options.backwardHooks } : fwd;
  const { out, lse } = flashForward(fwd);
  // the backward's own handles: freed after backward (or at once without grad), whatever the caller keeps
  const outS = out.detach();
  const lseS = lse.detach();
  const output = T.record(
    [out],
    name,
    [q, k, v, ...(extra?.inputs ?? [])],
    (g) => {
      // delta in float32 from float32 products (FlashAttention's dot(dO, O)): the kernels bind it as f32, and
      // an f16 delta (f16 inputs) was read as f32 bits — the cause of the infinite f16 dq on the H100
      const f32 = (t: Tensor) => (t.dtype === 'float32' ? t : T.cast(t, 'float32'));
      let delta = fusedDelta() ? backwardDelta(g, outS) : T.sum(T.mul(f32(g), f32(outS)), -1);
      if (params.varlen) delta = delta.transpose(0, 1); // packed: lse is [Hq, totalQ]
      extra?.before();
      const { dq, dk, dv } = flashBackward(params, { dout: g, lse: lseS, delta: delta.contiguous() });
      return [dq, dk, dv, ...(extra ? extra.after() : [])];
    },
    [outS, lseS],
  )[0]!;
  return { output, lse };
}

/** {@link recordFlash} on a backend's registered `flash_attention` / `flash_attention_backward` kernels. */
function recordBackendFlash(name: string, q: Tensor, k: Tensor, v: Tensor, rest: Omit<FlashParams, 'q' | 'k' | 'v'>): { output: Tensor; lse: Tensor } {
  const why = flashRefusal(q.device, q.dtype, rest);
  if (why) throw new WebattnError('NO_BACKEND', `${name}: the flash path cannot run these inputs (${why})`);
  const attrs: FlashKernelAttrs = {
    scale: rest.scale,
    causal: rest.causal,
    causalOffset: rest.causalOffset,
    maskKind: rest.mask?.kind ?? null,
    varlen: !!rest.varlen,
  };
  const tail = [...(rest.mask ? [rest.mask.tensor] : []), ...(rest.varlen ? [rest.varlen.cuQ, rest.varlen.cuK] : [])];
  const [qd, kd, vd] = [q.detach(), k.detach(), v.detach()];
  const [out, lse] = T.runKernel('flash_attention', q.device, [qd, kd, vd, ...tail], attrs) as [Tensor, Tensor];
  const outS = out.detach();
  const lseS = lse.detach();
  const output = T.record(
    [out],
    name,
    [q, k, v],
    (g) => T.runKernel('flash_attention_backward', q.device, [qd, kd, vd, outS, g, lseS, ...tail], attrs),
    [outS, lseS],
  )[0]!;
  return { output, lse };
}

/**
 * Reads a one-word flag tensor on the GPU timeline and, when `explain(flag)` gives an error, makes
 * reads of `outputs` (the call's results) raise it — how a validation kernel reports bad input it
 * found on the device without a synchronous read (without outputs, the next read or sync raises it).
 */
export function deferFlagCheck(flag: Tensor, name: string, explain: (bits: number) => WebattnError | null, outputs: readonly Tensor[] = []): void {
  const dev = flag.device as WebGPUDevice;
  const check = dev.readWord(flag.storage, flag.offset * 4).then(explain, () => null); // a lost device reports itself
  dev.deferCheck(name, check, outputs.map((t) => t.storage));
}
