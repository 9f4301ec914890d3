/**
 * Which tile of which sequence a workgroup owns. Dense layout: the grid is (row tile, batch × head).
 * Packed (varlen) layout: a dense tile map as in FlashAttention varlen / onnxruntime — one workgroup
 * per (row tile of some sequence, head) and nothing else, so short sequences leave no workgroup idle.
 *
 * The map is one int32 table `[ord[0..B), pre[0..B]]`: `pre` is the prefix sum of ceil(L_b / tile)
 * over the sequences taken in the order `ord`. A workgroup finds its slot by binary search in `pre`.
 * Packed kernels bind ONE int32 buffer `vl` = `[cuQ[0..B] | cuK[0..B] | ord | pre]` (read through
 * `load_cu_q` / `load_cu_k` in `shared.ts`), so varlen costs one storage binding, not three (Chromium's
 * SwiftShader allows 10 per stage).
 * With host cu_seqlens the table is built here (sequences ordered longest first, so the heaviest
 * tiles start first and the last wave holds light ones); with GPU-held cu_seqlens a one-workgroup
 * prefix kernel builds it on the device (identity order, no read-back) and the grid is an upper
 * bound whose extra workgroups exit at once. Within a sequence, query tiles of causal attention run
 * last-first (the last tile sees the most keys); key tiles run first-first (the first sees the most queries).
 */
import { empty, tensor, type Tensor } from '@webattn/core-tensor';
import type { WebGPUDevice } from '../device/webgpu-device.js';
import { run, type BindingSpec } from '../wgsl.js';
import { dims, type FlashParams } from './plan.js';
import { lens } from './shared.js';

/** Query-row tiles (forward, dQ) or key-row tiles (dK/dV). */
export type TileSide = 'q' | 'k';

/**
 * The host tile table for `tile`-row tiles over the sequences of `cu` (the side being tiled), ordered
 * by descending `cost[b]` (ties: sequence order): `[ord[0..B), pre[0..B]]`, int32.
 */
export function hostTileTable(cu: Int32Array, tile: number, cost: (b: number) => number): Int32Array {
  const B = cu.length - 1;
  const ord = Array.from({ length: B }, (_, b) => b);
  const c = ord.map(cost);
  ord.sort((x, y) => c[y]! - c[x]! || x - y);
  const out = new Int32Array(2 * B + 1);
  let acc = 0;
  ord.forEach((b, s) => {
    out[s] = b;
    out[B + s] = acc;
    acc += Math.ceil(Math.max(0, cu[b + 1]! - cu[b]!) / tile);
  });
  out[2 * B] = acc;
  return out;
}

/** A tile dispatch: the grid, and for the packed layout the table binding and tensor. */
export interface TileDispatch {
  /** Workgroup grid. */
  grid: [number, number, number];
  /** Extra bindings of the kernel (the table, packed layout only). */
  bindings: BindingSpec[];
  /** Tensors of `bindings`. */
  tensors: Tensor[];
  /** Releases the table (after the kernel was recorded). */
  dispose(): void;
}

/**
 * The grid and the `vl` buffer of a kernel whose workgroups own `rows` rows of the `side` operand, for
 * `heads` heads (Hq for query tiles, Hkv for key tiles). Dense: `[ceil(L/rows), B·heads, 1]`, no binding.
 */
export function tileDispatch(p: FlashParams, side: TileSide, rows: number, heads: number): TileDispatch {
  const d = dims(p);
  if (!p.varlen) {
    return { grid: [Math.ceil((side === 'q' ? d.Lq : d.Lkv) / rows), d.B * heads, 1], bindings: [], tensors: [], dispose() {} };
  }
  const device = p.q.device as WebGPUDevice;
  const { cuQ, cuK, hostCuQ, hostCuK } = p.varlen;
  let vl: Tensor;
  let tiles: number;
  if (hostCuQ && hostCuK) {
    const [mine, other] = side === 'q' ? [hostCuQ, hostCuK] : [hostCuK, hostCuQ];
    const len = (c: Int32Array, b: number) => c[b + 1]! - c[b]!;
    const t = hostTileTable(mine, rows, (b) => len(mine, b) + len(other, b));
    tiles = t[2 * d.B]!;
    const all = new Int32Array(4 * d.B + 3);
    all.set(hostCuQ, 0);
    all.set(hostCuK, d.B + 1);
    all.set(t, 2 * d.B + 2);
    vl = tensor(all, [all.length], { dtype: 'int32', device });
  } else {
    // upper bound: Σ ceil(L_b / rows) ≤ min(B · ceil(max / rows), (total + B · (rows − 1)) / rows)
    const [total, max] = side === 'q' ? [d.TQ, d.Lq] : [d.TK, d.Lkv];
    tiles = Math.min(d.B * Math.ceil(max / rows), Math.floor((total + d.B * (rows - 1)) / rows));
    vl = deviceVarlenTable(cuQ, cuK, d.B, rows, side);
  }
  const maxDim = device.limits.maxComputeWorkgroupsPerDimension;
  const y = Math.min(Math.max(tiles, 1), maxDim);
  return {
    grid: tiles > 0 ? [heads, y, Math.ceil(tiles / y)] : [0, 0, 0],
    bindings: [{ name: 'vl', dtype: 'int32', access: 'read' }],
    tensors: [vl],
    dispose: () => vl.dispose(),
  };
}

