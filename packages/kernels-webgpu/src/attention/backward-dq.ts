/**
 * The dQ kernel of the backward (FlashAttention-2 style, probabilities recomputed from the lse): one
 * workgroup per block of query rows; per key tile, S = Q·Kᵀ and dP = dO·Vᵀ are register-blocked tile
 * products written to staged tiles; one plain loop over the tile's (query, key) pairs computes
 * dS = P ∘ (dP − delta) with the masks, score function and the flex capture-gradient hook (emitted
 * once per kernel, never unrolled), and dQ += dS·K is a third product.
 */
import { empty, type Tensor } from '@webattn/core-tensor';
import type { WebGPUDevice } from '../device/webgpu-device.js';
import { linearGrid, run, type ProgramSpec } from '../wgsl.js';
import {
  cacheKey, chunkValues, dimClass, dims, gradBindings, gradTensors, gradUniforms, gradValues, halfGradStaging, headDims, noteBackwardGrid, passes, pickBackwardGrid, pickTile,
  chunkedBackward, registerBackward, registerBackwardBasics, storageStaging, type BackwardGrid, type FlashGradInputs, type FlashParams, type Tile,
} from './plan.js';
import { blockIndex, blockLoop, blockProduct, checkWorkBuffer, kvRange, lanes, pairGrad, product, rowStats, scoreHelpers, stage, stageColumns, staging, unroll, VEC_LANES } from './shared.js';
import { captureGradCall, hookGradBindings, hookGradTensors, hookGradWgsl, scoreModGrad } from './hooks.js';
import { tileDispatch, tileMapWgsl, tileOrigin } from './tile-map.js';

function dqBytes(t: Tile, EC: number, EVC: number): number {
  return 4 * ((t.rows + t.cols) * (EC + 1 + EVC + 1) + 2 * t.rows * t.cols + 2 * t.rows);
}

/** WGSL of `do_at`: the strided offset of dout (shared by both gradient kernels). */
export const DO_AT = `fn do_at(b: u32, h: u32, i: u32, e: u32) -> u32 { return u_do_off() + b * u_do_st(0u) + h * u_do_st(1u) + (qbase(b) + i) * u_do_st(2u) + e * u_do_st(3u); }`;

/**
 * A looped-side operand tile of the register backward staged THROUGH REGISTERS (the prefetch of the register
 * forward): `load(base)` reads the tile of `groups` × 4 rows from row `base` on and `cols` columns into the registers
 * `reg` (as `stageColumns` lays it out: vec4 columns of 4 rows), `store` writes them to `buf[e · stride + r4]`. A
 * kernel loads the NEXT tile after the barrier that ends the staging of the current one, so the storage reads run
 * while the current tile is multiplied. `ok(row, e)` / `read(row, e)` take the absolute row.
 */
export function prefetchColumns(
  reg: string,
  buf: string,
  groups: number,
  cols: number,
  stride: number,
  WG: number,
  elem: 'f32' | 'f16',
  ok: (row: string, e: string) => string,
  read: (row: string, e: string) => string,
): { decl: string; load: (base: string) => string; store: string; words: number } {
  const total = groups * cols;
  const n = Math.ceil(total / WG);
  const guard = (u: number, x: string) => (u * WG + WG > total ? `if (lidx + ${u * WG}u < ${total}u) { ${x} }` : x);
  const each = (f: (u: number) => string) => Array.from({ length: n }, (_, u) => guard(u, f(u))).join('\n    ');
  return {
    decl: `var ${reg}: array<vec4<${elem}>, ${n}>;`,
    load: (base) =>
      each(
        (u) => `{
      let t = lidx + ${u * WG}u;
      let e_ = t % ${cols}u;
      let r4_ = t / ${cols}u;
      var x_ = vec4<${elem}>(0.0);
      ${VEC_LANES.map((l, m) => `if (${ok(`${base} + 4u * r4_ + ${m}u`, 'e_')}) { x_.${l} = ${elem}(${read(`${base} + 4u * r4_ + ${m}u`, 'e_')}); }`).join('\n      ')}
      ${reg}[${u}] = x_;
    }`,
      ),
    store: each((u) => `{ let t = lidx + ${u * WG}u; ${buf}[(t % ${cols}u) * ${stride}u + t / ${cols}u] = ${reg}[${u}]; }`),
    words: n * (elem === 'f16' ? 2 : 4),
  };
}

/** Workgroup memory of the register dQ kernel: Qᵀ, dOᵀ (once), Kᵀ, Vᵀ (per tile; padded columns) and dS. */
function dqRegisterBytes(g: BackwardGrid, EC: number, EVC: number, elemBytes: number): number {
  return 4 * elemBytes * ((EC + EVC) * g.tr + (EC + EVC) * (g.tc + 1)) + 16 * (4 * g.tr * g.tc);
}

