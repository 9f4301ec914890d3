/**
 * The attention kernel generator: FlashAttention-2-style tiled online softmax. The forward never
 * materialises Lq×Lkv and writes the log-sum-exp; the backward recomputes probabilities from it
 * (one kernel for dQ, one for dK/dV). Every front door — SDPA, flex, varlen — calls these functions
 * with its hooks (mask tensor, causal offset, score/mask functions, extra bindings); none copies them.
 */
import { broadcastStrides, empty, WebattnError, type Tensor } from '@webattn/core-tensor';
import type { WebGPUDevice } from '../device/webgpu-device.js';
import { run, type BindingSpec, type ProgramSpec, type UniformField, type UniformValues } from '../wgsl.js';

/** Largest head dimension (E and Ev) the flash kernels compile for. */
export const FLASH_MAX_HEAD_DIM = 256;

/** Additive (float) or boolean (true = attend) mask tensor read tile by tile, broadcast by strides. */
export interface FlashMask {
  /** The mask, broadcastable to `[B, Hq, Lq, Lkv]`. */
  tensor: Tensor;
  /** `bool`: true = attend; `float`: added to the scaled scores. */
  kind: 'bool' | 'float';
}

/** Hooks a front door adds to the generated kernel. */
export interface FlashHooks {
  /** Cache-key part for everything below. */
  key: string;
  /** WGSL helpers: `score_mod(s, b, h, q, kv) -> f32` and/or `mask_mod(b, h, q, kv) -> bool` (indices u32). */
  wgsl?: string;
  /** Call `score_mod` on every score. */
  scoreMod?: boolean;
  /** Call `mask_mod` for every (q, kv). */
  maskMod?: boolean;
  /** Extra read-only bindings (captured tensors). */
  bindings?: BindingSpec[];
  /** The tensors of `bindings`, in order. */
  tensors?: Tensor[];
  /** Extra uniform fields (read as `u_<name>()`). */
  uniforms?: UniformField[];
  /** Values of `uniforms`. */
  values?: UniformValues;
  /**
   * Backward only: read-write bindings (e.g. atomic gradient buffers of captured tensors) and a
   * `capture_grads(s, b, h, q, kv, ds)` in `wgsl` called with ds = d(loss)/d(modified score).
   */
  gradBindings?: BindingSpec[];
  /** The tensors of `gradBindings`, in order. */
  gradTensors?: Tensor[];
  /** Call `capture_grads` in the dQ kernel. */
  captureGrads?: boolean;
  /** WGSL only the dQ kernel includes (what uses `gradBindings`). */
  gradWgsl?: string;
}

/** Everything the generator needs to know about one attention call. */
export interface FlashParams {
  /** Queries `[B, Hq, Lq, E]` (any strides; `[totalQ, Hq, E]` with `varlen`). */
  q: Tensor;
  /** Keys `[B, Hkv, Lkv, E]` (`[totalK, Hkv, E]` with `varlen`). */
  k: Tensor;
  /** Values `[B, Hkv, Lkv, Ev]` (`[totalK, Hkv, Ev]` with `varlen`). */
  v: Tensor;
  /** Multiplies q·k before masks and score functions. */
  scale: number;
  /** Causal: key j is visible to query i iff j <= i + causalOffset (0 = PyTorch top-left). */
  causal: boolean;
  /** Diagonal offset of the causal mask (dense layout). */
  causalOffset: number;
  /** Mask tensor read tile by tile, or null. */
  mask: FlashMask | null;
  /** Front-door hooks (score/mask functions, captures), or null. */
  hooks: FlashHooks | null;
  /**
   * Packed variable-length layout (FlashAttention `varlen`): q is `[totalQ, Hq, E]`, k/v `[totalK, Hkv, E|Ev]`,
   * sequence b owns rows `cuQ[b]..cuQ[b+1]` (int32 `[B+1]`). Causal is then aligned bottom-right per
   * sequence (offset Lk_b − Lq_b) and `causalOffset` is ignored. Output `[totalQ, Hq, Ev]`, lse `[Hq, totalQ]`.
   */
  varlen?: {
    /** int32 `[B+1]` query row offsets. */
    cuQ: Tensor;
    /** int32 `[B+1]` key row offsets. */
    cuK: Tensor;
    /** Longest query sequence. */
    maxQ: number;
    /** Longest key sequence. */
    maxK: number;
  } | null;
  /** Local attention window: key j visible iff i + off − left ≤ j ≤ i + off + right (−1 = unbounded). */
  window?: {
    /** Keys allowed before the diagonal (−1 = unbounded). */
    left: number;
    /** Keys allowed after the diagonal (−1 = unbounded). */
    right: number;
  } | null;
  /**
   * Block-sparse tables (FlexAttention's BlockMask, int32 on the device): per (b, h, q block) the
   * partial kv blocks (`kvNum`/`kvIdx`, mask function evaluated) and full kv blocks (`fullKvNum`/
   * `fullKvIdx`, mask function skipped); per kv block the transposed q lists for the dK/dV pass.
   * `bs` must be a multiple of 64. `bm`/`hm` are 1 when the mask broadcasts over batch/heads.
   */
  blocks?: FlashBlocks | null;
}

/**
 * Block-sparse tables of {@link FlashParams.blocks}, packed in one int32 tensor (one storage binding):
 * `offsets` gives where kvNum, kvIdx, fullKvNum, fullKvIdx, qNum, qIdx, fullQNum, fullQIdx start.
 */
