/**
 * WebGPU implementations of the core-tensor ops (elementwise, reductions, softmax, layer norm,
 * matmul, embedding, cross-entropy), registered under the `webgpu` backend.
 */
import * as T from '@webattn/core-tensor';
import {
  broadcastStrides,
  empty,
  registerKernel,
  runKernel,
  sizeOf,
  WebattnError,
  type DType,
  type KernelAttrs,
  type Tensor,
} from '@webattn/core-tensor';
import type { WebGPUDevice } from './device/webgpu-device.js';
import {
  checkRank,
  computeType,
  linearGrid,
  MAX_RANK,
  run,
  stridedFields,
  stridedOffsetFn,
  useSubgroups,
  wgReduce,
  type BindingSpec,
  type UniformField,
  type UniformValues,
} from './wgsl.js';

const EW_WG = 64;

/** Registers a kernel for the `webgpu` backend (its device is always a WebGPUDevice). */
function registerGpu(cfg: {
  name: string;
  backend: 'webgpu';
  fn: (inputs: readonly Tensor[], attrs: KernelAttrs, device: WebGPUDevice) => Tensor | Tensor[];
}): void {
  registerKernel({ name: cfg.name, backend: 'webgpu', fn: (i, a, d) => cfg.fn(i, a, d as WebGPUDevice) });
}
const ROW_WG = 64;

// ------------------------------------------------------------------------------ elementwise
const UNARY_EXPR: Record<string, string> = {
  identity: 'v0',
  neg: '-v0',
  exp: 'exp(v0)',
  log: 'log(v0)',
  tanh: 'tanh_safe(v0)',
  sqrt: 'sqrt(v0)',
  abs: 'abs(v0)',
  relu: 'max(v0, 0.0)',
  sigmoid: '1.0 / (1.0 + exp(-v0))',
  pow: 'pow_any(v0, u_p())',
  gelu: '0.5 * v0 * (1.0 + erf_f32(v0 * 0.70710678118654752))',
  gelu_tanh: '0.5 * v0 * (1.0 + tanh_safe(0.7978845608028654 * (v0 + 0.044715 * v0 * v0 * v0)))',
};

const BINARY_EXPR: Record<string, string> = {
  add: 'v0 + v1',
  sub: 'v0 - v1',
  mul: 'v0 * v1',
  div: 'v0 / v1',
  maximum: 'max(v0, v1)',
  minimum: 'min(v0, v1)',
  eq: 'select(0u, 1u, v0 == v1)',
  ne: 'select(0u, 1u, v0 != v1)',
  lt: 'select(0u, 1u, v0 < v1)',
  le: 'select(0u, 1u, v0 <= v1)',
  gt: 'select(0u, 1u, v0 > v1)',
  ge: 'select(0u, 1u, v0 >= v1)',
  and: 'select(0u, 1u, v0 != 0u && v1 != 0u)',
  or: 'select(0u, 1u, v0 != 0u || v1 != 0u)',
};

/** Float helpers shared by WGSL programs: `rsqrt_refined`, `tanh_safe`, `erf_f32`, `pow_any` (JS semantics for negative bases), `gelu_grad`. */
export const MATH_HELPERS = `
// inverseSqrt plus one Newton step: llvmpipe's GL inverseSqrt is only ~12 bits accurate
fn rsqrt_refined(v: f32) -> f32 {
  let r = inverseSqrt(v);
  return r * (1.5 - 0.5 * v * r * r);
}
fn tanh_safe(x: f32) -> f32 {
  let c = clamp(x, -15.0, 15.0);
  let e = exp(2.0 * c);
  return (e - 1.0) / (e + 1.0);
}
fn erf_f32(x: f32) -> f32 {
  // W. J. Cody-style rational approximation; |error| < 1.2e-7
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.5 * a);
  let y = 1.0 - t * exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
          t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
          t * (-0.82215223 + t * 0.17087277)))))))));
  return select(-y, y, x >= 0.0);
}
fn pow_any(x: f32, p: f32) -> f32 {
  if (p == 0.0) { return 1.0; }
  if (p == 1.0) { return x; }
  if (p == 2.0) { return x * x; }
  if (x < 0.0 && fract(p) == 0.0) {
    let r = pow(-x, p);
    return select(r, -r, fract(p * 0.5) != 0.0);
  }
  return pow(x, p);
}
fn gelu_grad(x: f32, approx_tanh: bool) -> f32 {
  if (approx_tanh) {
    let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    let t = tanh_safe(u);
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 0.134145 * x * x);
  }
  return 0.5 * (1.0 + erf_f32(x * 0.70710678118654752)) + x * exp(-0.5 * x * x) * 0.3989422804014327;
}
`;

interface EwOperand {
  t: Tensor;
}

