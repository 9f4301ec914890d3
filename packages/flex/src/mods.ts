/**
 * Score and mask functions as values: a plain TS function with its captures, or a combination
 * (`andMasks`, `orMasks`, document masks). Each compiles to one IR (captures namespaced per leaf)
 * and evaluates on the host by calling the very same JS functions.
 */
import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Tensor } from '@webattn/core-tensor';
import { compileSource, type CaptureSig, type Compiled } from './compile.js';
import type { IR } from './ir.js';

/** Values a function may capture: numbers and 1-D/2-D tensors (float32, int32 or bool). */
export type Captures = Record<string, number | Tensor>;

/**
 * What a score/mask function receives as its captures parameter: each captured number as a number,
 * each captured tensor as nested arrays of its values (`c.bias[h][i]`). Reading an index outside a
 * tensor raises `INVALID_ARGUMENT` (the GPU raises it too, at the next read-back).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type CaptureValues = { readonly [name: string]: any };

/**
 * `(score, b, h, qIdx, kvIdx, captures) => number` — modifies one attention score. Read captured
 * values through the last parameter (`c.bias`, or destructure `{ bias }`): property names survive
 * minifiers, closure variables do not.
 */
export type ScoreModFn = (score: number, b: number, h: number, qIdx: number, kvIdx: number, captures: CaptureValues) => number;
/** `(b, h, qIdx, kvIdx, captures) => boolean` — true where query qIdx may attend key kvIdx. */
export type MaskModFn = (b: number, h: number, qIdx: number, kvIdx: number, captures: CaptureValues) => boolean;

/** A score function with its captures, or one applied per document of a packed sequence. */
export type ScoreMod =
  | { kind: 'score'; fn: ScoreModFn; captures: Captures }
  | { kind: 'score-document'; docIds: Tensor; starts: Tensor; inner: ScoreMod };

/** A mask function: a leaf with captures, a combination, or a document (packed sequences) mask. */
export type MaskMod =
  | { kind: 'mask'; fn: MaskModFn; captures: Captures }
  | { kind: 'and' | 'or'; parts: MaskMod[] }
  | { kind: 'not'; part: MaskMod }
  | { kind: 'document'; docIds: Tensor; starts: Tensor; inner: MaskMod | null };

/**
 * Wraps a score function and its captures (read through the function's last parameter).
 * @example const bias = scoreMod((s, b, h, q, kv, c) => s + c.table[h][q - kv + c.L], { table, L });
 */
export function scoreMod(fn: ScoreModFn, captures: Captures = {}): ScoreMod {
  checkCapturesObject(captures, 'captures');
  return { kind: 'score', fn, captures };
}

/**
 * Wraps a mask function and its captures (read through the function's last parameter).
 * @example const win = maskMod((b, h, q, kv, { w }) => q - kv <= w && q >= kv, { w: 256 });
 */
export function maskMod(fn: MaskModFn, captures: Captures = {}): MaskMod {
  checkCapturesObject(captures, 'captures');
  return { kind: 'mask', fn, captures };
}

function checkCapturesObject(c: unknown, argument: string): void {
  if (c === null || typeof c !== 'object' || Array.isArray(c) || c instanceof T.Tensor) {
    throw new WebattnError('INVALID_ARGUMENT', `${argument}: expected an object of named numbers and tensors, got ${describe(c)}`, { argument });
  }
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
  /** Global name of each captured number → its WGSL type (as the compiler typed it). */
  numberTypes: Map<string, 'i32' | 'f32'>;
  /** Cache key: sources and capture signatures. */
  key: string;
}