export interface FlashBlocks {
  /** Block size (a multiple of 64). */
  bs: number;
  /** Batch extent of the tables (1 = broadcast). */
  bm: number;
  /** Head extent of the tables (1 = broadcast). */
  hm: number;
  /** Query blocks. */
  nqb: number;
  /** Key blocks. */
  nkb: number;
  /** All eight tables, packed. */
  table: Tensor;
  /** Start of each table in `table`. */
  offsets: readonly number[];
}

function dims(p: FlashParams) {
  if (p.varlen) {
    const [TQ, Hq, E] = p.q.shape as [number, number, number];
    const [TK, Hkv] = p.k.shape as [number, number, number];
    const Ev = p.v.shape[2]!;
    const B = p.varlen.cuQ.shape[0]! - 1;
    return { B, Hq, Hkv, Lq: p.varlen.maxQ, Lkv: p.varlen.maxK, E, Ev, G: Hq / Hkv, TQ, TK };
  }
  const [B, Hq, Lq, E] = p.q.shape as [number, number, number, number];
  const [, Hkv, Lkv] = p.k.shape as [number, number, number, number];
  const Ev = p.v.shape[3]!;
  return { B, Hq, Hkv, Lq, Lkv, E, Ev, G: Hq / Hkv, TQ: B * Hq * Lq, TK: B * Hkv * Lkv };
}

/** 4-D (b, h, row, e) strides of an operand: packed varlen operands have no batch stride (rows are global). */
function strides4(t: Tensor, varlen: boolean): number[] {
  return varlen ? [0, t.strides[1]!, t.strides[0]!, t.strides[2]!] : t.strides.slice();
}

/** Tile sizes: 64 query rows per workgroup; key tile sized to keep K+V tiles within 16 KiB. */
function tiles(E: number, Ev: number): { BR: number; BC: number } {
  const per = (dimClass(E) + dimClass(Ev)) * 4;
  let BC = 32;
  while (BC > 4 && BC * per > 16384) BC /= 2;
  return { BR: 64, BC };
}

const strided4 = (name: string): UniformField[] => [
  [`${name}_off`, 'u32'],
  [`${name}_st`, 'u32', 4],
];

function commonUniforms(p: FlashParams): UniformField[] {
  return [
    ...(p.hooks?.uniforms ?? []),
    ['B', 'u32'], ['hq', 'u32'], ['hkv', 'u32'], ['group', 'u32'], ['lq', 'u32'], ['lkv', 'u32'],
    ['scale', 'f32'], ['causal_off', 'i32'], ['e', 'u32'], ['ev', 'u32'], ['bc', 'u32'],
    ['c_begin', 'u32'], ['c_stop', 'u32'], ['c_first', 'u32'], ['c_last', 'u32'], ['g_begin', 'u32'], ['g_stop', 'u32'],
    ['tq', 'u32'], ['tk', 'u32'], ['win_l', 'i32'], ['win_r', 'i32'],
    ['bs', 'u32'], ['bm', 'u32'], ['hm', 'u32'], ['nqb', 'u32'], ['nkb', 'u32'], ['bt_off', 'u32', 8],
    ...strided4('q'), ...strided4('k'), ...strided4('v'), ...strided4('m'),
  ];
}

function commonValues(p: FlashParams): UniformValues {
  const d = dims(p);
  const st = (t: Tensor | undefined) => ({ off: t?.offset ?? 0, st: t ? t.strides.slice() : [0, 0, 0, 0] });
  const m = p.mask
    ? { off: p.mask.tensor.offset, st: broadcastStrides(p.mask.tensor.shape, p.mask.tensor.strides, [d.B, d.Hq, d.Lq, d.Lkv]) }
    : st(undefined);
  return {
    ...(p.hooks?.values ?? {}),
    e: d.E, ev: d.Ev, bc: tiles(d.E, d.Ev).BC,
    B: d.B, hq: d.Hq, hkv: d.Hkv, group: d.G, lq: d.Lq, lkv: d.Lkv, scale: p.scale, causal_off: p.causalOffset,
    q_off: p.q.offset, q_st: strides4(p.q, !!p.varlen), k_off: p.k.offset, k_st: strides4(p.k, !!p.varlen),
    v_off: p.v.offset, v_st: strides4(p.v, !!p.varlen), m_off: m.off, m_st: m.st,
    tq: d.TQ, tk: d.TK, win_l: p.window?.left ?? -1, win_r: p.window?.right ?? -1,
    bs: p.blocks?.bs ?? 0, bm: p.blocks?.bm ?? 1, hm: p.blocks?.hm ?? 1, nqb: p.blocks?.nqb ?? 0, nkb: p.blocks?.nkb ?? 0,
    bt_off: p.blocks ? p.blocks.offsets.slice() : [],
  };
}

function inputBindings(p: FlashParams): BindingSpec[] {
  const b: BindingSpec[] = [
    { name: 'q', dtype: p.q.dtype, access: 'read' },
    { name: 'k', dtype: p.k.dtype, access: 'read' },
    { name: 'v', dtype: p.v.dtype, access: 'read' },
  ];
  if (p.mask) b.push({ name: 'mask', dtype: p.mask.tensor.dtype, access: 'read' });
  if (p.varlen) b.push({ name: 'cu_q', dtype: 'int32', access: 'read' }, { name: 'cu_k', dtype: 'int32', access: 'read' });
  if (p.blocks) b.push({ name: 'bt', dtype: 'int32', access: 'read' });
  if (p.hooks?.bindings) b.push(...p.hooks.bindings);
  return b;
}

