/**
 * The subgroup-matrix (tensor core) forward of the attention generator: float16 q/k/v, f32
 * accumulation, f32 online softmax; the same plan, masks, causal/window/block-sparse skipping, varlen
 * layout and flex hooks as the tile forward (`forward.ts`), the same outputs (o in the input dtype, lse
 * f32). Selected when the device has `chromium-experimental-subgroup-matrix` with an f16→f32 16×16×16
 * configuration and subgroups of 32 (the default mode, `auto`; H100: B=8 H=16 L=4096 E=64 in 6.6 ms = 83 TFLOP/s vs
 * 174 ms on the tile forward); everything else takes the tile forward.
 *
 * Two WGSL pitfalls of Dawn/Vulkan (webgpu 0.6.2) this kernel works around, both measured on the H100:
 * a `var` declared without initializer inside a loop is zeroed once at function entry, not per iteration
 * (result matrices are zeroed by assignment), and subgroup-matrix loads/stores round their workgroup address
 * down to 16 bytes, so every workgroup variable beside the staged arrays is a multiple of 16 bytes.
 *
 * One workgroup = `nsg` subgroups of 32 invocations; subgroup `sg` owns `rs` (16 or 32) query rows.
 * Q is loaded once into left matrices (registers). Per key tile of `bc` keys (K and V staged as f16 in
 * workgroup memory): S = Q·Kᵀ by MMAs (K read column-major is Kᵀ) → f32 in workgroup memory; one
 * invocation per query row (or two: `split`) applies scale, masks and score/mask functions there and runs the
 * online softmax in f32 on its scores held in registers (`rsm`), writing P as f16; O += P·V by MMAs into result matrices that stay in registers for the
 * whole key loop; the next tile's K and V are loaded into registers meanwhile (`pf`). Subgroup matrices have no per-row scaling, so the running max is updated lazily
 * (FlashAttention-4): P = exp(s − m_ref) with the row's reference max m_ref, which moves (and O is
 * rescaled through workgroup memory) only when a tile's max exceeds it by more than {@link LAZY}; P ≤ e^8
 * then always fits f16. NaN scores count as +∞ in the max, so a NaN row comes out NaN (as the tile path).
 *
 * `emulate` renders the same kernel with plain-WGSL stand-ins for the matrix types and builtins (f32
 * storage, every invocation of an emulated subgroup holds the whole 16×16 matrix): the tile logic then
 * runs and is tested on adapters without the feature (llvmpipe, SwiftShader).
 */
import { empty, type Tensor } from '@webattn/core-tensor';
import type { WebGPUDevice } from '../device/webgpu-device.js';
import { run, type ProgramSpec } from '../wgsl.js';
import { cacheKey, checkGrid, chunkValues, commonUniforms, commonValues, dimClass, dims, inputBindings, inputTensors, strides4, type FlashParams } from './plan.js';
import { blockLoop, kvRange, scoreHelpers } from './shared.js';
import { tileDispatch, tileMapWgsl, tileOrigin } from './tile-map.js';

/** How far (natural log) a tile's max may exceed the reference max before O is rescaled: P ≤ e^8 ≈ 2981. */
export const LAZY = 8;

/** Tiling of the subgroup-matrix forward. */
export interface SgmatConfig {
  /** Query rows per subgroup (one invocation per row in the softmax): 16 or 32. */
  rs: 16 | 32;
  /** Subgroups per workgroup (query rows per workgroup = rs · nsg). */
  nsg: number;
  /** Keys per tile (multiple of 16). */
  bc: number;
  /** Stage K transposed (head dim × keys) and load Kᵀ row-major instead of column-major. */
  kt?: boolean;
  /** Keep Q in workgroup memory and load its left matrices per key tile (instead of holding them across the key loop). */
  qreload?: boolean;
  /**
   * Stage Q, K and V with one 4-element vector load per invocation (`array<vec4<T>>` views of the bindings)
   * instead of one scalar each, with one bounds check per vector. Taken only where every head dim is a
   * multiple of 4 and q/k/v are contiguous along it with 4-aligned offsets and strides; else the scalar staging runs.
   */
  vec?: boolean;
  /**
   * Online softmax on both halves of each subgroup when `rs` = 16 (each lane takes half of a row's `bc` keys;
   * row max and sum combined across the halves) instead of one lane per row: `shuffle` by
   * `subgroupShuffleXor`, `wg` through workgroup memory. Ignored at `rs` = 32 (every lane owns a row already).
   */
  split?: 'shuffle' | 'wg';
  /**
   * Softmax in registers: each lane reads its keys' scores of a tile once (unrolled, independent loads), keeps them
   * in registers through the max and the exponentials (no masked score written back to workgroup memory), and with
   * `split` the two lanes of a row take alternating keys (fewer workgroup-memory bank conflicts than halves).
   */
  rsm?: boolean;
  /**
   * Prefetch: the next key tile's K and V are loaded from storage into registers while this tile's MMAs and
   * softmax run, and stored to workgroup memory at the start of the next tile (vector staging on the dense loop
   * only; block-sparse tables and the scalar staging stage as before).
   */
  pf?: boolean;
  /** Diagnostics: write the first tile's raw scores (`S`) or probabilities (`P`, lse = reference max) to the output instead. */
  debug?: 'S' | 'P';
}

