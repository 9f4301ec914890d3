import { needsGrad, noGrad } from './autograd.js';
import { getDefaultDevice, type Device } from './device.js';
import { allocTyped, assertDType, isFloat, roundTo, type DType } from './dtype.js';
import { check, WebattnError } from './errors.js';
import { getKernel, runKernel, type AttrsOf, type KernelAttrs } from './registry.js';
import { tidy, untrack } from './scope.js';
import { broadcastShapes, describe, isContiguous, normAxis, shapesEqual, sizeOf, validateShape } from './shape.js';
import { fromTyped, Tensor, type TensorOptions } from './tensor.js';

// ------------------------------------------------------------------------------ helpers
function assertTensor(t: unknown, argument: string): asserts t is Tensor {
  if (!(t instanceof Tensor)) {
    throw new WebattnError('INVALID_ARGUMENT', `${argument}: expected a Tensor, got ${describe(t)}`, { argument });
  }
  t.assertLive(argument);
}

/** Throws `DEVICE_MISMATCH` unless every tensor lives on the first one's device. */
export function sameDevice(tensors: readonly (Tensor | null | undefined)[], names: readonly string[]): Device {
  const first = tensors.find((t) => t) as Tensor;
  tensors.forEach((t, i) => {
    if (t && t.device !== first.device) {
      throw new WebattnError(
        'DEVICE_MISMATCH',
        `${names[i]}: expected a tensor on ${first.device.info.adapter} (like ${names[tensors.indexOf(first)]}), got one on ${t.device.info.adapter}`,
        { argument: names[i] },
      );
    }
  });
  return first.device;
}

/**
 * Records `backward` on the tape for `outputs[0]` when an input requires grad. `saved` are handles
 * the record takes over (make them with `t.detach()`): the tensors its backward reads. They leave
 * any `tidy` scope and are disposed when the record is released — after `backward()` (unless
 * `retainGraph`), or when a scope frees the graph — or at once when nothing is recorded. A backward
 * should read only `saved` tensors (not the inputs or outputs, which their owners may dispose).
 *
 * @example
 * const xs = x.detach();
 * return record([out], 'exp', [x], (g) => [mul(g, xs)], [xs])[0];
 */
export function record(
  outputs: Tensor[],
  name: string,
  inputs: readonly Tensor[],
  backward: ((g: Tensor) => (Tensor | null)[]) | null,
  saved: Tensor[] = [],
): Tensor[] {
  if (backward && needsGrad(inputs)) {
    const out = outputs[0]!;
    out.requiresGrad = true;
    for (const t of saved) untrack(t);
    out.gradFn = { name, inputs, backward, saved };
  } else for (const t of saved) t.dispose();
  return outputs;
}

/** Runs a kernel; temporaries it makes (contiguous copies, partial reductions) are freed at once. */
function kernel<N extends string>(name: N, inputs: readonly Tensor[], attrs?: AttrsOf<N>): Tensor[] {
  return tidy(() => runKernel(name, inputs[0]!.device, inputs, attrs));
}

function asTensor(v: Tensor | number, like: Tensor, argument: string): Tensor {
  if (typeof v === 'number') return full([], v, { dtype: like.dtype, device: like.device });
  assertTensor(v, argument);
  return v;
}

// ------------------------------------------------------------------------------ creation
/**
 * Tensor filled with `value`.
 * @example const m = full([2, 3], -Infinity, { device });
 */
export function full(shape: readonly number[], value: number, options: TensorOptions = {}): Tensor {
  const s = validateShape(shape, 'shape');
  const dtype = options.dtype ?? 'float32';
  assertDType(dtype, 'options.dtype');
  const device = options.device ?? getDefaultDevice();
  return new Tensor(device.fill(dtype, sizeOf(s), roundTo(dtype, value)), s, undefined, 0, options.requiresGrad ?? false);
}

/** Tensor of zeros. @example const z = zeros([4, 4], { device }); */
export function zeros(shape: readonly number[], options: TensorOptions = {}): Tensor {
  return full(shape, 0, options);
}

/** Tensor of ones. @example const o = ones([3], { dtype: 'int32' }); */
export function ones(shape: readonly number[], options: TensorOptions = {}): Tensor {
  return full(shape, 1, options);
}

/** Zeros with the shape, dtype and device of `t`. */
export function zerosLike(t: Tensor): Tensor {
  return full(t.shape, 0, { dtype: t.dtype, device: t.device });
}

/**
 * `[start, start+step, ...)` below `end` (float32 unless `options.dtype`).
 * @example arange(0, 5, 1, { dtype: 'int32' }) // [0,1,2,3,4]
 */
export function arange(start: number, end: number, step = 1, options: TensorOptions = {}): Tensor {
  check(Number.isFinite(start) && Number.isFinite(end), 'INVALID_ARGUMENT', () => `start/end: expected finite numbers, got ${start}, ${end}`, 'end');
  check(Number.isFinite(step) && step !== 0, 'INVALID_ARGUMENT', () => `step: expected a non-zero finite number, got ${step}`, 'step');
  const n = Math.max(0, Math.ceil((end - start) / step));
  const dtype = options.dtype ?? 'float32';
  const arr = allocTyped(dtype, n);
  for (let i = 0; i < n; i++) arr[i] = roundTo(dtype, start + i * step);
  return fromTyped(arr, [n], dtype, options.device ?? getDefaultDevice(), options.requiresGrad ?? false);
}

// ------------------------------------------------------------------------------ views
function view(x: Tensor, shape: readonly number[], strides: readonly number[], offset: number, name: string, back: (g: Tensor) => Tensor): Tensor {
  const out = new Tensor(x.storage, shape, strides, offset);
  return record([out], name, [x], (g) => [back(g)])[0]!;
}

