/**
 * The plan of one attention call: the parameter types every front door fills in, the dimensions,
 * uniforms and bindings shared by the forward and the two backward kernels, the tile shapes chosen
 * for the adapter's workgroup memory, and the passes that keep one invocation under the adapter's
 * loop-iteration cap. No WGSL here besides binding and uniform declarations.
 */
import { broadcastStrides, WebattnError, type Tensor } from '@webattn/core-tensor';
import type { WebGPUDevice } from '../device/webgpu-device.js';
import type { BindingSpec, UniformField, UniformValues } from '../wgsl.js';

/** Largest head dimension (E and Ev) the flash kernels compile for. */
export const FLASH_MAX_HEAD_DIM = 256;

/** Additive (float) or boolean (true = attend) mask tensor read tile by tile, broadcast by strides. */
export interface FlashMask {
  /** The mask, broadcastable to `[B, Hq, Lq, Lkv]`. */
  tensor: Tensor;
  /** `bool`: true = attend; `float`: added to the scaled scores. */
  kind: 'bool' | 'float';
}

/**
 * Captured values of a front door's hook functions: tensors as read-only storage bindings, numbers as
 * uniform fields (read in WGSL as `u_<name>()`).
 */
export interface FlashCaptures {
  /** Read-only storage bindings of captured tensors. */
  bindings: BindingSpec[];
  /** The tensors of `bindings`, in order. */
  tensors: Tensor[];
  /** Uniform fields of captured numbers. */
  uniforms?: UniformField[];
  /** Values of `uniforms`. */
  values?: UniformValues;
}

/** Gradients into captured tensors, accumulated by the dQ kernel once per visible (query, key) pair. */
export interface FlashCaptureGrads {
  /**
   * Body of `capture_grads(s: f32, b: u32, h: u32, q: u32, kv: u32, g: f32)`: `s` the raw scaled score,
   * `g` = d(loss)/d(modified score).
   */
  body: string;
  /** Module-scope WGSL the body calls (e.g. atomic adds into the gradient bindings). */
  helpers: string;
  /** Read-write bindings of the gradient buffers. */
  bindings: BindingSpec[];
  /** The tensors of `bindings`, in order. */
  tensors: Tensor[];
}

/**
 * Hooks a front door adds to the generated kernels, as a typed description: function BODIES (the
 * generator writes every signature and every call site, once per kernel), the module-scope helpers they
 * call, their captures and capture gradients. Indices are u32, the score f32.
 * @example const softcap: FlashHooks = { key: 'softcap', scoreMod: 'return u_cap() * tanh(s / u_cap());', captures: { bindings: [], tensors: [], uniforms: [['cap', 'f32']], values: { cap: 30 } } };
 */
