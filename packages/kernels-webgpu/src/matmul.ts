/**
 * Matrix products on WebGPU (`matmul` kernel of the `webgpu` backend).
 *
 * Generated programs:
 * - on hardware adapters, the split kernel: 16×16 threads each 8×8 (128×128 tiles) or 4×4 (64×64) outputs, or 8×16
 *   threads (along N × along M) each 8×16 (128×128) or 8×8 (128×64) outputs, in 4×4 blocks spaced 4·threads apart,
 *   K tiles staged through registers with the next tile's loads issued before this tile's products (`splitSource`,
 *   tilings by `hardwareTiling`).
 * - a tiled, register-blocked kernel for every adapter and float dtype (the fallback): a 16×16 workgroup computes a
 *   (16·TM)×(16·TN) output tile from 16-deep K tiles staged in workgroup memory, each thread TM×TN
 *   outputs accumulated in f32. Operands are read in place through their strides (transposed views and
 *   broadcast batch dims cost no copy), with vec4 loads along whichever axis is contiguous; K is split
 *   into passes that stay under the adapter's loop cap (Mesa llvmpipe stops shader loops after 65535
 *   iterations), each pass adding into the output.
 * - a matrix-vector kernel for products of at most {@link GEMV_MAX_M} rows (a decode step's projections
 *   and attention scores): one thread per output column (or four, vec4 along N), every row of the
 *   product in registers. Its cache key holds the dtype, the row count and the operands' layout (which
 *   axis is contiguous and 4-aligned) but no length that grows by one per generated token, so every
 *   decode step after the first reuses its pipelines. On software adapters the same kernel with 4×4
 *   blocks of dot products (`matmul_k4x4`) takes the products whose operands are both contiguous along
 *   K (q·kᵀ, a tied lm_head x·wteᵀ): 1.5-2.8× faster than the staged tiles on llvmpipe, and ~0.7 s to
 *   compile on SwiftShader where the tiles took ~9.5 s.
 * - a float16 kernel on `chromium-experimental-subgroup-matrix` (tensor cores through WGSL): f16
 *   operands staged in workgroup memory with vec4 loads along whichever axis is contiguous (row-major tiles,
 *   or column-major ones read by column-major matrix loads for xᵀ·dy and x·Wᵀ), 16×16×16 (or 16×8×16)
 *   subgroup matrix products accumulated in f32, converted to f16 on store. The column-major layouts default
 *   to 8 f16 per staging load (`vec4<u32>` of f16 pairs) and stores of four f16 per lane (SGMM_COL_A/B).
 */
import {
  registerKernel,
  sizeOf,
  zeros,
  empty,
  type DType,
  type Tensor,
} from '@webattn/core-tensor';
import type { GpuProgram, WebGPUDevice } from './device/webgpu-device.js';
import { checkRank, MAX_RANK } from './wgsl.js';

/** How an operand tile is fetched: vec4 along the first or second matrix axis, or scalars. */
type LoadMode = 'v0' | 'v1' | 's';

interface TiledConfig {
  wg: number;
  bk: number;
  tm: number;
  tn: number;
  modeA: LoadMode;
  modeB: LoadMode;
  vecOut: boolean;
  dtype: DType;
}

/** Parameters of the subgroup-matrix kernel (exported for the microbenchmarks). */
export interface SgmmConfig {
  /** Subgroups along M and N in a workgroup. */
  sgm: number;
  sgn: number;
  /** 16-row (left) and N-column (right) matrices per subgroup along M and N. */
  tm: number;
  tn: number;
  /** Depth of a K tile staged in workgroup memory (multiple of 16). */
  tk: number;
  /** Columns of one result matrix: 16 (16x16x16) or 8 (16x8x16). */
  nsz: 16 | 8;
  /** Stage with vec4 loads where the layout allows ('v' = A contiguous along K, B along N). */
  vec: boolean;
  /** Two staging buffers: the next K tile loads while this one multiplies. */
  double: boolean;
  /** Issue the next K tile's global loads (into registers) before this tile's products (one staging buffer). */
  prefetch?: boolean;
  /**
   * With `vec`: A contiguous along M and B contiguous along K (weight gradients xᵀ·dy, x·Wᵀ) staged with vec4
   * loads into column-major tiles read by column-major matrix loads (default); `false`: scalar staging for them.
   */
  colMajor?: boolean;
  /** With `vec`: 8 f16 per staging load (a `vec4<u32>` of f16 pairs) where the operand's offsets, strides and contiguous dim are multiples of 8; else 4. */
  wide?: boolean;
  /**
   * Vectorized store: four f16 per lane per step (packed into a `vec2<u32>`) where N is a multiple of 4, and as many
   * result matrices of a row per pair of barriers as the workgroup memory budget allows (else one, scalar stores).
   */
  vstore?: boolean;
}

/** Tiling of the f32-accumulating kernel: `wg`×`wg` threads, each `tm`×`tn` outputs, K tiles `bk` deep. */
export interface TiledMatmulConfig {
  wg: number;
  bk: number;
  tm: number;
  tn: number;
  /**
   * The split kernel: each thread's outputs in 4×4 blocks spaced `4·wg` apart (consecutive vec4 reads of the
   * B tile per warp, coalesced stores), staged through registers. Needs `tm`, `tn` multiples of 4.
   */
  split?: boolean;
  /** Split kernel only: issue the next K tile's global loads before this tile's products. */
  prefetch?: boolean;
  /**
   * Split kernel only: threads along M (default `wg`, threads along N): `wg`·`wgy` threads, (`wgy`·`tm`)×(`wg`·`tn`)
   * output tiles. `wg` = 8 puts a warp on 8 consecutive vec4 of the B tile (one 128-byte workgroup-memory read).
   */
  wgy?: number;
  /**
   * Split kernel only: two workgroup buffers per operand, the next K tile (loaded before this tile's products) stored
   * into the other one after them: one barrier per K tile instead of two. Slower on the H100 at every measured shape
   * (4096³ 5.0 ms vs 4.0 with 16-deep K tiles; docs/benchmarks/2026-11-25-h100-matmul-ab-mm2.json): not a default.
   */
  double?: boolean;
}
let tiledOverride: TiledMatmulConfig | null = null;
/** Forces a tiling of the f32-accumulating matmul kernel (`null`: chosen per adapter and shape). For benchmarks. */
export function setTiledMatmul(cfg: TiledMatmulConfig | null): void {
  tiledOverride = cfg;
}

const U_WGSL = `
struct P {
  m: u32, n: u32, k: u32, k0: u32,
  k1: u32, acc: u32, brank: u32, z0: u32,
  a_off: u32, a_rs: u32, a_cs: u32, b_off: u32,
  b_rs: u32, b_cs: u32, pad0: u32, pad1: u32,
  bshape: array<vec4<u32>, ${MAX_RANK / 4}>,
  a_bst: array<vec4<u32>, ${MAX_RANK / 4}>,
  b_bst: array<vec4<u32>, ${MAX_RANK / 4}>,
};
@group(0) @binding(3) var<uniform> p: P;
fn batch_offsets(z: u32) -> vec2<u32> {
  var rem = z;
  var oa = p.a_off;
  var ob = p.b_off;
  for (var d = i32(p.brank) - 1; d >= 0; d = d - 1) {
    let i = u32(d);
    let sz = p.bshape[i / 4u][i % 4u];
    let c = rem % sz;
    rem = rem / sz;
    oa = oa + c * p.a_bst[i / 4u][i % 4u];
    ob = ob + c * p.b_bst[i / 4u][i % 4u];
  }
  return vec2<u32>(oa, ob);
}`;

interface MatmulUniforms {
  m: number;
  n: number;
  k: number;
  k0: number;
  k1: number;
  acc: number;
  brank: number;
  z0: number;
  a_off: number;
  a_rs: number;
  a_cs: number;
  b_off: number;
  b_rs: number;
  b_cs: number;
  bshape: readonly number[];
  a_bst: readonly number[];
  b_bst: readonly number[];
}

function packMatmulUniforms(u: MatmulUniforms): ArrayBuffer {
  const buf = new Uint32Array(16 + 3 * MAX_RANK);
  buf.set([u.m, u.n, u.k, u.k0, u.k1, u.acc, u.brank, u.z0, u.a_off, u.a_rs, u.a_cs, u.b_off, u.b_rs, u.b_cs, 0, 0]);
  buf.set(u.bshape, 16);
  buf.set(u.a_bst, 16 + MAX_RANK);
  buf.set(u.b_bst, 16 + 2 * MAX_RANK);
  return buf.buffer;
}

const lines = (n: number, f: (i: number) => string): string => Array.from({ length: n }, (_, i) => f(i)).join('\n');

