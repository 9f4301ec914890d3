/**
 * The forward kernel: one workgroup per block of query rows. Q (pre-scaled) is staged once; per key
 * tile, K is staged and S = Q·Kᵀ is computed as a register-blocked tile product (each thread owns a
 * small sub-tile of S and of the output), the row maxima and sums of the online softmax go through
 * workgroup memory, V replaces K in the same buffer and O += P·V is a second tile product. Writes the
 * output and the natural-log lse (−∞ for fully masked rows, whose output is 0); NaN inputs propagate
 * to the rows they reach, as in PyTorch.
 */
import { empty, type Tensor } from '@webattn/core-tensor';
import type { WebGPUDevice } from '../device/webgpu-device.js';
import { run, type ProgramSpec } from '../wgsl.js';
import {
  cacheKey, checkGrid, chunkValues, commonUniforms, commonValues, dimClass, dims, headDims, inputBindings, inputTensors, passes, pickTile, storageStaging,
  type FlashParams, type Tile,
} from './plan.js';
import { blockIndex, blockLoop, checkWorkBuffer, kvRange, lanes, product, scoreHelpers, stage, staging, unroll } from './shared.js';
import { tileDispatch, tileMapWgsl, tileOrigin } from './tile-map.js';

/** Workgroup memory of the forward tile (bytes): Q, one K-or-V tile, S/P and four per-row state arrays. */
function forwardBytes(t: Tile, EC: number, EVC: number): number {
  return 4 * (t.rows * (EC + 1) + t.cols * Math.max(EC + 1, EVC) + t.rows * t.cols + 4 * t.rows);
}

