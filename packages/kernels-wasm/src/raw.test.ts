import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '@webattn/core-tensor';
import { WasmPool } from './pool.js';
import { attentionBackwardRaw, attentionForwardRaw, denseStrides, matmulRaw, packedStrides, type RawAttention } from './raw.js';

// Oracle: float64 attention written out plainly (softmax of masked scores, then the analytic gradients).
interface Ref {
  out: Float64Array;
  lse: Float64Array;
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
}
function reference(p: RawAttention, q: Float32Array, k: Float32Array, v: Float32Array, dout: Float32Array): Ref {
  const out = new Float64Array(p.oSize);
  const lse = new Float64Array(p.lseSize);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const s = p.strides;
  const at = (st: typeof s.q, start: Int32Array, b: number, h: number, i: number) => b * st.batch + (start[b]! + i) * st.row + h * st.head;
  for (let b = 0; b < p.B; b++) {
    for (let h = 0; h < p.Hq; h++) {
      const hk = Math.floor(h / (p.Hq / p.Hkv));
      const lq = p.qLen[b]!;
      const lk = p.kLen[b]!;
      for (let i = 0; i < lq; i++) {
        const sc = new Float64Array(lk);
        let m = -Infinity;
        for (let j = 0; j < lk; j++) {
          let d = 0;
          for (let e = 0; e < p.E; e++) d += q[at(s.q, p.qStart, b, h, i) + e]! * k[at(s.k, p.kStart, b, hk, j) + e]!;
          d *= p.scale;
          if (p.mask) {
            const ms = p.mask.strides;
            d += p.mask.data[b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3]]!;
          }
          if (p.causalOffset && j > i + p.causalOffset[b]!) d = -Infinity;
          sc[j] = d;
          m = Math.max(m, d);
        }
        const li = b * p.lseBatch + h * p.lseHead + p.qStart[b]! + i;
        const oi = at(s.o, p.qStart, b, h, i);
        if (m === -Infinity) {
          lse[li] = -Infinity;
          continue;
        }
        let l = 0;
        for (let j = 0; j < lk; j++) l += Math.exp(sc[j]! - m);
        lse[li] = m + Math.log(l);
        const P = sc.map((x) => Math.exp(x - m) / l);
        for (let e = 0; e < p.Ev; e++) {
          let acc = 0;
          for (let j = 0; j < lk; j++) acc += P[j]! * v[at(s.v, p.kStart, b, hk, j) + e]!;
          out[oi + e] = acc;
        }
        // backward: dP_j = dO·v_j; dS_j = P_j (dP_j − Σ P dP); dq += scale dS_j k_j; dk_j += scale dS_j q; dv_j += P_j dO
        const dP = new Float64Array(lk);
        let sum = 0;
        for (let j = 0; j < lk; j++) {
          let d = 0;
          for (let e = 0; e < p.Ev; e++) d += dout[oi + e]! * v[at(s.v, p.kStart, b, hk, j) + e]!;
          dP[j] = d;
          sum += P[j]! * d;
        }
        for (let j = 0; j < lk; j++) {
          const dS = P[j]! * (dP[j]! - sum) * p.scale;
          const qi = at(s.q, p.qStart, b, h, i);
          const kj = at(s.k, p.kStart, b, hk, j);
          const vj = at(s.v, p.kStart, b, hk, j);
          for (let e = 0; e < p.E; e++) {
            dq[qi + e] += dS * k[kj + e]!;
            dk[kj + e] += dS * q[qi + e]!;
          }
          for (let e = 0; e < p.Ev; e++) dv[vj + e] += P[j]! * dout[oi + e]!;
        }
      }
    }
  }
  return { out, lse, dq, dk, dv };
}

function randArray(n: number, seed: number, scale = 1): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal() * scale);
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number, label: string): void {
  expect(actual.length, label).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (a === e) continue;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) expect.fail(`${label}[${i}]: ${a} vs ${e}`);
  }
}

