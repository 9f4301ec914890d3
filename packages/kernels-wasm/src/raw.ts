/**
 * The kernels on plain float32 arrays: the device kernels (kernels.ts) gather tensors into this form, the tests
 * and the bench call it directly. Each call copies its inputs into linear memory, runs one job on every thread and
 * copies the results out; memory of the job is released afterwards.
 */
import { KERNEL, type WasmPool } from './pool.js';

/** Batched `C[b] = A[b] · B[b]`; A `[batch, M, K]`, B `[batch, K, N]` (or `[K, N]` shared when `bShared`), row-major. */
export function matmulRaw(pool: WasmPool, a: Float32Array, b: Float32Array, batch: number, M: number, N: number, K: number, bShared = false): Float32Array {
  const mark = pool.mark();
  try {
    const pa = pool.put(a);
    const pb = pool.put(b);
    const pc = pool.alloc(batch * M * N * 4);
    const per = pool.matmulScratchBytes();
    const scratch = pool.alloc(per * pool.threads);
    pool.run(KERNEL.matmul, [pa, pb, pc, batch, M, N, K, M * K, bShared ? 0 : K * N, M * N, scratch, per]);
    return pool.keep(pc, batch * M * N);
  } finally {
    pool.release(mark);
  }
}

/** Where one operand's rows live: element (b, h, i, e) is at `b·batch + (start[b] + i)·row + h·head + e`. */
export interface RawStrides {
  /** Batch stride (0 for packed varlen layouts). */
  batch: number;
  /** Head stride. */
  head: number;
  /** Row stride. */
  row: number;
}

/**
 * One attention problem on plain arrays. Dense `[B, H, L, E]` layouts use starts of 0 and a batch stride; packed
 * varlen `[T, H, E]` layouts use `cu_seqlens` as starts and batch stride 0.
 */
export interface RawAttention {
  /** Batch size (number of sequences). */
  B: number;
  /** Query heads. */
  Hq: number;
  /** Key/value heads (divides Hq). */
  Hkv: number;
  /** Query/key head dim. */
  E: number;
  /** Value head dim. */
  Ev: number;
  /** Query rows per sequence and their first row. */
  qLen: Int32Array;
  /** First query row of each sequence. */
  qStart: Int32Array;
  /** Key rows per sequence. */
  kLen: Int32Array;
  /** First key row of each sequence. */
  kStart: Int32Array;
  /** Strides of q, k, v and of the output o (o has Ev per row). */
  strides: { q: RawStrides; k: RawStrides; v: RawStrides; o: RawStrides };
  /** Element count of the output array o. */
  oSize: number;
  /** lse element (b, h, i) is at b·lseBatch + h·lseHead + qStart[b] + i; `lseSize` elements. */
  lseBatch: number;
  /** Head stride of lse. */
  lseHead: number;
  /** Element count of lse. */
  lseSize: number;
  /** Causal masking with a per-sequence diagonal offset: key j visible iff j ≤ i + causalOffset[b]. */
  causalOffset: Int32Array | null;
  /** Score scale. */
  scale: number;
  /** Additive mask (bool masks as 0 / −∞), element (b, h, i, j) at the dot product with `strides`. */
  mask: { data: Float32Array; strides: readonly [number, number, number, number] } | null;
  /** Flex score/mask tile functions and block-sparse classes (dense layouts), or absent. */
  flex?: RawFlex | null;
}

/** The flex part of a {@link RawAttention}: core-tensor's `FlexKernelAttrs` on plain arrays. */
export interface RawFlex {
  /** JS source of the tile functions (`FlexKernelAttrs.tileSource`). */
  source: string;
  /** The same functions as a wasm module (`FlexKernelAttrs.tileWasm`), or null. */
  wasm?: Uint8Array | null;
  /** A score function is applied. */
  score: boolean;
  /** The mask function is applied (in partial blocks). */
  mask: boolean;
  /** Captured numbers in slot order. */
  numbers: readonly { value: number; type: 'f32' | 'i32' }[];
  /** Captured tensors' values in slot order (float32 read through F, int32 through I). */
  tensors: readonly (Float32Array | Int32Array)[];
  /** Element counts of the gradient slots' tensors (backward accumulates one array per entry). */
  gradSizes: readonly number[];
  /** Block classes `[B, H, nQ, nKv]` (0 empty, 1 partial, 2 full; B and H may be 1), or null (all partial). */
  blocks: { B: number; H: number; blockSize: number; nQ: number; nKv: number; classes: Uint8Array } | null;
}

