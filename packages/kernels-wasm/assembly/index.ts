// webattn wasm kernels (AssemblyScript → wasm32 with SIMD and shared memory).
//
// Every kernel runs on all threads of the pool at once: `run(kernel, tid, nthreads)` reads its arguments from
// the control block at the start of linear memory (written by the JS side before a job) and does the share of
// work that `tid` owns. Tensors live in linear memory at byte offsets the JS side chose; all are f32 unless noted.
//
// One 4×8 SIMD micro-kernel (`gemm`) serves the batched matmul and every tile product of the flash attention
// forward and backward.

// ---- control block (bytes) ----------------------------------------------------------------------------------
// [0]   i32 job sequence      [4] i32 finished workers     [8] i32 kernel id     [12] i32 thread count
// [64..]  i32 arguments (I(n) = load<i32>(64 + 4n))
// [256..] f32 arguments (F(n) = load<f32>(256 + 4n))
@inline function I(n: i32): i32 {
  return load<i32>(64 + (n << 2));
}
@inline function F(n: i32): f32 {
  return load<f32>(256 + (n << 2));
}

// ---- the micro-kernel -----------------------------------------------------------------------------------------
// C[M×N] = beta·C + alpha·A[M×K]·B[K×N]; row-major with leading dimensions (in elements); pointers in bytes.
// beta is 0 or 1 (0 never reads C, so C may hold garbage).
export function gemm(M: i32, N: i32, K: i32, a: usize, lda: i32, b: usize, ldb: i32, c: usize, ldc: i32, alpha: f32, beta: i32): void {
  const va = f32x4.splat(alpha);
  const lda4 = <usize>lda << 2;
  const ldb4 = <usize>ldb << 2;
  const ldc4 = <usize>ldc << 2;
  let i = 0;
  for (; i + 4 <= M; i += 4) {
    const a0 = a + <usize>i * lda4;
    const a1 = a0 + lda4;
    const a2 = a1 + lda4;
    const a3 = a2 + lda4;
    const c0 = c + <usize>i * ldc4;
    let j = 0;
    for (; j + 8 <= N; j += 8) {
      let s00 = f32x4.splat(0), s01 = f32x4.splat(0), s10 = f32x4.splat(0), s11 = f32x4.splat(0);
      let s20 = f32x4.splat(0), s21 = f32x4.splat(0), s30 = f32x4.splat(0), s31 = f32x4.splat(0);
      let bp = b + (<usize>j << 2);
      for (let k = 0; k < K; k++) {
        const b0 = v128.load(bp);
        const b1 = v128.load(bp, 16);
        const ko = <usize>k << 2;
        const x0 = v128.load32_splat(a0 + ko);
        const x1 = v128.load32_splat(a1 + ko);
        const x2 = v128.load32_splat(a2 + ko);
        const x3 = v128.load32_splat(a3 + ko);
        s00 = f32x4.add(s00, f32x4.mul(x0, b0));
        s01 = f32x4.add(s01, f32x4.mul(x0, b1));
        s10 = f32x4.add(s10, f32x4.mul(x1, b0));
        s11 = f32x4.add(s11, f32x4.mul(x1, b1));
        s20 = f32x4.add(s20, f32x4.mul(x2, b0));
        s21 = f32x4.add(s21, f32x4.mul(x2, b1));
        s30 = f32x4.add(s30, f32x4.mul(x3, b0));
        s31 = f32x4.add(s31, f32x4.mul(x3, b1));
        bp += ldb4;
      }
      const cp = c0 + (<usize>j << 2);
      store8(cp, s00, s01, va, beta);
      store8(cp + ldc4, s10, s11, va, beta);
      store8(cp + 2 * ldc4, s20, s21, va, beta);
      store8(cp + 3 * ldc4, s30, s31, va, beta);
    }
    if (j < N) gemmEdge(4, N - j, K, a0, lda, b + (<usize>j << 2), ldb, c0 + (<usize>j << 2), ldc, alpha, beta);
  }
  if (i < M) gemmEdge(M - i, N, K, a + <usize>i * lda4, lda, b, ldb, c + <usize>i * ldc4, ldc, alpha, beta);
}

@inline function store8(p: usize, s0: v128, s1: v128, va: v128, beta: i32): void {
  let r0 = f32x4.mul(s0, va);
  let r1 = f32x4.mul(s1, va);
  if (beta) {
    r0 = f32x4.add(r0, v128.load(p));
    r1 = f32x4.add(r1, v128.load(p, 16));
  }
  v128.store(p, r0);
  v128.store(p, r1, 16);
}

// rows one at a time, columns 4 at a time, then single columns
function gemmEdge(M: i32, N: i32, K: i32, a: usize, lda: i32, b: usize, ldb: i32, c: usize, ldc: i32, alpha: f32, beta: i32): void {
  const va = f32x4.splat(alpha);
  for (let i = 0; i < M; i++) {
    const ar = a + ((<usize>i * lda) << 2);
    const cr = c + ((<usize>i * ldc) << 2);
    let j = 0;
    for (; j + 4 <= N; j += 4) {
      let s = f32x4.splat(0);
      let bp = b + (<usize>j << 2);
      for (let k = 0; k < K; k++) {
        s = f32x4.add(s, f32x4.mul(v128.load32_splat(ar + (<usize>k << 2)), v128.load(bp)));
        bp += <usize>ldb << 2;
      }
      let r = f32x4.mul(s, va);
      const cp = cr + (<usize>j << 2);
      if (beta) r = f32x4.add(r, v128.load(cp));
      v128.store(cp, r);
    }
    for (; j < N; j++) {
      let s: f32 = 0;
      for (let k = 0; k < K; k++) s += load<f32>(ar + (<usize>k << 2)) * load<f32>(b + ((<usize>k * ldb + j) << 2));
      const cp = cr + (<usize>j << 2);
      store<f32>(cp, beta ? load<f32>(cp) + alpha * s : alpha * s);
    }
  }
}

// dst[C×R] = transpose(src[R×C]) (leading dims lds, ldd)
function transpose(R: i32, C: i32, src: usize, lds: i32, dst: usize, ldd: i32): void {
  for (let r = 0; r < R; r++) {
    const sr = src + ((<usize>r * lds) << 2);
    for (let c = 0; c < C; c++) store<f32>(dst + ((<usize>c * ldd + r) << 2), load<f32>(sr + (<usize>c << 2)));
  }
}

