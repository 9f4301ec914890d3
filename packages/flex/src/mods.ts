/**
 * Score and mask functions as values: a plain TS function with its captures, or a combination
 * (`andMasks`, `orMasks`, document masks). Each compiles to one IR (captures namespaced per leaf)
 * and evaluates on the host by calling the very same JS functions.
 */
import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Tensor } from '@webattn/core-tensor';
import { compileSource, sourceOf, type CaptureSig } from './compile.js';
import type { IR } from './ir.js';

/** Values a function may capture: numbers and 1-D/2-D tensors (float32, int32 or bool). */
export type Captures = Record<string, number | Tensor>;

/** `(score, b, h, qIdx, kvIdx) => number` — modifies one attention score. */
export type ScoreModFn = (score: number, b: number, h: number, qIdx: number, kvIdx: number) => number;
/** `(b, h, qIdx, kvIdx) => boolean` — true where query qIdx may attend key kvIdx. */
export type MaskModFn = (b: number, h: number, qIdx: number, kvIdx: number) => boolean;

/** A score function with its captures, or one applied per document of a packed sequence. */
export type ScoreMod =
  | {
      kind: 'score';
      fn: ScoreModFn;
      captures: Captures;
      /** Short name for block-mask pictures and cache keys. */
      name?: string;
    }
  | { kind: 'score-document'; docIds: Tensor; starts: Tensor; inner: ScoreMod; name?: string };

/** A mask function: a leaf with captures, a combination, or a document (packed sequences) mask. */
export type MaskMod =
  | { kind: 'mask'; fn: MaskModFn; captures: Captures; name?: string }
  | { kind: 'and' | 'or'; parts: MaskMod[]; name?: string }
  | { kind: 'not'; part: MaskMod; name?: string }
  | { kind: 'document'; docIds: Tensor; starts: Tensor; inner: MaskMod | null; name?: string };

/**
 * Wraps a score function and its captures.
 * @example const bias = scoreMod((s, b, h, q, kv) => s + table[h][q - kv + L], { table, L });
 */
export function scoreMod(fn: ScoreModFn, captures: Captures = {}): ScoreMod {
  return { kind: 'score', fn, captures };
}

/**
 * Wraps a mask function and its captures.
 * @example const win = maskMod((b, h, q, kv) => q - kv <= w && q >= kv, { w: 256 });
 */
export function maskMod(fn: MaskModFn, captures: Captures = {}): MaskMod {
  return { kind: 'mask', fn, captures };
}

/** Accepts a bare function or a wrapped one. */
export function asMask(m: MaskMod | MaskModFn, captures: Captures = {}, argument = 'maskMod'): MaskMod {
  if (typeof m === 'function') return maskMod(m, captures);
  if (m && typeof m === 'object' && ['mask', 'and', 'or', 'not', 'document'].includes((m as MaskMod).kind)) return m;
  throw new WebattnError('FLEX_COMPILE', `${argument}: expected a mask function or MaskMod, got ${describe(m)}`, { argument });
}

/** Accepts a bare function or a wrapped one. */
export function asScore(m: ScoreMod | ScoreModFn, captures: Captures = {}, argument = 'scoreMod'): ScoreMod {
  if (typeof m === 'function') return scoreMod(m, captures);
  if (m && typeof m === 'object' && ['score', 'score-document'].includes((m as ScoreMod).kind)) return m;
  throw new WebattnError('FLEX_COMPILE', `${argument}: expected a score function or ScoreMod, got ${describe(m)}`, { argument });
}

/** Combines masks with logical and (like `and_masks`). */
export function andMasks(...masks: (MaskMod | MaskModFn)[]): MaskMod {
  return { kind: 'and', parts: masks.map((m, i) => asMask(m, {}, `masks[${i}]`)) };
}

/** Combines masks with logical or (like `or_masks`). */
export function orMasks(...masks: (MaskMod | MaskModFn)[]): MaskMod {
  return { kind: 'or', parts: masks.map((m, i) => asMask(m, {}, `masks[${i}]`)) };
}

/** The mask that keeps everything (like `noop_mask`). */
export const noopMask: MaskMod = maskMod(() => true);

/** A compiled function ready for the generator: IR plus the captures its IR names refer to. */
export interface CompiledMod {
  ir: IR;
  /** Global (namespaced) capture name → value. */
  captures: Map<string, number | Tensor>;
  /** Cache key: sources and capture signatures. */
  key: string;
}

