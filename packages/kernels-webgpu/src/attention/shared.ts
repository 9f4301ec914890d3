/**
 * WGSL pieces shared by the forward and both backward kernels: index helpers of the dense and the
 * packed (varlen) layouts, the masked and modified score of one (query, key) pair, the loop over
 * tiles (dense range or block-sparse lists), staging of operand tiles in workgroup memory and the
 * register-blocked tile product every kernel is built from.
 */
import { WebattnError } from '@webattn/core-tensor';
import type { WebGPUDevice } from '../device/webgpu-device.js';
import { hookWgsl } from './hooks.js';
import type { FlashParams, Tile } from './plan.js';

/** WGSL shared by all three kernels: offsets and the masked, modified score of (b, h, i, j). */
export function scoreHelpers(p: FlashParams): string {
  // branch-free (software adapters compile every branch of an unrolled tile as masked execution):
  // the caller passes in-range (clamped) indices and discards what is out of range
  const mask = p.mask
    ? p.mask.kind === 'bool'
      ? `ok = ok & (load_mask(u_m_off() + b * u_m_st(0u) + h * u_m_st(1u) + i * u_m_st(2u) + j * u_m_st(3u)) != 0u);`
      : `x = x + load_mask(u_m_off() + b * u_m_st(0u) + h * u_m_st(1u) + i * u_m_st(2u) + j * u_m_st(3u));`
    : '';
  const causal = p.causal ? `ok = ok & (i32(j) <= i32(i) + causal_off(b));` : '';
  const win = p.window
    ? `ok = ok & !(((u_win_l() >= 0) & (i32(j) < i32(i) + causal_off(b) - u_win_l())) | ((u_win_r() >= 0) & (i32(j) > i32(i) + causal_off(b) + u_win_r())));`
    : '';
  const layout = p.varlen
    ? `
// cu_seqlens live in the \`vl\` binding of tile-map.ts: [cuQ[0..B] | cuK[0..B] | tile table]
fn load_cu_q(i: u32) -> i32 { return load_vl(i); }
fn load_cu_k(i: u32) -> i32 { return load_vl(u_B() + 1u + i); }
// the workgroup's sequence starts, read once at the top of the kernel (tileOrigin / lens)
var<private> P_QB: u32;
var<private> P_KB: u32;
fn qbase(b: u32) -> u32 { return P_QB; }
fn kbase(b: u32) -> u32 { return P_KB; }
fn qlen_of(b: u32) -> u32 { return u32(load_cu_q(b + 1u) - load_cu_q(b)); }
fn klen_of(b: u32) -> u32 { return u32(load_cu_k(b + 1u) - load_cu_k(b)); }
// bottom-right causal alignment per sequence, as FlashAttention-2 varlen
fn causal_off(b: u32) -> i32 { return i32(klen_of(b)) - i32(qlen_of(b)); }
fn o_idx(b: u32, h: u32, i: u32, e: u32) -> u32 { return ((qbase(b) + i) * u_hq() + h) * u_ev() + e; }
fn lse_idx(b: u32, h: u32, i: u32) -> u32 { return h * u_tq() + qbase(b) + i; }
fn dq_idx(b: u32, h: u32, i: u32, e: u32) -> u32 { return ((qbase(b) + i) * u_hq() + h) * u_e() + e; }
fn dk_idx(b: u32, hk: u32, j: u32, e: u32) -> u32 { return ((kbase(b) + j) * u_hkv() + hk) * u_e() + e; }
fn dv_idx(b: u32, hk: u32, j: u32, e: u32) -> u32 { return ((kbase(b) + j) * u_hkv() + hk) * u_ev() + e; }
// 16 bytes: every workgroup variable's size is a multiple of 16 so that the staged arrays beside it start
// 16-byte aligned (subgroup-matrix loads/stores on NVIDIA/Vulkan round their address down: forward-sgmat.ts)
var<workgroup> wg_lens: vec4<u32>;`
    : `
fn qbase(b: u32) -> u32 { return 0u; }
fn kbase(b: u32) -> u32 { return 0u; }
fn causal_off(b: u32) -> i32 { return u_causal_off(); }
fn o_idx(b: u32, h: u32, i: u32, e: u32) -> u32 { return ((b * u_hq() + h) * u_lq() + i) * u_ev() + e; }
fn lse_idx(b: u32, h: u32, i: u32) -> u32 { return (b * u_hq() + h) * u_lq() + i; }
fn dq_idx(b: u32, h: u32, i: u32, e: u32) -> u32 { return ((b * u_hq() + h) * u_lq() + i) * u_e() + e; }
fn dk_idx(b: u32, hk: u32, j: u32, e: u32) -> u32 { return ((b * u_hkv() + hk) * u_lkv() + j) * u_e() + e; }
fn dv_idx(b: u32, hk: u32, j: u32, e: u32) -> u32 { return ((b * u_hkv() + hk) * u_lkv() + j) * u_ev() + e; }`;
  const maskMod = p.hooks?.maskMod ? `ok = ok & (!apply_mod | mask_mod(b, h, i, j));` : '';
  const scoreMod = p.hooks?.scoreMod ? `x = score_mod(x, b, h, i, j);` : '';
  return `
${layout}
// NaN by its bits: WGSL leaves NaN comparisons to the implementation and drivers fold x != x away
fn is_nan_f32(x: f32) -> bool { let u = bitcast<u32>(x); return (u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0u; }
var<private> FLASH_NAN_BITS: u32 = 0x7fc00000u;
fn flash_nan() -> f32 { return bitcast<f32>(FLASH_NAN_BITS); }
fn q_at(b: u32, h: u32, i: u32, e: u32) -> u32 { return u_q_off() + b * u_q_st(0u) + h * u_q_st(1u) + (qbase(b) + i) * u_q_st(2u) + e * u_q_st(3u); }
fn k_at(b: u32, h: u32, j: u32, e: u32) -> u32 { return u_k_off() + b * u_k_st(0u) + h * u_k_st(1u) + (kbase(b) + j) * u_k_st(2u) + e * u_k_st(3u); }
fn v_at(b: u32, h: u32, j: u32, e: u32) -> u32 { return u_v_off() + b * u_v_st(0u) + h * u_v_st(1u) + (kbase(b) + j) * u_v_st(2u) + e * u_v_st(3u); }
// The final score of query i and key j (both in range) given the scaled dot product, or -inf when masked out.
fn finish_score(dot_scaled: f32, b: u32, h: u32, i: u32, j: u32, apply_mod: bool) -> f32 {
  var x = dot_scaled;
  var ok = true;
  ${causal}
  ${win}
  ${maskMod}
  ${mask}
  ${scoreMod}
  return select(neg_inf(), x, ok);
}
${hookWgsl(p.hooks)}
${p.blocks ? BLOCK_WGSL : ''}`;
}