function inputTensors(p: FlashParams): Tensor[] {
  const bt = p.blocks ? [p.blocks.table] : [];
  return [p.q, p.k, p.v, ...(p.mask ? [p.mask.tensor] : []), ...(p.varlen ? [p.varlen.cuQ, p.varlen.cuK] : []), ...bt, ...(p.hooks?.tensors ?? [])];
}

/** WGSL shared by all three kernels: offsets and the masked, modified score of (b, h, i, j). */
function scoreHelpers(p: FlashParams): string {
  const mask = p.mask
    ? p.mask.kind === 'bool'
      ? `if (load_mask(u_m_off() + b * u_m_st(0u) + h * u_m_st(1u) + i * u_m_st(2u) + j * u_m_st(3u)) == 0u) { return neg_inf(); }`
      : `x = x + load_mask(u_m_off() + b * u_m_st(0u) + h * u_m_st(1u) + i * u_m_st(2u) + j * u_m_st(3u));`
    : '';
  const causal = p.causal ? `if (i32(j) > i32(i) + causal_off(b)) { return neg_inf(); }` : '';
  const win = p.window
    ? `if ((u_win_l() >= 0 && i32(j) < i32(i) + causal_off(b) - u_win_l()) || (u_win_r() >= 0 && i32(j) > i32(i) + causal_off(b) + u_win_r())) { return neg_inf(); }`
    : '';
  const layout = p.varlen
    ? `
fn qbase(b: u32) -> u32 { return u32(load_cu_q(b)); }
fn kbase(b: u32) -> u32 { return u32(load_cu_k(b)); }
fn qlen_of(b: u32) -> u32 { return u32(load_cu_q(b + 1u) - load_cu_q(b)); }
fn klen_of(b: u32) -> u32 { return u32(load_cu_k(b + 1u) - load_cu_k(b)); }
// bottom-right causal alignment per sequence, as FlashAttention-2 varlen
fn causal_off(b: u32) -> i32 { return i32(klen_of(b)) - i32(qlen_of(b)); }
fn o_idx(b: u32, h: u32, i: u32, e: u32) -> u32 { return ((qbase(b) + i) * u_hq() + h) * u_ev() + e; }
fn lse_idx(b: u32, h: u32, i: u32) -> u32 { return h * u_tq() + qbase(b) + i; }
fn dq_idx(b: u32, h: u32, i: u32, e: u32) -> u32 { return ((qbase(b) + i) * u_hq() + h) * u_e() + e; }
fn dk_idx(b: u32, hk: u32, j: u32, e: u32) -> u32 { return ((kbase(b) + j) * u_hkv() + hk) * u_e() + e; }
fn dv_idx(b: u32, hk: u32, j: u32, e: u32) -> u32 { return ((kbase(b) + j) * u_hkv() + hk) * u_ev() + e; }
var<workgroup> wg_lens: vec2<u32>;`
    : `
fn qbase(b: u32) -> u32 { return 0u; }
fn kbase(b: u32) -> u32 { return 0u; }
fn causal_off(b: u32) -> i32 { return u_causal_off(); }
fn o_idx(b: u32, h: u32, i: u32, e: u32) -> u32 { return ((b * u_hq() + h) * u_lq() + i) * u_ev() + e; }
fn lse_idx(b: u32, h: u32, i: u32) -> u32 { return (b * u_hq() + h) * u_lq() + i; }
fn dq_idx(b: u32, h: u32, i: u32, e: u32) -> u32 { return ((b * u_hq() + h) * u_lq() + i) * u_e() + e; }
fn dk_idx(b: u32, hk: u32, j: u32, e: u32) -> u32 { return ((b * u_hkv() + hk) * u_lkv() + j) * u_e() + e; }
fn dv_idx(b: u32, hk: u32, j: u32, e: u32) -> u32 { return ((b * u_hkv() + hk) * u_lkv() + j) * u_ev() + e; }`;
  const maskMod = p.hooks?.maskMod ? `if (apply_mod && !mask_mod(b, h, i, j)) { return neg_inf(); }` : '';
  const scoreMod = p.hooks?.scoreMod ? `x = score_mod(x, b, h, i, j);` : '';
  return `
${layout}
fn q_at(b: u32, h: u32, i: u32, e: u32) -> u32 { return u_q_off() + b * u_q_st(0u) + h * u_q_st(1u) + (qbase(b) + i) * u_q_st(2u) + e * u_q_st(3u); }
fn k_at(b: u32, h: u32, j: u32, e: u32) -> u32 { return u_k_off() + b * u_k_st(0u) + h * u_k_st(1u) + (kbase(b) + j) * u_k_st(2u) + e * u_k_st(3u); }
fn v_at(b: u32, h: u32, j: u32, e: u32) -> u32 { return u_v_off() + b * u_v_st(0u) + h * u_v_st(1u) + (kbase(b) + j) * u_v_st(2u) + e * u_v_st(3u); }
// The final score of query i and key j given the scaled dot product, or -inf when masked out.
fn finish_score(dot_scaled: f32, b: u32, h: u32, i: u32, j: u32, apply_mod: bool) -> f32 {
  var x = dot_scaled;
  ${causal}
  ${win}
  ${maskMod}
  ${mask}
  ${scoreMod}
  return x;
}
${p.hooks?.wgsl ?? ''}
${p.blocks ? BLOCK_WGSL : ''}`;
}