/**
 * How an elementwise operand's element offset follows from the flat output index: 0 at the same flat index
 * (contiguous in the output's shape), 1 at the index modulo the size of its trailing dims (contiguous trailing dims
 * broadcast over leading ones: a bias `[N]` added to `[..., N]`, a scalar), 2 through the strides of every dim (a
 * division and a modulo per dim). The mode is a uniform, not part of the pipeline key: a view whose layout changes
 * with a length (a KV-cache slice) reuses the same pipeline. Modes 0 and 1 skip the per-dim loop (llvmpipe, interleaved
 * A/B, [1024, 768] float32: same-shape add 46 vs 90 ms, bias add 82 vs 106, gelu 49 vs 60); the H100 ran the ViT-B/16
 * bias adds at the same ~76 µs either way (bound elsewhere).
 */
function ewMode(st: readonly number[], shape: readonly number[]): { mode: number; inner: number } {
  let acc = 1;
  let k = shape.length; // dims k.. are contiguous (in the output's row-major strides)
  while (k > 0 && (shape[k - 1] === 1 || st[k - 1] === acc)) {
    acc *= shape[k - 1]!;
    k--;
  }
  if (k === 0) return { mode: 0, inner: acc };
  for (let i = 0; i < k; i++) if (shape[i] !== 1 && st[i] !== 0) return { mode: 2, inner: 0 };
  return { mode: 1, inner: acc };
}
function ewFields(name: string): UniformField[] {
  return [...stridedFields(name), [`${name}_md`, 'u32'], [`${name}_in`, 'u32']];
}
function ewOffsetFn(name: string): string {
  return stridedOffsetFn(
    name,
    `
  let md = u_${name}_md();
  if (md == 0u) { return u_${name}_off() + flat; }
  if (md == 1u) { return u_${name}_off() + flat % u_${name}_in(); }`,
  );
}

/**
 * One elementwise program: operands read strided and broadcast to `shape`, an expression over
 * `v0..vN` (each converted to `castTo` when given), written to `out` (contiguous or a strided view).
 */
function elementwise(
  name: string,
  key: string,
  operands: EwOperand[],
  out: Tensor,
  outStrided: boolean,
  shape: readonly number[],
  expr: string,
  extraUniforms: UniformField[] = [],
  extraValues: UniformValues = {},
): void {
  checkRank(shape, 'shape');
  const n = sizeOf(shape);
  if (n === 0) return;
  const device = out.device as WebGPUDevice;
  const names = operands.map((_, i) => `in${i}`);
  const bindings: BindingSpec[] = [
    ...operands.map((o, i) => ({ name: names[i]!, dtype: o.t.dtype, access: 'read' as const })),
    { name: 'out', dtype: out.dtype, access: 'read_write' },
  ];
  const uniforms: UniformField[] = [['n', 'u32'], ['rank', 'u32'], ['shape', 'u32', MAX_RANK], ...names.flatMap(ewFields), ...extraUniforms];
  if (outStrided) uniforms.push(...ewFields('out'));
  const values: UniformValues = { n, rank: shape.length, shape: shape.slice(), ...extraValues };
  operands.forEach((o, i) => {
    const st = broadcastStrides(o.t.shape, o.t.strides, shape);
    const m = ewMode(st, shape);
    values[`in${i}_off`] = o.t.offset;
    values[`in${i}_st`] = st;
    values[`in${i}_md`] = m.mode;
    values[`in${i}_in`] = m.inner;
  });
  if (outStrided) {
    values.out_off = out.offset;
    values.out_st = out.strides.slice();
    values.out_md = ewMode(out.strides, shape).mode === 0 ? 0 : 2;
    values.out_in = 0;
  }
  const loads = operands.map((_, i) => `  let v${i} = load_in${i}(off_in${i}(idx));`).join('\n');
  const outCt = computeType(out.dtype);
  const body = `
  let idx = flat_wg * WG_SIZE + lidx;
  if (idx >= u_n()) { return; }
${loads}
  store_out(${outStrided ? 'off_out(idx)' : 'idx'}, ${outCt}(${expr}));`;
  run(
    {
      name,
      key: `${key}|${outStrided ? 's' : 'c'}`,
      bindings,
      uniforms,
      workgroupSize: [EW_WG],
      helpers: [MATH_HELPERS, ...names.map(ewOffsetFn), ...(outStrided ? [ewOffsetFn('out')] : [])].join('\n'),
      body,
    },
    [...operands.map((o) => o.t), out],
    values,
    linearGrid(n, EW_WG, device),
  );
}

function castExpr(expr: string, from: DType, to: DType): string {
  if (to === 'bool') return `select(0u, 1u, ${expr} != ${computeType(from)}(0))`;
  if (from === 'bool') return `${computeType(to)}(${expr})`;
  return expr;
}

