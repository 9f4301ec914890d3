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
  cacheKey, checkGrid, chunkValues, commonUniforms, commonValues, dimClass, dims, headDims, inputBindings, inputTensors, passes, pickTile,
  type FlashParams, type Tile,
} from './plan.js';
import { blockLoop, kvRange, lanes, product, scoreHelpers, stage, unroll } from './shared.js';
import { tileDispatch, tileMapWgsl, tileOrigin } from './tile-map.js';

/** Workgroup memory of the forward tile (bytes): Q, one K-or-V tile, P and two row-partial buffers. */
function forwardBytes(t: Tile, EC: number, EVC: number): number {
  return 4 * (t.rows * (EC + 1) + t.cols * Math.max(EC + 1, EVC) + t.rows * t.cols + 2 * t.rows * t.tc);
}

/** Forward: returns output `[B, Hq, Lq, Ev]` (contiguous) and lse `[B, Hq, Lq]` (float32, natural log). */
export function flashForward(p: FlashParams): {
  /** The attention output. */
  out: Tensor;
  /** Natural-log log-sum-exp per query row (−∞ when fully masked). */
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
  const t = pickTile(device, (c) => forwardBytes(c, EC, EVC), 'flash attention forward', false, (c) => ((c.rows / c.tr) * (c.cols + EVC)) / c.tc);
  const { rows: BR, cols: BC, tr: TR, tc: TC } = t;
  const RM = BR / TR;
  const RN = BC / TC;
  const OE = EVC / TC;
  const QST = EC + 1;
  const KST = EC + 1;
  const VST = EVC;
  const hd = headDims(p);
  const row = (m: number) => `tr_ + ${TR * m}u`;
  const col = (n: number) => `tc_ + ${TC * n}u`;
  const body = `
  ${tileOrigin(p, 'q', BR)}
  ${lanes(t)}
${kvRange(p, BR)}
  ${stage('qs', BR, EC, QST, (r, c) => `q0 + ${r} < LQ && ${c} < ${hd.e}`, (r, c) => `load_q(q_at(b, h, q0 + ${r}, ${c})) * u_scale()`)}
  var acc: array<f32, ${RM * OE}>;
  var m_run: array<f32, ${RM}>;
  var l_run: array<f32, ${RM}>;
  var alpha: array<f32, ${RM}>;
  var s: array<f32, ${RM * RN}>;
  ${unroll(RM, 1, (m) => `m_run[${m}] = neg_inf();`)}
  if (u_c_first() == 0u) {
    // continue the running state of the previous pass over keys
    ${unroll(RM, 1, (m) => `if (q0 + ${row(m)} < LQ) {
      let row = lse_idx(b, h, q0 + ${row(m)});
      m_run[${m}] = load_mlb(row * 2u);
      l_run[${m}] = load_mlb(row * 2u + 1u);
      ${unroll(1, OE, (_, n) => `if (${col(n)} < ${hd.ev}) { acc[${m * OE + n}] = load_accb(row * u_ev() + ${col(n)}); }`)}
    }`)}
  }
  ${blockLoop(p, 'kv', BC, `
    workgroupBarrier();
    ${stage('kvs', BC, EC, KST, (r, c) => `j0 + ${r} < j_hi && ${c} < ${hd.e}`, (r, c) => `load_k(k_at(b, hk, j0 + ${r}, ${c}))`)}
    workgroupBarrier();
    ${unroll(RM, RN, (m, n) => `s[${m * RN + n}] = 0.0;`)}
    ${product('s', RM, RN, hd.e, (m) => `qs[(${row(m)}) * ${QST}u + kk]`, (n) => `kvs[(${col(n)}) * ${KST}u + kk]`)}
    ${unroll(RM, 1, (m) => `let qi${m} = q0 + ${row(m)};`)}
    ${unroll(1, RN, (_, n) => `let kj${n} = j0 + ${col(n)};`)}
    ${unroll(RM, RN, (m, n) => `s[${m * RN + n}] = select(neg_inf(), finish_score(s[${m * RN + n}], b, h, min(qi${m}, LQ - 1u), min(kj${n}, j_hi - 1u), !full_blk), (qi${m} < LQ) & (kj${n} < j_hi));`)}
    // NaN scores count as +inf in the row maximum (max() may drop NaN): the row's P, l and output turn NaN
    ${unroll(RM, 1, (m) => `red[(${row(m)}) * ${TC}u + tc_] = ${Array.from({ length: RN }, (_, n) => `nan_hi(s[${m * RN + n}])`).reduce((a, x) => `max(${a}, ${x})`, 'neg_inf()')};`)}
    workgroupBarrier();
    ${stage('kvs', BC, EVC, VST, (r, c) => `j0 + ${r} < j_hi && ${c} < ${hd.ev}`, (r, c) => `load_v(v_at(b, hk, j0 + ${r}, ${c}))`)}
    ${unroll(RM, 1, (m) => `{
      var mn = m_run[${m}];
      ${Array.from({ length: TC }, (_, c) => `mn = max(mn, red[(${row(m)}) * ${TC}u + ${c}u]);`).join(' ')}
      // a row that saw only -inf so far keeps zero state; NaN scores flow through exp into the output
      let live = mn != neg_inf();
      alpha[${m}] = select(1.0, exp(m_run[${m}] - mn), live);
      m_run[${m}] = mn;
      var rs = 0.0;
      ${unroll(1, RN, (_, n) => `{ let pr = select(0.0, exp(s[${m * RN + n}] - mn), live); ps[(${col(n)}) * ${BR}u + ${row(m)}] = pr; rs = rs + pr; }`)}
      red2[(${row(m)}) * ${TC}u + tc_] = rs;
    }`)}
    workgroupBarrier();
    ${unroll(RM, 1, (m) => `{
      var rs = 0.0;
      ${Array.from({ length: TC }, (_, c) => `rs = rs + red2[(${row(m)}) * ${TC}u + ${c}u];`).join(' ')}
      l_run[${m}] = l_run[${m}] * alpha[${m}] + rs;
      ${unroll(1, OE, (_, n) => `acc[${m * OE + n}] = acc[${m * OE + n}] * alpha[${m}];`)}
    }`)}
    ${product('acc', RM, OE, `min(${BC}u, j_hi - j0)`, (m) => `ps[kk * ${BR}u + ${row(m)}]`, (n) => `kvs[kk * ${VST}u + ${col(n)}]`)}
`)}
  ${unroll(RM, 1, (m) => `{
    let i = q0 + ${row(m)};
    if (i < LQ) {
      let row = lse_idx(b, h, i);
      if (u_c_last() != 0u) {
        let l = l_run[${m}];
        let inv = select(1.0 / l, 0.0, l == 0.0);
        ${unroll(1, OE, (_, n) => `if (${col(n)} < ${hd.ev}) { store_out(o_idx(b, h, i, ${col(n)}), acc[${m * OE + n}] * inv); }`)}
        if (tc_ == 0u) { store_lse(row, select(m_run[${m}] + log(l), neg_inf(), l == 0.0)); }
      } else {
        ${unroll(1, OE, (_, n) => `if (${col(n)} < ${hd.ev}) { store_accb(row * u_ev() + ${col(n)}, acc[${m * OE + n}]); }`)}
        if (tc_ == 0u) { store_mlb(row * 2u, m_run[${m}]); store_mlb(row * 2u + 1u, l_run[${m}]); }
      }
    }
  }`)}`;
  const helpers = `var<workgroup> qs: array<f32, ${BR * QST}>;
var<workgroup> kvs: array<f32, ${BC * Math.max(KST, VST)}>;
var<workgroup> ps: array<f32, ${BC * BR}>;
var<workgroup> red: array<f32, ${BR * TC}>;
var<workgroup> red2: array<f32, ${BR * TC}>;
fn nan_hi(x: f32) -> f32 { return select(x, pos_inf(), x != x); }
${scoreHelpers(p)}
${tileMapWgsl(p, 'q')}`;
  // loop iterations per key of one invocation: staging K and V, the dot loop, the P·V loop
  const WG = TR * TC;
  const costPerKey = ((BC * (EC + EVC)) / WG + d.E + BC + 8) / BC;
  const chunks = passes(d.Lkv, BC, device.maxLoopIterations, costPerKey);
  const multi = chunks.length > 1;
  const rowsTotal = p.varlen ? d.TQ * d.Hq : d.B * d.Hq * d.Lq;
  const accb = empty([multi ? rowsTotal * d.Ev : 1], 'float32', device);
  const mlb = empty([multi ? rowsTotal * 2 : 2], 'float32', device);
  const td = tileDispatch(p, 'q', BR, d.Hq);
  const spec: ProgramSpec = {
    name: 'flash_attention_forward',
    key: cacheKey(p, `t${BR}x${BC}x${TR}x${TC}`),
    bindings: [
      ...inputBindings(p),
      { name: 'out', dtype: out.dtype, access: 'read_write' },
      { name: 'lse', dtype: 'float32', access: 'read_write' },
      { name: 'accb', dtype: 'float32', access: 'read_write' },
      { name: 'mlb', dtype: 'float32', access: 'read_write' },
      ...td.bindings,
    ],
    uniforms: commonUniforms(p),
    workgroupSize: [WG],
    helpers,
    body,
  };
  chunks.forEach(([c0, c1], n) =>
    run(spec, [...inputTensors(p), out, lse, accb, mlb, ...td.tensors], { ...commonValues(p), ...chunkValues(c0, c1, n, chunks.length) }, td.grid),
  );
  td.dispose();
  accb.dispose();
  mlb.dispose();
  return { out, lse };
}