/** `auto`: the subgroup-matrix forward where the device has it (f16 inputs); `off`; `emulate`: plain-WGSL stand-ins for f32 inputs on any adapter (tests). */
export type SgmatMode = 'auto' | 'off' | 'emulate';
// 'auto' by default: f16 inputs on a device with f16 subgroup matrices take it (on the H100, B=8 H=16 L=4096
// E=64: 6.6 ms vs 174.4 ms on the tile forward); everything else takes the tile forward
let mode: SgmatMode = 'auto';
let forced: SgmatConfig | null = null;

/** Selects the subgroup-matrix forward mode and optionally forces a tiling (benchmarks, tests). Results are the same. */
export function setFlashSubgroupMatrix(m: SgmatMode, cfg: SgmatConfig | null = null): void {
  mode = m;
  forced = cfg;
}

/** True when the device can run the real kernel: f16, a 16×16×16 f16→f32 matrix configuration, subgroups of 32. */
export function hasSgmatAttention(device: WebGPUDevice): boolean {
  const c = device.caps;
  if (!c.f16 || !device.hasFeature('subgroups')) return false;
  const cfg = c.subgroupMatrix.some((m) => m.componentType === 'f16' && m.resultComponentType === 'f32' && m.M === 16 && m.N === 16 && m.K === 16);
  // lanes are numbered local_invocation_index % 32: the kernel needs subgroups of exactly 32 (NVIDIA's warps)
  const sizes = (c.subgroupMinSize === 32 && c.subgroupMaxSize === 32) || (c.subgroupMinSize === 0 && c.subgroupMaxSize === 0 && /nvidia/i.test(device.info.adapter));
  return cfg && sizes;
}

/** `n` rounded up to a multiple of 16 (matrix blocks). */
export const ceil16 = (n: number) => Math.ceil(n / 16) * 16;

/** Workgroup memory of a tiling (bytes); `eb` bytes per staged element (2: f16, 4: emulated f32). */
function bytesOf(c: SgmatConfig, EC: number, EVC: number, eb: number): number {
  const BR = c.rs * c.nsg;
  const k = c.kt ? EC * (c.bc + 8) : c.bc * (EC + 8);
  const xch = c.split === 'wg' && c.rs === 16 ? 4 * 32 * c.nsg : 0;
  return eb * k + eb * c.bc * (EVC + 8) + 4 * BR * (c.bc + 4) + eb * BR * (c.bc + 8) + 4 * BR + 16 + (c.qreload ? eb * BR * (EC + 8) : 0) + xch;
}

/** The tiling this call would run with on the subgroup-matrix forward, or null (then the tile forward runs). */
export function sgmatPlan(p: FlashParams): (SgmatConfig & { emulate: boolean }) | null {
  if (mode === 'off') return null;
  const device = p.q.device as WebGPUDevice;
  const emulate = mode === 'emulate';
  if (emulate ? p.q.dtype !== 'float32' : p.q.dtype !== 'float16' || !hasSgmatAttention(device)) return null;
  // one pass over the keys: adapters with a loop cap (llvmpipe) only run the emulation, on small shapes
  const d = dims(p);
  const EC = dimClass(d.E);
  const EVC = dimClass(d.Ev);
  if (EC > 128 || EVC > 128) return null;
  const rs: 16 | 32 = EC <= 64 && EVC <= 64 ? 32 : 16;
  // block-sparse tables are per 64 query rows: a workgroup must not straddle two q blocks
  const maxRows = p.blocks ? 64 : 128;
  // H100 A/B (sgmat_attn.mjs --ab, one call, ms; B=8 H=16 E=64 unless named): previous default rs16·nsg8·bc16 vec
  // split: L=4096 12.87, L=1024 1.30, ViT B=128 L=196 1.10, E=128 L=1024 2.50, causal L=1024/2048/4096 0.87/2.30/6.73;
  // + kt 12.47/1.05/0.99/2.47/0.80/2.14/7.66; + kt rsm 8.44/0.68/0.75/2.07/0.67/1.60/4.42; + kt rsm pf
  // 7.44/0.86/0.70/1.23/0.53/1.22/3.53; the same at nsg16 6.65/0.81/0.76/1.43/0.56/1.68/3.83; at bc32
  // 6.64/0.66/0.99/1.19/0.67/1.39/3.93. So Kᵀ staging, the register softmax and the prefetch everywhere; 32-key tiles
  // for long unmasked key ranges (≥ 1024 keys, no causal/window/block skipping), 16-key tiles elsewhere (ViT, causal).
  // The emulation (no subgroups) splits through workgroup memory.
  const opts: Partial<SgmatConfig> = { vec: true, split: emulate ? 'wg' : 'shuffle', kt: true, rsm: true, pf: true };
  const long = !p.causal && !p.window && !p.blocks && d.Lkv >= 1024;
  const n16 = Math.min(8, maxRows / 16);
  const list: SgmatConfig[] = forced
    ? [forced]
    : [
        ...(long ? [{ rs: 16 as const, nsg: n16, bc: 32, ...opts }] : []),
        { rs: 16, nsg: n16, bc: 16, ...opts },
        { rs, nsg: Math.min(4, maxRows / rs), bc: 16, ...opts },
        { rs, nsg: maxRows / rs, bc: 32, ...opts },
        { rs: 16, nsg: 2, bc: 16, ...opts },
      ];
  const budget = device.limits.maxComputeWorkgroupStorageSize;
  // up to 256 query rows (16 subgroups) per workgroup where no block table bounds them
  const rowCap = p.blocks ? 64 : 256;
  const c = list.find((x) => bytesOf(x, EC, EVC, emulate ? 4 : 2) <= budget && x.rs * x.nsg <= rowCap && x.nsg * 32 <= device.limits.maxComputeInvocationsPerWorkgroup);
  return c ? { ...c, emulate } : null;
}

