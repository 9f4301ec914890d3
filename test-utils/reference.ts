/**
 * A float64 attention written out in loops, independent of every webattn kernel and op: per sequence
 * of a packed batch, softmax(q·kᵀ·scale + mask)·v, with FlashAttention-2's bottom-right causal mask.
 */

/** Packed q `[totalQ, Hq, E]`, k `[totalK, Hkv, E]`, v `[totalK, Hkv, Ev]` (row-major values) → `[totalQ, Hq, Ev]`. */
export function packedAttentionReference(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dims: { Hq: number; Hkv: number; E: number; Ev: number },
  cuQ: ArrayLike<number>,
  cuK: ArrayLike<number>,
  opts: { causal?: boolean; scale?: number } = {},
): Float64Array {
  const { Hq, Hkv, E, Ev } = dims;
  const scale = opts.scale ?? 1 / Math.sqrt(E);
  const totalQ = cuQ[cuQ.length - 1]!;
  const out = new Float64Array(totalQ * Hq * Ev);
  for (let s = 0; s + 1 < cuQ.length; s++) {
    const q0 = cuQ[s]!;
    const lq = cuQ[s + 1]! - q0;
    const k0 = cuK[s]!;
    const lk = cuK[s + 1]! - k0;
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / (Hq / Hkv));
      for (let i = 0; i < lq; i++) {
        const sc: number[] = [];
        for (let j = 0; j < lk; j++) {
          if (opts.causal && j > i + lk - lq) {
            sc.push(-Infinity);
            continue;
          }
          let dot = 0;
          for (let e = 0; e < E; e++) dot += q[((q0 + i) * Hq + h) * E + e]! * k[((k0 + j) * Hkv + hk) * E + e]!;
          sc.push(dot * scale);
        }
        const m = Math.max(-Infinity, ...sc);
        if (m === -Infinity) continue; // no visible key: zeros
        const p = sc.map((x) => Math.exp(x - m));
        const z = p.reduce((a, b) => a + b, 0);
        for (let j = 0; j < lk; j++)
          for (let e = 0; e < Ev; e++) out[((q0 + i) * Hq + h) * Ev + e]! += (p[j]! / z) * v[((k0 + j) * Hkv + hk) * Ev + e]!;
      }
    }
  }
  return out;
}