registerGpu({
  name: 'unary',
  backend: 'webgpu',
  fn: ([x], attrs: KernelAttrs, device) => {
    const op = attrs.op as string;
    const outDtype = (attrs.outDtype as DType) ?? x!.dtype;
    const base = UNARY_EXPR[op];
    if (!base) throw new WebattnError('INVALID_ARGUMENT', `unary op '${op}' is unknown`);
    const out = empty(x!.shape, outDtype, device);
    const expr = castExpr(base, x!.dtype, outDtype);
    const p: UniformField[] = op === 'pow' ? [['p', 'f32']] : [];
    elementwise(`unary_${op}`, `${op}>${outDtype}`, [{ t: x! }], out, false, x!.shape, expr, p, op === 'pow' ? { p: attrs.p as number } : {});
    return out;
  },
});

registerGpu({
  name: 'copy_into',
  backend: 'webgpu',
  fn: ([src, dst]) => {
    elementwise('copy_into', `copy>${dst!.dtype}`, [{ t: src! }], dst!, true, dst!.shape, castExpr('v0', src!.dtype, dst!.dtype));
    return dst!;
  },
});

registerGpu({
  name: 'binary',
  backend: 'webgpu',
  fn: ([a, b], attrs, device) => {
    const op = attrs.op as string;
    const shape = attrs.shape as number[];
    const expr = BINARY_EXPR[op]!;
    const compare = expr.startsWith('select');
    const out = empty(shape, compare ? 'bool' : a!.dtype, device);
    elementwise(`binary_${op}`, op, [{ t: a! }, { t: b! }], out, false, shape, expr);
    return out;
  },
});

registerGpu({
  name: 'where',
  backend: 'webgpu',
  fn: ([c, a, b], attrs, device) => {
    const shape = attrs.shape as number[];
    const out = empty(shape, a!.dtype, device);
    elementwise('where', 'where', [{ t: c! }, { t: a! }, { t: b! }], out, false, shape, 'select(v2, v1, v0 != 0u)');
    return out;
  },
});

registerGpu({
  name: 'gelu_backward',
  backend: 'webgpu',
  fn: ([x, g], attrs, device) => {
    const out = empty(x!.shape, x!.dtype, device);
    const approx = attrs.approximate === 'tanh';
    elementwise('gelu_backward', String(approx), [{ t: x! }, { t: g! }], out, false, x!.shape, `v1 * gelu_grad(v0, ${approx})`);
    return out;
  },
});

/** A new `shape` tensor of `dtype` filled with `value` by a kernel (no host buffer, no upload). */
function filled(shape: readonly number[], dtype: DType, value: number, device: WebGPUDevice): Tensor {
  return new T.Tensor(device.fill(dtype, sizeOf(shape), value), shape);
}

// ------------------------------------------------------------------------------ optimizer
registerGpu({
  name: 'adamw_step',
  backend: 'webgpu',
  fn: (inputs, attrs, device) => {
    const a = attrs as unknown as T.AdamwStepAttrs & { skipIf?: boolean };
    // optional inputs after [param, grad, m, v]: the low-precision copy, then (attrs.skipIf) a float32 flag whose
    // first element, when nonzero, makes the kernel write nothing (GradScaler's inf/NaN flag, read on the device)
    const flag = a.skipIf === true ? inputs[inputs.length - 1]! : null;
    const [p, g0, m, v, low0] = (flag ? inputs.slice(0, -1) : inputs) as [Tensor, Tensor, Tensor, Tensor, Tensor | undefined];
    // in place on contiguous state; a strided view is updated through a contiguous copy written back
    const own = [p, m, v].map((t) => (t.isContiguous ? t : t.contiguous().detach()));
    const g = contiguousInput(g0);
    // an optional fifth input (a float16 parameter whose float32 master is `p`) receives the updated value rounded
    // in the same kernel: mixed-precision AdamW in one dispatch per parameter instead of update, cast and copy
    const low = low0 ? (low0.isContiguous ? low0 : low0.contiguous().detach()) : null;
    const body = `
  let i = flat_wg * WG_SIZE + lidx;
  if (i >= u_n()) { return; }${flag ? '\n  if (load_flg(u_f_off()) != 0.0) { return; }' : ''}
  let gr = load_grd(u_g_off() + i);
  store_mom(u_m_off() + i, u_b1() * load_mom(u_m_off() + i) + (1.0 - u_b1()) * gr);
  store_sq(u_v_off() + i, u_b2() * load_sq(u_v_off() + i) + (1.0 - u_b2()) * gr * gr);
  let w = load_prm(u_p_off() + i) * u_decay();
  let nw = w - u_step_size() * load_mom(u_m_off() + i) / (sqrt(load_sq(u_v_off() + i)) / u_bc2s() + u_eps());
  store_prm(u_p_off() + i, nw);${low ? `\n  store_cpy(u_c_off() + i, ${computeType(low.dtype)}(nw));` : ''}`;
    run(
      {
        name: 'adamw_step',
        key: `${low ? 'c' : ''}${flag ? 'f' : ''}`,
        bindings: [
          { name: 'prm', dtype: own[0]!.dtype, access: 'read_write' },
          { name: 'grd', dtype: g.dtype, access: 'read' },
          { name: 'mom', dtype: own[1]!.dtype, access: 'read_write' },
          { name: 'sq', dtype: own[2]!.dtype, access: 'read_write' },
          ...(low ? [{ name: 'cpy', dtype: low.dtype, access: 'read_write' as const }] : []),
          ...(flag ? [{ name: 'flg', dtype: flag.dtype, access: 'read' as const }] : []),
        ],
        uniforms: [
          ['n', 'u32'],
          ['p_off', 'u32'],
          ['g_off', 'u32'],
          ['m_off', 'u32'],
          ['v_off', 'u32'],
          ['b1', 'f32'],
          ['b2', 'f32'],
          ['eps', 'f32'],
          ['decay', 'f32'],
          ['step_size', 'f32'],
          ['bc2s', 'f32'],
          ...(low ? [['c_off', 'u32'] as UniformField] : []),
          ...(flag ? [['f_off', 'u32'] as UniformField] : []),
        ],
        workgroupSize: [EW_WG],
        body,
      },
      [own[0]!, g, own[1]!, own[2]!, ...(low ? [low] : []), ...(flag ? [flag] : [])],
      { n: p.size, p_off: own[0]!.offset, g_off: g.offset, m_off: own[1]!.offset, v_off: own[2]!.offset, b1: a.beta1, b2: a.beta2, eps: a.eps, decay: a.decay, step_size: a.stepSize, bc2s: a.bc2Sqrt, ...(low ? { c_off: low.offset } : {}), ...(flag ? { f_off: flag.offset } : {}) },
      linearGrid(p.size, EW_WG, device),
    );
    [p, m, v].forEach((t, i) => {
      if (own[i] !== t) runKernel('copy_into', device, [own[i]!, t]);
    });
    if (low && low !== low0) runKernel('copy_into', device, [low, low0!]);
    return [p];
  },
});

