/**
 * `scaledDotProductAttention`: PyTorch SDPA semantics in TypeScript, choosing between the `flash`
 * backend (the shared generator) and the `math` backend (materialised scores, any input, the reference).
 */
import * as T from '@webattn/core-tensor';
import { WebattnError, type Device, type Tensor } from '@webattn/core-tensor';
import { FLASH_MAX_HEAD_DIM, flashBackward, flashForward, type FlashParams } from './flash.js';

/** Attention backends, as `torch.nn.attention.SDPBackend`. */
export type SdpaBackend = 'flash' | 'math';

/** Options of {@link scaledDotProductAttention}. */
export interface SdpaOptions {
  /**
   * Boolean (true = attend) or additive float mask, broadcastable to `[B, Hq, Lq, Lkv]`. It may be
   * combined with `isCausal` (both apply), which PyTorch forbids.
   */
  attnMask?: Tensor | null;
  /** Dropout probability on the attention weights (math backend only), in [0, 1). */
  dropoutP?: number;
  /** Seed of the dropout mask: the same seed gives the same mask (default: the global stream). */
  dropoutSeed?: number;
  /** Causal mask aligned top-left, as PyTorch: query i sees keys j ≤ i (also when Lq ≠ Lkv). */
  isCausal?: boolean;
  /** Score scale (default 1/√E). */
  scale?: number;
  /** Grouped-query attention: query head h uses key/value head ⌊h / (Hq/Hkv)⌋. */
  enableGqa?: boolean;
}

/** Result of {@link scaledDotProductAttention} with `returnLse: true`. */
export interface SdpaWithLse {
  /** `[B, Hq, Lq, Ev]`. */
  output: Tensor;
  /** Natural-log log-sum-exp of each query row's scores, `[B, Hq, Lq]` float32; −∞ for a fully masked row. */
  lse: Tensor;
}

let allowed: SdpaBackend[] = ['flash', 'math'];
let last: SdpaBackend | null = null;

/**
 * Runs `fn` with only the given attention backends allowed (like `torch.nn.attention.sdpa_kernel`).
 * @example const out = sdpaKernel(['math'], () => scaledDotProductAttention(q, k, v));
 */
export function sdpaKernel<R>(backends: SdpaBackend | readonly SdpaBackend[], fn: () => R): R {
  const list = (Array.isArray(backends) ? backends : [backends]) as SdpaBackend[];
  for (const b of list) {
    if (b !== 'flash' && b !== 'math') {
      throw new WebattnError('INVALID_ARGUMENT', `backends: expected 'flash' or 'math', got ${T.describe(b)}`, { argument: 'backends' });
    }
  }
  const prev = allowed;
  allowed = list;
  try {
    return fn();
  } finally {
    allowed = prev;
  }
}

/** The backend the last `scaledDotProductAttention` call ran (for tests and the bench). */
export function lastSdpaBackend(): SdpaBackend | null {
  return last;
}

interface Checked {
  B: number;
  Hq: number;
  Hkv: number;
  Lq: number;
  Lkv: number;
  E: number;
  Ev: number;
  scale: number;
  mask: Tensor | null;
  device: Device;
}

