/**
 * The subgroup-matrix (tensor core) backward of the attention generator: float16 q/k/v/dO, f32 accumulation,
 * gradients accumulated in f32 (cast to the inputs' dtype by `flashBackward`), FlashAttention-2's two kernels
 * from ONE generator ({@link sgmatBackwardSpec}):
 * - dK/dV (`side` 'k'): a workgroup owns `rs·nsg` key rows of one kv head, K and V held in left matrices
 *   (registers) for the whole loop; over the query heads of its GQA group and the query tiles of `bc` rows (Q and
 *   dO staged in workgroup memory, lse and delta beside them): Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ by MMAs (Q and dO read
 *   column-major are Qᵀ and dOᵀ) → f32 in workgroup memory; one pass over the tile's (key, query) pairs turns
 *   them into P = exp(score − lse) and dS = P ∘ (dP − delta) with the masks, the score function and its
 *   gradient exactly as the register backward (`pairGrad` of shared.ts), written as f16; then dV += Pᵀ·dO and
 *   dK += dSᵀ·Q·scale by MMAs into result matrices that stay in registers (the stored tiles are already
 *   key-major: P and dS are the left operands as they lie).
 * - dQ (`side` 'q'): a workgroup owns `rs·nsg` query rows, Q and dO held in left matrices, lse and delta per
 *   row; per key tile (K, V staged): S = Q·Kᵀ, dP = dO·Vᵀ, the pair pass (with the capture-gradient hook: the
 *   only kernel that calls it, once per visible pair), dQ += dS·K·scale.
 * Scores are the forward's: raw dot products times the scale, then `finish_score` (causal, window, mask
 * tensor, mask and score functions; block-sparse and varlen loops as every other kernel).
 *
 * Selected (mode `auto`) where the forward's matrix kernel runs (f16 inputs and dO, a 16×16×16 f16→f32 matrix
 * configuration, subgroups of 32), head dims ≤ 128, the tiling fits the workgroup memory and the backward path
 * knob is `auto`; everything else — f32 inputs, head dims over 128, `setFlashBackwardPath('registers' | 'staged')`,
 * {@link setFlashBackwardSubgroupMatrix}('off') or `WEBATTN_FLASH_BACKWARD_SGMAT=off` — takes the register /
 * staged backward (`backward-dq.ts`, `backward-dkv.ts`). `emulate` renders the same kernels with the forward's
 * plain-WGSL matrix stand-ins for f32 inputs on any adapter (tests; one pass, so small shapes where the adapter
 * caps loop iterations). Dawn pitfalls of forward-sgmat.ts apply: result matrices are zeroed by assignment and
 * every workgroup variable is a multiple of 16 bytes (so are all matrix offsets and strides).
 */
import { empty, type Tensor } from '@webattn/core-tensor';
import type { WebGPUDevice } from '../device/webgpu-device.js';
import { run, type ProgramSpec } from '../wgsl.js';
import {
  backwardPathMode, cacheKey, chunkValues, dimClass, dims, gradBindings, gradTensors, gradUniforms, gradValues, type FlashGradInputs, type FlashParams,
} from './plan.js';
import { blockLoop, checkWorkBuffer, kvRange, pairGrad, qRange, scoreHelpers } from './shared.js';
import { captureGradCall, hookGradBindings, hookGradTensors, hookGradWgsl, scoreModGrad } from './hooks.js';
import { tileDispatch, tileMapWgsl, tileOrigin } from './tile-map.js';
import { DO_AT } from './backward-dq.js';
import { EMU_LOOPED, EMU_WGSL, REAL, ceil16, hasSgmatAttention, seq, vec4Layout } from './forward-sgmat.js';

/** Tiling of one subgroup-matrix backward kernel. */
export interface SgmatBwdTile {
  /** Rows (keys for dK/dV, queries for dQ) per subgroup: 16 or 32. */
  rs: 16 | 32;
  /** Subgroups per workgroup (rows per workgroup = rs · nsg; at most 64 with block-sparse tables). */
  nsg: number;
  /** Rows of the looped operand per tile (queries for dK/dV, keys for dQ): 16, 32 or 64. */
  bc: number;
}