/** Workgroup memory of the head-dim-chunked register dQ kernel: one chunk of Qᵀ or dOᵀ and of Kᵀ or Vᵀ (padded columns), and dS. */
function dqChunkedBytes(g: BackwardGrid, elemBytes: number): number {
  // prefetching: the Qᵀ / dOᵀ chunk's rows padded by one vec4 (as the dK/dV kernel's Kᵀ / Vᵀ)
  return 4 * elemBytes * g.ch! * (g.tr + g.tc + 1 + (g.prefetch ? 1 : 0)) + 16 * (4 * g.tr * g.tc);
}

/**
 * Δ = rowsum(dO ∘ O) of the backward (float32, the shape of `out` without its last axis): one kernel in which 16
 * threads per row read dO and O once (consecutive columns: coalesced), multiply in f32 and sum their 16 partial
 * products in workgroup memory in a fixed order — instead of an elementwise product (one more full tensor written
 * and read again) and a row reduction with a workgroup per row of E elements. `dout` and `out`: same shape, any
 * float dtype (copied to contiguous where they are not).
 */
export function backwardDelta(dout: Tensor, out: Tensor): Tensor {
  const device = out.device as WebGPUDevice;
  const n = out.shape[out.rank - 1] ?? 1;
  const shape = out.shape.slice(0, -1);
  const rows = shape.reduce((a, x) => a * x, 1);
  const delta = empty(shape, 'float32', device);
  if (rows === 0) return delta;
  const g = dout.contiguous();
  const o = out.contiguous();
  const ROWS = 16; // rows per workgroup of 256 threads
  const body = `
  let row = flat_wg * ${ROWS}u + lidx / 16u;
  let lane = lidx % 16u;
  var acc = 0.0;
  if (row < u_rows()) {
    for (var e = lane; e < u_n(); e = e + 16u) {
      acc = fma(f32(load_g(u_g_off() + row * u_n() + e)), f32(load_o(u_o_off() + row * u_n() + e)), acc);
    }
  }
  part_[lidx] = acc;
  workgroupBarrier();
  if (lane == 0u && row < u_rows()) {
    var s = 0.0;
    for (var k = 0u; k < 16u; k = k + 1u) { s = s + part_[lidx + k]; }
    store_delta(row, s);
  }`;
  const spec: ProgramSpec = {
    name: 'flash_attention_backward_delta',
    key: '',
    bindings: [
      { name: 'g', dtype: g.dtype, access: 'read' },
      { name: 'o', dtype: o.dtype, access: 'read' },
      { name: 'delta', dtype: 'float32', access: 'read_write' },
    ],
    uniforms: [['rows', 'u32'], ['n', 'u32'], ['g_off', 'u32'], ['o_off', 'u32']],
    workgroupSize: [16 * ROWS],
    helpers: `var<workgroup> part_: array<f32, ${16 * ROWS}>;`,
    body,
  };
  run(spec, [g, o, delta], { rows, n, g_off: g.offset, o_off: o.offset }, linearGrid(rows, ROWS, device));
  return delta;
}

