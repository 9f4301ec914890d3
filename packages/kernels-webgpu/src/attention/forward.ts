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
import { run, useSubgroups, type ProgramSpec } from '../wgsl.js';
import {
  cacheKey, checkGrid, chunkValues, commonUniforms, commonValues, dimClass, dims, forcedRegisterTile, headDims, inputBindings, inputTensors, passes, pickTile, registerForward, storageStaging,
  type FlashParams, type Tile,
} from './plan.js';
import { blockIndex, blockLoop, checkWorkBuffer, kvRange, lanes, product, scoreHelpers, stage, staging, unroll } from './shared.js';
import { vec4Layout } from './forward-sgmat.js';
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
  if (registerForward(p)) {
    const rt = pickRegisterTile(device, EC, EVC, halfStaging(p) ? 2 : 4, !!p.blocks);
    if (rt) {
      forwardRegisters(p, rt, out, lse);
      return { out, lse };
    }
  }
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

/** A thread grid of the register forward: `tr` × `tc` threads, each owning 4×4 scores. */
interface RegisterGrid {
  tr: number;
  tc: number;
  /** Groups of 4 query rows per thread (1 or 2; default 1): 4·tr·rv rows per workgroup. */
  rv?: number;
  /** K and V take turns in one workgroup buffer (V staged after S): when separate buffers do not fit. */
  shared?: boolean;
  /** Load the next key tile (and this tile's V) into registers while S is computed; default where registers allow. */
  prefetch?: boolean;
  /**
   * Head-dim chunk of Q·Kᵀ (a divisor of the head-dim class): Q and K are staged `qk` columns at a time, Q re-read
   * (from cache) for every key tile, so Q no longer holds 4·tr·rv × E floats of workgroup memory for the whole
   * kernel; the next chunk is loaded into registers while the current one is multiplied. Default: whole head dim.
   */
  qk?: number;
  /**
   * Row strides of the transposed staging (Kᵀ, Pᵀ, and Qᵀ when chunked) one vec4 longer than the rows they hold, so that a
   * subgroup's stores of one key tile (consecutive head-dim columns, one row each) spread over the 32
   * workgroup-memory banks instead of all hitting the same four (NVIDIA: a 32-way conflict per store).
   */
  pad?: boolean;
  /** The end-of-kernel NaN-flag exchange reuses the row-sum buffer (bit casts, two more barriers once): 2 KiB less workgroup memory. */
  lean?: boolean;
  /** Groups of 4 keys per thread (default 1): 4·tc·kw keys per tile, each thread scoring 4·rv rows × 4·kw keys. */
  kw?: number;
  /**
   * K and V read from storage as 4-element vectors where their layout allows (head dims multiples of 4, contiguous
   * along them, 4-aligned offsets and strides; Q·Kᵀ not chunked): a 4×4 block of K per load group, transposed in
   * registers. The software grids' choice: llvmpipe reads storage lane by lane, one loop per load whatever its width.
   */
  ld4?: boolean;
  /**
   * Software adapters, calls of at least `qr` scores (query rows × heads × keys): each thread copies its Qᵀ columns
   * from workgroup memory into registers once, and Q·Kᵀ runs unrolled over the head-dim class (one workgroup-memory
   * load per head-dim column instead of 1 + rv). Its pipeline compiles 2-3x longer, so smaller calls keep the loop.
   */
  qr?: number;
}

/**
 * Thread grids of software adapters (llvmpipe runs a workgroup as SIMD vectors on one core): few threads with
 * 8-row blocks (llvmpipe, B=1 H=4 L=1024 E=64 f32: 8x4 rv2 168 ms, 4x4 rv2 211, 4x8 rv2 222, 8x8 rv2 268,
 * 16x4 rv2 270, 8x8 rv1 296; the staged forward 312; TF.js-WebGPU 454), K and V read as vec4 (`ld4`: llvmpipe
 * (Mesa 22.3) runs every storage or workgroup-memory load as a loop over the SIMD lanes, one loop per load whatever
 * its width; lvp_probe.mjs, interleaved, 9 rounds, load avg ~10: 783 → 632 ms median, TF.js 1891), and from 4M
 * scores per call up Q held in registers (`qr`, unrolled Q·Kᵀ: 232 → 184 ms median on top of ld4, 8 of 9 rounds
 * faster, TF.js 804, load ~5; for 2-3x the LLVM compile: ~25 s cold at load 5, 137 s at load 12). Tried and lost:
 * one query row per invocation with K/V read at invocation-uniform addresses (5x slower: such loads are per-lane
 * loops too; 78 s of compile), Q in a private array (-7%), 8 keys per thread (4x4 rv2 kw2, 6x4 and 7x4 rv2 kw2 with
 * K/V in one buffer: within noise of 8x4 rv2, 200-207 ms), 4x4 rv2 (227), K/V in one buffer (196 vs 200).
 */
const SOFTWARE_GRIDS: RegisterGrid[] = [
  { tr: 8, tc: 4, rv: 2, ld4: true, qr: 2 ** 22 },
  { tr: 4, tc: 4, rv: 2, ld4: true },
  { tr: 8, tc: 4, ld4: true },
  { tr: 4, tc: 4, ld4: true },
];

/** Thread grids of the register forward on hardware GPUs, best first. */
const REGISTER_GRIDS: RegisterGrid[] = [
  { tr: 16, tc: 8 },
  { tr: 8, tc: 8 },
  { tr: 16, tc: 4 },
  { tr: 8, tc: 4 },
  { tr: 4, tc: 4 },
];