/** Readers of the packed block tables: table t (0 kvNum … 7 fullQIdx) at index i. */
const BLOCK_WGSL = `var<workgroup> wg_cnt: vec2<u32>;
var<workgroup> wg_blk: u32;
fn bt_at(t: u32, i: u32) -> u32 { return u32(load_bt(u_bt_off(t) + i)); }`;

/**
 * The loop over tiles of one block: key tiles of a query block (forward, dQ) or query tiles of a key
 * block (dK/dV). Dense: a contiguous range. Block-sparse: the block mask's partial then full blocks
 * (empty blocks are never visited; full ones skip the mask function). Inside `body`: the tile start
 * (`j0` / `i0`), the end of the current range (`j_hi` / `i_lim`) and `full_blk`.
 */
function blockLoop(p: FlashParams, side: 'kv' | 'q', body: string): string {
  const kv = side === 'kv';
  const [v, lim, hi, start] = kv ? ['j0', 'j_hi', 'kv_hi', 'u_c_begin()'] : ['i0', 'i_lim', 'i_hi', 'max(q_start, u_c_begin())'];
  if (!p.blocks) {
    return `let full_blk = false;
  let ${lim} = ${hi};
  for (var ${v} = ${start}; ${v} < ${lim}; ${v} = ${v} + u_bc()) {${body}
  }`;
  }
  const [num, idx, fnum, fidx] = kv ? [0, 1, 2, 3] : [4, 5, 6, 7];
  const [rowsOf, colsOf, base] = kv ? ['u_nqb()', 'u_nkb()', 'q0'] : ['u_nkb()', 'u_nqb()', 'k0'];
  return `let tab = (min(b, u_bm() - 1u) * u_hm() + min(h, u_hm() - 1u)) * ${rowsOf} + ${base} / u_bs();
  if (lidx == 0u) { wg_cnt = vec2<u32>(bt_at(${num}u, tab), bt_at(${fnum}u, tab)); }
  let cnt = workgroupUniformLoad(&wg_cnt);
  for (var pass_ = 0u; pass_ < 2u; pass_ = pass_ + 1u) {
    let full_blk = pass_ == 1u;
    let nblk = select(cnt.x, cnt.y, full_blk);
    for (var n = 0u; n < nblk; n = n + 1u) {
      if (lidx == 0u) { wg_blk = select(bt_at(${idx}u, tab * ${colsOf} + n), bt_at(${fidx}u, tab * ${colsOf} + n), full_blk); }
      let blk = workgroupUniformLoad(&wg_blk);
      let ${lim} = min((blk + 1u) * u_bs(), ${hi});
      for (var ${v} = max(blk * u_bs(), ${start}); ${v} < ${lim}; ${v} = ${v} + u_bc()) {${body}
      }
    }
  }`;
}

/** Workgroup memory for a K and a V tile and the cooperative load of keys j0.. (zeros past `lk`). */
function kvTile(BC: number, E: number, Ev: number): string {
  return `var<workgroup> ks: array<f32, ${BC * E}>;
var<workgroup> vs: array<f32, ${BC * Ev}>;
fn load_kv_tile(b: u32, hk: u32, j0: u32, lk: u32, lidx: u32) {
  for (var t = lidx; t < u_bc() * u_e(); t = t + WG_SIZE) {
    let j = j0 + t / u_e();
    ks[t] = select(0.0, load_k(k_at(b, hk, min(j, lk - 1u), t % u_e())), j < lk);
  }
  for (var t = lidx; t < u_bc() * u_ev(); t = t + WG_SIZE) {
    let j = j0 + t / u_ev();
    vs[t] = select(0.0, load_v(v_at(b, hk, min(j, lk - 1u), t % u_ev())), j < lk);
  }
}`;
}

/** `LQ`, `LK`: this sequence's lengths, workgroup-uniform (loop bounds around barriers depend on them). */
const LENS = (p: FlashParams) =>
  p.varlen
    ? `if (lidx == 0u) { wg_lens = vec2<u32>(qlen_of(b), klen_of(b)); }
  let lens = workgroupUniformLoad(&wg_lens);
  let LQ = lens.x;
  let LK = lens.y;`
    : `let LQ = u_lq();
  let LK = u_lkv();`;

/** Prologue of the kernels with one thread per query row: b, h, kv head, row i, lengths, row_ok. */
function queryRow(p: FlashParams): string {
  return `  let bh = wid.y;
  let b = bh / u_hq();
  let h = bh % u_hq();
  let hk = h / u_group();
  let q0 = wid.x * WG_SIZE;
  let i = q0 + lidx;
  ${LENS(p)}
  let row_ok = i < LQ;`;
}

/** `kv_hi`: the end of this pass's key range for the query block (causal blocks stop at the diagonal). */
function kvRange(p: FlashParams): string {
  return `  let CAUSAL_OFF = ${p.varlen ? 'i32(LK) - i32(LQ)' : 'u_causal_off()'};
  ${KV_END(p.causal)}
  let kv_hi = min(kv_end, u_c_stop());`;
}