/**
 * Strides that present a tensor of `shape`/`strides` as `newShape` without moving data, or null when
 * no such strides exist (ATen's `computeStride`: every run of dims that `newShape` splits or merges
 * must be contiguous within itself).
 */
function viewStrides(shape: readonly number[], strides: readonly number[], newShape: readonly number[]): number[] | null {
  if (sizeOf(shape) === 0 || shape.length === 0) return null;
  const out = new Array<number>(newShape.length);
  let viewD = newShape.length - 1;
  let chunkBase = strides[strides.length - 1]!;
  let tensorNumel = 1;
  let viewNumel = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    tensorNumel *= shape[d]!;
    if (d === 0 || (shape[d - 1] !== 1 && strides[d - 1] !== tensorNumel * chunkBase)) {
      while (viewD >= 0 && (viewNumel < tensorNumel || newShape[viewD] === 1)) {
        out[viewD] = viewNumel * chunkBase;
        viewNumel *= newShape[viewD]!;
        viewD--;
      }
      if (viewNumel !== tensorNumel) return null;
      if (d > 0) {
        chunkBase = strides[d - 1]!;
        tensorNumel = 1;
        viewNumel = 1;
      }
    }
  }
  return viewD === -1 ? out : null;
}

/** Reshape (one dimension may be -1); a view when the layout allows, else a copy. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  assertTensor(x, 'x');
  check(Array.isArray(shape), 'INVALID_ARGUMENT', () => `shape: expected an array, got ${describe(shape)}`, 'shape');
  const s = shape.slice();
  const neg = s.filter((d) => d === -1).length;
  check(neg <= 1, 'INVALID_ARGUMENT', () => `shape: at most one dimension may be -1, got ${describe(shape)}`, 'shape');
  if (neg === 1) {
    const known = sizeOf(s.filter((d) => d !== -1));
    check(known > 0 && x.size % known === 0, 'SHAPE_MISMATCH', () => `shape: cannot infer -1 in ${describe(shape)} for ${x.size} elements`, 'shape');
    s[s.indexOf(-1)] = x.size / known;
  }
  validateShape(s, 'shape');
  check(sizeOf(s) === x.size, 'SHAPE_MISMATCH', () => `shape: ${describe(shape)} holds ${sizeOf(s)} elements, tensor x of shape ${describe(x.shape)} has ${x.size}`, 'shape');
  if (shapesEqual(s, x.shape)) return x;
  const xs0 = x.shape;
  const vs = x.isContiguous ? null : viewStrides(x.shape, x.strides, s);
  if (vs) return view(x, s, vs, x.offset, 'reshape', (g) => reshape(g, xs0)); // a strided view (PyTorch's view rule)
  return tidy(() => {
    const src = x.isContiguous ? x : contiguous(x);
    const strides = new Array<number>(s.length);
    let acc = 1;
    for (let i = s.length - 1; i >= 0; i--) {
      strides[i] = acc;
      acc *= s[i]!;
    }
    const xs = x.shape;
    return view(src, s, strides, src.offset, 'reshape', (g) => reshape(g, xs));
  });
}

/** Swaps two dimensions (view). */
export function transpose(x: Tensor, dim0: number, dim1: number): Tensor {
  assertTensor(x, 'x');
  const a = normAxis(dim0, x.rank, 'dim0');
  const b = normAxis(dim1, x.rank, 'dim1');
  const perm = x.shape.map((_, i) => i);
  perm[a] = b;
  perm[b] = a;
  return permute(x, perm);
}

/** Reorders dimensions (view). */
export function permute(x: Tensor, dims: readonly number[]): Tensor {
  assertTensor(x, 'x');
  const d = dims.map((v) => normAxis(v, x.rank, 'dims'));
  check(d.length === x.rank && new Set(d).size === x.rank, 'INVALID_ARGUMENT', () => `dims: expected a permutation of 0..${x.rank - 1}, got ${describe(dims)}`, 'dims');
  if (d.every((v, i) => v === i)) return x;
  const inv = new Array<number>(d.length);
  d.forEach((v, i) => (inv[v] = i));
  return view(x, d.map((i) => x.shape[i]!), d.map((i) => x.strides[i]!), x.offset, 'permute', (g) => permute(g, inv));
}

/** Elements start ≤ i < end (step > 0) of dimension `dim` (view); negative start/end count from the end. */
export function slice(x: Tensor, dim: number, start: number, end?: number, step = 1): Tensor {
  assertTensor(x, 'x');
  const d = normAxis(dim, x.rank, 'dim');
  const n = x.shape[d]!;
  check(Number.isInteger(step) && step > 0, 'INVALID_ARGUMENT', () => `step: expected a positive integer, got ${describe(step)}`, 'step');
  check(Number.isInteger(start) && (end === undefined || Number.isInteger(end)), 'INVALID_ARGUMENT', () => `start/end: expected integers, got ${describe(start)}, ${describe(end)}`, 'start');
  const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + n : v, 0), n);
  const s0 = clamp(start);
  const e0 = Math.max(clamp(end ?? n), s0);
  const len = Math.ceil((e0 - s0) / step);
  const shape = x.shape.slice();
  shape[d] = len;
  const strides = x.strides.slice();
  strides[d] = x.strides[d]! * step;
  const xs = x.shape;
  return view(x, shape, strides, x.offset + s0 * x.strides[d]!, 'slice', (g) => {
    const z = zeros(xs, { dtype: g.dtype, device: g.device });
    copyInto(slice(z, d, s0, e0, step), g);
    return z;
  });
}