/** Tilings of the two kernels, and whether operands are staged by 4-element vectors where the layout allows. */
export interface SgmatBwdConfig {
  /** The dK/dV kernel. */
  dkv: SgmatBwdTile;
  /** The dQ kernel. */
  dq: SgmatBwdTile;
  /** Stage q, k, v and dO by vec4 loads (taken only where all four allow it, see `vec4Layout`). */
  vec?: boolean;
}

/** `auto`: the matrix backward for f16 where the device has it; `off`; `emulate`: plain-WGSL stand-ins for f32 inputs (tests). */
export type SgmatBackwardMode = 'auto' | 'off' | 'emulate';

function envMode(): SgmatBackwardMode {
  const v = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.WEBATTN_FLASH_BACKWARD_SGMAT;
  return v === 'off' || v === 'emulate' ? v : 'auto';
}
let mode: SgmatBackwardMode = envMode();
let forced: SgmatBwdConfig | null = null;

/**
 * Selects the subgroup-matrix backward: `auto` (default; f16 inputs on a device with f16 subgroup matrices), `off`
 * (the register / staged backward everywhere) or `emulate` (f32 inputs, plain-WGSL matrices, any adapter), and
 * optionally forces the tilings. The environment variable `WEBATTN_FLASH_BACKWARD_SGMAT` (`off` / `emulate`) sets
 * the start value. A tuning and testing knob; results are the same.
 * @example setFlashBackwardSubgroupMatrix('off'); // the register backward for f16 too
 */
export function setFlashBackwardSubgroupMatrix(m: SgmatBackwardMode, cfg: SgmatBwdConfig | null = null): void {
  mode = m;
  forced = cfg;
}

/** Workgroup memory of one kernel (bytes), `eb` bytes per staged element. */
function bytesOf(side: 'k' | 'q', t: SgmatBwdTile, EC: number, EVC: number, eb: number): number {
  const BR = t.rs * t.nsg;
  const stagedRows = eb * t.bc * (EC + 8 + EVC + 8);
  const pd = (side === 'k' ? 2 : 1) * eb * BR * (t.bc + 8);
  return stagedRows + pd + 2 * 4 * BR * (t.bc + 4) + 2 * 4 * (side === 'k' ? t.bc : BR) + 64;
}