/** Key range of a causal query block: keys beyond the last visible one are skipped (block skipping). */
const KV_END = (causal: boolean) =>
  causal
    ? `let last_q = min(q0 + WG_SIZE, LQ);
  let kv_end = u32(clamp(i32(last_q) + CAUSAL_OFF, 0, i32(LK)));`
    : `let kv_end = LK;`;

/** Head-dim size class the private arrays are declared with (one pipeline serves every E in a class). */
function dimClass(n: number): number {
  for (const c of [16, 32, 64, 128, 256]) if (n <= c) return c;
  return n;
}

/**
 * On hardware GPUs the head dims and the key tile become compile-time loop bounds, so the per-thread
 * q/accumulator arrays stay in registers (unrolled loops); software adapters keep runtime bounds,
 * which compile one pipeline per size class in under a second instead of tens of seconds.
 */
function constantBounds(p: FlashParams): boolean {
  return specialization === 'always' || (specialization === 'auto' && !p.q.device.info.software);
}

let specialization: 'auto' | 'always' | 'never' = 'auto';
/**
 * How the flash kernels bind head dims: `auto` (compile-time bounds on hardware GPUs, runtime bounds
 * on software adapters), `always` or `never`. A tuning and testing knob; results are the same.
 */
export function setFlashSpecialization(mode: 'auto' | 'always' | 'never'): void {
  specialization = mode;
}

function specialize(p: FlashParams, spec: ProgramSpec): ProgramSpec {
  if (!constantBounds(p)) return spec;
  const d = dims(p);
  const { BC } = tiles(d.E, d.Ev);
  const sub = (src: string) => src.replaceAll('u_e()', `${d.E}u`).replaceAll('u_ev()', `${d.Ev}u`).replaceAll('u_bc()', `${BC}u`);
  return { ...spec, body: sub(spec.body), helpers: sub(spec.helpers ?? '') };
}

function cacheKey(p: FlashParams, extra: string): string {
  const d = dims(p);
  const exact = constantBounds(p) ? `x${d.E}:${d.Ev}:` : '';
  return `${exact}E${dimClass(d.E)}:Ev${dimClass(d.Ev)}:c${p.causal}:m${p.mask?.kind ?? '-'}:v${!!p.varlen}:w${!!p.window}:s${!!p.blocks}:h${p.hooks?.key ?? '-'}:${extra}`;
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
  const { BR, BC } = tiles(d.E, d.Ev);
  const out = empty(p.varlen ? [d.TQ, d.Hq, d.Ev] : [d.B, d.Hq, d.Lq, d.Ev], p.q.dtype, device);
  const lse = empty(p.varlen ? [d.Hq, d.TQ] : [d.B, d.Hq, d.Lq], 'float32', device);
  if (d.B * d.Hq * d.Lq === 0 || out.size === 0) return { out, lse };
  checkGrid(device, d.B * d.Hq, 'query');
  const body = `
${queryRow(p)}
  let row = lse_idx(b, h, min(i, max(LQ, 1u) - 1u));
  var qv: array<f32, E>;
  var acc: array<f32, EV>;
  for (var e = 0u; e < u_e(); e = e + 1u) { qv[e] = 0.0; }
  var m = neg_inf();
  var l = 0.0;
  for (var e = 0u; e < u_ev(); e = e + 1u) { acc[e] = 0.0; }
  if (row_ok) {
    for (var e = 0u; e < u_e(); e = e + 1u) { qv[e] = load_q(q_at(b, h, i, e)) * u_scale(); }
    if (u_c_first() == 0u) {
      // continue the running state of the previous pass over keys
      for (var e = 0u; e < u_ev(); e = e + 1u) { acc[e] = load_accb(row * u_ev() + e); }
      m = load_mlb(row * 2u);
      l = load_mlb(row * 2u + 1u);
    }
  }
${kvRange(p)}
  ${blockLoop(p, 'kv', `
    load_kv_tile(b, hk, j0, LK, lidx);
    workgroupBarrier();
    if (row_ok) {
      var s: array<f32, BC>;
      var tmax = neg_inf();
      for (var jj = 0u; jj < u_bc(); jj = jj + 1u) {
        let j = j0 + jj;
        var x = neg_inf();
        if (j < j_hi) {
          var dot = 0.0;
          for (var e = 0u; e < u_e(); e = e + 1u) { dot = dot + qv[e] * ks[jj * u_e() + e]; }
          x = finish_score(dot, b, h, i, j, !full_blk);
        }
        s[jj] = x;
        tmax = max(tmax, x);
      }
      let m_new = max(m, tmax);
      if (m_new > neg_inf()) {
        let alpha = exp(m - m_new);
        l = l * alpha;
        for (var e = 0u; e < u_ev(); e = e + 1u) { acc[e] = acc[e] * alpha; }
        for (var jj = 0u; jj < u_bc(); jj = jj + 1u) {
          let pr = exp(s[jj] - m_new);
          l = l + pr;
          for (var e = 0u; e < u_ev(); e = e + 1u) { acc[e] = acc[e] + pr * vs[jj * u_ev() + e]; }
        }
        m = m_new;
      }
    }
    workgroupBarrier();
`)}
  if (row_ok) {
    if (u_c_last() != 0u) {
      let inv = select(0.0, 1.0 / l, l > 0.0);
      for (var e = 0u; e < u_ev(); e = e + 1u) { store_out(o_idx(b, h, i, e), acc[e] * inv); }
      store_lse(row, select(neg_inf(), m + log(l), l > 0.0));
    } else {
      for (var e = 0u; e < u_ev(); e = e + 1u) { store_accb(row * u_ev() + e, acc[e]); }
      store_mlb(row * 2u, m);
      store_mlb(row * 2u + 1u, l);
    }
  }`;
  const helpers = `const E: u32 = ${dimClass(d.E)}u;\nconst EV: u32 = ${dimClass(d.Ev)}u;\nconst BC: u32 = ${BC}u;
${kvTile(BC, dimClass(d.E), dimClass(d.Ev))}
${scoreHelpers(p)}`;
  const chunks = passes(d.Lkv, BC, device.maxLoopIterations, d.E + d.Ev + 8);
  const multi = chunks.length > 1;
  const rowsTotal = p.varlen ? d.TQ * d.Hq : d.B * d.Hq * d.Lq;
  const accb = empty([multi ? rowsTotal * d.Ev : 1], 'float32', device);
  const mlb = empty([multi ? rowsTotal * 2 : 2], 'float32', device);
  const spec = {
    name: 'flash_attention_forward',
    key: cacheKey(p, `BR${BR}BC${BC}`),
    bindings: [
      ...inputBindings(p),
      { name: 'out', dtype: out.dtype, access: 'read_write' as const },
      { name: 'lse', dtype: 'float32' as const, access: 'read_write' as const },
      { name: 'accb', dtype: 'float32' as const, access: 'read_write' as const },
      { name: 'mlb', dtype: 'float32' as const, access: 'read_write' as const },
    ],
    uniforms: commonUniforms(p),
    workgroupSize: [BR] as [number],
    helpers,
    body,
  };
  chunks.forEach(([c0, c1], n) =>
    run(specialize(p, spec), [...inputTensors(p), out, lse, accb, mlb], { ...commonValues(p), ...chunkValues(c0, c1, n, chunks.length) }, [Math.ceil(d.Lq / BR), d.B * d.Hq, 1]),
  );
  accb.dispose();
  mlb.dispose();
  return { out, lse };
}

