/**
 * The dQ kernel of the backward (FlashAttention-2 style, probabilities recomputed from the lse): one
 * workgroup per block of query rows; per key tile, S = Q·Kᵀ and dP = dO·Vᵀ are register-blocked tile
 * products, dS = P ∘ (dP − delta) goes through workgroup memory and dQ += dS·K is a third product.
 * The flex capture-gradient hook runs here, once per visible (query, key) pair.
 */
import type { Tensor } from '@webattn/core-tensor';
import type { WebGPUDevice } from '../device/webgpu-device.js';
import { run, type ProgramSpec } from '../wgsl.js';
import {
  cacheKey, chunkValues, dimClass, dims, gradBindings, gradTensors, gradUniforms, gradValues, headDims, passes, pickTile,
  type FlashGradInputs, type FlashParams, type Tile,
} from './plan.js';
import { blockLoop, kvRange, lanes, product, scoreHelpers, stage, unroll } from './shared.js';
import { tileDispatch, tileMapWgsl, tileOrigin } from './tile-map.js';

function dqBytes(t: Tile, EC: number, EVC: number): number {
  return 4 * ((t.rows + t.cols) * (EC + 1 + EVC + 1) + t.rows * t.cols);
}

/** WGSL of `do_at`: the strided offset of dout (shared by both gradient kernels). */
export const DO_AT = `fn do_at(b: u32, h: u32, i: u32, e: u32) -> u32 { return u_do_off() + b * u_do_st(0u) + h * u_do_st(1u) + (qbase(b) + i) * u_do_st(2u) + e * u_do_st(3u); }`;