/**
 * The `vl` buffer `[cuQ | cuK | ord | pre]` of GPU-held cu_seqlens (int32 `[B+1]` each, contiguous
 * from element 0), built on the device without a read-back: one workgroup copies both and scans
 * ceil(L_b / rows) over the `side` sequences (identity order).
 */
export function deviceVarlenTable(cuQ: Tensor, cuK: Tensor, B: number, rows: number, side: TileSide): Tensor {
  const vl = empty([4 * B + 3], 'int32', cuQ.device);
  run(
    {
      name: 'flash_varlen_tile_map',
      key: side,
      bindings: [
        { name: 'cq', dtype: 'int32', access: 'read' },
        { name: 'ck', dtype: 'int32', access: 'read' },
        { name: 'vl', dtype: 'int32', access: 'read_write' },
      ],
      uniforms: [['nb', 'u32'], ['rows', 'u32']],
      workgroupSize: [256],
      helpers: `var<workgroup> sc: array<u32, 256>;
fn load_cu(i: u32) -> i32 { return ${side === 'q' ? 'load_cq(i)' : 'load_ck(i)'}; }
fn tiles_of(b: u32) -> u32 { return (u32(max(load_cu(b + 1u) - load_cu(b), 0i)) + u_rows() - 1u) / u_rows(); }`,
      // each thread sums a run of sequences, thread 0 scans the 256 partial sums, each thread writes its
      // run (no barrier inside a loop: llvmpipe through GL mis-synchronised a Hillis-Steele scan)
      body: `
  let nb = u_nb();
  for (var i = lidx; i <= nb; i = i + WG_SIZE) {
    store_vl(i, load_cq(i));
    store_vl(nb + 1u + i, load_ck(i));
  }
  let ord = 2u * nb + 2u;
  let pre = ord + nb;
  let per = (nb + 255u) / 256u;
  let b0 = min(lidx * per, nb);
  let b1 = min(b0 + per, nb);
  var s = 0u;
  for (var b = b0; b < b1; b = b + 1u) { s = s + tiles_of(b); }
  sc[lidx] = s;
  workgroupBarrier();
  if (lidx == 0u) {
    var acc = 0u;
    for (var i = 0u; i < 256u; i = i + 1u) { let x = sc[i]; sc[i] = acc; acc = acc + x; }
    store_vl(pre + nb, i32(acc));
  }
  workgroupBarrier();
  var acc = sc[lidx];
  for (var b = b0; b < b1; b = b + 1u) {
    store_vl(ord + b, i32(b));
    store_vl(pre + b, i32(acc));
    acc = acc + tiles_of(b);
  }`,
    },
    [cuQ, cuK, vl],
    { nb: B, rows },
    [1, 1, 1],
  );
  return vl;
}

/** WGSL helpers of {@link tileOrigin} (packed layout only): the binary search in the table. */
export function tileMapWgsl(p: FlashParams, side: TileSide): string {
  if (!p.varlen) return '';
  const reverse = side === 'q' && p.causal;
  return `var<workgroup> wg_seq: vec4<u32>;
// (sequence, first row, Lq, Lk) of tile \`tile\` of \`rows\` rows, or b = 0xffffffff past the last tile
fn seq_of_tile(tile: u32, rows: u32) -> vec4<u32> {
  let nb = u_B();
  let ord = 2u * nb + 2u;
  let pre = ord + nb;
  if (tile >= u32(load_vl(pre + nb))) { return vec4<u32>(0xffffffffu, 0u, 0u, 0u); }
  var lo = 0u;
  var hi = nb;
  while (hi - lo > 1u) {
    let mid = (lo + hi) / 2u;
    if (u32(load_vl(pre + mid)) <= tile) { lo = mid; } else { hi = mid; }
  }
  let b = u32(load_vl(ord + lo));
  let first = u32(load_vl(pre + lo));
  let t = ${reverse ? `u32(load_vl(pre + lo + 1u)) - 1u - tile` : 'tile - first'};
  return vec4<u32>(b, t * rows, qlen_of(b), klen_of(b));
}`;
}

/**
 * WGSL at the top of a kernel: this workgroup's `b`, head (`h` and `hk` for query tiles, `hk` for
 * key tiles), first row (`q0` / `k0`), the sequence's `LQ` and `LK` (workgroup-uniform), and an early
 * return for workgroups without rows.
 */
export function tileOrigin(p: FlashParams, side: TileSide, rows: number): string {
  const heads = side === 'q' ? `let h = hx;\n  let hk = h / u_group();` : `let hk = hx;`;
  const r0 = side === 'q' ? 'q0' : 'k0';
  if (!p.varlen) {
    return `let bh = wid.y;
  let b = bh / ${side === 'q' ? 'u_hq()' : 'u_hkv()'};
  let hx = bh % ${side === 'q' ? 'u_hq()' : 'u_hkv()'};
  ${heads}
  let ${r0} = wid.x * ${rows}u;
  ${lens(p)}
  if (${r0} >= ${side === 'q' ? 'LQ' : 'LK'}) { return; }`;
  }
  return `let hx = wid.x;
  ${heads}
  if (lidx == 0u) { wg_seq = seq_of_tile(wid.y + wid.z * nwg.y, ${rows}u); }
  let seq_ = workgroupUniformLoad(&wg_seq);
  if (seq_.x == 0xffffffffu) { return; }
  let b = seq_.x;
  let ${r0} = seq_.y;
  let LQ = seq_.z;
  let LK = seq_.w;
  P_QB = u32(load_cu_q(b));
  P_KB = u32(load_cu_k(b));`;
}
