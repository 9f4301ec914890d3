/**
 * `scaledDotProductAttention`: PyTorch SDPA semantics in TypeScript, choosing between the `flash`
 * backend (the shared generator) and the `math` backend (materialised scores, any input, the reference).
 */
import * as T from '@webattn/core-tensor';
import { WebattnError, type Tensor } from '@webattn/core-tensor';
import { FLASH_MAX_HEAD_DIM, type FlashParams } from './flash.js';
import { checkOptions, checkQkv, flashRefusal, recordFlash, referenceAttention, resolveScale, type AttentionDims, type OptionSpec } from './front-door.js';

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

interface Checked extends AttentionDims {
  scale: number;
  mask: Tensor | null;
}

const SDPA_OPTIONS: Record<string, OptionSpec> = {
  attnMask: { type: 'any' },
  dropoutP: { type: 'number', min: 0, max: 1, maxExclusive: true },
  dropoutSeed: { type: 'number', integer: true },
  isCausal: { type: 'boolean' },
  scale: { type: 'number' },
  enableGqa: { type: 'boolean' },
  returnLse: { type: 'boolean' },
};

function validate(q: Tensor, k: Tensor, v: Tensor, o: SdpaOptions): Checked {
  checkOptions(o, SDPA_OPTIONS);
  const d = checkQkv(q, k, v, 'dense', !!o.enableGqa);
  const { B, Hq, Lq, Lkv } = d;
  let mask: Tensor | null = null;
  if (o.attnMask !== undefined && o.attnMask !== null) {
    const m = o.attnMask;
    const arg = 'options.attnMask';
    const fail = (msg: string): never => {
      throw new WebattnError('SHAPE_MISMATCH', `${arg}: ${msg}`, { argument: arg });
    };
    if (!(m instanceof T.Tensor)) throw new WebattnError('INVALID_ARGUMENT', `${arg}: expected a Tensor, got ${T.describe(m)}`, { argument: arg });
    m.assertLive(arg);
    if (m.dtype !== 'bool' && m.dtype !== q.dtype) {
      throw new WebattnError('DTYPE_UNSUPPORTED', `${arg}: expected bool (true = attend) or ${q.dtype} (additive), got ${m.dtype}`, { argument: arg });
    }
    if (m.rank > 4) fail(`expected at most 4 dims broadcastable to [${B}, ${Hq}, ${Lq}, ${Lkv}], got ${T.describe(m.shape)}`);
    const target = [B, Hq, Lq, Lkv];
    const off = 4 - m.rank;
    m.shape.forEach((dim, i) => {
      if (dim !== 1 && dim !== target[off + i]) fail(`shape ${T.describe(m.shape)} does not broadcast to [${target.join(', ')}] (dimension ${i})`);
    });
    T.sameDevice([q, m], ['query', arg]);
    mask = m;
  }
  return { ...d, scale: resolveScale(o.scale, d.E), mask };
}

function sdpaFlashRefusal(q: Tensor, c: Checked, o: SdpaOptions): string | null {
  const onDevice = flashRefusal(c.device, q.dtype, flashRest(c, o));
  if (onDevice) return onDevice;
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

/** Math backend: the shared reference attention (materialised scores; autograd from the ops). */
function mathAttention(q: Tensor, k: Tensor, v: Tensor, c: Checked, o: SdpaOptions): SdpaWithLse {
  let allow: Tensor | null = null;
  if (o.isCausal) {
    const rows = T.arange(0, c.Lq, 1, { dtype: 'int32', device: c.device }).reshape([c.Lq, 1]);
    const cols = T.arange(0, c.Lkv, 1, { dtype: 'int32', device: c.device }).reshape([1, c.Lkv]);
    allow = T.le(cols, rows);
  }
  const boolMask = c.mask?.dtype === 'bool' ? c.mask : null;
  if (boolMask) allow = allow ? T.logicalAnd(allow, boolMask) : boolMask;
  return referenceAttention(q, k, v, {
    scale: c.scale,
    allow,
    additive: c.mask && !boolMask ? c.mask : null,
    dropoutP: o.dropoutP ?? 0,
    ...(o.dropoutSeed !== undefined ? { dropoutSeed: o.dropoutSeed } : {}),
  });
}

function flashRest(c: Checked, o: SdpaOptions): Omit<FlashParams, 'q' | 'k' | 'v'> {
  return {
    scale: c.scale,
    causal: !!o.isCausal,
    causalOffset: 0,
    mask: c.mask ? { tensor: expandMask4(c.mask.detach()), kind: c.mask.dtype === 'bool' ? 'bool' : 'float' } : null,
    hooks: null,
  };
}

/** Flash backend: the shared generator (or the device backend's flash kernel), recorded on the tape with its own backward. */
function flashAttention(q: Tensor, k: Tensor, v: Tensor, c: Checked, o: SdpaOptions): SdpaWithLse {
  return recordFlash('flashAttention', q, k, v, flashRest(c, o));
}

/**
 * Scaled dot-product attention with `torch.nn.functional.scaled_dot_product_attention` semantics:
 * query `[B, Hq, Lq, E]`, key `[B, Hkv, Lkv, E]`, value `[B, Hkv, Lkv, Ev]` → `[B, Hq, Lq, Ev]`.
 * A fully masked query row gives zeros (never NaN) and lse −∞. Chooses `flash` when the inputs allow,
 * else `math`; restrict with {@link sdpaKernel}. Throws `SHAPE_MISMATCH` / `DTYPE_UNSUPPORTED` /
 * `INVALID_ARGUMENT` (options are type-checked: `isCausal: 'false'` is an error) naming the argument,
 * `TENSOR_DISPOSED` for a disposed input, and `NO_BACKEND` listing each allowed backend's reason when none can run.
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
      const why = sdpaFlashRefusal(query, c, options);
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
