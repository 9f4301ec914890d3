import { WebattnError } from './errors.js';

/**
 * Element types. `float16` needs `shader-f16` on a WebGPU device (the CPU backend emulates it by
 * rounding); `float64` exists on the CPU backend only (used for gradient checks).
 */
export type DType = 'float32' | 'float16' | 'float64' | 'int32' | 'uint32' | 'bool';

/** Typed array that holds a dtype on the CPU. */
export type TypedArray = Float32Array | Float64Array | Int32Array | Uint32Array | Uint8Array;

const DTYPES: readonly DType[] = ['float32', 'float16', 'float64', 'int32', 'uint32', 'bool'];

/** True for `float16`, `float32`, `float64`. */
export function isFloat(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float16' || dtype === 'float64';
}

/** Throws `DTYPE_UNSUPPORTED` unless `dtype` is one of {@link DType}. */
export function assertDType(dtype: unknown, argument = 'dtype'): asserts dtype is DType {
  if (!DTYPES.includes(dtype as DType)) {
    throw new WebattnError('DTYPE_UNSUPPORTED', `${argument}: expected one of ${DTYPES.join(', ')}, got ${String(dtype)}`, {
      argument,
    });
  }
}

/**
 * Allocates a zeroed CPU typed array for `n` elements of `dtype` (float16 is held in float32).
 * Throws `LIMIT_EXCEEDED` naming `argument` when the host cannot hold that many elements.
 */
export function allocTyped(dtype: DType, n: number, argument = 'shape'): TypedArray {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new WebattnError('LIMIT_EXCEEDED', `${argument}: ${n} elements is not a size a host array can have`, { argument });
  }
  try {
    return allocRaw(dtype, n);
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    throw new WebattnError('LIMIT_EXCEEDED', `${argument}: cannot allocate ${n} elements of ${dtype} on the host (${e.message})`, {
      argument,
      cause: e,
    });
  }
}

function allocRaw(dtype: DType, n: number): TypedArray {
  switch (dtype) {
    case 'float32':
    case 'float16':
      return new Float32Array(n);
    case 'float64':
      return new Float64Array(n);
    case 'int32':
      return new Int32Array(n);
    case 'uint32':
      return new Uint32Array(n);
    case 'bool':
      return new Uint8Array(n);
  }
}

/** Bytes per element as stored on a WebGPU device (bool is stored as u32 there). */
export function gpuBytesPerElement(dtype: DType): number {
  return dtype === 'float16' ? 2 : dtype === 'float64' ? 8 : 4;
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** Converts a number to IEEE half-precision bits (round to nearest even). */
export function toHalfBits(value: number): number {
  f32buf[0] = value;
  const x = u32buf[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return sign | half;
}

/** Converts IEEE half-precision bits to a number. */
export function fromHalfBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Rounds a number to the nearest value representable in `dtype`. */
export function roundTo(dtype: DType, v: number): number {
  switch (dtype) {
    case 'float32':
      return Math.fround(v);
    case 'float16':
      return fromHalfBits(toHalfBits(v));
    case 'float64':
      return v;
    case 'int32':
      return Math.trunc(v) | 0;
    case 'uint32':
      return Math.trunc(v) >>> 0;
    case 'bool':
      return v ? 1 : 0;
  }
}
