/// <reference lib="esnext.disposable" preserve="true" />
import { backward as runBackward, noGrad, releaseGradFn, type BackwardOptions, type GradFn } from './autograd.js';
import { getDefaultDevice, type Device, type Storage } from './device.js';
import { allocTyped, assertDType, roundTo, type DType, type TypedArray } from './dtype.js';
import { check, WebattnError } from './errors.js';
import * as ops from './ops.js';
import { nextRng } from './rng.js';
import { tidy, trackTensor, untrack, wireScope, type ScopeFrame } from './scope.js';
import { contiguousStrides, describe, isContiguous, normAxis, shapesEqual, sizeOf, validateShape, type Shape } from './shape.js';

/** Options shared by creation functions. */
export interface TensorOptions {
  /** Element type (default float32; inferred from typed arrays). */
  dtype?: DType;
  /** Device (default: {@link getDefaultDevice}). */
  device?: Device;
  /** Record operations on this leaf for autograd. */
  requiresGrad?: boolean;
}

/**
 * An n-dimensional array on a device, with optional autograd. Views (`reshape`, `transpose`,
 * `permute`, `slice`, `expand`) share storage; `contiguous()` copies only when needed;
 * `toArray()` is the only read-back and is async.
 *
 * @example
 * const a = tensor([[1, 2], [3, 4]], undefined, { device, requiresGrad: true });
 * const loss = a.mul(a).sum(); loss.backward(); await a.grad!.toArray(); // [2,4,6,8]
 */
export class Tensor {
  /** Sizes, outermost first. */
  readonly shape: readonly number[];
  /** Element strides per dimension. */
  readonly strides: readonly number[];
  /** Element offset into the storage. */
  readonly offset: number;
  /** Element type. */
  readonly dtype: DType;
  private readonly _storage: Storage;
  /** Whether gradients flow to this tensor. */
  requiresGrad: boolean;
  /** The recorded op that produced this tensor, if any. */
  gradFn: GradFn | null = null;
  /** Keep `.grad` on this non-leaf tensor during backward. */
  retainsGrad = false;
  /** True after `dispose()` of this handle. */
  disposed = false;
  /** @internal the scope that owns this handle (see `tidy`). */
  _frame: ScopeFrame | null = null;
  private _grad: Tensor | null = null;
  /** @internal true when autograd created `_grad` (it is then disposed when replaced). */
  _gradOwned = false;

  constructor(storage: Storage, shape: readonly number[], strides?: readonly number[], offset = 0, requiresGrad = false) {
    if (storage.disposed) {
      throw new WebattnError('TENSOR_DISPOSED', 'storage: cannot make a tensor on storage released by dispose()', { argument: 'storage' });
    }
    this._storage = storage;
    handles.set(storage, (handles.get(storage) ?? 0) + 1);
    this.dtype = storage.dtype;
    this.shape = Object.freeze(shape.slice());
    this.strides = Object.freeze((strides ?? contiguousStrides(shape)).slice());
    this.offset = offset;
    this.requiresGrad = requiresGrad;
    trackTensor(this);
  }

  /**
   * Accumulated gradient (leaves, or tensors that called `retainGrad()`). Assigning a new value
   * (e.g. `null` in `zeroGrad`) disposes the gradient autograd created before; `keep()` or
   * `clone` it first if you still need it.
   */
  get grad(): Tensor | null {
    return this._grad;
  }
  set grad(value: Tensor | null) {
    if (value === this._grad) return;
    const old = this._grad;
    const owned = this._gradOwned;
    this._grad = value;
    this._gradOwned = false;
    if (old && owned) old.dispose();
  }

  /**
   * Backing memory (shared by views). Throws `TENSOR_DISPOSED` once this handle was disposed (or
   * its storage released), so a kernel handed a disposed tensor fails with a coded error.
   */
  get storage(): Storage {
    this.assertLive();
    return this._storage;
  }

