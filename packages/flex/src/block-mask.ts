/**
 * BlockMask: FlexAttention's block-sparse description of a mask. Built per (b, h, q block, kv block)
 * by classifying each block pair as empty, partial or full — on the GPU by a kernel that evaluates the
 * compiled mask function, on the CPU by calling the JS function — never as a dense Lq×Lkv mask.
 */
import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Device, type Tensor } from '@webattn/core-tensor';
import { checkOptions, linearGrid, run, wgReduce, type FlashBlocks, type OptionSpec, type WebGPUDevice } from '@webattn/kernels-webgpu/internal';
import { asMask, checkModLengths, compileMod, hostMask, type Captures, type MaskMod, type MaskModFn } from './mods.js';
import { modResources, probeCompile } from './wgsl-mods.js';
import { children } from './codegen.js';
import type { IR } from './ir.js';

/** Options of {@link createBlockMask}. */
export interface BlockMaskOptions {
  /** Block size (default 128; a multiple of 64). */
  blockSize?: number;
  /** Where to evaluate the mask (default: the default device). */
  device?: Device;
  /** Captures of a bare mask function. */
  captures?: Captures;
}

/** Block-sparse mask tables (BCSR-like), as `torch.nn.attention.flex_attention.BlockMask`. */
export class BlockMask {
  /** Batch extent of the tables (1 = broadcast). */
  readonly B: number;
  /** Head extent of the tables (1 = broadcast). */
  readonly H: number;
  /** Query length the mask was built for. */
  readonly qLen: number;
  /** Key length the mask was built for. */
  readonly kvLen: number;
  /** Block size (a multiple of 64). */
  readonly blockSize: number;
  /** The mask function (evaluated inside partial blocks). */
  readonly maskMod: MaskMod;
  /** Block classification `[B, H, nQ, nKv]`: 0 empty, 1 partial, 2 full. */
  readonly classes: Uint8Array;
  /** Per (b, h, q block): number of partial kv blocks. */
  readonly kvNumBlocks: Int32Array;
  /** Per (b, h, q block): indices of the partial kv blocks (row stride nKv). */
  readonly kvIndices: Int32Array;
  /** Per (b, h, q block): number of full kv blocks. */
  readonly fullKvNumBlocks: Int32Array;
  /** Per (b, h, q block): indices of the full kv blocks (row stride nKv). */
  readonly fullKvIndices: Int32Array;
  /** Backward transpose: per (b, h, kv block) the number of partial q blocks. */
  readonly qNumBlocks: Int32Array;
  /** Backward transpose: indices of the partial q blocks (row stride nQ). */
  readonly qIndices: Int32Array;
  /** Backward transpose: number of full q blocks. */
  readonly fullQNumBlocks: Int32Array;
  /** Backward transpose: indices of the full q blocks (row stride nQ). */
  readonly fullQIndices: Int32Array;
  private deviceTables = new Map<Device, FlashBlocks>();

  constructor(maskMod: MaskMod, classes: Uint8Array, B: number, H: number, qLen: number, kvLen: number, blockSize: number) {
    this.maskMod = maskMod;
    this.classes = classes;
    this.B = B;
    this.H = H;
    this.qLen = qLen;
    this.kvLen = kvLen;
    this.blockSize = blockSize;
    const nq = this.numQBlocks;
    const nk = this.numKvBlocks;
    const rows = B * H;
    const list = (outer: number, inner: number, cls: number, at: (r: number, o: number, i: number) => number) => {
      const num = new Int32Array(rows * outer);
      const idx = new Int32Array(rows * outer * inner);
      for (let r = 0; r < rows; r++)
        for (let o = 0; o < outer; o++) {
          let c = 0;
          for (let i = 0; i < inner; i++) if (classes[at(r, o, i)] === cls) idx[(r * outer + o) * inner + c++] = i;
          num[r * outer + o] = c;
        }
      return [num, idx] as const;
    };
    const qMajor = (r: number, o: number, i: number) => (r * nq + o) * nk + i;
    const kMajor = (r: number, o: number, i: number) => (r * nq + i) * nk + o;
    [this.kvNumBlocks, this.kvIndices] = list(nq, nk, 1, qMajor);
    [this.fullKvNumBlocks, this.fullKvIndices] = list(nq, nk, 2, qMajor);
    [this.qNumBlocks, this.qIndices] = list(nk, nq, 1, kMajor);
    [this.fullQNumBlocks, this.fullQIndices] = list(nk, nq, 2, kMajor);
  }

  /** Query blocks. */
  get numQBlocks(): number {
    return Math.ceil(this.qLen / this.blockSize);
  }
  /** Key blocks. */
  get numKvBlocks(): number {
    return Math.ceil(this.kvLen / this.blockSize);
  }