/** Broadcasts size-1 dimensions (and new leading ones) to `shape` (view with stride 0). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  assertTensor(x, 'x');
  const s = validateShape(shape.map((v, i) => (v === -1 ? x.shape[i - (shape.length - x.rank)] ?? -1 : v)), 'shape');
  check(s.length >= x.rank, 'SHAPE_MISMATCH', () => `shape: cannot expand shape ${describe(x.shape)} to fewer dimensions ${describe(shape)}`, 'shape');
  const off = s.length - x.rank;
  const strides = s.map((d, i) => {
    if (i < off) return 0;
    const xd = x.shape[i - off]!;
    check(xd === d || xd === 1, 'SHAPE_MISMATCH', () => `shape: cannot expand dimension ${i - off} of size ${xd} to ${d} (from ${describe(x.shape)} to ${describe(s)})`, 'shape');
    return xd === d ? x.strides[i - off]! : 0;
  });
  if (shapesEqual(s, x.shape)) return x;
  const xs = x.shape;
  return view(x, s, strides, x.offset, 'expand', (g) => sumToShape(g, xs));
}

/** Row-major copy (no copy when already contiguous). */
export function contiguous(x: Tensor): Tensor {
  assertTensor(x, 'x');
  if (x.isContiguous) return x;
  const [out] = kernel('unary', [x], { op: 'identity' });
  return record([out!], 'contiguous', [x], (g) => [g])[0]!;
}

/** Copies `src` (broadcast) into the view `dst` in place; no autograd. Returns `dst`. */
export function copyInto(dst: Tensor, src: Tensor): Tensor {
  assertTensor(dst, 'dst');
  assertTensor(src, 'src');
  sameDevice([dst, src], ['dst', 'src']);
  broadcastShapes(src.shape, dst.shape, ['src', 'dst']);
  kernel('copy_into', [src, dst]);
  return dst;
}

/** Sums `g` over broadcast dimensions so that it has `shape` (used by backward of broadcasting ops). */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (shapesEqual(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  return tidy(() => {
    let r = axes.length ? sum(g, axes, true) : g;
    if (lead > 0) r = reshape(r, shape);
    return r;
  });
}

// ------------------------------------------------------------------------------ elementwise
type UnaryOp = 'neg' | 'exp' | 'log' | 'tanh' | 'sqrt' | 'abs' | 'relu' | 'sigmoid';

/** `saves`: what the backward reads — the input `x`, the output `y`, or nothing. */
function unary(
  x: Tensor,
  op: UnaryOp | 'pow' | 'gelu' | 'gelu_tanh',
  attrs: KernelAttrs,
  saves: 'x' | 'y' | null,
  back: (g: Tensor, saved: Tensor) => Tensor,
): Tensor {
  assertTensor(x, 'x');
  check(isFloat(x.dtype) || op === 'neg' || op === 'abs', 'DTYPE_UNSUPPORTED', () => `x: ${op} expects a floating-point tensor, got ${x.dtype}`, 'x');
  const [out] = kernel('unary', [x], { op, ...attrs });
  const keep = saves === 'x' ? x.detach() : saves === 'y' ? out!.detach() : null;
  return record([out!], op, [x], (g) => [back(g, keep!)], keep ? [keep] : [])[0]!;
}

/** Elementwise −x. */
export const neg = (x: Tensor): Tensor => unary(x, 'neg', {}, null, (g) => neg(g));
/** Elementwise eˣ. */
export const exp = (x: Tensor): Tensor => unary(x, 'exp', {}, 'y', (g, y) => mul(g, y));
/** Elementwise natural logarithm. */
export const log = (x: Tensor): Tensor => unary(x, 'log', {}, 'x', (g, xs) => div(g, xs));
/** Elementwise tanh. */
export const tanh = (x: Tensor): Tensor => unary(x, 'tanh', {}, 'y', (g, y) => mul(g, sub(1, mul(y, y))));
/** Elementwise square root. */
export const sqrt = (x: Tensor): Tensor => unary(x, 'sqrt', {}, 'y', (g, y) => div(g, mul(y, 2)));
/** Elementwise |x| (gradient sign(x), 0 at 0). */
export const abs = (x: Tensor): Tensor =>
  unary(x, 'abs', {}, 'x', (g, xs) => mul(g, sub(cast(gt(xs, 0), g.dtype), cast(lt(xs, 0), g.dtype))));
/** Elementwise max(x, 0). */
export const relu = (x: Tensor): Tensor => unary(x, 'relu', {}, 'x', (g, xs) => mul(g, cast(gt(xs, 0), g.dtype)));
/** Elementwise logistic sigmoid. */
export const sigmoid = (x: Tensor): Tensor => unary(x, 'sigmoid', {}, 'y', (g, y) => mul(g, mul(y, sub(1, y))));

/** Elementwise xᵖ for a scalar exponent `p`. */
export function pow(x: Tensor, p: number): Tensor {
  check(typeof p === 'number' && Number.isFinite(p), 'INVALID_ARGUMENT', () => `p: expected a finite number, got ${describe(p)}`, 'p');
  return unary(x, 'pow', { p }, 'x', (g, xs) => mul(g, mul(pow(xs, p - 1), p)));
}

/**
 * GELU: `approximate: 'none'` is x·Φ(x) (exact, erf); `'tanh'` is HF's "gelu_new".
 * @example const h = gelu(x, 'tanh');
 */
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  check(approximate === 'none' || approximate === 'tanh', 'INVALID_ARGUMENT', () => `approximate: expected 'none' or 'tanh', got ${describe(approximate)}`, 'approximate');
  const op = approximate === 'tanh' ? 'gelu_tanh' : 'gelu';
  return unary(x, op, {}, 'x', (g, xs) => kernel('gelu_backward', [xs, g], { approximate })[0]!);
}