/** Forward: returns output `[B, Hq, Lq, Ev]` (contiguous) and lse `[B, Hq, Lq]` (float32, natural log). */
export function flashForward(p: FlashParams): {
  /** The attention output. */
  out: Tensor;
  /** Natural-log log-sum-exp per query row (−∞ when fully masked, NaN when a score of the row is NaN). */
  lse: Tensor;
} {
  const d = dims(p);
  const device = p.q.device as WebGPUDevice;
  const out = empty(p.varlen ? [d.TQ, d.Hq, d.Ev] : [d.B, d.Hq, d.Lq, d.Ev], p.q.dtype, device);
  const lse = empty(p.varlen ? [d.Hq, d.TQ] : [d.B, d.Hq, d.Lq], 'float32', device);
  if (d.B * d.Hq * d.Lq === 0 || out.size === 0) return { out, lse };
  checkGrid(device, p.varlen ? d.Hq : d.B * d.Hq, 'query');
  const EC = dimClass(d.E);
  const EVC = dimClass(d.Ev);
  const t = pickTile(device, (c) => forwardBytes(c, EC, EVC), 'flash attention forward', false, (c) => ((c.rows / c.tr) * (c.cols + EVC)) / c.tc, !!p.hooks);
  const { rows: BR, cols: BC, tr: TR, tc: TC } = t;
  const RM = BR / TR;
  const RN = BC / TC;
  const OE = EVC / TC;
  const QST = EC + 1;
  const KST = EC + 1;
  const VST = EVC;
  const hd = headDims(p);
  const { row, col } = blockIndex(t);
  const st = staging(storageStaging(device), [
    { name: 'qs', len: BR * QST },
    { name: 'kvs', len: BC * Math.max(KST, VST) },
    { name: 'ps', len: BC * BR },
  ], 'work', 'u_scr_at()');
  const [qs, kvs, ps] = st.refs('qs', 'kvs', 'ps');
  // The tile products are unrolled over each thread's register block; everything per score (masks,
  // score functions, the online softmax, NaN detection) runs ONCE per kernel in a plain loop where each
  // thread owns whole query rows of the S tile in workgroup memory. Unrolling the per-score code over
  // the register block made SwiftShader's compiler take minutes and repeated every hook RM×RN times.
  const body = `
  ${tileOrigin(p, 'q', BR)}
  ${st.prologue}
  ${lanes(t)}
${kvRange(p, BR)}
  ${stage(st, 'qs', BR, EC, QST, (r, c) => `q0 + ${r} < LQ && ${c} < ${hd.e}`, (r, c) => `load_q(q_at(b, h, q0 + ${r}, ${c})) * u_scale()`)}
  // per-row online-softmax state, owned by thread r % WG_SIZE: running max, sum, rescale, NaN flag
  for (var r = lidx; r < ${BR}u; r = r + WG_SIZE) {
    var m0 = neg_inf();
    var l0 = 0.0;
    var f0 = 0u;
    if (u_c_first() == 0u && q0 + r < LQ) {
      let row = lse_idx(b, h, q0 + r);
      m0 = load_mlb(row * 3u);
      l0 = load_mlb(row * 3u + 1u);
      f0 = u32(load_mlb(row * 3u + 2u) != 0.0);
    }
    m_s[r] = m0;
    l_s[r] = l0;
    f_s[r] = f0;
  }
  var acc: array<f32, ${RM * OE}>;
  if (u_c_first() == 0u) {
    // continue the accumulators of the previous pass over keys
    ${unroll(RM, 1, (m) => `if (q0 + ${row(m)} < LQ) {
      let row = lse_idx(b, h, q0 + ${row(m)});
      ${unroll(1, OE, (_, n) => `if (${col(n)} < ${hd.ev}) { acc[${m * OE + n}] = load_accb(row * u_ev() + ${col(n)}); }`)}
    }`)}
  }
  var s: array<f32, ${RM * RN}>;
  ${blockLoop(p, 'kv', BC, `
    ${st.barrier}
    ${stage(st, 'kvs', BC, EC, KST, (r, c) => `j0 + ${r} < j_hi && ${c} < ${hd.e}`, (r, c) => `load_k(k_at(b, hk, j0 + ${r}, ${c}))`)}
    ${st.barrier}
    ${unroll(RM, RN, (m, n) => `s[${m * RN + n}] = 0.0;`)}
    ${product('s', RM, RN, hd.e, (m) => qs(`(${row(m)}) * ${QST}u + kk`), (n) => kvs(`(${col(n)}) * ${KST}u + kk`))}
    ${unroll(RM, RN, (m, n) => `${ps(`(${col(n)}) * ${BR}u + ${row(m)}`)} = s[${m * RN + n}];`)}
    ${st.barrier}
    ${stage(st, 'kvs', BC, EVC, VST, (r, c) => `j0 + ${r} < j_hi && ${c} < ${hd.ev}`, (r, c) => `load_v(v_at(b, hk, j0 + ${r}, ${c}))`)}
    let ncol = min(${BC}u, j_hi - j0);
    for (var r = lidx; r < ${BR}u; r = r + WG_SIZE) {
      let i = q0 + r;
      let m_old = m_s[r];
      var mx = m_old;
      var bad = f_s[r];
      for (var c = 0u; c < ncol; c = c + 1u) {
        var x = neg_inf();
        if (i < LQ) { x = finish_score(${ps(`c * ${BR}u + r`)}, b, h, i, j0 + c, !full_blk); }
        // NaN found by its bits (drivers fold x != x and max() may drop NaN): the row's output becomes NaN
        if (is_nan_f32(x)) { bad = 1u; x = neg_inf(); }
        if (x > mx) { mx = x; }
        ${ps(`c * ${BR}u + r`)} = x;
      }
      // a row that saw only -inf so far keeps zero state (fully masked rows give 0, as PyTorch flash)
      let live = mx != neg_inf();
      var rs = 0.0;
      for (var c = 0u; c < ncol; c = c + 1u) {
        let pr = select(0.0, exp(${ps(`c * ${BR}u + r`)} - mx), live);
        ${ps(`c * ${BR}u + r`)} = pr;
        rs = rs + pr;
      }
      let alpha = select(1.0, exp(m_old - mx), live);
      a_s[r] = alpha;
      m_s[r] = mx;
      l_s[r] = l_s[r] * alpha + rs;
      f_s[r] = bad;
    }
    ${st.barrier}
    ${unroll(RM, 1, (m) => `{ let al = a_s[${row(m)}]; ${unroll(1, OE, (_, n) => `acc[${m * OE + n}] = acc[${m * OE + n}] * al;`)} }`)}
    ${product('acc', RM, OE, 'ncol', (m) => ps(`kk * ${BR}u + ${row(m)}`), (n) => kvs(`kk * ${VST}u + ${col(n)}`))}
`)}
  workgroupBarrier();
  ${unroll(RM, 1, (m) => `{
    let i = q0 + ${row(m)};
    if (i < LQ) {
      let row = lse_idx(b, h, i);
      let l = l_s[${row(m)}];
      let bad = f_s[${row(m)}] != 0u;
      if (u_c_last() != 0u) {
        let inv = select(1.0 / l, 0.0, l == 0.0);
        ${unroll(1, OE, (_, n) => `if (${col(n)} < ${hd.ev}) { store_out(o_idx(b, h, i, ${col(n)}), select(acc[${m * OE + n}] * inv, flash_nan(), bad)); }`)}
        if (tc_ == 0u) { store_lse(row, select(select(m_s[${row(m)}] + log(l), neg_inf(), l == 0.0), flash_nan(), bad)); }
      } else {
        ${unroll(1, OE, (_, n) => `if (${col(n)} < ${hd.ev}) { store_accb(row * u_ev() + ${col(n)}, acc[${m * OE + n}]); }`)}
        if (tc_ == 0u) { store_mlb(row * 3u, m_s[${row(m)}]); store_mlb(row * 3u + 1u, l); store_mlb(row * 3u + 2u, select(0.0, 1.0, bad)); }
      }
    }
  }`)}`;
  const helpers = `${st.decl}
fn load_accb(i: u32) -> f32 { return work[i]; }
fn store_accb(i: u32, x: f32) { work[i] = x; }
fn load_mlb(i: u32) -> f32 { return work[u_mlb_at() + i]; }
fn store_mlb(i: u32, x: f32) { work[u_mlb_at() + i] = x; }
var<workgroup> m_s: array<f32, ${BR}>;
var<workgroup> l_s: array<f32, ${BR}>;
var<workgroup> a_s: array<f32, ${BR}>;
var<workgroup> f_s: array<u32, ${BR}>;
${scoreHelpers(p)}
${tileMapWgsl(p, 'q')}`;
  // loop iterations per key of one invocation: staging K and V, the dot loop, the row loops, the P·V loop
  const WG = TR * TC;
  const costPerKey = ((BC * (EC + EVC)) / WG + d.E + BC + (2 * BC * BR) / WG + 8) / BC;
  const chunks = passes(d.Lkv, BC, device.maxLoopIterations, costPerKey);
  const multi = chunks.length > 1;
  const rowsTotal = p.varlen ? d.TQ * d.Hq : d.B * d.Hq * d.Lq;
  const td = tileDispatch(p, 'q', BR, d.Hq);
  const grid = td.grid;
  // one work buffer: the running accumulators and (m, l, NaN flag) between passes, then the scratch
  const accN = multi ? rowsTotal * d.Ev : 0;
  const mlN = multi ? rowsTotal * 3 : 0;
  const workN = Math.max(1, accN + mlN + st.perWorkgroup * grid[0] * grid[1] * grid[2]);
  checkWorkBuffer(workN, device, 'flash attention forward');
  const work = empty([workN], 'float32', device);
  const spec: ProgramSpec = {
    name: 'flash_attention_forward',
    key: cacheKey(p, `t${BR}x${BC}x${TR}x${TC}${st.perWorkgroup ? 's' : ''}`),
    bindings: [
      ...inputBindings(p),
      { name: 'out', dtype: out.dtype, access: 'read_write' },
      { name: 'lse', dtype: 'float32', access: 'read_write' },
      { name: 'work', dtype: 'float32', access: 'read_write' },
      ...td.bindings,
    ],
    uniforms: [...commonUniforms(p), ['mlb_at', 'u32'], ['scr_at', 'u32']],
    workgroupSize: [WG],
    helpers,
    body,
  };
  chunks.forEach(([c0, c1], n) =>
    run(spec, [...inputTensors(p), out, lse, work, ...td.tensors], { ...commonValues(p), ...chunkValues(c0, c1, n, chunks.length), mlb_at: accN, scr_at: accN + mlN }, grid),
  );
  td.dispose();
  work.dispose();
  return { out, lse };
}
