/**
 * The dK/dV kernel of the backward: one workgroup per block of key rows (K and V staged once), looping
 * over the query heads of its GQA group and over query tiles. Per tile, Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ are
 * register-blocked tile products written to staged tiles; one plain loop over the (key, query) pairs
 * turns them into P and dS (masks and hooks evaluated once per kernel, never unrolled); dV += Pᵀ·dO and
 * dK += dSᵀ·Q are two more products. Probabilities are recomputed from the forward's lse.
 */
import { empty, matmul, type Tensor } from '@webattn/core-tensor';
import type { WebGPUDevice } from '../device/webgpu-device.js';
import { run, type ProgramSpec } from '../wgsl.js';
import {
  cacheKey, chunkValues, dimClass, dims, gradBindings, gradTensors, gradUniforms, gradValues, halfGradStaging, headDims, noteBackwardGrid, passes, pickBackwardGrid, pickTile, scoresBackward,
  chunkedBackward, registerBackward, registerBackwardBasics, scoresVec4, storageStaging, tailSkip, dvReuse, type BackwardGrid, type FlashGradInputs, type FlashParams, type Tile,
} from './plan.js';
import { blockIndex, blockLoop, blockProduct, checkWorkBuffer, lanes, pairGrad, product, qRange, rowStats, scoreHelpers, stage, stageColumns, staging, unroll, VEC_LANES } from './shared.js';
import { tileDispatch, tileMapWgsl, tileOrigin } from './tile-map.js';
import { DO_AT, prefetchColumns } from './backward-dq.js';
import { scoreModGrad } from './hooks.js';

function dkvBytes(t: Tile, EC: number, EVC: number): number {
  return 4 * ((t.rows + t.cols) * (EC + 1 + EVC + 1) + 2 * t.rows * t.cols + 2 * t.cols);
}

/** Workgroup memory of the register dK/dV kernel: Kᵀ, Vᵀ (once), Qᵀ, dOᵀ (per tile; padded columns) and P, dS. */
function dkvRegisterBytes(g: BackwardGrid, EC: number, EVC: number, elemBytes: number, turns: boolean): number {
  return 4 * elemBytes * ((EC + EVC) * g.tr + (EC + EVC) * (g.tc + 1)) + (turns ? 1 : 2) * 16 * (4 * g.tr * g.tc);
}

/** Workgroup memory of the head-dim-chunked register dK/dV kernel: one chunk of Kᵀ or Vᵀ and of Qᵀ or dOᵀ (padded columns), P and dS. */
function dkvChunkedBytes(g: BackwardGrid, elemBytes: number, turns: boolean): number {
  // prefetching: the Kᵀ / Vᵀ chunk's rows padded by one vec4 (bank conflicts of its transposed stores)
  return 4 * elemBytes * g.ch! * (g.tr + g.tc + 1 + (g.prefetch ? 1 : 0)) + (turns ? 1 : 2) * 16 * (4 * g.tr * g.tc);
}

/** The register dK/dV kernel's grid for one call (P/dS by turns resolved), or null where none fits. */
function dkvRegisterGrid(p: FlashParams, g: FlashGradInputs): BackwardGrid | null {
  const d = dims(p);
  const device = p.q.device as WebGPUDevice;
  const EC = dimClass(d.E);
  const EVC = dimClass(d.Ev);
  const half = halfGradStaging(p, g);
  const eb = half ? 2 : 4;
  const budget = device.limits.maxComputeWorkgroupStorageSize - 64;
  const bytes = (x: BackwardGrid, t: boolean) => (x.ch ? dkvChunkedBytes(x, eb, t) : dkvRegisterBytes(x, EC, EVC, eb, t));
  // P and dS in one buffer by turns where forced, or where two buffers do not fit
  const turns = (x: BackwardGrid) => x.turns ?? bytes(x, false) > budget;
  const rg = pickBackwardGrid(device, 'dkv', (x) => bytes(x, turns(x)), (x) => (4 * (EC + EVC)) / x.tc, EC, EVC, chunkedBackward('dkv', EC, EVC, half));
  return rg ? { ...rg, turns: turns(rg) } : null;
}

/**
 * The backward through materialised scores' gradients (short sequences; see `scoresBackward` in plan.ts): the
 * register dK/dV kernel also writes dS·scale `[B, Hq, Lq, Lkv]` (float32, every pair: dense, non-causal, no window or
 * block tables), and dQ = dS·K is one batched matmul (grouped-query heads as rows of their key head's product) — instead of the dQ kernel, which recomputes S and dP. Null
 * where the call does not qualify (the two kernels then run).
 */
export function backwardViaScores(p: FlashParams, g: FlashGradInputs): { dq: Tensor; dk: Tensor; dv: Tensor } | null {
  const d = dims(p);
  const device = p.q.device as WebGPUDevice;
  const maxBinding = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
  if (!scoresBackward(p, d.B * d.Hq * d.Lq * d.Lkv * 4, maxBinding) || !registerBackward(p)) return null;
  const grid = dkvRegisterGrid(p, g);
  if (!grid) return null;
  noteBackwardGrid('dkv', grid);
  noteBackwardGrid('dq', null);
  const ds = empty([d.B, d.Hq, d.Lq, d.Lkv], 'float32', device);
  const { dk, dv } = backwardDkvRegisters(p, g, grid, halfGradStaging(p, g), ds);
  // grouped-query heads: the G query heads of a key head are consecutive, so dS viewed as [B, Hkv, G·Lq, Lkv] times
  // K [B, Hkv, Lkv, E] is dQ as [B, Hkv, G·Lq, E] = [B, Hq, Lq, E]
  const dq = matmul(d.G === 1 ? ds : ds.reshape([d.B, d.Hkv, d.G * d.Lq, d.Lkv]), p.k).reshape([d.B, d.Hq, d.Lq, d.E]);
  ds.dispose();
  return { dq, dk, dv };
}

/**
 * The pair pass of a dK/dV tile: each thread's 4×4 (key, query) scores S (`s0..s3`) and dP (`dp0..dp3`) become P
 * and dS in place (masks, the score function and its gradient through `pairGrad`); with `ds`, dS·scale of the pairs
 * in range goes to `dsc` for dQ = dS·K (the scores backward; `vec4`: `dsc` bound as vec4s, LK a multiple of 4); then `nq4`, the tile's count of query vec4s.
 */
