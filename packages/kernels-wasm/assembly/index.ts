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

// args: I0 B, I1 Hq, I2 G, I3 E, I4 Ev, I5 q, I6 k, I7 v, I8 o, I9 lse, I10..I17 head/row strides of q,k,v,o,
// I18 qStart, I19 qLen, I20 kStart, I21 kLen, I22 cOff (int32 arrays of B), I23 lse batch stride, I24 lse head
// stride, I25 causal, I26 mask ptr (0 = none), I27..I30 mask strides, I31 scratch base, I32 scratch bytes per thread,
// I33 dout, I34 delta, I35 dq, I36 dk, I37 dv (backward; dq/dk/dv laid out like q/k/v, dout like o),
// I38..I41 batch strides of q, k, v, o; F0 scale
function readAttn(tid: i32): void {
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

// scores S[rows×cols] of query rows i0.. against keys j0..: S = scale·Q·Kᵀ + mask, −∞ where causal hides the key.
// kt: Kᵀ of those keys (E rows, leading dim ldkt), transposed by the caller once for every query block.
// S has leading dim BC.
function scores(b: i32, h: i32, i0: i32, rows: i32, j0: i32, cols: i32, S: usize, kt: usize, ldkt: i32): void {
  const qb = aq + rowAddr(b, qbs, qStart, i0, qrs, h, qhs);
  gemm(rows, cols, aE, qb, qrs, kt, ldkt, S, BC, scale, 0);
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
      scores(b, h, i0, rows, j0, cols, S, kt + (<usize>j0 << 2), ldk);
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
          scores(b, h, i0, rows, j0, cols, S, kt, BC);
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
  const backward = 2 * BR * BC + E * BC + Ev * BC + BC * BR;
  return 4 * max(forward, backward) + 64;
}

/** Scratch bytes one thread needs for matmul. */
export function matmulScratchBytes(): i32 {
  return 4 * KB * NB;
}

/** Entry point of every job: runs kernel `kernel` for thread `tid` of `nth`. */
export function run(kernel: i32, tid: i32, nth: i32): void {
  if (kernel == 1) matmul(tid, nth);
  else if (kernel == 2) attnForward(tid, nth);
  else if (kernel == 3) attnBackward(tid, nth);
}