function signature(name: string, v: unknown, argument: string): CaptureSig {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new WebattnError('FLEX_COMPILE', `${argument}.${name}: captured numbers must be finite, got ${v}`, { argument });
    return { kind: 'number', integer: Number.isInteger(v) && Math.abs(v) < 2 ** 31 };
  }
  if (v instanceof T.Tensor) {
    if (v.rank < 1 || v.rank > 2) {
      throw new WebattnError('FLEX_COMPILE', `${argument}.${name}: captured tensors must be 1-D or 2-D, got shape ${describe(v.shape)}`, { argument });
    }
    const dt = v.dtype === 'float64' || v.dtype === 'float16' ? 'float32' : v.dtype;
    if (dt !== 'float32' && dt !== 'int32' && dt !== 'bool') {
      throw new WebattnError('FLEX_COMPILE', `${argument}.${name}: captured tensor of dtype ${v.dtype} is not supported (expected float32, int32 or bool)`, { argument });
    }
    return { kind: 'tensor', rank: v.rank, dtype: dt };
  }
  throw new WebattnError('FLEX_COMPILE', `${argument}.${name}: captures must be numbers or tensors, got ${describe(v)}`, { argument });
}

function sigKey(s: CaptureSig): string {
  return s.kind === 'number' ? `n${s.integer ? 'i' : 'f'}` : `t${s.rank}${s.dtype}`;
}

/** Compiles a score or mask function (or combination) into one IR; `tag` namespaces its captures. */
export function compileMod(m: ScoreMod | MaskMod, tag: string, argument: string, bind?: IR[]): CompiledMod {
  const captures = new Map<string, number | Tensor>();
  let leaf = 0;
  const keys: string[] = [];
  const go = (node: ScoreMod | MaskMod, bindIr?: IR[]): IR => {
    switch (node.kind) {
      case 'score':
      case 'mask': {
        const prefix = `${tag}${leaf++}_`;
        const sigs: Record<string, CaptureSig> = {};
        for (const [name, v] of Object.entries(node.captures ?? {})) sigs[name] = signature(name, v, `${argument} captures`);
        const src = sourceOf(node.fn, argument);
        const c = compileSource(src, node.kind, sigs, argument, bindIr, prefix);
        for (const name of c.used) captures.set(prefix + name, node.captures[name]!);
        keys.push(src, ...Object.entries(sigs).map(([n, s]) => `${n}:${sigKey(s)}`));
        return c.ir;
      }
      case 'and':
      case 'or': {
        if (!node.parts.length) return { k: 'bool', v: node.kind === 'and', ty: 'bool' };
        keys.push(node.kind);
        return node.parts.map((p) => go(p, bindIr)).reduce((a, b) => ({ k: 'bin', op: node.kind === 'and' ? '&&' : '||', a, b, ty: 'bool' }));
      }
      case 'not':
        keys.push('not');
        return { k: 'un', op: '!', a: go(node.part, bindIr), ty: 'bool' };
      case 'score-document': {
        keys.push('sdoc');
        const prefix = `${tag}${leaf++}_`;
        captures.set(`${prefix}start`, node.starts);
        const P = (i: number): IR => (bindIr ? bindIr[i]! : { k: 'param', slot: (['score', 'b', 'h', 'q', 'kv'] as const)[i]!, ty: i === 0 ? 'f32' : 'i32' });
        const ld = (at: IR): IR => ({ k: 'load', name: `${prefix}start`, idx: [at], ty: 'i32', id: -1 });
        return go(node.inner, [P(0), P(1), P(2), { k: 'bin', op: '-', a: P(3), b: ld(P(3)), ty: 'i32' }, { k: 'bin', op: '-', a: P(4), b: ld(P(4)), ty: 'i32' }]);
      }
      case 'document': {
        keys.push('doc');
        const prefix = `${tag}${leaf++}_`;
        captures.set(`${prefix}doc`, node.docIds);
        captures.set(`${prefix}start`, node.starts);
        const P = (slot: 'b' | 'h' | 'q' | 'kv'): IR => bindIr ? bindIr[['b', 'h', 'q', 'kv'].indexOf(slot)]! : { k: 'param', slot, ty: 'i32' };
        const ld = (name: string, at: IR): IR => ({ k: 'load', name: `${prefix}${name}`, idx: [at], ty: 'i32', id: -1 });
        const same: IR = { k: 'bin', op: '==', a: ld('doc', P('q')), b: ld('doc', P('kv')), ty: 'bool' };
        if (!node.inner) return same;
        const local: IR[] = [
          P('b'),
          P('h'),
          { k: 'bin', op: '-', a: P('q'), b: ld('start', P('q')), ty: 'i32' },
          { k: 'bin', op: '-', a: P('kv'), b: ld('start', P('kv')), ty: 'i32' },
        ];
        return { k: 'bin', op: '&&', a: same, b: go(node.inner, local), ty: 'bool' };
      }
    }
  };
  const ir = go(m, bind);
  return { ir, captures, key: `${tag}:${keys.join('|')}` };
}