function pairPass(p: FlashParams, BQ: number, ds: 'scalar' | 'vec4' | null): string {
  const R = [0, 1, 2, 3];
  const L = VEC_LANES;
  const per = (f: (m: number) => string, sep = '\n      ') => R.map(f).join(sep);
  return `let ib = i0 + 4u * tc_;
      ${rowStats('ib', 'i_lim')}
      ${per((m) => R.map((n) => `{
        let j = jb + ${m}u;
        let i = ib + ${n}u;
        ${pairGrad(`s${m}.${L[n]}`, `dp${m}.${L[n]}`, 'j < LK && i < i_lim', `lse4.${L[n]}`, `del4.${L[n]}`, scoreModGrad(p), '')}
        s${m}.${L[n]} = pr;
        dp${m}.${L[n]} = dsr;
      }`).join(' '))}${ds ? `
      // dS·scale of the pairs in range, for dQ = dS·K (a matmul after this kernel)
      ${ds === 'vec4'
        // LK % 4 = 0: the thread's 4 keys of one query are one aligned vec4 (a warp's stores cover whole sectors)
        ? `if (jb < LK) {
        ${R.map((n) => `if (ib + ${n}u < i_lim) { dsc[((b * u_hq() + h) * LQ + ib + ${n}u) * (LK / 4u) + jb / 4u] = vec4<f32>(${R.map((m) => `dp${m}.${L[n]}`).join(', ')}) * u_scale(); }`).join('\n        ')}
      }`
        : per((m) => R.map((n) => `if (jb + ${m}u < LK && ib + ${n}u < i_lim) { dsc[((b * u_hq() + h) * LQ + ib + ${n}u) * LK + jb + ${m}u] = dp${m}.${L[n]} * u_scale(); }`).join('\n      '))}` : ''}
      let nq4 = (min(${BQ}u, i_lim - i0) + 3u) / 4u;`;
}

/**
 * The WGSL every register dK/dV kernel declares after its operand arrays: dS's buffer unless P and dS take turns in
 * `fp_` (`tile` vec4s), dV's slot in the `dk` buffer, dO access, the score helpers and the key-tile map.
 */
function dkvTail(p: FlashParams, turns: boolean, tile: number): string {
  return `${turns ? '' : `var<workgroup> fds_: array<vec4<f32>, ${tile}>;`}
fn load_dv(i: u32) -> f32 { return dk[u_dv_at() + i]; }
fn store_dv(i: u32, x: f32) { dk[u_dv_at() + i] = x; }
${DO_AT}
${scoreHelpers(p)}
${tileMapWgsl(p, 'k')}`;
}

