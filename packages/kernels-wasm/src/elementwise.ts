/**
 * The wasm backend's elementwise, reduction, softmax, layer-norm, GELU-backward and cross-entropy kernels,
 * registered under backend `wasm`. Float32 only: other dtypes (and the cases listed at each kernel) run the CPU
 * reference kernel of the same name on the same storages. Inputs are copied into linear memory per job (the span of
 * a strided view is copied as is and walked with its strides); jobs of fewer than {@link minParallelElements}
 * elements run on the calling thread alone, larger ones split rows over the pool.
 */
import {
  broadcastStrides,
  contiguousStrides,
  fromTyped,
  getKernel,
  registerKernel,
  sizeOf,
  stridedOffsets,
  WebattnError,
  type Device,
  type KernelAttrs,
  type Tensor,
} from '@webattn/core-tensor';
import type { WasmDevice } from './device.js';
import { KERNEL, type WasmPool } from './pool.js';

/** Jobs below this many elements run on one thread (waking the workers costs more than it saves). */
let minParallel = 1 << 15;

/** The element count from which a job is split over threads (default 32768); returns the previous value. For tests and tuning. */
export function minParallelElements(n?: number): number {
  const prev = minParallel;
  if (n !== undefined) {
    if (!Number.isInteger(n) || n < 0) {
      throw new WebattnError('INVALID_ARGUMENT', `n: expected a non-negative integer, got ${String(n)}`, { argument: 'n' });
    }
    minParallel = n;
  }
  return prev;
}

const MAX_RANK = 6;
const UNARY_OPS: Record<string, number> = {
  identity: 0, neg: 1, exp: 2, log: 3, tanh: 4, sqrt: 5, abs: 6, relu: 7, sigmoid: 8, pow: 9, gelu: 10, gelu_tanh: 11,
};
const BINARY_OPS: Record<string, number> = { add: 0, sub: 1, mul: 2, div: 3, maximum: 4, minimum: 5 };
const REDUCE_OPS: Record<string, number> = { sum: 0, max: 1, min: 2 };

function poolOf(device: Device): WasmPool {
  return (device as WasmDevice).pool;
}

function threadsFor(pool: WasmPool, elements: number): number {
  return elements >= minParallel ? pool.threads : 1;
}

function fallback(name: string, inputs: readonly Tensor[], attrs: KernelAttrs, device: Device): Tensor | Tensor[] {
  return getKernel(name, 'cpu')!.fn(inputs, attrs, device);
}

const f32s = (ts: readonly (Tensor | undefined)[]) => ts.every((t) => !t || t.dtype === 'float32');

/** The row-major float32 values of `t` (no copy when contiguous). */
function dense(t: Tensor): Float32Array;
function dense(t: Tensor): Float32Array | Uint8Array;
function dense(t: Tensor): Float32Array | Uint8Array {
  const data = t.storage.cpu as Float32Array | Uint8Array;
  if (t.isContiguous) return data.subarray(t.offset, t.offset + t.size);
  const offs = stridedOffsets(t);
  const out = data instanceof Uint8Array ? new Uint8Array(offs.length) : new Float32Array(offs.length);
  for (let i = 0; i < offs.length; i++) out[i] = data[offs[i]!]!;
  return out;
}

/** An operand as the kernels walk it: a float32 span and its strides over the output shape (0 = broadcast). */
interface Operand {
  data: Float32Array | Uint8Array;
  strides: number[];
}

function operand(t: Tensor, shape: readonly number[]): Operand {
  const st = broadcastStrides(t.shape, t.strides, shape);
  let extent = 1;
  let ok = true;
  for (let d = 0; d < shape.length; d++) {
    if (st[d]! < 0) ok = false;
    extent += (shape[d]! - 1) * Math.max(st[d]!, 0);
  }
  const data = t.storage.cpu as Float32Array | Uint8Array;
  // a view whose span is not much larger than its elements is copied as is and walked with its strides
  if (ok && extent <= 2 * t.size + 4096) return { data: data.subarray(t.offset, t.offset + extent), strides: st };
  return { data: dense(t), strides: broadcastStrides(t.shape, contiguousStrides(t.shape), shape) };
}