/** What the flex tile functions reported: whether a captured tensor was read outside its shape. */
export interface FlexReport {
  outOfBounds: boolean;
}

/** Lays the flex capture block, block table and gradient block out in memory; returns the extra kernel args. */
function flexArgs(pool: WasmPool, f: RawFlex | null | undefined): { args: number[]; flag: number; grads: { at: number; per: number } | null } {
  if (!f) return { args: [0, 0], flag: 0, grads: null };
  pool.setTileSource(f.source, f.wasm ?? null);
  const nN = f.numbers.length;
  const nT = f.tensors.length;
  const nG = f.gradSizes.length;
  const bases = f.tensors.map((t) => pool.put(t) >> 2);
  const gOff: number[] = [];
  let per = 0;
  for (const n of f.gradSizes) {
    gOff.push(per);
    per += Math.ceil(n / 4) * 4;
  }
  const cap = pool.alloc((nN + nT + nG + 1) * 4);
  const ci = pool.i32(cap, nN + nT + nG + 1);
  const cf = pool.f32(cap, nN);
  f.numbers.forEach((n, i) => (n.type === 'i32' ? (ci[i] = n.value) : (cf[i] = n.value)));
  ci.set(bases, nN);
  ci.set(gOff, nN + nT);
  ci[nN + nT + nG] = 0;
  let grads: { at: number; per: number } | null = null;
  let gradAt = 0;
  if (per > 0) {
    gradAt = pool.alloc(per * 4 * pool.threads);
    pool.f32(gradAt, per * pool.threads).fill(0);
    grads = { at: gradAt, per };
  }
  let blk = 0;
  if (f.blocks) {
    const b = f.blocks;
    const cls = pool.put(b.classes);
    blk = pool.alloc(24);
    pool.i32(blk, 6).set([b.B, b.H, b.blockSize, b.nQ, b.nKv, cls]);
  }
  pool.setTileArgs(cap, gradAt, per * 4);
  return { args: [(f.score ? 1 : 0) | (f.mask ? 2 : 0), blk], flag: cap + (nN + nT + nG) * 4, grads };
}

function common(pool: WasmPool, p: RawAttention, q: number, k: number, v: number, o: number, lse: number): number[] {
  const s = p.strides;
  const qStart = pool.put(p.qStart);
  const qLen = pool.put(p.qLen);
  const kStart = pool.put(p.kStart);
  const kLen = pool.put(p.kLen);
  const cOff = pool.put(p.causalOffset ?? new Int32Array(p.B));
  const mask = p.mask ? pool.put(p.mask.data) : 0;
  const ms = p.mask?.strides ?? [0, 0, 0, 0];
  const per = pool.attnScratchBytes(p.E, p.Ev, Math.max(1, ...p.kLen));
  const scratch = pool.alloc(per * pool.threads);
  const args = [
    p.B, p.Hq, p.Hq / p.Hkv, p.E, p.Ev, q, k, v, o, lse,
    s.q.head, s.q.row, s.k.head, s.k.row, s.v.head, s.v.row, s.o.head, s.o.row,
    qStart, qLen, kStart, kLen, cOff, p.lseBatch, p.lseHead, p.causalOffset ? 1 : 0,
    mask, ms[0], ms[1], ms[2], ms[3], scratch, per,
  ];
  return args;
}