/** delta = rowsum(dout ∘ out), laid out like lse. */
function deltaOf(p: RawAttention, out: ArrayLike<number>, dout: Float32Array): Float32Array {
  const d = new Float32Array(p.lseSize);
  for (let b = 0; b < p.B; b++) {
    for (let h = 0; h < p.Hq; h++) {
      for (let i = 0; i < p.qLen[b]!; i++) {
        const oi = b * p.strides.o.batch + (p.qStart[b]! + i) * p.strides.o.row + h * p.strides.o.head;
        let s = 0;
        for (let e = 0; e < p.Ev; e++) s += out[oi + e]! * dout[oi + e]!;
        d[b * p.lseBatch + h * p.lseHead + p.qStart[b]! + i] = s;
      }
    }
  }
  return d;
}

function dense(B: number, Hq: number, Hkv: number, Lq: number, Lk: number, E: number, Ev: number, opts: Partial<RawAttention> = {}): RawAttention {
  return {
    B, Hq, Hkv, E, Ev,
    qLen: new Int32Array(B).fill(Lq), qStart: new Int32Array(B), kLen: new Int32Array(B).fill(Lk), kStart: new Int32Array(B),
    strides: { q: denseStrides(Hq, Lq, E), k: denseStrides(Hkv, Lk, E), v: denseStrides(Hkv, Lk, Ev), o: denseStrides(Hq, Lq, Ev) },
    oSize: B * Hq * Lq * Ev, lseBatch: Hq * Lq, lseHead: Lq, lseSize: B * Hq * Lq,
    causalOffset: null, scale: 1 / Math.sqrt(E), mask: null,
    ...opts,
  };
}

function sizes(p: RawAttention): { q: number; k: number; v: number } {
  const tq = p.qStart[p.B - 1]! + p.qLen[p.B - 1]!;
  const tk = p.kStart[p.B - 1]! + p.kLen[p.B - 1]!;
  const dense = p.strides.q.batch !== 0;
  if (dense) return { q: p.B * p.strides.q.batch, k: p.B * p.strides.k.batch, v: p.B * p.strides.v.batch };
  return { q: tq * p.Hq * p.E, k: tk * p.Hkv * p.E, v: tk * p.Hkv * p.Ev };
}

function check(pool: WasmPool, p: RawAttention, seed: number, label: string, qScale = 1): void {
  const n = sizes(p);
  const q = randArray(n.q, seed, qScale);
  const k = randArray(n.k, seed + 1);
  const v = randArray(n.v, seed + 2);
  const dout = randArray(p.oSize, seed + 3);
  const ref = reference(p, q, k, v, dout);
  const { out, lse } = attentionForwardRaw(pool, p, q, k, v);
  expectClose(out, ref.out, 2e-5, 2e-4, `${label} out`);
  expectClose(lse, ref.lse, 2e-5, 2e-5, `${label} lse`);
  const g = attentionBackwardRaw(pool, p, q, k, v, dout, lse, deltaOf(p, out, dout));
  expectClose(g.dq, ref.dq, 5e-5, 5e-4, `${label} dq`);
  expectClose(g.dk, ref.dk, 5e-5, 5e-4, `${label} dk`);
  expectClose(g.dv, ref.dv, 5e-5, 5e-4, `${label} dv`);
}