/** dK and dV (float32, laid out like k/v but contiguous) of one backward call. */
export function backwardDkv(p: FlashParams, g: FlashGradInputs): {
  /** Gradient of k (summed over the query heads of each group). */
  dk: Tensor;
  /** Gradient of v. */
  dv: Tensor;
} {
  const d = dims(p);
  const device = p.q.device as WebGPUDevice;
  const kShape = p.varlen ? [d.TK, d.Hkv, d.E] : [d.B, d.Hkv, d.Lkv, d.E];
  const vShape = p.varlen ? [d.TK, d.Hkv, d.Ev] : [d.B, d.Hkv, d.Lkv, d.Ev];
  const nk = kShape.reduce((a, x) => a * x, 1);
  const nv = vShape.reduce((a, x) => a * x, 1);
  if (d.B * d.Hkv * d.Lkv === 0 || nk === 0) return { dk: empty(kShape, 'float32', device), dv: empty(vShape, 'float32', device) };
  const EC = dimClass(d.E);
  const EVC = dimClass(d.Ev);
  const chosen = registerBackward(p) ? dkvRegisterGrid(p, g) : null;
  noteBackwardGrid('dkv', chosen);
  if (chosen) return backwardDkvRegisters(p, g, chosen, halfGradStaging(p, g), null);
  const t = pickTile(device, (c) => dkvBytes(c, EC, EVC), 'flash attention backward (dK/dV)', true, (c) => ((c.rows / c.tr) * (2 * c.cols + EC + EVC)) / c.tc, !!p.hooks, EC <= 64 && EVC <= 64);
  const { rows: BK, cols: BQ, tr: TR, tc: TC } = t;
  const RM = BK / TR;
  const RN = BQ / TC;
  const EQ = EC / TC;
  const VQ = EVC / TC;
  const QST = EC + 1;
  const DST = EVC + 1;
  const hd = headDims(p);
  const { row, col } = blockIndex(t);
  const st = staging(storageStaging(device), [
    { name: 'ks', len: BK * QST },
    { name: 'vs', len: BK * DST },
    { name: 'qs', len: BQ * QST },
    { name: 'dos', len: BQ * DST },
    { name: 'ps', len: BQ * BK },
    { name: 'dss', len: BQ * BK },
  ], 'dk', 'u_scr_at()');
  const [ks, vs, qs, dos, ps, dss] = st.refs('ks', 'vs', 'qs', 'dos', 'ps', 'dss');
  const body = `
  ${tileOrigin(p, 'k', BK)}
  ${st.prologue}
  ${lanes(t)}
${qRange(p, BK)}
  ${stage(st, 'ks', BK, EC, QST, (r, c) => `k0 + ${r} < LK && ${c} < ${hd.e}`, (r, c) => `load_k(k_at(b, hk, k0 + ${r}, ${c}))`)}
  ${stage(st, 'vs', BK, EVC, DST, (r, c) => `k0 + ${r} < LK && ${c} < ${hd.ev}`, (r, c) => `load_v(v_at(b, hk, k0 + ${r}, ${c}))`)}
  var dka: array<f32, ${RM * EQ}>;
  var dva: array<f32, ${RM * VQ}>;
  var s: array<f32, ${RM * RN}>;
  var dp: array<f32, ${RM * RN}>;
  if (u_c_first() == 0u) {
    ${unroll(RM, 1, (m) => `if (k0 + ${row(m)} < LK) {
      let j = k0 + ${row(m)};
      ${unroll(1, EQ, (_, n) => `if (${col(n)} < ${hd.e}) { dka[${m * EQ + n}] = load_dk(dk_idx(b, hk, j, ${col(n)})); }`)}
      ${unroll(1, VQ, (_, n) => `if (${col(n)} < ${hd.ev}) { dva[${m * VQ + n}] = load_dv(dv_idx(b, hk, j, ${col(n)})); }`)}
    }`)}
  }
  for (var g = u_g_begin(); g < u_g_stop(); g = g + 1u) {
    let h = hk * u_group() + g;
    ${blockLoop(p, 'q', BQ, `
      ${st.barrier}
      ${stage(st, 'qs', BQ, EC, QST, (r, c) => `i0 + ${r} < i_lim && ${c} < ${hd.e}`, (r, c) => `load_q(q_at(b, h, i0 + ${r}, ${c})) * u_scale()`)}
      ${stage(st, 'dos', BQ, EVC, DST, (r, c) => `i0 + ${r} < i_lim && ${c} < ${hd.ev}`, (r, c) => `load_dout(do_at(b, h, i0 + ${r}, ${c}))`)}
      for (var t = lidx; t < ${BQ}u; t = t + WG_SIZE) {
        var l_ = neg_inf();
        var d_ = 0.0;
        if (i0 + t < i_lim) { l_ = load_lse(lse_idx(b, h, i0 + t)); d_ = load_delta(lse_idx(b, h, i0 + t)); }
        lses[t] = l_;
        deltas[t] = d_;
      }
      ${st.barrier}
      ${unroll(RM, RN, (m, n) => `s[${m * RN + n}] = 0.0; dp[${m * RN + n}] = 0.0;`)}
      ${product('s', RM, RN, hd.e, (m) => ks(`(${row(m)}) * ${QST}u + kk`), (n) => qs(`(${col(n)}) * ${QST}u + kk`))}
      ${product('dp', RM, RN, hd.ev, (m) => vs(`(${row(m)}) * ${DST}u + kk`), (n) => dos(`(${col(n)}) * ${DST}u + kk`))}
      ${unroll(RM, RN, (m, n) => `${ps(`(${col(n)}) * ${BK}u + ${row(m)}`)} = s[${m * RN + n}]; ${dss(`(${col(n)}) * ${BK}u + ${row(m)}`)} = dp[${m * RN + n}];`)}
      ${st.barrier}
      // one pass over the tile's (key, query) pairs: the only place masks and hooks are evaluated
      for (var t = lidx; t < ${BK * BQ}u; t = t + WG_SIZE) {
        let r = t % ${BK}u;
        let c = t / ${BK}u;
        let j = k0 + r;
        let i = i0 + c;
        let lse_i = lses[c];
        var pr = 0.0;
        var dsr = 0.0;
        if (j < LK && i < i_lim && lse_i != neg_inf()) {
          let raw = ${ps('t')};
          let x = finish_score(raw, b, h, i, j, !full_blk);
          if (x != neg_inf()) {
            pr = exp(x - lse_i);
            let ds = pr * (${dss('t')} - deltas[c]);
            // qs holds q·scale, so dK = Σ dsr · q · scale
            dsr = ${scoreModGrad(p)};
          }
        }
        ${ps('t')} = pr;
        ${dss('t')} = dsr;
      }
      ${st.barrier}
      let nq = min(${BQ}u, i_lim - i0);
      ${product('dva', RM, VQ, 'nq', (m) => ps(`kk * ${BK}u + ${row(m)}`), (n) => dos(`kk * ${DST}u + ${col(n)}`))}
      ${product('dka', RM, EQ, 'nq', (m) => dss(`kk * ${BK}u + ${row(m)}`), (n) => qs(`kk * ${QST}u + ${col(n)}`))}
`)}
  }
  ${unroll(RM, 1, (m) => `{
    let j = k0 + ${row(m)};
    if (j < LK) {
      ${unroll(1, EQ, (_, n) => `if (${col(n)} < ${hd.e}) { store_dk(dk_idx(b, hk, j, ${col(n)}), dka[${m * EQ + n}]); }`)}
      ${unroll(1, VQ, (_, n) => `if (${col(n)} < ${hd.ev}) { store_dv(dv_idx(b, hk, j, ${col(n)}), dva[${m * VQ + n}]); }`)}
    }
  }`)}`;
  const WG = TR * TC;
  const td = tileDispatch(p, 'k', BK, d.Hkv);
  const grid = td.grid;
  // dK, dV and (storage staging) the scratch share one buffer: one binding; dK and dV are views of it
  const total = nk + nv + st.perWorkgroup * grid[0] * grid[1] * grid[2];
  checkWorkBuffer(total, device, 'flash attention backward (dK/dV)');
  const buf = empty([total], 'float32', device);
  const spec: ProgramSpec = {
    name: 'flash_attention_backward_dkv',
    key: cacheKey(p, `t${BK}x${BQ}x${TR}x${TC}${st.perWorkgroup ? 's' : ''}`),
    bindings: [...gradBindings(p, g), { name: 'dk', dtype: 'float32', access: 'read_write' }, ...td.bindings],
    uniforms: [...gradUniforms(p), ['dv_at', 'u32'], ['scr_at', 'u32']],
    workgroupSize: [WG],
    helpers: `${st.decl}
fn load_dv(i: u32) -> f32 { return dk[u_dv_at() + i]; }
fn store_dv(i: u32, x: f32) { dk[u_dv_at() + i] = x; }
var<workgroup> lses: array<f32, ${BQ}>;
var<workgroup> deltas: array<f32, ${BQ}>;
${DO_AT}
${scoreHelpers(p)}
${tileMapWgsl(p, 'k')}`,
    body,
  };
  // passes over (query head of the group, query rows) keep each invocation under the loop cap
  const cost = ((BQ * (EC + EVC + 2)) / WG + d.E + d.Ev + 2 * BQ + (BK * BQ) / WG + 8) / BQ;
  const all: [number, number, number, number][] = [];
  if (!Number.isFinite(device.maxLoopIterations) || d.G * d.Lq * cost <= device.maxLoopIterations * 0.6) all.push([0, d.Lq, 0, d.G]);
  else for (let gi = 0; gi < d.G; gi++) for (const [c0, c1] of passes(d.Lq, BQ, device.maxLoopIterations, cost)) all.push([c0, c1, gi, gi + 1]);
  const values = gradValues(p, g);
  all.forEach(([c0, c1, g0, g1], n) =>
    run(spec, [...gradTensors(p, g), buf, ...td.tensors], { ...values, ...chunkValues(c0, c1, n, all.length, g0, g1), dv_at: nk, scr_at: nk + nv }, grid),
  );
  td.dispose();
  return { dk: buf.slice(0, 0, nk).reshape(kShape), dv: buf.slice(0, nk, nk + nv).reshape(vShape) };
}

