/**
 * The CPU reference backend: plain TypeScript, float64 accumulation, results rounded to the output
 * dtype. It is the oracle of every GPU test and the fallback device — not a toy.
 */
import type { Device } from '../device.js';
import { allocTyped, isFloat, roundTo, type DType } from '../dtype.js';
import { WebattnError } from '../errors.js';
import { registerKernel, type AdamwStepAttrs, type KernelAttrs } from '../registry.js';
import { broadcastStrides, sizeOf } from '../shape.js';
import { fromTyped, type Tensor } from '../tensor.js';

/** Element offsets of `t` read in row-major order of `shape` (broadcasting `t` to it). */
export function stridedOffsets(t: Tensor, shape: readonly number[] = t.shape): Int32Array | Float64Array {
  const n = sizeOf(shape);
  const st = broadcastStrides(t.shape, t.strides, shape);
  const out = n < 2 ** 31 ? new Int32Array(n) : new Float64Array(n);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let off = t.offset;
  for (let i = 0; i < n; i++) {
    out[i] = off;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      off += st[d]!;
      if (idx[d]! < shape[d]!) break;
      off -= st[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

/** The values of `t` (broadcast to `shape`) as float64 in row-major order. */
export function readValues(t: Tensor, shape: readonly number[] = t.shape): Float64Array {
  const data = t.storage.cpu!;
  const offs = stridedOffsets(t, shape);
  const out = new Float64Array(offs.length);
  for (let i = 0; i < offs.length; i++) out[i] = data[offs[i]!]!;
  return out;
}

function make(values: ArrayLike<number>, shape: readonly number[], dtype: DType, device: Device): Tensor {
  const arr = allocTyped(dtype, values.length);
  for (let i = 0; i < values.length; i++) arr[i] = roundTo(dtype, values[i]!);
  return fromTyped(arr, shape, dtype, device);
}

const SQRT1_2 = Math.SQRT1_2;
const GELU_C = Math.sqrt(2 / Math.PI);

/** erf with ~1e-15 relative accuracy (series / continued fraction). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series
    let sum = ax;
    let term = ax;
    const x2 = ax * ax;
    for (let n = 1; n < 80; n++) {
      term *= -x2 / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // continued fraction for erfc
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return Math.sign(x) * (1 - erfc);
}

/** The unary functions, float64 (shared with tests as formulas). */
export const UNARY: Record<string, (x: number, p: number) => number> = {
  identity: (x) => x,
  neg: (x) => -x,
  exp: Math.exp,
  log: Math.log,
  tanh: Math.tanh,
  sqrt: Math.sqrt,
  abs: Math.abs,
  relu: (x) => (x > 0 ? x : 0),
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  pow: (x, p) => Math.pow(x, p),
  gelu: (x) => 0.5 * x * (1 + erf(x * SQRT1_2)),
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x * x * x))),
};

