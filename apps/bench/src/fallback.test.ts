import * as T from '@webattn/core-tensor';
import '@webattn/kernels-wasm';
import { describe, expect, it } from 'vitest';
import { describeFallbacks, installFallbackCensus, takeFallbacks } from './fallback.js';

describe('CPU fallback census', () => {
  it('counts reference kernels run on a wasm device (with op and dtype), not wasm kernels, not the CPU device', async () => {
    const device = await T.getDevice({ kind: 'wasm', wasmThreads: 1 });
    const cpu = await T.getDevice({ kind: 'cpu' });
    try {
      installFallbackCensus();
      installFallbackCensus(); // idempotent: one wrapper, one count per call
      takeFallbacks();
      // a strided bool copy: the wasm unary kernel takes float32 only, so the reference kernel runs it
      const m = T.tensor(Uint8Array.from([1, 0, 0, 1, 1, 0]), [2, 3], { dtype: 'bool', device }).transpose(0, 1).contiguous();
      expect(Array.from(await m.toArray())).toEqual([1, 1, 0, 1, 0, 0]); // the wrapped kernel still computes
      const x = T.randn([4, 4], { seed: 1, device });
      T.add(x, x).dispose(); // float32 add: the wasm kernel
      const c = T.tensor(Int32Array.from([1, 2]), [2], { dtype: 'int32', device: cpu });
      T.eq(c, c).dispose(); // on the CPU device: not a fallback
      T.eq(x, x).dispose(); // float32 comparison: the wasm backend's own (bool result)
      const f = takeFallbacks();
      expect(f.map((e) => [e.op, e.calls])).toEqual([['unary:identity(bool)', 1]]);
      expect(describeFallbacks(f)).toMatch(/^unary:identity\(bool\) ×1 \(\d+\.\d ms\)$/);
      expect(takeFallbacks()).toEqual([]);
    } finally {
      device.destroy();
    }
  });
});