/**
 * Workgroup memory of the register forward (bytes): Qᵀ, Kᵀ, V (vec4 of f32, or of f16 for float16 operands:
 * `qkvBytes` 2) and Pᵀ as vec4 columns, and two row-reduction slots per thread.
 */
function registerBytes(g: RegisterGrid, EC: number, EVC: number, qkvBytes = 4): number {
  const kc = g.tc * (g.kw ?? 1);
  const BC = 4 * kc;
  const trq = g.tr * (g.rv ?? 1);
  const QK = Math.min(g.qk ?? EC, EC);
  const pad = g.pad ? 1 : 0;
  const kv = g.shared ? Math.max(QK * (kc + pad), BC * (EVC / 4)) : QK * (kc + pad) + BC * (EVC / 4);
  // Qᵀ, staged once unless chunked, stays unpadded when whole
  return 4 * qkvBytes * (QK * (trq + (QK < EC ? pad : 0)) + kv) + 16 * (BC * (trq + pad) + (g.lean ? 1 : 2) * trq * g.tc) + 64;
}

/**
 * The register forward's thread grid for head-dim classes EC/EVC on `device` (forced by
 * `setFlashRegisterTile` where it fits), or null when none fits (the staged forward then runs).
 * Each thread owns ≤ 4 vec4 of the output row block (EVC/4 divisible by `tc`).
 */
function pickRegisterTile(device: WebGPUDevice, EC: number, EVC: number, qkvBytes: number, blocks: boolean): RegisterGrid | null {
  const budget = device.limits.maxComputeWorkgroupStorageSize;
  // at most 8 output vec4 per row and 32 accumulator vec4 per thread (wider head dims take the staged forward);
  // block-sparse tables are per 64 query rows: a workgroup must not straddle two
  // a head-dim chunk divides the head-dim class and keeps K and V apart
  const chunkOk = (g: RegisterGrid) => g.qk === undefined || g.qk >= EC || (g.qk >= 4 && EC % g.qk === 0 && !g.shared);
  const fits = (g: RegisterGrid) =>
    chunkOk(g) && EVC / 4 >= g.tc && (EVC / 4) % g.tc === 0 && EVC / 4 / g.tc <= 8 && (EVC / 4 / g.tc) * (g.rv ?? 1) <= 8 &&
    (!blocks || 4 * g.tr * (g.rv ?? 1) <= 64) && registerBytes(g, EC, EVC, qkvBytes) <= budget &&
    g.tr * g.tc <= device.limits.maxComputeInvocationsPerWorkgroup;
  // separate K and V buffers where they fit, else K and V taking turns in one
  const place = (g: RegisterGrid): RegisterGrid | null => {
    for (const shared of g.shared === undefined ? [false, true] : [g.shared]) if (fits({ ...g, shared })) return { ...g, shared };
    return null;
  };
  const forced = forcedRegisterTile();
  const f = forced ? place(forced) : null;
  if (f) return f;
  // float16 operands: 256 threads over 128 query rows first (H100, Dawn/Vulkan, sustained 1980 MHz, f16 E=64:
  // 2.21 vs 3.62 ms at B=8 H=16 L=1024, 2.11 vs 3.48 ms ViT B=128 L=196, 3.97 vs 5.76 ms B=1 L=4096 against
  // 16x8; for f32 E=64 the two were equal, and 32x8 does not fit f32 Q tiles of E=64)
  // float32 at head dims of class 128: 128 threads over 64 query rows with Q·Kᵀ in head-dim chunks of 32 first (a
  // Q tile of 64 rows × 128 f32 alone is 32 KiB; held whole, only 8x8 with K/V sharing one buffer fits 48 KiB). H100,
  // Dawn/Vulkan, f32 B=8 H=16 L=1024 E=128: 5.54 vs 7.82 ms (8x8 shared), causal 3.42 vs 4.44; chunks of 16: 5.96.
  // At E=64 the chunks lost (B=1 L=4096 5.41 vs 3.61 ms, ViT 2.78 vs 2.24): there the whole Q tile fits.
  // Then 256 threads over 128 query rows with chunks of 16 (padded, NaN flags through the row-sum buffer: 48 KiB at
  // E=128) where it fits: H100, same call, f32 B=8 H=16 L=1024 E=128 3.704 vs 5.576 ms (16x8 chunks of 32, padded),
  // TF.js-WebGPU 5.74; at E=64 the same grid tied with 16x8 (ViT 1.991 vs 2.052, B=8 L=1024 2.077 vs 2.030, B=1
  // L=4096 3.776 vs 3.505 ms), and 128 rows over 128 threads (32x4, 16x4 rv2, K/V in one buffer or chunks of 32) lost.
  const chunkedF32: RegisterGrid[] = qkvBytes === 4 && EC >= 128 ? [{ tr: 32, tc: 8, qk: 16, lean: true }, { tr: 16, tc: 8, qk: 32 }] : [];
  const list = device.info.software ? SOFTWARE_GRIDS : qkvBytes === 2 ? [{ tr: 32, tc: 8 }, ...REGISTER_GRIDS] : [...chunkedF32, ...REGISTER_GRIDS];
  // float32 on hardware GPUs: staging rows padded against bank conflicts. H100 (Dawn/Vulkan, f32, fwd_probe.mjs, one
  // call, 3 interleaved rounds, medians, 16x8 without → with padding): ViT B=128 H=16 L=196 E=64 2.147 → 1.931 ms,
  // B=8 H=16 L=1024 E=64 2.093 → 1.951, B=1 H=16 L=4096 E=64 3.905 → 3.359, B=8 H=16 L=4096 E=64 25.67 → 23.51,
  // E=128 (16x8, chunks of 32) 5.821 → 5.613; TF.js-WebGPU unfused in the same process 3.96 / 3.72 / 7.24 / - / 7.22.
  // `lean` on top: 1.952 / 1.875 / 3.317 / 23.68 / 5.80 (noise); 8x8 with padding: 3.58 / 3.88 / 7.05 / 51.6 / 11.2.
  // Less workgroup memory did not pay (H100, GPU time per call by timestamp queries, 16x8 padded → variant, ViT / B=8 L=1024 /
  // B=1 L=4096 / B=8 L=4096): Pᵀ in the K buffer (one more barrier per tile; commit f37a3cb) 1.567 → 1.675 / 1.563 → 1.730 /
  // 2.948 → 3.256 / 22.92 → 24.84 ms; P·V from subgroup-shuffled P (no Pᵀ buffer) 1.562 → 1.826 / 1.563 → 1.896 / 2.947 → 3.640
  // / 22.88 → 27.66; lean ties (1.564 / 1.568 / 2.955 / 22.90). docs/benchmarks/2026-11-25-h100-fwd3-probe-call*.json.
  const tuned = (g: RegisterGrid): RegisterGrid => (!device.info.software && qkvBytes === 4 ? { pad: true, ...g } : g);
  for (const g of list) {
    const x = place(tuned(g));
    if (x) return x;
  }
  return null;
}

