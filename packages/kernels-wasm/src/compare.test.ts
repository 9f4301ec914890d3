import * as T from '@webattn/core-tensor';
import { describe, expect, it } from 'vitest';
import './index.js';

// The wasm backend's comparison / logical kernel against the CPU reference backend (an independent implementation)
// on seeded random inputs: broadcasting, strided views, int32 / bool / float32 (NaN included).
describe('wasm comparisons and logical ops', () => {
  it('match the reference for every op, dtype and broadcast', async () => {
    const wasm = await T.getDevice({ kind: 'wasm', wasmThreads: 1 });
    const cpu = await T.getDevice({ kind: 'cpu' });
    const r = new T.Rng(5);
    try {
      const ints = (n: number) => Int32Array.from({ length: n }, () => Math.floor(r.next() * 5) - 2);
      const cases: { dtype: 'int32' | 'bool' | 'float32'; a: number[]; b: number[] }[] = [
        { dtype: 'int32', a: [3, 1, 5], b: [1, 4, 5] },
        { dtype: 'int32', a: [2, 3, 4], b: [4] },
        { dtype: 'bool', a: [4, 6], b: [4, 1] },
        { dtype: 'float32', a: [2, 7], b: [2, 7] },
      ];
      let checked = 0;
      for (const c of cases) {
        const na = c.a.reduce((p, d) => p * d, 1);
        const nb = c.b.reduce((p, d) => p * d, 1);
        const data = (n: number) => {
          if (c.dtype === 'bool') return Uint8Array.from(ints(n), (x) => (x > 0 ? 1 : 0));
          if (c.dtype === 'float32') return Float32Array.from(ints(n), (x) => (x === -2 ? NaN : x / 2));
          return ints(n);
        };
        const [da, db] = [data(na), data(nb)];
        for (const op of ['eq', 'ne', 'lt', 'le', 'gt', 'ge', ...(c.dtype === 'bool' ? ['and', 'or'] : [])]) {
          const on = (d: T.Device) => {
            const a = T.tensor(da, c.a, { dtype: c.dtype, device: d });
            const b = T.tensor(db, c.b, { dtype: c.dtype, device: d });
            return T.runKernel('binary', d, [a, b], { op, shape: T.broadcastShapes(a.shape, b.shape) })[0]!;
          };
          const got = on(wasm);
          expect(got.dtype).toBe('bool');
          expect(Array.from(await got.toArray()), `${op} ${c.dtype} ${c.a}|${c.b}`).toEqual(Array.from(await on(cpu).toArray()));
          checked++;
        }
      }
      // a transposed (strided) int32 view against a broadcast row
      const base = T.tensor(ints(12), [3, 4], { dtype: 'int32', device: wasm });
      const row = T.tensor(ints(3), [1, 3], { dtype: 'int32', device: wasm });
      const got = T.runKernel('binary', wasm, [base.transpose(0, 1), row], { op: 'le', shape: [4, 3] })[0]!;
      const bv = await base.toArray();
      const rv = await row.toArray();
      const want = Array.from({ length: 12 }, (_, i) => (bv[(i % 3) * 4 + Math.floor(i / 3)]! <= rv[i % 3]! ? 1 : 0));
      expect(Array.from(await got.toArray())).toEqual(want);
      expect(checked).toBe(6 * 4 + 2);
    } finally {
      wasm.destroy();
    }
  });
});