/**
 * The register dK/dV kernel (hardware GPUs; FlashAttention-2's outer loop over key blocks): a workgroup of
 * TR × TC threads owns 4·TR keys, with Kᵀ and Vᵀ staged once as vec4 columns; per tile of 4·TC queries (Qᵀ,
 * dOᵀ staged likewise) thread (tr, tc) computes the 4×4 block of Sᵀ (keys 4tr.., queries 4tc..) and of dPᵀ
 * in registers with the forward's fma order (f32 Q pre-scaled: bit-equal scores, so P = exp(S − lse) is
 * exact), turns them into P and dS = P ∘ (dP − delta) in registers (masks, score function and its gradient
 * per element), writes the two 4×4 blocks to workgroup memory once, and accumulates dV += Pᵀ·dO and
 * dK += dSᵀ·Q as vec4 dot products over 4 queries at a time into its 4 keys × (E/TC) columns.
 */
function backwardDkvRegisters(p: FlashParams, g: FlashGradInputs, grid: BackwardGrid, half: boolean, ds: Tensor | null): { dk: Tensor; dv: Tensor } {
  if (grid.ch) return backwardDkvChunked(p, g, grid, half, ds);
  const { d, EC, EVC, WG, hd, ST, wide, qLoad: qAt } = registerBackwardBasics(p, grid, half);
  const device = p.q.device as WebGPUDevice;
  const kShape = p.varlen ? [d.TK, d.Hkv, d.E] : [d.B, d.Hkv, d.Lkv, d.E];
  const vShape = p.varlen ? [d.TK, d.Hkv, d.Ev] : [d.B, d.Hkv, d.Lkv, d.Ev];
  const nk = kShape.reduce((a, x) => a * x, 1);
  const nv = vShape.reduce((a, x) => a * x, 1);
  const { tr: TR, tc: TC } = grid;
  const BK = 4 * TR;
  const BQ = 4 * TC;
  const QS = TC + 1; // padded column stride of Qᵀ / dOᵀ: the dK/dV products read them across columns
  const OE = EC / TC;
  const OV = EVC / TC;
  const R = [0, 1, 2, 3];
  const per = (f: (m: number) => string, sep = '\n      ') => R.map(f).join(sep);
  const cols = (n: number, f: (o: number) => string, sep = '\n        ') => Array.from({ length: n }, (_, o) => f(o)).join(sep);
  const qLoad = qAt('i0');
  const turns = !!grid.turns;
  const dsMode = ds ? (scoresVec4(d.Lkv) ? 'vec4' : 'scalar') : null;
  const dkStep = cols(OE, (o) => `{
          let q4 = ${wide(`fq_[(tc_ + ${TC * o}u) * ${QS}u + c4]`)};
          ${per((m) => `dka[${m * OE + o}] = dka[${m * OE + o}] + dot(d${m}, q4);`, '\n          ')}
        }`);
  const dvStep = cols(OV, (o) => `{
          let o4 = ${wide(`fdo_[(tc_ + ${TC * o}u) * ${QS}u + c4]`)};
          ${per((m) => `dva[${m * OV + o}] = dva[${m * OV + o}] + dot(p${m}, o4);`, '\n          ')}
        }`);
  const pf = !!grid.prefetch;
  // the prefetch reads absolute rows: qAt('0u') is Q of row 0 + r (pre-scaled for f32, as the staged tile)
  const qRow = qAt('0u');
  const qPf = prefetchColumns('qr_', 'fq_', TC, EC, QS, WG, ST, (r, e) => `${r} < i_lim && ${e} < ${hd.e}`, qRow);
  const doPf = prefetchColumns('dor_', 'fdo_', TC, EVC, QS, WG, ST, (r, e) => `${r} < i_lim && ${e} < ${hd.ev}`, (r, e) => `load_dout(do_at(b, h, ${r}, ${e}))`);
  const body = `
  ${tileOrigin(p, 'k', BK)}
  let tc_ = lidx % ${TC}u;
  let tr_ = lidx / ${TC}u;
${qRange(p, BK)}
  ${stageColumns('fk_', TR, EC, TR, ST, (r, e) => `k0 + ${r} < LK && ${e} < ${hd.e}`, (r, e) => `load_k(k_at(b, hk, k0 + ${r}, ${e}))`)}
  ${stageColumns('fv_', TR, EVC, TR, ST, (r, e) => `k0 + ${r} < LK && ${e} < ${hd.ev}`, (r, e) => `load_v(v_at(b, hk, k0 + ${r}, ${e}))`)}
  let jb = k0 + 4u * tr_;
  var dka: array<f32, ${4 * OE}>;
  var dva: array<f32, ${4 * OV}>;
  if (u_c_first() == 0u) {
    ${per((m) => `if (jb + ${m}u < LK) {
        ${cols(OE, (o) => `if (tc_ + ${TC * o}u < ${hd.e}) { dka[${m * OE + o}] = load_dk(dk_idx(b, hk, jb + ${m}u, tc_ + ${TC * o}u)); }`)}
        ${cols(OV, (o) => `if (tc_ + ${TC * o}u < ${hd.ev}) { dva[${m * OV + o}] = load_dv(dv_idx(b, hk, jb + ${m}u, tc_ + ${TC * o}u)); }`)}
      }`)}
  }
  let sc_ = ${half ? 'u_scale()' : '1.0'};
  ${pf ? `${qPf.decl}
  ${doPf.decl}` : ''}
  for (var g = u_g_begin(); g < u_g_stop(); g = g + 1u) {
    let h = hk * u_group() + g;
    ${pf ? 'var pre_i = 0xffffffffu;' : ''}
    ${blockLoop(p, 'q', BQ, `
      workgroupBarrier();
      ${pf ? `// this tile's Qᵀ and dOᵀ: prefetched into registers during the previous tile unless a new range starts here
      if (pre_i != i0) {
        ${qPf.load('i0')}
        ${doPf.load('i0')}
      }
      ${qPf.store}
      ${doPf.store}` : `${stageColumns('fq_', TC, EC, QS, ST, (r, e) => `i0 + ${r} < i_lim && ${e} < ${hd.e}`, qLoad)}
      ${stageColumns('fdo_', TC, EVC, QS, ST, (r, e) => `i0 + ${r} < i_lim && ${e} < ${hd.ev}`, (r, e) => `load_dout(do_at(b, h, i0 + ${r}, ${e}))`)}`}
      workgroupBarrier();
      ${pf ? `// the next query tile of this head, read from storage while this one is multiplied
      if (i0 + ${BQ}u < i_lim) {
        ${qPf.load(`(i0 + ${BQ}u)`)}
        ${doPf.load(`(i0 + ${BQ}u)`)}
        pre_i = i0 + ${BQ}u;
      }` : ''}
      ${blockProduct('s', hd.e, wide(`fk_[kk * ${TR}u + tr_]`), wide(`fq_[kk * ${QS}u + tc_]`))}
      ${blockProduct('dp', hd.ev, wide(`fv_[kk * ${TR}u + tr_]`), wide(`fdo_[kk * ${QS}u + tc_]`))}
      ${pairPass(p, BQ, dsMode)}
      ${turns ? `// P and dS take turns in fp_: dV += Pᵀ·dO, then dK += dSᵀ·Q
      ${per((m) => `fp_[(4u * tr_ + ${m}u) * ${TC}u + tc_] = s${m};`)}
      workgroupBarrier();
      for (var c4 = 0u; c4 < nq4; c4 = c4 + 1u) {
        ${per((m) => `let p${m} = fp_[(4u * tr_ + ${m}u) * ${TC}u + c4];`, '\n        ')}
        ${dvStep}
      }
      workgroupBarrier();
      ${per((m) => `fp_[(4u * tr_ + ${m}u) * ${TC}u + tc_] = dp${m} * sc_;`)}
      workgroupBarrier();
      for (var c4 = 0u; c4 < nq4; c4 = c4 + 1u) {
        ${per((m) => `let d${m} = fp_[(4u * tr_ + ${m}u) * ${TC}u + c4];`, '\n        ')}
        ${dkStep}
      }` : `${per((m) => `fp_[(4u * tr_ + ${m}u) * ${TC}u + tc_] = s${m};\n      fds_[(4u * tr_ + ${m}u) * ${TC}u + tc_] = dp${m} * sc_;`)}
      workgroupBarrier();
      for (var c4 = 0u; c4 < nq4; c4 = c4 + 1u) {
        ${per((m) => `let p${m} = fp_[(4u * tr_ + ${m}u) * ${TC}u + c4];\n        let d${m} = fds_[(4u * tr_ + ${m}u) * ${TC}u + c4];`, '\n        ')}
        ${dkStep}
        ${dvStep}
      }`}
`)}
  }
  ${per((m) => `if (jb + ${m}u < LK) {
      ${cols(OE, (o) => `if (tc_ + ${TC * o}u < ${hd.e}) { store_dk(dk_idx(b, hk, jb + ${m}u, tc_ + ${TC * o}u), dka[${m * OE + o}]); }`)}
      ${cols(OV, (o) => `if (tc_ + ${TC * o}u < ${hd.ev}) { store_dv(dv_idx(b, hk, jb + ${m}u, tc_ + ${TC * o}u), dva[${m * OV + o}]); }`)}
    }`, '\n  ')}`;
  const td = tileDispatch(p, 'k', BK, d.Hkv);
  const total = nk + nv;
  checkWorkBuffer(total, device, 'flash attention backward (dK/dV)');
  const buf = empty([total], 'float32', device);
  const spec: ProgramSpec = {
    name: 'flash_attention_backward_dkv_registers',
    key: cacheKey(p, `r${TR}x${TC}${half ? 'h' : ''}${pf ? 'pf' : ''}${turns ? 't' : ''}${ds ? 'ds' : ''}`),
    bindings: [...gradBindings(p, g), { name: 'dk', dtype: 'float32', access: 'read_write' }, ...(ds ? [{ name: 'dsc', dtype: 'float32' as const, access: 'read_write' as const, vec4: dsMode === 'vec4' }] : []), ...td.bindings],
    uniforms: [...gradUniforms(p), ['dv_at', 'u32']],
    workgroupSize: [WG],
    helpers: `var<workgroup> fk_: array<vec4<${ST}>, ${EC * TR}>;
var<workgroup> fv_: array<vec4<${ST}>, ${EVC * TR}>;
var<workgroup> fq_: array<vec4<${ST}>, ${EC * QS}>;
var<workgroup> fdo_: array<vec4<${ST}>, ${EVC * QS}>;
var<workgroup> fp_: array<vec4<f32>, ${BK * TC}>;
${dkvTail(p, turns, BK * TC)}`,
    body,
  };
  // loop iterations per query of one invocation: staging Qᵀ and dOᵀ, the two dot loops, the dK/dV loop
  const cost = (((EC + EVC) * TC) / WG + d.E + d.Ev + TC + 8) / BQ;
  const all: [number, number, number, number][] = [];
  if (!Number.isFinite(device.maxLoopIterations) || d.G * d.Lq * cost <= device.maxLoopIterations * 0.6) all.push([0, d.Lq, 0, d.G]);
  else for (let gi = 0; gi < d.G; gi++) for (const [c0, c1] of passes(d.Lq, BQ, device.maxLoopIterations, cost)) all.push([c0, c1, gi, gi + 1]);
  const values = gradValues(p, g);
  all.forEach(([c0, c1, g0, g1], n) =>
    run(spec, [...gradTensors(p, g), buf, ...(ds ? [ds] : []), ...td.tensors], { ...values, ...chunkValues(c0, c1, n, all.length, g0, g1), dv_at: nk }, td.grid),
  );
  td.dispose();
  return { dk: buf.slice(0, 0, nk).reshape(kShape), dv: buf.slice(0, nk, nk + nv).reshape(vShape) };
}