/** WGSL emitters of the matrix operations: Dawn's subgroup matrices, or per-invocation stand-ins. */
export interface MatOps {
  /**
   * A matrix variable of kind L (left f16), R (right f16) or A (result f32); result matrices are zeroed by an
   * explicit assignment: Dawn's SPIR-V writer (webgpu 0.6.2) hoists a loop body's `var x: T;` to the function
   * entry and zeroes it once there, so an accumulator declared inside the key loop kept the last tile's sum
   * (measured: the emulation on SwiftShader and on the H100 gave the same wrong output from the second tile).
   * L and R matrices are always loaded before use.
   */
  decl(name: string, kind: 'L' | 'R' | 'A'): string;
  /** `dst` = the 16×16 matrix at `buf[off + r·stride + c]` (column-major: `buf[off + c·stride + r]`). */
  load(dst: string, kind: 'L' | 'R' | 'A', buf: string, off: string, colMajor: boolean, stride: number): string;
  /** `dst = a·b + c`. */
  mma(dst: string, a: string, b: string, c: string): string;
  /** Stores result matrix `src` row-major at `buf[off]` with `stride`. */
  store(buf: string, off: string, src: string, stride: number): string;
}

const TYPES = { L: 'subgroup_matrix_left<f16, 16, 16>', R: 'subgroup_matrix_right<f16, 16, 16>', A: 'subgroup_matrix_result<f32, 16, 16>' };

export const REAL: MatOps = {
  decl: (n, k) => `var ${n}: ${TYPES[k]};${k === 'A' ? ` ${n} = ${TYPES[k]}();` : ''}`,
  load: (dst, k, buf, off, cm, st) => `${dst} = subgroupMatrixLoad<${TYPES[k]}>(&${buf}, ${off}, ${cm}, ${st}u);`,
  mma: (dst, a, b, c) => `${dst} = subgroupMatrixMultiplyAccumulate(${a}, ${b}, ${c});`,
  store: (buf, off, src, st) => `subgroupMatrixStore(&${buf}, ${off}, ${src}, false, ${st}u);`,
};

// loop bounds come from workgroup memory (EMN = 16 at run time) so that shader compilers do not unroll them:
// llvmpipe compiles the emulation in seconds instead of minutes
// llvmpipe stops an invocation's loops after 65535 iterations in all: rows are looped, the 16 columns unrolled;
// loop bounds come from workgroup memory (EMN = 16 at run time) so that compilers do not unroll the rows too
const cols16 = (f: (c: number) => string) => Array.from({ length: 16 }, (_, c) => f(c)).join(' ');
export const EMU: MatOps = {
  decl: (n, k) => `var ${n}: EmM;${k === 'A' ? ` ${n} = EmM();` : ''}`,
  load: (dst, _k, buf, off, cm, st) =>
    `for (var r_ = 0u; r_ < EMN; r_ = r_ + 1u) { ${cols16((c) => `${dst}[r_ * 16u + ${c}u] = f32(${buf}[${off} + ${cm ? `${c * st}u + r_` : `r_ * ${st}u + ${c}u`}]);`)} }`,
  mma: (dst, a, b, c) => {
    if (dst !== c) throw new Error('internal: emulated MMA accumulates in place');
    return `em_mma(&${dst}, &${a}, &${b}, EMN);`;
  },
  // the emulated subgroup's invocations hold equal copies: each stores its share of the rows
  store: (buf, off, src, st) => `if (lane < EMN) { ${cols16((c) => `${buf}[${off} + lane * ${st}u + ${c}u] = ${src}[lane * 16u + ${c}u];`)} }`,
};

/**
 * {@link EMU} with the columns of loads and stores looped too (the backward's many load sites unrolled made LLVM
 * compile for minutes on llvmpipe; 256 iterations per load then count against its loop cap).
 */
export const EMU_LOOPED: MatOps = {
  ...EMU,
  load: (dst, _k, buf, off, cm, st) =>
    `for (var r_ = 0u; r_ < EMN; r_ = r_ + 1u) { for (var c_ = 0u; c_ < EMN; c_ = c_ + 1u) { ${dst}[r_ * 16u + c_] = f32(${buf}[${off} + ${cm ? `c_ * ${st}u + r_` : `r_ * ${st}u + c_`}]); } }`,
  store: (buf, off, src, st) => `if (lane < EMN) { for (var c_ = 0u; c_ < EMN; c_ = c_ + 1u) { ${buf}[${off} + lane * ${st}u + c_] = ${src}[lane * 16u + c_]; } }`,
};

/** Module-scope WGSL of the emulated matrices ({@link EMU}): the matrix type and the per-invocation MMA. */
export const EMU_WGSL = `alias EmM = array<f32, 256>;
var<workgroup> wg_emn: vec4<u32>;
fn em_mma(d: ptr<function, EmM>, a: ptr<function, EmM>, b: ptr<function, EmM>, n: u32) {
  for (var i = 0u; i < n * n; i = i + 1u) {
    let r = i / 16u;
    let c = i % 16u;
    (*d)[i] = (*d)[i] + ${Array.from({ length: 16 }, (_, k) => `(*a)[r * 16u + ${k}u] * (*b)[${k * 16}u + c]`).join(' + ')};
  }
}`;