  /** The device holding the storage. */
  get device(): Device {
    return this._storage.device;
  }
  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }
  /** Number of elements. */
  get size(): number {
    return sizeOf(this.shape);
  }
  /** True when the elements are laid out row-major without gaps from `offset`. */
  get isContiguous(): boolean {
    return isContiguous(this.shape, this.strides);
  }

  /** True when this handle was disposed or its storage released (no throw). */
  get isReleased(): boolean {
    return this.disposed || this._storage.disposed;
  }

  /** Throws `TENSOR_DISPOSED` when this handle was disposed or its storage released. */
  assertLive(argument = 'tensor'): void {
    if (this.disposed || this._storage.disposed) {
      throw new WebattnError('TENSOR_DISPOSED', `${argument}: the tensor was released by dispose()`, { argument });
    }
  }

  /**
   * Releases this handle. Storage is reference-counted per live handle: the memory is freed (or
   * returned to the device's pool) when the last handle on it (views, detached copies, tensors the
   * autograd graph saved) is disposed, or when all of them are garbage-collected. Idempotent.
   * Using the handle afterwards throws `TENSOR_DISPOSED`. The autograd record (`gradFn`) of the
   * tensor stays valid: a graph that saved this tensor holds its own handle.
   *
   * @example
   * const y = x.mul(2); await y.toArray(); y.dispose();
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    untrack(this);
    const st = this._storage;
    const n = (handles.get(st) ?? 1) - 1;
    if (n <= 0) {
      handles.delete(st);
      st.dispose();
    } else handles.set(st, n);
  }

  /** `using t = ...` support: the same as {@link Tensor.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Sets `requiresGrad` in place and returns this. */
  requiresGrad_(value = true): this {
    this.requiresGrad = value;
    return this;
  }

  /** Keeps `.grad` on this non-leaf tensor during backward. */
  retainGrad(): this {
    this.retainsGrad = true;
    return this;
  }

  /** A new handle on the same storage (own reference, own `dispose()`), cut from the tape. */
  detach(): Tensor {
    this.assertLive();
    return new Tensor(this.storage, this.shape, this.strides, this.offset, false);
  }

  /**
   * Back-propagates from this tensor. Without `grad` the tensor must hold one element. The
   * tensors the graph saved are freed as each node's backward has run (PyTorch semantics): a
   * second backward through the same graph throws `AUTOGRAD` unless the first one passed
   * `{ retainGraph: true }`. Leaf gradients accumulate into `.grad`. Throws `AUTOGRAD` without a
   * grad for a non-scalar, `SHAPE_MISMATCH` for a grad of another shape.
   *
   * @example
   * loss.backward(); // frees the graph
   * loss.backward(undefined, { retainGraph: true }); // keeps it for another backward
   */
  backward(grad?: Tensor, options: BackwardOptions = {}): void {
    this.assertLive();
    check(options !== null && typeof options === 'object', 'INVALID_ARGUMENT', () => `options: expected an object, got ${describe(options)}`, 'options');
    const rg = options.retainGraph ?? false;
    check(typeof rg === 'boolean', 'INVALID_ARGUMENT', () => `options.retainGraph: expected a boolean, got ${describe(rg)}`, 'options.retainGraph');
    let own = false;
    if (grad === undefined || grad === null) {
      check(this.size === 1, 'AUTOGRAD', () => `backward(): grad can be omitted only for a one-element tensor, got shape ${describe(this.shape)}`);
      own = true;
    } else {
      check(grad instanceof Tensor, 'INVALID_ARGUMENT', () => `grad: expected a Tensor, got ${describe(grad)}`, 'grad');
      grad.assertLive('grad');
    }
    if (!own) check(shapesEqual(grad!.shape, this.shape), 'SHAPE_MISMATCH', () => `grad: expected shape ${describe(this.shape)}, got ${describe(grad!.shape)}`, 'grad');
    // autograd owns (and disposes) the handle it is given
    runBackward(this, () => (own ? ops.full(this.shape, 1, { dtype: this.dtype, device: this.device }) : grad!.detach()), ops.add, rg);
  }

  /** Reads the elements back in row-major order. */
  async toArray(): Promise<TypedArray> {
    this.assertLive();
    if (this.isContiguous) return this.device.read(this.storage, this.offset, this.size);
    const t = noGrad(() => tidy(() => ops.contiguous(this)));
    untrack(t);
    try {
      return await t.device.read(t.storage, t.offset, t.size);
    } finally {
      t.dispose();
    }
  }

  /** Reads a one-element tensor as a number. */
  async item(): Promise<number> {
    check(this.size === 1, 'SHAPE_MISMATCH', () => `item(): expected a one-element tensor, got shape ${describe(this.shape)}`);
    return (await this.toArray())[0]!;
  }

  /** Copies to another device (async: crosses the host). Gradients do not flow across. */
  async to(device: Device): Promise<Tensor> {
    if (device === this.device) return this;
    const data = await this.toArray();
    return fromTyped(data, this.shape, this.dtype, device, false);
  }

  // ---- views -------------------------------------------------------------------------------
  /** View with a new shape (one dim may be -1); copies first if the layout needs it. */
  reshape(shape: readonly number[]): Tensor {
    return ops.reshape(this, shape);
  }
  /** Swaps two dimensions (view). */
  transpose(dim0: number, dim1: number): Tensor {
    return ops.transpose(this, dim0, dim1);
  }
  /** Reorders dimensions (view). */
  permute(dims: readonly number[]): Tensor {
    return ops.permute(this, dims);
  }
  /** Elements `start` ≤ i < `end` (step `step`) of dimension `dim` (view). */
  slice(dim: number, start: number, end?: number, step = 1): Tensor {
    return ops.slice(this, dim, start, end, step);
  }
  /** Broadcasts size-1 dimensions to `shape` (view, stride 0). */
  expand(shape: readonly number[]): Tensor {
    return ops.expand(this, shape);
  }
  /** Inserts a size-1 dimension at `dim` (view). */
  unsqueeze(dim: number): Tensor {
    const d = normAxis(dim, this.rank + 1, 'dim');
    const s = this.shape.slice();
    s.splice(d, 0, 1);
    return this.reshape(s);
  }
  /** Removes size-1 dimension `dim` (or all size-1 dims) (view). */
  squeeze(dim?: number): Tensor {
    if (dim === undefined) return this.reshape(this.shape.filter((d) => d !== 1));
    const d = normAxis(dim, this.rank, 'dim');
    if (this.shape[d] !== 1) return this;
    const s = this.shape.slice();
    s.splice(d, 1);
    return this.reshape(s);
  }
  /** Row-major copy when not already contiguous. */
  contiguous(): Tensor {
    return ops.contiguous(this);
  }

  // ---- ops ---------------------------------------------------------------------------------
  /** Elementwise `this + other` with broadcasting. */
  add(other: Tensor | number): Tensor {
    return ops.add(this, other);
  }
  /** Elementwise `this - other` with broadcasting. */
  sub(other: Tensor | number): Tensor {
    return ops.sub(this, other);
  }
  /** Elementwise `this * other` with broadcasting. */
  mul(other: Tensor | number): Tensor {
    return ops.mul(this, other);
  }
  /** Elementwise `this / other` with broadcasting. */
  div(other: Tensor | number): Tensor {
    return ops.div(this, other);
  }
  /** Matrix product with batch broadcasting. */
  matmul(other: Tensor): Tensor {
    return ops.matmul(this, other);
  }
  /** Sum over `axis` (all when omitted). */
  sum(axis?: number | number[], keepdim = false): Tensor {
    return ops.sum(this, axis, keepdim);
  }
  /** Mean over `axis` (all when omitted). */
  mean(axis?: number | number[], keepdim = false): Tensor {
    return ops.mean(this, axis, keepdim);
  }
  /** Maximum over `axis` (all when omitted). */
  max(axis?: number | number[], keepdim = false): Tensor {
    return ops.max(this, axis, keepdim);
  }
  /** Converts to another dtype. */
  cast(dtype: DType): Tensor {
    return ops.cast(this, dtype);
  }
}