/** Derivatives of the GELU variants. */
export function geluGrad(x: number, approximate: string): number {
  if (approximate === 'tanh') {
    const u = GELU_C * (x + 0.044715 * x * x * x);
    const t = Math.tanh(u);
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * x * x);
  }
  return 0.5 * (1 + erf(x * SQRT1_2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
}

/** The binary functions, float64. */
export const BINARY: Record<string, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  maximum: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b)),
  minimum: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b)),
  eq: (a, b) => +(a === b),
  ne: (a, b) => +(a !== b),
  lt: (a, b) => +(a < b),
  le: (a, b) => +(a <= b),
  gt: (a, b) => +(a > b),
  ge: (a, b) => +(a >= b),
  and: (a, b) => +(!!a && !!b),
  or: (a, b) => +(!!a || !!b),
};
const COMPARE = new Set(['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'and', 'or']);

function intResult(dtype: DType, op: string, v: number): number {
  if (dtype === 'int32' && op === 'div') return Math.trunc(v);
  return v;
}

type In = readonly Tensor[];

registerKernel({
  name: 'unary',
  backend: 'cpu',
  fn: ([x], attrs: KernelAttrs, device) => {
    const op = attrs.op as string;
    const f = UNARY[op];
    if (!f) throw new WebattnError('INVALID_ARGUMENT', `unary op '${op}' is unknown`);
    const p = (attrs.p as number) ?? 1;
    const outDtype = (attrs.outDtype as DType) ?? x!.dtype;
    const v = readValues(x!);
    for (let i = 0; i < v.length; i++) v[i] = f(v[i]!, p);
    if (outDtype === 'bool') for (let i = 0; i < v.length; i++) v[i] = v[i] ? 1 : 0;
    else if (!isFloat(outDtype) && isFloat(x!.dtype)) for (let i = 0; i < v.length; i++) v[i] = Math.trunc(v[i]!);
    return make(v, x!.shape, outDtype, device);
  },
});

registerKernel({
  name: 'copy_into',
  backend: 'cpu',
  fn: ([src, dst]) => {
    const v = readValues(src!, dst!.shape);
    const offs = stridedOffsets(dst!);
    const data = dst!.storage.cpu!;
    for (let i = 0; i < offs.length; i++) data[offs[i]!] = roundTo(dst!.dtype, v[i]!);
    return dst!;
  },
});

registerKernel({
  name: 'adamw_step',
  backend: 'cpu',
  fn: ([p, g, m, v], attrs) => {
    const { beta1, beta2, eps, decay, stepSize, bc2Sqrt } = attrs as unknown as AdamwStepAttrs;
    const gv = readValues(g!, p!.shape);
    const pv = readValues(p!);
    const mv = readValues(m!, p!.shape);
    const vv = readValues(v!, p!.shape);
    const po = stridedOffsets(p!);
    const mo = stridedOffsets(m!);
    const vo = stridedOffsets(v!);
    const pd = p!.storage.cpu!;
    const md = m!.storage.cpu!;
    const vd = v!.storage.cpu!;
    for (let i = 0; i < pv.length; i++) {
      const gi = gv[i]!;
      md[mo[i]!] = roundTo(m!.dtype, beta1 * mv[i]! + (1 - beta1) * gi);
      vd[vo[i]!] = roundTo(v!.dtype, beta2 * vv[i]! + (1 - beta2) * gi * gi);
      // the moments as stored (float32 state rounds them) drive the update, as on the GPU
      const mr = md[mo[i]!]!;
      const vr = vd[vo[i]!]!;
      pd[po[i]!] = roundTo(p!.dtype, pv[i]! * decay - (stepSize * mr) / (Math.sqrt(vr) / bc2Sqrt + eps));
    }
    return [p!];
  },
});

registerKernel({
  name: 'binary',
  backend: 'cpu',
  fn: ([a, b], attrs, device) => {
    const op = attrs.op as string;
    const shape = attrs.shape as number[];
    const f = BINARY[op]!;
    const va = readValues(a!, shape);
    const vb = readValues(b!, shape);
    const dtype = COMPARE.has(op) ? 'bool' : a!.dtype;
    const out = new Float64Array(va.length);
    for (let i = 0; i < out.length; i++) out[i] = intResult(dtype, op, f(va[i]!, vb[i]!));
    return make(out, shape, dtype, device);
  },
});

registerKernel({
  name: 'where',
  backend: 'cpu',
  fn: ([c, a, b], attrs, device) => {
    const shape = attrs.shape as number[];
    const vc = readValues(c!, shape);
    const va = readValues(a!, shape);
    const vb = readValues(b!, shape);
    for (let i = 0; i < va.length; i++) if (!vc[i]) va[i] = vb[i]!;
    return make(va, shape, a!.dtype, device);
  },
});

registerKernel({
  name: 'gelu_backward',
  backend: 'cpu',
  fn: ([x, g], attrs, device) => {
    const vx = readValues(x!);
    const vg = readValues(g!, x!.shape);
    for (let i = 0; i < vx.length; i++) vx[i] = vg[i]! * geluGrad(vx[i]!, attrs.approximate as string);
    return make(vx, x!.shape, x!.dtype, device);
  },
});

registerKernel({
  name: 'reduce',
  backend: 'cpu',
  fn: ([x], attrs, device) => {
    const axis = attrs.axis as number;
    const op = attrs.op as string;
    const shape = x!.shape;
    const outer = sizeOf(shape.slice(0, axis));
    const n = shape[axis]!;
    const inner = sizeOf(shape.slice(axis + 1));
    const v = readValues(x!);
    const out = new Float64Array(outer * inner);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        let acc = op === 'sum' ? 0 : op === 'max' ? -Infinity : Infinity;
        for (let k = 0; k < n; k++) {
          const e = v[(o * n + k) * inner + i]!;
          if (op === 'sum') acc += e;
          else if (Number.isNaN(e)) acc = NaN;
          else if (op === 'max') acc = acc > e ? acc : e;
          else acc = acc < e ? acc : e;
        }
        out[o * inner + i] = acc;
      }
    }
    const os = shape.slice();
    os[axis] = 1;
    return make(out, os, x!.dtype, device);
  },
});