for (const threads of [1, 2]) {
  describe(`wasm kernels on ${threads} thread(s) vs float64`, () => {
    let pool: WasmPool;
    beforeAll(async () => {
      pool = await WasmPool.create({ threads });
      expect(pool.threads).toBe(threads);
    });
    afterAll(() => pool.destroy());

    it('matmul: odd sizes, batches, shared right operand, K past one block', () => {
      for (const [batch, M, N, K, shared] of [[1, 1, 1, 1, false], [3, 5, 13, 7, false], [2, 67, 131, 300, true], [1, 64, 128, 513, false]] as const) {
        const a = randArray(batch * M * K, 11 + M);
        const b = randArray((shared ? 1 : batch) * K * N, 12 + N);
        const c = matmulRaw(pool, a, b, batch, M, N, K, shared);
        const ref = new Float64Array(batch * M * N);
        for (let p = 0; p < batch; p++)
          for (let i = 0; i < M; i++)
            for (let j = 0; j < N; j++) {
              let s = 0;
              for (let t = 0; t < K; t++) s += a[(p * M + i) * K + t]! * b[(shared ? 0 : p * K * N) + t * N + j]!;
              ref[(p * M + i) * N + j] = s;
            }
        expectClose(c, ref, 1e-4, 1e-4, `matmul ${batch}x${M}x${N}x${K}`);
      }
    });

    it('attention: plain, Lq ≠ Lkv, E ≠ Ev, several blocks', () => {
      check(pool, dense(2, 3, 3, 37, 70, 16, 24), 1, 'plain');
      check(pool, dense(1, 2, 2, 130, 129, 8, 8), 2, 'blocks');
    });

    it('attention: causal top-left (Lq < Lkv and Lq > Lkv) with GQA', () => {
      check(pool, dense(1, 4, 2, 40, 90, 16, 16, { causalOffset: new Int32Array([0]) }), 3, 'causal lq<lk');
      check(pool, dense(2, 4, 1, 90, 40, 16, 8, { causalOffset: new Int32Array([0, 0]) }), 4, 'causal lq>lk (rows past the keys fully masked)');
    });

    it('attention: additive mask broadcast over heads, fully masked rows give 0 and lse −∞, large scores', () => {
      const B = 2, H = 2, Lq = 33, Lk = 47;
      const data = new Float32Array(B * Lq * Lk);
      const r = new Rng(9);
      for (let i = 0; i < data.length; i++) data[i] = r.next() < 0.3 ? -Infinity : r.normal();
      for (let j = 0; j < Lk; j++) data[5 * Lk + j] = -Infinity; // row 5 of batch 0 sees nothing
      const p = dense(B, H, H, Lq, Lk, 16, 16, { mask: { data, strides: [Lq * Lk, 0, Lk, 1] } });
      check(pool, p, 5, 'mask');
      const q = randArray(B * H * Lq * 16, 6);
      const { out, lse } = attentionForwardRaw(pool, p, q, randArray(B * H * Lk * 16, 7), randArray(B * H * Lk * 16, 8));
      for (const h of [0, 1]) {
        expect(lse[h * Lq + 5]).toBe(-Infinity);
        for (let e = 0; e < 16; e++) expect(out[(h * Lq + 5) * 16 + e]).toBe(0);
      }
      check(pool, dense(1, 2, 2, 20, 30, 16, 16), 10, 'large scores', 40);
    });

    it('attention: packed varlen layout (cu_seqlens), bottom-right causal per sequence', () => {
      const lq = [5, 1, 70, 33];
      const lk = [9, 1, 70, 40];
      const cu = (ls: number[]) => Int32Array.from(ls.reduce<number[]>((a, l) => [...a, a[a.length - 1]! + l], [0]).slice(0, -1));
      const Hq = 4, Hkv = 2, E = 16, Ev = 8;
      const TQ = lq.reduce((a, b) => a + b);
      const p: RawAttention = {
        B: 4, Hq, Hkv, E, Ev,
        qLen: Int32Array.from(lq), qStart: cu(lq), kLen: Int32Array.from(lk), kStart: cu(lk),
        strides: { q: packedStrides(Hq, E), k: packedStrides(Hkv, E), v: packedStrides(Hkv, Ev), o: packedStrides(Hq, Ev) },
        oSize: TQ * Hq * Ev, lseBatch: 0, lseHead: TQ, lseSize: Hq * TQ,
        causalOffset: Int32Array.from(lq.map((l, b) => lk[b]! - l)), scale: 0.3, mask: null,
      };
      check(pool, p, 11, 'varlen');
    });

    it('attention: NaN in a query row propagates to that row only', () => {
      const p = dense(1, 1, 1, 8, 8, 4, 4);
      const q = randArray(32, 12);
      q[4 * 3 + 1] = NaN;
      const { out } = attentionForwardRaw(pool, p, q, randArray(32, 13), randArray(32, 14));
      for (let i = 0; i < 8; i++) for (let e = 0; e < 4; e++) expect(Number.isNaN(out[i * 4 + e]!), `row ${i}`).toBe(i === 3);
    });
  });
}