wireScope((v): v is Tensor => v instanceof Tensor, releaseGradFn);

/** Live (undisposed) handles per storage: the storage is freed when the count reaches zero. */
const handles = new WeakMap<Storage, number>();

/** Number of undisposed handles on `storage` (diagnostics and tests). */
export function liveHandles(storage: Storage): number {
  return handles.get(storage) ?? 0;
}

/** Wraps a typed array (CPU representation of `dtype`) as a tensor on `device`. */
export function fromTyped(data: TypedArray, shape: Shape, dtype: DType, device: Device, requiresGrad = false): Tensor {
  return new Tensor(device.upload(dtype, data), shape, undefined, 0, requiresGrad);
}

/** Allocates an uninitialised contiguous tensor (kernels write it). */
export function empty(shape: Shape, dtype: DType, device: Device): Tensor {
  return new Tensor(device.allocate(dtype, sizeOf(shape)), shape);
}

/** Nested arrays of numbers or booleans accepted by {@link tensor}. */
export type Nested = number | boolean | readonly Nested[];

function inferShape(data: Nested): number[] {
  const s: number[] = [];
  let d: Nested = data;
  while (Array.isArray(d)) {
    s.push(d.length);
    d = d[0] as Nested;
  }
  return s;
}

function inferDType(data: unknown): DType {
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Uint32Array) return 'uint32';
  if (data instanceof Uint8Array) return 'bool';
  let d: unknown = data;
  while (Array.isArray(d)) d = d[0];
  return typeof d === 'boolean' ? 'bool' : 'float32';
}