registerKernel({
  name: 'softmax',
  backend: 'cpu',
  fn: ([x], attrs, device) => {
    const shape = x!.shape;
    const n = shape[shape.length - 1] ?? 1;
    const v = readValues(x!);
    const rows = n === 0 ? 0 : v.length / n;
    for (let r = 0; r < rows; r++) {
      let m = -Infinity;
      for (let k = 0; k < n; k++) m = Math.max(m, v[r * n + k]!);
      if (m === -Infinity) {
        for (let k = 0; k < n; k++) v[r * n + k] = attrs.log ? -Infinity : 0;
        continue;
      }
      let s = 0;
      for (let k = 0; k < n; k++) s += Math.exp(v[r * n + k]! - m);
      const ls = Math.log(s);
      for (let k = 0; k < n; k++) {
        const z = v[r * n + k]! - m;
        v[r * n + k] = attrs.log ? z - ls : Math.exp(z) / s;
      }
    }
    return make(v, shape, x!.dtype, device);
  },
});

registerKernel({
  name: 'layer_norm',
  backend: 'cpu',
  fn: (inputs: In, attrs, device) => {
    const [x] = inputs;
    const [rows, d] = x!.shape as [number, number];
    let k = 1;
    const w = attrs.hasWeight ? readValues(inputs[k++]!) : null;
    const b = attrs.hasBias ? readValues(inputs[k++]!) : null;
    const v = readValues(x!);
    const mean = new Float64Array(rows);
    const rstd = new Float64Array(rows);
    const eps = attrs.eps as number;
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += v[r * d + j]!;
      const mu = s / d;
      let q = 0;
      for (let j = 0; j < d; j++) q += (v[r * d + j]! - mu) ** 2;
      const rs = 1 / Math.sqrt(q / d + eps);
      mean[r] = mu;
      rstd[r] = rs;
      for (let j = 0; j < d; j++) {
        const y = (v[r * d + j]! - mu) * rs;
        v[r * d + j] = y * (w ? w[j]! : 1) + (b ? b[j]! : 0);
      }
    }
    return [make(v, [rows, d], x!.dtype, device), make(mean, [rows], x!.dtype, device), make(rstd, [rows], x!.dtype, device)];
  },
});

registerKernel({
  name: 'layer_norm_backward',
  backend: 'cpu',
  fn: (inputs: In, attrs, device) => {
    const [x, g, mT, rT, wT] = inputs;
    const [rows, d] = x!.shape as [number, number];
    const v = readValues(x!);
    const gv = readValues(g!);
    const mean = readValues(mT!);
    const rstd = readValues(rT!);
    const w = attrs.hasWeight ? readValues(wT!) : null;
    const dx = new Float64Array(rows * d);
    for (let r = 0; r < rows; r++) {
      let s1 = 0;
      let s2 = 0;
      for (let j = 0; j < d; j++) {
        const xh = (v[r * d + j]! - mean[r]!) * rstd[r]!;
        const gw = gv[r * d + j]! * (w ? w[j]! : 1);
        s1 += gw;
        s2 += gw * xh;
      }
      for (let j = 0; j < d; j++) {
        const xh = (v[r * d + j]! - mean[r]!) * rstd[r]!;
        const gw = gv[r * d + j]! * (w ? w[j]! : 1);
        dx[r * d + j] = rstd[r]! * (gw - s1 / d - (xh * s2) / d);
      }
    }
    return make(dx, [rows, d], x!.dtype, device);
  },
});