/** Readers of the packed block tables: table t (0 kvNum … 7 fullQIdx) at index i. */
const BLOCK_WGSL = `var<workgroup> wg_cnt: vec4<u32>;
var<workgroup> wg_blk: vec4<u32>;
fn bt_at(t: u32, i: u32) -> u32 { return u32(load_bt(u_bt_off(t) + i)); }`;

/**
 * The loop over tiles of one block: key tiles of a query block (forward, dQ) or query tiles of a key
 * block (dK/dV), `step` rows at a time. Dense: the range `kv_lo..kv_hi` / `q_lo..i_hi`. Block-sparse:
 * the block mask's partial then full blocks (empty blocks are never visited; full ones skip the mask
 * function). Inside `body`: the tile start (`j0` / `i0`), the end of the current range (`j_hi` /
 * `i_lim`) and `full_blk`. Every bound is workgroup-uniform (the body holds barriers).
 */
export function blockLoop(p: FlashParams, side: 'kv' | 'q', step: number, body: string): string {
  const kv = side === 'kv';
  const [v, lim, hi, start] = kv ? ['j0', 'j_hi', 'kv_hi', 'kv_lo'] : ['i0', 'i_lim', 'i_hi', 'q_lo'];
  if (!p.blocks) {
    return `let full_blk = false;
  let ${lim} = ${hi};
  for (var ${v} = ${start}; ${v} < ${lim}; ${v} = ${v} + ${step}u) {${body}
  }`;
  }
  const [num, idx, fnum, fidx] = kv ? [0, 1, 2, 3] : [4, 5, 6, 7];
  const [rowsOf, colsOf, base] = kv ? ['u_nqb()', 'u_nkb()', 'q0'] : ['u_nkb()', 'u_nqb()', 'k0'];
  return `let tab = (min(b, u_bm() - 1u) * u_hm() + min(h, u_hm() - 1u)) * ${rowsOf} + ${base} / u_bs();
  if (lidx == 0u) { wg_cnt = vec4<u32>(bt_at(${num}u, tab), bt_at(${fnum}u, tab), 0u, 0u); }
  let cnt = workgroupUniformLoad(&wg_cnt);
  for (var pass_ = 0u; pass_ < 2u; pass_ = pass_ + 1u) {
    let full_blk = pass_ == 1u;
    let nblk = select(cnt.x, cnt.y, full_blk);
    for (var n = 0u; n < nblk; n = n + 1u) {
      if (lidx == 0u) { wg_blk = vec4<u32>(select(bt_at(${idx}u, tab * ${colsOf} + n), bt_at(${fidx}u, tab * ${colsOf} + n), full_blk)); }
      let blk = workgroupUniformLoad(&wg_blk).x;
      let ${lim} = min((blk + 1u) * u_bs(), ${hi});
      for (var ${v} = max(blk * u_bs(), ${start}); ${v} < ${lim}; ${v} = ${v} + ${step}u) {${body}
      }
    }
  }`;
}