/** Drops size-1 dims and merges dims that every operand walks contiguously; null when still above MAX_RANK. */
function collapse(shape: readonly number[], ops: Operand[]): { shape: number[]; strides: number[][] } | null {
  const sh: number[] = [];
  const st: number[][] = ops.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = sh.length - 1;
    if (last >= 0 && ops.every((o, i) => st[i]![last] === o.strides[d]! * shape[d]!)) {
      sh[last] = sh[last]! * shape[d]!;
      ops.forEach((o, i) => (st[i]![last] = o.strides[d]!));
    } else {
      sh.push(shape[d]!);
      ops.forEach((o, i) => st[i]!.push(o.strides[d]!));
    }
  }
  if (sh.length === 0) {
    sh.push(1);
    st.forEach((s) => s.push(0));
  }
  if (sh.length > MAX_RANK) return null;
  return { shape: sh, strides: st };
}

const pad = (a: readonly number[]) => [...a, ...new Array<number>(MAX_RANK - a.length).fill(0)];

/** Runs a job inside a memory frame and returns the float32 result at `out` (`n` elements). */
function job(pool: WasmPool, body: (pool: WasmPool) => { out: number; n: number }): Float32Array {
  const mark = pool.mark();
  try {
    const { out, n } = body(pool);
    return pool.keep(out, n);
  } finally {
    pool.release(mark);
  }
}

registerKernel({
  name: 'unary',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const x = inputs[0]!;
    const op = UNARY_OPS[attrs.op as string];
    const outDtype = (attrs.outDtype as string | undefined) ?? x.dtype;
    if (op === undefined || x.dtype !== 'float32' || outDtype !== 'float32' || x.size === 0) return fallback('unary', inputs, attrs, device);
    const o = operand(x, x.shape);
    const c = collapse(x.shape, [o]);
    if (!c) return fallback('unary', inputs, attrs, device);
    const pool = poolOf(device);
    const res = job(pool, (p) => {
      const px = p.put(o.data);
      const out = p.alloc(x.size * 4);
      p.run(KERNEL.unary, [op, px, out, c.shape.length, ...pad(c.shape), ...pad(c.strides[0]!)], [(attrs.p as number) ?? 1], threadsFor(p, x.size));
      return { out, n: x.size };
    });
    return fromTyped(res, x.shape, 'float32', device);
  },
});

registerKernel({
  name: 'binary',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const [a, b] = inputs as [Tensor, Tensor];
    const op = BINARY_OPS[attrs.op as string];
    const shape = attrs.shape as number[];
    const n = sizeOf(shape);
    if (op === undefined || !f32s([a, b]) || n === 0) return fallback('binary', inputs, attrs, device);
    const oa = operand(a, shape);
    const ob = operand(b, shape);
    const c = collapse(shape, [oa, ob]);
    if (!c) return fallback('binary', inputs, attrs, device);
    const res = job(poolOf(device), (p) => {
      const pa = p.put(oa.data);
      const pb = p.put(ob.data);
      const out = p.alloc(n * 4);
      p.run(KERNEL.binary, [op, pa, pb, out, c.shape.length, ...pad(c.shape), ...pad(c.strides[0]!), ...pad(c.strides[1]!)], [], threadsFor(p, n));
      return { out, n };
    });
    return fromTyped(res, shape, 'float32', device);
  },
});

registerKernel({
  name: 'reduce',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const x = inputs[0]!;
    const op = REDUCE_OPS[attrs.op as string];
    const axis = attrs.axis as number;
    if (op === undefined || x.dtype !== 'float32' || x.size === 0) return fallback('reduce', inputs, attrs, device);
    const outer = sizeOf(x.shape.slice(0, axis));
    const n = x.shape[axis]!;
    const inner = sizeOf(x.shape.slice(axis + 1));
    const os = x.shape.slice();
    os[axis] = 1;
    const res = job(poolOf(device), (p) => {
      const px = p.put(dense(x));
      const out = p.alloc(outer * inner * 4);
      p.run(KERNEL.reduce, [op, px, out, outer, n, inner], [], threadsFor(p, x.size));
      return { out, n: outer * inner };
    });
    return fromTyped(res, os, 'float32', device);
  },
});