/**
 * Splits [0, n) into passes of whole tiles so that one invocation runs at most ~60% of the adapter's
 * loop-iteration cap (`costPerItem` iterations per key or query row). One pass where there is no cap.
 */
export function passes(n: number, tile: number, limit: number, costPerItem: number): [number, number][] {
  if (!Number.isFinite(limit) || n * costPerItem <= limit * 0.6) return [[0, Math.max(n, 0)]];
  const per = Math.max(tile, Math.floor((limit * 0.6) / costPerItem / tile) * tile);
  const out: [number, number][] = [];
  for (let c = 0; c < n; c += per) out.push([c, Math.min(n, c + per)]);
  return out;
}

function chunkValues(c0: number, c1: number, n: number, count: number, g0 = 0, g1 = 0): UniformValues {
  return { c_begin: c0, c_stop: c1, c_first: n === 0 ? 1 : 0, c_last: n === count - 1 ? 1 : 0, g_begin: g0, g_stop: g1 };
}

function checkGrid(device: WebGPUDevice, n: number, argument: string): void {
  const max = device.limits.maxComputeWorkgroupsPerDimension;
  if (n > max) {
    throw new WebattnError('LIMIT_EXCEEDED', `${argument}: batch × heads = ${n} exceeds maxComputeWorkgroupsPerDimension (${max})`, { argument });
  }
}

/** Inputs of the backward pass besides the forward parameters. */
export interface FlashGradInputs {
  /** Gradient of the output, shaped like it (any strides). */
  dout: Tensor;
  /** The forward's log-sum-exp, contiguous float32. */
  lse: Tensor;
  /** rowsum(dout ∘ out), laid out like `lse`, contiguous float32. */
  delta: Tensor;
}

