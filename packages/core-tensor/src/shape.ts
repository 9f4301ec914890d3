import { WebattnError } from './errors.js';

/** A tensor shape: non-negative integer sizes, outermost first. */
export type Shape = readonly number[];

/** Throws `INVALID_ARGUMENT` unless `shape` is an array of non-negative safe integers. */
export function validateShape(shape: unknown, argument = 'shape'): number[] {
  if (!Array.isArray(shape)) {
    throw new WebattnError('INVALID_ARGUMENT', `${argument}: expected an array of non-negative integers, got ${describe(shape)}`, {
      argument,
    });
  }
  shape.forEach((d, i) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new WebattnError(
        'INVALID_ARGUMENT',
        `${argument}[${i}]: expected a non-negative integer dimension, got ${describe(d)} (shape ${describe(shape)})`,
        { argument },
      );
    }
  });
  return shape.slice() as number[];
}

/** Short printable description of a value for error messages. */
export function describe(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(describe).join(', ')}]`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null || v === undefined) return String(v);
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return String(v);
}

/** Number of elements of a shape. */
export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major contiguous strides of a shape. */
export function contiguousStrides(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** Normalizes a possibly negative axis; throws `INVALID_ARGUMENT` naming `argument` when out of range. */
export function normAxis(axis: number, rank: number, argument = 'axis'): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= Math.max(rank, 1)) {
    throw new WebattnError('INVALID_ARGUMENT', `${argument}: expected an integer in [${-rank}, ${rank - 1}], got ${describe(axis)}`, {
      argument,
    });
  }
  return axis < 0 ? axis + rank : axis;
}

/** NumPy broadcasting of two shapes; throws `SHAPE_MISMATCH` naming both arguments. */
export function broadcastShapes(a: Shape, b: Shape, names: [string, string] = ['a', 'b']): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new WebattnError(
        'SHAPE_MISMATCH',
        `${names[0]} and ${names[1]}: shapes ${describe(a)} and ${describe(b)} do not broadcast (dimension ${i} is ${da} vs ${db})`,
        { argument: names[1] },
      );
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides that read a tensor of (shape, strides) as if broadcast to `target` (0 on broadcast dims). */
export function broadcastStrides(shape: Shape, strides: readonly number[], target: Shape): number[] {
  const out = new Array<number>(target.length).fill(0);
  const off = target.length - shape.length;
  for (let i = 0; i < shape.length; i++) out[off + i] = shape[i] === 1 && target[off + i] !== 1 ? 0 : strides[i]!;
  return out;
}

/** True when (shape, strides) is row-major contiguous. */
export function isContiguous(shape: Shape, strides: readonly number[]): boolean {
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && strides[i] !== acc) return false;
    acc *= shape[i]!;
  }
  return true;
}

/** Equality of two shapes. */
export function shapesEqual(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