/** Converts to `dtype` (floats truncate toward zero into integers; non-zero → true for bool). */
export function cast(x: Tensor, dtype: DType): Tensor {
  assertTensor(x, 'x');
  assertDType(dtype, 'dtype');
  if (x.dtype === dtype) return x;
  const [out] = kernel('unary', [x], { op: 'identity', outDtype: dtype });
  return record([out!], 'cast', [x], isFloat(dtype) && isFloat(x.dtype) ? (g) => [cast(g, x.dtype)] : null)[0]!;
}

type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'maximum' | 'minimum' | 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge' | 'and' | 'or';
const COMPARE = new Set<BinaryOp>(['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'and', 'or']);

function binary(
  op: BinaryOp,
  a0: Tensor | number,
  b0: Tensor | number,
  back?: (g: Tensor, a: Tensor, b: Tensor) => [Tensor | null, Tensor | null],
  saves = true,
): Tensor {
  if (typeof a0 !== 'number') assertTensor(a0, 'a');
  if (typeof b0 !== 'number') assertTensor(b0, 'b');
  return tidy(() => {
    const a = typeof a0 === 'number' ? asTensor(a0, b0 as Tensor, 'a') : a0;
    const b = asTensor(b0, a, 'b');
    sameDevice([a, b], ['a', 'b']);
    check(a.dtype === b.dtype, 'DTYPE_UNSUPPORTED', () => `b: expected dtype ${a.dtype} (the dtype of a), got ${b.dtype}; cast one first`, 'b');
    if (op === 'and' || op === 'or') check(a.dtype === 'bool', 'DTYPE_UNSUPPORTED', () => `a: logical ${op} expects bool tensors, got ${a.dtype}`, 'a');
    const shape = broadcastShapes(a.shape, b.shape, ['a', 'b']);
    const [out] = kernel('binary', [a, b], { op, shape });
    if (!back || COMPARE.has(op)) return out!;
    const as = a.shape;
    const bs = b.shape;
    const sa = saves ? a.detach() : null;
    const sb = saves ? b.detach() : null;
    return record(
      [out!],
      op,
      [a, b],
      (g) => {
        const [ga, gb] = back(g, sa!, sb!);
        return [ga && sumToShape(ga, as), gb && sumToShape(gb, bs)];
      },
      saves ? [sa!, sb!] : [],
    )[0]!;
  });
}

/** a + b with broadcasting (numbers allowed on either side). */
export const add = (a: Tensor | number, b: Tensor | number): Tensor => binary('add', a, b, (g) => [g, g], false);
/** a − b with broadcasting. */
export const sub = (a: Tensor | number, b: Tensor | number): Tensor => binary('sub', a, b, (g) => [g, neg(g)], false);
/** a · b with broadcasting. */
export const mul = (a: Tensor | number, b: Tensor | number): Tensor => binary('mul', a, b, (g, x, y) => [mul(g, y), mul(g, x)]);
/** a / b with broadcasting. */
export const div = (a: Tensor | number, b: Tensor | number): Tensor =>
  binary('div', a, b, (g, x, y) => [div(g, y), neg(div(mul(g, x), mul(y, y)))]);
/** Elementwise maximum (ties send the gradient to a). */
export const maximum = (a: Tensor | number, b: Tensor | number): Tensor =>
  binary('maximum', a, b, (g, x, y) => {
    const m = cast(ge(x, y), g.dtype);
    return [mul(g, m), mul(g, sub(1, m))];
  });
/** Elementwise minimum (ties send the gradient to a). */
export const minimum = (a: Tensor | number, b: Tensor | number): Tensor =>
  binary('minimum', a, b, (g, x, y) => {
    const m = cast(le(x, y), g.dtype);
    return [mul(g, m), mul(g, sub(1, m))];
  });
/** a == b → bool. */
export const eq = (a: Tensor | number, b: Tensor | number): Tensor => binary('eq', a, b);
/** a != b → bool. */
export const ne = (a: Tensor | number, b: Tensor | number): Tensor => binary('ne', a, b);
/** a < b → bool. */
export const lt = (a: Tensor | number, b: Tensor | number): Tensor => binary('lt', a, b);
/** a <= b → bool. */
export const le = (a: Tensor | number, b: Tensor | number): Tensor => binary('le', a, b);
/** a > b → bool. */
export const gt = (a: Tensor | number, b: Tensor | number): Tensor => binary('gt', a, b);
/** a >= b → bool. */
export const ge = (a: Tensor | number, b: Tensor | number): Tensor => binary('ge', a, b);
/** Logical and of bool tensors. */
export const logicalAnd = (a: Tensor, b: Tensor): Tensor => binary('and', a, b);
/** Logical or of bool tensors. */
export const logicalOr = (a: Tensor, b: Tensor): Tensor => binary('or', a, b);

/**
 * `cond ? a : b` elementwise with broadcasting; `cond` is bool.
 * @example const masked = where(mask, scores, -Infinity);
 */
export function where(cond: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
  assertTensor(cond, 'cond');
  check(cond.dtype === 'bool', 'DTYPE_UNSUPPORTED', () => `cond: expected a bool tensor, got ${cond.dtype}`, 'cond');
  if (typeof a !== 'number') assertTensor(a, 'a');
  if (typeof b !== 'number') assertTensor(b, 'b');
  return tidy(() => {
    const like = a instanceof Tensor ? a : b instanceof Tensor ? b : null;
    const ta = like ? asTensor(a, like, 'a') : full([], a as number, { device: cond.device });
    const tb = asTensor(b, ta, 'b');
    sameDevice([cond, ta, tb], ['cond', 'a', 'b']);
    check(ta.dtype === tb.dtype, 'DTYPE_UNSUPPORTED', () => `b: expected dtype ${ta.dtype} (the dtype of a), got ${tb.dtype}`, 'b');
    const shape = broadcastShapes(broadcastShapes(cond.shape, ta.shape, ['cond', 'a']), tb.shape, ['a', 'b']);
    const [out] = kernel('where', [cond, ta, tb], { shape });
    const cs = cond.detach();
    const sa = ta.shape;
    const sb = tb.shape;
    return record(
      [out!],
      'where',
      [ta, tb],
      (g) => {
        const z = zeros([], { dtype: g.dtype, device: g.device });
        return [sumToShape(where(cs, g, z), sa), sumToShape(where(cs, z, g), sb)];
      },
      [cs],
    )[0]!;
  });
}

// ------------------------------------------------------------------------------ reductions
function axesOf(x: Tensor, axis: number | number[] | undefined): number[] {
  const list = axis === undefined ? x.shape.map((_, i) => i) : Array.isArray(axis) ? axis : [axis];
  const n = list.map((a) => normAxis(a, x.rank, 'axis'));
  check(new Set(n).size === n.length, 'INVALID_ARGUMENT', () => `axis: repeated axis in ${describe(axis)}`, 'axis');
  return n.sort((p, q) => p - q);
}

function reduceRaw(x: Tensor, op: 'sum' | 'max' | 'min', axes: number[], keepdim: boolean): Tensor {
  return tidy(() => {
    let r = x;
    for (const a of axes) r = kernel('reduce', [r], { op, axis: a })[0]!;
    if (r === x) r = x.detach();
    if (!keepdim) r = reshape(r.detach(), x.shape.filter((_, i) => !axes.includes(i))).detach();
    return r;
  });
}

function keptShape(x: Tensor, axes: number[]): number[] {
  return x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

/** Sum over `axis` (all axes when omitted); `keepdim` keeps size-1 dims. */
export function sum(x: Tensor, axis?: number | number[], keepdim = false): Tensor {
  assertTensor(x, 'x');
  const axes = axesOf(x, axis);
  const out = reduceRaw(x, 'sum', axes, keepdim);
  const kept = keptShape(x, axes);
  const xs = x.shape;
  return record([out], 'sum', [x], (g) => [expand(reshape(g, kept), xs)])[0]!;
}

/** Mean over `axis` (all axes when omitted). */
export function mean(x: Tensor, axis?: number | number[], keepdim = false): Tensor {
  assertTensor(x, 'x');
  const axes = axesOf(x, axis);
  const n = axes.reduce((p, a) => p * x.shape[a]!, 1);
  return tidy(() => div(sum(x, axes, keepdim), n));
}

function extreme(x: Tensor, op: 'max' | 'min', axis: number | number[] | undefined, keepdim: boolean): Tensor {
  assertTensor(x, 'x');
  const axes = axesOf(x, axis);
  axes.forEach((a) => check(x.shape[a]! > 0, 'INVALID_ARGUMENT', () => `x: ${op} over an empty axis ${a} of shape ${describe(x.shape)}`, 'x'));
  return tidy(() => {
    const out = reduceRaw(x, op, axes, true);
    const res = keepdim ? out : reshape(out.detach(), x.shape.filter((_, i) => !axes.includes(i))).detach();
    const xs = x.detach();
    const os = out.detach();
    const kept = keptShape(x, axes);
    return record(
      [res],
      op,
      [x],
      (g) => {
        // gradient split evenly between ties, like torch.amax
        const m = cast(eq(xs, os), g.dtype);
        const count = sum(m, axes, true);
        return [div(mul(reshape(g, kept), m), count)];
      },
      [xs, os],
    )[0]!;
  });
}

/** Maximum over `axis` (all when omitted); the gradient is split between ties (like `torch.amax`). */
export const max = (x: Tensor, axis?: number | number[], keepdim = false): Tensor => extreme(x, 'max', axis, keepdim);
/** Minimum over `axis` (all when omitted). */
export const min = (x: Tensor, axis?: number | number[], keepdim = false): Tensor => extreme(x, 'min', axis, keepdim);

// ------------------------------------------------------------------------------ softmax family
function lastAxisOp(x: Tensor, axis: number, fn: (t: Tensor) => Tensor): Tensor {
  const a = normAxis(axis, x.rank, 'axis');
  if (a === x.rank - 1) return fn(x);
  return tidy(() => transpose(fn(transpose(x, a, x.rank - 1)), a, x.rank - 1));
}

/**
 * Softmax along `axis` (default last), numerically stable; a row of all −∞ gives zeros.
 * @example const p = softmax(scores); // [..., L]
 */
export function softmax(x: Tensor, axis = -1): Tensor {
  assertTensor(x, 'x');
  check(isFloat(x.dtype), 'DTYPE_UNSUPPORTED', () => `x: softmax expects a floating-point tensor, got ${x.dtype}`, 'x');
  return lastAxisOp(x, axis, (t) => {
    const [y] = kernel('softmax', [t], { log: false });
    const yd = y!.detach();
    return record([y!], 'softmax', [t], (g) => [mul(yd, sub(g, sum(mul(g, yd), -1, true)))], [yd])[0]!;
  });
}

/** log(softmax(x)) along `axis` (default last), computed stably. */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  assertTensor(x, 'x');
  check(isFloat(x.dtype), 'DTYPE_UNSUPPORTED', () => `x: logSoftmax expects a floating-point tensor, got ${x.dtype}`, 'x');
  return lastAxisOp(x, axis, (t) => {
    const [y] = kernel('softmax', [t], { log: true });
    const yd = y!.detach();
    return record([y!], 'logSoftmax', [t], (g) => [sub(g, mul(exp(yd), sum(g, -1, true)))], [yd])[0]!;
  });
}

/**
 * Layer normalisation over the trailing `normalizedShape` dims with optional affine `weight`/`bias`.
 * @example const y = layerNorm(x, [768], w, b, 1e-5);
 */
export function layerNorm(x: Tensor, normalizedShape: readonly number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  assertTensor(x, 'x');
  const ns = validateShape(normalizedShape, 'normalizedShape');
  check(ns.length >= 1 && ns.length <= x.rank && shapesEqual(x.shape.slice(x.rank - ns.length), ns), 'SHAPE_MISMATCH', () => `normalizedShape: expected the trailing dims of x ${describe(x.shape)}, got ${describe(ns)}`, 'normalizedShape');
  for (const [t, name] of [[weight, 'weight'], [bias, 'bias']] as const) {
    if (t) {
      assertTensor(t, name);
      check(shapesEqual(t.shape, ns), 'SHAPE_MISMATCH', () => `${name}: expected shape ${describe(ns)}, got ${describe(t.shape)}`, name);
    }
  }
  sameDevice([x, weight, bias], ['x', 'weight', 'bias']);
  check(isFloat(x.dtype), 'DTYPE_UNSUPPORTED', () => `x: layerNorm expects a floating-point tensor, got ${x.dtype}`, 'x');
  const d = sizeOf(ns);
  const rows = x.size / Math.max(d, 1);
  return tidy(() => {
    const x2 = reshape(contiguous(x).detach(), [rows, d]).detach();
    const w2 = weight ? reshape(contiguous(weight).detach(), [d]).detach() : null;
    const b2 = bias ? reshape(contiguous(bias).detach(), [d]) : null;
    const ins = [x2, ...(w2 ? [w2] : []), ...(b2 ? [b2] : [])];
    const [y, meanT, rstd] = kernel('layer_norm', ins, { eps, hasWeight: !!w2, hasBias: !!b2 });
    const out = reshape(y!, x.shape).detach();
    const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
    const xs = x.shape;
    const hasW = !!weight;
    const hasB = !!bias;
    return record(
      [out],
      'layerNorm',
      inputs,
      (g) => {
        const g2 = reshape(contiguous(g), [rows, d]);
        const [dx] = kernel('layer_norm_backward', [x2, g2, meanT!, rstd!, ...(w2 ? [w2] : [])], { hasWeight: !!w2 });
        const grads: (Tensor | null)[] = [reshape(dx!, xs)];
        if (hasW) {
          const xhat = mul(sub(x2, reshape(meanT!, [rows, 1])), reshape(rstd!, [rows, 1]));
          grads.push(reshape(sum(mul(g2, xhat), 0), ns));
        }
        if (hasB) grads.push(reshape(sum(g2, 0), ns));
        return grads;
      },
      [x2, meanT!, rstd!, ...(w2 ? [w2] : [])],
    )[0]!;
  });
}

// ------------------------------------------------------------------------------ matmul
/**
 * Matrix product `a @ b` with NumPy semantics: 1-D operands are promoted, batch dims broadcast.
 * Transposed operands (`b.transpose(-1, -2)`) are read in place, without a copy.
 * @example const s = matmul(q, k.transpose(-1, -2)); // [B,H,L,L]
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  assertTensor(a, 'a');
  assertTensor(b, 'b');
  sameDevice([a, b], ['a', 'b']);
  check(a.rank >= 1 && b.rank >= 1, 'SHAPE_MISMATCH', () => `a, b: matmul needs at least 1-D operands, got ${describe(a.shape)} and ${describe(b.shape)}`, a.rank < 1 ? 'a' : 'b');
  check(a.dtype === b.dtype && isFloat(a.dtype), 'DTYPE_UNSUPPORTED', () => `b: expected a floating-point dtype equal to a's (${a.dtype}), got ${b.dtype}`, 'b');
  if (a.rank === 1) return tidy(() => squeezeAt(matmul(reshape(a, [1, a.shape[0]!]), b), -2));
  if (b.rank === 1) return tidy(() => squeezeAt(matmul(a, reshape(b, [b.shape[0]!, 1])), -1));
  const [m, k] = a.shape.slice(-2) as [number, number];
  const [k2, n] = b.shape.slice(-2) as [number, number];
  check(k === k2, 'SHAPE_MISMATCH', () => `b: inner dimensions differ: a is ${describe(a.shape)} (K=${k}), b is ${describe(b.shape)} (K=${k2})`, 'b');
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), ['a (batch dims)', 'b (batch dims)']);
  return tidy(() => {
    const ae = expand(a.detach(), [...batch, m, k]);
    const be = expand(b.detach(), [...batch, k, n]);
    const [out] = kernel('matmul', [ae, be]);
    const sa = b.requiresGrad ? a.detach() : null;
    const sb = a.requiresGrad ? b.detach() : null;
    const as = a.shape;
    const bs = b.shape;
    return record(
      [out!],
      'matmul',
      [a, b],
      (g) => [
        sb ? sumToShape(matmul(g, transpose(sb, -1, -2)), as) : null,
        sa ? weightGrad(sa, g, bs, k, n) : null,
      ],
      [...(sa ? [sa] : []), ...(sb ? [sb] : [])],
    )[0]!;
  });
}

/**
 * Gradient of matmul's `b` (shape `bs`) from `a` and the output gradient `g` `[...batch, m, n]`. When `b` is
 * shared by the whole batch (`x @ W`), the batch folds into the rows: one `[k, B·m] @ [B·m, n]` product, instead
 * of a per-batch `[...batch, k, n]` product summed afterwards — that intermediate is the batch size times the
 * weight (2 GiB for ViT-L's MLP at batch 128, past the H100's maxStorageBufferBindingSize).
 */
function weightGrad(a: Tensor, g: Tensor, bs: readonly number[], k: number, n: number): Tensor {
  const shared = bs.slice(0, -2).every((d) => d === 1) && g.rank > 2;
  if (!shared) return sumToShape(matmul(transpose(a, -1, -2), g), bs);
  const rows = g.size / n;
  const a2 = reshape(expand(a, [...g.shape.slice(0, -1), k]), [rows, k]);
  return reshape(matmul(transpose(a2, -1, -2), reshape(g, [rows, n])), bs);
}

function squeezeAt(x: Tensor, dim: number): Tensor {
  const d = normAxis(dim, x.rank, 'dim');
  const s = x.shape.slice();
  s.splice(d, 1);
  return reshape(x, s);
}

// ------------------------------------------------------------------------------ embedding / losses
/**
 * Rows of `weight` `[V, D]` gathered by int32 `ids` of any shape → `[...ids.shape, D]`.
 * On the CPU an out-of-range id throws `INVALID_ARGUMENT`; on WebGPU it yields a zero row.
 * @example const h = embedding(wte, inputIds);
 */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  assertTensor(weight, 'weight');
  assertTensor(ids, 'ids');
  sameDevice([weight, ids], ['weight', 'ids']);
  check(weight.rank === 2, 'SHAPE_MISMATCH', () => `weight: expected shape [numEmbeddings, dim], got ${describe(weight.shape)}`, 'weight');
  check(ids.dtype === 'int32', 'DTYPE_UNSUPPORTED', () => `ids: expected int32 indices, got ${ids.dtype}`, 'ids');
  const [v, d] = weight.shape as [number, number];
  return tidy(() => {
    const flatIds = reshape(contiguous(ids), [ids.size]).detach();
    const [out] = kernel('embedding', [contiguous(weight).detach(), flatIds]);
    const res = reshape(out!, [...ids.shape, d]).detach();
    const n = ids.size;
    return record(
      [res],
      'embedding',
      [weight],
      (g) => [kernel('embedding_backward', [reshape(contiguous(g), [n, d]), flatIds], { numEmbeddings: v })[0]!],
      [flatIds],
    )[0]!;
  });
}

/** Options of {@link crossEntropy}. */
export interface CrossEntropyOptions {
  /** Target value whose rows contribute nothing (default −100, like PyTorch). */
  ignoreIndex?: number;
  /** `mean` over non-ignored rows (default; 0/0 = NaN when all are ignored, as PyTorch), `sum`, or `none`. */
  reduction?: 'mean' | 'sum' | 'none';
}

/**
 * Cross-entropy of `logits` `[..., C]` against int32 class `target` `[...]`.
 * @example const loss = crossEntropy(logits.reshape([-1, V]), labels.reshape([-1]), { ignoreIndex: -100 });
 */
export function crossEntropy(logits: Tensor, target: Tensor, options: CrossEntropyOptions = {}): Tensor {
  assertTensor(logits, 'logits');
  assertTensor(target, 'target');
  sameDevice([logits, target], ['logits', 'target']);
  const ignoreIndex = options.ignoreIndex ?? -100;
  const reduction = options.reduction ?? 'mean';
  check(['mean', 'sum', 'none'].includes(reduction), 'INVALID_ARGUMENT', () => `options.reduction: expected 'mean', 'sum' or 'none', got ${describe(reduction)}`, 'options.reduction');
  check(logits.rank >= 1 && isFloat(logits.dtype), 'DTYPE_UNSUPPORTED', () => `logits: expected a floating-point tensor [..., C], got ${logits.dtype} ${describe(logits.shape)}`, 'logits');
  check(target.dtype === 'int32', 'DTYPE_UNSUPPORTED', () => `target: expected int32 class indices, got ${target.dtype}`, 'target');
  check(shapesEqual(target.shape, logits.shape.slice(0, -1)), 'SHAPE_MISMATCH', () => `target: expected shape ${describe(logits.shape.slice(0, -1))} (logits without the class dim), got ${describe(target.shape)}`, 'target');
  const c = logits.shape[logits.rank - 1]!;
  const n = target.size;
  return tidy(() => {
    const l2 = reshape(contiguous(logits).detach(), [n, c]).detach();
    const t2 = reshape(contiguous(target), [n]).detach();
    const [rowsLoss] = kernel('cross_entropy', [l2, t2], { ignoreIndex });
    const ls = logits.shape;
    const sl = l2.detach();
    const st = t2.detach();
    const rows = record(
      [rowsLoss!],
      'crossEntropy',
      [logits],
      (g) => [reshape(kernel('cross_entropy_backward', [sl, st, contiguous(g)], { ignoreIndex })[0]!, ls)],
      [sl, st],
    )[0]!;
    if (reduction === 'none') return reshape(rows, target.shape);
    const total = sum(rows);
    if (reduction === 'sum') return total;
    const count = sum(cast(ne(t2, ignoreIndex), logits.dtype));
    return div(total, count);
  });
}

/** Options of {@link adamwUpdate}: PyTorch `AdamW` hyper-parameters and the 1-based step number. */
export interface AdamwUpdateOptions {
  /** Learning rate (≥ 0). */
  lr: number;
  /** β1 in [0, 1). */
  beta1: number;
  /** β2 in [0, 1). */
  beta2: number;
  /** Added to the denominator (≥ 0). */
  eps: number;
  /** Decoupled weight decay (≥ 0). */
  weightDecay: number;
  /** The step being taken, 1 for the first (bias corrections 1 − βᵗ). */
  step: number;
}

/**
 * One AdamW step written in place by a single fused kernel (no temporaries): `param ← param·(1 − lr·wd)`,
 * `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `param ← param − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps)`
 * — `torch.optim.AdamW`'s update. `param`, `grad`, `m`, `v` share one shape and device; the arithmetic
 * is float32 on WebGPU (float16 `param`/`grad` are read as float32 and the parameter is written back
 * rounded) and float64 on the CPU; a backend without the fused kernel (wasm) runs the same update from its
 * elementwise kernels in `m`'s dtype. Not recorded by autograd.
 * Throws `SHAPE_MISMATCH` / `DEVICE_MISMATCH` / `DTYPE_UNSUPPORTED` / `INVALID_ARGUMENT` naming the argument.
 * @example
 * adamwUpdate(p, p.grad!, m, v, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 });
 */
export function adamwUpdate(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, options: AdamwUpdateOptions): void {
  const names = ['param', 'grad', 'm', 'v'];
  [param, grad, m, v].forEach((t, i) => {
    assertTensor(t, names[i]!);
    check(isFloat(t.dtype), 'DTYPE_UNSUPPORTED', () => `${names[i]}: expected a floating-point tensor, got ${t.dtype}`, names[i]);
    check(shapesEqual(t.shape, param.shape), 'SHAPE_MISMATCH', () => `${names[i]}: expected shape ${describe(param.shape)} (param), got ${describe(t.shape)}`, names[i]);
  });
  sameDevice([param, grad, m, v], names);
  check(typeof options === 'object' && options !== null, 'INVALID_ARGUMENT', () => `options: expected { lr, beta1, beta2, eps, weightDecay, step }, got ${describe(options)}`, 'options');
  const { lr, beta1, beta2, eps, weightDecay, step } = options;
  const num = (x: unknown, name: string, ok: (x: number) => boolean, want: string) =>
    check(typeof x === 'number' && ok(x), 'INVALID_ARGUMENT', () => `options.${name}: expected ${want}, got ${describe(x)}`, `options.${name}`);
  num(lr, 'lr', (x) => x >= 0 && Number.isFinite(x), 'a finite number ≥ 0');
  num(beta1, 'beta1', (x) => x >= 0 && x < 1, 'a number in [0, 1)');
  num(beta2, 'beta2', (x) => x >= 0 && x < 1, 'a number in [0, 1)');
  num(eps, 'eps', (x) => x >= 0 && Number.isFinite(x), 'a finite number ≥ 0');
  num(weightDecay, 'weightDecay', (x) => x >= 0 && Number.isFinite(x), 'a finite number ≥ 0');
  num(step, 'step', (x) => Number.isInteger(x) && x >= 1, 'an integer ≥ 1');
  if (param.size === 0) return;
  const attrs = { beta1, beta2, eps, decay: 1 - lr * weightDecay, stepSize: lr / (1 - beta1 ** step), bc2Sqrt: Math.sqrt(1 - beta2 ** step) };
  if (getKernel('adamw_step', param.device.backend)) {
    runKernel('adamw_step', param.device, [param, grad, m, v], attrs);
    return;
  }
  // a backend without the fused kernel (wasm): the same update from its elementwise kernels, in m's dtype
  noGrad(() =>
    tidy(() => {
      const dt = m.dtype;
      const g = grad.dtype === dt ? grad : cast(grad, dt);
      copyInto(m, add(mul(m, beta1), mul(g, 1 - beta1)));
      copyInto(v, add(mul(v, beta2), mul(mul(g, g), 1 - beta2)));
      const w = param.dtype === dt ? param : cast(param, dt);
      const next = sub(mul(w, attrs.decay), mul(div(m, add(div(sqrt(v), attrs.bc2Sqrt), eps)), attrs.stepSize));
      copyInto(param, next.dtype === param.dtype ? next : cast(next, param.dtype));
    }),
  );
}

/** True when `x` is a tensor laid out contiguously. */
export function isContiguousTensor(x: Tensor): boolean {
  return isContiguous(x.shape, x.strides);
}

/**
 * Concatenates tensors along `dim` (all other dims equal); gradients flow to every input.
 * @example const packed = cat([a, b, c], 0);
 */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  check(Array.isArray(tensors) && tensors.length > 0, 'INVALID_ARGUMENT', () => `tensors: expected a non-empty array of tensors, got ${describe(tensors)}`, 'tensors');
  tensors.forEach((t, i) => assertTensor(t, `tensors[${i}]`));
  const first = tensors[0]!;
  const d = normAxis(dim, first.rank, 'dim');
  sameDevice(tensors, tensors.map((_, i) => `tensors[${i}]`));
  tensors.forEach((t, i) => {
    check(t.dtype === first.dtype, 'DTYPE_UNSUPPORTED', () => `tensors[${i}]: expected dtype ${first.dtype}, got ${t.dtype}`, `tensors[${i}]`);
    check(
      t.rank === first.rank && t.shape.every((s: number, k: number) => k === d || s === first.shape[k]),
      'SHAPE_MISMATCH',
      () => `tensors[${i}]: shape ${describe(t.shape)} differs from ${describe(first.shape)} outside dim ${d}`,
      `tensors[${i}]`,
    );
  });
  const shape = first.shape.slice();
  shape[d] = tensors.reduce((p, t) => p + t.shape[d]!, 0);
  return tidy(() => {
    const out = new Tensor(first.device.allocate(first.dtype, sizeOf(shape)), shape);
    let at = 0;
    const starts: number[] = [];
    for (const t of tensors) {
      starts.push(at);
      if (t.size > 0) kernel('copy_into', [t.detach(), slice(out, d, at, at + t.shape[d]!).detach()]);
      at += t.shape[d]!;
    }
    const lens = tensors.map((t) => t.shape[d]!);
    return record([out], 'cat', tensors, (g) => lens.map((len, i) => slice(g, d, starts[i]!, starts[i]! + len)))[0]!;
  });
}