/** True when q, k and v can be staged by 4-element vectors: head dims multiples of 4, contiguous along them, 4-aligned offsets and strides. */
export function vecStaging(p: FlashParams): boolean {
  const d = dims(p);
  if (d.E % 4 !== 0 || d.Ev % 4 !== 0) return false;
  return [p.q, p.k, p.v].every((t) => vec4Layout(t, !!p.varlen));
}

/** True when a 4-D (or packed) operand can be read as aligned 4-element vectors along its last dim (contiguous there, 4-aligned offset and strides). */
export function vec4Layout(t: Tensor, varlen: boolean): boolean {
  const st = strides4(t, varlen);
  return t.offset % 4 === 0 && st[3] === 1 && st.slice(0, 3).every((x) => x % 4 === 0);
}

/** 0, 1, …, n − 1. */
export const seq = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Forward on subgroup matrices: output `[B, Hq, Lq, Ev]` (input dtype) and lse `[B, Hq, Lq]` (f32, natural log). */
export function flashForwardSgmat(p: FlashParams, cfg: SgmatConfig & { emulate: boolean }): { out: Tensor; lse: Tensor } {
  const d = dims(p);
  const device = p.q.device as WebGPUDevice;
  const out = empty(p.varlen ? [d.TQ, d.Hq, d.Ev] : [d.B, d.Hq, d.Lq, d.Ev], p.q.dtype, device);
  const lse = empty(p.varlen ? [d.Hq, d.TQ] : [d.B, d.Hq, d.Lq], 'float32', device);
  if (d.B * d.Hq * d.Lq === 0 || out.size === 0) return { out, lse };
  checkGrid(device, p.varlen ? d.Hq : d.B * d.Hq, 'query');
  const spec = sgmatSpec(p, cfg);
  // dense: (query tiles, B·Hq); varlen: the packed tile map of tile-map.ts (no idle workgroups past short sequences)
  const td = tileDispatch(p, 'q', cfg.rs * cfg.nsg, d.Hq);
  run(spec, [...inputTensors(p), out, lse, ...td.tensors], { ...commonValues(p), ...chunkValues(0, d.Lkv, 0, 1) }, td.grid);
  td.dispose();
  return { out, lse };
}