/** Host (nested-array) view of a capture for the CPU path; tensors must be on the CPU device. */
function hostCapture(v: number | Tensor, name: string): unknown {
  if (typeof v === 'number') return v;
  if (v.device.backend !== 'cpu') {
    throw new WebattnError('DEVICE_MISMATCH', `captures.${name}: the CPU path needs CPU tensors, got one on ${v.device.info.adapter}`, { argument: 'captures' });
  }
  const flat = Array.from(T.readValues(v));
  if (v.rank === 1) return flat;
  const [r, c] = v.shape as [number, number];
  return Array.from({ length: r }, (_, i) => flat.slice(i * c, (i + 1) * c));
}

/** The JS function re-created with its captures bound to host arrays (the same source, run as-is). */
function rebind(fn: (...a: number[]) => unknown, captures: Captures): (...a: number[]) => unknown {
  const names = Object.keys(captures);
  if (!names.length) return fn;
  const make = new Function(...names, `return (${fn.toString()});`) as (...v: unknown[]) => (...a: number[]) => unknown;
  return make(...names.map((n) => hostCapture(captures[n]!, n)));
}

/** Host evaluator of a mask (CPU path, block-mask building). */
export function hostMask(m: MaskMod): MaskModFn {
  switch (m.kind) {
    case 'mask': {
      const f = rebind(m.fn as (...a: number[]) => unknown, m.captures);
      return (b, h, q, kv) => !!f(b, h, q, kv);
    }
    case 'and': {
      const ps = m.parts.map(hostMask);
      return (b, h, q, kv) => ps.every((p) => p(b, h, q, kv));
    }
    case 'or': {
      const ps = m.parts.map(hostMask);
      return (b, h, q, kv) => ps.some((p) => p(b, h, q, kv));
    }
    case 'not': {
      const p = hostMask(m.part);
      return (b, h, q, kv) => !p(b, h, q, kv);
    }
    case 'document': {
      const doc = hostCapture(m.docIds, 'docIds') as number[];
      const start = hostCapture(m.starts, 'starts') as number[];
      const inner = m.inner ? hostMask(m.inner) : null;
      return (b, h, q, kv) => doc[q] === doc[kv] && (!inner || inner(b, h, q - start[q]!, kv - start[kv]!));
    }
  }
}

/** Host evaluator of a score function (CPU path). */
export function hostScore(m: ScoreMod): ScoreModFn {
  if (m.kind === 'score-document') {
    const start = hostCapture(m.starts, 'starts') as number[];
    const inner = hostScore(m.inner);
    return (s, b, h, q, kv) => inner(s, b, h, q - start[q]!, kv - start[kv]!);
  }
  const f = rebind(m.fn as (...a: number[]) => unknown, m.captures);
  return (s, b, h, q, kv) => +(f(s, b, h, q, kv) as number);
}

/**
 * Types a captured tensor for indexing inside a score/mask function (`t[i]`, `t[i][j]`). It returns
 * the tensor itself: the compiler reads the index expressions; on the CPU path the capture is bound
 * to the tensor's values. Pass the tensor in `captures` under the name the function uses.
 * @example const bias = indexable(table, 2); scoreMod((s, b, h, q, kv) => s + bias[h]![q - kv + L]!, { bias: table, L });
 */
export function indexable(t: Tensor, rank: 1): readonly number[];
export function indexable(t: Tensor, rank: 2): readonly (readonly number[])[];
export function indexable(t: Tensor, _rank: 1 | 2): unknown {
  return t;
}