/**
 * `amp_unscale` (inputs `[grad, flag]`, attrs `{ inv }`): a new contiguous float32 tensor `grad · inv` (the
 * gradient of any float dtype read as float32), and `flag[0] = 1` when any element of it is inf or NaN (`flag` a
 * float32 tensor the caller zeroed; other elements untouched). One dispatch per gradient for `GradScaler.unscale`
 * (`torch._amp_foreach_non_finite_check_and_unscale_`), where cast, scale, a sum of `u·0` and an accumulation took six.
 */
registerGpu({
  name: 'amp_unscale',
  backend: 'webgpu',
  fn: ([g0, flag], attrs, device) => {
    const g = contiguousInput(g0!);
    const out = empty(g.shape, 'float32', device);
    if (g.size === 0) return out;
    // the exponent bits decide (all ones: inf or NaN), not a comparison a compiler may assume finite
    const body = `
  let i = flat_wg * WG_SIZE + lidx;
  if (i >= u_n()) { return; }
  let u = f32(load_grd(u_g_off() + i)) * u_inv();
  store_out(i, u);
  if ((bitcast<u32>(u) & 0x7f800000u) == 0x7f800000u) { store_flag(u_f_off(), 1.0); }`;
    run(
      {
        name: 'amp_unscale',
        key: '',
        bindings: [
          { name: 'grd', dtype: g.dtype, access: 'read' },
          { name: 'flag', dtype: 'float32', access: 'read_write' },
          { name: 'out', dtype: 'float32', access: 'read_write' },
        ],
        uniforms: [
          ['n', 'u32'],
          ['g_off', 'u32'],
          ['f_off', 'u32'],
          ['inv', 'f32'],
        ],
        workgroupSize: [EW_WG],
        body,
      },
      [g, flag!, out],
      { n: g.size, g_off: g.offset, f_off: flag!.offset, inv: attrs.inv as number },
      linearGrid(g.size, EW_WG, device),
    );
    return out;
  },
});

// ------------------------------------------------------------------------------ reductions
function contiguousInput(t: Tensor): Tensor {
  return t.isContiguous ? t : t.contiguous().detach();
}