/** The program of {@link flashForwardSgmat} (exported for inspection of the generated WGSL). */
export function sgmatSpec(p: FlashParams, cfg: SgmatConfig & { emulate: boolean }): ProgramSpec {
  const d = dims(p);
  const { rs: RS, nsg: NSG, bc: BC, emulate } = cfg;
  const M = emulate ? EMU : REAL;
  const EL = emulate ? 'f32' : 'f16';
  const EC = dimClass(d.E);
  const EVC = dimClass(d.Ev);
  const BR = RS * NSG;
  const KT = !!cfg.kt;
  const QR = !!cfg.qreload;
  const VEC = !!cfg.vec && vecStaging(p);
  const SPLIT = RS === 16 ? cfg.split : undefined;
  const RSM = !!cfg.rsm;
  // prefetch of the next K/V tile into registers: vector staging of a dense key loop only
  const PF = !!cfg.pf && VEC && !p.blocks;
  const WG = NSG * 32;
  const HB = BC / 2; // keys per lane when the softmax is split
  const V4 = `vec4<${EL}>`;
  // one staged row-vector: `x_` = 4 elements from binding `t` at (row, c_) or zeros where out of range
  const vload = (t: 'q' | 'k' | 'v', idx: string, cond: string) => `var x_ = ${V4}(); if (${cond}) { x_ = ${V4}(${t}[${idx} / 4u]); }`;
  // exchange a lane's partial with the other half of its subgroup (lane ^ 16)
  // combine a lane's partial with the other half of its subgroup's (lane ^ 16): `x = op(x, partner's x)`
  const combine = (x: string, op: (a: string, b: string) => string) =>
    SPLIT === 'shuffle'
      ? `${x} = ${op(x, `subgroupShuffleXor(${x}, 16u)`)};`
      : `workgroupBarrier(); xch[lidx] = ${x}; workgroupBarrier(); ${x} = ${op(x, 'xch[lidx ^ 16u]')};`;
  const KST = KT ? BC + 8 : EC + 8;
  const QST = EC + 8;
  const VST = EVC + 8;
  const SST = BC + 4;
  const PST = BC + 8;
  const NR = RS / 16; // row blocks per subgroup
  const NE = ceil16(EC) / 16; // head-dim blocks of q/k
  const NV = ceil16(EVC) / 16; // head-dim blocks of v / o
  const NC = BC / 16; // key blocks of a tile
  const CW = Math.min(BC, EVC); // output columns moved through workgroup memory at a time
  const NCH = EVC / CW;
  const E = `${d.E}u`;
  const EV = `${d.Ev}u`;
  const rowOff = (rb: number, st: number) => `(sg * ${RS}u + ${rb * 16}u) * ${st}u`;
  // O (result matrices) through this subgroup's rows of sbuf, CW columns at a time: `each(ch)` runs between store and reload
  const throughWg = (each: (ch: number) => string, reload: boolean) =>
    seq(NCH).map((ch) => `{
    ${seq(NR).flatMap((rb) => seq(CW / 16).map((nb) => M.store('sbuf', `${rowOff(rb, SST)} + ${nb * 16}u`, `o_${rb}_${ch * (CW / 16) + nb}`, SST))).join('\n    ')}
    workgroupBarrier();
    ${each(ch)}
    workgroupBarrier();
    ${reload ? seq(NR).flatMap((rb) => seq(CW / 16).map((nb) => M.load(`o_${rb}_${ch * (CW / 16) + nb}`, 'A', 'sbuf', `${rowOff(rb, SST)} + ${nb * 16}u`, false, SST))).join('\n    ') : ''}
    ${reload ? 'workgroupBarrier();' : ''}
  }`).join('\n  ');
  // prefetch: K and V items of this invocation (vec4 each, `t = lidx + u·WG` for u < NPK / NPV) held in registers
  const NPK = Math.ceil((BC * EC) / 4 / WG);
  const NPV = Math.ceil((BC * EVC) / 4 / WG);
  const pfItem = (u: number, cols: number, f: string) => `{
      let t = lidx + ${u * WG}u;
      let r_ = t / ${cols / 4}u;
      let c_ = (t % ${cols / 4}u) * 4u;
      ${f}
    }`;
  const pfFetch = (jb: string, hi: string) =>
    [
      ...seq(NPK).map((u) => pfItem(u, EC, `pk_[${u}] = ${V4}(); if (t < ${(BC * EC) / 4}u && ${jb} + r_ < ${hi} && c_ < ${E}) { pk_[${u}] = ${V4}(k[k_at(b, hk, ${jb} + r_, c_) / 4u]); }`)),
      ...seq(NPV).map((u) => pfItem(u, EVC, `pv_[${u}] = ${V4}(); if (t < ${(BC * EVC) / 4}u && ${jb} + r_ < ${hi} && c_ < ${EV}) { pv_[${u}] = ${V4}(v[v_at(b, hk, ${jb} + r_, c_) / 4u]); }`)),
    ].join('\n    ');
  const pfStore = [
    ...seq(NPK).map((u) => pfItem(u, EC, `if (t < ${(BC * EC) / 4}u) { let x_ = pk_[${u}]; ${KT ? `ks[c_ * ${KST}u + r_] = x_.x; ks[(c_ + 1u) * ${KST}u + r_] = x_.y; ks[(c_ + 2u) * ${KST}u + r_] = x_.z; ks[(c_ + 3u) * ${KST}u + r_] = x_.w;` : `let o_ = r_ * ${KST}u + c_; ks[o_] = x_.x; ks[o_ + 1u] = x_.y; ks[o_ + 2u] = x_.z; ks[o_ + 3u] = x_.w;`} }`)),
    ...seq(NPV).map((u) => pfItem(u, EVC, `if (t < ${(BC * EVC) / 4}u) { let x_ = pv_[${u}]; let o_ = r_ * ${VST}u + c_; vs[o_] = x_.x; vs[o_ + 1u] = x_.y; vs[o_ + 2u] = x_.z; vs[o_ + 3u] = x_.w; }`)),
  ].join('\n    ');
  // softmax in registers (rsm): NP keys per lane, key c = i·KS + half (two lanes per row when split)
  const NP = SPLIT ? HB : BC;
  const KS = SPLIT ? 2 : 1;
  const rsmSoftmax = `// online softmax in f32, scores in registers (${NP} keys per lane${SPLIT ? ', each row on lane l and l ^ 16, alternating keys' : ''})
    var alpha = 1.0;
    ${SPLIT ? '{' : 'if (own) {'}
      let sr = ${SPLIT ? 'sg * 16u + lane % 16u' : 'my_r'};
      let sqi = q0 + sr;
      let hf = ${SPLIT ? 'lane / 16u' : '0u'};
      let sb_ = sr * ${SST}u + hf;
      let pb_ = sr * ${PST}u + hf;
      let sc_ = u_scale();
      let rin_ = sqi < LQ;
      ${seq(NP).map((i) => `let s${i}_ = sbuf[sb_ + ${i * KS}u];`).join(' ')}
      var mt = neg_inf();
      ${seq(NP).map((i) => `var x${i}_ = neg_inf();
      if (rin_ && j0 + hf + ${i * KS}u < j_hi) { x${i}_ = finish_score(s${i}_ * sc_, b, h, sqi, j0 + hf + ${i * KS}u, !full_blk); }
      mt = max(mt, nan_hi(x${i}_));`).join('\n      ')}
      ${SPLIT ? combine('mt', (a, b) => `max(${a}, ${b})`) : ''}
      var m_new = m_ref;
      if (mt > m_ref + ${LAZY.toFixed(1)}) {
        m_new = mt;
        // a row that saw no score yet has O = 0 and l = 0: nothing to rescale
        if (m_ref != neg_inf()) { alpha = exp(m_ref - mt); wg_flag.x = 1u; }
      }
      let live = m_new != neg_inf();
      var rsum = 0.0;
      ${seq(NP).map((i) => `{ let pr = ${EL}(select(0.0, exp(x${i}_ - m_new), live)); pbuf[pb_ + ${i * KS}u] = pr; rsum = rsum + f32(pr); }`).join('\n      ')}
      ${SPLIT ? combine('rsum', (a, b) => `${a} + ${b}`) : ''}
      l_run = l_run * alpha + rsum;
      m_ref = m_new;
    }`;
  const body = `
  ${tileOrigin(p, 'q', BR)}
  let sg = lidx / 32u;
  let lane = lidx % 32u;${emulate ? `
  if (lidx == 0u) { wg_emn = vec4<u32>(16u); }
  workgroupBarrier();
  let EMN = workgroupUniformLoad(&wg_emn).x;` : ''}
  let own = lane < ${RS}u;
  let my_r = sg * ${RS}u + min(lane, ${RS - 1}u);
  let qi = q0 + my_r;
${kvRange(p, BR)}
  ${QR ? `// Q in workgroup memory for the whole key loop
  ${VEC ? `for (var t = lidx; t < ${(BR * EC) / 4}u; t = t + WG_SIZE) {
    let r_ = t / ${EC / 4}u;
    let c_ = (t % ${EC / 4}u) * 4u;
    ${vload('q', 'q_at(b, h, q0 + r_, c_)', `q0 + r_ < LQ && c_ < ${E}`)}
    let o_ = r_ * ${QST}u + c_;
    qs[o_] = x_.x; qs[o_ + 1u] = x_.y; qs[o_ + 2u] = x_.z; qs[o_ + 3u] = x_.w;
  }` : `for (var t = lidx; t < ${BR * EC}u; t = t + WG_SIZE) {
    let r_ = t / ${EC}u;
    let c_ = t % ${EC}u;
    var x_ = 0.0;
    if (q0 + r_ < LQ && c_ < ${E}) { x_ = load_q(q_at(b, h, q0 + r_, c_)); }
    qs[r_ * ${QST}u + c_] = ${EL}(x_);
  }`}` : `// Q, 16 head-dim columns at a time through pbuf, into left matrices kept for the whole key loop
  ${seq(NR).flatMap((rb) => seq(NE).map((eb) => M.decl(`ql_${rb}_${eb}`, 'L'))).join('\n  ')}
  ${seq(NE).map((eb) => `workgroupBarrier();
  ${VEC ? `for (var t = lidx; t < ${BR * 4}u; t = t + WG_SIZE) {
    let r_ = t / 4u;
    let e_ = ${eb * 16}u + (t % 4u) * 4u;
    ${vload('q', 'q_at(b, h, q0 + r_, e_)', `q0 + r_ < LQ && e_ < ${E}`)}
    let o_ = r_ * ${PST}u + (t % 4u) * 4u;
    pbuf[o_] = x_.x; pbuf[o_ + 1u] = x_.y; pbuf[o_ + 2u] = x_.z; pbuf[o_ + 3u] = x_.w;
  }` : `for (var t = lidx; t < ${BR * 16}u; t = t + WG_SIZE) {
    let r_ = t / 16u;
    let e_ = ${eb * 16}u + t % 16u;
    var x_ = 0.0;
    if (q0 + r_ < LQ && e_ < ${E}) { x_ = load_q(q_at(b, h, q0 + r_, e_)); }
    pbuf[r_ * ${PST}u + t % 16u] = ${EL}(x_);
  }`}
  workgroupBarrier();
  ${seq(NR).map((rb) => M.load(`ql_${rb}_${eb}`, 'L', 'pbuf', rowOff(rb, PST), false, PST)).join('\n  ')}`).join('\n  ')}`}
  ${seq(NR).flatMap((rb) => seq(NV).map((nb) => M.decl(`o_${rb}_${nb}`, 'A'))).join('\n  ')}
  var m_ref = neg_inf();
  var l_run = 0.0;${PF ? `
  // the first key tile's K and V into registers (stored to workgroup memory at the top of the loop)
  var pk_: array<${V4}, ${NPK}>;
  var pv_: array<${V4}, ${NPV}>;
  ${pfFetch('kv_lo', 'kv_hi')}` : ''}
  ${blockLoop(p, 'kv', BC, `
    workgroupBarrier();
    ${PF ? `${pfStore}
    ${pfFetch(`j0 + ${BC}u`, 'j_hi')}
` : VEC ? `for (var t = lidx; t < ${(BC * EC) / 4}u; t = t + WG_SIZE) {
      let r_ = t / ${EC / 4}u;
      let c_ = (t % ${EC / 4}u) * 4u;
      ${vload('k', 'k_at(b, hk, j0 + r_, c_)', `j0 + r_ < j_hi && c_ < ${E}`)}
      ${KT ? `ks[c_ * ${KST}u + r_] = x_.x; ks[(c_ + 1u) * ${KST}u + r_] = x_.y; ks[(c_ + 2u) * ${KST}u + r_] = x_.z; ks[(c_ + 3u) * ${KST}u + r_] = x_.w;`
        : `let o_ = r_ * ${KST}u + c_; ks[o_] = x_.x; ks[o_ + 1u] = x_.y; ks[o_ + 2u] = x_.z; ks[o_ + 3u] = x_.w;`}
    }
    for (var t = lidx; t < ${(BC * EVC) / 4}u; t = t + WG_SIZE) {
      let r_ = t / ${EVC / 4}u;
      let c_ = (t % ${EVC / 4}u) * 4u;
      ${vload('v', 'v_at(b, hk, j0 + r_, c_)', `j0 + r_ < j_hi && c_ < ${EV}`)}
      let o_ = r_ * ${VST}u + c_; vs[o_] = x_.x; vs[o_ + 1u] = x_.y; vs[o_ + 2u] = x_.z; vs[o_ + 3u] = x_.w;
    }` : `for (var t = lidx; t < ${BC * EC}u; t = t + WG_SIZE) {
      let r_ = t / ${EC}u;
      let c_ = t % ${EC}u;
      var x_ = 0.0;
      if (j0 + r_ < j_hi && c_ < ${E}) { x_ = load_k(k_at(b, hk, j0 + r_, c_)); }
      ks[${KT ? `c_ * ${KST}u + r_` : `r_ * ${KST}u + c_`}] = ${EL}(x_);
    }
    for (var t = lidx; t < ${BC * EVC}u; t = t + WG_SIZE) {
      let r_ = t / ${EVC}u;
      let c_ = t % ${EVC}u;
      var x_ = 0.0;
      if (j0 + r_ < j_hi && c_ < ${EV}) { x_ = load_v(v_at(b, hk, j0 + r_, c_)); }
      vs[r_ * ${VST}u + c_] = ${EL}(x_);
    }`}
    if (lidx == 0u) { wg_flag = vec4<u32>(0u); }
    workgroupBarrier();
    // S = Q·Kᵀ (raw dot products) into this subgroup's rows of sbuf
    ${seq(NC).map((cb) => `{
      ${seq(NR).map((rb) => M.decl(`sa_${rb}`, 'A')).join(' ')}
      ${seq(NE).map((eb) => `{
        ${M.decl('kr', 'R')}
        ${KT ? M.load('kr', 'R', 'ks', `${eb * 16 * KST + cb * 16}u`, false, KST) : M.load('kr', 'R', 'ks', `${cb * 16 * KST + eb * 16}u`, true, KST)}
        ${seq(NR).map((rb) => (QR ? `{ ${M.decl('qx', 'L')} ${M.load('qx', 'L', 'qs', `${rowOff(rb, QST)} + ${eb * 16}u`, false, QST)} ${M.mma(`sa_${rb}`, 'qx', 'kr', `sa_${rb}`)} }` : M.mma(`sa_${rb}`, `ql_${rb}_${eb}`, 'kr', `sa_${rb}`))).join('\n        ')}
      }`).join('\n      ')}
      ${seq(NR).map((rb) => M.store('sbuf', `${rowOff(rb, SST)} + ${cb * 16}u`, `sa_${rb}`, SST)).join('\n      ')}
    }`).join('\n    ')}
    workgroupBarrier();${cfg.debug === 'S' ? `
    if (own && qi < LQ) { for (var c = 0u; c < ${Math.min(BC, d.Ev)}u; c = c + 1u) { store_out(o_idx(b, h, qi, c), sbuf[my_r * ${SST}u + c]); } }
    return;` : ''}
    ${RSM ? rsmSoftmax : SPLIT ? `// online softmax in f32, each row on two lanes (lane l and l ^ 16: ${HB} keys each)
    var alpha = 1.0;
    {
      let sr = sg * 16u + lane % 16u;
      let sqi = q0 + sr;
      let c_lo = (lane / 16u) * ${HB}u;
      var mt = neg_inf();
      for (var c = c_lo; c < c_lo + ${HB}u; c = c + 1u) {
        let j = j0 + c;
        var x = neg_inf();
        if (sqi < LQ && j < j_hi) { x = finish_score(sbuf[sr * ${SST}u + c] * u_scale(), b, h, sqi, j, !full_blk); }
        sbuf[sr * ${SST}u + c] = x;
        mt = max(mt, nan_hi(x));
      }
      ${combine('mt', (a, b) => `max(${a}, ${b})`)}
      var m_new = m_ref;
      if (mt > m_ref + ${LAZY.toFixed(1)}) {
        m_new = mt;
        if (m_ref != neg_inf()) { alpha = exp(m_ref - mt); wg_flag.x = 1u; }
      }
      let live = m_new != neg_inf();
      var rsum = 0.0;
      for (var c = c_lo; c < c_lo + ${HB}u; c = c + 1u) {
        let pr = ${EL}(select(0.0, exp(sbuf[sr * ${SST}u + c] - m_new), live));
        pbuf[sr * ${PST}u + c] = pr;
        rsum = rsum + f32(pr);
      }
      ${combine('rsum', (a, b) => `${a} + ${b}`)}
      l_run = l_run * alpha + rsum;
      m_ref = m_new;
    }` : `    // online softmax in f32, one invocation per query row
    var alpha = 1.0;
    if (own) {
      var mt = neg_inf();
      for (var c = 0u; c < ${BC}u; c = c + 1u) {
        let j = j0 + c;
        var x = neg_inf();
        if (qi < LQ && j < j_hi) { x = finish_score(sbuf[my_r * ${SST}u + c] * u_scale(), b, h, qi, j, !full_blk); }
        sbuf[my_r * ${SST}u + c] = x;
        mt = max(mt, nan_hi(x));
      }
      var m_new = m_ref;
      if (mt > m_ref + ${LAZY.toFixed(1)}) {
        m_new = mt;
        // a row that saw no score yet has O = 0 and l = 0: nothing to rescale
        if (m_ref != neg_inf()) { alpha = exp(m_ref - mt); wg_flag.x = 1u; }
      }
      let live = m_new != neg_inf();
      var rsum = 0.0;
      for (var c = 0u; c < ${BC}u; c = c + 1u) {
        let pr = ${EL}(select(0.0, exp(sbuf[my_r * ${SST}u + c] - m_new), live));
        pbuf[my_r * ${PST}u + c] = pr;
        rsum = rsum + f32(pr);
      }
      l_run = l_run * alpha + rsum;
      m_ref = m_new;
    }`}
    ${cfg.debug === 'P' ? `workgroupBarrier();
    if (own && qi < LQ) { for (var c = 0u; c < ${Math.min(BC, d.Ev)}u; c = c + 1u) { store_out(o_idx(b, h, qi, c), f32(pbuf[my_r * ${PST}u + c])); } store_lse(lse_idx(b, h, qi), m_ref); }
    return;` : ''}
    // workgroupUniformLoad is a barrier too: P and the flag are visible after it
    if (workgroupUniformLoad(&wg_flag).x != 0u) {
      // some row's reference max moved: O = O · alpha (per row) through workgroup memory
      ${throughWg(() => `if (own) { for (var c = 0u; c < ${CW}u; c = c + 1u) { sbuf[my_r * ${SST}u + c] = sbuf[my_r * ${SST}u + c] * alpha; } }`, true)}
    }
    // O += P·V
    ${seq(NC).map((kb) => `{
      ${seq(NR).map((rb) => `${M.decl(`pl_${rb}`, 'L')} ${M.load(`pl_${rb}`, 'L', 'pbuf', `${rowOff(rb, PST)} + ${kb * 16}u`, false, PST)}`).join('\n      ')}
      ${seq(NV).map((nb) => `{
        ${M.decl('vr', 'R')}
        ${M.load('vr', 'R', 'vs', `${kb * 16 * VST + nb * 16}u`, false, VST)}
        ${seq(NR).map((rb) => M.mma(`o_${rb}_${nb}`, `pl_${rb}`, 'vr', `o_${rb}_${nb}`)).join('\n        ')}
      }`).join('\n      ')}
    }`).join('\n    ')}
`)}
  if (own) {
    linv[my_r] = select(1.0 / l_run, 0.0, l_run == 0.0);
    if (qi < LQ) { store_lse(lse_idx(b, h, qi), select(m_ref + log(l_run), neg_inf(), l_run == 0.0)); }
  }
  ${throughWg((ch) => `for (var t = lane; t < ${RS * CW}u; t = t + 32u) {
      let row = sg * ${RS}u + t / ${CW}u;
      let e = ${ch * CW}u + t % ${CW}u;
      let i = q0 + row;
      if (i < LQ && e < ${EV}) { store_out(o_idx(b, h, i, e), sbuf[row * ${SST}u + t % ${CW}u] * linv[row]); }
    }`, false)}`;
  // every workgroup variable's size is a multiple of 16 bytes (the scalars are vec4, the arrays' strides and
  // lengths multiples of 8 f16 / 4 f32; shared.ts's wg_lens / wg_cnt / wg_blk too): subgroup-matrix loads and
  // stores on the H100 (Dawn/Vulkan, webgpu 0.6.2) round the address down to 16 bytes, and one 4-byte u32
  // laid out first shifted every staged array by 4 bytes (S came out as Q·Kᵀ read 2 f16 early, stored 1 f32
  // early: the wrong scores of the earlier device runs, reproduced exactly from the dumped values)
  const helpers = `${emulate ? EMU_WGSL : ''}
var<workgroup> ks: array<${EL}, ${KT ? EC * KST : BC * KST}>;
${QR ? `var<workgroup> qs: array<${EL}, ${BR * QST}>;` : ''}
var<workgroup> vs: array<${EL}, ${BC * VST}>;
var<workgroup> sbuf: array<f32, ${BR * SST}>;
var<workgroup> pbuf: array<${EL}, ${BR * PST}>;
var<workgroup> linv: array<f32, ${BR}>;
var<workgroup> wg_flag: vec4<u32>;${SPLIT === 'wg' ? `
var<workgroup> xch: array<f32, ${NSG * 32}>;` : ''}
// NaN by its bits: the NVIDIA driver folds x != x away (DESIGN.md, WebGPU facts)
fn nan_hi(x: f32) -> f32 { let u = bitcast<u32>(x); return select(x, pos_inf(), (u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0u); }
${scoreHelpers(p)}
${tileMapWgsl(p, 'q')}`;
  return {
    name: 'flash_attention_forward_sgmat',
    key: cacheKey(p, `sgmat${emulate ? 'E' : ''}:${RS}x${NSG}x${BC}${KT ? 'T' : ''}${QR ? 'Q' : ''}${VEC ? 'V' : ''}${SPLIT ? `S${SPLIT}` : ''}${RSM ? 'R' : ''}${PF ? 'F' : ''}:x${d.E}:${d.Ev}${cfg.debug ?? ''}`),
    bindings: [
      // vector staging: q, k and v declared as arrays of vec4 (nothing else reads them)
      ...inputBindings(p).map((x) => (VEC && (x.name === 'q' || x.name === 'k' || x.name === 'v') ? { ...x, vec4: true } : x)),
      { name: 'out', dtype: p.q.dtype, access: 'read_write' },
      { name: 'lse', dtype: 'float32', access: 'read_write' },
      ...(p.varlen ? [{ name: 'vl', dtype: 'int32' as const, access: 'read' as const }] : []),
    ],
    uniforms: commonUniforms(p),
    workgroupSize: [NSG * 32],
    helpers,
    body,
    ...(emulate ? (SPLIT === 'shuffle' ? { directives: ['enable subgroups;'] } : {}) : { directives: ['diagnostic(off, chromium.subgroup_matrix_uniformity);', 'enable subgroups;', 'enable chromium_experimental_subgroup_matrix;'] }),
  };
}