/** The tilings this backward call would run with on subgroup matrices, or null (the register / staged backward runs). */
export function sgmatBackwardPlan(p: FlashParams, g: FlashGradInputs): (SgmatBwdConfig & { emulate: boolean }) | null {
  if (mode === 'off' || backwardPathMode() !== 'auto') return null;
  const device = p.q.device as WebGPUDevice;
  const emulate = mode === 'emulate';
  const ts = [p.q, p.k, p.v, g.dout];
  if (emulate ? !ts.every((t) => t.dtype === 'float32') : !ts.every((t) => t.dtype === 'float16') || !hasSgmatAttention(device)) return null;
  const d = dims(p);
  const EC = dimClass(d.E);
  const EVC = dimClass(d.Ev);
  if (EC > 128 || EVC > 128) return null;
  // block-sparse tables are per 64 rows on both sides: a workgroup's rows and a tile never straddle two blocks
  const maxRows = p.blocks ? 64 : 256;
  const list: SgmatBwdConfig[] = forced
    ? [forced]
    : [
        // H100, f16 fwd+bwd B=8 H=16 L=4096 E=64 (ms, bwd_probe.mjs, one call; register backward 178.7): 16·8·16
        // 62.3, 32·4·16 90.6, 16·4·32 105.8, 32·2·32 176.5 (B=8 L=1024: 7.1 / 9.0 / 10.6 / 16.1, registers 15.8;
        // ViT B=128 L=196: 8.8 / 10.0 / 15.6 / 17.7, registers 21.0): many subgroups of 16 rows and 16-row tiles first.
        // A second call (same shapes; 16·8·16 both / dQ 16·4·16 / dK/dV 16·4·16 / dQ 16·12·16 / scalar staging): L=4096
        // 65.8 / 66.9 / 66.3 / 66.6 / 96.0 (registers 174.6); L=1024 8.5 / 7.3 / 7.2 / 6.4 / 9.9 (15.5); ViT 15.7 / 9.7 /
        // 7.7 / 7.9 / 10.3 (16.8); E=128 L=1024 19.8 / 11.5 / 13.7 / - / 16.3 (63.6): differences among the 16-row
        // tilings are within the run's noise; vector staging matters
        { dkv: { rs: 16, nsg: 8, bc: 16 }, dq: { rs: 16, nsg: 8, bc: 16 }, vec: true },
        { dkv: { rs: 16, nsg: 4, bc: 16 }, dq: { rs: 16, nsg: 4, bc: 16 }, vec: true },
        { dkv: { rs: 16, nsg: 2, bc: 16 }, dq: { rs: 16, nsg: 2, bc: 16 }, vec: true },
      ];
  const budget = device.limits.maxComputeWorkgroupStorageSize;
  const eb = emulate ? 4 : 2;
  const fits = (side: 'k' | 'q', t: SgmatBwdTile) =>
    bytesOf(side, t, EC, EVC, eb) <= budget && t.rs * t.nsg <= maxRows && t.bc <= 64 && t.bc % 16 === 0 && t.nsg * 32 <= device.limits.maxComputeInvocationsPerWorkgroup;
  const c = list.find((x) => fits('k', x.dkv) && fits('q', x.dq));
  return c ? { ...c, emulate } : null;
}

/** True when every operand the backward stages (q, k, v, dO) can be read as aligned vec4s. */
function vecOk(p: FlashParams, g: FlashGradInputs): boolean {
  const d = dims(p);
  return d.E % 4 === 0 && d.Ev % 4 === 0 && [p.q, p.k, p.v, g.dout].every((t) => vec4Layout(t, !!p.varlen));
}

/** dQ, dK and dV (float32, contiguous, laid out like q, k, v) on subgroup matrices. */
export function flashBackwardSgmat(p: FlashParams, g: FlashGradInputs, cfg: SgmatBwdConfig & { emulate: boolean }): { dq: Tensor; dk: Tensor; dv: Tensor } {
  const d = dims(p);
  const device = p.q.device as WebGPUDevice;
  const qShape = p.varlen ? [d.TQ, d.Hq, d.E] : [d.B, d.Hq, d.Lq, d.E];
  const kShape = p.varlen ? [d.TK, d.Hkv, d.E] : [d.B, d.Hkv, d.Lkv, d.E];
  const vShape = p.varlen ? [d.TK, d.Hkv, d.Ev] : [d.B, d.Hkv, d.Lkv, d.Ev];
  const n = (s: number[]) => s.reduce((a, x) => a * x, 1);
  const [nq, nk, nv] = [n(qShape), n(kShape), n(vShape)];
  const values = gradValues(p, g);
  // dQ
  const dq = empty(qShape, 'float32', device);
  if (nq > 0) {
    const td = tileDispatch(p, 'q', cfg.dq.rs * cfg.dq.nsg, d.Hq);
    checkWorkBuffer(nq, device, 'flash attention backward (dQ)');
    run(sgmatBackwardSpec(p, g, 'q', cfg), [...gradTensors(p, g), dq, ...hookGradTensors(p), ...td.tensors], { ...values, ...chunkValues(0, d.Lkv, 0, 1) }, td.grid);
    td.dispose();
  }
  // dK and dV share one buffer (one binding); each is a view of it
  const buf = empty([nk + nv], 'float32', device);
  if (nk + nv > 0) {
    const td = tileDispatch(p, 'k', cfg.dkv.rs * cfg.dkv.nsg, d.Hkv);
    checkWorkBuffer(nk + nv, device, 'flash attention backward (dK/dV)');
    run(sgmatBackwardSpec(p, g, 'k', cfg), [...gradTensors(p, g), buf, ...td.tensors], { ...values, ...chunkValues(0, d.Lq, 0, 1), dv_at: nk }, td.grid);
    td.dispose();
  }
  return { dq, dk: buf.slice(0, 0, nk).reshape(kShape), dv: buf.slice(0, nk, nk + nv).reshape(vShape) };
}