/** Accumulates dQ (float32, laid out like q but contiguous) for one backward call. */
export function backwardDq(p: FlashParams, g: FlashGradInputs, dq: Tensor): void {
  const d = dims(p);
  if (d.B * d.Hq * d.Lq === 0) return;
  const device = p.q.device as WebGPUDevice;
  const EC = dimClass(d.E);
  const EVC = dimClass(d.Ev);
  const t = pickTile(device, (c) => dqBytes(c, EC, EVC), 'flash attention backward (dQ)', true, (c) => ((c.rows / c.tr) * (2 * c.cols + EC)) / c.tc);
  const { rows: BR, cols: BC, tr: TR, tc: TC } = t;
  const RM = BR / TR;
  const RN = BC / TC;
  const EQ = EC / TC;
  const QST = EC + 1;
  const DST = EVC + 1;
  const hd = headDims(p);
  const row = (m: number) => `tr_ + ${TR * m}u`;
  const col = (n: number) => `tc_ + ${TC * n}u`;
  const dsOf = p.hooks?.scoreMod ? 'score_mod_grad(raw, b, h, i, j, ds)' : 'ds';
  const body = `
  ${tileOrigin(p, 'q', BR)}
  ${lanes(t)}
${kvRange(p, BR)}
  ${stage('qs', BR, EC, QST, (r, c) => `q0 + ${r} < LQ && ${c} < ${hd.e}`, (r, c) => `load_q(q_at(b, h, q0 + ${r}, ${c})) * u_scale()`)}
  ${stage('dos', BR, EVC, DST, (r, c) => `q0 + ${r} < LQ && ${c} < ${hd.ev}`, (r, c) => `load_dout(do_at(b, h, q0 + ${r}, ${c}))`)}
  var lse_r: array<f32, ${RM}>;
  var delta_r: array<f32, ${RM}>;
  var dqa: array<f32, ${RM * EQ}>;
  var s: array<f32, ${RM * RN}>;
  var dp: array<f32, ${RM * RN}>;
  ${unroll(RM, 1, (m) => `{
    let i = q0 + ${row(m)};
    lse_r[${m}] = neg_inf();
    if (i < LQ) {
      lse_r[${m}] = load_lse(lse_idx(b, h, i));
      delta_r[${m}] = load_delta(lse_idx(b, h, i));
      if (u_c_first() == 0u) {
        ${unroll(1, EQ, (_, n) => `if (${col(n)} < ${hd.e}) { dqa[${m * EQ + n}] = load_dq(dq_idx(b, h, i, ${col(n)})); }`)}
      }
    }
  }`)}
  ${blockLoop(p, 'kv', BC, `
    workgroupBarrier();
    ${stage('ks', BC, EC, QST, (r, c) => `j0 + ${r} < j_hi && ${c} < ${hd.e}`, (r, c) => `load_k(k_at(b, hk, j0 + ${r}, ${c}))`)}
    ${stage('vs', BC, EVC, DST, (r, c) => `j0 + ${r} < j_hi && ${c} < ${hd.ev}`, (r, c) => `load_v(v_at(b, hk, j0 + ${r}, ${c}))`)}
    workgroupBarrier();
    ${unroll(RM, RN, (m, n) => `s[${m * RN + n}] = 0.0; dp[${m * RN + n}] = 0.0;`)}
    ${product('s', RM, RN, hd.e, (m) => `qs[(${row(m)}) * ${QST}u + kk]`, (n) => `ks[(${col(n)}) * ${QST}u + kk]`)}
    ${product('dp', RM, RN, hd.ev, (m) => `dos[(${row(m)}) * ${DST}u + kk]`, (n) => `vs[(${col(n)}) * ${DST}u + kk]`)}
    ${unroll(RM, RN, (m, n) => `{
      let i = q0 + ${row(m)};
      let j = j0 + ${col(n)};
      var dsr = 0.0;
      if (i < LQ && j < j_hi && lse_r[${m}] != neg_inf()) {
        let raw = s[${m * RN + n}];
        let x = finish_score(raw, b, h, i, j, !full_blk);
        if (x != neg_inf()) {
          let pr = exp(x - lse_r[${m}]);
          let ds = pr * (dp[${m * RN + n}] - delta_r[${m}]);
          ${p.hooks?.captureGrads ? 'capture_grads(raw, b, h, i, j, ds);' : ''}
          dsr = ${dsOf} * u_scale();
        }
      }
      dss[(${col(n)}) * ${BR}u + ${row(m)}] = dsr;
    }`)}
    workgroupBarrier();
    ${product('dqa', RM, EQ, `min(${BC}u, j_hi - j0)`, (m) => `dss[kk * ${BR}u + ${row(m)}]`, (n) => `ks[kk * ${QST}u + ${col(n)}]`)}
`)}
  ${unroll(RM, 1, (m) => `{
    let i = q0 + ${row(m)};
    if (i < LQ) {
      ${unroll(1, EQ, (_, n) => `if (${col(n)} < ${hd.e}) { store_dq(dq_idx(b, h, i, ${col(n)}), dqa[${m * EQ + n}]); }`)}
    }
  }`)}`;
  const WG = TR * TC;
  const costPerKey = ((BC * (EC + EVC)) / WG + d.E + d.Ev + BC + 8) / BC;
  const chunks = passes(d.Lkv, BC, device.maxLoopIterations, costPerKey);
  const td = tileDispatch(p, 'q', BR, d.Hq);
  const spec: ProgramSpec = {
    name: 'flash_attention_backward_dq',
    key: cacheKey(p, `t${BR}x${BC}x${TR}x${TC}`),
    bindings: [...gradBindings(p, g), { name: 'dq', dtype: dq.dtype, access: 'read_write' }, ...(p.hooks?.gradBindings ?? []), ...td.bindings],
    uniforms: gradUniforms(p),
    workgroupSize: [WG],
    helpers: `var<workgroup> qs: array<f32, ${BR * QST}>;
var<workgroup> dos: array<f32, ${BR * DST}>;
var<workgroup> ks: array<f32, ${BC * QST}>;
var<workgroup> vs: array<f32, ${BC * DST}>;
var<workgroup> dss: array<f32, ${BC * BR}>;
${DO_AT}
${scoreHelpers(p)}
${p.hooks?.gradWgsl ?? ''}
${tileMapWgsl(p, 'q')}`,
    body,
  };
  const values = gradValues(p, g);
  chunks.forEach(([c0, c1], n) =>
    run(spec, [...gradTensors(p, g), dq, ...(p.hooks?.gradTensors ?? []), ...td.tensors], { ...values, ...chunkValues(c0, c1, n, chunks.length) }, td.grid),
  );
  td.dispose();
}