registerKernel({
  name: 'matmul',
  backend: 'cpu',
  fn: ([a, b], _attrs, device) => {
    const rank = a!.rank;
    const batchShape = a!.shape.slice(0, -2);
    const [m, k] = a!.shape.slice(-2) as [number, number];
    const n = b!.shape[rank - 1]!;
    const batch = sizeOf(batchShape);
    const va = readValues(a!);
    const vb = readValues(b!);
    const out = new Float64Array(batch * m * n);
    for (let p = 0; p < batch; p++) {
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let t = 0; t < k; t++) s += va[(p * m + i) * k + t]! * vb[(p * k + t) * n + j]!;
          out[(p * m + i) * n + j] = s;
        }
      }
    }
    return make(out, [...batchShape, m, n], a!.dtype, device);
  },
});

function checkIndex(id: number, v: number, argument: string): void {
  if (!Number.isInteger(id) || id < 0 || id >= v) {
    throw new WebattnError('INVALID_ARGUMENT', `${argument}: index ${id} is out of range [0, ${v})`, { argument });
  }
}

registerKernel({
  name: 'embedding',
  backend: 'cpu',
  fn: ([w, ids], _attrs, device) => {
    const [v, d] = w!.shape as [number, number];
    const wv = readValues(w!);
    const iv = readValues(ids!);
    const out = new Float64Array(iv.length * d);
    iv.forEach((id, r) => {
      checkIndex(id, v, 'ids');
      for (let j = 0; j < d; j++) out[r * d + j] = wv[id * d + j]!;
    });
    return make(out, [iv.length, d], w!.dtype, device);
  },
});

registerKernel({
  name: 'embedding_backward',
  backend: 'cpu',
  fn: ([g, ids], attrs, device) => {
    const v = attrs.numEmbeddings as number;
    const d = g!.shape[1]!;
    const gv = readValues(g!);
    const iv = readValues(ids!);
    const out = new Float64Array(v * d);
    iv.forEach((id, r) => {
      if (id < 0 || id >= v) return;
      for (let j = 0; j < d; j++) out[id * d + j] = out[id * d + j]! + gv[r * d + j]!;
    });
    return make(out, [v, d], g!.dtype, device);
  },
});

function rowLogSumExp(v: Float64Array, r: number, c: number): number {
  let m = -Infinity;
  for (let j = 0; j < c; j++) m = Math.max(m, v[r * c + j]!);
  let s = 0;
  for (let j = 0; j < c; j++) s += Math.exp(v[r * c + j]! - m);
  return m + Math.log(s);
}

registerKernel({
  name: 'cross_entropy',
  backend: 'cpu',
  fn: ([logits, target], attrs, device) => {
    const [n, c] = logits!.shape as [number, number];
    const lv = readValues(logits!);
    const tv = readValues(target!);
    const out = new Float64Array(n);
    for (let r = 0; r < n; r++) {
      const t = tv[r]!;
      if (t === attrs.ignoreIndex) continue;
      checkIndex(t, c, 'target');
      out[r] = rowLogSumExp(lv, r, c) - lv[r * c + t]!;
    }
    return make(out, [n], logits!.dtype, device);
  },
});

registerKernel({
  name: 'cross_entropy_backward',
  backend: 'cpu',
  fn: ([logits, target, g], attrs, device) => {
    const [n, c] = logits!.shape as [number, number];
    const lv = readValues(logits!);
    const tv = readValues(target!);
    const gv = readValues(g!);
    const out = new Float64Array(n * c);
    for (let r = 0; r < n; r++) {
      const t = tv[r]!;
      if (t === attrs.ignoreIndex) continue;
      const lse = rowLogSumExp(lv, r, c);
      for (let j = 0; j < c; j++) out[r * c + j] = gv[r]! * (Math.exp(lv[r * c + j]! - lse) - (j === t ? 1 : 0));
    }
    return make(out, [n, c], logits!.dtype, device);
  },
});