/** dQ (float32, laid out like q but contiguous) of one backward call. */
export function backwardDq(p: FlashParams, g: FlashGradInputs): Tensor {
  const d = dims(p);
  const device = p.q.device as WebGPUDevice;
  const shape = p.varlen ? [d.TQ, d.Hq, d.E] : [d.B, d.Hq, d.Lq, d.E];
  const nq = shape.reduce((a, x) => a * x, 1);
  if (nq === 0) return empty(shape, 'float32', device);
  const EC = dimClass(d.E);
  const EVC = dimClass(d.Ev);
  if (registerBackward(p)) {
    const half = halfGradStaging(p, g);
    const eb = half ? 2 : 4;
    const bytes = (x: BackwardGrid) => (x.ch ? dqChunkedBytes(x, eb) : dqRegisterBytes(x, EC, EVC, eb));
    const rg = pickBackwardGrid(device, 'dq', bytes, (x) => (4 * EC) / x.tc, EC, EVC, chunkedBackward('dq', EC, EVC, half));
    noteBackwardGrid('dq', rg);
    if (rg) return backwardDqRegisters(p, g, rg, half, shape, nq);
  }
  noteBackwardGrid('dq', null);
  const t = pickTile(device, (c) => dqBytes(c, EC, EVC), 'flash attention backward (dQ)', true, (c) => ((c.rows / c.tr) * (2 * c.cols + EC)) / c.tc, !!p.hooks, EC <= 64 && EVC <= 64);
  const { rows: BR, cols: BC, tr: TR, tc: TC } = t;
  const RM = BR / TR;
  const RN = BC / TC;
  const EQ = EC / TC;
  const QST = EC + 1;
  const DST = EVC + 1;
  const hd = headDims(p);
  const { row, col } = blockIndex(t);
  const st = staging(storageStaging(device), [
    { name: 'qs', len: BR * QST },
    { name: 'dos', len: BR * DST },
    { name: 'ks', len: BC * QST },
    { name: 'vs', len: BC * DST },
    { name: 'ss', len: BC * BR },
    { name: 'dss', len: BC * BR },
  ], 'dq', 'u_scr_at()');
  const [qs, dos, ks, vs, ss, dss] = st.refs('qs', 'dos', 'ks', 'vs', 'ss', 'dss');
  const body = `
  ${tileOrigin(p, 'q', BR)}
  ${st.prologue}
  ${lanes(t)}
${kvRange(p, BR)}
  ${stage(st, 'qs', BR, EC, QST, (r, c) => `q0 + ${r} < LQ && ${c} < ${hd.e}`, (r, c) => `load_q(q_at(b, h, q0 + ${r}, ${c})) * u_scale()`)}
  ${stage(st, 'dos', BR, EVC, DST, (r, c) => `q0 + ${r} < LQ && ${c} < ${hd.ev}`, (r, c) => `load_dout(do_at(b, h, q0 + ${r}, ${c}))`)}
  for (var r = lidx; r < ${BR}u; r = r + WG_SIZE) {
    var l_ = neg_inf();
    var d_ = 0.0;
    if (q0 + r < LQ) { l_ = load_lse(lse_idx(b, h, q0 + r)); d_ = load_delta(lse_idx(b, h, q0 + r)); }
    lses[r] = l_;
    deltas[r] = d_;
  }
  var dqa: array<f32, ${RM * EQ}>;
  if (u_c_first() == 0u) {
    ${unroll(RM, 1, (m) => `if (q0 + ${row(m)} < LQ) {
      ${unroll(1, EQ, (_, n) => `if (${col(n)} < ${hd.e}) { dqa[${m * EQ + n}] = load_dq(dq_idx(b, h, q0 + ${row(m)}, ${col(n)})); }`)}
    }`)}
  }
  var s: array<f32, ${RM * RN}>;
  var dp: array<f32, ${RM * RN}>;
  ${blockLoop(p, 'kv', BC, `
    ${st.barrier}
    ${stage(st, 'ks', BC, EC, QST, (r, c) => `j0 + ${r} < j_hi && ${c} < ${hd.e}`, (r, c) => `load_k(k_at(b, hk, j0 + ${r}, ${c}))`)}
    ${stage(st, 'vs', BC, EVC, DST, (r, c) => `j0 + ${r} < j_hi && ${c} < ${hd.ev}`, (r, c) => `load_v(v_at(b, hk, j0 + ${r}, ${c}))`)}
    ${st.barrier}
    ${unroll(RM, RN, (m, n) => `s[${m * RN + n}] = 0.0; dp[${m * RN + n}] = 0.0;`)}
    ${product('s', RM, RN, hd.e, (m) => qs(`(${row(m)}) * ${QST}u + kk`), (n) => ks(`(${col(n)}) * ${QST}u + kk`))}
    ${product('dp', RM, RN, hd.ev, (m) => dos(`(${row(m)}) * ${DST}u + kk`), (n) => vs(`(${col(n)}) * ${DST}u + kk`))}
    ${unroll(RM, RN, (m, n) => `${ss(`(${col(n)}) * ${BR}u + ${row(m)}`)} = s[${m * RN + n}]; ${dss(`(${col(n)}) * ${BR}u + ${row(m)}`)} = dp[${m * RN + n}];`)}
    ${st.barrier}
    // one pass over the tile's (query, key) pairs: the only place masks and hooks are evaluated
    for (var t = lidx; t < ${BR * BC}u; t = t + WG_SIZE) {
      let r = t % ${BR}u;
      let i = q0 + r;
      let j = j0 + t / ${BR}u;
      let lse_i = lses[r];
      var dsr = 0.0;
      if (i < LQ && j < j_hi && lse_i != neg_inf()) {
        let raw = ${ss('t')};
        let x = finish_score(raw, b, h, i, j, !full_blk);
        if (x != neg_inf()) {
          let pr = exp(x - lse_i);
          let ds = pr * (${dss('t')} - deltas[r]);
          ${captureGradCall(p)}
          dsr = ${scoreModGrad(p)} * u_scale();
        }
      }
      ${dss('t')} = dsr;
    }
    ${st.barrier}
    ${product('dqa', RM, EQ, `min(${BC}u, j_hi - j0)`, (m) => dss(`kk * ${BR}u + ${row(m)}`), (n) => ks(`kk * ${QST}u + ${col(n)}`))}
`)}
  ${unroll(RM, 1, (m) => `{
    let i = q0 + ${row(m)};
    if (i < LQ) {
      ${unroll(1, EQ, (_, n) => `if (${col(n)} < ${hd.e}) { store_dq(dq_idx(b, h, i, ${col(n)}), dqa[${m * EQ + n}]); }`)}
    }
  }`)}`;
  const WG = TR * TC;
  const costPerKey = ((BC * (EC + EVC)) / WG + d.E + d.Ev + BC + (BR * BC) / WG + 8) / BC;
  const chunks = passes(d.Lkv, BC, device.maxLoopIterations, costPerKey);
  const td = tileDispatch(p, 'q', BR, d.Hq);
  const grid = td.grid;
  // dQ and (storage staging) the scratch share one buffer; dQ is a view of its head
  const total = nq + st.perWorkgroup * grid[0] * grid[1] * grid[2];
  checkWorkBuffer(total, device, 'flash attention backward (dQ)');
  const buf = empty([total], 'float32', device);
  const spec: ProgramSpec = {
    name: 'flash_attention_backward_dq',
    key: cacheKey(p, `t${BR}x${BC}x${TR}x${TC}${st.perWorkgroup ? 's' : ''}`),
    bindings: [...gradBindings(p, g), { name: 'dq', dtype: 'float32', access: 'read_write' }, ...hookGradBindings(p), ...td.bindings],
    uniforms: [...gradUniforms(p), ['scr_at', 'u32']],
    workgroupSize: [WG],
    helpers: `${st.decl}
var<workgroup> lses: array<f32, ${BR}>;
var<workgroup> deltas: array<f32, ${BR}>;
${DO_AT}
${scoreHelpers(p)}
${hookGradWgsl(p)}
${tileMapWgsl(p, 'q')}`,
    body,
  };
  const values = gradValues(p, g);
  chunks.forEach(([c0, c1], n) =>
    run(spec, [...gradTensors(p, g), buf, ...hookGradTensors(p), ...td.tensors], { ...values, ...chunkValues(c0, c1, n, chunks.length), scr_at: nq }, grid),
  );
  td.dispose();
  return total === nq ? buf.reshape(shape) : buf.slice(0, 0, nq).reshape(shape);
}