registerGpu({
  name: 'reduce',
  backend: 'webgpu',
  fn: ([x0], attrs, device) => {
    const axis0 = attrs.axis as number;
    const op = attrs.op as 'sum' | 'max' | 'min';
    const n0 = x0!.shape[axis0]!;
    const inner0 = sizeOf(x0!.shape.slice(axis0 + 1));
    const rowCap = device.maxLoopIterations * 0.6;
    if (inner0 > 1 && n0 > rowCap) {
      // one thread per output would loop n times, past the adapter's loop cap: reduce the axis as rows
      const perm = x0!.shape.map((_, i) => i).filter((i) => i !== axis0);
      perm.push(axis0);
      const moved = x0!.permute(perm).contiguous().detach();
      const r = runKernel('reduce', device, [moved], { op, axis: moved.rank - 1 })[0]!;
      return r.reshape(x0!.shape.map((d, i) => (i === axis0 ? 1 : d))).contiguous().detach();
    }
    if (n0 > 32 * rowCap) {
      // a row too long for one workgroup under the loop cap: reduce slices of it, then the partial results
      const piece = Math.floor(32 * rowCap);
      const parts: Tensor[] = [];
      for (let at = 0; at < n0; at += piece) {
        parts.push(runKernel('reduce', device, [x0!.slice(axis0, at, Math.min(n0, at + piece)).detach()], { op, axis: axis0 })[0]!);
      }
      return runKernel('reduce', device, [T.cat(parts, axis0).detach()], { op, axis: axis0 })[0]!;
    }
    const x = contiguousInput(x0!);
    const axis = axis0;
    {
      // few outputs and a long axis (bias / LayerNorm weight gradients: [tokens, features] over the
      // tokens): one thread per output would loop over every row with the GPU nearly idle. Reduce
      // chunks of c rows first (many threads), then the partial results.
      const len = x.shape[axis]!;
      const inr = sizeOf(x.shape.slice(axis + 1));
      const outs = sizeOf(x.shape) / Math.max(1, len);
      const c = [64, 32, 16, 8].find((d) => len % d === 0 && len / d >= 8);
      if (inr > 1 && outs < 16384 && len >= 256 && c) {
        const split = [...x.shape.slice(0, axis), len / c, c, ...x.shape.slice(axis + 1)];
        const partial = runKernel('reduce', device, [x.reshape(split).detach()], { op, axis: axis + 1 })[0]!;
        const r = runKernel('reduce', device, [partial.detach()], { op, axis })[0]!;
        return r.reshape(x.shape.map((d, i) => (i === axis ? 1 : d))).detach();
      }
    }
    const outer = sizeOf(x.shape.slice(0, axis));
    const n = x.shape[axis]!;
    const inner = sizeOf(x.shape.slice(axis + 1));
    const os = x.shape.slice();
    os[axis] = 1;
    const out = empty(os, x.dtype, device);
    if (outer * inner === 0) return out;
    const ct = computeType(x.dtype);
    const init = op === 'sum' ? `${ct}(0)` : ct === 'f32' ? (op === 'max' ? 'neg_inf()' : 'pos_inf()') : op === 'max' ? (ct === 'i32' ? '-2147483647 - 1' : '0u') : ct === 'i32' ? '2147483647' : '4294967295u';
    const comb = op === 'sum' ? 'acc + e' : op === 'max' ? 'max(acc, e)' : 'min(acc, e)';
    const bindings: BindingSpec[] = [
      { name: 'x', dtype: x.dtype, access: 'read' },
      { name: 'out', dtype: x.dtype, access: 'read_write' },
    ];
    const uniforms: UniformField[] = [['outer', 'u32'], ['n', 'u32'], ['inner', 'u32'], ['x_off', 'u32']];
    const values = { outer, n, inner, x_off: x.offset };
    if (inner === 1 && ct === 'f32' && n > 32 && op !== 'min') {
      // one workgroup per output row, tree reduction in workgroup memory
      const body = `
  let row = flat_wg;
  if (row >= u_outer()) { return; }
  var acc: f32 = ${init};
  for (var k = lidx; k < u_n(); k = k + WG_SIZE) {
    let e = load_x(u_x_off() + row * u_n() + k);
    acc = ${comb};
  }
  let r = wg_reduce(acc, lidx, ${op === 'max'});
  if (lidx == 0u) { store_out(row, r); }`;
      run({ name: `reduce_rows_${op}`, key: op, bindings, uniforms, workgroupSize: [ROW_WG], helpers: wgReduce(useSubgroups(device)), subgroups: useSubgroups(device), body }, [x, out], values, rowGrid(outer, device));
      return out;
    }
    const body = `
  let idx = flat_wg * WG_SIZE + lidx;
  if (idx >= u_outer() * u_inner()) { return; }
  let o = idx / u_inner();
  let i = idx % u_inner();
  var acc: ${ct} = ${init};
  for (var k = 0u; k < u_n(); k = k + 1u) {
    let e = load_x(u_x_off() + (o * u_n() + k) * u_inner() + i);
    acc = ${comb};
  }
  store_out(idx, acc);`;
    run({ name: `reduce_${op}`, key: op, bindings, uniforms, workgroupSize: [EW_WG], body }, [x, out], values, linearGrid(outer * inner, EW_WG, device));
    return out;
  },
});

// ------------------------------------------------------------------------------ row kernels
function rowGrid(rows: number, device: WebGPUDevice): [number, number, number] {
  return linearGrid(rows * ROW_WG, ROW_WG, device);
}