  /** Percentage of block pairs skipped entirely (like `BlockMask.sparsity()`). */
  sparsity(): number {
    let empty = 0;
    for (const c of this.classes) if (c === 0) empty++;
    return (100 * empty) / Math.max(1, this.classes.length);
  }

  /** Fraction of the (b, h, q, kv) area in visited blocks (1 − sparsity, in [0, 1]). */
  density(): number {
    return 1 - this.sparsity() / 100;
  }

  /** ASCII picture of each (b, h): `█` full, `░` partial, ` ` empty. */
  toString(): string {
    const nq = this.numQBlocks;
    const nk = this.numKvBlocks;
    const out: string[] = [`BlockMask(B=${this.B}, H=${this.H}, qLen=${this.qLen}, kvLen=${this.kvLen}, blockSize=${this.blockSize}, sparsity=${this.sparsity().toFixed(2)}%)`];
    for (let r = 0; r < this.B * this.H; r++) {
      if (this.B * this.H > 1) out.push(`b=${Math.floor(r / this.H)}, h=${r % this.H}`);
      for (let i = 0; i < nq; i++) {
        let line = '';
        for (let j = 0; j < nk; j++) line += ['  ', '░░', '██'][this.classes[(r * nq + i) * nk + j]!];
        out.push(line);
      }
    }
    return out.join('\n');
  }

  /**
   * The tables as int32 tensors on `device`, cached (what the attention kernels read). The cached
   * tensors belong to this BlockMask, not to the `tidy` scope of the first call that uploads them:
   * they live until {@link BlockMask.dispose} (after which the next call uploads them again).
   */
  tables(device: Device): FlashBlocks {
    const hit = this.deviceTables.get(device);
    if (hit && !hit.table.isReleased) return hit;
    const parts = [this.kvNumBlocks, this.kvIndices, this.fullKvNumBlocks, this.fullKvIndices, this.qNumBlocks, this.qIndices, this.fullQNumBlocks, this.fullQIndices];
    const offsets: number[] = [];
    let n = 0;
    for (const a of parts) {
      offsets.push(n);
      n += a.length;
    }
    const packed = new Int32Array(Math.max(1, n));
    parts.forEach((a, i) => packed.set(a, offsets[i]!));
    const f: FlashBlocks = {
      bs: this.blockSize,
      bm: this.B,
      hm: this.H,
      nqb: this.numQBlocks,
      nkb: this.numKvBlocks,
      table: T.keep(T.tensor(packed, [packed.length], { dtype: 'int32', device })), // owned by the BlockMask, not by a tidy() scope
      offsets,
    };
    this.deviceTables.set(device, f);
    return f;
  }

  /**
   * Frees the device tables cached by {@link BlockMask.tables} on every device. Idempotent; the mask
   * stays usable (its host tables remain; a later use uploads the device tables again).
   * @example const bm = await createBlockMask(causalMask, null, null, L, L, { device }); ...; bm.dispose();
   */
  dispose(): void {
    for (const f of this.deviceTables.values()) f.table.dispose();
    this.deviceTables.clear();
  }