function tail(p: RawAttention, extra: readonly number[], flex: readonly number[]): number[] {
  const s = p.strides;
  return [...extra, s.q.batch, s.k.batch, s.v.batch, s.o.batch, ...flex];
}

/** Flash forward: output (laid out by `strides.o`) and the natural-log lse. */
export function attentionForwardRaw(pool: WasmPool, p: RawAttention, q: Float32Array, k: Float32Array, v: Float32Array): { out: Float32Array; lse: Float32Array; flex: FlexReport } {
  const mark = pool.mark();
  try {
    const pq = pool.put(q);
    const pk = pool.put(k);
    const pv = pool.put(v);
    const po = pool.alloc(p.oSize * 4);
    const pl = pool.alloc(p.lseSize * 4);
    pool.f32(po, p.oSize).fill(0);
    pool.f32(pl, p.lseSize).fill(0);
    const args = common(pool, p, pq, pk, pv, po, pl);
    const fx = flexArgs(pool, p.flex);
    pool.run(KERNEL.attnForward, tail(p, [...args, 0, 0, 0, 0, 0], fx.args), [p.scale]);
    const flex = { outOfBounds: fx.flag ? pool.i32(fx.flag, 1)[0] !== 0 : false };
    return { out: pool.keep(po, p.oSize), lse: pool.keep(pl, p.lseSize), flex };
  } finally {
    pool.release(mark);
  }
}

/**
 * Flash backward from the forward's lse: dq, dk, dv laid out like q, k, v. `delta` = rowsum(dout ∘ out), laid out
 * like lse.
 */
export function attentionBackwardRaw(
  pool: WasmPool,
  p: RawAttention,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  dout: Float32Array,
  lse: Float32Array,
  delta: Float32Array,
): { dq: Float32Array; dk: Float32Array; dv: Float32Array; grads: Float32Array[]; flex: FlexReport } {
  const mark = pool.mark();
  try {
    const pq = pool.put(q);
    const pk = pool.put(k);
    const pv = pool.put(v);
    const pdo = pool.put(dout);
    const pl = pool.put(lse);
    const pd = pool.put(delta);
    const pdq = pool.alloc(q.byteLength);
    const pdk = pool.alloc(k.byteLength);
    const pdv = pool.alloc(v.byteLength);
    pool.f32(pdq, q.length).fill(0);
    pool.f32(pdk, k.length).fill(0);
    pool.f32(pdv, v.length).fill(0);
    const args = common(pool, p, pq, pk, pv, 0, pl);
    const fx = flexArgs(pool, p.flex);
    pool.run(KERNEL.attnBackward, tail(p, [...args, pdo, pd, pdq, pdk, pdv], fx.args), [p.scale]);
    // the capture gradients: one accumulator block per thread, summed here
    const grads: Float32Array[] = [];
    if (fx.grads && p.flex) {
      const all = pool.f32(fx.grads.at, fx.grads.per * pool.threads);
      let off = 0;
      for (const n of p.flex.gradSizes) {
        const g = new Float32Array(n);
        for (let t = 0; t < pool.threads; t++) {
          const base = t * fx.grads.per + off;
          for (let i = 0; i < n; i++) g[i] = g[i]! + all[base + i]!;
        }
        grads.push(g);
        off += Math.ceil(n / 4) * 4;
      }
    }
    const flex = { outOfBounds: fx.flag ? pool.i32(fx.flag, 1)[0] !== 0 : false };
    return { dq: pool.keep(pdq, q.length), dk: pool.keep(pdk, k.length), dv: pool.keep(pdv, v.length), grads, flex };
  } finally {
    pool.release(mark);
  }
}

/** Dense `[B, H, L, D]` strides for {@link RawAttention}. */
export function denseStrides(H: number, L: number, D: number): RawStrides {
  return { batch: H * L * D, head: L * D, row: D };
}

/** Packed `[T, H, D]` strides for {@link RawAttention} (rows are global; starts come from cu_seqlens). */
export function packedStrides(H: number, D: number): RawStrides {
  return { batch: 0, head: D, row: H * D };
}