/**
 * WGSL that fills `dst` (workgroup `array<vec4<f32>>` laid out [kk][rows/4], vec4 along axis 0) with
 * a `rows`×`BK` tile of an operand whose axis 0 (M or N) has stride `s0` and K has stride `sk`. Mode
 * `v0` reads vec4 along axis 0, `v1` vec4 along K, `s` scalars. `lim0` bounds axis 0, `p.k1` bounds K.
 */
function stageTile(wg: number, BK: number, dst: string, src: string, rows: number, mode: LoadMode, base: string, s0: string, sk: string, at0: string, lim0: string): string {
  const threads = wg * wg;
  const quads = rows / 4;
  if (mode === 's') {
    return lines((rows * BK) / threads, (r) => `  {
    let e = lidx + ${r * threads}u;
    let kk = e / ${rows}u;
    let i0 = e % ${rows}u;
    var v = 0.0;
    if (${at0} + i0 < ${lim0} && kt + kk < p.k1) { v = f32(${src}[${base} + (${at0} + i0) * ${s0} + (kt + kk) * ${sk}]); }
    ${dst}[kk * ${quads}u + i0 / 4u][i0 % 4u] = v;
  }`);
  }
  if (mode === 'v0') {
    return lines((rows * BK) / 4 / threads, (r) => `  {
    let e = lidx + ${r * threads}u;
    let kk = e / ${quads}u;
    let q = e % ${quads}u;
    var v = vec4<f32>(0.0);
    if (${at0} + q * 4u < ${lim0} && kt + kk < p.k1) { v = vec4<f32>(${src}[(${base} + (${at0} + q * 4u) + (kt + kk) * ${sk}) / 4u]); }
    ${dst}[kk * ${quads}u + q] = v;
  }`);
  }
  // vec4 along K (the operand is contiguous along K): e -> (row, quad of K)
  return lines((rows * BK) / 4 / threads, (r) => `  {
    let e = lidx + ${r * threads}u;
    let i0 = e / ${BK / 4}u;
    let q = e % ${BK / 4}u;
    var v = vec4<f32>(0.0);
    if (${at0} + i0 < ${lim0} && kt + q * 4u < p.k1) { v = vec4<f32>(${src}[(${base} + (${at0} + i0) * ${s0} + kt + q * 4u) / 4u]); }
    let c = i0 % 4u;
    let o = (q * 4u) * ${quads}u + i0 / 4u;
    ${dst}[o][c] = v.x;
    ${dst}[o + ${quads}u][c] = v.y;
    ${dst}[o + ${2 * quads}u][c] = v.z;
    ${dst}[o + ${3 * quads}u][c] = v.w;
  }`);
}

function tiledSource(c: TiledConfig): string {
  const WG = c.wg;
  const BK = c.bk;
  const st = c.dtype === 'float16' ? 'f16' : 'f32';
  const bm = WG * c.tm;
  const bn = WG * c.tn;
  const tn4 = c.tn / 4;
  const aT = c.modeA === 's' ? st : `vec4<${st}>`;
  const bT = c.modeB === 's' ? st : `vec4<${st}>`;
  const oT = c.vecOut ? `vec4<${st}>` : st;
  const tm4 = c.tm / 4;
  const compute = lines(BK, (kk) => {
    const a = lines(tm4, (i) => `    let a${i} = As[${(kk * bm) / 4}u + ty * ${tm4}u + ${i}u];`);
    const b = lines(tn4, (j) => `    let b${j} = Bs[${(kk * bn) / 4}u + tx * ${tn4}u + ${j}u];`);
    const fma = lines(c.tm, (i) => lines(tn4, (j) => `    acc[${i * tn4 + j}] = fma(vec4<f32>(a${i >> 2}[${i & 3}]), b${j}, acc[${i * tn4 + j}]);`));
    return `  {\n${a}\n${b}\n${fma}\n  }`;
  });
  const store = c.vecOut
    ? lines(c.tm, (i) => lines(tn4, (j) => `  {
    let row = row0 + ${i}u;
    let col = col0 + ${j * 4}u;
    if (row < p.m && col < p.n) {
      let o = (zb + row * p.n + col) / 4u;
      var v = acc[${i * tn4 + j}];
      if (p.acc != 0u) { v = v + vec4<f32>(out[o]); }
      out[o] = ${oT}(v);
    }
  }`))
    : lines(c.tm, (i) => lines(c.tn, (j) => `  {
    let row = row0 + ${i}u;
    let col = col0 + ${j}u;
    if (row < p.m && col < p.n) {
      let o = zb + row * p.n + col;
      var v = acc[${i * tn4 + (j >> 2)}][${j & 3}];
      if (p.acc != 0u) { v = v + f32(out[o]); }
      out[o] = ${st}(v);
    }
  }`));
  return `${c.dtype === 'float16' ? 'enable f16;\n' : ''}
@group(0) @binding(0) var<storage, read> a: array<${aT}>;
@group(0) @binding(1) var<storage, read> b: array<${bT}>;
@group(0) @binding(2) var<storage, read_write> out: array<${oT}>;
${U_WGSL}
var<workgroup> As: array<vec4<f32>, ${(bm * BK) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(bn * BK) / 4}>;
@compute @workgroup_size(${WG}, ${WG}, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let tx = lid.x;
  let ty = lid.y;
  let z = wid.z + p.z0;
  let offs = batch_offsets(z);
  let oa = offs.x;
  let ob = offs.y;
  let m0 = wid.y * ${bm}u;
  let n0 = wid.x * ${bn}u;
  var acc: array<vec4<f32>, ${c.tm * tn4}>;
  for (var kt = p.k0; kt < p.k1; kt = kt + ${BK}u) {
${stageTile(WG, BK, 'As', 'a', bm, c.modeA, 'oa', 'p.a_rs', 'p.a_cs', 'm0', 'p.m')}
${stageTile(WG, BK, 'Bs', 'b', bn, c.modeB, 'ob', 'p.b_cs', 'p.b_rs', 'n0', 'p.n')}
    workgroupBarrier();
${compute}
    workgroupBarrier();
  }
  let row0 = m0 + ty * ${c.tm}u;
  let col0 = n0 + tx * ${c.tn}u;
  let zb = z * p.m * p.n;
${store}
}`;
}

/** One operand tile's staging in the split kernel: loads into registers, then stores into workgroup memory. */
interface Staging {
  decl: string;
  load: (kt: string) => string;
  /** Stores the registers into the tile at quad offset `base` (a WGSL expression; '' for 0). */
  store: (base: string) => string;
}

/**
 * Staging of a `rows`×`BK` operand tile into `dst` (workgroup `array<vec4<f32>>` laid out [kk][rows/4] with
 * `stride` quads per kk row, vec4 along axis 0) through registers `reg*`: `v0` vec4 loads along axis 0
 * (contiguous vec4 stores), `v1` vec4 loads along K (four scalar stores each: the tile is transposed on the
 * way in), `s` scalars. Axis 0 of the operand (M or N) has stride `s0`, K stride `sk`.
 */