registerKernel({
  name: 'softmax',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const x = inputs[0]!;
    const n = x.shape[x.rank - 1] ?? 1;
    if (x.dtype !== 'float32' || x.size === 0 || n === 0) return fallback('softmax', inputs, attrs, device);
    const res = job(poolOf(device), (p) => {
      const px = p.put(dense(x));
      const out = p.alloc(x.size * 4);
      p.run(KERNEL.softmax, [px, out, x.size / n, n, attrs.log ? 1 : 0], [], threadsFor(p, x.size));
      return { out, n: x.size };
    });
    return fromTyped(res, x.shape, 'float32', device);
  },
});

registerKernel({
  name: 'layer_norm',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const x = inputs[0]!;
    const [rows, d] = x.shape as [number, number];
    let k = 1;
    const w = attrs.hasWeight ? inputs[k++]! : null;
    const b = attrs.hasBias ? inputs[k++]! : null;
    if (!f32s([x, w ?? undefined, b ?? undefined]) || x.size === 0) return fallback('layer_norm', inputs, attrs, device);
    const pool = poolOf(device);
    const mark = pool.mark();
    try {
      const px = pool.put(dense(x));
      const pw = w ? pool.put(dense(w)) : 0;
      const pb = b ? pool.put(dense(b)) : 0;
      const y = pool.alloc(x.size * 4);
      const mean = pool.alloc(rows * 4);
      const rstd = pool.alloc(rows * 4);
      pool.run(KERNEL.layerNorm, [px, y, mean, rstd, rows, d, pw, pb], [attrs.eps as number], threadsFor(pool, x.size));
      return [
        fromTyped(pool.keep(y, x.size), [rows, d], 'float32', device),
        fromTyped(pool.keep(mean, rows), [rows], 'float32', device),
        fromTyped(pool.keep(rstd, rows), [rows], 'float32', device),
      ];
    } finally {
      pool.release(mark);
    }
  },
});

registerKernel({
  name: 'layer_norm_backward',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const [x, g, mean, rstd, w] = inputs as [Tensor, Tensor, Tensor, Tensor, Tensor | undefined];
    const [rows, d] = x.shape as [number, number];
    if (!f32s(inputs) || x.size === 0) return fallback('layer_norm_backward', inputs, attrs, device);
    const res = job(poolOf(device), (p) => {
      const px = p.put(dense(x));
      const pg = p.put(dense(g));
      const pm = p.put(dense(mean));
      const pr = p.put(dense(rstd));
      const pw = attrs.hasWeight && w ? p.put(dense(w)) : 0;
      const out = p.alloc(x.size * 4);
      p.run(KERNEL.layerNormBackward, [px, pg, pm, pr, pw, out, rows, d], [], threadsFor(p, x.size));
      return { out, n: x.size };
    });
    return fromTyped(res, [rows, d], 'float32', device);
  },
});

registerKernel({
  name: 'gelu_backward',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const [x, g] = inputs as [Tensor, Tensor];
    const ap = attrs.approximate as string;
    if (!f32s([x, g]) || x.size === 0 || (ap !== 'none' && ap !== 'tanh')) return fallback('gelu_backward', inputs, attrs, device);
    const ge = g.shape.length === x.shape.length && g.shape.every((s, i) => s === x.shape[i]) ? g : null;
    if (!ge) return fallback('gelu_backward', inputs, attrs, device);
    const res = job(poolOf(device), (p) => {
      const px = p.put(dense(x));
      const pg = p.put(dense(ge));
      const out = p.alloc(x.size * 4);
      p.run(KERNEL.geluBackward, [px, pg, out, x.size, ap === 'tanh' ? 1 : 0], [], threadsFor(p, x.size));
      return { out, n: x.size };
    });
    return fromTyped(res, x.shape, 'float32', device);
  },
});