/** `LQ`, `LK`: this sequence's lengths, workgroup-uniform (loop bounds around barriers depend on them). */
export function lens(p: FlashParams): string {
  return p.varlen
    ? `if (lidx == 0u) { wg_lens = vec4<u32>(qlen_of(b), klen_of(b), 0u, 0u); }
  let lens = workgroupUniformLoad(&wg_lens);
  let LQ = lens.x;
  let LK = lens.y;
  P_QB = u32(load_cu_q(b));
  P_KB = u32(load_cu_k(b));`
    : `let LQ = u_lq();
  let LK = u_lkv();`;
}

/** `CAUSAL_OFF`: the diagonal offset of this sequence (varlen: bottom-right aligned). */
export const causalOffset = (p: FlashParams) => `let CAUSAL_OFF = ${p.varlen ? 'i32(LK) - i32(LQ)' : 'u_causal_off()'};`;

/**
 * `kv_lo`..`kv_hi`: this pass's key range for the query rows `q0..q0+rows` — keys past the causal
 * diagonal or outside the local window of every row of the block are never visited.
 */
export function kvRange(p: FlashParams, rows: number): string {
  const win = p.window
    ? `if (u_win_r() >= 0) { kv_end = u32(clamp(i32(last_q) + CAUSAL_OFF + u_win_r(), 0, i32(kv_end))); }
  if (u_win_l() >= 0) { kv_start = u32(clamp(i32(q0) + CAUSAL_OFF - u_win_l(), 0, i32(LK))); }`
    : '';
  return `  ${causalOffset(p)}
  let last_q = min(q0 + ${rows}u, LQ);
  var kv_end = ${p.causal ? 'u32(clamp(i32(last_q) + CAUSAL_OFF, 0, i32(LK)))' : 'LK'};
  var kv_start = 0u;
  ${win}
  let kv_hi = min(kv_end, u_c_stop());
  let kv_lo = max(kv_start, u_c_begin());`;
}

/**
 * `q_lo`..`i_hi`: this pass's query range for the keys `k0..k0+rows` — queries that see none of the
 * block's keys (causal diagonal, local window) are never visited.
 */
export function qRange(p: FlashParams, rows: number): string {
  const win = p.window
    ? `if (u_win_r() >= 0) { q_start = max(q_start, u32(clamp(i32(k0) - CAUSAL_OFF - u_win_r(), 0, i32(LQ)))); }
  if (u_win_l() >= 0) { q_end = min(q_end, u32(clamp(i32(last_k) - CAUSAL_OFF + u_win_l(), 0, i32(LQ)))); }`
    : '';
  return `  ${causalOffset(p)}
  let last_k = min(k0 + ${rows}u, LK);
  var q_start = ${p.causal ? 'u32(clamp(i32(k0) - CAUSAL_OFF, 0, i32(LQ)))' : '0u'};
  var q_end = LQ;
  ${win}
  let i_hi = min(q_end, u_c_stop());
  let q_lo = max(q_start, u_c_begin());`;
}

/** One staged operand tile of a kernel: its name and length in f32. */
export interface StagedArray {
  name: string;
  len: number;
}

/**
 * Where a kernel's operand tiles live: `var<workgroup>` arrays, or (storage staging, see
 * `storageStaging`) a per-workgroup slice of the read-write scratch binding `scr`.
 */
export interface Staging {
  /** Module-scope WGSL declarations. */
  decl: string;
  /** Body prologue: the workgroup's slice base `SCR` in storage mode. */
  prologue: string;
  /** A WGSL reference to element `idx` of tile `name`. */
  at(name: string, idx: string): string;
  /** `at` bound to each of `names`, in order: `(idx) => WGSL reference` per tile. */
  refs<N extends string[]>(...names: N): { [K in keyof N]: (idx: string) => string };
  /** Orders staged writes before reads across the workgroup. */
  barrier: string;
  /** Scratch floats per workgroup (0 with workgroup memory). */
  perWorkgroup: number;
}