// ---- exp on 4 lanes -------------------------------------------------------------------------------------------
// Cody–Waite range reduction and a degree-6 polynomial (relative error ~2 ulp over the f32 range); −∞ and
// anything below the smallest normal result gives exactly 0; NaN stays NaN.
@inline function exp4(x: v128): v128 {
  const hi = f32x4.splat(88.3762626647949);
  const lo = f32x4.splat(-87.3365478515625);
  const under = f32x4.lt(x, lo);
  const xc = f32x4.min(x, hi);
  const n = f32x4.nearest(f32x4.mul(xc, f32x4.splat(1.44269504088896341)));
  let r = f32x4.sub(xc, f32x4.mul(n, f32x4.splat(0.693359375)));
  r = f32x4.add(r, f32x4.mul(n, f32x4.splat(2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  const r2 = f32x4.mul(r, r);
  p = f32x4.add(f32x4.add(f32x4.mul(p, r2), r), f32x4.splat(1));
  // 2^n; n in [-127, 128) after the clamp: split in two factors so that n = 128 does not overflow the exponent
  const ni = i32x4.trunc_sat_f32x4_s(n);
  const n1 = i32x4.shr_s(ni, 1);
  const n2 = i32x4.sub(ni, n1);
  const bias = i32x4.splat(127);
  const p1 = i32x4.shl(i32x4.add(n1, bias), 23);
  const p2 = i32x4.shl(i32x4.add(n2, bias), 23);
  const res = f32x4.mul(f32x4.mul(p, p1), p2);
  return v128.andnot(res, under);
}

// exp(scale·x − sub) in place over n floats at p (n multiple of 4 not required)
function expInPlace(p: usize, n: i32, scale: f32, sub: f32): void {
  const vs = f32x4.splat(scale);
  const vm = f32x4.splat(sub);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const q = p + (<usize>i << 2);
    v128.store(q, exp4(f32x4.sub(f32x4.mul(v128.load(q), vs), vm)));
  }
  for (; i < n; i++) {
    const q = p + (<usize>i << 2);
    store<f32>(q, Mathf.exp(load<f32>(q) * scale - sub));
  }
}

/** Exported for tests: exp over n floats in place. */
export function expTest(p: usize, n: i32): void {
  expInPlace(p, n, 1, 0);
}

// ---- batched matmul (kernel 1) ----------------------------------------------------------------------------------
// args: I0 a, I1 b, I2 c, I3 batch, I4 M, I5 N, I6 K, I7 batch stride of a (elements), I8 of b, I9 of c,
//       I10 scratch base, I11 scratch bytes per thread
const KB: i32 = 256;
const NB: i32 = 128;
const MB: i32 = 64;
function matmul(tid: i32, nth: i32): void {
  const a = <usize>I(0), b = <usize>I(1), c = <usize>I(2);
  const batch = I(3), M = I(4), N = I(5), K = I(6);
  const sa = <usize>I(7), sb = <usize>I(8), sc = <usize>I(9);
  const pack = <usize>I(10) + <usize>tid * <usize>I(11);
  const nmb = (M + MB - 1) / MB;
  const nnb = (N + NB - 1) / NB;
  const tasks = batch * nnb * nmb;
  for (let t = tid; t < tasks; t += nth) {
    const bi = t / (nnb * nmb);
    const rem = t - bi * nnb * nmb;
    const jb = (rem / nmb) * NB;
    const ib = (rem % nmb) * MB;
    const nn = min(NB, N - jb);
    const mm = min(MB, M - ib);
    const ab = a + ((sa * bi) << 2);
    const bb = b + ((sb * bi) << 2);
    const cb = c + ((sc * bi) << 2);
    if (K == 0) {
      for (let i = 0; i < mm; i++) memory.fill(cb + ((<usize>(ib + i) * N + jb) << 2), 0, <usize>nn << 2);
      continue;
    }
    for (let kb = 0; kb < K; kb += KB) {
      const kk = min(KB, K - kb);
      // pack B[kb:kb+kk, jb:jb+nn] contiguous (leading dim NB) so the micro-kernel streams it from cache
      for (let k = 0; k < kk; k++) {
        memory.copy(pack + ((<usize>k * NB) << 2), bb + ((<usize>(kb + k) * N + jb) << 2), <usize>nn << 2);
      }
      gemm(mm, nn, kk, ab + ((<usize>ib * K + kb) << 2), K, pack, NB, cb + ((<usize>ib * N + jb) << 2), N, 1, kb > 0 ? 1 : 0);
    }
  }
}

// ---- flash attention ------------------------------------------------------------------------------------------
// Layout shared by forward and backward. Sequence b has qLen[b] query rows starting at row qStart[b] (keys:
// kLen[b], kStart[b]); element (b, h, i, e) of q is at b·qbs + (qStart[b] + i)·qrs + h·qhs + e — dense
// [B,H,L,E] (starts 0) and packed varlen [T,H,E] (batch stride 0, starts = cu_seqlens) both fit; k, v, o alike.
// lse/delta element (b, h, i) is at b·lbs + h·lhs + qStart[b] + i. Causal: key j visible iff j ≤ i + cOff[b]. Optional additive mask
// (bool masks arrive as 0/−∞) at maskPtr + b·mbs + h·mhs + i·mqs + j·mks (strides may be 0: broadcast).
// Query head h reads key/value head h / group.
const BR: i32 = 32; // query rows per block
const BC: i32 = 64; // keys per block

// The attention arguments, read once per job into this instance's globals (each thread has its own instance;
// nothing is allocated on the wasm heap — the JS side owns all of linear memory above the static data).
let aB: i32 = 0, aHq: i32 = 0, aG: i32 = 0, aE: i32 = 0, aEv: i32 = 0;
let aq: usize = 0, ak: usize = 0, av: usize = 0, ao: usize = 0, alse: usize = 0;
let qhs: i32 = 0, qrs: i32 = 0, khs: i32 = 0, krs: i32 = 0, vhs: i32 = 0, vrs: i32 = 0, ohs: i32 = 0, ors: i32 = 0;
let qStart: usize = 0, qLen: usize = 0, kStart: usize = 0, kLen: usize = 0, cOff: usize = 0;
let qbs: i32 = 0, kbs: i32 = 0, vbs: i32 = 0, obs: i32 = 0;
let lbs: i32 = 0, lhs: i32 = 0, causal: i32 = 0, scale: f32 = 1;
let mask: usize = 0, mbs: i32 = 0, mhs: i32 = 0, mqs: i32 = 0, mks: i32 = 0;
let scratch: usize = 0;
let aTid: i32 = 0;
// flex hooks: bit 0 = score function, bit 1 = mask function (JS tile functions behind the `flexTile` import);
// blk = 0 or a pointer to i32 [Bm, Hm, blockSize, nQ, nKv, classes ptr] with u8 classes [Bm, Hm, nQ, nKv]
// (0 empty: skipped; 1 partial: the mask function runs; 2 full: it does not)
let hookFlags: i32 = 0;
let blk: usize = 0;

// Applies the flex functions to a score tile (mode 0: forward, in place on `a`; mode 1: backward, `a` holds
// dL/d(modified score) and becomes dL/d(raw score), `r` holds the raw scores). Rows/cols of the tile are query
// rows i0.. and keys j0.. of (b, h); row stride BC.
@external("env", "flexTile")
declare function flexTile(mode: i32, tid: i32, a: usize, r: usize, rows: i32, cols: i32, b: i32, h: i32, i0: i32, j0: i32, maskOn: i32): void;

// args: I0 B, I1 Hq, I2 G, I3 E, I4 Ev, I5 q, I6 k, I7 v, I8 o, I9 lse, I10..I17 head/row strides of q,k,v,o,
// I18 qStart, I19 qLen, I20 kStart, I21 kLen, I22 cOff (int32 arrays of B), I23 lse batch stride, I24 lse head
// stride, I25 causal, I26 mask ptr (0 = none), I27..I30 mask strides, I31 scratch base, I32 scratch bytes per thread,
// I33 dout, I34 delta, I35 dq, I36 dk, I37 dv (backward; dq/dk/dv laid out like q/k/v, dout like o),
// I38..I41 batch strides of q, k, v, o; I42 flex hook flags; I43 block table (see `blk`); F0 scale
function readAttn(tid: i32): void {
  aTid = tid;
  hookFlags = I(42);
  blk = <usize>I(43);
  aB = I(0); aHq = I(1); aG = I(2); aE = I(3); aEv = I(4);
  aq = <usize>I(5); ak = <usize>I(6); av = <usize>I(7); ao = <usize>I(8); alse = <usize>I(9);
  qhs = I(10); qrs = I(11); khs = I(12); krs = I(13); vhs = I(14); vrs = I(15); ohs = I(16); ors = I(17);
  qStart = <usize>I(18); qLen = <usize>I(19); kStart = <usize>I(20); kLen = <usize>I(21); cOff = <usize>I(22);
  lbs = I(23); lhs = I(24); causal = I(25);
  qbs = I(38); kbs = I(39); vbs = I(40); obs = I(41);
  mask = <usize>I(26); mbs = I(27); mhs = I(28); mqs = I(29); mks = I(30);
  scratch = <usize>I(31) + <usize>tid * <usize>I(32);
  scale = F(0);
}

@inline function geti(p: usize, b: i32): i32 {
  return load<i32>(p + (<usize>b << 2));
}

// byte offset of row i of head h of sequence b (batch stride bs, row starts `starts`, row stride rs, head stride hs)
@inline function rowAddr(b: i32, bs: i32, starts: usize, i: i32, rs: i32, h: i32, hs: i32): usize {
  return (<usize>b * bs + <usize>(geti(starts, b) + i) * rs + <usize>h * hs) << 2;
}

@inline function lseAddr(b: i32, h: i32, i: i32): usize {
  return (<usize>b * lbs + <usize>h * lhs + <usize>(geti(qStart, b) + i)) << 2;
}

// class of the tile (query rows [i0, i0+rows), keys [j0, j0+cols)) of (b, h) in the block table: 0 when every
// block it touches is empty, 2 when every one is full, else 1 (also without a table)
function tileClass(b: i32, h: i32, i0: i32, rows: i32, j0: i32, cols: i32): i32 {
  if (!blk) return 1;
  const Bm = load<i32>(blk), Hm = load<i32>(blk + 4), bs = load<i32>(blk + 8), nq = load<i32>(blk + 12), nk = load<i32>(blk + 16);
  const cls = <usize>load<i32>(blk + 20);
  const row = <usize>((Bm == 1 ? 0 : b) * Hm + (Hm == 1 ? 0 : h)) * nq;
  let any = 0, all = 1;
  for (let qb = i0 / bs; qb <= (i0 + rows - 1) / bs; qb++) {
    for (let kb = j0 / bs; kb <= (j0 + cols - 1) / bs; kb++) {
      const c = load<u8>(cls + (row + <usize>qb) * <usize>nk + <usize>kb);
      if (c) any = 1;
      if (c != 2) all = 0;
    }
  }
  return any ? (all ? 2 : 1) : 0;
}

// scores S[rows×cols] of query rows i0.. against keys j0..: S = scale·Q·Kᵀ + mask, −∞ where causal hides the key,
// then the flex functions (mask only when maskOn). kt: Kᵀ of those keys (E rows, leading dim ldkt), transposed by
// the caller once for every query block. S has leading dim BC. raw ≠ 0: the scores before the flex functions are
// kept there (backward of a score function).
function scores(b: i32, h: i32, i0: i32, rows: i32, j0: i32, cols: i32, S: usize, kt: usize, ldkt: i32, maskOn: i32, raw: usize): void {
  const qb = aq + rowAddr(b, qbs, qStart, i0, qrs, h, qhs);
  gemm(rows, cols, aE, qb, qrs, kt, ldkt, S, BC, scale, 0);
  if ((hookFlags & 1) || maskOn) {
    if (raw) memory.copy(raw, S, <usize>(rows * BC * 4));
    flexTile(0, aTid, S, 0, rows, cols, b, h, i0, j0, maskOn);
  }
  if (mask) {
    const mb = mask + ((<usize>b * mbs + <usize>h * mhs) << 2);
    for (let r = 0; r < rows; r++) {
      const mr = mb + ((<usize>(i0 + r) * mqs) << 2);
      const sr = S + ((<usize>r * BC) << 2);
      for (let c = 0; c < cols; c++) {
        const sp = sr + (<usize>c << 2);
        store<f32>(sp, load<f32>(sp) + load<f32>(mr + ((<usize>(j0 + c) * mks) << 2)));
      }
    }
  }
  if (causal) {
    const off = geti(cOff, b);
    for (let r = 0; r < rows; r++) {
      const lim = i0 + r + off; // last visible key
      const sr = S + ((<usize>r * BC) << 2);
      for (let c = max(0, lim + 1 - j0); c < cols; c++) store<f32>(sr + (<usize>c << 2), -Infinity);
    }
  }
}

// number of keys of sequence b that query rows [i0, i1) can see at all (causal block skipping)
@inline function keyLimit(b: i32, i1: i32, lk: i32): i32 {
  if (!causal) return lk;
  return max(0, min(lk, i1 - 1 + geti(cOff, b) + 1));
}

function rowMax(S: usize, cols: i32): f32 {
  let m = f32x4.splat(-Infinity);
  let c = 0;
  for (; c + 4 <= cols; c += 4) m = f32x4.max(m, v128.load(S + (<usize>c << 2)));
  let r = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
  for (; c < cols; c++) r = max(r, load<f32>(S + (<usize>c << 2)));
  return r;
}

function rowSum(S: usize, cols: i32): f32 {
  let s = f32x4.splat(0);
  let c = 0;
  for (; c + 4 <= cols; c += 4) s = f32x4.add(s, v128.load(S + (<usize>c << 2)));
  let r = f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
  for (; c < cols; c++) r += load<f32>(S + (<usize>c << 2));
  return r;
}

@inline function scaleRow(p: usize, n: i32, f: f32): void {
  const vf = f32x4.splat(f);
  let c = 0;
  for (; c + 4 <= n; c += 4) v128.store(p + (<usize>c << 2), f32x4.mul(v128.load(p + (<usize>c << 2)), vf));
  for (; c < n; c++) store<f32>(p + (<usize>c << 2), load<f32>(p + (<usize>c << 2)) * f);
}

// forward (kernel 2): tasks = (b, h, query block) round-robin over threads
function attnForward(tid: i32, nth: i32): void {
  readAttn(tid);
  const S = scratch; // BR×BC
  const acc = S + <usize>(BR * BC * 4); // BR×Ev
  const mrow = acc + <usize>(BR * aEv * 4); // BR
  const lrow = mrow + <usize>(BR * 4); // BR
  const kt = lrow + <usize>(BR * 4); // Kᵀ of one whole (sequence, key head): E × ldk
  let ldk = 0;
  for (let b = 0; b < aB; b++) ldk = max(ldk, geti(kLen, b));
  let cachedB = -1;
  let cachedHk = -1;
  let maxLq = 0;
  for (let b = 0; b < aB; b++) maxLq = max(maxLq, geti(qLen, b));
  const nqb = (maxLq + BR - 1) / BR;
  const tasks = aB * aHq * nqb;
  for (let t = tid; t < tasks; t += nth) {
    const b = t / (aHq * nqb);
    const h = (t / nqb) % aHq;
    const i0 = (t % nqb) * BR;
    const lq = geti(qLen, b);
    if (i0 >= lq) continue;
    const rows = min(BR, lq - i0);
    const lk = keyLimit(b, i0 + rows, geti(kLen, b));
    const hk = h / aG;
    if (b != cachedB || hk != cachedHk) {
      transpose(geti(kLen, b), aE, ak + rowAddr(b, kbs, kStart, 0, krs, hk, khs), krs, kt, ldk);
      cachedB = b;
      cachedHk = hk;
    }
    memory.fill(acc, 0, <usize>(rows * aEv * 4));
    for (let r = 0; r < rows; r++) {
      store<f32>(mrow + (<usize>r << 2), -Infinity);
      store<f32>(lrow + (<usize>r << 2), 0);
    }
    for (let j0 = 0; j0 < lk; j0 += BC) {
      const cols = min(BC, lk - j0);
      const cls = tileClass(b, h, i0, rows, j0, cols);
      if (cls == 0) continue;
      scores(b, h, i0, rows, j0, cols, S, kt + (<usize>j0 << 2), ldk, (hookFlags & 2) && cls == 1 ? 1 : 0, 0);
      for (let r = 0; r < rows; r++) {
        const sr = S + ((<usize>r * BC) << 2);
        const mOld = load<f32>(mrow + (<usize>r << 2));
        const mNew = max(mOld, rowMax(sr, cols));
        // a row with no visible key so far keeps m = −∞ and contributes nothing
        const mUse: f32 = mNew == -Infinity ? 0 : mNew;
        expInPlace(sr, cols, 1, mUse);
        const alpha: f32 = mOld == -Infinity ? 0 : Mathf.exp(mOld - mUse);
        store<f32>(lrow + (<usize>r << 2), load<f32>(lrow + (<usize>r << 2)) * alpha + rowSum(sr, cols));
        store<f32>(mrow + (<usize>r << 2), mNew);
        if (alpha != 1) scaleRow(acc + ((<usize>r * aEv) << 2), aEv, alpha);
      }
      const vb = av + rowAddr(b, vbs, kStart, j0, vrs, hk, vhs);
      gemm(rows, aEv, cols, S, BC, vb, vrs, acc, aEv, 1, 1);
    }
    const ob = ao + rowAddr(b, obs, qStart, i0, ors, h, ohs);
    const lb = alse + lseAddr(b, h, i0);
    for (let r = 0; r < rows; r++) {
      const l = load<f32>(lrow + (<usize>r << 2));
      const m = load<f32>(mrow + (<usize>r << 2));
      const orow = ob + ((<usize>r * ors) << 2);
      const arow = acc + ((<usize>r * aEv) << 2);
      // fully masked row (l = 0, m = −∞): zeros and lse −∞, like PyTorch's flash backend; NaN propagates
      const inv: f32 = l > 0 ? 1 / l : (l == 0 ? 0 : l);
      for (let e = 0; e < aEv; e++) store<f32>(orow + (<usize>e << 2), load<f32>(arow + (<usize>e << 2)) * inv);
      store<f32>(lb + (<usize>r << 2), l > 0 ? m + Mathf.log(l) : (l == 0 ? -Infinity : l));
    }
  }
}

// backward (kernel 3): tasks = (b, key/value head) pairs, so dQ rows of a task's query heads are written by one
// thread only (deterministic, no atomics). Per key block: dV += Pᵀ·dO, dK += scale·dSᵀ·Q, dQ += scale·dS·K with
// P = exp(scale·QKᵀ − lse) and dS = P ∘ (dO·Vᵀ − delta). dq/dk/dv must be zeroed by the caller.
function attnBackward(tid: i32, nth: i32): void {
  readAttn(tid);
  const dout = <usize>I(33), delta = <usize>I(34), dq = <usize>I(35), dk = <usize>I(36), dv = <usize>I(37);
  const Hkv = aHq / aG;
  const S = scratch; // BR×BC: P
  const dP = S + <usize>(BR * BC * 4); // BR×BC: dP, then dS
  const kt = dP + <usize>(BR * BC * 4); // E×BC (Kᵀ of the key block)
  const vt = kt + <usize>(aE * BC * 4); // Ev×BC (Vᵀ of the key block)
  const tt = vt + <usize>(aEv * BC * 4); // BC×BR (Pᵀ, then dSᵀ)
  const R = tt + <usize>(BC * BR * 4); // BR×BC: raw scores (score functions)
  const tasks = aB * Hkv;
  for (let t = tid; t < tasks; t += nth) {
    const b = t / Hkv;
    const hk = t % Hkv;
    const lq = geti(qLen, b);
    const lk = geti(kLen, b);
    for (let j0 = 0; j0 < lk; j0 += BC) {
      const cols = min(BC, lk - j0);
      const kOff = rowAddr(b, kbs, kStart, j0, krs, hk, khs);
      const vOff = rowAddr(b, vbs, kStart, j0, vrs, hk, vhs);
      const kb = ak + kOff;
      const vb = av + vOff;
      const dkb = dk + kOff;
      const dvb = dv + vOff;
      transpose(cols, aEv, vb, vrs, vt, BC);
      transpose(cols, aE, kb, krs, kt, BC);
      // first query row that can see key j0 (causal): i + off ≥ j0
      const iStart = causal ? max(0, j0 - geti(cOff, b)) : 0;
      for (let g = 0; g < aG; g++) {
        const h = hk * aG + g;
        for (let i0 = (iStart / BR) * BR; i0 < lq; i0 += BR) {
          const rows = min(BR, lq - i0);
          const cls = tileClass(b, h, i0, rows, j0, cols);
          if (cls == 0) continue;
          const maskOn = (hookFlags & 2) && cls == 1 ? 1 : 0;
          scores(b, h, i0, rows, j0, cols, S, kt, BC, maskOn, hookFlags & 1 ? R : 0);
          const lb = alse + lseAddr(b, h, i0);
          for (let r = 0; r < rows; r++) {
            const l = load<f32>(lb + (<usize>r << 2));
            const sr = S + ((<usize>r * BC) << 2);
            if (l == -Infinity) memory.fill(sr, 0, <usize>cols << 2);
            else expInPlace(sr, cols, 1, l);
          }
          const qOff = rowAddr(b, qbs, qStart, i0, qrs, h, qhs);
          const qb = aq + qOff;
          const dob = dout + rowAddr(b, obs, qStart, i0, ors, h, ohs);
          const dqb = dq + qOff;
          // dV[cols×Ev] += Pᵀ·dO
          transpose(rows, cols, S, BC, tt, BR);
          gemm(cols, aEv, rows, tt, BR, dob, ors, dvb, vrs, 1, 1);
          // dP = dO·Vᵀ; dS = P ∘ (dP − delta)
          gemm(rows, cols, aEv, dob, ors, vt, BC, dP, BC, 1, 0);
          const db = delta + lseAddr(b, h, i0);
          for (let r = 0; r < rows; r++) {
            const dl = f32x4.splat(load<f32>(db + (<usize>r << 2)));
            const pr = S + ((<usize>r * BC) << 2);
            const dr = dP + ((<usize>r * BC) << 2);
            let c = 0;
            for (; c + 4 <= cols; c += 4) {
              const o = <usize>c << 2;
              v128.store(dr + o, f32x4.mul(v128.load(pr + o), f32x4.sub(v128.load(dr + o), dl)));
            }
            for (; c < cols; c++) {
              const o = <usize>c << 2;
              store<f32>(dr + o, load<f32>(pr + o) * (load<f32>(dr + o) - f32x4.extract_lane(dl, 0)));
            }
          }
          if (hookFlags & 1) flexTile(1, aTid, dP, R, rows, cols, b, h, i0, j0, maskOn);
          // dQ[rows×E] += scale·dS·K
          gemm(rows, aE, cols, dP, BC, kb, krs, dqb, qrs, scale, 1);
          // dK[cols×E] += scale·dSᵀ·Q
          transpose(rows, cols, dP, BC, tt, BR);
          gemm(cols, aE, rows, tt, BR, qb, qrs, dkb, krs, scale, 1);
        }
      }
    }
  }
}

/** Scratch bytes one thread needs for the attention kernels with head dims E, Ev. */
export function attnScratchBytes(E: i32, Ev: i32, maxLk: i32): i32 {
  const forward = BR * BC + BR * Ev + 2 * BR + E * maxLk;
  const backward = 3 * BR * BC + E * BC + Ev * BC + BC * BR;
  return 4 * max(forward, backward) + 64;
}

/** Scratch bytes one thread needs for matmul. */
export function matmulScratchBytes(): i32 {
  return 4 * KB * NB;
}

// ---- elementwise, reductions, softmax, layer norm, cross-entropy (kernels 4..12) --------------------------------
// Work is split into `tasks` (rows, or row chunks); thread tid takes the contiguous range [t0, t1).
@inline function taskStart(tasks: i32, tid: i32, nth: i32): i32 {
  return <i32>((<i64>tasks * tid) / nth);
}

// Strided operands: the output is contiguous with (collapsed) shape I(sh)..I(sh+R-1); an operand's element of
// output row r (all dims but the last) is at Σ idx_d·stride_d (strides in elements, 0 where it broadcasts).
@inline function rowOffset(r: i32, R: i32, sh: i32, st: i32): usize {
  let off: usize = 0;
  for (let d = R - 2; d >= 0; d--) {
    const n = I(sh + d);
    const q = r / n;
    off += <usize>(r - q * n) * <usize>I(st + d);
    r = q;
  }
  return off;
}

const CH: i32 = 8192; // elements per task chunk of a long row

const U_ID = 0, U_NEG = 1, U_EXP = 2, U_LOG = 3, U_TANH = 4, U_SQRT = 5, U_ABS = 6, U_RELU = 7, U_SIGMOID = 8;
const U_POW = 9, U_GELU = 10, U_GELU_TANH = 11;
const SQRT1_2: f64 = 0.7071067811865476;
const GELU_C: f64 = 0.7978845608028654; // sqrt(2/π)
const INV_SQRT_2PI: f64 = 0.3989422804014327;

// erfc with relative error < 1.2e-7 everywhere (Chebyshev fit, Numerical Recipes' erfcc), in f64
function erfc64(x: f64): f64 {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? r : 2 - r;
}

// exp on 4 lanes with overflow to +∞ (exp4 saturates at the largest float)
// (exp4 clamps its input at ln(FLT_MAX) − ε; the few lanes above that go through the scalar exp)
@inline function expFull4(x: v128): v128 {
  if (v128.any_true(f32x4.gt(x, f32x4.splat(88.3762626647949)))) {
    let r = f32x4.splat(<f32>Math.exp(<f64>f32x4.extract_lane(x, 0)));
    r = f32x4.replace_lane(r, 1, <f32>Math.exp(<f64>f32x4.extract_lane(x, 1)));
    r = f32x4.replace_lane(r, 2, <f32>Math.exp(<f64>f32x4.extract_lane(x, 2)));
    return f32x4.replace_lane(r, 3, <f32>Math.exp(<f64>f32x4.extract_lane(x, 3)));
  }
  return exp4(x);
}

function unaryScalar(op: i32, x: f32, p: f32): f32 {
  switch (op) {
    case U_ID: return x;
    case U_NEG: return -x;
    case U_EXP: return <f32>Math.exp(<f64>x);
    case U_LOG: return Mathf.log(x);
    case U_TANH: return Mathf.tanh(x);
    case U_SQRT: return Mathf.sqrt(x);
    case U_ABS: return Mathf.abs(x);
    case U_RELU: return x > 0 ? x : 0;
    case U_SIGMOID: return <f32>(1 / (1 + Math.exp(-<f64>x)));
    case U_POW: return <f32>Math.pow(<f64>x, <f64>p);
    case U_GELU: {
      const xd = <f64>x;
      return <f32>(0.5 * xd * erfc64(-xd * SQRT1_2));
    }
    case U_GELU_TANH: {
      const xd = <f64>x;
      return <f32>(0.5 * xd * (1 + Math.tanh(GELU_C * (xd + 0.044715 * xd * xd * xd))));
    }
    default: return NaN;
  }
}

@inline function lanes(op: i32, v: v128, p: f32): v128 {
  let r = f32x4.splat(unaryScalar(op, f32x4.extract_lane(v, 0), p));
  r = f32x4.replace_lane(r, 1, unaryScalar(op, f32x4.extract_lane(v, 1), p));
  r = f32x4.replace_lane(r, 2, unaryScalar(op, f32x4.extract_lane(v, 2), p));
  return f32x4.replace_lane(r, 3, unaryScalar(op, f32x4.extract_lane(v, 3), p));
}

@inline function unaryVec(op: i32, v: v128, p: f32): v128 {
  switch (op) {
    case U_ID: return v;
    case U_NEG: return f32x4.neg(v);
    case U_EXP: return expFull4(v);
    case U_SQRT: return f32x4.sqrt(v);
    case U_ABS: return f32x4.abs(v);
    case U_RELU: return v128.and(v, f32x4.gt(v, f32x4.splat(0))); // NaN → 0 like the reference
    case U_SIGMOID: {
      const one = f32x4.splat(1);
      return f32x4.div(one, f32x4.add(one, expFull4(f32x4.neg(v))));
    }
    default: return lanes(op, v, p);
  }
}

// out[0..n) = f(x[i·sx])
function unaryRow(op: i32, x: usize, sx: i32, out: usize, n: i32, p: f32): void {
  let i = 0;
  if (sx == 1) {
    for (; i + 4 <= n; i += 4) v128.store(out + (<usize>i << 2), unaryVec(op, v128.load(x + (<usize>i << 2)), p));
    for (; i < n; i++) store<f32>(out + (<usize>i << 2), unaryScalar(op, load<f32>(x + (<usize>i << 2)), p));
  } else if (sx == 0) {
    const v = unaryScalar(op, load<f32>(x), p);
    for (; i < n; i++) store<f32>(out + (<usize>i << 2), v);
  } else {
    for (; i < n; i++) store<f32>(out + (<usize>i << 2), unaryScalar(op, load<f32>(x + ((<usize>i * sx) << 2)), p));
  }
}

// kernel 4: I0 op, I1 x, I2 out, I3 R (1..6), I4..I9 shape, I10..I15 strides of x; F0 p
function unaryK(tid: i32, nth: i32): void {
  const op = I(0), x = <usize>I(1), out = <usize>I(2), R = I(3);
  const p = F(0);
  const inner = I(4 + R - 1), sx = I(10 + R - 1);
  let rows = 1;
  for (let d = 0; d < R - 1; d++) rows *= I(4 + d);
  if (op == U_ID && R >= 2 && sx != 1 && I(10 + R - 2) == 1) {
    transposeCopy(x, out, R, rows, inner, sx, tid, nth);
    return;
  }
  const nch = (inner + CH - 1) / CH;
  const tasks = rows * nch;
  const t1 = taskStart(tasks, tid + 1, nth);
  for (let t = taskStart(tasks, tid, nth); t < t1; t++) {
    const r = t / nch;
    const c0 = (t - r * nch) * CH;
    const xo = rowOffset(r, R, 4, 10) + <usize>c0 * <usize>sx;
    unaryRow(op, x + (xo << 2), sx, out + ((<usize>r * inner + c0) << 2), min(CH, inner - c0), p);
  }
}

// A copy whose source walks its last two output dims transposed (source stride 1 along dim R−2): 32×32 tiles, so
// that reads run along the source's rows instead of striding through memory one element a time.
function transposeCopy(x: usize, out: usize, R: i32, rows: i32, inner: i32, sx: i32, tid: i32, nth: i32): void {
  const TB = 32;
  const n0 = I(4 + R - 2);
  const batch = rows / n0;
  const nib = (n0 + TB - 1) / TB;
  const tasks = batch * nib;
  const t1 = taskStart(tasks, tid + 1, nth);
  for (let t = taskStart(tasks, tid, nth); t < t1; t++) {
    const b = t / nib;
    const i0 = (t - b * nib) * TB;
    const i1 = min(n0, i0 + TB);
    const src = x + (rowOffset(b * n0, R, 4, 10) << 2);
    const dst = out + ((<usize>b * n0 * inner) << 2);
    for (let j0 = 0; j0 < inner; j0 += TB) {
      const j1 = min(inner, j0 + TB);
      for (let j = j0; j < j1; j++) {
        const sr = src + ((<usize>j * sx) << 2);
        for (let i = i0; i < i1; i++) store<f32>(dst + ((<usize>i * inner + j) << 2), load<f32>(sr + (<usize>i << 2)));
      }
    }
  }
}

const B_ADD = 0, B_SUB = 1, B_MUL = 2, B_DIV = 3, B_MAX = 4, B_MIN = 5;

@inline function binScalar(op: i32, a: f32, b: f32): f32 {
  switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_MAX: return max(a, b); // f32.max: NaN in, NaN out
    default: return min(a, b);
  }
}

@inline function binVec(op: i32, a: v128, b: v128): v128 {
  switch (op) {
    case B_ADD: return f32x4.add(a, b);
    case B_SUB: return f32x4.sub(a, b);
    case B_MUL: return f32x4.mul(a, b);
    case B_DIV: return f32x4.div(a, b);
    case B_MAX: return f32x4.max(a, b);
    default: return f32x4.min(a, b);
  }
}

function binaryRow(op: i32, a: usize, sa: i32, b: usize, sb: i32, out: usize, n: i32): void {
  let i = 0;
  if (sa == 1 && sb == 1) {
    for (; i + 4 <= n; i += 4) {
      const o = <usize>i << 2;
      v128.store(out + o, binVec(op, v128.load(a + o), v128.load(b + o)));
    }
  } else if (sa == 1 && sb == 0) {
    const vb = v128.load32_splat(b);
    for (; i + 4 <= n; i += 4) {
      const o = <usize>i << 2;
      v128.store(out + o, binVec(op, v128.load(a + o), vb));
    }
  } else if (sa == 0 && sb == 1) {
    const va = v128.load32_splat(a);
    for (; i + 4 <= n; i += 4) {
      const o = <usize>i << 2;
      v128.store(out + o, binVec(op, va, v128.load(b + o)));
    }
  }
  for (; i < n; i++) {
    store<f32>(out + (<usize>i << 2), binScalar(op, load<f32>(a + ((<usize>i * sa) << 2)), load<f32>(b + ((<usize>i * sb) << 2))));
  }
}

// kernel 5: I0 op, I1 a, I2 b, I3 out, I4 R, I5..I10 shape, I11..I16 strides of a, I17..I22 strides of b
function binaryK(tid: i32, nth: i32): void {
  const op = I(0), a = <usize>I(1), b = <usize>I(2), out = <usize>I(3), R = I(4);
  const inner = I(5 + R - 1), sa = I(11 + R - 1), sb = I(17 + R - 1);
  let rows = 1;
  for (let d = 0; d < R - 1; d++) rows *= I(5 + d);
  const nch = (inner + CH - 1) / CH;
  const tasks = rows * nch;
  const t1 = taskStart(tasks, tid + 1, nth);
  for (let t = taskStart(tasks, tid, nth); t < t1; t++) {
    const r = t / nch;
    const c0 = (t - r * nch) * CH;
    const ao = rowOffset(r, R, 5, 11) + <usize>c0 * <usize>sa;
    const bo = rowOffset(r, R, 5, 17) + <usize>c0 * <usize>sb;
    binaryRow(op, a + (ao << 2), sa, b + (bo << 2), sb, out + ((<usize>r * inner + c0) << 2), min(CH, inner - c0));
  }
}

const R_SUM = 0, R_MAX = 1;

@inline function redVec(op: i32, a: v128, b: v128): v128 {
  return op == R_SUM ? f32x4.add(a, b) : op == R_MAX ? f32x4.max(a, b) : f32x4.min(a, b);
}
@inline function redScalar(op: i32, a: f32, b: f32): f32 {
  return op == R_SUM ? a + b : op == R_MAX ? max(a, b) : min(a, b);
}

function reduceRow(op: i32, x: usize, n: i32): f32 {
  const init: f32 = op == R_SUM ? 0 : op == R_MAX ? -Infinity : Infinity;
  let s0 = f32x4.splat(init), s1 = f32x4.splat(init);
  let k = 0;
  for (; k + 8 <= n; k += 8) {
    s0 = redVec(op, s0, v128.load(x + (<usize>k << 2)));
    s1 = redVec(op, s1, v128.load(x + (<usize>k << 2), 16));
  }
  for (; k + 4 <= n; k += 4) s0 = redVec(op, s0, v128.load(x + (<usize>k << 2)));
  const s = redVec(op, s0, s1);
  let r = redScalar(op, redScalar(op, f32x4.extract_lane(s, 0), f32x4.extract_lane(s, 1)), redScalar(op, f32x4.extract_lane(s, 2), f32x4.extract_lane(s, 3)));
  for (; k < n; k++) r = redScalar(op, r, load<f32>(x + (<usize>k << 2)));
  return r;
}

// kernel 6: x contiguous [outer, n, inner] → out [outer, inner]; I0 op (0 sum, 1 max, 2 min), I1 x, I2 out,
// I3 outer, I4 n, I5 inner
function reduceK(tid: i32, nth: i32): void {
  const op = I(0), x = <usize>I(1), out = <usize>I(2), outer = I(3), n = I(4), inner = I(5);
  if (inner == 1) {
    const t1 = taskStart(outer, tid + 1, nth);
    for (let o = taskStart(outer, tid, nth); o < t1; o++) store<f32>(out + (<usize>o << 2), reduceRow(op, x + ((<usize>o * n) << 2), n));
    return;
  }
  const C = 1024;
  const nch = (inner + C - 1) / C;
  const tasks = outer * nch;
  const init: f32 = op == R_SUM ? 0 : op == R_MAX ? -Infinity : Infinity;
  const t1 = taskStart(tasks, tid + 1, nth);
  for (let t = taskStart(tasks, tid, nth); t < t1; t++) {
    const o = t / nch;
    const c0 = (t - o * nch) * C;
    const len = min(C, inner - c0);
    const dst = out + ((<usize>o * inner + c0) << 2);
    for (let i = 0; i < len; i++) store<f32>(dst + (<usize>i << 2), init);
    for (let k = 0; k < n; k++) {
      const src = x + (((<usize>o * n + k) * inner + c0) << 2);
      let i = 0;
      for (; i + 4 <= len; i += 4) {
        const q = <usize>i << 2;
        v128.store(dst + q, redVec(op, v128.load(dst + q), v128.load(src + q)));
      }
      for (; i < len; i++) {
        const q = <usize>i << 2;
        store<f32>(dst + q, redScalar(op, load<f32>(dst + q), load<f32>(src + q)));
      }
    }
  }
}

// Σ exp(x − m) over a row (m finite)
function expSum(x: usize, n: i32, m: f32): f32 {
  const vm = f32x4.splat(m);
  let s = f32x4.splat(0);
  let k = 0;
  for (; k + 4 <= n; k += 4) s = f32x4.add(s, exp4(f32x4.sub(v128.load(x + (<usize>k << 2)), vm)));
  let r = f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
  for (; k < n; k++) r += Mathf.exp(load<f32>(x + (<usize>k << 2)) - m);
  return r;
}

// kernel 7: softmax over rows: I0 x, I1 out, I2 rows, I3 n, I4 log
function softmaxK(tid: i32, nth: i32): void {
  const x = <usize>I(0), out = <usize>I(1), rows = I(2), n = I(3), lg = I(4);
  const t1 = taskStart(rows, tid + 1, nth);
  for (let r = taskStart(rows, tid, nth); r < t1; r++) {
    const xr = x + ((<usize>r * n) << 2);
    const or = out + ((<usize>r * n) << 2);
    const m = rowMax(xr, n);
    if (m == -Infinity) {
      const f: f32 = lg ? -Infinity : 0;
      for (let k = 0; k < n; k++) store<f32>(or + (<usize>k << 2), f);
      continue;
    }
    if (lg) {
      // (x − m) − log s, in that order (as the reference): m + log s would round away small log-probabilities
      const ls = Mathf.log(expSum(xr, n, m));
      const vm = f32x4.splat(m);
      const vs = f32x4.splat(ls);
      let k = 0;
      for (; k + 4 <= n; k += 4) v128.store(or + (<usize>k << 2), f32x4.sub(f32x4.sub(v128.load(xr + (<usize>k << 2)), vm), vs));
      for (; k < n; k++) store<f32>(or + (<usize>k << 2), load<f32>(xr + (<usize>k << 2)) - m - ls);
    } else {
      memory.copy(or, xr, <usize>n << 2);
      expInPlace(or, n, 1, m);
      scaleRow(or, n, 1 / rowSum(or, n));
    }
  }
}

// kernel 8: layer norm over rows: I0 x, I1 y, I2 mean, I3 rstd, I4 rows, I5 d, I6 weight (0 none), I7 bias (0 none); F0 eps
function layerNormK(tid: i32, nth: i32): void {
  const x = <usize>I(0), y = <usize>I(1), mean = <usize>I(2), rstd = <usize>I(3), rows = I(4), d = I(5);
  const w = <usize>I(6), b = <usize>I(7);
  const eps = F(0);
  const t1 = taskStart(rows, tid + 1, nth);
  for (let r = taskStart(rows, tid, nth); r < t1; r++) {
    const xr = x + ((<usize>r * d) << 2);
    const yr = y + ((<usize>r * d) << 2);
    const mu = rowSum(xr, d) / <f32>d;
    const vm = f32x4.splat(mu);
    let q = f32x4.splat(0);
    let k = 0;
    for (; k + 4 <= d; k += 4) {
      const c = f32x4.sub(v128.load(xr + (<usize>k << 2)), vm);
      q = f32x4.add(q, f32x4.mul(c, c));
    }
    let qs = f32x4.extract_lane(q, 0) + f32x4.extract_lane(q, 1) + f32x4.extract_lane(q, 2) + f32x4.extract_lane(q, 3);
    for (; k < d; k++) {
      const c = load<f32>(xr + (<usize>k << 2)) - mu;
      qs += c * c;
    }
    const rs = <f32>(1 / Math.sqrt(<f64>qs / <f64>d + <f64>eps));
    store<f32>(mean + (<usize>r << 2), mu);
    store<f32>(rstd + (<usize>r << 2), rs);
    const vr = f32x4.splat(rs);
    k = 0;
    for (; k + 4 <= d; k += 4) {
      const o = <usize>k << 2;
      let v = f32x4.mul(f32x4.sub(v128.load(xr + o), vm), vr);
      if (w) v = f32x4.mul(v, v128.load(w + o));
      if (b) v = f32x4.add(v, v128.load(b + o));
      v128.store(yr + o, v);
    }
    for (; k < d; k++) {
      const o = <usize>k << 2;
      let v = (load<f32>(xr + o) - mu) * rs;
      if (w) v *= load<f32>(w + o);
      if (b) v += load<f32>(b + o);
      store<f32>(yr + o, v);
    }
  }
}

// kernel 9: layer norm backward (dx only): I0 x, I1 g, I2 mean, I3 rstd, I4 weight (0 none), I5 dx, I6 rows, I7 d
function layerNormBackK(tid: i32, nth: i32): void {
  const x = <usize>I(0), g = <usize>I(1), mean = <usize>I(2), rstd = <usize>I(3), w = <usize>I(4), dx = <usize>I(5);
  const rows = I(6), d = I(7);
  const t1 = taskStart(rows, tid + 1, nth);
  for (let r = taskStart(rows, tid, nth); r < t1; r++) {
    const ro = (<usize>r * d) << 2;
    const mu = load<f32>(mean + (<usize>r << 2));
    const rs = load<f32>(rstd + (<usize>r << 2));
    const vm = f32x4.splat(mu), vr = f32x4.splat(rs);
    let s1 = f32x4.splat(0), s2 = f32x4.splat(0);
    let k = 0;
    for (; k + 4 <= d; k += 4) {
      const o = <usize>k << 2;
      const xh = f32x4.mul(f32x4.sub(v128.load(x + ro + o), vm), vr);
      let gw = v128.load(g + ro + o);
      if (w) gw = f32x4.mul(gw, v128.load(w + o));
      s1 = f32x4.add(s1, gw);
      s2 = f32x4.add(s2, f32x4.mul(gw, xh));
    }
    let a1 = f32x4.extract_lane(s1, 0) + f32x4.extract_lane(s1, 1) + f32x4.extract_lane(s1, 2) + f32x4.extract_lane(s1, 3);
    let a2 = f32x4.extract_lane(s2, 0) + f32x4.extract_lane(s2, 1) + f32x4.extract_lane(s2, 2) + f32x4.extract_lane(s2, 3);
    for (let j = k; j < d; j++) {
      const o = <usize>j << 2;
      const xh = (load<f32>(x + ro + o) - mu) * rs;
      let gw = load<f32>(g + ro + o);
      if (w) gw *= load<f32>(w + o);
      a1 += gw;
      a2 += gw * xh;
    }
    const m1 = a1 / <f32>d, m2 = a2 / <f32>d;
    const v1 = f32x4.splat(m1), v2 = f32x4.splat(m2);
    k = 0;
    for (; k + 4 <= d; k += 4) {
      const o = <usize>k << 2;
      const xh = f32x4.mul(f32x4.sub(v128.load(x + ro + o), vm), vr);
      let gw = v128.load(g + ro + o);
      if (w) gw = f32x4.mul(gw, v128.load(w + o));
      v128.store(dx + ro + o, f32x4.mul(vr, f32x4.sub(f32x4.sub(gw, v1), f32x4.mul(xh, v2))));
    }
    for (; k < d; k++) {
      const o = <usize>k << 2;
      const xh = (load<f32>(x + ro + o) - mu) * rs;
      let gw = load<f32>(g + ro + o);
      if (w) gw *= load<f32>(w + o);
      store<f32>(dx + ro + o, rs * (gw - m1 - xh * m2));
    }
  }
}

// kernel 10: gelu backward g·gelu'(x) over n contiguous elements: I0 x, I1 g, I2 out, I3 n, I4 tanh approximation
function geluBackK(tid: i32, nth: i32): void {
  const x = <usize>I(0), g = <usize>I(1), out = <usize>I(2), n = I(3), tanh = I(4);
  const nch = (n + CH - 1) / CH;
  const t1 = taskStart(nch, tid + 1, nth);
  for (let t = taskStart(nch, tid, nth); t < t1; t++) {
    const end = min(n, (t + 1) * CH);
    for (let i = t * CH; i < end; i++) {
      const o = <usize>i << 2;
      const xd = <f64>load<f32>(x + o);
      let dg: f64;
      if (tanh) {
        const th = Math.tanh(GELU_C * (xd + 0.044715 * xd * xd * xd));
        dg = 0.5 * (1 + th) + 0.5 * xd * (1 - th * th) * GELU_C * (1 + 3 * 0.044715 * xd * xd);
      } else {
        dg = 0.5 * erfc64(-xd * SQRT1_2) + xd * Math.exp(-0.5 * xd * xd) * INV_SQRT_2PI;
      }
      store<f32>(out + o, <f32>(<f64>load<f32>(g + o) * dg));
    }
  }
}

// log Σ exp over a row (−∞ rows give NaN like the reference)
@inline function rowLse(x: usize, c: i32): f32 {
  const m = rowMax(x, c);
  return m + Mathf.log(expSum(x, c, m));
}

// kernel 11: cross-entropy rows: I0 logits, I1 target (i32), I2 out, I3 n, I4 c, I5 ignoreIndex
function crossEntropyK(tid: i32, nth: i32): void {
  const l = <usize>I(0), tg = <usize>I(1), out = <usize>I(2), n = I(3), c = I(4), ig = I(5);
  const t1 = taskStart(n, tid + 1, nth);
  for (let r = taskStart(n, tid, nth); r < t1; r++) {
    const t = load<i32>(tg + (<usize>r << 2));
    const lr = l + ((<usize>r * c) << 2);
    store<f32>(out + (<usize>r << 2), t == ig ? 0 : rowLse(lr, c) - load<f32>(lr + (<usize>t << 2)));
  }
}

// kernel 12: cross-entropy backward: I0 logits, I1 target, I2 g [n], I3 out [n, c], I4 n, I5 c, I6 ignoreIndex
function crossEntropyBackK(tid: i32, nth: i32): void {
  const l = <usize>I(0), tg = <usize>I(1), g = <usize>I(2), out = <usize>I(3), n = I(4), c = I(5), ig = I(6);
  const t1 = taskStart(n, tid + 1, nth);
  for (let r = taskStart(n, tid, nth); r < t1; r++) {
    const t = load<i32>(tg + (<usize>r << 2));
    const lr = l + ((<usize>r * c) << 2);
    const or = out + ((<usize>r * c) << 2);
    if (t == ig) {
      memory.fill(or, 0, <usize>c << 2);
      continue;
    }
    const lse = rowLse(lr, c);
    memory.copy(or, lr, <usize>c << 2);
    expInPlace(or, c, 1, lse);
    store<f32>(or + (<usize>t << 2), load<f32>(or + (<usize>t << 2)) - 1);
    scaleRow(or, c, load<f32>(g + (<usize>r << 2)));
  }
}

// kernel 13: strided copy dst[·] = src[·] over a collapsed shape: I0 src, I1 dst, I2 R, I3..I8 shape,
// I9..I14 strides of src (0 = broadcast), I15..I20 strides of dst (both in elements)
function stridedCopyK(tid: i32, nth: i32): void {
  const src = <usize>I(0), dst = <usize>I(1), R = I(2);
  const inner = I(3 + R - 1), ss = I(9 + R - 1), ds = I(15 + R - 1);
  let rows = 1;
  for (let d = 0; d < R - 1; d++) rows *= I(3 + d);
  const t1 = taskStart(rows, tid + 1, nth);
  for (let r = taskStart(rows, tid, nth); r < t1; r++) {
    const sp = src + (rowOffset(r, R, 3, 9) << 2);
    const dp = dst + (rowOffset(r, R, 3, 15) << 2);
    if (ss == 1 && ds == 1) memory.copy(dp, sp, <usize>inner << 2);
    else for (let i = 0; i < inner; i++) store<f32>(dp + ((<usize>i * ds) << 2), load<f32>(sp + ((<usize>i * ss) << 2)));
  }
}

// kernel 14: where(cond, a, b) with broadcasting: I0 cond (u8, non-zero = a), I1 a, I2 b, I3 out, I4 R,
// I5..I10 shape, I11..I16 strides of cond, I17..I22 of a, I23..I28 of b
function whereK(tid: i32, nth: i32): void {
  const c = <usize>I(0), a = <usize>I(1), b = <usize>I(2), out = <usize>I(3), R = I(4);
  const inner = I(5 + R - 1), sc = I(11 + R - 1), sa = I(17 + R - 1), sb = I(23 + R - 1);
  let rows = 1;
  for (let d = 0; d < R - 1; d++) rows *= I(5 + d);
  const t1 = taskStart(rows, tid + 1, nth);
  for (let r = taskStart(rows, tid, nth); r < t1; r++) {
    const cp = c + rowOffset(r, R, 5, 11);
    const ap = a + (rowOffset(r, R, 5, 17) << 2);
    const bp = b + (rowOffset(r, R, 5, 23) << 2);
    const op = out + ((<usize>r * inner) << 2);
    for (let i = 0; i < inner; i++) {
      const v = load<u8>(cp + <usize>i * sc) ? load<f32>(ap + ((<usize>i * sa) << 2)) : load<f32>(bp + ((<usize>i * sb) << 2));
      store<f32>(op + (<usize>i << 2), v);
    }
  }
}

/** Entry point of every job: runs kernel `kernel` for thread `tid` of `nth`. */
export function run(kernel: i32, tid: i32, nth: i32): void {
  switch (kernel) {
    case 1: matmul(tid, nth); break;
    case 2: attnForward(tid, nth); break;
    case 3: attnBackward(tid, nth); break;
    case 4: unaryK(tid, nth); break;
    case 5: binaryK(tid, nth); break;
    case 6: reduceK(tid, nth); break;
    case 7: softmaxK(tid, nth); break;
    case 8: layerNormK(tid, nth); break;
    case 9: layerNormBackK(tid, nth); break;
    case 10: geluBackK(tid, nth); break;
    case 11: crossEntropyK(tid, nth); break;
    case 12: crossEntropyBackK(tid, nth); break;
    case 13: stridedCopyK(tid, nth); break;
    case 14: whereK(tid, nth); break;
  }
}

// ---- math for the flex tile modules ------------------------------------------------------------------------------
// flex compiles score/mask functions to small wasm modules (core-tensor FlexKernelAttrs.tileWasm) that import these
// (wasm has no transcendental instructions); f32 like the WGSL target.
export function flexExp(x: f32): f32 { return Mathf.exp(x); }
export function flexLog(x: f32): f32 { return Mathf.log(x); }
export function flexTanh(x: f32): f32 { return Mathf.tanh(x); }
export function flexSin(x: f32): f32 { return Mathf.sin(x); }
export function flexCos(x: f32): f32 { return Mathf.cos(x); }
export function flexPow(x: f32, y: f32): f32 { return Mathf.pow(x, y); }
export function flexSign(x: f32): f32 { return x > 0 ? 1 : x < 0 ? -1 : x; }