/**
 * The register dQ kernel (hardware GPUs): a workgroup of TR × TC threads owns 4·TR query rows, with Qᵀ and
 * dOᵀ staged once as vec4 columns and the rows' lse and delta in registers; per tile of 4·TC keys (Kᵀ, Vᵀ
 * staged likewise) thread (tr, tc) computes its 4×4 block of S and dP in registers in the forward's fma order
 * (f32 Q pre-scaled: the scores are the forward's bit for bit), dS = P ∘ (dP − delta) per element with the
 * masks, the score function's gradient and the capture-gradient hook, writes dS to workgroup memory once and
 * accumulates dQ += dS·K as vec4 dot products over 4 keys into its 4 rows × (E/TC) columns.
 */
function backwardDqRegisters(p: FlashParams, g: FlashGradInputs, grid: BackwardGrid, half: boolean, shape: number[], nq: number): Tensor {
  if (grid.ch) return backwardDqChunked(p, g, grid, half, shape, nq);
  const { d, EC, EVC, WG, hd, ST, wide, qLoad: qAt } = registerBackwardBasics(p, grid, half);
  const { tr: TR, tc: TC } = grid;
  const BR = 4 * TR;
  const BC = 4 * TC;
  const KS = TC + 1; // padded column stride of Kᵀ / Vᵀ: the dQ product reads Kᵀ across columns
  const OE = EC / TC;
  const R = [0, 1, 2, 3];
  const per = (f: (m: number) => string, sep = '\n    ') => R.map(f).join(sep);
  const cols = (f: (o: number) => string, sep = '\n      ') => Array.from({ length: OE }, (_, o) => f(o)).join(sep);
  const qLoad = qAt('q0');
  const pf = !!grid.prefetch;
  const kPf = prefetchColumns('kr_', 'fk_', TC, EC, KS, WG, ST, (r, e) => `${r} < j_hi && ${e} < ${hd.e}`, (r, e) => `load_k(k_at(b, hk, ${r}, ${e}))`);
  const vPf = prefetchColumns('vr_', 'fv_', TC, EVC, KS, WG, ST, (r, e) => `${r} < j_hi && ${e} < ${hd.ev}`, (r, e) => `load_v(v_at(b, hk, ${r}, ${e}))`);
  const body = `
  ${tileOrigin(p, 'q', BR)}
  let tc_ = lidx % ${TC}u;
  let tr_ = lidx / ${TC}u;
${kvRange(p, BR)}
  ${stageColumns('fq_', TR, EC, TR, ST, (r, e) => `q0 + ${r} < LQ && ${e} < ${hd.e}`, qLoad)}
  ${stageColumns('fdo_', TR, EVC, TR, ST, (r, e) => `q0 + ${r} < LQ && ${e} < ${hd.ev}`, (r, e) => `load_dout(do_at(b, h, q0 + ${r}, ${e}))`)}
  let ib = q0 + 4u * tr_;
  ${rowStats('ib', 'LQ')}
  var dqa: array<f32, ${4 * OE}>;
  if (u_c_first() == 0u) {
    ${per((m) => `if (ib + ${m}u < LQ) {
      ${cols((o) => `if (tc_ + ${TC * o}u < ${hd.e}) { dqa[${m * OE + o}] = load_dq(dq_idx(b, h, ib + ${m}u, tc_ + ${TC * o}u)); }`)}
    }`)}
  }
  let sc_ = ${half ? 'u_scale()' : '1.0'};
  ${pf ? `${kPf.decl}
  ${vPf.decl}
  var pre_j = 0xffffffffu;` : ''}
  ${blockLoop(p, 'kv', BC, `
    workgroupBarrier();
    ${pf ? `// this tile's Kᵀ and Vᵀ: prefetched into registers during the previous tile unless a new range starts here
    if (pre_j != j0) {
      ${kPf.load('j0')}
      ${vPf.load('j0')}
    }
    ${kPf.store}
    ${vPf.store}` : `${stageColumns('fk_', TC, EC, KS, ST, (r, e) => `j0 + ${r} < j_hi && ${e} < ${hd.e}`, (r, e) => `load_k(k_at(b, hk, j0 + ${r}, ${e}))`)}
    ${stageColumns('fv_', TC, EVC, KS, ST, (r, e) => `j0 + ${r} < j_hi && ${e} < ${hd.ev}`, (r, e) => `load_v(v_at(b, hk, j0 + ${r}, ${e}))`)}`}
    workgroupBarrier();
    ${pf ? `// the next key tile, read from storage while this one is multiplied
    if (j0 + ${BC}u < j_hi) {
      ${kPf.load(`(j0 + ${BC}u)`)}
      ${vPf.load(`(j0 + ${BC}u)`)}
      pre_j = j0 + ${BC}u;
    }` : ''}
    ${blockProduct('s', hd.e, wide(`fq_[kk * ${TR}u + tr_]`), wide(`fk_[kk * ${KS}u + tc_]`))}
    ${blockProduct('dp', hd.ev, wide(`fdo_[kk * ${TR}u + tr_]`), wide(`fv_[kk * ${KS}u + tc_]`))}
    ${dqPairPass(p, BC, TC)}
    for (var c4 = 0u; c4 < nk4; c4 = c4 + 1u) {
      ${per((m) => `let d${m} = fds_[(4u * tr_ + ${m}u) * ${TC}u + c4];`, '\n      ')}
      ${cols((o) => `{
        let k4 = ${wide(`fk_[(tc_ + ${TC * o}u) * ${KS}u + c4]`)};
        ${per((m) => `dqa[${m * OE + o}] = dqa[${m * OE + o}] + dot(d${m}, k4);`, '\n        ')}
      }`)}
    }
`)}
  ${per((m) => `if (ib + ${m}u < LQ) {
    ${cols((o) => `if (tc_ + ${TC * o}u < ${hd.e}) { store_dq(dq_idx(b, h, ib + ${m}u, tc_ + ${TC * o}u), dqa[${m * OE + o}]); }`)}
  }`, '\n  ')}`;
  const costPerKey = (((EC + EVC) * TC) / WG + d.E + d.Ev + TC + 8) / BC;
  return runDqRegisters(p, g, costPerKey, BC, BR, nq, shape, `r${TR}x${TC}${half ? 'h' : ''}${pf ? 'pf' : ''}`, WG, `var<workgroup> fq_: array<vec4<${ST}>, ${EC * TR}>;
var<workgroup> fdo_: array<vec4<${ST}>, ${EVC * TR}>;
var<workgroup> fk_: array<vec4<${ST}>, ${EC * KS}>;
var<workgroup> fv_: array<vec4<${ST}>, ${EVC * KS}>;
var<workgroup> fds_: array<vec4<f32>, ${BR * TC}>;`, body);
}