/**
 * The head-dim-chunked register dK/dV kernel (f32 head dims of 128 and more): the thread grid and per-pair work of
 * {@link backwardDkvRegisters}, with every operand staged `ch` head-dim columns at a time into two small buffers: per
 * query tile, Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ accumulate chunk by chunk (Kᵀ with Qᵀ, then Vᵀ with dOᵀ, in the forward's fma
 * order), P and dS go to workgroup memory once, and dV += Pᵀ·dO and dK += dSᵀ·Q run chunk by chunk of dO and Q
 * (each thread's accumulator columns of a chunk are static). K and V are re-read from storage per query tile, Q and
 * dO twice: that traffic buys 64-key workgroups where whole tiles fit only 16 keys (or none at 48 KiB). With
 * `grid.prefetch` (the hardware default) each chunk step's operands are read into registers during the step before
 * (the next query tile's first chunk during the last step), so the storage latency hides behind the products, and
 * the Kᵀ / Vᵀ chunk rows are one vec4 longer (its transposed stores hit 8 banks alike otherwise).
 */
function backwardDkvChunked(p: FlashParams, g: FlashGradInputs, grid: BackwardGrid, half: boolean, ds: Tensor | null): { dk: Tensor; dv: Tensor } {
  const { d, EC, EVC, WG, hd, ST, wide, qLoad: qAt } = registerBackwardBasics(p, grid, half);
  const device = p.q.device as WebGPUDevice;
  const kShape = p.varlen ? [d.TK, d.Hkv, d.E] : [d.B, d.Hkv, d.Lkv, d.E];
  const vShape = p.varlen ? [d.TK, d.Hkv, d.Ev] : [d.B, d.Hkv, d.Lkv, d.Ev];
  const nk = kShape.reduce((a, x) => a * x, 1);
  const nv = vShape.reduce((a, x) => a * x, 1);
  const { tr: TR, tc: TC } = grid;
  const CH = grid.ch!;
  const BK = 4 * TR;
  const BQ = 4 * TC;
  const QS = TC + 1; // padded column stride of the Qᵀ / dOᵀ chunk: the dK/dV products read it across columns
  const OE = EC / TC;
  const OV = EVC / TC;
  const OC = CH / TC; // accumulator columns per thread in one chunk
  const R = [0, 1, 2, 3];
  const L = VEC_LANES;
  const per = (f: (m: number) => string, sep = '\n      ') => R.map(f).join(sep);
  const turns = !!grid.turns;
  const dsMode = ds ? (scoresVec4(d.Lkv) ? 'vec4' : 'scalar') : null;
  const qRow = qAt('i0');
  // chunk from column e0 (a WGSL expression) of K or V (rows k0.., into fa_) and of Q or dO (rows i0.., into fb_)
  const stageKv = (src: 'k' | 'v', e0: string) =>
    stageColumns('fa_', TR, CH, TR, ST, (r, e) => `k0 + ${r} < LK && ${e0} + ${e} < ${src === 'k' ? hd.e : hd.ev}`, (r, e) => `load_${src}(${src}_at(b, hk, k0 + ${r}, ${e0} + ${e}))`);
  const stageQdo = (src: 'q' | 'do', e0: string) =>
    stageColumns('fb_', TC, CH, QS, ST, (r, e) => `i0 + ${r} < i_lim && ${e0} + ${e} < ${src === 'q' ? hd.e : hd.ev}`, (r, e) =>
      src === 'q' ? qRow(r, `${e0} + ${e}`) : `load_dout(do_at(b, h, i0 + ${r}, ${e0} + ${e}))`);
  // skipping (tailSkip): a thread whose 4 keys are past LK (kl_ false), or whose 4 queries are past the tile's rows too
  // (live_), leaves out its products (no barrier inside them): in a partial last tile whole warps go idle, e.g. 7 of 8
  // at L = 196 with 64 keys per workgroup; the skipped values are never used (P, dS = 0 out of range)
  const skip = tailSkip();
  const live = skip ? 'live_' : 'true';
  const liveK = skip ? 'kl_' : 'true';
  const liveDecl = skip ? 'let live_ = kl_ && i0 + 4u * tc_ < i_lim;' : '';
  // Sᵀ (or dPᵀ) of the thread's 4 keys × 4 queries, accumulated over the head-dim chunks
  const scores = (acc: string, bound: string, a: 'k' | 'v', b: 'q' | 'do') => `${per((m) => `var ${acc}${m} = vec4<f32>(0.0);`, ' ')}
      for (var e0 = 0u; e0 < ${bound}; e0 = e0 + ${CH}u) {
        workgroupBarrier();
        ${stageKv(a, 'e0')}
        ${stageQdo(b, 'e0')}
        workgroupBarrier();
        for (var kk = 0u; kk < select(0u, min(${CH}u, ${bound} - e0), ${live}); kk = kk + 1u) {
          let c_ = ${wide(`fa_[kk * ${TR}u + tr_]`)};
          let r_ = ${wide(`fb_[kk * ${QS}u + tc_]`)};
          ${L.map((l, m) => `${acc}${m} = fma(vec4<f32>(c_.${l}), r_, ${acc}${m});`).join('\n          ')}
        }
      }`;
  // acc += (4 keys of buf)ᵀ · (Q or dO chunk) chunk by chunk; chunks past the head dim are skipped (uniform branch)
  const accumulate = (acc: 'dka' | 'dva', O: number, classDim: number, bound: string, buf: string, src: 'q' | 'do', lead: boolean) =>
    Array.from({ length: classDim / CH }, (_, c) => `if (${c * CH}u < ${bound}) {
        ${c > 0 || lead ? 'workgroupBarrier();' : ''}
        ${stageQdo(src, `${c * CH}u`)}
        workgroupBarrier();
        for (var c4 = 0u; c4 < select(0u, nq4, ${liveK}); c4 = c4 + 1u) {
          ${per((m) => `let a${m} = ${buf}[(4u * tr_ + ${m}u) * ${TC}u + c4];`, '\n          ')}
          ${Array.from({ length: OC }, (_, o) => `{
            let x4 = ${wide(`fb_[(tc_ + ${TC * o}u) * ${QS}u + c4]`)};
            ${per((m) => `${acc}[${m * O + c * OC + o}] = ${acc}[${m * O + c * OC + o}] + dot(a${m}, x4);`, '\n            ')}
          }`).join('\n          ')}
        }
      }`).join('\n      ');
  const pf = !!grid.prefetch;
  const FS = TR + (pf ? 1 : 0); // row stride (vec4) of the Kᵀ / Vᵀ chunk: padded where prefetching
  // the pair pass after the last dP chunk: P and dS in the thread's s/dp registers, dS·scale out (scores backward), nq4
  const pairs = pairPass(p, BQ, dsMode);
  // prefetching: the tile is a static list of chunk steps (Kᵀ+Qᵀ for S, Vᵀ+dOᵀ for dP, dOᵀ for dV, Qᵀ for dK), each
  // storing the registers loaded during the step before and loading the next step's (the next tile's first step
  // during the last); chunks past the head dim stage zeros and skip their products (uniform branches)
  const regA = (src: 'k' | 'v', c: number) =>
    prefetchColumns('ra_', 'fa_', TR, CH, FS, WG, ST, (r, e) => `${r} < LK && ${c * CH}u + ${e} < ${src === 'k' ? hd.e : hd.ev}`, (r, e) => `load_${src}(${src}_at(b, hk, ${r}, ${c * CH}u + ${e}))`);
  const qAbs = qAt('0u');
  const regB = (src: 'q' | 'do', c: number) =>
    prefetchColumns('rb_', 'fb_', TC, CH, QS, WG, ST, (r, e) => `${r} < i_lim && ${c * CH}u + ${e} < ${src === 'q' ? hd.e : hd.ev}`, (r, e) =>
      src === 'q' ? qAbs(r, `${c * CH}u + ${e}`) : `load_dout(do_at(b, h, ${r}, ${c * CH}u + ${e}))`);
  // keep: the step reads the dOᵀ chunk the step before staged in fb_ (nothing staged or loaded: one barrier)
  type Step = { a?: 'k' | 'v'; b: 'q' | 'do'; c: number; compute: string; pre?: string; post?: string; keep?: boolean };
  const dotStep = (acc: string, bound: string, c: number) => `if (${c * CH}u < ${bound}${skip ? ' && live_' : ''}) {
        for (var kk = 0u; kk < min(${CH}u, ${bound} - ${c * CH}u); kk = kk + 1u) {
          let c_ = ${wide(`fa_[kk * ${FS}u + tr_]`)};
          let r_ = ${wide(`fb_[kk * ${QS}u + tc_]`)};
          ${L.map((l, m) => `${acc}${m} = fma(vec4<f32>(c_.${l}), r_, ${acc}${m});`).join('\n          ')}
        }
      }`;
  const accStep = (acc: 'dka' | 'dva', O: number, bound: string, buf: string, c: number) => `if (${c * CH}u < ${bound}${skip ? ' && kl_' : ''}) {
        for (var c4 = 0u; c4 < nq4; c4 = c4 + 1u) {
          ${per((m) => `let a${m} = ${buf}[(4u * tr_ + ${m}u) * ${TC}u + c4];`, '\n          ')}
          ${Array.from({ length: OC }, (_, o) => `{
            let x4 = ${wide(`fb_[(tc_ + ${TC * o}u) * ${QS}u + c4]`)};
            ${per((m) => `${acc}[${m * O + c * OC + o}] = ${acc}[${m * O + c * OC + o}] + dot(a${m}, x4);`, '\n            ')}
          }`).join('\n          ')}
        }
      }`;
  const nE = EC / CH;
  const nV = EVC / CH;
  const reuse = dvReuse();
  const writeP = turns
    ? per((m) => `fp_[(4u * tr_ + ${m}u) * ${TC}u + tc_] = s${m};`)
    : per((m) => `fp_[(4u * tr_ + ${m}u) * ${TC}u + tc_] = s${m};\n      fds_[(4u * tr_ + ${m}u) * ${TC}u + tc_] = dp${m} * sc_;`);
  const steps: Step[] = [
    ...Array.from({ length: nE }, (_, c): Step => ({ a: 'k', b: 'q', c, compute: dotStep('s', hd.e, c) })),
    ...Array.from({ length: nV }, (_, c): Step => ({ a: 'v', b: 'do', c, compute: dotStep('dp', hd.ev, c), post: c === nV - 1 ? `${pairs}\n      ${writeP}` : '' })),
    // dV chunk by chunk, the last first where `reuse`: its dOᵀ chunk is still in fb_ from the last dP step (each chunk
    // owns its accumulators: the order changes no sum)
    ...Array.from({ length: nV }, (_, n): Step => {
      const c = reuse ? (n + nV - 1) % nV : n;
      return { b: 'do', c, compute: accStep('dva', OV, hd.ev, 'fp_', c), keep: reuse && n === 0 };
    }),
    ...Array.from({ length: nE }, (_, c): Step => ({
      b: 'q', c, compute: accStep('dka', OE, hd.e, turns ? 'fp_' : 'fds_', c),
      // by turns, dS replaces P once every thread is past the dV products (the barrier above)
      pre: turns && c === 0 ? per((m) => `fp_[(4u * tr_ + ${m}u) * ${TC}u + tc_] = dp${m} * sc_;`) : '',
    })),
  ];
  const loadStep = (st: Step, base: string) => (st.keep ? '' : `${st.a ? regA(st.a, st.c).load('k0') : ''}
      ${regB(st.b, st.c).load(base)}`);
  const pfTile = `${liveDecl}
      ${per((m) => `var s${m} = vec4<f32>(0.0);`, ' ')}
      ${per((m) => `var dp${m} = vec4<f32>(0.0);`, ' ')}
      if (pre_i != i0) {
        ${loadStep(steps[0]!, 'i0')}
      }
      ${steps.map((st, n) => `// step ${n}: ${st.a ? `${st.a.toUpperCase()}ᵀ and ` : ''}${st.b === 'q' ? 'Qᵀ' : 'dOᵀ'} chunk ${st.c}${st.keep ? ' (kept in fb_)' : ''}
      ${st.keep ? '' : `workgroupBarrier();
      ${st.pre ?? ''}
      ${st.a ? regA(st.a, st.c).store : ''}
      ${regB(st.b, st.c).store}`}
      workgroupBarrier();
      ${n + 1 < steps.length ? loadStep(steps[n + 1]!, 'i0') : `if (i0 + ${BQ}u < i_lim) {
        ${loadStep(steps[0]!, `(i0 + ${BQ}u)`)}
        pre_i = i0 + ${BQ}u;
      }`}
      ${st.compute}
      ${st.post ?? ''}`).join('\n      ')}`;
  const body = `
  ${tileOrigin(p, 'k', BK)}
  let tc_ = lidx % ${TC}u;
  let tr_ = lidx / ${TC}u;
${qRange(p, BK)}
  let jb = k0 + 4u * tr_;
  ${skip ? 'let kl_ = jb < LK;' : ''}
  var dka: array<f32, ${4 * OE}>;
  var dva: array<f32, ${4 * OV}>;
  if (u_c_first() == 0u) {
    ${per((m) => `if (jb + ${m}u < LK) {
        ${Array.from({ length: OE }, (_, o) => `if (tc_ + ${TC * o}u < ${hd.e}) { dka[${m * OE + o}] = load_dk(dk_idx(b, hk, jb + ${m}u, tc_ + ${TC * o}u)); }`).join('\n        ')}
        ${Array.from({ length: OV }, (_, o) => `if (tc_ + ${TC * o}u < ${hd.ev}) { dva[${m * OV + o}] = load_dv(dv_idx(b, hk, jb + ${m}u, tc_ + ${TC * o}u)); }`).join('\n        ')}
      }`)}
  }
  let sc_ = ${half ? 'u_scale()' : '1.0'};
  ${pf ? `${regA('k', 0).decl}
  ${regB('q', 0).decl}` : ''}
  for (var g = u_g_begin(); g < u_g_stop(); g = g + 1u) {
    let h = hk * u_group() + g;
    ${pf ? `var pre_i = 0xffffffffu;
    ${blockLoop(p, 'q', BQ, pfTile)}` : blockLoop(p, 'q', BQ, `
      ${liveDecl}
      ${scores('s', hd.e, 'k', 'q')}
      ${scores('dp', hd.ev, 'v', 'do')}
      ${pairPass(p, BQ, dsMode)}
      ${turns ? `// P and dS take turns in fp_: dV += Pᵀ·dO, then dK += dSᵀ·Q
      ${per((m) => `fp_[(4u * tr_ + ${m}u) * ${TC}u + tc_] = s${m};`)}
      workgroupBarrier();
      ${accumulate('dva', OV, EVC, hd.ev, 'fp_', 'do', false)}
      workgroupBarrier();
      ${per((m) => `fp_[(4u * tr_ + ${m}u) * ${TC}u + tc_] = dp${m} * sc_;`)}
      ${accumulate('dka', OE, EC, hd.e, 'fp_', 'q', false)}` : `${per((m) => `fp_[(4u * tr_ + ${m}u) * ${TC}u + tc_] = s${m};\n      fds_[(4u * tr_ + ${m}u) * ${TC}u + tc_] = dp${m} * sc_;`)}
      workgroupBarrier();
      ${accumulate('dva', OV, EVC, hd.ev, 'fp_', 'do', false)}
      ${accumulate('dka', OE, EC, hd.e, 'fds_', 'q', true)}`}
`)}
  }
  ${per((m) => `if (jb + ${m}u < LK) {
      ${Array.from({ length: OE }, (_, o) => `if (tc_ + ${TC * o}u < ${hd.e}) { store_dk(dk_idx(b, hk, jb + ${m}u, tc_ + ${TC * o}u), dka[${m * OE + o}]); }`).join('\n      ')}
      ${Array.from({ length: OV }, (_, o) => `if (tc_ + ${TC * o}u < ${hd.ev}) { store_dv(dv_idx(b, hk, jb + ${m}u, tc_ + ${TC * o}u), dva[${m * OV + o}]); }`).join('\n      ')}
    }`, '\n  ')}`;
  const td = tileDispatch(p, 'k', BK, d.Hkv);
  const total = nk + nv;
  checkWorkBuffer(total, device, 'flash attention backward (dK/dV)');
  const buf = empty([total], 'float32', device);
  const spec: ProgramSpec = {
    name: 'flash_attention_backward_dkv_registers',
    key: cacheKey(p, `r${TR}x${TC}c${CH}${half ? 'h' : ''}${pf ? 'pf' : ''}${turns ? 't' : ''}${ds ? 'ds' : ''}${skip ? 'k' : ''}${pf && reuse ? 'r' : ''}`),
    bindings: [...gradBindings(p, g), { name: 'dk', dtype: 'float32', access: 'read_write' }, ...(ds ? [{ name: 'dsc', dtype: 'float32' as const, access: 'read_write' as const, vec4: dsMode === 'vec4' }] : []), ...td.bindings],
    uniforms: [...gradUniforms(p), ['dv_at', 'u32']],
    workgroupSize: [WG],
    helpers: `var<workgroup> fa_: array<vec4<${ST}>, ${CH * FS}>;
var<workgroup> fb_: array<vec4<${ST}>, ${CH * QS}>;
var<workgroup> fp_: array<vec4<f32>, ${BK * TC}>;
${dkvTail(p, turns, BK * TC)}`,
    body,
  };
  // loop iterations per query of one invocation: the chunk stagings and dot loops of S and dP, the dK/dV chunk loops
  const cost = ((EC + EVC) * ((TR + 2 * TC) / WG + 1 + TC / CH) + 8) / BQ;
  const all: [number, number, number, number][] = [];
  if (!Number.isFinite(device.maxLoopIterations) || d.G * d.Lq * cost <= device.maxLoopIterations * 0.6) all.push([0, d.Lq, 0, d.G]);
  else for (let gi = 0; gi < d.G; gi++) for (const [c0, c1] of passes(d.Lq, BQ, device.maxLoopIterations, cost)) all.push([c0, c1, gi, gi + 1]);
  const values = gradValues(p, g);
  all.forEach(([c0, c1, g0, g1], n) =>
    run(spec, [...gradTensors(p, g), buf, ...(ds ? [ds] : []), ...td.tensors], { ...values, ...chunkValues(c0, c1, n, all.length, g0, g1), dv_at: nk }, td.grid),
  );
  td.dispose();
  return { dk: buf.slice(0, 0, nk).reshape(kShape), dv: buf.slice(0, nk, nk + nv).reshape(vShape) };
}