/** Backward: dQ `[B,Hq,Lq,E]`, dK `[B,Hkv,Lkv,E]`, dV `[B,Hkv,Lkv,Ev]` (contiguous, float32). */
export function flashBackward(
  p: FlashParams,
  g: FlashGradInputs,
): {
  /** Gradient of q. */
  dq: Tensor;
  /** Gradient of k (summed over the query heads of each group). */
  dk: Tensor;
  /** Gradient of v (summed likewise). */
  dv: Tensor;
} {
  const d = dims(p);
  const device = p.q.device as WebGPUDevice;
  const { BR, BC } = tiles(d.E, d.Ev);
  // gradients accumulate in float32 across passes; cast at the end for float16 inputs
  const dq = empty(p.varlen ? [d.TQ, d.Hq, d.E] : [d.B, d.Hq, d.Lq, d.E], 'float32', device);
  const dk = empty(p.varlen ? [d.TK, d.Hkv, d.E] : [d.B, d.Hkv, d.Lkv, d.E], 'float32', device);
  const dv = empty(p.varlen ? [d.TK, d.Hkv, d.Ev] : [d.B, d.Hkv, d.Lkv, d.Ev], 'float32', device);
  checkGrid(device, d.B * d.Hq, 'query');
  const gradUniforms: UniformField[] = [...commonUniforms(p), ...strided4('do')];
  const values: UniformValues = { ...commonValues(p), do_off: g.dout.offset, do_st: strides4(g.dout, !!p.varlen) };
  const gradBindings: BindingSpec[] = [
    ...inputBindings(p),
    { name: 'dout', dtype: g.dout.dtype, access: 'read' },
    { name: 'lse', dtype: 'float32', access: 'read' },
    { name: 'delta', dtype: 'float32', access: 'read' },
  ];
  const gradTensors = [...inputTensors(p), g.dout, g.lse, g.delta];
  const dsOf = p.hooks?.scoreMod ? 'score_mod_grad(raw, b, h, i, j, ds)' : 'ds';
  // raw = scaled dot before score_mod; the chain rule through score_mod needs it
  const common = `const E: u32 = ${dimClass(d.E)}u;\nconst EV: u32 = ${dimClass(d.Ev)}u;\nconst BC: u32 = ${BC}u;
fn do_at(b: u32, h: u32, i: u32, e: u32) -> u32 { return u_do_off() + b * u_do_st(0u) + h * u_do_st(1u) + (qbase(b) + i) * u_do_st(2u) + e * u_do_st(3u); }
${scoreHelpers(p)}`;

  // ---- dQ: one thread per query row, K/V tiles in workgroup memory
  if (d.B * d.Hq * d.Lq > 0) {
    const body = `
${queryRow(p)}
  var qv: array<f32, E>;
  var dov: array<f32, EV>;
  var dqv: array<f32, E>;
  var lse_i = neg_inf();
  var delta_i = 0.0;
  for (var e = 0u; e < u_e(); e = e + 1u) { qv[e] = 0.0; dqv[e] = 0.0; }
  for (var e = 0u; e < u_ev(); e = e + 1u) { dov[e] = 0.0; }
  if (row_ok) {
    for (var e = 0u; e < u_e(); e = e + 1u) { qv[e] = load_q(q_at(b, h, i, e)) * u_scale(); }
    for (var e = 0u; e < u_ev(); e = e + 1u) { dov[e] = load_dout(do_at(b, h, i, e)); }
    lse_i = load_lse(lse_idx(b, h, i));
    delta_i = load_delta(lse_idx(b, h, i));
    if (u_c_first() == 0u) { for (var e = 0u; e < u_e(); e = e + 1u) { dqv[e] = load_dq(dq_idx(b, h, i, e)); } }
  }
${kvRange(p)}
  ${blockLoop(p, 'kv', `
    load_kv_tile(b, hk, j0, LK, lidx);
    workgroupBarrier();
    if (row_ok && lse_i > neg_inf()) {
      for (var jj = 0u; jj < u_bc(); jj = jj + 1u) {
        let j = j0 + jj;
        if (j >= j_hi) { break; }
        var raw = 0.0;
        for (var e = 0u; e < u_e(); e = e + 1u) { raw = raw + qv[e] * ks[jj * u_e() + e]; }
        let x = finish_score(raw, b, h, i, j, !full_blk);
        if (x == neg_inf()) { continue; }
        let pr = exp(x - lse_i);
        var dp = 0.0;
        for (var e = 0u; e < u_ev(); e = e + 1u) { dp = dp + dov[e] * vs[jj * u_ev() + e]; }
        let ds = pr * (dp - delta_i);
        ${p.hooks?.captureGrads ? 'capture_grads(raw, b, h, i, j, ds);' : ''}
        let dsr = ${dsOf} * u_scale();
        for (var e = 0u; e < u_e(); e = e + 1u) { dqv[e] = dqv[e] + dsr * ks[jj * u_e() + e]; }
      }
    }
    workgroupBarrier();
`)}
  if (row_ok) {
    for (var e = 0u; e < u_e(); e = e + 1u) { store_dq(dq_idx(b, h, i, e), dqv[e]); }
  }`;
    const chunks = passes(d.Lkv, BC, device.maxLoopIterations, 2 * d.E + d.Ev + 8);
    const spec: ProgramSpec = {
        name: 'flash_attention_backward_dq',
        key: cacheKey(p, `BR${BR}BC${BC}`),
        bindings: [...gradBindings, { name: 'dq', dtype: dq.dtype, access: 'read_write' as const }, ...(p.hooks?.gradBindings ?? [])],
        uniforms: gradUniforms,
        workgroupSize: [BR],
        helpers: `${common}\n${kvTile(BC, dimClass(d.E), dimClass(d.Ev))}\n${p.hooks?.gradWgsl ?? ''}`,
        body,
      };
    chunks.forEach(([c0, c1], n) =>
      run(specialize(p, spec), [...gradTensors, dq, ...(p.hooks?.gradTensors ?? [])], { ...values, ...chunkValues(c0, c1, n, chunks.length) }, [Math.ceil(d.Lq / BR), d.B * d.Hq, 1]),
    );
  }

  // ---- dK, dV: one thread per key row, looping over the query heads of its group and Q tiles
  if (d.B * d.Hkv * d.Lkv > 0 && dk.size > 0) {
    const qStart = p.causal
      ? `let q_start = u32(clamp(i32(k0) - CAUSAL_OFF, 0, i32(LQ)));`
      : `let q_start = 0u;`;
    const body = `
  let bh = wid.y;
  let b = bh / u_hkv();
  let hk = bh % u_hkv();
  let k0 = wid.x * WG_SIZE;
  let j = k0 + lidx;
  ${LENS(p)}
  let col_ok = j < LK;
  var kv: array<f32, E>;
  var vv: array<f32, EV>;
  var dkv: array<f32, E>;
  var dvv: array<f32, EV>;
  for (var e = 0u; e < u_e(); e = e + 1u) { kv[e] = 0.0; dkv[e] = 0.0; }
  for (var e = 0u; e < u_ev(); e = e + 1u) { vv[e] = 0.0; dvv[e] = 0.0; }
  if (col_ok) {
    for (var e = 0u; e < u_e(); e = e + 1u) { kv[e] = load_k(k_at(b, hk, j, e)); }
    for (var e = 0u; e < u_ev(); e = e + 1u) { vv[e] = load_v(v_at(b, hk, j, e)); }
    if (u_c_first() == 0u) {
      for (var e = 0u; e < u_e(); e = e + 1u) { dkv[e] = load_dk(dk_idx(b, hk, j, e)); }
      for (var e = 0u; e < u_ev(); e = e + 1u) { dvv[e] = load_dv(dv_idx(b, hk, j, e)); }
    }
  }
  let CAUSAL_OFF = ${p.varlen ? 'i32(LK) - i32(LQ)' : 'u_causal_off()'};
  ${qStart}
  let i_hi = min(LQ, u_c_stop());
  for (var g = u_g_begin(); g < u_g_stop(); g = g + 1u) {
    let h = hk * u_group() + g;
    ${blockLoop(p, 'q', `
      for (var t = lidx; t < u_bc() * u_e(); t = t + WG_SIZE) {
        let i = i0 + t / u_e();
        qs[t] = select(0.0, load_q(q_at(b, h, min(i, LQ - 1u), t % u_e())) * u_scale(), i < i_lim);
      }
      for (var t = lidx; t < u_bc() * u_ev(); t = t + WG_SIZE) {
        let i = i0 + t / u_ev();
        dos[t] = select(0.0, load_dout(do_at(b, h, min(i, LQ - 1u), t % u_ev())), i < i_lim);
      }
      for (var t = lidx; t < u_bc(); t = t + WG_SIZE) {
        let i = i0 + t;
        lses[t] = select(neg_inf(), load_lse(lse_idx(b, h, min(i, LQ - 1u))), i < i_lim);
        deltas[t] = select(0.0, load_delta(lse_idx(b, h, min(i, LQ - 1u))), i < i_lim);
      }
      workgroupBarrier();
      if (col_ok) {
        for (var ii = 0u; ii < u_bc(); ii = ii + 1u) {
          let i = i0 + ii;
          if (i >= i_lim) { break; }
          if (lses[ii] == neg_inf()) { continue; }
          var raw = 0.0;
          for (var e = 0u; e < u_e(); e = e + 1u) { raw = raw + qs[ii * u_e() + e] * kv[e]; }
          let x = finish_score(raw, b, h, i, j, !full_blk);
          if (x == neg_inf()) { continue; }
          let pr = exp(x - lses[ii]);
          var dp = 0.0;
          for (var e = 0u; e < u_ev(); e = e + 1u) {
            let dov = dos[ii * u_ev() + e];
            dvv[e] = dvv[e] + pr * dov;
            dp = dp + dov * vv[e];
          }
          let ds = pr * (dp - deltas[ii]);
          let dsr = ${dsOf};
          // qs holds q·scale, so dK = Σ dsr · q · scale
          for (var e = 0u; e < u_e(); e = e + 1u) { dkv[e] = dkv[e] + dsr * qs[ii * u_e() + e]; }
        }
      }
      workgroupBarrier();
`)}
  }
  if (col_ok) {
    for (var e = 0u; e < u_e(); e = e + 1u) { store_dk(dk_idx(b, hk, j, e), dkv[e]); }
    for (var e = 0u; e < u_ev(); e = e + 1u) { store_dv(dv_idx(b, hk, j, e), dvv[e]); }
  }`;
    const spec: ProgramSpec = {
        name: 'flash_attention_backward_dkv',
        key: cacheKey(p, `BR${BR}BC${BC}`),
        bindings: [...gradBindings, { name: 'dk', dtype: dk.dtype, access: 'read_write' as const }, { name: 'dv', dtype: dv.dtype, access: 'read_write' as const }],
        uniforms: gradUniforms,
        workgroupSize: [BR],
        helpers: `${common}
var<workgroup> qs: array<f32, ${BC * dimClass(d.E)}>;
var<workgroup> dos: array<f32, ${BC * dimClass(d.Ev)}>;
var<workgroup> lses: array<f32, ${BC}>;
var<workgroup> deltas: array<f32, ${BC}>;`,
        body,
      };
    // passes over (query head of the group, query rows) keep each invocation under the loop cap
    const cost = 2 * d.E + 2 * d.Ev + 8;
    const all: [number, number, number, number][] = [];
    if (!Number.isFinite(device.maxLoopIterations) || d.G * d.Lq * cost <= device.maxLoopIterations * 0.6) all.push([0, d.Lq, 0, d.G]);
    else for (let g = 0; g < d.G; g++) for (const [c0, c1] of passes(d.Lq, BC, device.maxLoopIterations, cost)) all.push([c0, c1, g, g + 1]);
    all.forEach(([c0, c1, g0, g1], n) =>
      run(specialize(p, spec), [...gradTensors, dk, dv], { ...values, ...chunkValues(c0, c1, n, all.length, g0, g1) }, [Math.ceil(d.Lkv / BR), d.B * d.Hkv, 1]),
    );
  }
  const cast = (t: Tensor, like: Tensor) => (like.dtype === 'float32' ? t : t.cast(like.dtype).detach());
  return { dq: cast(dq, p.q), dk: cast(dk, p.k), dv: cast(dv, p.v) };
}