/**
 * Staging of `arrays`: workgroup memory, or (`storage`) slices of the read-write binding `buf` from the
 * WGSL offset `base` on (the scratch shares a binding with an output: SwiftShader in Chromium allows only
 * 10 storage buffers per stage).
 */
export function staging(storage: boolean, arrays: StagedArray[], buf = 'scr', base = '0u'): Staging {
  const withRef = (st: Omit<Staging, 'refs'>): Staging => ({
    ...st,
    refs: <N extends string[]>(...names: N) => names.map((name) => (idx: string) => st.at(name, idx)) as { [K in keyof N]: (idx: string) => string },
  });
  if (!storage) {
    return withRef({
      decl: arrays.map((a) => `var<workgroup> ${a.name}: array<f32, ${a.len}>;`).join('\n'),
      prologue: '',
      at: (name, idx) => `${name}[${idx}]`,
      barrier: 'workgroupBarrier();',
      perWorkgroup: 0,
    });
  }
  const off = new Map<string, number>();
  let n = 0;
  for (const a of arrays) {
    off.set(a.name, n);
    n += a.len;
  }
  return withRef({
    decl: '',
    prologue: `let SCR = ${base} + flat_wg * ${n}u;`,
    at: (name, idx) => `${buf}[SCR + ${off.get(name)!}u + (${idx})]`,
    barrier: 'workgroupBarrier();\n    storageBarrier();',
    perWorkgroup: n,
  });
}

/**
 * Cooperative staging of a `rows` × `cols` operand tile into staged tile `buf` (row stride
 * `stride`): entries where `ok(r, c)` is false are zero. `load(r, c)` is evaluated only where valid.
 */
export function stage(st: Staging, buf: string, rows: number, cols: number, stride: number, ok: (r: string, c: string) => string, load: (r: string, c: string) => string): string {
  return `for (var t = lidx; t < ${rows * cols}u; t = t + WG_SIZE) {
      let r_ = t / ${cols}u;
      let c_ = t % ${cols}u;
      var x_ = 0.0;
      if (${ok('r_', 'c_')}) { x_ = ${load('r_', 'c_')}; }
      ${st.at(buf, `r_ * ${stride}u + c_`)} = x_;
    }`;
}

/**
 * Register-blocked tile product: `acc[m * N + n] += Σ_kk a(m) · b(n)` for kk in [0, bound), where
 * `a(m)` / `b(n)` are WGSL expressions (workgroup-memory reads indexed by `kk`). The m×n block is
 * unrolled, so the accumulators stay in registers; only the kk loop is a loop.
 */
export function product(acc: string, M: number, N: number, bound: string, a: (m: number) => string, b: (n: number) => string): string {
  const lines: string[] = [];
  for (let m = 0; m < M; m++) lines.push(`let a${m}_ = ${a(m)};`);
  for (let n = 0; n < N; n++) lines.push(`let b${n}_ = ${b(n)};`);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) lines.push(`${acc}[${m * N + n}] = fma(a${m}_, b${n}_, ${acc}[${m * N + n}]);`);
  return `for (var kk = 0u; kk < ${bound}; kk = kk + 1u) {
      ${lines.join('\n      ')}
    }`;
}

/** `for` over the unrolled register indices: `body(m, n)` for every m < M, n < N. */
export function unroll(M: number, N: number, body: (m: number, n: number) => string): string {
  const out: string[] = [];
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) out.push(body(m, n));
  return out.join('\n    ');
}

/** Register layout of a thread in a tile: `tr_`, `tc_` (its row and column lane). */
/**
 * WGSL indices of a thread's register block inside a tile (after `lanes`): row `m` of the block is tile
 * row `tr_ + tr·m`, column `n` is tile column `tc_ + tc·n`.
 */
export function blockIndex(t: Tile): { row: (m: number) => string; col: (n: number) => string } {
  return { row: (m) => `tr_ + ${t.tr * m}u`, col: (n) => `tc_ + ${t.tc * n}u` };
}

/** WGSL that places this thread in the tile's `tr` × `tc` lane grid (`tr_`, `tc_`). */
export function lanes(t: Tile): string {
  return `let tc_ = lidx % ${t.tc}u;
  let tr_ = lidx / ${t.tc}u;`;
}