function validate(q: Tensor, k: Tensor, v: Tensor, o: SdpaOptions): Checked {
  const names = ['query', 'key', 'value'] as const;
  [q, k, v].forEach((t, i) => {
    if (!(t instanceof T.Tensor)) throw new WebattnError('INVALID_ARGUMENT', `${names[i]}: expected a Tensor, got ${T.describe(t)}`, { argument: names[i] });
    t.assertLive(names[i]);
    if (t.rank !== 4) {
      throw new WebattnError('SHAPE_MISMATCH', `${names[i]}: expected a 4-D tensor [B, H, L, E], got shape ${T.describe(t.shape)}`, { argument: names[i] });
    }
    if (t.dtype !== 'float32' && t.dtype !== 'float16' && t.dtype !== 'float64') {
      throw new WebattnError('DTYPE_UNSUPPORTED', `${names[i]}: expected a floating-point tensor, got ${t.dtype}`, { argument: names[i] });
    }
  });
  const device = T.sameDevice([q, k, v], names);
  if (k.dtype !== q.dtype || v.dtype !== q.dtype) {
    const bad = k.dtype !== q.dtype ? 'key' : 'value';
    throw new WebattnError('DTYPE_UNSUPPORTED', `${bad}: expected dtype ${q.dtype} (the query's), got ${(bad === 'key' ? k : v).dtype}`, { argument: bad });
  }
  const [B, Hq, Lq, E] = q.shape as [number, number, number, number];
  const [Bk, Hkv, Lkv, Ek] = k.shape as [number, number, number, number];
  const [Bv, Hv, Lv, Ev] = v.shape as [number, number, number, number];
  const fail = (arg: string, msg: string): never => {
    throw new WebattnError('SHAPE_MISMATCH', `${arg}: ${msg}`, { argument: arg });
  };
  if (Bk !== B) fail('key', `batch ${Bk} differs from the query's ${B}`);
  if (Bv !== B) fail('value', `batch ${Bv} differs from the query's ${B}`);
  if (Ek !== E) fail('key', `head dim E=${Ek} differs from the query's E=${E}`);
  if (Lv !== Lkv) fail('value', `length ${Lv} differs from the key's length ${Lkv}`);
  if (Hv !== Hkv) fail('value', `${Hv} heads differ from the key's ${Hkv}`);
  if (Hkv !== Hq) {
    if (!o.enableGqa) fail('key', `${Hkv} heads differ from the query's ${Hq}; pass enableGqa: true for grouped-query attention`);
    if (Hkv === 0 || Hq % Hkv !== 0) fail('key', `grouped-query attention needs Hq % Hkv == 0, got Hq=${Hq}, Hkv=${Hkv}`);
  }
  const scale = o.scale ?? 1 / Math.sqrt(E);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) {
    throw new WebattnError('INVALID_ARGUMENT', `options.scale: expected a finite number, got ${T.describe(o.scale)}`, { argument: 'options.scale' });
  }
  const p = o.dropoutP ?? 0;
  if (typeof p !== 'number' || !(p >= 0 && p < 1)) {
    throw new WebattnError('INVALID_ARGUMENT', `options.dropoutP: expected a number in [0, 1), got ${T.describe(o.dropoutP)}`, { argument: 'options.dropoutP' });
  }
  let mask: Tensor | null = null;
  if (o.attnMask !== undefined && o.attnMask !== null) {
    const m = o.attnMask;
    if (!(m instanceof T.Tensor)) throw new WebattnError('INVALID_ARGUMENT', `options.attnMask: expected a Tensor, got ${T.describe(m)}`, { argument: 'options.attnMask' });
    if (m.dtype !== 'bool' && m.dtype !== q.dtype) {
      throw new WebattnError('DTYPE_UNSUPPORTED', `options.attnMask: expected bool (true = attend) or ${q.dtype} (additive), got ${m.dtype}`, { argument: 'options.attnMask' });
    }
    if (m.rank > 4) fail('options.attnMask', `expected at most 4 dims broadcastable to [${B}, ${Hq}, ${Lq}, ${Lkv}], got ${T.describe(m.shape)}`);
    const target = [B, Hq, Lq, Lkv];
    const off = 4 - m.rank;
    m.shape.forEach((d, i) => {
      if (d !== 1 && d !== target[off + i]) fail('options.attnMask', `shape ${T.describe(m.shape)} does not broadcast to [${target.join(', ')}] (dimension ${i})`);
    });
    T.sameDevice([q, m], ['query', 'options.attnMask']);
    mask = m;
  }
  return { B, Hq, Hkv, Lq, Lkv, E, Ev, scale, mask, device };
}

function flashRefusal(q: Tensor, c: Checked, o: SdpaOptions): string | null {
  if (c.device.backend !== 'webgpu') return 'needs a WebGPU device (inputs are on the CPU)';
  if ((o.dropoutP ?? 0) > 0) return 'does not implement dropout (dropoutP > 0)';
  if (c.E > FLASH_MAX_HEAD_DIM) return `query head dim E=${c.E} exceeds the maximum ${FLASH_MAX_HEAD_DIM}`;
  if (c.Ev > FLASH_MAX_HEAD_DIM) return `value head dim Ev=${c.Ev} exceeds the maximum ${FLASH_MAX_HEAD_DIM}`;
  if (c.mask?.requiresGrad && T.isGradEnabled()) return 'does not compute the gradient of a float attnMask that requires grad';
  if (q.dtype === 'float64') return 'float64 is not supported on WebGPU';
  return null;
}

function expandMask4(m: Tensor): Tensor {
  return m.rank === 4 ? m : m.reshape([...new Array<number>(4 - m.rank).fill(1), ...m.shape]);
}