registerGpu({
  name: 'softmax',
  backend: 'webgpu',
  fn: ([x0], attrs, device) => {
    const x = contiguousInput(x0!);
    const n = x.shape[x.rank - 1] ?? 1;
    const rows = n === 0 ? 0 : x.size / n;
    const out = empty(x.shape, x.dtype, device);
    if (rows === 0) return out;
    const log = !!attrs.log;
    const body = `
  let row = flat_wg;
  if (row >= u_rows()) { return; }
  let base = u_x_off() + row * u_n();
  var m = neg_inf();
  for (var k = lidx; k < u_n(); k = k + WG_SIZE) { m = max(m, load_x(base + k)); }
  m = wg_max(m, lidx);
  var s = 0.0;
  if (m > neg_inf()) {
    for (var k = lidx; k < u_n(); k = k + WG_SIZE) { s = s + exp(load_x(base + k) - m); }
  }
  s = wg_sum(s, lidx);
  let ls = log(s);
  for (var k = lidx; k < u_n(); k = k + WG_SIZE) {
    let z = load_x(base + k) - m;
    var y: f32;
    if (s == 0.0) { y = ${log ? 'neg_inf()' : '0.0'}; } else { y = ${log ? 'z - ls' : 'exp(z) / s'}; }
    store_out(row * u_n() + k, y);
  }`;
    run(
      {
        name: log ? 'log_softmax' : 'softmax',
        key: String(log),
        bindings: [
          { name: 'x', dtype: x.dtype, access: 'read' },
          { name: 'out', dtype: x.dtype, access: 'read_write' },
        ],
        uniforms: [['rows', 'u32'], ['n', 'u32'], ['x_off', 'u32']],
        workgroupSize: [ROW_WG],
        helpers: wgReduce(useSubgroups(device)),
        subgroups: useSubgroups(device),
        body,
      },
      [x, out],
      { rows, n, x_off: x.offset },
      rowGrid(rows, device),
    );
    return out;
  },
});

registerGpu({
  name: 'layer_norm',
  backend: 'webgpu',
  fn: (inputs, attrs, device) => {
    const x = contiguousInput(inputs[0]!);
    const [rows, d] = x.shape as [number, number];
    let k = 1;
    const w = attrs.hasWeight ? contiguousInput(inputs[k++]!) : null;
    const b = attrs.hasBias ? contiguousInput(inputs[k++]!) : null;
    const y = empty([rows, d], x.dtype, device);
    const mean = empty([rows], x.dtype, device);
    const rstd = empty([rows], x.dtype, device);
    if (rows === 0) return [y, mean, rstd];
    const bindings: BindingSpec[] = [
      { name: 'x', dtype: x.dtype, access: 'read' },
      ...(w ? [{ name: 'w', dtype: w.dtype, access: 'read' as const }] : []),
      ...(b ? [{ name: 'b', dtype: b.dtype, access: 'read' as const }] : []),
      { name: 'y', dtype: x.dtype, access: 'read_write' },
      { name: 'mean', dtype: x.dtype, access: 'read_write' },
      { name: 'rstd', dtype: x.dtype, access: 'read_write' },
    ];
    const body = `
  let row = flat_wg;
  if (row >= u_rows()) { return; }
  let base = u_x_off() + row * u_d();
  let df = f32(u_d());
  var s = 0.0;
  for (var k = lidx; k < u_d(); k = k + WG_SIZE) { s = s + load_x(base + k); }
  let mu = wg_sum(s, lidx) / df;
  var q = 0.0;
  for (var k = lidx; k < u_d(); k = k + WG_SIZE) { let c = load_x(base + k) - mu; q = q + c * c; }
  let rs = rsqrt_refined(wg_sum(q, lidx) / df + u_eps());
  for (var k = lidx; k < u_d(); k = k + WG_SIZE) {
    let v = (load_x(base + k) - mu) * rs;
    store_y(row * u_d() + k, v${w ? ' * load_w(u_w_off() + k)' : ''}${b ? ' + load_b(u_b_off() + k)' : ''});
  }
  if (lidx == 0u) { store_mean(row, mu); store_rstd(row, rs); }`;
    const uniforms: UniformField[] = [['rows', 'u32'], ['d', 'u32'], ['eps', 'f32'], ['x_off', 'u32'], ['w_off', 'u32'], ['b_off', 'u32']];
    run(
      { name: 'layer_norm', key: `${!!w}${!!b}`, bindings, uniforms, workgroupSize: [ROW_WG], helpers: wgReduce(useSubgroups(device)) + MATH_HELPERS, subgroups: useSubgroups(device), body },
      [x, ...(w ? [w] : []), ...(b ? [b] : []), y, mean, rstd],
      { rows, d, eps: attrs.eps as number, x_off: x.offset, w_off: w?.offset ?? 0, b_off: b?.offset ?? 0 },
      rowGrid(rows, device),
    );
    return [y, mean, rstd];
  },
});