/** Checks that `floats` of one kernel's work buffer fit one storage binding of the adapter. */
export function checkWorkBuffer(floats: number, device: WebGPUDevice, what: string): void {
  const max = device.limits.maxStorageBufferBindingSize;
  if (4 * floats > max) {
    throw new WebattnError(
      'LIMIT_EXCEEDED',
      `query: ${what} needs a ${4 * floats}-byte work buffer on this adapter; maxStorageBufferBindingSize is ${max}: split the batch or heads over several calls`,
      { argument: 'query' },
    );
  }
}

/** Lane names of a vec4, in order. */
export const VEC_LANES = ['x', 'y', 'z', 'w'] as const;

/**
 * Cooperative staging of an operand tile TRANSPOSED as vec4 columns (the register kernels): `buf[e · stride + r4]`
 * holds rows 4·r4 .. 4·r4+3 of column e, for `groups` groups of 4 rows and `cols` columns, as `vec4<elem>`.
 * Entries where `ok(row, e)` is false are zero; `load(row, e)` (an f32 expression) is evaluated only where valid.
 */
export function stageColumns(buf: string, groups: number, cols: number, stride: number, elem: 'f32' | 'f16', ok: (row: string, e: string) => string, load: (row: string, e: string) => string): string {
  return `for (var t = lidx; t < ${groups * cols}u; t = t + WG_SIZE) {
      let e_ = t % ${cols}u;
      let r4_ = t / ${cols}u;
      var x_ = vec4<${elem}>(0.0);
      ${VEC_LANES.map((l, n) => `if (${ok(`4u * r4_ + ${n}u`, 'e_')}) { x_.${l} = ${elem}(${load(`4u * r4_ + ${n}u`, 'e_')}); }`).join('\n      ')}
      ${buf}[e_ * ${stride}u + r4_] = x_;
    }`;
}

/**
 * The 4×4 register block product of the register backward kernels: declares `acc0..acc3` (vec4, zero) and adds
 * `col[m] · row` for kk < `bound`, where `col` / `row` are vec4<f32> WGSL expressions of `kk` (a transposed
 * vec4 column of the thread's 4 rows and of its 4 columns): fma over kk in order, as the register forward does.
 */
export function blockProduct(acc: string, bound: string, col: string, row: string): string {
  return `${VEC_LANES.map((_, m) => `var ${acc}${m} = vec4<f32>(0.0);`).join(' ')}
    for (var kk = 0u; kk < ${bound}; kk = kk + 1u) {
      let c_ = ${col};
      let r_ = ${row};
      ${VEC_LANES.map((l, m) => `${acc}${m} = fma(vec4<f32>(c_.${l}), r_, ${acc}${m});`).join('\n      ')}
    }`;
}

/** `lse4` / `del4`: the forward's lse and delta of query rows `first`..+3 below `limit` (−∞ / 0 beyond). */
export function rowStats(first: string, limit: string): string {
  return `var lse4 = vec4<f32>(neg_inf());
    var del4 = vec4<f32>(0.0);
    ${VEC_LANES.map((l, n) => `if (${first} + ${n}u < ${limit}) { lse4.${l} = load_lse(lse_idx(b, h, ${first} + ${n}u)); del4.${l} = load_delta(lse_idx(b, h, ${first} + ${n}u)); }`).join('\n    ')}`;
}

/**
 * One (query i, key j) pair of a register backward block: from the scaled-by-`sc_` dot product `s`, dP `dp` and
 * the row's `lse` / `delta`, sets `pr` (P) and `dsr` (d loss / d raw score; times `dsScale`), zero where the pair
 * is out of range or masked. `extra` runs with `raw` and `ds` in scope (the dQ kernel's capture gradients).
 */
export function pairGrad(s: string, dp: string, ok: string, lse: string, delta: string, grad: string, dsScale: string, extra = ''): string {
  return `var pr = 0.0;
      var dsr = 0.0;
      // NaN by its bits beside the comparisons: the H100's driver took a NaN row's pairs for masked ones (dQ 0, not NaN)
      if (${ok} && (${lse} != neg_inf() || is_nan_f32(${lse}))) {
        let raw = ${s} * sc_;
        let x = finish_score(raw, b, h, i, j, !full_blk);
        if (x != neg_inf() || is_nan_f32(x)) {
          pr = exp(x - ${lse});
          let ds = pr * (${dp} - ${delta});
          ${extra}
          dsr = ${grad}${dsScale};
        }
      }`;
}