/**
 * The head-dim-chunked register dQ kernel (f32 head dims of 128 and more): the thread grid and per-pair work of
 * {@link backwardDqRegisters}, with every operand staged `ch` head-dim columns at a time into two small buffers: per
 * key tile, S = Q·Kᵀ and dP = dO·Vᵀ accumulate chunk by chunk (Q and dO re-read from storage per key tile), dS goes
 * to workgroup memory once, and dQ += dS·K runs chunk by chunk of K (each thread's accumulator columns of a chunk
 * are static).
 */
function backwardDqChunked(p: FlashParams, g: FlashGradInputs, grid: BackwardGrid, half: boolean, shape: number[], nq: number): Tensor {
  const { EC, EVC, WG, hd, ST, wide, qLoad: qAt } = registerBackwardBasics(p, grid, half);
  const { tr: TR, tc: TC } = grid;
  const CH = grid.ch!;
  const BR = 4 * TR;
  const BC = 4 * TC;
  const KS = TC + 1; // padded column stride of the Kᵀ / Vᵀ chunk: the dQ product reads it across columns
  const OE = EC / TC;
  const OC = CH / TC; // accumulator columns per thread in one chunk
  const R = [0, 1, 2, 3];
  const L = VEC_LANES;
  const per = (f: (m: number) => string, sep = '\n    ') => R.map(f).join(sep);
  const qRow = qAt('q0');
  // chunk from column e0 (a WGSL expression) of Q or dO (rows q0.., into fa_) and of K or V (rows j0.., into fb_)
  const stageQdo = (src: 'q' | 'do', e0: string) =>
    stageColumns('fa_', TR, CH, TR, ST, (r, e) => `q0 + ${r} < LQ && ${e0} + ${e} < ${src === 'q' ? hd.e : hd.ev}`, (r, e) =>
      src === 'q' ? qRow(r, `${e0} + ${e}`) : `load_dout(do_at(b, h, q0 + ${r}, ${e0} + ${e}))`);
  const stageKv = (src: 'k' | 'v', e0: string) =>
    stageColumns('fb_', TC, CH, KS, ST, (r, e) => `j0 + ${r} < j_hi && ${e0} + ${e} < ${src === 'k' ? hd.e : hd.ev}`, (r, e) => `load_${src}(${src}_at(b, hk, j0 + ${r}, ${e0} + ${e}))`);
  // S (or dP) of the thread's 4 query rows × 4 keys, accumulated over the head-dim chunks
  const scores = (acc: string, bound: string, a: 'q' | 'do', b: 'k' | 'v') => `${per((m) => `var ${acc}${m} = vec4<f32>(0.0);`, ' ')}
    for (var e0 = 0u; e0 < ${bound}; e0 = e0 + ${CH}u) {
      workgroupBarrier();
      ${stageQdo(a, 'e0')}
      ${stageKv(b, 'e0')}
      workgroupBarrier();
      for (var kk = 0u; kk < min(${CH}u, ${bound} - e0); kk = kk + 1u) {
        let c_ = ${wide(`fa_[kk * ${TR}u + tr_]`)};
        let r_ = ${wide(`fb_[kk * ${KS}u + tc_]`)};
        ${L.map((l, m) => `${acc}${m} = fma(vec4<f32>(c_.${l}), r_, ${acc}${m});`).join('\n        ')}
      }
    }`;
  const pf = !!grid.prefetch;
  const FS = TR + (pf ? 1 : 0); // row stride (vec4) of the Qᵀ / dOᵀ chunk: padded where prefetching
  // prefetching: the key tile is a static list of chunk steps (dOᵀ+Vᵀ for dP, Qᵀ+Kᵀ for S, Kᵀ for dQ; dP first, so
  // that the last S step's Kᵀ chunk serves the first dQ step as it stands), each storing the registers loaded during
  // the step before and loading the next step's (the next key tile's first step during the last one)
  const qAbs = qAt('0u');
  const regA = (src: 'q' | 'do', c: number) =>
    prefetchColumns('ra_', 'fa_', TR, CH, FS, WG, ST, (r, e) => `${r} < LQ && ${c * CH}u + ${e} < ${src === 'q' ? hd.e : hd.ev}`, (r, e) =>
      src === 'q' ? qAbs(r, `${c * CH}u + ${e}`) : `load_dout(do_at(b, h, ${r}, ${c * CH}u + ${e}))`);
  const regB = (src: 'k' | 'v', c: number) =>
    prefetchColumns('rb_', 'fb_', TC, CH, KS, WG, ST, (r, e) => `${r} < j_hi && ${c * CH}u + ${e} < ${src === 'k' ? hd.e : hd.ev}`, (r, e) => `load_${src}(${src}_at(b, hk, ${r}, ${c * CH}u + ${e}))`);
  // keep: the step reads the Kᵀ chunk the step before staged in fb_ (after the pair pass's barrier: no barrier, no staging)
  type Step = { a?: 'q' | 'do'; b: 'k' | 'v'; c: number; compute: string; post?: string; keep?: boolean };
  const dotStep = (acc: string, bound: string, c: number) => `if (${c * CH}u < ${bound}) {
      for (var kk = 0u; kk < min(${CH}u, ${bound} - ${c * CH}u); kk = kk + 1u) {
        let c_ = ${wide(`fa_[kk * ${FS}u + tr_]`)};
        let r_ = ${wide(`fb_[kk * ${KS}u + tc_]`)};
        ${L.map((l, m) => `${acc}${m} = fma(vec4<f32>(c_.${l}), r_, ${acc}${m});`).join('\n        ')}
      }
    }`;
  // dQ += dS·Kᵀ-chunk c (the chunk staged in fb_), in both the prefetching and the plain kernel
  const dqLoop = (c: number) => `for (var c4 = 0u; c4 < nk4; c4 = c4 + 1u) {
        ${per((m) => `let d${m} = fds_[(4u * tr_ + ${m}u) * ${TC}u + c4];`, '\n        ')}
        ${Array.from({ length: OC }, (_, o) => `{
          let k4 = ${wide(`fb_[(tc_ + ${TC * o}u) * ${KS}u + c4]`)};
          ${per((m) => `dqa[${m * OE + c * OC + o}] = dqa[${m * OE + c * OC + o}] + dot(d${m}, k4);`, '\n          ')}
        }`).join('\n        ')}
      }`;
  const dqStep = (c: number) => `if (${c * CH}u < ${hd.e}) {
      ${dqLoop(c)}
    }`;
  const nE = EC / CH;
  const nV = EVC / CH;
  const steps: Step[] = [
    ...Array.from({ length: nV }, (_, c): Step => ({ a: 'do', b: 'v', c, compute: dotStep('dp', hd.ev, c) })),
    ...Array.from({ length: nE }, (_, c): Step => ({ a: 'q', b: 'k', c, compute: dotStep('s', hd.e, c), post: c === nE - 1 ? dqPairPass(p, BC, TC) : '' })),
    // dQ chunk by chunk, the last first (each chunk owns its accumulators: the order changes no sum)
    ...Array.from({ length: nE }, (_, n): Step => {
      const c = (n + nE - 1) % nE;
      return { b: 'k', c, compute: dqStep(c), keep: n === 0 };
    }),
  ];
  const loadStep = (st: Step, base: string) => (st.keep ? '' : `${st.a ? regA(st.a, st.c).load('q0') : ''}
    ${regB(st.b, st.c).load(base)}`);
  const pfTile = `${per((m) => `var s${m} = vec4<f32>(0.0);`, ' ')}
    ${per((m) => `var dp${m} = vec4<f32>(0.0);`, ' ')}
    if (pre_j != j0) {
      ${loadStep(steps[0]!, 'j0')}
    }
    ${steps.map((st, n) => `// step ${n}: ${st.a ? `${st.a === 'q' ? 'Qᵀ' : 'dOᵀ'} and ` : ''}${st.b.toUpperCase()}ᵀ chunk ${st.c}${st.keep ? ' (kept in fb_)' : ''}
    ${st.keep ? '' : `workgroupBarrier();
    ${st.a ? regA(st.a, st.c).store : ''}
    ${regB(st.b, st.c).store}
    workgroupBarrier();`}
    ${n + 1 < steps.length ? loadStep(steps[n + 1]!, 'j0') : `if (j0 + ${BC}u < j_hi) {
      ${loadStep(steps[0]!, `(j0 + ${BC}u)`)}
      pre_j = j0 + ${BC}u;
    }`}
    ${st.compute}
    ${st.post ?? ''}`).join('\n    ')}`;
  const body = `
  ${tileOrigin(p, 'q', BR)}
  let tc_ = lidx % ${TC}u;
  let tr_ = lidx / ${TC}u;
${kvRange(p, BR)}
  let ib = q0 + 4u * tr_;
  ${rowStats('ib', 'LQ')}
  var dqa: array<f32, ${4 * OE}>;
  if (u_c_first() == 0u) {
    ${per((m) => `if (ib + ${m}u < LQ) {
      ${Array.from({ length: OE }, (_, o) => `if (tc_ + ${TC * o}u < ${hd.e}) { dqa[${m * OE + o}] = load_dq(dq_idx(b, h, ib + ${m}u, tc_ + ${TC * o}u)); }`).join('\n      ')}
    }`)}
  }
  let sc_ = ${half ? 'u_scale()' : '1.0'};
  ${pf ? `${regA('q', 0).decl}
  ${regB('k', 0).decl}
  var pre_j = 0xffffffffu;
  ${blockLoop(p, 'kv', BC, pfTile)}` : blockLoop(p, 'kv', BC, `
    ${scores('s', hd.e, 'q', 'k')}
    ${scores('dp', hd.ev, 'do', 'v')}
    ${dqPairPass(p, BC, TC)}
    // dQ += dS·K chunk by chunk of K; chunks past the head dim are skipped (uniform branch)
    ${Array.from({ length: EC / CH }, (_, c) => `if (${c * CH}u < ${hd.e}) {
      ${c > 0 ? 'workgroupBarrier();' : ''}
      ${stageKv('k', `${c * CH}u`)}
      workgroupBarrier();
      ${dqLoop(c)}
    }`).join('\n    ')}
`)}
  ${per((m) => `if (ib + ${m}u < LQ) {
    ${Array.from({ length: OE }, (_, o) => `if (tc_ + ${TC * o}u < ${hd.e}) { store_dq(dq_idx(b, h, ib + ${m}u, tc_ + ${TC * o}u), dqa[${m * OE + o}]); }`).join('\n    ')}
  }`, '\n  ')}`;
  // loop iterations per key of one invocation: the chunk stagings and dot loops of S and dP, the dQ chunk loops
  const costPerKey = ((EC + EVC) * ((TR + TC) / WG + 1) + EC * (TC / WG + TC / CH) + 8) / BC;
  return runDqRegisters(p, g, costPerKey, BC, BR, nq, shape, `r${TR}x${TC}c${CH}${half ? 'h' : ''}${pf ? 'pf' : ''}`, WG, `var<workgroup> fa_: array<vec4<${ST}>, ${CH * FS}>;
var<workgroup> fb_: array<vec4<${ST}>, ${CH * KS}>;
var<workgroup> fds_: array<vec4<f32>, ${BR * TC}>;`, body);
}