function splitStaging(threads: number, BK: number, rows: number, mode: LoadMode, st: string, reg: string, dst: string, stride: number, src: string, base: string, s0: string, sk: string, at0: string, lim0: string): Staging {
  const quads = rows / 4;
  const total = mode === 's' ? rows * BK : (rows * BK) / 4;
  const n = Math.ceil(total / threads);
  const partial = total % threads !== 0;
  const rT = mode === 's' ? 'f32' : 'vec4<f32>';
  const decl = lines(n, (r) => `  var ${reg}${r}: ${rT};`);
  const wrap = (r: number, body: string): string => `  {
    let e = lidx + ${r * threads}u;${partial ? `\n    if (e < ${total}u) {` : ''}
${body}${partial ? '\n    }' : ''}
  }`;
  const idx = (r: number): string => {
    if (mode === 'v0') return `    let kk = e / ${quads}u;\n    let q = e % ${quads}u;`;
    if (mode === 'v1') return `    let i0 = e / ${BK / 4}u;\n    let q = e % ${BK / 4}u;`;
    void r;
    return `    let kk = e / ${rows}u;\n    let i0 = e % ${rows}u;`;
  };
  const load = (kt: string): string =>
    lines(n, (r) => {
      let cond: string;
      let val: string;
      if (mode === 'v0') {
        cond = `${at0} + q * 4u < ${lim0} && ${kt} + kk < p.k1`;
        val = `vec4<f32>(${src}[(${base} + ${at0} + q * 4u + (${kt} + kk) * ${sk}) / 4u])`;
      } else if (mode === 'v1') {
        cond = `${at0} + i0 < ${lim0} && ${kt} + q * 4u < p.k1`;
        val = `vec4<f32>(${src}[(${base} + (${at0} + i0) * ${s0} + ${kt} + q * 4u) / 4u])`;
      } else {
        cond = `${at0} + i0 < ${lim0} && ${kt} + kk < p.k1`;
        val = `f32(${src}[${base} + (${at0} + i0) * ${s0} + (${kt} + kk) * ${sk}])`;
      }
      return wrap(r, `${idx(r)}\n    if (${cond}) { ${reg}${r} = ${val}; } else { ${reg}${r} = ${rT}(0.0); }`);
    });
  const store = (base: string): string => lines(n, (r) => {
    const b0 = base ? `${base} + ` : '';
    if (mode === 'v0') return wrap(r, `${idx(r)}\n    ${dst}[${b0}kk * ${stride}u + q] = ${reg}${r};`);
    if (mode === 'v1') {
      return wrap(r, `${idx(r)}
    let o = ${b0}q * ${4 * stride}u + i0 / 4u;
    let c = i0 % 4u;
${lines(4, (j) => `    ${dst}[o + ${j * stride}u][c] = ${reg}${r}[${j}];`)}`);
    }
    return wrap(r, `${idx(r)}\n    ${dst}[${b0}kk * ${stride}u + i0 / 4u][i0 % 4u] = ${reg}${r};`);
  });
  void st;
  return { decl, load, store };
}

/**
 * The K loop with register prefetch, shared by the split f32 kernel and the subgroup-matrix kernel (`prefetch`): the
 * first tile's global loads before the loop; per K tile, the registers stored into the workgroup tiles at `base`, a
 * barrier, the next tile's global loads issued (into the same registers) before this tile's `products`, a barrier.
 */
function prefetchLoop(A: Pick<Staging, 'load' | 'store'>, B: Pick<Staging, 'load' | 'store'>, step: number, base: string, products: string): string {
  return `${A.load('p.k0')}
${B.load('p.k0')}
  for (var kt = p.k0; kt < p.k1; kt = kt + ${step}u) {
${A.store(base)}
${B.store(base)}
    workgroupBarrier();
    if (kt + ${step}u < p.k1) {
      let kn = kt + ${step}u;
${A.load('kn')}
${B.load('kn')}
    }
${products}
    workgroupBarrier();
  }`;
}

/**
 * The hardware f32-accumulating kernel: `wg`×`wgy` threads (x along N, y along M; `wgy` defaults to `wg`), each
 * `tm`×`tn` outputs split into 4×4 blocks spaced `4·wgy` (rows) and `4·wg` (columns) apart (thread (tx, ty) owns rows
 * `g·4wgy + 4ty + 0..3` and columns `h·4wg + 4tx + 0..3`), so
 * a warp's workgroup-memory reads of B are consecutive vec4 and its output stores coalesce. K tiles of `bk`
 * are staged through registers; with `prefetch` the next tile's global loads are issued before this tile's
 * products. Workgroup rows are padded by one vec4 where a tile is transposed on the way in (bank conflicts).
 */
function splitSource(c: TiledConfig & { prefetch: boolean; double?: boolean; wgy?: number }): string {
  const WG = c.wg;
  const WGY = c.wgy ?? WG;
  const BK = c.bk;
  const threads = WG * WGY;
  const st = c.dtype === 'float16' ? 'f16' : 'f32';
  const bm = WGY * c.tm;
  const bn = WG * c.tn;
  const tm4 = c.tm / 4;
  const tn4 = c.tn / 4;
  const sA = bm / 4 + (c.modeA === 'v0' ? 0 : 1);
  const sB = bn / 4 + (c.modeB === 'v0' ? 0 : 1);
  const aT = c.modeA === 's' ? st : `vec4<${st}>`;
  const bT = c.modeB === 's' ? st : `vec4<${st}>`;
  const oT = c.vecOut ? `vec4<${st}>` : st;
  const A = splitStaging(threads, BK, bm, c.modeA, st, 'ra', 'As', sA, 'a', 'oa', 'p.a_rs', 'p.a_cs', 'm0', 'p.m');
  const B = splitStaging(threads, BK, bn, c.modeB, st, 'rb', 'Bs', sB, 'b', 'ob', 'p.b_cs', 'p.b_rs', 'n0', 'p.n');
  const db = c.double === true;
  const compute = lines(BK, (kk) => `  {
${lines(tm4, (g) => `    let a${g} = As[${db ? 'ca + ' : ''}${kk * sA + g * WGY}u + ty];`)}
${lines(tn4, (h) => `    let b${h} = Bs[${db ? 'cb + ' : ''}${kk * sB + h * WG}u + tx];`)}
${lines(tm4, (g) => lines(4, (r) => lines(tn4, (h) => `    acc[${(g * 4 + r) * tn4 + h}] = fma(vec4<f32>(a${g}[${r}]), b${h}, acc[${(g * 4 + r) * tn4 + h}]);`)))}
  }`);
  const store = lines(tm4, (g) => lines(4, (r) => lines(tn4, (h) => {
    const i = (g * 4 + r) * tn4 + h;
    const head = `    let row = m0 + ${g * WGY * 4 + r}u + ty * 4u;
    let col = n0 + ${h * WG * 4}u + tx * 4u;`;
    if (c.vecOut) {
      return `  {
${head}
    if (row < p.m && col < p.n) {
      let o = (zb + row * p.n + col) / 4u;
      var v = acc[${i}];
      if (p.acc != 0u) { v = v + vec4<f32>(out[o]); }
      out[o] = ${oT}(v);
    }
  }`;
    }
    return `  {
${head}
${lines(4, (j) => `    if (row < p.m && col + ${j}u < p.n) {
      let o = zb + row * p.n + col + ${j}u;
      var v = acc[${i}][${j}];
      if (p.acc != 0u) { v = v + f32(out[o]); }
      out[o] = ${st}(v);
    }`)}
  }`;
  })));
  const loop = db
    ? `${A.load('p.k0')}
${B.load('p.k0')}
${A.store('')}
${B.store('')}
  workgroupBarrier();
  var cur = 0u;
  for (var kt = p.k0; kt < p.k1; kt = kt + ${BK}u) {
    let more = kt + ${BK}u < p.k1;
    if (more) {
      let kn = kt + ${BK}u;
${A.load('kn')}
${B.load('kn')}
    }
    let ca = cur * ${sA * BK}u;
    let cb = cur * ${sB * BK}u;
${compute}
    if (more) {
      let na = (1u - cur) * ${sA * BK}u;
      let nb = (1u - cur) * ${sB * BK}u;
${A.store('na')}
${B.store('nb')}
    }
    workgroupBarrier();
    cur = 1u - cur;
  }`
    : c.prefetch
    ? prefetchLoop(A, B, BK, '', compute)
    : `  for (var kt = p.k0; kt < p.k1; kt = kt + ${BK}u) {
${A.load('kt')}
${B.load('kt')}
${A.store('')}
${B.store('')}
    workgroupBarrier();
${compute}
    workgroupBarrier();
  }`;
  return `${c.dtype === 'float16' ? 'enable f16;\n' : ''}
@group(0) @binding(0) var<storage, read> a: array<${aT}>;
@group(0) @binding(1) var<storage, read> b: array<${bT}>;
@group(0) @binding(2) var<storage, read_write> out: array<${oT}>;
${U_WGSL}
var<workgroup> As: array<vec4<f32>, ${sA * BK * (db ? 2 : 1)}>;
var<workgroup> Bs: array<vec4<f32>, ${sB * BK * (db ? 2 : 1)}>;
@compute @workgroup_size(${threads}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let tx = lidx % ${WG}u;
  let ty = lidx / ${WG}u;
  let z = wid.z + p.z0;
  let offs = batch_offsets(z);
  let oa = offs.x;
  let ob = offs.y;
  let m0 = wid.y * ${bm}u;
  let n0 = wid.x * ${bn}u;
  var acc: array<vec4<f32>, ${c.tm * tn4}>;
${A.decl}
${B.decl}
${loop}
  let zb = z * p.m * p.n;
${store}
}`;
}

/**
 * Software adapters (llvmpipe runs each workgroup on one CPU thread, where workgroup memory buys
 * nothing and barriers cost context switches): each thread computes `tm`×`tn` outputs straight from
 * the operands with vec4 loads (A contiguous along K, B along N), no staging and no barrier.
 */
function directSource(c: TiledConfig): string {
  const st = c.dtype === 'float16' ? 'f16' : 'f32';
  const tn4 = c.tn / 4;
  const oT = `vec4<${st}>`;
  const rows = lines(c.tm, (i) => `  let ra${i} = (oa + min(row0 + ${i}u, p.m - 1u) * p.a_rs) / 4u;`);
  const body = lines(c.tm, (i) => `    let a${i} = vec4<f32>(a[ra${i} + kq]);`) + '\n' +
    lines(4, (kk) => lines(tn4, (j) => `    let b${kk}_${j} = vec4<f32>(b[rb + ${kk}u * bs + ${j}u]);`)) + '\n' +
    lines(c.tm, (i) => lines(tn4, (j) => `    acc[${i * tn4 + j}] = fma(vec4<f32>(a${i}.x), b0_${j}, fma(vec4<f32>(a${i}.y), b1_${j}, fma(vec4<f32>(a${i}.z), b2_${j}, fma(vec4<f32>(a${i}.w), b3_${j}, acc[${i * tn4 + j}]))));`));
  const store = lines(c.tm, (i) => lines(tn4, (j) => `  {
    let row = row0 + ${i}u;
    let col = col0 + ${j * 4}u;
    if (row < p.m && col < p.n) {
      let o = (zb + row * p.n + col) / 4u;
      var v = acc[${i * tn4 + j}];
      if (p.acc != 0u) { v = v + vec4<f32>(out[o]); }
      out[o] = ${oT}(v);
    }
  }`));
  return `${c.dtype === 'float16' ? 'enable f16;\n' : ''}
@group(0) @binding(0) var<storage, read> a: array<vec4<${st}>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<${st}>>;
@group(0) @binding(2) var<storage, read_write> out: array<${oT}>;
${U_WGSL}
@compute @workgroup_size(${c.wg}, ${c.wg}, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let z = wid.z + p.z0;
  let offs = batch_offsets(z);
  let oa = offs.x;
  let ob = offs.y;
  let row0 = gid.y * ${c.tm}u;
  let col0 = gid.x * ${c.tn}u;
  let cq = min(col0, p.n - 4u) / 4u;
  let bs = p.b_rs / 4u;
${rows}
  var acc: array<vec4<f32>, ${c.tm * tn4}>;
  for (var k = p.k0; k < p.k1; k = k + 4u) {
    let kq = k / 4u;
    let rb = (ob + k * p.b_rs) / 4u + cq;
${body}
  }
  let zb = z * p.m * p.n;
${store}
}`;
}

// ------------------------------------------------------------------------------ matrix-vector
/** Products with at most this many rows (per batch matrix) take the matrix-vector kernel. */
export const GEMV_MAX_M = 4;
let gemvMaxM = GEMV_MAX_M;
let kContiguousQuads = true;
/** Software adapters: whether products of two K-contiguous operands take 4×4 dot-product blocks (default) or staged tiles. For benchmarks. */
export function setSoftwareKQuadMatmul(on: boolean): void {
  kContiguousQuads = on;
}

/** Sets the most rows a product may have to take the matrix-vector kernel (0 turns it off; default {@link GEMV_MAX_M}). For benchmarks and tests. */
export function setMatmulGemvRows(rows: number): void {
  gemvMaxM = Math.max(0, Math.min(GEMV_MAX_M, Math.floor(rows)));
}
/** Threads of a matrix-vector workgroup (along N) of the 4×4 dot-product blocks. */
const GEMV_WG = 64;
/**
 * The matrix-vector kernel's workgroup: GEMV_COLS column units × GEMV_KS slices of K, the slices summed
 * in workgroup memory. A decode step's products have few columns (768-3072 outputs): one thread per
 * column looping over all of K left the GPU nearly idle (568 µs per product on the H100).
 */
const GEMV_COLS = 16;
const GEMV_KS = 8;

/**
 * How the matrix-vector kernel reads its operands: `n4` vec4 of B along N (B contiguous along N, 4
 * columns per thread); `k4` vec4 of A and B along K (both contiguous along K); `s` scalars.
 */
type GemvMode = 'n4' | 'k4' | 's';

/**
 * The matrix-vector mode for `a` [.., m, k] and `b` [.., k, n]. It depends on layouts and on the
 * alignment of dims that a decode step keeps (head dim, hidden size), never on K when B is read along
 * N: attention probabilities [.., 1, S] times V [.., S, hd] is `n4` at every S.
 */
function gemvMode(a: Tensor, b: Tensor, k: number, n: number): GemvMode {
  const r = a.rank;
  const [aRs, aCs] = [a.strides[r - 2]!, a.strides[r - 1]!];
  const [bRs, bCs] = [b.strides[r - 2]!, b.strides[r - 1]!];
  if (bCs === 1 && n % 4 === 0 && aligned4(b.offset, [bRs, ...b.strides.slice(0, -2)])) return 'n4';
  if (aCs === 1 && bRs === 1 && k % 4 === 0 && aligned4(a.offset, [aRs, ...a.strides.slice(0, -2)]) && aligned4(b.offset, [bCs, ...b.strides.slice(0, -2)])) return 'k4';
  return 's';
}

function gemvSource(dtype: DType, mode: GemvMode, rows: number, cols = 1): string {
  const st = dtype === 'float16' ? 'f16' : 'f32';
  const vec = mode === 'n4';
  // k4 with 4 columns per thread: acc holds the 4 columns of a row (dot products), stores are scalar
  const quad = mode === 'k4' && cols === 4;
  const aT = mode === 'k4' ? `vec4<${st}>` : st;
  const bT = mode === 's' ? st : `vec4<${st}>`;
  const oT = vec ? `vec4<${st}>` : st;
  const accT = vec || quad ? 'vec4<f32>' : 'f32';
  const rowOff = lines(rows, (i) => `  let ra${i} = oa + min(r0 + ${i}u, p.m - 1u) * p.a_rs;`);
  let loop: string;
  if (mode === 'n4') {
    loop = `  for (var k = p.k0; k < p.k1; k = k + 1u) {
    let bv = vec4<f32>(b[(ob + k * p.b_rs) / 4u + j]);
${lines(rows, (i) => `    acc${i} = fma(vec4<f32>(f32(a[ra${i} + k * p.a_cs])), bv, acc${i});`)}
  }`;
  } else if (quad) {
    loop = `${lines(4, (c) => `  let rb${c} = (ob + min(j + ${c}u, p.n - 1u) * p.b_cs) / 4u;`)}
  for (var k = p.k0; k < p.k1; k = k + 4u) {
    let kq = k / 4u;
${lines(4, (c) => `    let b${c} = vec4<f32>(b[rb${c} + kq]);`)}
${lines(rows, (i) => `    { let av = vec4<f32>(a[(ra${i} + k) / 4u]); acc${i} = acc${i} + vec4<f32>(dot(av, b0), dot(av, b1), dot(av, b2), dot(av, b3)); }`)}
  }`;
  } else if (mode === 'k4') {
    loop = `  let rb = (ob + j * p.b_cs) / 4u;
  for (var k = p.k0; k < p.k1; k = k + 4u) {
    let bv = vec4<f32>(b[rb + k / 4u]);
${lines(rows, (i) => `    acc${i} = acc${i} + dot(vec4<f32>(a[(ra${i} + k) / 4u]), bv);`)}
  }`;
  } else {
    loop = `  let rb = ob + j * p.b_cs;
  for (var k = p.k0; k < p.k1; k = k + 1u) {
    let bv = f32(b[rb + k * p.b_rs]);
${lines(rows, (i) => `    acc${i} = fma(f32(a[ra${i} + k * p.a_cs]), bv, acc${i});`)}
  }`;
  }
  const width = vec ? 'p.n / 4u' : 'p.n';
  if (!quad) return gemvSplitSource(st, aT, bT, oT, accT, mode, rows, width);
  const store = quad
    ? lines(rows, (i) => lines(4, (c) => `  if (r0 + ${i}u < p.m && j + ${c}u < p.n) {
    let o = zb + (r0 + ${i}u) * p.n + j + ${c}u;
    var v = acc${i}[${c}];
    if (p.acc != 0u) { v = v + f32(out[o]); }
    out[o] = ${st}(v);
  }`))
    : lines(rows, (i) => `  if (r0 + ${i}u < p.m) {
    let o = zb + (r0 + ${i}u) * ${width} + j;
    var v = acc${i};
    if (p.acc != 0u) { v = v + ${accT}(out[o]); }
    out[o] = ${oT}(v);
  }`);
  return `${dtype === 'float16' ? 'enable f16;\n' : ''}
@group(0) @binding(0) var<storage, read> a: array<${aT}>;
@group(0) @binding(1) var<storage, read> b: array<${bT}>;
@group(0) @binding(2) var<storage, read_write> out: array<${oT}>;
${U_WGSL}
@compute @workgroup_size(${GEMV_WG}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let j = gid.x * ${quad ? 4 : 1}u;
  if (j >= ${width}) { return; }
  let z = wid.z + p.z0;
  let r0 = wid.y * ${rows}u;
  let offs = batch_offsets(z);
  let oa = offs.x;
  let ob = offs.y;
${rowOff}
${lines(rows, (i) => `  var acc${i} = ${accT}(0.0);`)}
${loop}
  let zb = z * p.m * ${width};
${store}
}`;
}

/**
 * Matrix-vector products with K split across the workgroup: thread (x, y) accumulates column unit
 * `wid.x·GEMV_COLS + x` over the K slice y, y + KS, y + 2·KS, … (adjacent x read adjacent columns), and the
 * KS partial sums of each output meet in workgroup memory.
 */
function gemvSplitSource(st: string, aT: string, bT: string, oT: string, accT: string, mode: GemvMode, rows: number, width: string): string {
  const step = mode === 'k4' ? 4 : 1;
  const rowOff = lines(rows, (i) => `  let ra${i} = oa + min(r0 + ${i}u, p.m - 1u) * p.a_rs;`);
  let head: string;
  let body: string;
  if (mode === 'n4') {
    head = '';
    body = `    let bv = vec4<f32>(b[(ob + k * p.b_rs) / 4u + jj]);
${lines(rows, (i) => `    acc${i} = fma(vec4<f32>(f32(a[ra${i} + k * p.a_cs])), bv, acc${i});`)}`;
  } else if (mode === 'k4') {
    head = `  let rb = (ob + jj * p.b_cs) / 4u;`;
    body = `    let bv = vec4<f32>(b[rb + k / 4u]);
${lines(rows, (i) => `    acc${i} = acc${i} + dot(vec4<f32>(a[(ra${i} + k) / 4u]), bv);`)}`;
  } else {
    head = `  let rb = ob + jj * p.b_cs;`;
    body = `    let bv = f32(b[rb + k * p.b_rs]);
${lines(rows, (i) => `    acc${i} = fma(f32(a[ra${i} + k * p.a_cs]), bv, acc${i});`)}`;
  }
  const T = GEMV_COLS * GEMV_KS;
  return `${st === 'f16' ? 'enable f16;\n' : ''}
@group(0) @binding(0) var<storage, read> a: array<${aT}>;
@group(0) @binding(1) var<storage, read> b: array<${bT}>;
@group(0) @binding(2) var<storage, read_write> out: array<${oT}>;
${U_WGSL}
var<workgroup> part: array<${accT}, ${rows * T}>;
@compute @workgroup_size(${GEMV_COLS}, ${GEMV_KS}, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let j = wid.x * ${GEMV_COLS}u + lid.x;
  let valid = j < ${width};
  let jj = min(j, ${width} - 1u);
  let z = wid.z + p.z0;
  let r0 = wid.y * ${rows}u;
  let offs = batch_offsets(z);
  let oa = offs.x;
  let ob = offs.y;
${rowOff}
${lines(rows, (i) => `  var acc${i} = ${accT}(0.0);`)}
${head}
  for (var k = p.k0 + lid.y * ${step}u; k < p.k1; k = k + ${GEMV_KS * step}u) {
${body}
  }
  let slot = lid.y * ${GEMV_COLS}u + lid.x;
${lines(rows, (i) => `  part[${i * T}u + slot] = acc${i};`)}
  workgroupBarrier();
  if (lid.y != 0u || !valid) { return; }
  let zb = z * p.m * ${width};
${lines(rows, (i) => `  if (r0 + ${i}u < p.m) {
    var v = part[${i * T}u + lid.x];
    for (var s = 1u; s < ${GEMV_KS}u; s = s + 1u) { v = v + part[${i * T}u + s * ${GEMV_COLS}u + lid.x]; }
    let o = zb + (r0 + ${i}u) * ${width} + j;
    if (p.acc != 0u) { v = v + ${accT}(out[o]); }
    out[o] = ${oT}(v);
  }`)}
}`;
}

// ------------------------------------------------------------------------------ subgroup matrices
/**
 * Default subgroup-matrix tiling (picked by the H100 microbenchmarks in docs/benchmarks.md): 128x128 tiles of 2x2
 * subgroups, each 4x4 16x16x16 products, 32-deep K tiles staged with 4 f16 per load. While it is the configured
 * tiling (identity, the default), products with a column-major staged operand take {@link SGMM_COL_A} or
 * {@link SGMM_COL_B} instead.
 */
export const SGMM_DEFAULT: SgmmConfig = { sgm: 2, sgn: 2, tm: 4, tn: 4, tk: 32, nsz: 16, vec: true, double: false };
/**
 * Default tiling where A is contiguous along M (weight gradients xᵀ·dy): 8 f16 per staging load, vectorized stores,
 * 64-deep K tiles. H100 A/B (docs/benchmarks/2026-11-25-h100-matmul-ab-mm2.json), GPT-2 dW 768x8192x2304: 0.53 ms vs
 * 0.79 for {@link SGMM_DEFAULT} (0.59 with 32-deep K tiles); at 4096³ row-major the same options were slower (1.97 vs 1.42).
 */
export const SGMM_COL_A: SgmmConfig = { ...SGMM_DEFAULT, wide: true, vstore: true, tk: 64 };
/**
 * Default tiling where B (not A) is contiguous along K (dy·Wᵀ, x·Wᵀ): 8 f16 per staging load and vectorized stores.
 * H100 A/B, GPT-2 dX 8192x2304x768: 0.40 ms vs 0.47 for {@link SGMM_DEFAULT}.
 */
export const SGMM_COL_B: SgmmConfig = { ...SGMM_DEFAULT, wide: true, vstore: true };
let sgmmConfig: SgmmConfig | null = SGMM_DEFAULT;

/**
 * Sets the tiling of the subgroup-matrix f16 matmul, or turns that path off (`null`: f16 products then
 * take the tiled f32-accumulating kernel). `SGMM_DEFAULT` itself (the default) picks per layout
 * ({@link SGMM_COL_A}, {@link SGMM_COL_B}); any other object, a copy of it included, applies to every layout.
 * For benchmarks and tests.
 */
export function setSubgroupMatrixMatmul(cfg: SgmmConfig | null): void {
  sgmmConfig = cfg;
}

/**
 * True when `device` can run the subgroup-matrix f16 matmul: it has `shader-f16` and
 * `chromium-experimental-subgroup-matrix` (adapters exposing the latter here list f16→f32 16x16x16 and
 * 16x8x16 configurations, subgroup size 32).
 */
export function hasSubgroupMatrixF16(device: WebGPUDevice): boolean {
  return device.hasFeature('chromium-experimental-subgroup-matrix') && device.hasFeature('shader-f16');
}

/**
 * How the subgroup-matrix kernel reads an operand: its load mode and, for the vector modes, the elements per load
 * (4: `vec4<f16>`; 8: `vec4<u32>` holding f16 pairs, one 16-byte load where offsets and strides are multiples of 8).
 */
interface SgLoad {
  mode: LoadMode;
  w: 4 | 8;
}

/**
 * Staging of one operand tile of the subgroup-matrix kernel through registers `reg*`: `rows`×`tk` elements
 * (axis 0 = M for A, N for B) into the f16 workgroup array `dst`, row-major [rows][tk] when the operand is
 * contiguous along K (mode `v1`, or scalars), column-major [tk][rows] when it is contiguous along axis 0 (`v0`).
 * `at0`/`lim0` bound axis 0, `p.k1` bounds K; `s0`/`sk` are the strides of axis 0 and K.
 */
function sgStaging(threads: number, tk: number, rows: number, ld: SgLoad, reg: string, dst: string, src: string, base: string, s0: string, sk: string, at0: string, lim0: string) {
  const { mode, w } = ld;
  const T = mode === 's' ? 'f16' : w === 8 ? 'vec4<u32>' : 'vec4<f16>';
  const zero = mode === 's' ? 'f16(0.0)' : w === 8 ? 'vec4<u32>(0u)' : 'vec4<f16>(0.0)';
  const n = mode === 's' ? (rows * tk) / threads : (rows * tk) / w / threads;
  const decl = lines(n, (r) => `  var ${reg}${r}: ${T};`);
  const idx = (r: number): string =>
    mode === 'v0'
      ? `      let e = lidx + ${r * threads}u;\n      let kk = e / ${rows / w}u;\n      let q = e % ${rows / w}u;`
      : mode === 'v1'
        ? `      let e = lidx + ${r * threads}u;\n      let i0 = e / ${tk / w}u;\n      let q = e % ${tk / w}u;`
        : `      let e = lidx + ${r * threads}u;\n      let i0 = e / ${tk}u;\n      let kk = e % ${tk}u;`;
  const load = (kt: string): string =>
    lines(n, (r) => {
      let cond: string;
      let val: string;
      if (mode === 'v0') {
        cond = `${at0} + q * ${w}u < ${lim0} && ${kt} + kk < p.k1`;
        val = `${src}[(${base} + ${at0} + q * ${w}u + (${kt} + kk) * ${sk}) / ${w}u]`;
      } else if (mode === 'v1') {
        cond = `${at0} + i0 < ${lim0} && ${kt} + q * ${w}u < p.k1`;
        val = `${src}[(${base} + (${at0} + i0) * ${s0} + ${kt} + q * ${w}u) / ${w}u]`;
      } else {
        cond = `${at0} + i0 < ${lim0} && ${kt} + kk < p.k1`;
        val = `${src}[${base} + (${at0} + i0) * ${s0} + (${kt} + kk) * ${sk}]`;
      }
      return `    {\n${idx(r)}\n      if (${cond}) { ${reg}${r} = ${val}; } else { ${reg}${r} = ${zero}; }\n    }`;
    });
  const parts = (v: string): string[] =>
    w === 8
      ? ['x', 'y', 'z', 'w'].flatMap((c) => [`bitcast<vec2<f16>>(${v}.${c}).x`, `bitcast<vec2<f16>>(${v}.${c}).y`])
      : ['x', 'y', 'z', 'w'].map((c) => `${v}.${c}`);
  const store = (buf: string): string =>
    lines(n, (r) => {
      if (mode === 's') return `    {\n${idx(r)}\n      ${dst}[${buf} + i0 * ${tk}u + kk] = ${reg}${r};\n    }`;
      const o = mode === 'v0' ? `${buf} + kk * ${rows}u + q * ${w}u` : `${buf} + i0 * ${tk}u + q * ${w}u`;
      const ps = parts(`${reg}${r}`);
      return `    {\n${idx(r)}\n      let o = ${o};\n${w === 8 ? `      let h0 = bitcast<vec2<f16>>(${reg}${r}.x); let h1 = bitcast<vec2<f16>>(${reg}${r}.y); let h2 = bitcast<vec2<f16>>(${reg}${r}.z); let h3 = bitcast<vec2<f16>>(${reg}${r}.w);\n` : ''}${lines(w, (j) => `      ${dst}[o + ${j}u] = ${w === 8 ? `h${j >> 1}.${j & 1 ? 'y' : 'x'}` : ps[j]};`)}\n    }`;
    });
  return { T, decl, load, store };
}

/** Workgroup bytes the subgroup-matrix kernel may take for its tiles and store scratch together (occupancy). */
const SGMM_WG_BYTES = 32768;

function sgmmSource(c: SgmmConfig, la: SgLoad, lb: SgLoad, vecOut: boolean): string {
  const bm = c.sgm * c.tm * 16;
  const bn = c.sgn * c.tn * c.nsz;
  const threads = c.sgm * c.sgn * 32;
  const tk = c.tk;
  const bufs = c.double ? 2 : 1;
  const aSize = bm * tk;
  const bSize = tk * bn;
  const modeA = la.mode;
  const modeB = lb.mode;
  // A contiguous along K (v1) or scalars: row-major [bm][tk]; along M (v0): column-major [tk][bm], read by
  // column-major matrix loads. B contiguous along N (v0) or scalars: row-major [tk][bn]; along K (v1): [bn][tk].
  const A = sgStaging(threads, tk, bm, la, 'ra', 'sa', 'a', 'oa', 'p.a_rs', 'p.a_cs', 'm0', 'p.m');
  const B = sgStaging(threads, tk, bn, lb, 'rb', 'sb', 'b', 'ob', 'p.b_cs', 'p.b_rs', 'n0', 'p.n');
  const stageA = (buf: string, kt: string): string => `${A.load(kt)}\n${A.store(buf)}`;
  const stageB = (buf: string, kt: string): string => `${B.load(kt)}\n${B.store(buf)}`;
  const L = `subgroup_matrix_left<f16, 16, 16>`;
  const R = `subgroup_matrix_right<f16, ${c.nsz}, 16>`;
  const C = `subgroup_matrix_result<f32, ${c.nsz}, 16>`;
  const mma = (abuf: string, bbuf: string): string =>
    lines(tk / 16, (s) => `    {
${lines(c.tm, (i) => modeA === 'v0'
  ? `      let l${i} = subgroupMatrixLoad<${L}>(&sa, ${abuf} + ${s * 16 * bm}u + sg_m * ${c.tm * 16}u + ${i * 16}u, true, ${bm}u);`
  : `      let l${i} = subgroupMatrixLoad<${L}>(&sa, ${abuf} + (sg_m * ${c.tm * 16}u + ${i * 16}u) * ${tk}u + ${s * 16}u, false, ${tk}u);`)}
${lines(c.tn, (j) => modeB !== 'v0'
  ? `      let r${j} = subgroupMatrixLoad<${R}>(&sb, ${bbuf} + (sg_n * ${c.tn * c.nsz}u + ${j * c.nsz}u) * ${tk}u + ${s * 16}u, true, ${tk}u);`
  : `      let r${j} = subgroupMatrixLoad<${R}>(&sb, ${bbuf} + ${s * 16 * bn}u + sg_n * ${c.tn * c.nsz}u + ${j * c.nsz}u, false, ${bn}u);`)}
${lines(c.tm, (i) => lines(c.tn, (j) => `      acc${i}_${j} = subgroupMatrixMultiplyAccumulate(l${i}, r${j}, acc${i}_${j});`))}
    }`);
  const body = c.double
    ? `
  var cur = 0u;
${stageA('0u', 'p.k0')}
${stageB('0u', 'p.k0')}
  workgroupBarrier();
  for (var kt = p.k0; kt < p.k1; kt = kt + ${tk}u) {
    let nxt = 1u - cur;
    if (kt + ${tk}u < p.k1) {
      let ka = kt + ${tk}u;
      let abuf = nxt * ${aSize}u;
      let bbuf = nxt * ${bSize}u;
${stageA('abuf', 'ka')}
${stageB('bbuf', 'ka')}
    }
    let abase = cur * ${aSize}u;
    let bbase = cur * ${bSize}u;
${mma('abase', 'bbase')}
    workgroupBarrier();
    cur = nxt;
  }`
    : c.prefetch
      ? `\n${prefetchLoop(A, B, tk, '0u', mma('0u', '0u'))}`
      : `
  for (var kt = p.k0; kt < p.k1; kt = kt + ${tk}u) {
${stageA('0u', 'kt')}
${stageB('0u', 'kt')}
    workgroupBarrier();
${mma('0u', '0u')}
    workgroupBarrier();
  }`;
  // Store: result matrices go through a per-subgroup f32 scratch in workgroup memory, `g` of them per pair of
  // barriers (as many of a row of `tn` as the workgroup budget allows), then out as f16: with `vecOut` (N a
  // multiple of 4) four f16 per lane per step packed into a vec2<u32>, else one scalar per step.
  const scratch = 16 * c.nsz;
  const sgCount = c.sgm * c.sgn;
  const tileBytes = (aSize + bSize) * bufs * 2;
  let g = c.vstore ? c.tn : 1;
  while (g > 1 && (c.tn % g !== 0 || tileBytes + sgCount * scratch * g * 4 > SGMM_WG_BYTES)) g--;
  const soSize = sgCount * scratch * g;
  const span = scratch * g;
  const store = lines(c.tm, (i) => lines(c.tn / g, (jg) => {
    const j0 = jg * g;
    const put = lines(g, (jj) => `    subgroupMatrixStore(&so, sg * ${span}u + ${jj * scratch}u, acc${i}_${j0 + jj}, false, ${c.nsz}u);`);
    const loop = vecOut
      ? `    for (var e = lane * 4u; e < ${span}u; e = e + 128u) {
      let mat = e / ${scratch}u;
      let ee = e % ${scratch}u;
      let row = m0 + sg_m * ${c.tm * 16}u + ${i * 16}u + ee / ${c.nsz}u;
      let col = n0 + sg_n * ${c.tn * c.nsz}u + (${j0}u + mat) * ${c.nsz}u + ee % ${c.nsz}u;
      if (row < p.m && col < p.n) {
        let o = (zb + row * p.n + col) / 4u;
        let s0 = sg * ${span}u + e;
        var v = vec4<f32>(so[s0], so[s0 + 1u], so[s0 + 2u], so[s0 + 3u]);
        if (p.acc != 0u) { let w = out[o]; v = v + vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)); }
        out[o] = vec2<u32>(pack2x16float(v.xy), pack2x16float(v.zw));
      }
    }`
      : `    for (var e = lane; e < ${span}u; e = e + 32u) {
      let mat = e / ${scratch}u;
      let ee = e % ${scratch}u;
      let row = m0 + sg_m * ${c.tm * 16}u + ${i * 16}u + ee / ${c.nsz}u;
      let col = n0 + sg_n * ${c.tn * c.nsz}u + (${j0}u + mat) * ${c.nsz}u + ee % ${c.nsz}u;
      if (row < p.m && col < p.n) {
        let o = zb + row * p.n + col;
        var v = so[sg * ${span}u + e];
        if (p.acc != 0u) { v = v + f32(out[o]); }
        out[o] = f16(v);
      }
    }`;
    return `  {\n${put}\n    workgroupBarrier();\n${loop}\n    workgroupBarrier();\n  }`;
  }));
  return `diagnostic(off, chromium.subgroup_matrix_uniformity);
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> a: array<${A.T}>;
@group(0) @binding(1) var<storage, read> b: array<${B.T}>;
@group(0) @binding(2) var<storage, read_write> out: array<${vecOut ? 'vec2<u32>' : 'f16'}>;
${U_WGSL}
var<workgroup> sa: array<f16, ${aSize * bufs}>;
var<workgroup> sb: array<f16, ${bSize * bufs}>;
var<workgroup> so: array<f32, ${soSize}>;
@compute @workgroup_size(${threads}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32,
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sgsize: u32) {
  let sg = lidx / 32u;
  let sg_m = sg % ${c.sgm}u;
  let sg_n = sg / ${c.sgm}u;
  let z = wid.z + p.z0;
  let offs = batch_offsets(z);
  let oa = offs.x;
  let ob = offs.y;
  let m0 = wid.y * ${bm}u;
  let n0 = wid.x * ${bn}u;
  let zb = z * p.m * p.n;
${lines(c.tm, (i) => lines(c.tn, (j) => `  var acc${i}_${j}: ${C};`))}
${A.decl}
${B.decl}
${body}
${store}
}`;
}

// ------------------------------------------------------------------------------ dispatch
const programs = new Map<string, GpuProgram>();
function getProgram(key: string, source: () => string): GpuProgram {
  let p = programs.get(key);
  if (!p) {
    p = { name: key.split('|')[0]!, key, source, bindings: ['read', 'read', 'read_write'], uniform: true };
    programs.set(key, p);
  }
  return p;
}

/** Whether element offsets `off + i*strides` stay multiples of 4 for every batch/row index. */
function aligned4(off: number, strides: readonly number[]): boolean {
  return off % 4 === 0 && strides.every((s) => s % 4 === 0);
}

/**
 * Whether an operand read in load mode `mode` (`v1`: contiguous along K, `v0`: along its other axis) can be read 8
 * elements at a time: that dim a multiple of 8, and its offset and the strides of the other axes multiples of 8.
 */
function aligned8(t: Tensor, lim0: number, limK: number, kAxisLast: boolean, mode: LoadMode): boolean {
  const r = t.rank;
  const [sOther, sK] = kAxisLast ? [t.strides[r - 2]!, t.strides[r - 1]!] : [t.strides[r - 1]!, t.strides[r - 2]!];
  const batch = t.strides.slice(0, -2);
  const dim = mode === 'v1' ? limK : lim0;
  const others = mode === 'v1' ? [sOther, ...batch] : [sK, ...batch];
  return dim % 8 === 0 && t.offset % 8 === 0 && others.every((s) => s % 8 === 0);
}

/** Load mode of an operand [rows × cols] of the product (rows = M or K axis): vec4 along the contiguous axis when aligned. */
function modeOf(t: Tensor, lim0: number, limK: number, kAxisLast: boolean): LoadMode {
  const r = t.rank;
  const s0 = t.strides[r - 2]!;
  const s1 = t.strides[r - 1]!;
  const batch = t.strides.slice(0, -2);
  // For A: axis order [M, K]; for B: [K, N]. kAxisLast says whether K is axis -1 (A) or -2 (B).
  const [sOther, sK] = kAxisLast ? [s0, s1] : [s1, s0];
  const [dimOther, dimK] = [lim0, limK];
  if (sK === 1 && dimK % 4 === 0 && aligned4(t.offset, [sOther, ...batch])) return 'v1';
  if (sOther === 1 && dimOther % 4 === 0 && aligned4(t.offset, [sK, ...batch])) return 'v0';
  return 's';
}

/**
 * The hardware split kernel's tilings: 128x128 tiles (16x16 threads of 8x8 outputs) with 16- or 32-deep K tiles,
 * 128x128 tiles of 8x16 threads (along N x along M) with 8x16 outputs each, 128x64 tiles (8x16 threads of 8x8), and
 * 64x64 tiles (16x16 threads of 4x4).
 */
export const SPLIT_128: TiledMatmulConfig = { wg: 16, bk: 16, tm: 8, tn: 8, split: true, prefetch: true };
export const SPLIT_128_K32: TiledMatmulConfig = { ...SPLIT_128, bk: 32 };
/** 128x128 tiles of 8x16 threads with 8x16 outputs each: the hardware default where M, N, K ≥ 2048 (≥ 200 tiles). */
export const SPLIT_128_T128: TiledMatmulConfig = { wg: 8, wgy: 16, bk: 16, tm: 8, tn: 16, split: true, prefetch: true };
/** 128x64 tiles of 8x16 threads with 8x8 outputs each: the hardware default for 100–511-tile products with N ≤ 1024. */
export const SPLIT_128X64: TiledMatmulConfig = { wg: 8, wgy: 16, bk: 16, tm: 8, tn: 8, split: true, prefetch: true };
export const SPLIT_64: TiledMatmulConfig = { wg: 16, bk: 16, tm: 4, tn: 4, split: true, prefetch: true };

/** Workgroup memory of the split kernel at a tiling, padded rows included (the most it can take). */
function splitWorkgroupBytes(t: TiledMatmulConfig): number {
  return (((t.wgy ?? t.wg) * t.tm) / 4 + 1 + (t.wg * t.tn) / 4 + 1) * t.bk * 16 * (t.double ? 2 : 1);
}

/**
 * The hardware f32-accumulating tiling of an [m × k]·[k × n] product (`batch` matrices), from interleaved A/Bs on the
 * H100 with TF.js matMul in the same process (docs/benchmarks/2026-11-25-h100-matmul-ab*.json,
 * apps/bench/gpu/matmul_probe.mjs; SM clock 1980 MHz in every timed window of the mm3 calls):
 * - m, n, k ≥ 2048 with ≥ 200 tiles of 128x128: {@link SPLIT_128_T128} (4096³ 3.71-3.78 ms vs 3.82 for SPLIT_128;
 *   2048³ 0.45 vs 0.52-0.56);
 * - ≥ 512 tiles: {@link SPLIT_128} (GPT-2's 8192x768x2304/3072, ViT's 6304x768x2304; 4096³ 3.8 ms vs 4.9 for the
 *   64x64 tiling before it);
 * - 100-511 tiles: n ≤ 1024 (GPT-2's and ViT's N = 768 products and dy·Wᵀ) {@link SPLIT_128X64} (8192x3072x768
 *   1.10-1.13 ms vs 1.13-1.15 for SPLIT_128_K32; dy·Wᵀ 8192x2304x768 0.84-0.87 vs 0.92; ViT 6304x3072x768 1.09-1.11 vs
 *   1.18-1.24), else {@link SPLIT_128_K32} (GPT-2's weight gradient 768x8192x2304: 0.95 ms, the 128x64 one 1.03-1.07);
 * - fewer: 64x64 tiles, more workgroups for the GPU's units.
 * A tiling whose workgroup memory exceeds the device's limit steps down (WebGPU's default limit is 16 KiB).
 */
function hardwareTiling(m: number, n: number, k: number, batch: number, maxWorkgroupBytes: number): TiledMatmulConfig {
  const t128 = Math.ceil(m / 128) * Math.ceil(n / 128) * batch;
  const want = m >= 2048 && n >= 2048 && k >= 2048 && t128 >= 200
    ? [SPLIT_128_T128, SPLIT_128, SPLIT_64]
    : t128 >= 512
      ? [SPLIT_128, SPLIT_64]
      : t128 >= 100
        ? n <= 1024 ? [SPLIT_128X64, SPLIT_128_K32, SPLIT_128, SPLIT_64] : [SPLIT_128_K32, SPLIT_128, SPLIT_64]
        : [SPLIT_64];
  return want.find((t) => splitWorkgroupBytes(t) <= maxWorkgroupBytes) ?? { wg: 16, bk: 16, tm: 4, tn: 4 };
}

registerKernel({
  name: 'matmul',
  backend: 'webgpu',
  fn: (inputs, _attrs, dev) => {
    const device = dev as WebGPUDevice;
    const [a, b] = inputs as [Tensor, Tensor];
    const rank = a.rank;
    checkRank(a.shape, 'a');
    const batchShape = a.shape.slice(0, -2);
    const [m, k] = a.shape.slice(-2) as [number, number];
    const n = b.shape[rank - 1]!;
    const batch = sizeOf(batchShape);
    const dtype = a.dtype;
    const out = empty([...batchShape, m, n], dtype, device);
    if (batch * m * n === 0) return out;
    if (k === 0) return zeros(out.shape, { dtype, device }) as Tensor;
    const base: MatmulUniforms = {
      m, n, k, k0: 0, k1: k, acc: 0, brank: batchShape.length, z0: 0,
      a_off: a.offset, a_rs: a.strides[rank - 2]!, a_cs: a.strides[rank - 1]!,
      b_off: b.offset, b_rs: b.strides[rank - 2]!, b_cs: b.strides[rank - 1]!,
      bshape: batchShape, a_bst: a.strides.slice(0, -2), b_bst: b.strides.slice(0, -2),
    };
    let prog!: GpuProgram;
    let bm = 0;
    let bn = 0;
    let kStep = 0;
    const sg = sgmmConfig;
    let gemvCols = 0;
    let gemvWg = GEMV_WG;
    const maxWg = device.limits.maxComputeWorkgroupsPerDimension;
    /** Takes the matrix-vector kernel with `rows` rows per thread, if the grid fits. */
    const rowKernel = (rows: number, quad = false): boolean => {
      const mode = gemvMode(a, b, k, n);
      if (quad && mode !== 'k4') return false;
      const cols = mode === 'n4' ? n / 4 : quad ? Math.ceil(n / 4) : n;
      if (Math.ceil(cols / (quad ? GEMV_WG : GEMV_COLS)) > maxWg || Math.ceil(m / rows) > maxWg) return false;
      prog = getProgram(`${quad ? 'matmul_k4x4' : 'matmul_gemv'}|${dtype}|${mode}|${rows}${quad ? '' : `|ks${GEMV_KS}`}`, () => gemvSource(dtype, mode, rows, quad ? 4 : 1));
      gemvCols = cols;
      gemvWg = quad ? GEMV_WG : GEMV_COLS;
      bm = rows;
      bn = 1;
      kStep = mode === 'k4' ? 4 : 1;
      return true;
    };
    if (m <= gemvMaxM && rowKernel(m)) {
      // few rows (a decode step): matrix-vector kernel, keyed by layout and row count only
    } else if (dtype === 'float16' && sg && hasSubgroupMatrixF16(device)) {
      // vec4 staging along whichever axis is contiguous (A along K or M, B along N or K; `colMajor: false`:
      // only A along K and B along N, the rest scalars); with `wide`, 8 f16 per load where aligned to 8
      const ma0 = modeOf(a, m, k, true);
      const mb0 = modeOf(b, n, k, false);
      // the default's column-major layouts take the tilings measured best for them (SGMM_COL_A / SGMM_COL_B)
      const sc: SgmmConfig = sg !== SGMM_DEFAULT ? sg : ma0 === 'v0' ? SGMM_COL_A : mb0 === 'v1' ? SGMM_COL_B : sg;
      const ma = !sc.vec || (ma0 === 'v0' && sc.colMajor === false) ? 's' : ma0;
      const mb = !sc.vec || (mb0 === 'v1' && sc.colMajor === false) ? 's' : mb0;
      const threads = sc.sgm * sc.sgn * 32;
      const tileA = sc.sgm * sc.tm * 16 * sc.tk;
      const tileB = sc.sgn * sc.tn * sc.nsz * sc.tk;
      const wa = sc.wide && ma !== 's' && (tileA / 8) % threads === 0 && aligned8(a, m, k, true, ma) ? 8 : 4;
      const wb = sc.wide && mb !== 's' && (tileB / 8) % threads === 0 && aligned8(b, n, k, false, mb) ? 8 : 4;
      const vecOut = sc.vstore === true && n % 4 === 0;
      const key = `matmul_sgmm|${sc.sgm}x${sc.sgn}x${sc.tm}x${sc.tn}x${sc.tk}x${sc.nsz}${sc.double ? 'd' : ''}${sc.prefetch && !sc.double ? 'p' : ''}${sc.vstore ? 'g' : ''}|${ma}${ma === 's' ? '' : wa}${mb}${mb === 's' ? '' : wb}${vecOut ? 'v' : 's'}`;
      prog = getProgram(key, () => sgmmSource(sc, { mode: ma, w: wa }, { mode: mb, w: wb }, vecOut));
      bm = sc.sgm * sc.tm * 16;
      bn = sc.sgn * sc.tn * sc.nsz;
      kStep = sc.tk;
    } else {
      const hw = !device.info.software;
      // software: per-thread 16x8 blocks straight from memory (measured best on llvmpipe); hardware: the split
      // kernel, 128x128 or 64x64 tiles by hardwareTiling()
      const t = tiledOverride ?? (hw ? hardwareTiling(m, n, k, batch, device.limits.maxComputeWorkgroupStorageSize ?? 16384) : { wg: 8, bk: 0, tm: m >= 128 ? 16 : 4, tn: n >= 64 ? 8 : 4 });
      const cfg: TiledConfig = {
        ...t,
        dtype,
        modeA: modeOf(a, m, k, true),
        modeB: modeOf(b, n, k, false),
        vecOut: n % 4 === 0,
      };
      const direct = t.bk === 0 && cfg.modeA === 'v1' && cfg.modeB === 'v0';
      if (t.bk === 0 && !direct && kContiguousQuads && rowKernel(GEMV_MAX_M, true)) {
        // software adapter, both operands contiguous along K (q·kᵀ, a tied lm_head x·wteᵀ): 4×4 blocks of
        // dot products straight from memory; the staged tiles it replaces took 5-10 s to compile on SwiftShader
      } else {
        if (t.bk === 0 && !direct) Object.assign(cfg, { wg: 16, bk: 16, tm: 4, tn: 4 });
        const split = !direct && t.bk !== 0 && t.split === true;
        const prefetch = split && t.prefetch === true;
        const dbl = split && t.double === true;
        // threads along M: only the split kernel has its own (the staged kernels are wg×wg)
        const wgy = split ? t.wgy ?? cfg.wg : cfg.wg;
        const variant = direct ? 'direct' : `${split ? (dbl ? 'sd|' : prefetch ? 'sp|' : 's|') : ''}${cfg.modeA}${cfg.modeB}${cfg.vecOut ? 'v' : 's'}`;
        const key = `matmul|${dtype}|${cfg.wg}${wgy !== cfg.wg ? `y${wgy}` : ''}x${cfg.bk}x${cfg.tm}x${cfg.tn}|${variant}`;
        prog = getProgram(key, () => (direct ? directSource(cfg) : split ? splitSource({ ...cfg, prefetch, double: dbl, wgy }) : tiledSource(cfg)));
        bm = wgy * cfg.tm;
        bn = cfg.wg * cfg.tn;
        kStep = direct ? 4 : cfg.bk;
      }
    }
    // K passes: each invocation loops K/kStep times per pass; keep that well under the loop cap
    const cap = device.maxLoopIterations;
    const tilesPerPass = Number.isFinite(cap) ? Math.max(1, Math.floor(cap / 4)) : Infinity;
    const kPerPass = Number.isFinite(tilesPerPass) ? tilesPerPass * kStep : k;
    const maxZ = device.limits.maxComputeWorkgroupsPerDimension;
    for (let k0 = 0; k0 < k; k0 += kPerPass) {
      for (let z0 = 0; z0 < batch; z0 += maxZ) {
        const u = packMatmulUniforms({ ...base, k0, k1: Math.min(k, k0 + kPerPass), acc: k0 > 0 ? 1 : 0, z0 });
        const grid: [number, number, number] = gemvCols
          ? [Math.ceil(gemvCols / gemvWg), Math.ceil(m / bm), Math.min(maxZ, batch - z0)]
          : [Math.ceil(n / bn), Math.ceil(m / bm), Math.min(maxZ, batch - z0)];
        device.dispatch(prog, [a.storage, b.storage, out.storage], u, grid);
      }
    }
    return out;
  },
});

/** Source of the subgroup-matrix kernel for a tiling (benchmarks print it on compile failures). */
export function subgroupMatrixMatmulSource(cfg: SgmmConfig): string {
  const w = cfg.wide ? 8 : 4;
  return sgmmSource(cfg, { mode: cfg.vec ? 'v1' : 's', w }, { mode: cfg.vec ? 'v0' : 's', w }, cfg.vstore === true);
}