/** Int32 targets, checked like the reference (out-of-range ids other than ignoreIndex throw). */
function targets(t: Tensor, n: number, c: number, ignoreIndex: number): Int32Array {
  const data = t.storage.cpu as Int32Array;
  const v = t.isContiguous ? data.subarray(t.offset, t.offset + n) : Int32Array.from(stridedOffsets(t), (o) => data[o]!);
  for (let i = 0; i < n; i++) {
    const id = v[i]!;
    if (id !== ignoreIndex && (id < 0 || id >= c)) {
      throw new WebattnError('INVALID_ARGUMENT', `target: index ${id} is out of range [0, ${c})`, { argument: 'target' });
    }
  }
  return v;
}

registerKernel({
  name: 'cross_entropy',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const [logits, target] = inputs as [Tensor, Tensor];
    const [n, c] = logits.shape as [number, number];
    if (logits.dtype !== 'float32' || target.dtype !== 'int32' || n === 0 || c === 0) return fallback('cross_entropy', inputs, attrs, device);
    const ig = attrs.ignoreIndex as number;
    const tv = targets(target, n, c, ig);
    const res = job(poolOf(device), (p) => {
      const pl = p.put(dense(logits));
      const pt = p.put(tv);
      const out = p.alloc(n * 4);
      p.run(KERNEL.crossEntropy, [pl, pt, out, n, c, ig], [], threadsFor(p, n * c));
      return { out, n };
    });
    return fromTyped(res, [n], 'float32', device);
  },
});

registerKernel({
  name: 'cross_entropy_backward',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const [logits, target, g] = inputs as [Tensor, Tensor, Tensor];
    const [n, c] = logits.shape as [number, number];
    if (logits.dtype !== 'float32' || g.dtype !== 'float32' || target.dtype !== 'int32' || n === 0 || c === 0) {
      return fallback('cross_entropy_backward', inputs, attrs, device);
    }
    const ig = attrs.ignoreIndex as number;
    const tv = targets(target, n, c, ig);
    const res = job(poolOf(device), (p) => {
      const pl = p.put(dense(logits));
      const pt = p.put(tv);
      const pg = p.put(dense(g));
      const out = p.alloc(n * c * 4);
      p.run(KERNEL.crossEntropyBackward, [pl, pt, pg, out, n, c, ig], [], threadsFor(p, n * c));
      return { out, n: n * c };
    });
    return fromTyped(res, [n, c], 'float32', device);
  },
});

/** A destination view as the strided copy walks it: its storage span from `offset` and its strides. */
function destination(t: Tensor): { start: number; extent: number; strides: number[] } | null {
  let extent = 1;
  for (let d = 0; d < t.rank; d++) {
    if (t.strides[d]! < 0) return null;
    extent += (t.shape[d]! - 1) * t.strides[d]!;
  }
  // a destination whose span is much larger than its elements (a thin column of a big tensor) goes to the reference
  return extent <= 4 * t.size + 4096 ? { start: t.offset, extent, strides: [...t.strides] } : null;
}