registerGpu({
  name: 'layer_norm_backward',
  backend: 'webgpu',
  fn: (inputs, attrs, device) => {
    const [x, g, mean, rstd] = inputs.slice(0, 4).map((t) => contiguousInput(t!)) as [Tensor, Tensor, Tensor, Tensor];
    const w = attrs.hasWeight ? contiguousInput(inputs[4]!) : null;
    const [rows, d] = x.shape as [number, number];
    const dx = empty([rows, d], x.dtype, device);
    if (rows === 0) return dx;
    const gw = w ? 'load_g(u_g_off() + row * u_d() + k) * load_w(u_w_off() + k)' : 'load_g(u_g_off() + row * u_d() + k)';
    const body = `
  let row = flat_wg;
  if (row >= u_rows()) { return; }
  let mu = load_mean(u_m_off() + row);
  let rs = load_rstd(u_r_off() + row);
  var s1 = 0.0;
  var s2 = 0.0;
  for (var k = lidx; k < u_d(); k = k + WG_SIZE) {
    let xh = (load_x(u_x_off() + row * u_d() + k) - mu) * rs;
    let gw = ${gw};
    s1 = s1 + gw;
    s2 = s2 + gw * xh;
  }
  let t1 = wg_sum(s1, lidx) / f32(u_d());
  let t2 = wg_sum(s2, lidx) / f32(u_d());
  for (var k = lidx; k < u_d(); k = k + WG_SIZE) {
    let xh = (load_x(u_x_off() + row * u_d() + k) - mu) * rs;
    let gw = ${gw};
    store_dx(row * u_d() + k, rs * (gw - t1 - xh * t2));
  }`;
    const bindings: BindingSpec[] = [
      { name: 'x', dtype: x.dtype, access: 'read' },
      { name: 'g', dtype: g.dtype, access: 'read' },
      { name: 'mean', dtype: mean.dtype, access: 'read' },
      { name: 'rstd', dtype: rstd.dtype, access: 'read' },
      ...(w ? [{ name: 'w', dtype: w.dtype, access: 'read' as const }] : []),
      { name: 'dx', dtype: x.dtype, access: 'read_write' },
    ];
    const uniforms: UniformField[] = [['rows', 'u32'], ['d', 'u32'], ['x_off', 'u32'], ['g_off', 'u32'], ['m_off', 'u32'], ['r_off', 'u32'], ['w_off', 'u32']];
    run(
      { name: 'layer_norm_backward', key: String(!!w), bindings, uniforms, workgroupSize: [ROW_WG], helpers: wgReduce(useSubgroups(device)), subgroups: useSubgroups(device), body },
      [x, g, mean, rstd, ...(w ? [w] : []), dx],
      { rows, d, x_off: x.offset, g_off: g.offset, m_off: mean.offset, r_off: rstd.offset, w_off: w?.offset ?? 0 },
      rowGrid(rows, device),
    );
    return dx;
  },
});

// matmul: see matmul.ts

// ------------------------------------------------------------------------------ embedding
/** One thread per (row r, column j) of a gather/scatter by int32 `ids`; `id` is row r's index. */
const GATHER_PRELUDE = `
  let idx = flat_wg * WG_SIZE + lidx;
  if (idx >= u_rows() * u_d()) { return; }
  let r = idx / u_d();
  let j = idx % u_d();
  let id = load_ids(u_i_off() + r);`;
registerGpu({
  name: 'embedding',
  backend: 'webgpu',
  fn: ([w0, ids0], _attrs, device) => {
    const w = contiguousInput(w0!);
    const ids = contiguousInput(ids0!);
    const [v, d] = w.shape as [number, number];
    const rows = ids.size;
    const out = empty([rows, d], w.dtype, device);
    if (rows * d === 0) return out;
    const body = `
${GATHER_PRELUDE}
  var val = 0.0;
  if (id >= 0 && u32(id) < u_v()) { val = load_w(u_w_off() + u32(id) * u_d() + j); }
  store_out(idx, val);`;
    run(
      {
        name: 'embedding',
        key: '',
        bindings: [
          { name: 'w', dtype: w.dtype, access: 'read' },
          { name: 'ids', dtype: 'int32', access: 'read' },
          { name: 'out', dtype: w.dtype, access: 'read_write' },
        ],
        uniforms: [['rows', 'u32'], ['d', 'u32'], ['v', 'u32'], ['w_off', 'u32'], ['i_off', 'u32']],
        workgroupSize: [EW_WG],
        body,
      },
      [w, ids, out],
      { rows, d, v, w_off: w.offset, i_off: ids.offset },
      linearGrid(rows * d, EW_WG, device),
    );
    return out;
  },
});