const LANE = ['x', 'y', 'z', 'w'];

/**
 * Float16 q, k and v are staged as f16 in the register forward (half the workgroup memory and its
 * traffic; exact, since every f16 is an f32), widened to f32 where they are multiplied.
 */
function halfStaging(p: FlashParams): boolean {
  return p.q.dtype === 'float16' && p.k.dtype === 'float16' && p.v.dtype === 'float16';
}

/**
 * The register forward (hardware GPUs): a workgroup of TR × TC threads owns 4·TR query rows; per tile of
 * 4·TC keys thread (tr, tc) computes the 4×4 scores of rows 4tr.. and keys 4tc.. in registers from Qᵀ and Kᵀ
 * staged as vec4 columns (two 16-byte reads per 16 FMAs), applies scale, masks, hooks and NaN detection to
 * them in registers, takes the row maximum through one workgroup-memory exchange, and keeps its online
 * softmax (running max, PARTIAL row sum) in registers: the row sums and NaN flags are combined once at the
 * end. P goes to workgroup memory transposed, once, for O += P·V, where the thread owns 4 rows × 4·ON output
 * columns as vec4 accumulators.
 */
function forwardRegisters(p: FlashParams, g: RegisterGrid, out: Tensor, lse: Tensor): void {
  const d = dims(p);
  const device = p.q.device as WebGPUDevice;
  const EC = dimClass(d.E);
  const EVC = dimClass(d.Ev);
  const { tr: TR, tc: TC } = g;
  // RV groups of 4 rows per thread: thread tr_ owns rows 4·(tr_ + TR·v) .. +3 for v < RV
  const RV = g.rv ?? 1;
  const TRQ = TR * RV;
  const BR = 4 * TRQ;
  // KW groups of 4 keys per thread: thread tc_ scores keys 4·(tc_ + TC·w) .. +3 for w < KW
  const KW = g.kw ?? 1;
  const KC = TC * KW;
  const W = Array.from({ length: KW }, (_, w) => w);
  const BC = 4 * KC;
  const EV4 = EVC / 4;
  const ON = EV4 / TC;
  const WG = TR * TC;
  const hd = headDims(p);
  const R = [0, 1, 2, 3];
  const V = Array.from({ length: RV }, (_, v) => v);
  const M = Array.from({ length: 4 * RV }, (_, m) => m);
  // staged element type, and the f32 view of a staged vec4
  const half = halfStaging(p);
  const ST = half ? 'f16' : 'f32';
  // subgroups: the row maximum by shuffles among the row's TC lanes (no barrier, no workgroup memory); with
  // K and V sharing a buffer the barrier stays (V replaces K after it), and so does the exchange
  const shared = !!g.shared;
  const sg = useSubgroups(device) && !shared;
  // head-dim chunk of Q·Kᵀ: QK = EC keeps Q staged for the whole kernel; QK < EC stages Q and K chunk by chunk
  const QK = Math.min(g.qk ?? EC, EC);
  const chunked = QK < EC;
  // per-thread registers of one staged K tile or chunk (NK vec4), Q chunk (NQ) and V tile (NV vec4); prefetching
  // keeps K and V live (chunked: the next chunk is always loaded during the current one; prefetch adds V and the
  // next tile's first chunk)
  // ld4: K as 4×4 blocks (4 keys × 4 head-dim columns, NB blocks per thread, 4 registers each), V as vec4 rows
  const ld4 = !!g.ld4 && !chunked && !half && vec4Layout(p.k, !!p.varlen) && vec4Layout(p.v, !!p.varlen) && d.E % 4 === 0 && d.Ev % 4 === 0;
  const NB = Math.ceil((QK * KC) / 4 / WG);
  const NK = ld4 ? 4 * NB : Math.ceil((QK * KC) / WG);
  const NQ = chunked ? Math.ceil((QK * TRQ) / WG) : 0;
  const NV = Math.ceil((BC * EV4) / WG);
  const prefetch = (g.prefetch ?? true) && (chunked ? (NQ + NK + NV) * (half ? 2 : 4) <= 64 : (NK + NV) * (half ? 2 : 4) <= 32);
  const kvName = (x: 'k' | 'v') => (shared ? 'fkv_' : `f${x}_`);
  // row strides (vec4) of Kᵀ, Qᵀ and Pᵀ: one longer when padded against bank conflicts
  const KS = KC + (g.pad ? 1 : 0);
  const QS = TRQ + (g.pad && chunked ? 1 : 0);
  const PS = TRQ + (g.pad ? 1 : 0);
  const lean = !!g.lean;
  const xorSteps: number[] = [];
  for (let w = TC / 2; w >= 1; w /= 2) xorSteps.push(w);
  const wide = (x: string) => (half ? `vec4<f32>(${x})` : x);
  const rep = (f: (m: number) => string, sep = '\n    ') => R.map(f).join(sep);
  const perV = (f: (v: number) => string, sep = '\n    ') => V.map(f).join(sep);
  const perM = (f: (m: number) => string, sep = '\n    ') => M.map(f).join(sep);
  // score registers of row m, key group w, and the first key of group w (the names of one group when KW = 1)
  const sv = (m: number, w: number) => (KW === 1 ? `s${m}` : `s${m}_${w}`);
  const jbv = (w: number) => (KW === 1 ? 'jb' : `jb${w}`);
  const perMW = (f: (m: number, w: number) => string, sep = '\n    ') => M.flatMap((m) => W.map((w) => f(m, w))).join(sep);
  // row m of the thread: group v = m >> 2, lane m & 3
  const rowOf = (m: number) => `ib${m >> 2} + ${m & 3}u`;
  const lane = (m: number) => LANE[m & 3]!;
  const outCols = (m: number, f: (col: string, val: string) => string) =>
    Array.from({ length: ON }, (_, o) =>
      R.map((c) => `if (4u * (tc_ + ${TC * o}u) + ${c}u < ${hd.ev}) { ${f(`4u * (tc_ + ${TC * o}u) + ${c}u`, `acc[${m * ON + o}].${LANE[c]}`)} }`).join('\n        '),
    ).join('\n        ');
  const guard = (n: number, total: number, x: string) => (n * WG + WG > total ? `if (lidx + ${n * WG}u < ${total}u) { ${x} }` : x);
  // K tile (chunk from column e0) at key j into kr_: kr_[u] holds keys 4·c4 .. 4·c4+3 of column e, t = lidx + u·WG = c4·QK + e
  // ld4: block t = lidx + u·WG = c4·(QK/4) + e4 holds keys 4·c4 .. +3 × columns 4·e4 .. +3; kr_[4u + c] = column 4·e4 + c
  const loadK4 = (j: string) =>
    Array.from({ length: NB }, (_, u) =>
      guard(u, (QK * KC) / 4, `{
        let t = lidx + ${u * WG}u;
        let e = 4u * (t % ${QK / 4}u);
        let c4 = t / ${QK / 4}u;
        ${R.map((n) => `var r${n} = vec4<f32>(0.0);
        if (${j} + 4u * c4 + ${n}u < j_hi && e < ${hd.e}) { r${n} = k[k_at(b, hk, ${j} + 4u * c4 + ${n}u, e) / 4u]; }`).join('\n        ')}
        ${R.map((c) => `kr_[${4 * u + c}] = vec4<f32>(r0.${LANE[c]}, r1.${LANE[c]}, r2.${LANE[c]}, r3.${LANE[c]});`).join('\n        ')}
      }`),
    ).join('\n    ');
  const storeK4 = Array.from({ length: NB }, (_, u) =>
    guard(u, (QK * KC) / 4, `{ let t = lidx + ${u * WG}u; let e = 4u * (t % ${QK / 4}u); let c4 = t / ${QK / 4}u; ${R.map((c) => `${kvName('k')}[(e + ${c}u) * ${KS}u + c4] = kr_[${4 * u + c}];`).join(' ')} }`),
  ).join('\n    ');
  const loadK = (j: string, e0 = '') =>
    ld4 ? loadK4(j) : Array.from({ length: NK }, (_, u) =>
      guard(u, QK * KC, `{
        let t = lidx + ${u * WG}u;
        let e = ${e0 ? `${e0} + ` : ''}t % ${QK}u;
        let c4 = t / ${QK}u;
        var x = vec4<${ST}>(0.0);
        if (e < ${hd.e}) {
          ${R.map((n) => `if (${j} + 4u * c4 + ${n}u < j_hi) { x.${LANE[n]} = ${ST}(load_k(k_at(b, hk, ${j} + 4u * c4 + ${n}u, e))); }`).join('\n          ')}
        }
        kr_[${u}] = x;
      }`),
    ).join('\n    ');
  const storeK = ld4 ? storeK4 : Array.from({ length: NK }, (_, u) => guard(u, QK * KC, `{ let t = lidx + ${u * WG}u; ${kvName('k')}[(t % ${QK}u) * ${KS}u + t / ${QK}u] = kr_[${u}]; }`)).join('\n    ');
  // V tile at key j into vr_: t = jj·EV4 + e4 holds row jj, columns 4·e4 .. 4·e4+3
  const loadV = (j: string) =>
    Array.from({ length: NV }, (_, u) =>
      guard(u, BC * EV4, `{
        let t = lidx + ${u * WG}u;
        let jj = t / ${EV4}u;
        let e4 = t % ${EV4}u;
        var x = vec4<${ST}>(0.0);
        ${ld4 ? `if (${j} + jj < j_hi && 4u * e4 < ${hd.ev}) { x = v[v_at(b, hk, ${j} + jj, 4u * e4) / 4u]; }` : `if (${j} + jj < j_hi) {
          ${R.map((c) => `if (4u * e4 + ${c}u < ${hd.ev}) { x.${LANE[c]} = ${ST}(load_v(v_at(b, hk, ${j} + jj, 4u * e4 + ${c}u))); }`).join('\n          ')}
        }`}
        vr_[${u}] = x;
      }`),
    ).join('\n    ');
  const storeV = Array.from({ length: NV }, (_, u) => guard(u, BC * EV4, `${kvName('v')}[lidx + ${u * WG}u] = vr_[${u}];`)).join('\n    ');
  // Q element (row r, column e) as staged: pre-scaled f32, or the exact f16
  const qVal = (r: string, e: string) => (half ? `f16(load_q(q_at(b, h, ${r}, ${e})))` : `load_q(q_at(b, h, ${r}, ${e})) * u_scale()`);
  // Q chunk from column e0 into qr_: qr_[u] holds rows 4·r4 .. 4·r4+3 of column e, t = lidx + u·WG = r4·QK + e
  const loadQ = (e0: string) =>
    Array.from({ length: NQ }, (_, u) =>
      guard(u, QK * TRQ, `{
        let t = lidx + ${u * WG}u;
        let e = ${e0} + t % ${QK}u;
        let r4 = t / ${QK}u;
        var x = vec4<${ST}>(0.0);
        if (e < ${hd.e}) {
          ${R.map((m) => `if (q0 + 4u * r4 + ${m}u < LQ) { x.${LANE[m]} = ${qVal(`q0 + 4u * r4 + ${m}u`, 'e')}; }`).join('\n          ')}
        }
        qr_[${u}] = x;
      }`),
    ).join('\n    ');
  const storeQ = Array.from({ length: NQ }, (_, u) => guard(u, QK * TRQ, `{ let t = lidx + ${u * WG}u; fq_[(t % ${QK}u) * ${QS}u + t / ${QK}u] = qr_[${u}]; }`)).join('\n    ');
  // qr: Q in registers (qa<e>_<v>: rows of group v, column e), Q·Kᵀ unrolled over the head-dim class; the staged K
  // and Q columns past the head dim are zeros and fma(0, 0, s) = s, so the sums are those of \`dots\` bit for bit
  const qr = g.qr !== undefined && (p.varlen ? d.TQ : d.B * d.Lq) * d.Hq * d.Lkv >= g.qr && !chunked;
  const dotsQ = () =>
    Array.from({ length: EC }, (_, kk) => `{
      ${W.map((w) => `let k4${KW === 1 ? '' : `_${w}`} = ${wide(`${kvName('k')}[${kk * KS}u + tc_${w ? ` + ${TC * w}u` : ''}]`)};`).join('\n      ')}
      ${perMW((m, w) => `${sv(m, w)} = fma(vec4<f32>(qa${kk}_${m >> 2}.${lane(m)}), k4${KW === 1 ? '' : `_${w}`}, ${sv(m, w)});`, '\n      ')}
    }`).join('\n    ');
  // S += Q·Kᵀ over the staged columns 0 .. n
  const dots = (n: string) => `for (var kk = 0u; kk < ${n}; kk = kk + 1u) {
      ${W.map((w) => `let k4${KW === 1 ? '' : `_${w}`} = ${wide(`${kvName('k')}[kk * ${KS}u + tc_${w ? ` + ${TC * w}u` : ''}]`)};`).join('\n      ')}
      ${perV((v) => `let a${v} = ${wide(`fq_[kk * ${QS}u + tr_ + ${TR * v}u]`)};`, '\n      ')}
      ${perMW((m, w) => `${sv(m, w)} = fma(vec4<f32>(a${m >> 2}.${lane(m)}), k4${KW === 1 ? '' : `_${w}`}, ${sv(m, w)});`, '\n      ')}
    }`;
  // chunked Q·Kᵀ: per chunk, the staged registers go to workgroup memory and the next chunk (or the next tile's
  // first one) is loaded while this one is multiplied
  const chunkLoop = Array.from({ length: EC / QK }, (_, c) => {
    const last = c === EC / QK - 1;
    const next = last
      ? prefetch
        ? `if (j0 + ${BC}u < j_hi) {
      ${loadQ('0u')}
      ${loadK(`(j0 + ${BC}u)`, '0u')}
      pre_j = j0 + ${BC}u;
    }`
        : ''
      : `${loadQ(`${(c + 1) * QK}u`)}
    ${loadK('j0', `${(c + 1) * QK}u`)}`;
    return `// head-dim chunk ${c}
    ${c > 0 ? 'workgroupBarrier();' : ''}
    ${storeQ}
    ${storeK}
    workgroupBarrier();
    ${next}
    ${c === 0 && prefetch ? `// this tile's V, loaded while S is computed
    ${loadV('j0')}` : ''}
    ${dots(`${QK}u`)}`;
  }).join('\n    ');
  const body = `
  ${tileOrigin(p, 'q', BR)}
  let tc_ = lidx % ${TC}u;
  let tr_ = lidx / ${TC}u;
${kvRange(p, BR)}${sg ? `
  // the shuffles need each row's ${TC} threads to be consecutive lanes of one subgroup (lanes numbered as
  // local_invocation_index, as on NVIDIA/AMD/Intel); WGSL does not promise it, so it is checked, and any
  // subgroup where it fails sends the whole workgroup down the workgroup-memory exchange
  let lanes_ok = subgroupAll(SG_LANE == lidx % SG_SIZE);
  let sg_fit = (SG_SIZE % ${TC}u == 0u) & lanes_ok;
  if (lidx == 0u) { wg_nosg = 0u; }
  workgroupBarrier();
  if (!sg_fit) { wg_nosg = 1u; }
  let use_sg = workgroupUniformLoad(&wg_nosg) == 0u;` : ''}
  // Qᵀ: fq_[e · TRQ + r4] holds rows 4·r4 .. 4·r4+3 of column e. f32: pre-scaled, and the dot products run
  // in the same order as the backward kernels' (fma over e), so the backward's recomputed scores match the
  // lse bit for bit (at ×30 input magnitudes another rounding moved dV by 0.3%). f16: staged exactly, the
  // scale multiplies the dot products.
  ${chunked ? '// (chunked: staged per key tile, chunk by chunk)' : `for (var t = lidx; t < ${EC * TRQ}u; t = t + WG_SIZE) {
    let e = t % ${EC}u;
    let r4 = t / ${EC}u;
    var x = vec4<${ST}>(0.0);
    if (e < ${hd.e}) {
      ${rep((m) => `if (q0 + 4u * r4 + ${m}u < LQ) { x.${LANE[m]} = ${qVal(`q0 + 4u * r4 + ${m}u`, 'e')}; }`, '\n      ')}
    }
    fq_[e * ${QS}u + r4] = x;
  }`}${qr ? `
  workgroupBarrier();
  ${Array.from({ length: EC }, (_, kk) => perV((v) => `let qa${kk}_${v} = ${wide(`fq_[${kk * QS}u + tr_ + ${TR * v}u]`)};`, ' ')).join('\n  ')}` : ''}
  ${perV((v) => `let ib${v} = q0 + 4u * (tr_ + ${TR * v}u);
  var m_run${v} = vec4<f32>(neg_inf());
  var l_run${v} = vec4<f32>(0.0);
  var bad${v} = vec4<u32>(0u);`, '\n  ')}
  var acc: array<vec4<f32>, ${4 * RV * ON}>;
  if (u_c_first() == 0u) {
    // continue the previous pass over keys: its row max for every thread, its sum and NaN flag once per row
    ${perM((m) => `if (${rowOf(m)} < LQ) {
      let row = lse_idx(b, h, ${rowOf(m)});
      m_run${m >> 2}.${lane(m)} = load_mlb(row * 3u);
      if (tc_ == 0u) { l_run${m >> 2}.${lane(m)} = load_mlb(row * 3u + 1u); bad${m >> 2}.${lane(m)} = u32(load_mlb(row * 3u + 2u) != 0.0); }
        ${outCols(m, (col, val) => `${val} = load_accb(row * u_ev() + ${col});`)}
    }`)}
  }
  var kr_: array<vec4<${ST}>, ${NK}>;
  var vr_: array<vec4<${ST}>, ${NV}>;${chunked ? `
  var qr_: array<vec4<${ST}>, ${NQ}>;` : ''}
  var pre_j = 0xffffffffu;
  ${blockLoop(p, 'kv', BC, `${chunked ? `
    workgroupBarrier();
    // the first chunk of Q and K${prefetch ? ' (prefetched during the previous tile unless a new range starts here)' : ''}
    ${prefetch ? `if (pre_j != j0) {
      ${loadQ('0u')}
      ${loadK('j0', '0u')}
    }` : `${loadQ('0u')}
    ${loadK('j0', '0u')}
    // V as vec4 rows
    ${loadV('j0')}
    ${storeV}`}
    ${perMW((m, w) => `var ${sv(m, w)} = vec4<f32>(0.0);`)}
    ${chunkLoop}` : `
    workgroupBarrier();
    // Kᵀ as vec4 columns of 4 keys${prefetch ? ' (prefetched into registers during the previous tile unless a new range starts here)' : ''}
    ${prefetch ? `if (pre_j != j0) {
      ${loadK('j0')}
    }` : loadK('j0')}
    ${storeK}
    ${!shared && !prefetch ? `// V as vec4 rows
    ${loadV('j0')}
    ${storeV}` : ''}
    workgroupBarrier();
    ${prefetch ? `// this tile's V and the next key tile, loaded while S is computed
    ${loadV('j0')}
    if (j0 + ${BC}u < j_hi) {
      ${loadK(`(j0 + ${BC}u)`)}
      pre_j = j0 + ${BC}u;
    }` : ''}
    ${perMW((m, w) => `var ${sv(m, w)} = vec4<f32>(0.0);`)}
    ${qr ? dotsQ() : dots(hd.e)}`}
    ${KW === 1 ? 'let jb = j0 + 4u * tc_;' : W.map((w) => `let ${jbv(w)} = j0 + 4u * (tc_ + ${TC * w}u);`).join('\n    ')}
    let sc_ = ${half ? 'u_scale()' : '1.0'};
    ${perMW((m, w) => R.map((n) => `{
      var x = select(neg_inf(), finish_score(${sv(m, w)}.${LANE[n]} * sc_, b, h, min(${rowOf(m)}, LQ - 1u), min(${jbv(w)} + ${n}u, j_hi - 1u), !full_blk), (${rowOf(m)} < LQ) & (${jbv(w)} + ${n}u < j_hi));
      // NaN found by its bits (drivers fold x != x and max() may drop NaN): the row's output becomes NaN
      let nan_ = is_nan_f32(x);
      bad${m >> 2}.${lane(m)} = bad${m >> 2}.${lane(m)} | u32(nan_);
      ${sv(m, w)}.${LANE[n]} = select(x, neg_inf(), nan_);
    }`).join(' '))}
    ${perV((v) => `let lmx${v} = vec4<f32>(${rep((c) => W.map((w) => `max(max(${sv(4 * v + c, w)}.x, ${sv(4 * v + c, w)}.y), max(${sv(4 * v + c, w)}.z, ${sv(4 * v + c, w)}.w))`).reduce((a, b) => `max(${a}, ${b})`), ', ')});
    var mx${v} = m_run${v};`)}
    ${sg ? `if (use_sg) {
      ${perV((v) => `var r${v}_ = lmx${v};
      ${xorSteps.map((w) => `r${v}_ = max(r${v}_, subgroupShuffleXor(r${v}_, ${w}u));`).join('\n      ')}
      mx${v} = max(mx${v}, r${v}_);`, '\n      ')}
    } else {
      ` : ''}${perV((v) => `fr_[lidx * ${RV}u + ${v}u] = lmx${v};`)}
    workgroupBarrier();
    ${perV((v) => Array.from({ length: TC }, (_, c) => `mx${v} = max(mx${v}, fr_[(tr_ * ${TC}u + ${c}u) * ${RV}u + ${v}u]);`).join('\n    '))}${sg ? '\n    }' : ''}
    ${shared ? `// every thread is past S (the barrier above): V replaces K
    ${prefetch ? '' : loadV('j0')}
    ${storeV}` : prefetch ? storeV : ''}
    // a row that saw only -inf so far keeps zero state (fully masked rows give 0, as PyTorch flash)
    ${perV((v) => `let live${v} = mx${v} != vec4<f32>(neg_inf());
    let alpha${v} = select(vec4<f32>(1.0), exp(m_run${v} - mx${v}), live${v});
    m_run${v} = mx${v};`)}
    ${perMW((m, w) => `${sv(m, w)} = select(vec4<f32>(0.0), exp(${sv(m, w)} - vec4<f32>(mx${m >> 2}.${lane(m)})), live${m >> 2}.${lane(m)});`)}
    ${perV((v) => `l_run${v} = l_run${v} * alpha${v} + vec4<f32>(${rep((c) => W.map((w) => `${sv(4 * v + c, w)}.x + ${sv(4 * v + c, w)}.y + ${sv(4 * v + c, w)}.z + ${sv(4 * v + c, w)}.w`).join(' + '), ', ')});`)}
    ${W.map((w) => perV((v) => rep((n) => `fp_[(${jbv(w)} - j0 + ${n}u) * ${PS}u + tr_ + ${TR * v}u] = vec4<f32>(${sv(4 * v, w)}.${LANE[n]}, ${sv(4 * v + 1, w)}.${LANE[n]}, ${sv(4 * v + 2, w)}.${LANE[n]}, ${sv(4 * v + 3, w)}.${LANE[n]});`))).join('\n    ')}
    ${M.map((m) => Array.from({ length: ON }, (_, o) => `acc[${m * ON + o}] = acc[${m * ON + o}] * alpha${m >> 2}.${lane(m)};`).join(' ')).join('\n    ')}
    workgroupBarrier();
    for (var kk = 0u; kk < ${BC}u; kk = kk + 1u) {
      ${perV((v) => `let pa${v} = fp_[kk * ${PS}u + tr_ + ${TR * v}u];`, '\n      ')}
      ${Array.from({ length: ON }, (_, o) => `{
        let vv = ${wide(`${kvName('v')}[kk * ${EV4}u + tc_ + ${TC * o}u]`)};
        ${perM((m) => `acc[${m * ON + o}] = fma(vec4<f32>(pa${m >> 2}.${lane(m)}), vv, acc[${m * ON + o}]);`, '\n        ')}
      }`).join('\n      ')}
    }
`)}
  // the row sums and NaN flags, partial per thread, combined once
  workgroupBarrier();
  ${lean ? `${perV((v) => `fr_[lidx * ${RV}u + ${v}u] = l_run${v};`, '\n  ')}
  workgroupBarrier();
  ${perV((v) => `var l${v} = vec4<f32>(0.0);
  ${Array.from({ length: TC }, (_, c) => `l${v} = l${v} + fr_[(tr_ * ${TC}u + ${c}u) * ${RV}u + ${v}u];`).join('\n  ')}`, '\n  ')}
  // the NaN flags through the same buffer, as bits
  workgroupBarrier();
  ${perV((v) => `fr_[lidx * ${RV}u + ${v}u] = bitcast<vec4<f32>>(bad${v});`, '\n  ')}
  workgroupBarrier();
  ${perV((v) => `var bd${v} = vec4<u32>(0u);
  ${Array.from({ length: TC }, (_, c) => `bd${v} = bd${v} | bitcast<vec4<u32>>(fr_[(tr_ * ${TC}u + ${c}u) * ${RV}u + ${v}u]);`).join('\n  ')}`, '\n  ')}` : `${perV((v) => `fr_[lidx * ${RV}u + ${v}u] = l_run${v};
  ff_[lidx * ${RV}u + ${v}u] = bad${v};`, '\n  ')}
  workgroupBarrier();
  ${perV((v) => `var l${v} = vec4<f32>(0.0);
  var bd${v} = vec4<u32>(0u);
  ${Array.from({ length: TC }, (_, c) => `l${v} = l${v} + fr_[(tr_ * ${TC}u + ${c}u) * ${RV}u + ${v}u]; bd${v} = bd${v} | ff_[(tr_ * ${TC}u + ${c}u) * ${RV}u + ${v}u];`).join('\n  ')}`, '\n  ')}`}
  ${perM((m) => `if (${rowOf(m)} < LQ) {
    let i = ${rowOf(m)};
    let row = lse_idx(b, h, i);
    let lm = l${m >> 2}.${lane(m)};
    let isbad = bd${m >> 2}.${lane(m)} != 0u;
    if (u_c_last() != 0u) {
      let inv = select(1.0 / lm, 0.0, lm == 0.0);
        ${outCols(m, (col, val) => `store_out(o_idx(b, h, i, ${col}), select(${val} * inv, flash_nan(), isbad));`)}
      if (tc_ == 0u) { store_lse(row, select(select(m_run${m >> 2}.${lane(m)} + log(lm), neg_inf(), lm == 0.0), flash_nan(), isbad)); }
    } else {
        ${outCols(m, (col, val) => `store_accb(row * u_ev() + ${col}, ${val});`)}
      if (tc_ == 0u) { store_mlb(row * 3u, m_run${m >> 2}.${lane(m)}); store_mlb(row * 3u + 1u, lm); store_mlb(row * 3u + 2u, select(0.0, 1.0, isbad)); }
    }
  }`, '\n  ')}`;
  const helpers = `var<workgroup> fq_: array<vec4<${ST}>, ${QK * QS}>;
${shared ? `var<workgroup> fkv_: array<vec4<${ST}>, ${Math.max(EC * KS, BC * EV4)}>;` : `var<workgroup> fk_: array<vec4<${ST}>, ${QK * KS}>;
var<workgroup> fv_: array<vec4<${ST}>, ${BC * EV4}>;`}
var<workgroup> fp_: array<vec4<f32>, ${BC * PS}>;
var<workgroup> fr_: array<vec4<f32>, ${WG * RV}>;${lean ? '' : `
var<workgroup> ff_: array<vec4<u32>, ${WG * RV}>;`}${sg ? '\nvar<workgroup> wg_nosg: u32;' : ''}
fn load_accb(i: u32) -> f32 { return work[i]; }
fn store_accb(i: u32, x: f32) { work[i] = x; }
fn load_mlb(i: u32) -> f32 { return work[u_mlb_at() + i]; }
fn store_mlb(i: u32, x: f32) { work[u_mlb_at() + i] = x; }
${scoreHelpers(p)}
${tileMapWgsl(p, 'q')}`;
  // loop iterations per key of one invocation: staging K and V, the dot loop, the P·V loop
  const costPerKey = ((EC * KC) / WG + (chunked ? (EC * TRQ) / WG : 0) + (BC * EV4) / WG + d.E + BC + 8) / BC;
  const chunks = passes(d.Lkv, BC, device.maxLoopIterations, costPerKey);
  const multi = chunks.length > 1;
  const rowsTotal = p.varlen ? d.TQ * d.Hq : d.B * d.Hq * d.Lq;
  const td = tileDispatch(p, 'q', BR, d.Hq);
  const accN = multi ? rowsTotal * d.Ev : 0;
  const mlN = multi ? rowsTotal * 3 : 0;
  const workN = Math.max(1, accN + mlN);
  checkWorkBuffer(workN, device, 'flash attention forward');
  const work = empty([workN], 'float32', device);
  const spec: ProgramSpec = {
    name: 'flash_attention_forward_registers',
    key: cacheKey(p, `r${TR}x${TC}x${RV}${sg ? 'sg' : ''}${shared ? 'kv' : ''}${prefetch ? 'pf' : ''}${chunked ? `q${QK}` : ''}${g.pad ? 'pd' : ''}${lean ? 'ln' : ''}${KW > 1 ? `k${KW}` : ''}${ld4 ? 'v4' : ''}${qr ? 'qr' : ''}`),
    bindings: [
      ...inputBindings(p).map((x) => (ld4 && (x.name === 'k' || x.name === 'v') ? { ...x, vec4: true } : x)),
      { name: 'out', dtype: out.dtype, access: 'read_write' },
      { name: 'lse', dtype: 'float32', access: 'read_write' },
      { name: 'work', dtype: 'float32', access: 'read_write' },
      ...td.bindings,
    ],
    uniforms: [...commonUniforms(p), ['mlb_at', 'u32']],
    workgroupSize: [WG],
    helpers,
    body,
    subgroups: sg,
  };
  chunks.forEach(([c0, c1], n) =>
    run(spec, [...inputTensors(p), out, lse, work, ...td.tensors], { ...commonValues(p), ...chunkValues(c0, c1, n, chunks.length), mlb_at: accN }, td.grid),
  );
  td.dispose();
  work.dispose();
}