/** Math backend: materialised scores through core ops; autograd comes from the ops. */
function mathAttention(q: Tensor, k: Tensor, v: Tensor, c: Checked, o: SdpaOptions): SdpaWithLse {
  const G = c.Hq / c.Hkv;
  let kk = k;
  let vv = v;
  if (G > 1) {
    kk = k.reshape([c.B, c.Hkv, 1, c.Lkv, c.E]).expand([c.B, c.Hkv, G, c.Lkv, c.E]).reshape([c.B, c.Hq, c.Lkv, c.E]);
    vv = v.reshape([c.B, c.Hkv, 1, c.Lkv, c.Ev]).expand([c.B, c.Hkv, G, c.Lkv, c.Ev]).reshape([c.B, c.Hq, c.Lkv, c.Ev]);
  }
  let s = T.matmul(T.mul(q, c.scale), kk.transpose(-1, -2));
  let allow: Tensor | null = null;
  if (o.isCausal) {
    const rows = T.arange(0, c.Lq, 1, { dtype: 'int32', device: c.device }).reshape([c.Lq, 1]);
    const cols = T.arange(0, c.Lkv, 1, { dtype: 'int32', device: c.device }).reshape([1, c.Lkv]);
    allow = T.le(cols, rows);
  }
  if (c.mask) {
    if (c.mask.dtype === 'bool') allow = allow ? T.logicalAnd(allow, c.mask) : c.mask;
    else s = T.add(s, c.mask);
  }
  if (allow) s = T.where(allow, s, -Infinity);
  let p = T.softmax(s, -1);
  const sd = s.detach();
  const m = T.max(sd, -1, true);
  const mSafe = T.where(T.eq(m, -Infinity), 0, m);
  const lse = T.add(T.log(T.sum(T.exp(T.sub(sd, mSafe)), -1, true)), mSafe).reshape([c.B, c.Hq, c.Lq]);
  const dp = o.dropoutP ?? 0;
  if (dp > 0) {
    const rng = T.rand([c.B, c.Hq, c.Lq, c.Lkv], { device: c.device, ...(o.dropoutSeed !== undefined ? { seed: o.dropoutSeed } : {}) });
    p = T.mul(p, T.div(T.cast(T.ge(rng, dp), p.dtype), 1 - dp));
  }
  return { output: T.matmul(p, vv), lse: lse.dtype === 'float32' ? lse : T.cast(lse, 'float32').detach() };
}

/** Flash backend: the shared generator, recorded on the tape with its own backward. */
function flashAttention(q: Tensor, k: Tensor, v: Tensor, c: Checked, o: SdpaOptions): SdpaWithLse {
  const params: FlashParams = {
    q: q.detach(),
    k: k.detach(),
    v: v.detach(),
    scale: c.scale,
    causal: !!o.isCausal,
    causalOffset: 0,
    mask: c.mask ? { tensor: expandMask4(c.mask.detach()), kind: c.mask.dtype === 'bool' ? 'bool' : 'float' } : null,
    hooks: null,
  };
  const { out, lse } = flashForward(params);
  const output = T.record([out], 'flashAttention', [q, k, v], (g) => {
    const delta = T.sum(T.mul(g, out), -1).contiguous();
    const { dq, dk, dv } = flashBackward(params, { dout: g, lse, delta });
    return [dq, dk, dv];
  })[0]!;
  return { output, lse };
}

/**
 * Scaled dot-product attention with `torch.nn.functional.scaled_dot_product_attention` semantics:
 * query `[B, Hq, Lq, E]`, key `[B, Hkv, Lkv, E]`, value `[B, Hkv, Lkv, Ev]` → `[B, Hq, Lq, Ev]`.
 * A fully masked query row gives zeros (never NaN) and lse −∞. Chooses `flash` when the inputs allow,
 * else `math`; restrict with {@link sdpaKernel}. Throws `SHAPE_MISMATCH` / `DTYPE_UNSUPPORTED` naming
 * the argument, and `NO_BACKEND` listing each allowed backend's reason when none can run.
 *
 * @example
 * const out = scaledDotProductAttention(q, k, v, { isCausal: true });
 * const { output, lse } = scaledDotProductAttention(q, k, v, { returnLse: true });
 */
export function scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, options?: SdpaOptions & { returnLse?: false }): Tensor;
export function scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, options: SdpaOptions & { returnLse: true }): SdpaWithLse;
export function scaledDotProductAttention(
  query: Tensor,
  key: Tensor,
  value: Tensor,
  options: SdpaOptions & { returnLse?: boolean } = {},
): Tensor | SdpaWithLse {
  const c = validate(query, key, value, options);
  const reasons: string[] = [];
  for (const b of allowed) {
    if (b === 'flash') {
      const why = flashRefusal(query, c, options);
      if (why) {
        reasons.push(`flash: ${why}`);
        continue;
      }
      last = 'flash';
      const r = flashAttention(query, key, value, c, options);
      return options.returnLse ? r : r.output;
    }
    last = 'math';
    const r = mathAttention(query, key, value, c, options);
    return options.returnLse ? r : r.output;
  }
  throw new WebattnError('NO_BACKEND', `no allowed attention backend can run these inputs (${reasons.join('; ') || 'none allowed'})`);
}