registerGpu({
  name: 'embedding_backward',
  backend: 'webgpu',
  fn: ([g0, ids0], attrs, device) => {
    const g = contiguousInput(g0!);
    const ids = contiguousInput(ids0!);
    const v = attrs.numEmbeddings as number;
    const [rows, d] = g.shape as [number, number];
    const out = filled([v, d], 'float32', 0, device);
    if (rows * d === 0) return out;
    // float atomic add through compare-exchange on the f32 bits
    const body = `
${GATHER_PRELUDE}
  if (id < 0 || u32(id) >= u_v()) { return; }
  let add = load_g(u_g_off() + idx);
  let slot = u32(id) * u_d() + j;
  var old = atomicLoad(&out[slot]);
  loop {
    let res = atomicCompareExchangeWeak(&out[slot], old, bitcast<u32>(bitcast<f32>(old) + add));
    if (res.exchanged) { break; }
    old = res.old_value;
  }`;
    run(
      {
        name: 'embedding_backward',
        key: '',
        bindings: [
          { name: 'g', dtype: g.dtype, access: 'read' },
          { name: 'ids', dtype: 'int32', access: 'read' },
          { name: 'out', dtype: 'float32', access: 'read_write', atomic: true },
        ],
        uniforms: [['rows', 'u32'], ['d', 'u32'], ['v', 'u32'], ['g_off', 'u32'], ['i_off', 'u32']],
        workgroupSize: [EW_WG],
        body,
      },
      [g, ids, out],
      { rows, d, v, g_off: g.offset, i_off: ids.offset },
      linearGrid(rows * d, EW_WG, device),
    );
    return g.dtype === 'float32' ? out : out.cast(g.dtype).detach();
  },
});

// ------------------------------------------------------------------------------ cross-entropy
function crossEntropyProgram(backward: boolean) {
  const lse = `
  let row = flat_wg;
  if (row >= u_rows()) { return; }
  let base = u_l_off() + row * u_c();
  let t = load_t(u_t_off() + row);
  var m = neg_inf();
  for (var k = lidx; k < u_c(); k = k + WG_SIZE) { m = max(m, load_l(base + k)); }
  m = wg_max(m, lidx);
  var s = 0.0;
  for (var k = lidx; k < u_c(); k = k + WG_SIZE) { s = s + exp(load_l(base + k) - m); }
  let lse = m + log(wg_sum(s, lidx));
  let ignored = t == u_ignore() || t < 0 || u32(t) >= u_c();`;
  const fwd = `
  if (lidx == 0u) {
    var loss = 0.0;
    if (!ignored) { loss = lse - load_l(base + u32(t)); }
    store_out(row, loss);
  }`;
  const bwd = `
  let gr = load_g(u_g_off() + row);
  for (var k = lidx; k < u_c(); k = k + WG_SIZE) {
    var d = 0.0;
    if (!ignored) { d = gr * (exp(load_l(base + k) - lse) - select(0.0, 1.0, k == u32(t))); }
    store_out(row * u_c() + k, d);
  }`;
  return lse + (backward ? bwd : fwd);
}

function crossEntropyKernel(backward: boolean) {
  return (inputs: readonly Tensor[], attrs: KernelAttrs, device: WebGPUDevice) => {
    const l = contiguousInput(inputs[0]!);
    const t = contiguousInput(inputs[1]!);
    const g = backward ? contiguousInput(inputs[2]!) : null;
    const [rows, c] = l.shape as [number, number];
    const out = empty(backward ? [rows, c] : [rows], l.dtype, device);
    if (rows === 0) return out;
    run(
      {
        name: backward ? 'cross_entropy_backward' : 'cross_entropy',
        key: '',
        bindings: [
          { name: 'l', dtype: l.dtype, access: 'read' },
          { name: 't', dtype: 'int32', access: 'read' },
          ...(g ? [{ name: 'g', dtype: g.dtype, access: 'read' as const }] : []),
          { name: 'out', dtype: l.dtype, access: 'read_write' },
        ],
        uniforms: [['rows', 'u32'], ['c', 'u32'], ['ignore', 'i32'], ['l_off', 'u32'], ['t_off', 'u32'], ['g_off', 'u32']],
        workgroupSize: [ROW_WG],
        helpers: wgReduce(useSubgroups(device)),
        subgroups: useSubgroups(device),
        body: crossEntropyProgram(backward),
      },
      [l, t, ...(g ? [g] : []), out],
      { rows, c, ignore: attrs.ignoreIndex as number, l_off: l.offset, t_off: t.offset, g_off: g?.offset ?? 0 },
      rowGrid(rows, device),
    );
    return out;
  };
}

registerGpu({ name: 'cross_entropy', backend: 'webgpu', fn: crossEntropyKernel(false) });
registerGpu({ name: 'cross_entropy_backward', backend: 'webgpu', fn: crossEntropyKernel(true) });