/**
 * The pair pass of a dQ tile: each thread's 4×4 (query, key) scores S (`s0..s3`) and dP (`dp0..dp3`) become
 * dS·scale in `s0..s3` (masks, the score function and its gradient, capture gradients through `pairGrad`), which go
 * to `fds_` for dQ += dS·K; then `nk4`, the tile's count of key vec4s.
 */
function dqPairPass(p: FlashParams, BC: number, TC: number): string {
  const R = [0, 1, 2, 3];
  const L = VEC_LANES;
  const per = (f: (m: number) => string, sep = '\n    ') => R.map(f).join(sep);
  return `let jb = j0 + 4u * tc_;
    ${per((m) => R.map((n) => `{
      let i = ib + ${m}u;
      let j = jb + ${n}u;
      ${pairGrad(`s${m}.${L[n]}`, `dp${m}.${L[n]}`, 'i < LQ && j < j_hi', `lse4.${L[m]}`, `del4.${L[m]}`, scoreModGrad(p), ' * u_scale()', captureGradCall(p))}
      s${m}.${L[n]} = dsr;
    }`).join(' '))}
    ${per((m) => `fds_[(4u * tr_ + ${m}u) * ${TC}u + tc_] = s${m};`)}
    workgroupBarrier();
    let nk4 = (min(${BC}u, j_hi - j0) + 3u) / 4u;`;
}