  /** `using bm = await createBlockMask(...)` support: the same as {@link BlockMask.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

function checkDims(B: number | null, H: number | null, qLen: number, kvLen: number, bs: number): [number, number] {
  const dim = (v: number | null, name: string) => {
    if (v === null) return 1;
    if (!Number.isInteger(v) || v < 1) throw new WebattnError('INVALID_ARGUMENT', `${name}: expected a positive integer or null (broadcast), got ${describe(v)}`, { argument: name });
    return v;
  };
  for (const [v, name] of [[qLen, 'qLen'], [kvLen, 'kvLen']] as const) {
    if (!Number.isInteger(v) || v < 1) throw new WebattnError('INVALID_ARGUMENT', `${name}: expected a positive integer, got ${describe(v)}`, { argument: name });
  }
  if (!Number.isInteger(bs) || bs < 64 || bs % 64 !== 0) {
    throw new WebattnError('INVALID_ARGUMENT', `options.blockSize: expected a multiple of 64, got ${describe(bs)}`, { argument: 'options.blockSize' });
  }
  return [dim(B, 'B'), dim(H, 'H')];
}

const BLOCK_MASK_OPTIONS: Record<string, OptionSpec> = { blockSize: { type: 'number', integer: true }, device: { type: 'any' }, captures: { type: 'any' } };

/** Which of b and h an IR reads (syntactically). */
function readsParams(ir: IR): { b: boolean; h: boolean } {
  const out = { b: false, h: false };
  const seen = new Set<IR>();
  const go = (n: IR) => {
    if (seen.has(n)) return;
    seen.add(n);
    if (n.k === 'param' && (n.slot === 'b' || n.slot === 'h')) out[n.slot] = true;
    children(n).forEach(go);
  };
  go(ir);
  return out;
}

/** b/h values a broadcast (null) dimension is sampled at to prove the mask does not depend on it. */
const SAMPLES = [1, 2, 3];

/**
 * Builds a {@link BlockMask} from a mask function. `B` or `H` may be null (broadcast): the function must
 * then not depend on b or h — a function that reads b (or h) is evaluated at b (h) = 1, 2, 3 for every
 * (q, kv) as well, and a difference from b (h) = 0 is refused with `INVALID_ARGUMENT` naming `B` (`H`).
 * Evaluated on the GPU when `options.device` is a WebGPU device (bounded memory: one word per block
 * pair), else on the CPU by calling the function. A document mask must cover qLen = kvLen tokens.
 *
 * @example
 * const bm = await createBlockMask(causalMask, null, null, 4096, 4096, { device });
 */
export async function createBlockMask(
  mask: MaskMod | MaskModFn,
  B: number | null,
  H: number | null,
  qLen: number,
  kvLen: number,
  options: BlockMaskOptions = {},
): Promise<BlockMask> {
  checkOptions(options, BLOCK_MASK_OPTIONS);
  const bs = options.blockSize ?? 128;
  const [Bm, Hm] = checkDims(B, H, qLen, kvLen, bs);
  if (options.device !== undefined && !(options.device instanceof T.Device)) {
    throw new WebattnError('INVALID_ARGUMENT', `options.device: expected a Device, got ${describe(options.device)}`, { argument: 'options.device' });
  }
  if (options.captures !== undefined && typeof mask !== 'function') {
    throw new WebattnError('INVALID_ARGUMENT', `options.captures: only a bare mask function takes captures here (a MaskMod carries its own), got mask ${describe(mask)}`, { argument: 'options.captures' });
  }
  const m = asMask(mask, options.captures ?? {}, 'mask');
  checkModLengths(m, qLen, kvLen, 'mask');
  const device = options.device ?? T.getDefaultDevice();
  const nq = Math.ceil(qLen / bs);
  const nk = Math.ceil(kvLen / bs);
  const pairs = Bm * Hm * nq * nk;
  let classes: Uint8Array;
  const compiled = compileMod(m, 'm', 'mask'); // validates the function on every path
  const reads = readsParams(compiled.ir);
  const sampleB = B === null && reads.b;
  const sampleH = H === null && reads.h;
  const dependent = (dim: 'B' | 'H', at: string): never => {
    const p = dim === 'B' ? 'b' : 'h';
    throw new WebattnError('INVALID_ARGUMENT', `${dim}: null (broadcast) needs a mask that does not depend on ${p}, but this one does (${at}); pass ${dim} = the ${dim === 'B' ? 'batch size' : 'number of heads'}`, { argument: dim });
  };
  if (device.backend === 'webgpu') {
    const dev = device as WebGPUDevice;
    const res = modResources(dev, null, compiled, false);
    const out = T.empty([pairs], 'int32', dev);
    probeCompile(dev, res, 'mask', [out]);
    // bit 0/1: some true/false; bit 2/3: differs at another b/h (sampled)
    const sample = (p: 'b' | 'h', on: boolean) =>
      on ? SAMPLES.map((x) => `if (mask_mod(${p === 'b' ? `${x}u, h` : `b, ${x}u`}, q0 + t / cols, k0 + t % cols) != ok) { diff = diff | ${p === 'b' ? 4 : 8}u; }`).join('\n    ') : '';
    const body = `
  let pair = flat_wg;
  if (pair >= u_pairs()) { return; }
  let kb = pair % u_nk();
  let qb = (pair / u_nk()) % u_nq();
  let bh = pair / (u_nk() * u_nq());
  let b = bh / u_hm();
  let h = bh % u_hm();
  let q0 = qb * u_bs();
  let k0 = kb * u_bs();
  let rows = min(u_bs(), u_qlen() - q0);
  let cols = min(u_bs(), u_kvlen() - k0);
  var any_true = 0u;
  var any_false = 0u;
  var diff = 0u;
  for (var t = lidx; t < rows * cols; t = t + WG_SIZE) {
    let ok = mask_mod(b, h, q0 + t / cols, k0 + t % cols);
    any_true = any_true | select(0u, 1u, ok);
    any_false = any_false | select(1u, 0u, ok);
    ${sample('b', sampleB)}
    ${sample('h', sampleH)}
  }
  let ts = wg_max(f32(any_true), lidx);
  let fs = wg_max(f32(any_false), lidx);
  let db = wg_max(f32(diff & 4u), lidx);
  let dh = wg_max(f32(diff & 8u), lidx);
  if (lidx == 0u) { store_cls(pair, select(select(1i, 2i, fs == 0.0), 0i, ts == 0.0) + select(0i, 4i, db > 0.0) + select(0i, 8i, dh > 0.0)); }`;
    run(
      {
        name: 'flex_block_mask',
        key: `${res.key}|${sampleB ? 'sb' : ''}${sampleH ? 'sh' : ''}`,
        bindings: [...res.bindings, { name: 'cls', dtype: 'int32', access: 'read_write' }],
        uniforms: [...res.uniforms, ['pairs', 'u32'], ['nq', 'u32'], ['nk', 'u32'], ['hm', 'u32'], ['bs', 'u32'], ['qlen', 'u32'], ['kvlen', 'u32']],
        workgroupSize: [64],
        helpers: `${res.wgsl}\n${wgReduce(false)}`,
        body,
      },
      [...res.tensors, out],
      { ...res.values, pairs, nq, nk, hm: Hm, bs, qlen: qLen, kvlen: kvLen },
      linearGrid(pairs * 64, 64, dev),
    );
    const raw = await out.toArray();
    out.dispose();
    const oob = res.oob ? (await res.oob.toArray())[0]! : 0;
    classes = new Uint8Array(pairs);
    for (let i = 0; i < pairs; i++) {
      const v = raw[i]!;
      if (v & 4) dependent('B', `it differs at another b in query block ${Math.floor(i / nk) % nq}, key block ${i % nk} (checked on the GPU)`);
      if (v & 8) dependent('H', `it differs at another h in query block ${Math.floor(i / nk) % nq}, key block ${i % nk} (checked on the GPU)`);
      classes[i] = v & 3;
    }
    if (oob) {
      // reads out of range at a sampled b/h mean the mask reads per-b/h data: it depends on b/h
      if (sampleH) dependent('H', 'it reads a captured tensor at h beyond the first (out of range at a sampled h)');
      if (sampleB) dependent('B', 'it reads a captured tensor at b beyond the first (out of range at a sampled b)');
      throw res.boundsError(oob, 'mask');
    }
  } else {
    const f = hostMask(m, 'mask');
    const probe = (p: 'B' | 'H', b: number, h: number, i: number, j: number, ok: boolean) => {
      for (const x of SAMPLES) {
        let other: boolean;
        try {
          other = p === 'B' ? f(x, h, i, j) : f(b, x, i, j);
        } catch (e) {
          return dependent(p, `evaluating it at ${p === 'B' ? 'b' : 'h'}=${x} failed: ${(e as Error).message}`);
        }
        if (other !== ok) dependent(p, `at q=${i}, kv=${j}: ${ok} for ${p === 'B' ? `b=${b}` : `h=${h}`}, ${other} for ${p === 'B' ? 'b' : 'h'}=${x}`);
      }
    };
    classes = new Uint8Array(pairs);
    for (let b = 0; b < Bm; b++)
      for (let h = 0; h < Hm; h++)
        for (let qb = 0; qb < nq; qb++)
          for (let kb = 0; kb < nk; kb++) {
            let t = false;
            let fl = false;
            // every element is evaluated (as the GPU does): a captured-tensor read out of range raises
            for (let i = qb * bs; i < Math.min(qLen, (qb + 1) * bs); i++)
              for (let j = kb * bs; j < Math.min(kvLen, (kb + 1) * bs); j++) {
                const ok = f(b, h, i, j);
                if (ok) t = true;
                else fl = true;
                if (sampleB) probe('B', b, h, i, j, ok);
                if (sampleH) probe('H', b, h, i, j, ok);
              }
            classes[((b * Hm + h) * nq + qb) * nk + kb] = t ? (fl ? 1 : 2) : 0;
          }
  }
  return new BlockMask(m, classes, Bm, Hm, qLen, kvLen, bs);
}

/**
 * The dense boolean mask `[B, H, qLen, kvLen]` of a mask function (for tests and pictures; O(L²)).
 * @example const dense = createMask(causalMask, 1, 1, 8, 8);
 */
export function createMask(mask: MaskMod | MaskModFn, B: number, H: number, qLen: number, kvLen: number, options: { device?: Device; captures?: Captures } = {}): Tensor {
  checkDims(B, H, qLen, kvLen, 64);
  const m = asMask(mask, options.captures ?? {}, 'mask');
  checkModLengths(m, qLen, kvLen, 'mask');
  compileMod(m, 'm', 'mask');
  const f = hostMask(m, 'mask');
  const data = new Uint8Array(B * H * qLen * kvLen);
  let n = 0;
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < qLen; i++) for (let j = 0; j < kvLen; j++) data[n++] = f(b, h, i, j) ? 1 : 0;
  return T.tensor(data, [B, H, qLen, kvLen], { dtype: 'bool', ...(options.device ? { device: options.device } : {}) });
}