/**
 * Creates a tensor from nested arrays, a flat array or a typed array. `shape` defaults to the
 * nesting (or `[n]` for flat data). Throws `SHAPE_MISMATCH` when the data does not fill the shape.
 *
 * @example
 * const q = tensor(new Float32Array(24), [1, 2, 3, 4], { device });
 */
export function tensor(data: Nested | ArrayLike<number>, shape?: readonly number[], options: TensorOptions = {}): Tensor {
  const dtype = options.dtype ?? inferDType(data);
  assertDType(dtype, 'options.dtype');
  const device = options.device ?? getDefaultDevice();
  let flat: ArrayLike<number | boolean>;
  let natural: number[];
  if (Array.isArray(data)) {
    natural = inferShape(data as Nested);
    flat = (data as unknown[]).flat(Infinity) as (number | boolean)[];
  } else if (typeof data === 'number' || typeof data === 'boolean') {
    natural = [];
    flat = [data];
  } else if (data && typeof (data as ArrayLike<number>).length === 'number') {
    flat = data as ArrayLike<number>;
    natural = [flat.length];
  } else {
    throw new WebattnError('INVALID_ARGUMENT', `data: expected a number, nested arrays or a typed array, got ${describe(data)}`, {
      argument: 'data',
    });
  }
  const s = shape === undefined ? natural : validateShape(shape, 'shape');
  if (sizeOf(s) !== flat.length) {
    throw new WebattnError('SHAPE_MISMATCH', `data: has ${flat.length} elements, but shape ${describe(s)} needs ${sizeOf(s)}`, {
      argument: 'data',
    });
  }
  const arr = allocTyped(dtype, flat.length);
  for (let i = 0; i < flat.length; i++) {
    const v = flat[i];
    const num = typeof v === 'boolean' ? (v ? 1 : 0) : (v as number);
    if (typeof num !== 'number') {
      throw new WebattnError('INVALID_ARGUMENT', `data[${i}]: expected a number, got ${describe(v)}`, { argument: 'data' });
    }
    arr[i] = roundTo(dtype, num);
  }
  return fromTyped(arr, s, dtype, device, options.requiresGrad ?? false);
}

/** Random-tensor options: a `seed` makes the numbers reproducible on every device. */
export interface RandomOptions extends TensorOptions {
  /** 32-bit seed; without it the global stream (see `manualSeed`) is used. */
  seed?: number;
}

function randomTensor(shape: readonly number[], options: RandomOptions, draw: (r: ReturnType<typeof nextRng>) => number): Tensor {
  const s = validateShape(shape, 'shape');
  const dtype = options.dtype ?? 'float32';
  assertDType(dtype, 'options.dtype');
  check(dtype === 'float32' || dtype === 'float16' || dtype === 'float64', 'DTYPE_UNSUPPORTED', () => `options.dtype: random tensors are floating point, got ${dtype}`, 'options.dtype');
  const rng = nextRng(options.seed);
  const arr = allocTyped(dtype, sizeOf(s));
  for (let i = 0; i < arr.length; i++) arr[i] = roundTo(dtype, draw(rng));
  return fromTyped(arr, s, dtype, options.device ?? getDefaultDevice(), options.requiresGrad ?? false);
}

/**
 * Standard-normal random tensor; the same `seed` gives the same numbers on every device.
 * @example const x = randn([2, 3], { seed: 1, device });
 */
export function randn(shape: readonly number[], options: RandomOptions = {}): Tensor {
  return randomTensor(shape, options, (r) => r.normal());
}

/**
 * Uniform [0, 1) random tensor; the same `seed` gives the same numbers on every device.
 * @example const u = rand([4], { seed: 7 });
 */
export function rand(shape: readonly number[], options: RandomOptions = {}): Tensor {
  return randomTensor(shape, options, (r) => r.next());
}