/**
 * Runs a register dQ kernel over the key-range passes its loop cost allows and returns dQ (float32, `shape`):
 * `tag` keys its pipeline, `arrays` are its workgroup arrays, `body` its WGSL.
 */
function runDqRegisters(p: FlashParams, g: FlashGradInputs, costPerKey: number, BC: number, BR: number, nq: number, shape: number[], tag: string, WG: number, arrays: string, body: string): Tensor {
  const device = p.q.device as WebGPUDevice;
  const d = dims(p);
  const chunks = passes(d.Lkv, BC, device.maxLoopIterations, costPerKey);
  const td = tileDispatch(p, 'q', BR, d.Hq);
  checkWorkBuffer(nq, device, 'flash attention backward (dQ)');
  const buf = empty([nq], 'float32', device);
  const spec: ProgramSpec = {
    name: 'flash_attention_backward_dq_registers',
    key: cacheKey(p, tag),
    bindings: [...gradBindings(p, g), { name: 'dq', dtype: 'float32', access: 'read_write' }, ...hookGradBindings(p), ...td.bindings],
    uniforms: gradUniforms(p),
    workgroupSize: [WG],
    helpers: `${arrays}
${DO_AT}
${scoreHelpers(p)}
${hookGradWgsl(p)}
${tileMapWgsl(p, 'q')}`,
    body,
  };
  const values = gradValues(p, g);
  chunks.forEach(([c0, c1], n) =>
    run(spec, [...gradTensors(p, g), buf, ...hookGradTensors(p), ...td.tensors], { ...values, ...chunkValues(c0, c1, n, chunks.length) }, td.grid),
  );
  td.dispose();
  return buf.reshape(shape);
}