registerKernel({
  name: 'copy_into',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const [src, dst] = inputs as [Tensor, Tensor];
    if (!f32s([src, dst]) || dst.size === 0) return fallback('copy_into', inputs, attrs, device);
    const data = dst.storage.cpu as Float32Array;
    const same = dst.isContiguous && src.isContiguous && src.size === dst.size && src.shape.length === dst.shape.length && src.shape.every((s, i) => s === dst.shape[i]);
    if (same) {
      // (TypedArray.set copies through a temporary when source and target share a buffer)
      data.set((src.storage.cpu as Float32Array).subarray(src.offset, src.offset + src.size), dst.offset);
      return dst;
    }
    const dd = destination(dst);
    if (!dd) return fallback('copy_into', inputs, attrs, device);
    const o = operand(src, dst.shape);
    // dims are collapsed for source and destination together (the destination walks with its own strides)
    const c = collapse(dst.shape, [o, { data, strides: dd.strides }]);
    if (!c) return fallback('copy_into', inputs, attrs, device);
    const pool = poolOf(device);
    const mark = pool.mark();
    try {
      const px = pool.put(o.data);
      // the destination's span goes in and comes back whole: elements between the view's own keep their values
      const span = data.subarray(dd.start, dd.start + dd.extent);
      const pd = pool.put(span);
      pool.run(KERNEL.stridedCopy, [px, pd, c.shape.length, ...pad(c.shape), ...pad(c.strides[0]!), ...pad(c.strides[1]!)], [], threadsFor(pool, dst.size));
      span.set(pool.f32(pd, dd.extent));
    } finally {
      pool.release(mark);
    }
    return dst;
  },
});

// Embedding gather / scatter-add: row copies on the typed arrays themselves (no wasm job: nothing to compute).
registerKernel({
  name: 'embedding',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const [w, ids] = inputs as [Tensor, Tensor];
    if (w.dtype !== 'float32' || ids.dtype !== 'int32') return fallback('embedding', inputs, attrs, device);
    const [v, d] = w.shape as [number, number];
    const wv = dense(w);
    const iv = dense32(ids);
    const out = new Float32Array(iv.length * d);
    for (let r = 0; r < iv.length; r++) {
      const id = iv[r]!;
      if (id < 0 || id >= v) throw new WebattnError('INVALID_ARGUMENT', `ids: index ${id} is out of range [0, ${v})`, { argument: 'ids' });
      out.set(wv.subarray(id * d, id * d + d), r * d);
    }
    return fromTyped(out, [iv.length, d], 'float32', device);
  },
});

registerKernel({
  name: 'embedding_backward',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const [g, ids] = inputs as [Tensor, Tensor];
    if (g.dtype !== 'float32' || ids.dtype !== 'int32') return fallback('embedding_backward', inputs, attrs, device);
    const v = attrs.numEmbeddings as number;
    const d = g.shape[1]!;
    const gv = dense(g);
    const iv = dense32(ids);
    const out = new Float32Array(v * d);
    for (let r = 0; r < iv.length; r++) {
      const id = iv[r]!;
      if (id < 0 || id >= v) continue;
      const o = id * d;
      const s = r * d;
      for (let j = 0; j < d; j++) out[o + j] = out[o + j]! + gv[s + j]!;
    }
    return fromTyped(out, [v, d], 'float32', device);
  },
});

function dense32(t: Tensor): Int32Array {
  const data = t.storage.cpu as Int32Array;
  if (t.isContiguous) return data.subarray(t.offset, t.offset + t.size);
  return Int32Array.from(stridedOffsets(t), (o) => data[o]!);
}

registerKernel({
  name: 'where',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const [cond, a, b] = inputs as [Tensor, Tensor, Tensor];
    const shape = attrs.shape as number[];
    const n = sizeOf(shape);
    if (!(cond.storage.cpu instanceof Uint8Array) || !f32s([a, b]) || n === 0) return fallback('where', inputs, attrs, device);
    const ops = [operand(cond, shape), operand(a, shape), operand(b, shape)];
    const c = collapse(shape, ops);
    if (!c) return fallback('where', inputs, attrs, device);
    const res = job(poolOf(device), (p) => {
      const [pc, pa, pb] = ops.map((o) => p.put(o.data)) as [number, number, number];
      const out = p.alloc(n * 4);
      p.run(KERNEL.where, [pc, pa, pb, out, c.shape.length, ...pad(c.shape), ...pad(c.strides[0]!), ...pad(c.strides[1]!), ...pad(c.strides[2]!)], [], threadsFor(p, n));
      return { out, n };
    });
    return fromTyped(res, shape, 'float32', device);
  },
});