function signature(name: string, v: unknown, argument: string): CaptureSig {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new WebattnError('FLEX_COMPILE', `${argument}.${name}: captured numbers must be finite, got ${v}`, { argument });
    return { kind: 'number', integer: Number.isInteger(v) && Math.abs(v) < 2 ** 31 };
  }
  if (v instanceof T.Tensor) {
    v.assertLive(`${argument}.${name}`);
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

/** Compiled leaves per function object: (kind, prefix, capture signatures) → result (IR bound to parameters). */
const leafCache = new WeakMap<object, Map<string, Compiled>>();
/** Compiled mods per mod object and (tag, argument, capture signatures). */
const modCache = new WeakMap<object, Map<string, CompiledMod>>();

function compileLeaf(fn: ScoreModFn | MaskModFn, kind: 'score' | 'mask', sigs: Record<string, CaptureSig>, argument: string, bindIr: IR[] | undefined, prefix: string): Compiled {
  if (typeof fn !== 'function') throw new WebattnError('FLEX_COMPILE', `${argument}: expected a function, got ${describe(fn)}`, { argument });
  if (bindIr) return compileSource(fn as never, kind, sigs, argument, bindIr, prefix);
  const key = `${kind}|${prefix}|${argument}|${Object.entries(sigs).map(([n, s]) => `${n}:${sigKey(s)}`).join(',')}`;
  let per = leafCache.get(fn);
  if (!per) leafCache.set(fn, (per = new Map()));
  let hit = per.get(key);
  if (!hit) per.set(key, (hit = compileSource(fn as never, kind, sigs, argument, undefined, prefix)));
  return hit;
}

/**
 * Compiles a score or mask function (or combination) into one IR; `tag` namespaces its captures.
 * Cached per mod object (and the parse per function object), so a mod reused across calls compiles once.
 */
export function compileMod(m: ScoreMod | MaskMod, tag: string, argument: string, bind?: IR[]): CompiledMod {
  const sigsOf = (node: { captures: Captures }) => {
    checkCapturesObject(node.captures, `${argument} captures`);
    const sigs: Record<string, CaptureSig> = {};
    for (const [name, v] of Object.entries(node.captures)) sigs[name] = signature(name, v, `${argument} captures`);
    return sigs;
  };
  const cacheable = !bind;
  // the signature part of the key: tensors may be swapped for others of the same rank/dtype
  const sigTrail: string[] = [];
  const walk = (node: ScoreMod | MaskMod) => {
    if (node.kind === 'score' || node.kind === 'mask') sigTrail.push(Object.entries(sigsOf(node)).map(([n, s]) => `${n}:${sigKey(s)}`).join(','));
    else if ('parts' in node) node.parts.forEach(walk);
    else if (node.kind === 'not') walk(node.part);
    else if (node.inner) walk(node.inner);
  };
  walk(m);
  const cacheKey = `${tag}|${argument}|${sigTrail.join(';')}`;
  if (cacheable) {
    const hit = modCache.get(m)?.get(cacheKey);
    if (hit && [...hit.captures.values()].every((v) => !(v instanceof T.Tensor) || !v.storage.disposed)) return refreshCaptures(hit, m, tag);
  }
  const captures = new Map<string, number | Tensor>();
  const numberTypes = new Map<string, 'i32' | 'f32'>();
  let leaf = 0;
  const keys: string[] = [];
  const go = (node: ScoreMod | MaskMod, bindIr?: IR[]): IR => {
    switch (node.kind) {
      case 'score':
      case 'mask': {
        const prefix = `${tag}${leaf++}_`;
        const sigs = sigsOf(node);
        const c = compileLeaf(node.fn, node.kind, sigs, argument, bindIr, prefix);
        for (const name of c.used) captures.set(prefix + name, node.captures[name]!);
        for (const [name, ty] of c.numberTypes) numberTypes.set(prefix + name, ty);
        keys.push(node.fn.toString(), ...Object.entries(sigs).map(([n, s]) => `${n}:${sigKey(s)}`));
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
        const P = (slot: 'b' | 'h' | 'q' | 'kv'): IR => (bindIr ? bindIr[['b', 'h', 'q', 'kv'].indexOf(slot)]! : { k: 'param', slot, ty: 'i32' });
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
      default:
        throw new WebattnError('FLEX_COMPILE', `${argument}: expected a score/mask function or mod, got ${describe(node)}`, { argument });
    }
  };
  const ir = go(m, bind);
  const out: CompiledMod = { ir, captures, numberTypes, key: `${tag}:${keys.join('|')}` };
  if (cacheable) {
    let per = modCache.get(m);
    if (!per) modCache.set(m, (per = new Map()));
    per.set(cacheKey, out);
  }
  return out;
}

/** A cached compile with the capture values the mod holds now (a leaf's captures object may have been edited). */
function refreshCaptures(c: CompiledMod, m: ScoreMod | MaskMod, tag: string): CompiledMod {
  const fresh = new Map<string, number | Tensor>();
  let leaf = 0; // numbered as compileMod numbers them: leaves and document nodes, depth first
  const walk = (node: ScoreMod | MaskMod): void => {
    if ('parts' in node) return node.parts.forEach(walk);
    if (node.kind === 'not') return walk(node.part);
    const prefix = `${tag}${leaf++}_`;
    if (node.kind === 'score' || node.kind === 'mask') {
      for (const name of Object.keys(node.captures)) if (c.captures.has(prefix + name)) fresh.set(prefix + name, node.captures[name]!);
      return;
    }
    if (node.kind === 'document') fresh.set(`${prefix}doc`, node.docIds);
    fresh.set(`${prefix}start`, node.starts);
    if (node.inner) walk(node.inner);
  };
  walk(m);
  return { ...c, captures: fresh };
}

/**
 * Host view of a capture for the CPU path: numbers as-is, tensors as nested arrays of their values
 * whose out-of-range reads raise `INVALID_ARGUMENT` (JS would give undefined → NaN; the GPU clamps and
 * raises at read-back). Tensors must be on the CPU device.
 */
function hostCapture(v: number | Tensor, name: string, argument: string): unknown {
  if (typeof v === 'number') return v;
  if (v.device.backend !== 'cpu') {
    throw new WebattnError('DEVICE_MISMATCH', `${argument} captures.${name}: the CPU path needs CPU tensors, got one on ${v.device.info.adapter}`, { argument });
  }
  v.assertLive(`${argument} captures.${name}`);
  const flat = Array.from(T.readValues(v));
  const guard = (arr: number[] | unknown[], dim: number): unknown =>
    new Proxy(arr, {
      get(target, key, recv) {
        if (typeof key === 'string') {
          const i = Number(key);
          if (key === 'NaN' || (key !== '' && !Number.isNaN(i))) {
            if (!(Number.isInteger(i) && i >= 0 && i < target.length)) {
              throw new WebattnError('INVALID_ARGUMENT', `${argument}: captured tensor '${name}' (shape ${describe(v.shape)}) indexed at ${key} in dimension ${dim}, outside [0, ${target.length})`, { argument });
            }
          }
        }
        return Reflect.get(target, key, recv);
      },
    });
  if (v.rank === 1) return guard(flat, 0);
  const [r, c] = v.shape as [number, number];
  return guard(Array.from({ length: r }, (_, i) => guard(flat.slice(i * c, (i + 1) * c), 1)), 0);
}

/** The captures parameter a function receives on the host. */
function hostCaptures(captures: Captures, argument: string): CaptureValues {
  const out: Record<string, unknown> = {};
  for (const [n, v] of Object.entries(captures)) out[n] = hostCapture(v, n, argument);
  return Object.freeze(out);
}

/**
 * The host function of a leaf: called with its captures parameter. Closure captures of tensors
 * (the unminified convenience) are bound by re-creating the function from its source with the host
 * views in scope.
 */
function hostLeaf(fn: (...a: never[]) => unknown, kind: 'score' | 'mask', captures: Captures, argument: string): (...a: number[]) => unknown {
  const caps = hostCaptures(captures, argument);
  const closureTensors = compileClosureNames(fn, kind, captures, argument).filter((n) => captures[n] instanceof T.Tensor);
  const call = fn as unknown as (...a: unknown[]) => unknown;
  if (!closureTensors.length) return (...a: number[]) => call(...a, caps);
  const make = new Function(...closureTensors, `return (${fn.toString()});`) as (...v: unknown[]) => (...a: unknown[]) => unknown;
  const bound = make(...closureTensors.map((n) => caps[n]));
  return (...a: number[]) => bound(...a, caps);
}

function compileClosureNames(fn: (...a: never[]) => unknown, kind: 'score' | 'mask', captures: Captures, argument: string): string[] {
  const sigs: Record<string, CaptureSig> = {};
  for (const [name, v] of Object.entries(captures)) sigs[name] = signature(name, v, `${argument} captures`);
  return [...compileLeaf(fn as never, kind, sigs, argument, undefined, '').closure];
}

/** Host evaluator of a mask (CPU path, block-mask building). */
export function hostMask(m: MaskMod, argument = 'maskMod'): (b: number, h: number, q: number, kv: number) => boolean {
  switch (m.kind) {
    case 'mask': {
      const f = hostLeaf(m.fn as never, 'mask', m.captures, argument);
      return (b, h, q, kv) => !!f(b, h, q, kv);
    }
    case 'and': {
      const ps = m.parts.map((p) => hostMask(p, argument));
      return (b, h, q, kv) => ps.every((p) => p(b, h, q, kv));
    }
    case 'or': {
      const ps = m.parts.map((p) => hostMask(p, argument));
      return (b, h, q, kv) => ps.some((p) => p(b, h, q, kv));
    }
    case 'not': {
      const p = hostMask(m.part, argument);
      return (b, h, q, kv) => !p(b, h, q, kv);
    }
    case 'document': {
      const doc = hostCapture(m.docIds, 'docIds', argument) as number[];
      const start = hostCapture(m.starts, 'starts', argument) as number[];
      const inner = m.inner ? hostMask(m.inner, argument) : null;
      return (b, h, q, kv) => doc[q] === doc[kv] && (!inner || inner(b, h, q - start[q]!, kv - start[kv]!));
    }
  }
}

/** Host evaluator of a score function (CPU path). */
export function hostScore(m: ScoreMod, argument = 'scoreMod'): (s: number, b: number, h: number, q: number, kv: number) => number {
  if (m.kind === 'score-document') {
    const start = hostCapture(m.starts, 'starts', argument) as number[];
    const inner = hostScore(m.inner, argument);
    return (s, b, h, q, kv) => inner(s, b, h, q - start[q]!, kv - start[kv]!);
  }
  const f = hostLeaf(m.fn as never, 'score', m.captures, argument);
  return (s, b, h, q, kv) => +(f(s, b, h, q, kv) as number);
}

/**
 * Checks that the document tables of a mod cover the sequence: a document mask built for n tokens
 * must be used at qLen = kvLen = n. Throws `SHAPE_MISMATCH` naming `argument`.
 */
export function checkModLengths(m: ScoreMod | MaskMod, qLen: number, kvLen: number, argument: string): void {
  const walk = (node: ScoreMod | MaskMod): void => {
    if ('parts' in node) return node.parts.forEach(walk);
    if (node.kind === 'not') return walk(node.part);
    if (node.kind === 'document' || node.kind === 'score-document') {
      const n = node.starts.shape[0]!;
      if (n !== qLen || n !== kvLen) {
        throw new WebattnError('SHAPE_MISMATCH', `${argument}: a document ${node.kind === 'document' ? 'mask' : 'score mod'} built for ${n} tokens used with qLen=${qLen}, kvLen=${kvLen}`, { argument });
      }
      if (node.inner) walk(node.inner);
    }
  };
  walk(m);
}

/**
 * Types a captured tensor for indexing inside a closure-capturing score/mask function (`t[i]`,
 * `t[i][j]`). It returns the tensor itself. Closure captures break under minifiers: prefer the
 * captures parameter, `(s, b, h, q, kv, c) => s + c.bias[h][q - kv]`.
 * @example const bias = indexable(table, 2); scoreMod((s, b, h, q, kv) => s + bias[h]![q - kv + L]!, { bias: table, L });
 */
export function indexable(t: Tensor, rank: 1): readonly number[];
export function indexable(t: Tensor, rank: 2): readonly (readonly number[])[];
export function indexable(t: Tensor, _rank: 1 | 2): unknown {
  return t;
}