export interface FlashHooks {
  /** Cache-key part for everything below (same key ⇒ same WGSL). */
  key: string;
  /** Body of `score_mod(s: f32, b: u32, h: u32, q: u32, kv: u32) -> f32`, applied to every visible score. */
  scoreMod?: string | null;
  /** Body of `score_mod_grad(s: f32, b: u32, h: u32, q: u32, kv: u32, g: f32) -> f32` = g · ∂score_mod/∂s (backward; required with `scoreMod`). */
  scoreModGrad?: string | null;
  /** Body of `mask_mod(b: u32, h: u32, q: u32, kv: u32) -> bool` (true = attend), skipped on full blocks. */
  maskMod?: string | null;
  /** Module-scope WGSL the bodies call (helper functions, capture index functions). */
  helpers?: string;
  /** Captured tensors and numbers. */
  captures?: FlashCaptures | null;
  /** Gradients into captured tensors (backward). */
  captureGrads?: FlashCaptureGrads | null;
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
    /** Host copy of `cuQ` when the caller has one: the tile map is then built on the host (`tile-map.ts`). */
    hostCuQ?: Int32Array | null;
    /** Host copy of `cuK` likewise. */
    hostCuK?: Int32Array | null;
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

/** Inputs of the backward pass besides the forward parameters. */
export interface FlashGradInputs {
  /** Gradient of the output, shaped like it (any strides). */
  dout: Tensor;
  /** The forward's log-sum-exp, contiguous float32. */
  lse: Tensor;
  /** rowsum(dout ∘ out), laid out like `lse`, contiguous float32. */
  delta: Tensor;
}

/** Sizes of one call (varlen: B sequences, Lq/Lkv the longest). */
export interface Dims {
  B: number;
  Hq: number;
  Hkv: number;
  Lq: number;
  Lkv: number;
  E: number;
  Ev: number;
  G: number;
  TQ: number;
  TK: number;
}

/** The sizes of one call (`Dims`) from its tensors' shapes (dense or varlen layout). */
export function dims(p: FlashParams): Dims {
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
export function strides4(t: Tensor, varlen: boolean): number[] {
  return varlen ? [0, t.strides[1]!, t.strides[0]!, t.strides[2]!] : t.strides.slice();
}

/** Head-dim size class the staged tiles are declared with (one pipeline serves every E in a class). */
export function dimClass(n: number): number {
  for (const c of [16, 32, 64, 128, 256]) if (n <= c) return c;
  return n;
}

/**
 * A cooperative tile: `rows` × `cols` outputs per workgroup of `tr` × `tc` threads; thread (r, c)
 * owns the register sub-tile of rows r, r+tr, … and columns c, c+tc, … (rows/tr × cols/tc values).
 */
export interface Tile {
  rows: number;
  cols: number;
  tr: number;
  tc: number;
}

/**
 * Preferred tiles, best first. Hardware GPUs: 64 threads with 4×4-ish register blocks. Software
 * adapters (llvmpipe, SwiftShader) run a workgroup as a few SIMD vectors on one CPU core, where every
 * workgroup-memory read with a per-thread index is a gather: 16 threads with 8×8 register blocks
 * halve the reads per multiply-add.
 */
/**
 * A tile list from `rows`×`cols` down to 8×4: columns and rows halve in turn to 8×8, then 8×4 (at most 4
 * column threads there), every tile on the same `tr`×`tc` thread grid.
 */
function ladder(rows: number, cols: number, tr: number, tc: number): Tile[] {
  const out: Tile[] = [];
  for (let r = rows, c = cols; r >= 8 && c >= 8; c < r ? (r /= 2) : (c /= 2)) out.push({ rows: r, cols: c, tr, tc });
  out.push({ rows: 8, cols: 4, tr, tc: Math.min(tc, 4) });
  return out;
}
const HW_TILES: Tile[] = ladder(64, 64, 8, 8);
const SW_TILES: Tile[] = ladder(32, 32, 4, 4);

/**
 * Tiles for kernels that must compile fast on software adapters (SwiftShader's Subzero backend emits
 * every unrolled register-block statement as masked SIMD code, ~10-30 ms each): 2×2 register blocks
 * over 64 threads keep each kernel's unrolled code small.
 */
const SMALL_TILES: Tile[] = [
  { rows: 16, cols: 16, tr: 8, tc: 8 },
  { rows: 8, cols: 8, tr: 8, tc: 8 },
  { rows: 8, cols: 4, tr: 8, tc: 4 },
];

/** 4×4 register blocks over 64 threads (a tuning choice for the hardware backward, see `setFlashTiles`). */
const MEDIUM_TILES: Tile[] = ladder(32, 32, 8, 8);

let tileMode: 'auto' | 'hardware' | 'software' | 'small' | 'medium' = 'auto';
/**
 * Which tile list the flash kernels pick from: `auto` (by adapter), or the `hardware` / `software` /
 * `small` list on any adapter (the backward uses the hardware list unless `small`), or `medium` (4×4 blocks,
 * forward and backward). A testing knob
 * (every list runs on every adapter); results are the same.
 */
export function setFlashTiles(mode: 'auto' | 'hardware' | 'software' | 'small' | 'medium'): void {
  tileMode = mode;
}

let stagingMode: 'auto' | 'workgroup' | 'storage' = 'auto';
/**
 * Where the flash kernels stage their operand tiles: `auto` (by adapter), `workgroup` memory, or a
 * per-workgroup slice of a `storage` scratch buffer. A testing knob (both run on every adapter).
 */
export function setFlashStaging(mode: 'auto' | 'workgroup' | 'storage'): void {
  stagingMode = mode;
}

/** SwiftShader (Chromium's and Dawn's software Vulkan). */
function isSwiftShader(device: WebGPUDevice): boolean {
  const i = device.info;
  return /swiftshader/i.test(`${i.adapter} ${i.architecture ?? ''} ${i.vendor ?? ''}`);
}

/**
 * Staging in a storage scratch buffer instead of workgroup memory. WebGPU zero-initialises workgroup
 * memory; SwiftShader compiles that initialisation element by element, superlinearly in the declared
 * size (measured in Node's Dawn: 1024 f32 3.6 s, 4096 f32 23 s; 155 ms with the initialisation off),
 * which made the tile kernels compile for minutes. Its "workgroup memory" is plain host memory anyway.
 */
export function storageStaging(device: WebGPUDevice): boolean {
  return stagingMode === 'storage' || (stagingMode === 'auto' && isSwiftShader(device));
}

/**
 * The first tile whose workgroup memory (`bytes(tile)`) fits the adapter (a little is kept for the
 * kernels' scalars). Rows and columns divide 64, so a tile never straddles a block-sparse block.
 * `smallHeads` (head dims ≤ 64) lets the hardware backward take the small register blocks.
 */
export function pickTile(device: WebGPUDevice, bytes: (t: Tile) => number, what: string, backward = false, regs: (t: Tile) => number = () => 0, hooked = false, smallHeads = false): Tile {
  // with storage staging only the small per-row arrays live in workgroup memory
  const budget = storageStaging(device) ? Infinity : device.limits.maxComputeWorkgroupStorageSize - 64;
  // Software adapters compile the unrolled register blocks slowly (LLVM on llvmpipe: ~20 s for the 8×8
  // forward, minutes for 8×8 backward kernels; SwiftShader: seconds per few hundred statements). Their
  // backward kernels and every kernel with front-door hooks (a new pipeline per user function) take the
  // small blocks; the plain llvmpipe forward, compiled once, keeps the fast 8×8 blocks.
  // Hardware GPUs: the forward takes the small blocks too — on the H100 (Dawn/Vulkan, f32, sustained load at
  // 1980 MHz) they ran 1.3-1.85x faster than the 8x8 blocks (B=8 H=16 L=1024 E=64: 12.1 vs 17.7 ms; ViT
  // B=128 L=196: 8.2 vs 15.2 ms; L=4096: 172.9 vs 220.8 ms): four times the workgroups, fewer registers.
  // The hardware backward takes them too at head dims ≤ 64 (H100, f32 fwd+bwd: 65.2 vs 67.9 ms B=8 H=16 L=1024,
  // 93.1 vs 100.6 ms B=1 L=4096; f16 60.4 vs 69.9 ms), not at E=128 (211 vs 201 ms).
  const small =
    tileMode === 'small' ||
    (tileMode === 'auto' &&
      (isSwiftShader(device) || (device.info.software && (backward || hooked)) || (!device.info.software && (!backward || smallHeads))));
  const list = tileMode === 'medium' ? MEDIUM_TILES : small ? SMALL_TILES : !backward && (tileMode === 'auto' ? device.info.software : tileMode === 'software') ? SW_TILES : HW_TILES;
  // at most ~192 accumulators per thread: beyond that compilers spill and LLVM (llvmpipe) compiles for minutes
  const t = list.find((c) => bytes(c) <= budget && regs(c) <= 192) ?? list.find((c) => bytes(c) <= budget);
  if (!t) {
    throw new WebattnError(
      'LIMIT_EXCEEDED',
      `${what}: the smallest attention tile needs ${bytes(list[list.length - 1]!)} bytes of workgroup memory; the adapter allows ${budget + 64}`,
      { argument: 'query' },
    );
  }
  return t;
}

const strided4 = (name: string): UniformField[] => [
  [`${name}_off`, 'u32'],
  [`${name}_st`, 'u32', 4],
];

/** Uniform fields every attention kernel declares: sizes, scale, causal offset and the q/k/v/mask/varlen strides. */
export function commonUniforms(p: FlashParams): UniformField[] {
  return [
    ...(p.hooks?.captures?.uniforms ?? []),
    ['B', 'u32'], ['hq', 'u32'], ['hkv', 'u32'], ['group', 'u32'], ['lq', 'u32'], ['lkv', 'u32'],
    ['scale', 'f32'], ['causal_off', 'i32'], ['e', 'u32'], ['ev', 'u32'],
    ['c_begin', 'u32'], ['c_stop', 'u32'], ['c_first', 'u32'], ['c_last', 'u32'], ['g_begin', 'u32'], ['g_stop', 'u32'],
    ['tq', 'u32'], ['tk', 'u32'], ['win_l', 'i32'], ['win_r', 'i32'],
    ['bs', 'u32'], ['bm', 'u32'], ['hm', 'u32'], ['nqb', 'u32'], ['nkb', 'u32'], ['bt_off', 'u32', 8],
    ...strided4('q'), ...strided4('k'), ...strided4('v'), ...strided4('m'),
  ];
}

/** Values of `commonUniforms` for one call. */
export function commonValues(p: FlashParams): UniformValues {
  const d = dims(p);
  const st = (t: Tensor | undefined) => ({ off: t?.offset ?? 0, st: t ? t.strides.slice() : [0, 0, 0, 0] });
  const m = p.mask
    ? { off: p.mask.tensor.offset, st: broadcastStrides(p.mask.tensor.shape, p.mask.tensor.strides, [d.B, d.Hq, d.Lq, d.Lkv]) }
    : st(undefined);
  return {
    ...(p.hooks?.captures?.values ?? {}),
    e: d.E, ev: d.Ev,
    B: d.B, hq: d.Hq, hkv: d.Hkv, group: d.G, lq: d.Lq, lkv: d.Lkv, scale: p.scale, causal_off: p.causalOffset,
    q_off: p.q.offset, q_st: strides4(p.q, !!p.varlen), k_off: p.k.offset, k_st: strides4(p.k, !!p.varlen),
    v_off: p.v.offset, v_st: strides4(p.v, !!p.varlen), m_off: m.off, m_st: m.st,
    tq: d.TQ, tk: d.TK, win_l: p.window?.left ?? -1, win_r: p.window?.right ?? -1,
    bs: p.blocks?.bs ?? 0, bm: p.blocks?.bm ?? 1, hm: p.blocks?.hm ?? 1, nqb: p.blocks?.nqb ?? 0, nkb: p.blocks?.nkb ?? 0,
    bt_off: p.blocks ? p.blocks.offsets.slice() : [],
  };
}

/** Uniform fields and values of the gradient kernels (the forward's plus dout's strides). */
export function gradUniforms(p: FlashParams): UniformField[] {
  return [...commonUniforms(p), ...strided4('do')];
}

/** Values of the backward kernels' extra uniforms (the strides of dO) for one call. */
export function gradValues(p: FlashParams, g: FlashGradInputs): UniformValues {
  return { ...commonValues(p), do_off: g.dout.offset, do_st: strides4(g.dout, !!p.varlen) };
}

/** Read-only bindings every attention kernel declares: q, k, v, and the mask / varlen table when present. */
export function inputBindings(p: FlashParams): BindingSpec[] {
  const b: BindingSpec[] = [
    { name: 'q', dtype: p.q.dtype, access: 'read' },
    { name: 'k', dtype: p.k.dtype, access: 'read' },
    { name: 'v', dtype: p.v.dtype, access: 'read' },
  ];
  if (p.mask) b.push({ name: 'mask', dtype: p.mask.tensor.dtype, access: 'read' });
  // varlen: cu_seqlens and the tile map come in the kernel's own `vl` binding (tile-map.ts)
  if (p.blocks) b.push({ name: 'bt', dtype: 'int32', access: 'read' });
  if (p.hooks?.captures) b.push(...p.hooks.captures.bindings);
  return b;
}

/** The tensors of `inputBindings`, in order. */
export function inputTensors(p: FlashParams): Tensor[] {
  const bt = p.blocks ? [p.blocks.table] : [];
  return [p.q, p.k, p.v, ...(p.mask ? [p.mask.tensor] : []), ...bt, ...(p.hooks?.captures?.tensors ?? [])];
}

/** Bindings of the backward kernels: `inputBindings` plus dO, lse and delta. */
export function gradBindings(p: FlashParams, g: FlashGradInputs): BindingSpec[] {
  return [
    ...inputBindings(p),
    { name: 'dout', dtype: g.dout.dtype, access: 'read' },
    { name: 'lse', dtype: 'float32', access: 'read' },
    { name: 'delta', dtype: 'float32', access: 'read' },
  ];
}

/** The tensors of `gradBindings`, in order. */
export function gradTensors(p: FlashParams, g: FlashGradInputs): Tensor[] {
  return [...inputTensors(p), g.dout, g.lse, g.delta];
}

let specialization: 'auto' | 'always' | 'never' = 'auto';
/**
 * How the flash kernels bind head dims: `auto` (compile-time bounds on hardware GPUs, runtime bounds
 * on software adapters), `always` or `never`. A tuning and testing knob; results are the same.
 */
export function setFlashSpecialization(mode: 'auto' | 'always' | 'never'): void {
  specialization = mode;
}

/**
 * On hardware GPUs the head dims become compile-time loop bounds (unrolled, registers); software
 * adapters keep runtime bounds, which compile one pipeline per size class in under a second.
 */
export function constantBounds(p: FlashParams): boolean {
  return specialization === 'always' || (specialization === 'auto' && !p.q.device.info.software);
}

/** WGSL expressions of the head dims: literals when bounds are constant, uniform reads otherwise. */
export function headDims(p: FlashParams): { e: string; ev: string } {
  const d = dims(p);
  return constantBounds(p) ? { e: `${d.E}u`, ev: `${d.Ev}u` } : { e: 'u_e()', ev: 'u_ev()' };
}

/** Which tile kernels a pass generates: `auto` (by adapter), `registers` or `staged` (see {@link setFlashForwardPath}). */
type TilePath = 'auto' | 'registers' | 'staged';
/** The start value of a path knob: its environment variable when set to `registers` / `staged`, else `auto`. */
function envPath(name: string): TilePath {
  const v = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
  return v === 'registers' || v === 'staged' ? v : 'auto';
}
/**
 * The register kernels under `auto`: hardware GPUs, and llvmpipe for kernels without front-door hooks. SwiftShader
 * (storage staging) and hooked kernels on software adapters keep the staged kernels: they compile every unrolled
 * per-score statement slowly (SwiftShader seconds per hundred; LLVM one pipeline per user function).
 */
function takesRegisters(mode: TilePath, p: FlashParams): boolean {
  if (mode !== 'auto') return mode === 'registers';
  const device = p.q.device as WebGPUDevice;
  if (storageStaging(device)) return false;
  return !device.info.software || !p.hooks;
}
let forwardPath: TilePath = envPath('WEBATTN_FLASH_FORWARD');
/**
 * Which forward the tile path generates: `auto` (by adapter), `registers` (each thread keeps a 4×4 block
 * of S and its online softmax in registers; Q/K staged transposed as vec4 columns: the hardware-GPU
 * kernel) or `staged` (S goes through workgroup memory and the per-score work runs once per kernel in a
 * plain loop: small code, the software adapters' kernel). A testing knob (both run on every adapter);
 * results are the same. The environment variable `WEBATTN_FLASH_FORWARD` sets its start value.
 */
export function setFlashForwardPath(mode: TilePath): void {
  forwardPath = mode;
}

/**
 * Whether the forward takes the register path: forced by `setFlashForwardPath`, else as `takesRegisters` says
 * (llvmpipe: its 8-row register blocks ran 1.9x faster than the staged forward at B=1 H=4 L=1024 E=64, 168 vs
 * 312 ms, for ~5 s of LLVM compile instead of ~2.4 s; H100 f32 B=8 H=16 L=1024 E=64: 2.08 vs 12.1 ms).
 */
export function registerForward(p: FlashParams): boolean {
  return takesRegisters(forwardPath, p);
}

let registerTile: { tr: number; tc: number; rv?: number; prefetch?: boolean; shared?: boolean; qk?: number; pad?: boolean; lean?: boolean; kw?: number; ld4?: boolean; qr?: number } | null = null;
/**
 * Forces the register forward's thread grid (`tr` × `tc` threads, 4·rv × 4 scores each, so 4·tr·rv query
 * rows by 4·tc keys per tile; `rv` 1 or 2, default 1) where it fits the adapter, and with `prefetch: false` turns off loading the next
 * key tile during the current one, and with `shared` true/false forces K and V into one buffer or two;
 * `null` = the first fitting grid of the built-in list, prefetching where
 * registers allow. `qk` (a divisor of the head-dim class) stages Q·Kᵀ that many head-dim columns at a time, Q
 * re-read per key tile instead of held in workgroup memory all along; `pad` lengthens the transposed staging rows by
 * one vec4 (no workgroup-memory bank conflicts on the tile stores); `lean` exchanges the NaN flags through the row-sum
 * buffer; `kw` gives each thread 4·kw keys per tile. A tuning and testing knob (bench/gpu/tile_probe.mjs, fwd_probe.mjs); results are the same.
 */
export function setFlashRegisterTile(t: { tr: number; tc: number; rv?: number; prefetch?: boolean; shared?: boolean; qk?: number; pad?: boolean; lean?: boolean; kw?: number; ld4?: boolean; qr?: number } | null): void {
  registerTile = t;
}
/** The forced register-forward thread grid, or null. */
export function forcedRegisterTile(): { tr: number; tc: number; rv?: number; prefetch?: boolean; shared?: boolean; qk?: number; pad?: boolean; lean?: boolean; kw?: number; ld4?: boolean; qr?: number } | null {
  return registerTile;
}

/** Pipeline cache key of one kernel: everything that changes its WGSL (never a size that lives in a uniform). */
export function cacheKey(p: FlashParams, extra: string): string {
  const d = dims(p);
  const exact = constantBounds(p) ? `x${d.E}:${d.Ev}:` : '';
  return `${exact}E${dimClass(d.E)}:Ev${dimClass(d.Ev)}:c${p.causal}:m${p.mask?.kind ?? '-'}:v${!!p.varlen}:w${!!p.window}:s${!!p.blocks}:h${p.hooks?.key ?? '-'}:${extra}`;
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

/** Uniform values of pass `n` of `count` of a split loop (see `passes`): its range [c0, c1), first/last flags and group range [g0, g1). */
export function chunkValues(c0: number, c1: number, n: number, count: number, g0 = 0, g1 = 0): UniformValues {
  return { c_begin: c0, c_stop: c1, c_first: n === 0 ? 1 : 0, c_last: n === count - 1 ? 1 : 0, g_begin: g0, g_stop: g1 };
}

/** Throws a coded `LIMIT_EXCEEDED` naming `argument` when `n` workgroups exceed one grid dimension of the adapter. */
export function checkGrid(device: WebGPUDevice, n: number, argument: string): void {
  const max = device.limits.maxComputeWorkgroupsPerDimension;
  if (n > max) {
    throw new WebattnError('LIMIT_EXCEEDED', `${argument}: batch × heads = ${n} exceeds maxComputeWorkgroupsPerDimension (${max})`, { argument });
  }
}

let backwardPath: TilePath = envPath('WEBATTN_FLASH_BACKWARD');
/**
 * Which backward the tile path generates: `auto` (by adapter), `registers` (each thread keeps a 4×4 block of
 * S, dP, P and dS in registers; Q, K, V and dO staged transposed as vec4 columns: the hardware-GPU kernels) or
 * `staged` (S and dP go through workgroup memory and the per-score work runs once per kernel in a plain loop).
 * A tuning and testing knob (both run on every adapter; where no register grid fits — head dims over 128 f32,
 * or the adapter's workgroup memory — the staged kernels run). The environment variable
 * `WEBATTN_FLASH_BACKWARD` sets its start value.
 */
export function setFlashBackwardPath(mode: TilePath): void {
  backwardPath = mode;
}
/** The backward path knob (`auto` unless forced): the subgroup-matrix backward (`backward-sgmat.ts`) runs only under `auto`. */
export function backwardPathMode(): TilePath {
  return backwardPath;
}

/**
 * Whether the backward takes the register path: forced by `setFlashBackwardPath` / `WEBATTN_FLASH_BACKWARD`, else
 * as `takesRegisters` says (llvmpipe fwd+bwd B=1 H=4 L=1024 E=64 f32: 1.8 s with 4×4 grids vs 4.8 s staged, same
 * run; H100 fwd+bwd B=8 H=16 L=1024 E=64 f32 57.6 → 24.0 ms, f16 70.5 → 16.1 ms with 16×8 grids; ViT B=128 L=196
 * 45.9 → 23.4 / 46.2 → 15.0; B=1 L=4096 95.4 → 44.3 / 94.5 → 25.2 — bwd_probe.mjs, one call).
 */
export function registerBackward(p: FlashParams): boolean {
  return takesRegisters(backwardPath, p);
}

/** A thread grid of the register backward: `tr` × `tc` threads, each owning 4×4 scores. */
export interface BackwardGrid {
  /** Threads along the kernel's own rows (query rows for dQ, key rows for dK/dV): 4·tr rows per workgroup. */
  tr: number;
  /** Threads along the looped side (key tiles for dQ, query tiles for dK/dV): 4·tc per tile. */
  tc: number;
  /**
   * Load the next looped-side tile (K/V for dQ, Q/dO for dK/dV) from storage into registers while the current one
   * is multiplied (the register forward's prefetch); default where the per-thread registers allow (see `pickBackwardGrid`).
   */
  prefetch?: boolean;
  /**
   * dK/dV kernel only: P and dS take turns in one workgroup buffer (dV += Pᵀ·dO first, then dK += dSᵀ·Q; two more
   * barriers per tile) — what lets 16×4 fit f32 at head dim 64. Default: where two buffers do not fit.
   */
  turns?: boolean;
  /**
   * Head-dim chunk (a divisor of both head-dim classes, a multiple of `tc`, below the larger class): every operand
   * tile is staged `ch` columns at a time — S and dP accumulate over the chunks, the dQ / dK / dV products run chunk
   * by chunk — so no operand is held whole in workgroup memory (what lets f32 head dim 128 take 16×8 grids). Chunked
   * grids prefetch only in the dK/dV kernel and only where `prefetch` is set (the next chunk's operands are read into
   * registers while the current one is multiplied; Kᵀ / Vᵀ rows padded). Default: none (whole tiles), except the f32
   * head-dim-128+ grids of `pickBackwardGrid`.
   */
  ch?: number;
}
/** Which register backward kernel a grid is for. */
export type BackwardKernel = 'dq' | 'dkv';
/**
 * A grid from its text `TRxTC[cCH][pf][t]` (`cCH` head-dim chunks of CH columns; `pf` prefetch on, else off; `t` P/dS
 * by turns), as the environment variable `WEBATTN_FLASH_BACKWARD_GRID` and bench/gpu/bwd_probe.mjs write it; null for
 * anything else.
 */
export function parseBackwardGrid(text: string | undefined): BackwardGrid | null {
  const m = /^(\d+)x(\d+)(?:c(\d+))?(pf)?(t)?$/.exec(text ?? '');
  return m
    ? { tr: Number(m[1]), tc: Number(m[2]), ...(m[3] ? { ch: Number(m[3]) } : {}), prefetch: !!m[4], ...(m[5] ? { turns: true } : {}) }
    : null;
}
const envGrid = parseBackwardGrid((globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.WEBATTN_FLASH_BACKWARD_GRID);
let backwardGrid: Record<BackwardKernel, BackwardGrid | null> = { dq: envGrid, dkv: envGrid };
/**
 * Forces the register backward's thread grid where it fits the adapter: one grid for both kernels, or `{ dq, dkv }`
 * per kernel; `null` = the first fitting grid of the built-in list. A tuning and testing knob
 * (bench/gpu/bwd_probe.mjs); results are the same. The environment variable `WEBATTN_FLASH_BACKWARD_GRID`
 * (`TRxTC[cCH][pf][t]`, e.g. `4x4pf`, `16x16c32`) sets its start value.
 */
export function setFlashBackwardGrid(g: BackwardGrid | { dq?: BackwardGrid | null; dkv?: BackwardGrid | null } | null): void {
  if (!g) backwardGrid = { dq: null, dkv: null };
  else if ('tr' in g) backwardGrid = { dq: g, dkv: g };
  else backwardGrid = { dq: g.dq ?? null, dkv: g.dkv ?? null };
}
let lastGrids: Record<BackwardKernel, BackwardGrid | null> = { dq: null, dkv: null };
/** The register-backward grid each kernel ran with last (null: the staged kernel); for probes (bench/gpu/bwd_probe.mjs). */
export function lastBackwardGrids(): Record<BackwardKernel, BackwardGrid | null> {
  return { ...lastGrids };
}
/** Records the grid `kernel` runs with (see {@link lastBackwardGrids}). */
export function noteBackwardGrid(kernel: BackwardKernel, g: BackwardGrid | null): void {
  lastGrids = { ...lastGrids, [kernel]: g };
}
/** The forced register-backward grid of one kernel, or null. */
export function forcedBackwardGrid(kernel: BackwardKernel): BackwardGrid | null {
  return backwardGrid[kernel];
}

/** Float16 q, k, v and dO are staged as f16 by the register backward (exact; widened where multiplied). */
export function halfGradStaging(p: FlashParams, g: FlashGradInputs): boolean {
  return p.q.dtype === 'float16' && p.k.dtype === 'float16' && p.v.dtype === 'float16' && g.dout.dtype === 'float16';
}

/**
 * Register-backward grids of hardware GPUs and of software adapters, best first. 16×8 fits f16 inputs at head dim
 * 64 (both kernels); 16×4 fits f32 at head dim 64 (64 rows per workgroup: each staged tile serves twice the rows of
 * 8×8; the dK/dV kernel then takes P and dS by turns). H100 (Dawn/Vulkan, bwd_probe.mjs, one call, fwd+bwd ms, f32
 * E=64, old = 8×8 both without prefetch, new = 16×4 both with prefetch, both without the scores backward): ViT B=128
 * H=16 L=196 22.70 → 16.53, B=8 L=1024 24.37 → 16.62, B=1 L=4096 42.60 → 30.58, B=8 L=4096 319.5 → 230.6 (8×8 dK/dV
 * with prefetch: 17.23 / 18.93 / 31.05 / 221.1); f16 16×8 with prefetch: ViT 17.16 → 12.99, B=8 L=1024 14.75 → 12.63,
 * B=1 L=4096 26.31 → 20.07, B=8 L=4096 186.3 → 148.2.
 */
// (f32 dK/dV at head dims 64 and 128, f32 dQ at 128: the chunked grids below come first)
const BACKWARD_GRIDS: BackwardGrid[] = [{ tr: 16, tc: 8 }, { tr: 16, tc: 4 }, { tr: 8, tc: 8 }, { tr: 8, tc: 4 }, { tr: 4, tc: 8 }, { tr: 4, tc: 4 }];
const SOFTWARE_BACKWARD_GRIDS: BackwardGrid[] = [{ tr: 4, tc: 4 }, { tr: 8, tc: 4 }];
/**
 * Head-dim-chunked grids, tried first for f32 on hardware GPUs (see `chunkedBackward`). H100 (Dawn/Vulkan,
 * bwd_probe.mjs, fwd+bwd f32 ms, variants interleaved in one process; TF.js-WebGPU unfused in the same call):
 * B=8 H=16 L=1024 E=128: before (staged dK/dV, 4×4 dQ) 278.0, 16×8c32 27.6, 16×16c32 21.7 (dK/dV by turns; dQ = dS·K;
 * TF.js 14.4); L=2048 E=128: 969.1, 129.4, 112.7 (both kernels; TF.js: over its 2 GiB binding). Head dim 64, dK/dV
 * 16×16c32 instead of 16×4 prefetching (dQ = dS·K or dQ 16×4 as before): ViT B=128 L=196 11.81 → 10.29, B=8 L=1024
 * 14.09 → 10.60, B=1 L=4096 24.51 → 20.57, B=8 L=4096 228.4 → 205.4 (TF.js 7.3, 8.9, 17.9, —).
 */
// 16×16c32 prefetching (dK/dV kernel only; bwd_probe.mjs, H100 Dawn/Vulkan, one call, 3 interleaved rounds, fwd+bwd f32
// ms, dQ = dS·K, dK/dV 16×16c32 by turns → the same prefetching; dQ/dK/dV bit-identical; TF.js-WebGPU unfused in the
// same call): ViT B=128 H=16 L=196 E=64 11.99 → 9.61 (TF.js 8.62), B=8 L=1024 E=64 11.17 → 9.61 (9.38), B=1 L=4096
// E=64 20.24 → 17.79 (18.23), B=8 L=1024 E=128 25.97 → 17.86 (14.59); 16×16c16 prefetching, P and dS in two buffers:
// 10.54 / 10.20 / 18.33 / 21.30.
const CHUNKED_BACKWARD_GRIDS: BackwardGrid[] = [{ tr: 16, tc: 16, ch: 32, prefetch: true }, { tr: 16, tc: 8, ch: 32 }, { tr: 8, tc: 8, ch: 32 }];

/**
 * The register backward's grid for one kernel, or null (the staged kernel then runs): `bytes(g)` its
 * workgroup memory, `accumulators(g)` its f32 output accumulators per thread (at most 128, beyond that
 * compilers spill), `rows` 4·tr ≤ 64 so that a workgroup never straddles a block-sparse block. The grid prefetches
 * (unless forced otherwise) on hardware GPUs: H100 f32 8×8, fwd+bwd B=8 H=16 L=1024 E=64 24.37 → 17.42 ms although
 * its 64 prefetch registers per thread are twice the forward's limit; f16 16×8 14.75 → 12.63 ms. Software adapters
 * gain nothing from it (llvmpipe runs a workgroup's threads one SIMD batch after another).
 */
export function pickBackwardGrid(
  device: WebGPUDevice,
  kernel: BackwardKernel,
  bytes: (g: BackwardGrid) => number,
  accumulators: (g: BackwardGrid) => number,
  EC: number,
  EVC: number,
  chunked = false,
): BackwardGrid | null {
  const budget = device.limits.maxComputeWorkgroupStorageSize - 64;
  const chunkOk = (g: BackwardGrid) =>
    g.ch === undefined || (g.ch >= 4 && g.ch % g.tc === 0 && EC % g.ch === 0 && EVC % g.ch === 0 && g.ch < Math.max(EC, EVC));
  const fits = (g: BackwardGrid) =>
    EC % g.tc === 0 && EVC % g.tc === 0 && 4 * g.tr <= 64 && 4 * g.tc <= 64 && chunkOk(g) && bytes(g) <= budget && accumulators(g) <= 128 &&
    g.tr * g.tc <= device.limits.maxComputeInvocationsPerWorkgroup;
  // chunked grids prefetch where they say so: the dK/dV kernel's defaults, and forced grids of either kernel (the dQ
  // kernel's chunked prefetch is not measured yet: its defaults leave it off)
  const withPrefetch = (g: BackwardGrid, forced = false): BackwardGrid => ({ ...g, prefetch: g.ch ? (kernel === 'dkv' || forced) && !!g.prefetch : (g.prefetch ?? !device.info.software) });
  const forced = forcedBackwardGrid(kernel);
  if (forced && fits(forced)) return withPrefetch(forced, true);
  const list = device.info.software ? SOFTWARE_BACKWARD_GRIDS : chunked ? [...CHUNKED_BACKWARD_GRIDS, ...BACKWARD_GRIDS] : BACKWARD_GRIDS;
  const g = list.find(fits);
  return g ? withPrefetch(g) : null;
}

/**
 * Whether the register backward tries the head-dim-chunked grids first (hardware GPUs, f32 staging): the dK/dV kernel
 * at head-dim classes 64 and 128, the dQ kernel at 128 (at 64 its 16×4 prefetching grid ran as fast). Class 256 keeps
 * the staged kernels and classes up to 32 the whole-tile grids by default: not measured (a forced chunked grid runs
 * there where it fits).
 */
export function chunkedBackward(kernel: BackwardKernel, EC: number, EVC: number, half: boolean): boolean {
  const top = Math.max(EC, EVC);
  return chunkedOn && !half && (top === 128 || (kernel === 'dkv' && top === 64));
}
let chunkedOn = true;
/**
 * Whether the f32 register backward tries its chunked grids first where `chunkedBackward` says (`true`, the default)
 * or only the whole-tile grids (`false`: the defaults before the chunks; at head dim 128 the staged dK/dV kernel and a
 * 4×4 dQ grid). A tuning knob for bench/gpu/bwd_probe.mjs (`nochunk`); results are the same.
 */
export function setFlashBackwardChunked(on: boolean): void {
  chunkedOn = on;
}

/**
 * The setup both register backward kernels share: head-dim classes, the grid's thread count, the head dims as WGSL,
 * the staging element type, `wide` (a staged vec4 as vec4<f32>) and `qLoad(base)` — Q of row `base + r`, column
 * `e`: pre-scaled for f32 (the forward's scores bit for bit), exact for f16 (the scale then multiplies S and dS).
 */
export function registerBackwardBasics(p: FlashParams, grid: { tr: number; tc: number }, half: boolean) {
  const d = dims(p);
  return {
    d,
    EC: dimClass(d.E),
    EVC: dimClass(d.Ev),
    WG: grid.tr * grid.tc,
    hd: headDims(p),
    ST: (half ? 'f16' : 'f32') as 'f16' | 'f32',
    wide: (x: string) => (half ? `vec4<f32>(${x})` : x),
    qLoad: (base: string) => (r: string, e: string) => (half ? `load_q(q_at(b, h, ${base} + ${r}, ${e}))` : `load_q(q_at(b, h, ${base} + ${r}, ${e})) * u_scale()`),
  };
}

/** When the backward takes dQ from materialised score gradients (see {@link setFlashBackwardScores}). */
type ScoresMode = 'auto' | 'always' | 'never';
const envScores = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.WEBATTN_FLASH_BACKWARD_SCORES;
let scoresMode: ScoresMode = envScores === 'always' || envScores === 'never' ? envScores : 'auto';
/**
 * Whether the backward writes dS (float32 `[B, H, Lq, Lkv]`) from the dK/dV kernel and takes dQ = dS·K as one matmul
 * instead of the dQ kernel: `always` (where the call qualifies), `never`, or `auto` (hardware GPUs, dS ≤ 1 GiB).
 * Qualifying calls: float32, the register backward, dense layout, no causal mask, window, block tables or capture
 * gradients, dS within one storage binding. A tuning and testing knob; results agree
 * to float32 rounding (H100: 5e-7 to 2e-6 of the largest gradient). The environment variable
 * `WEBATTN_FLASH_BACKWARD_SCORES` sets its start value. H100 (Dawn/Vulkan, bwd_probe.mjs, one call, fwd+bwd f32 E=64,
 * the dQ kernel vs dQ = dS·K, same grids): ViT B=128 H=16 L=196 16.48 → 12.53 ms (dS 301 MiB), B=8 L=1024 16.80 →
 * 12.88 (512 MiB), B=1 L=4096 32.33 → 25.60 (1 GiB).
 */
export function setFlashBackwardScores(mode: ScoresMode): void {
  scoresMode = mode;
}

const backwardTuning = { dsVec4: true, tailSkip: true, dvReuse: true, fusedDelta: true };
/**
 * Tuning knobs of the register dK/dV kernel, for bench/gpu/bwd_probe.mjs A/B runs (results are the same either way):
 * `dsVec4` — the scores backward writes dS as aligned vec4s (4 keys of one query per store) where the key length is
 * a multiple of 4 (else, or off, one float per store); `tailSkip` — the chunked kernel's threads whose keys (or
 * queries) lie past the sequence skip their products; `dvReuse` — the prefetching chunked kernel takes dV's last chunk
 * first, from the dOᵀ chunk the last dP step staged (one staging step and two barriers fewer per query tile);
 * `fusedDelta` — see {@link fusedDelta}. All on by default. The first three on the H100 (Dawn/Vulkan, bwd_probe.mjs, one
 * process, 5 interleaved rounds, fwd+bwd f32 ms, Δ as a product and a row sum, dQ = dS·K, dK/dV
 * 16×16c32 prefetching by turns; all off → all on (without tailSkip / without dsVec4); gradients bit-identical; TF.js-WebGPU
 * unfused in the same call): ViT B=128 H=16 L=196 E=64 8.19 → 7.32 (7.65 / 7.66; TF.js 7.75), B=8 L=1024 E=64 8.19 →
 * 7.67 (7.59 / 7.81; 9.82), B=1 L=4096 E=64 15.77 → 13.88 (15.15 / 14.36; 18.75), B=8 L=1024 E=128 18.49 → 14.39
 * (14.88 / 15.04; 14.48); dK/dV kernel GPU time (profile(), timestamp queries) 24.3 → 19.3 at ViT. 16×8c32 prefetching with all three:
 * 8.70 / 9.23 / 16.73 / 24.82.
 */
export function setFlashBackwardTuning(t: { dsVec4?: boolean; tailSkip?: boolean; dvReuse?: boolean; fusedDelta?: boolean }): void {
  Object.assign(backwardTuning, t);
}
/** Whether the dK/dV kernel writes dS as vec4s for a key length `Lkv` (see {@link setFlashBackwardTuning}). */
export function scoresVec4(Lkv: number): boolean {
  return backwardTuning.dsVec4 && Lkv % 4 === 0;
}
/**
 * Whether the backward's Δ = rowsum(dO ∘ O) is one kernel (`backwardDelta` in backward-dq.ts) instead of a product and
 * a row sum (`fusedDelta` of {@link setFlashBackwardTuning}; default: yes on every adapter). llvmpipe (Mesa 22.3.6, Δ
 * alone, f32): [1, 4, 1024, 64] 50.5 → 2.3 ms, [8, 4, 196, 64] 83.2 → 3.4 ms. H100: not measured yet (bwd_probe.mjs
 * `nodelta`); the product and row sum took 8% of a ViT B=128 L=196 fwd+bwd's GPU time there (profile()).
 */
export function fusedDelta(): boolean {
  return backwardTuning.fusedDelta;
}
/** Whether the prefetching chunked dK/dV kernel reuses the last dP step's dOᵀ chunk (see {@link setFlashBackwardTuning}). */
export function dvReuse(): boolean {
  return backwardTuning.dvReuse;
}
/** Whether the chunked dK/dV kernel skips the products of threads past the sequence (see {@link setFlashBackwardTuning}). */
export function tailSkip(): boolean {
  return backwardTuning.tailSkip;
}

/** Whether a call takes the scores backward (`bytes`: its dS; `maxBinding`: the adapter's largest storage binding). */
export function scoresBackward(p: FlashParams, bytes: number, maxBinding: number): boolean {
  if (scoresMode === 'never') return false;
  const ok =
    p.q.dtype === 'float32' && p.k.dtype === 'float32' && p.v.dtype === 'float32' && !p.varlen && !p.blocks && !p.causal && !p.window &&
    !p.hooks?.captureGrads && bytes > 0 && bytes <= maxBinding;
  if (!ok) return false;
  return scoresMode === 'always' || (!(p.q.device as WebGPUDevice).info.software && bytes <= 2 ** 30);
}