/**
 * The program of one backward kernel: `side` 'k' = dK/dV (rows are keys, the loop runs over query tiles), 'q' = dQ
 * (rows are queries, the loop runs over key tiles). Exported for inspection of the generated WGSL.
 */
export function sgmatBackwardSpec(p: FlashParams, g: FlashGradInputs, side: 'k' | 'q', cfg: SgmatBwdConfig & { emulate: boolean }): ProgramSpec {
  const d = dims(p);
  const KV = side === 'k';
  const { rs: RS, nsg: NSG, bc: BC } = KV ? cfg.dkv : cfg.dq;
  const emulate = cfg.emulate;
  const M = emulate ? EMU_LOOPED : REAL;
  const EL = emulate ? 'f32' : 'f16';
  const V4 = `vec4<${EL}>`;
  const VEC = !!cfg.vec && vecOk(p, g);
  const EC = dimClass(d.E);
  const EVC = dimClass(d.Ev);
  const BR = RS * NSG;
  const NR = RS / 16; // row blocks per subgroup
  const NE = ceil16(EC) / 16; // head-dim blocks of q / k
  const NV = ceil16(EVC) / 16; // head-dim blocks of v / dO
  const NC = BC / 16; // row blocks of a looped tile
  const XST = EC + 8; // staged Q (dK/dV) or K (dQ): BC rows × EC
  const YST = EVC + 8; // staged dO (dK/dV) or V (dQ): BC rows × EVC
  const PST = BC + 8; // P and dS (f16): BR rows × BC
  const SST = BC + 4; // S and dP (f32): BR rows × BC
  const E = `${d.E}u`;
  const EV = `${d.Ev}u`;
  // held operands A (K or Q, head dim E) and B (V or dO, Ev); looped operands X (Q or K, E) and Y (dO or V, Ev)
  const [r0, rlim, t0, tlim] = KV ? ['k0', 'LK', 'i0', 'i_lim'] : ['q0', 'LQ', 'j0', 'j_hi'];
  const heldAt = KV ? ['k_at(b, hk, ', 'v_at(b, hk, '] : ['q_at(b, h, ', 'do_at(b, h, '];
  const loopAt = KV ? ['q_at(b, h, ', 'do_at(b, h, '] : ['k_at(b, hk, ', 'v_at(b, hk, '];
  const names = KV ? [['k', 'v'], ['q', 'dout']] : [['q', 'dout'], ['k', 'v']];
  const rowOff = (rb: number, st: number) => `(sg * ${RS}u + ${rb * 16}u) * ${st}u`;
  // `rows` rows × `width` head-dim columns from column `e0` on of binding `src` (element index `at(row, e)`) into `dst`
  // (row stride `stride`), zero where the row is out of range (`rowOk`) or the column past `lim`
  const stage = (dst: string, rows: number, width: number, stride: number, e0: string, src: string, at: (r: string, e: string) => string, rowOk: (r: string) => string, lim: string) =>
    VEC
      ? `for (var t = lidx; t < ${(rows * width) / 4}u; t = t + WG_SIZE) {
      let r_ = t / ${width / 4}u;
      let c_ = (t % ${width / 4}u) * 4u;
      let e_ = ${e0} + c_;
      var x_ = ${V4}();
      if (${rowOk('r_')} && e_ < ${lim}) { x_ = ${V4}(${src}[${at('r_', 'e_')} / 4u]); }
      let o_ = r_ * ${stride}u + c_;
      ${dst}[o_] = x_.x; ${dst}[o_ + 1u] = x_.y; ${dst}[o_ + 2u] = x_.z; ${dst}[o_ + 3u] = x_.w;
    }`
      : `for (var t = lidx; t < ${rows * width}u; t = t + WG_SIZE) {
      let r_ = t / ${width}u;
      let e_ = ${e0} + t % ${width}u;
      var x_ = 0.0;
      if (${rowOk('r_')} && e_ < ${lim}) { x_ = load_${src}(${at('r_', 'e_')}); }
      ${dst}[r_ * ${stride}u + t % ${width}u] = ${EL}(x_);
    }`;
  const held = (which: 0 | 1, nb: number, lim: string) =>
    stage(KV ? 'pbuf' : 'dsbuf', BR, 16, PST, `${nb * 16}u`, names[0]![which]!, (r, e) => `${heldAt[which]}${r0} + ${r}, ${e})`, (r) => `${r0} + ${r} < ${rlim}`, lim);
  const hbuf = KV ? 'pbuf' : 'dsbuf';
  // the held operands, 16 head-dim columns at a time through workgroup memory, into left matrices kept for the whole kernel
  const loadHeld = (which: 0 | 1, nblk: number, lim: string, name: string) =>
    seq(nblk).map((nb) => `workgroupBarrier();
  ${held(which, nb, lim)}
  workgroupBarrier();
  ${seq(NR).map((rb) => `${M.decl(`${name}_${rb}_${nb}`, 'L')} ${M.load(`${name}_${rb}_${nb}`, 'L', hbuf, rowOff(rb, PST), false, PST)}`).join('\n  ')}`).join('\n  ');
  const stats = (count: number, first: string, lim: string) => `for (var t = lidx; t < ${count}u; t = t + WG_SIZE) {
      var l_ = neg_inf();
      var d_ = 0.0;
      if (${first} + t < ${lim}) { l_ = load_lse(lse_idx(b, h, ${first} + t)); d_ = load_delta(lse_idx(b, h, ${first} + t)); }
      lses[t] = l_;
      dels[t] = d_;
    }`;
  // pairs (row r of the workgroup, column c of the tile): keys × queries for dK/dV, queries × keys for dQ
  const pairs = `let sc_ = u_scale();
    for (var t = lidx; t < ${BR * BC}u; t = t + WG_SIZE) {
      let r = t / ${BC}u;
      let c = t % ${BC}u;
      let ${KV ? 'j' : 'i'} = ${r0} + r;
      let ${KV ? 'i' : 'j'} = ${t0} + c;
      let lse_ = lses[${KV ? 'c' : 'r'}];
      let del_ = dels[${KV ? 'c' : 'r'}];
      ${pairGrad(`sbuf[r * ${SST}u + c]`, `dpbuf[r * ${SST}u + c]`, `${KV ? 'j < LK && i < i_lim' : 'i < LQ && j < j_hi'}`, 'lse_', 'del_', scoreModGrad(p), ' * sc_', KV ? '' : captureGradCall(p))}
      ${KV ? `pbuf[r * ${PST}u + c] = ${EL}(pr);\n      ` : ''}dsbuf[r * ${PST}u + c] = ${EL}(dsr);
    }`;
  const tile = `
    workgroupBarrier();
    ${stage('xs', BC, EC, XST, '0u', names[1]![0]!, (r, e) => `${loopAt[0]}${t0} + ${r}, ${e})`, (r) => `${t0} + ${r} < ${tlim}`, E)}
    ${stage('ys', BC, EVC, YST, '0u', names[1]![1]!, (r, e) => `${loopAt[1]}${t0} + ${r}, ${e})`, (r) => `${t0} + ${r} < ${tlim}`, EV)}
    ${KV ? stats(BC, 'i0', 'i_lim') : ''}
    workgroupBarrier();
    // S = A·Xᵀ and dP = B·Yᵀ (X, Y read column-major are their transposes) into this subgroup's rows of sbuf / dpbuf
    ${seq(NC).map((cb) => `{
      ${seq(NR).map((rb) => `${M.decl(`sa_${rb}`, 'A')} ${M.decl(`da_${rb}`, 'A')}`).join(' ')}
      ${seq(NE).map((eb) => `{
        ${M.decl('xr', 'R')}
        ${M.load('xr', 'R', 'xs', `${cb * 16 * XST + eb * 16}u`, true, XST)}
        ${seq(NR).map((rb) => M.mma(`sa_${rb}`, `al_${rb}_${eb}`, 'xr', `sa_${rb}`)).join(' ')}
      }`).join('\n      ')}
      ${seq(NV).map((nb) => `{
        ${M.decl('yr', 'R')}
        ${M.load('yr', 'R', 'ys', `${cb * 16 * YST + nb * 16}u`, true, YST)}
        ${seq(NR).map((rb) => M.mma(`da_${rb}`, `bl_${rb}_${nb}`, 'yr', `da_${rb}`)).join(' ')}
      }`).join('\n      ')}
      ${seq(NR).map((rb) => `${M.store('sbuf', `${rowOff(rb, SST)} + ${cb * 16}u`, `sa_${rb}`, SST)} ${M.store('dpbuf', `${rowOff(rb, SST)} + ${cb * 16}u`, `da_${rb}`, SST)}`).join('\n      ')}
    }`).join('\n    ')}
    workgroupBarrier();
    // P and dS, once per (row, column) pair: the only place masks and hooks are evaluated
    ${pairs}
    workgroupBarrier();
    // ${KV ? 'dK += dS·Q (dS holds the scale), dV += P·dO' : 'dQ += dS·K (dS holds the scale)'}: the tiles' columns are the contraction
    ${seq(NC).map((kb) => `{
      ${seq(NR).map((rb) => `${M.decl(`dl_${rb}`, 'L')} ${M.load(`dl_${rb}`, 'L', 'dsbuf', `${rowOff(rb, PST)} + ${kb * 16}u`, false, PST)}`).join('\n      ')}
      ${KV ? seq(NR).map((rb) => `${M.decl(`pl_${rb}`, 'L')} ${M.load(`pl_${rb}`, 'L', 'pbuf', `${rowOff(rb, PST)} + ${kb * 16}u`, false, PST)}`).join('\n      ') : ''}
      ${seq(NE).map((eb) => `{
        ${M.decl('xr', 'R')}
        ${M.load('xr', 'R', 'xs', `${kb * 16 * XST + eb * 16}u`, false, XST)}
        ${seq(NR).map((rb) => M.mma(`ga_${rb}_${eb}`, `dl_${rb}`, 'xr', `ga_${rb}_${eb}`)).join(' ')}
      }`).join('\n      ')}
      ${KV ? seq(NV).map((nb) => `{
        ${M.decl('yr', 'R')}
        ${M.load('yr', 'R', 'ys', `${kb * 16 * YST + nb * 16}u`, false, YST)}
        ${seq(NR).map((rb) => M.mma(`gb_${rb}_${nb}`, `pl_${rb}`, 'yr', `gb_${rb}_${nb}`)).join(' ')}
      }`).join('\n      ') : ''}
    }`).join('\n    ')}
`;
  // a result matrix through this subgroup's rows of sbuf to its output (16 columns at a time)
  const writeBack = (acc: string, nb: number, lim: string, store: (r: string, e: string, x: string) => string) => seq(NR).map((rb) => `workgroupBarrier();
  ${M.store('sbuf', rowOff(rb, SST), `${acc}_${rb}_${nb}`, SST)}
  workgroupBarrier();
  for (var t = lane; t < 256u; t = t + 32u) {
    let row = sg * ${RS}u + ${rb * 16}u + t / 16u;
    let e = ${nb * 16}u + t % 16u;
    if (${r0} + row < ${rlim} && e < ${lim}) { ${store(`${r0} + row`, 'e', `sbuf[row * ${SST}u + t % 16u]`)} }
  }`).join('\n  ');
  const body = `
  ${tileOrigin(p, side, BR)}
  let sg = lidx / 32u;
  let lane = lidx % 32u;${emulate ? `
  if (lidx == 0u) { wg_emn = vec4<u32>(16u); }
  workgroupBarrier();
  let EMN = workgroupUniformLoad(&wg_emn).x;` : ''}
${KV ? qRange(p, BR) : kvRange(p, BR)}
  ${loadHeld(0, NE, E, 'al')}
  ${loadHeld(1, NV, EV, 'bl')}
  ${seq(NR).flatMap((rb) => seq(NE).map((eb) => M.decl(`ga_${rb}_${eb}`, 'A'))).join(' ')}
  ${KV ? seq(NR).flatMap((rb) => seq(NV).map((nb) => M.decl(`gb_${rb}_${nb}`, 'A'))).join(' ') : ''}
  ${KV ? `for (var g = 0u; g < u_group(); g = g + 1u) {
    let h = hk * u_group() + g;
    ${blockLoop(p, 'q', BC, tile)}
  }` : `${stats(BR, 'q0', 'LQ')}
  ${blockLoop(p, 'kv', BC, tile)}`}
  ${seq(NE).map((eb) => writeBack('ga', eb, E, (r, e, x) => `store_${KV ? 'dk(dk_idx(b, hk' : 'dq(dq_idx(b, h'}, ${r}, ${e}), ${x});`)).join('\n  ')}
  ${KV ? seq(NV).map((nb) => writeBack('gb', nb, EV, (r, e, x) => `store_dv(dv_idx(b, hk, ${r}, ${e}), ${x});`)).join('\n  ') : ''}`;
  const helpers = `${emulate ? `${EMU_WGSL}\n` : ''}
var<workgroup> xs: array<${EL}, ${BC * XST}>;
var<workgroup> ys: array<${EL}, ${BC * YST}>;
${KV ? `var<workgroup> pbuf: array<${EL}, ${BR * PST}>;` : ''}
var<workgroup> dsbuf: array<${EL}, ${BR * PST}>;
var<workgroup> sbuf: array<f32, ${BR * SST}>;
var<workgroup> dpbuf: array<f32, ${BR * SST}>;
var<workgroup> lses: array<f32, ${KV ? BC : BR}>;
var<workgroup> dels: array<f32, ${KV ? BC : BR}>;
${KV ? `fn store_dv(i: u32, x: f32) { dk[u_dv_at() + i] = x; }` : ''}
${DO_AT}
${scoreHelpers(p)}
${KV ? '' : hookGradWgsl(p)}
${tileMapWgsl(p, side)}`;
  const vecNames = new Set(['q', 'k', 'v', 'dout']);
  return {
    name: KV ? 'flash_attention_backward_dkv_sgmat' : 'flash_attention_backward_dq_sgmat',
    key: cacheKey(p, `sgmatB${emulate ? 'E' : ''}:${side}:${RS}x${NSG}x${BC}${VEC ? 'V' : ''}:x${d.E}:${d.Ev}`),
    bindings: [
      ...gradBindings(p, g).map((x) => (VEC && vecNames.has(x.name) ? { ...x, vec4: true } : x)),
      KV ? { name: 'dk', dtype: 'float32', access: 'read_write' } : { name: 'dq', dtype: 'float32', access: 'read_write' },
      ...(KV ? [] : hookGradBindings(p)),
      ...(p.varlen ? [{ name: 'vl', dtype: 'int32' as const, access: 'read' as const }] : []),
    ],
    uniforms: [...gradUniforms(p), ...(KV ? [['dv_at', 'u32'] as ['dv_at', 'u32']] : [])],
    workgroupSize: [NSG * 32],
    helpers,
    body,
    ...(emulate ? {} : { directives: ['diagnostic(off, chromium.subgroup_matrix_uniformity);', 'enable subgroups;', 'enable chromium_experimental_subgroup_matrix;'] }),
  };
}
