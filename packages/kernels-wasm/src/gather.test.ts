import * as T from '@webattn/core-tensor';
import { describe, expect, it } from 'vitest';
import { denseOf } from './gather.js';
import './index.js';

describe('denseOf (row-major copies of strided views)', () => {
  it('matches the index formula for a permuted view, a chunk of a fused projection and a column slice', async () => {
    const device = await T.getDevice({ kind: 'wasm', wasmThreads: 1 });
    try {
      const base = T.randn([2, 5, 3, 8], { seed: 11, device });
      const src = await base.toArray();
      // permute [B, L, H, E] → [B, H, L, E]: element (b, h, l, e) is src[((b·5 + l)·3 + h)·8 + e]
      const p = base.permute([0, 2, 1, 3]);
      expect(p.isContiguous).toBe(false);
      const got = denseOf<Float32Array>(p);
      for (let b = 0; b < 2; b++) for (let h = 0; h < 3; h++) for (let l = 0; l < 5; l++) for (let e = 0; e < 8; e++) {
        expect(got[((b * 3 + h) * 5 + l) * 8 + e]).toBe(src[((b * 5 + l) * 3 + h) * 8 + e]);
      }
      // the middle third of a [4, 24] projection's last dim (inner rows of 8 at stride 24, offset 8)
      const qkv = T.randn([4, 24], { seed: 12, device });
      const all = await qkv.toArray();
      const k = qkv.slice(1, 8, 16);
      const gk = denseOf<Float32Array>(k);
      for (let r = 0; r < 4; r++) for (let e = 0; e < 8; e++) expect(gk[r * 8 + e]).toBe(all[r * 24 + 8 + e]);
      // a transposed 2-d view: last-dim stride ≠ 1 takes the element path
      const t = qkv.transpose(0, 1);
      const gt = denseOf<Float32Array>(t);
      for (let i = 0; i < 24; i++) for (let j = 0; j < 4; j++) expect(gt[i * 4 + j]).toBe(all[j * 24 + i]);
      // contiguous: a view of the storage, no copy
      expect(denseOf<Float32Array>(base).buffer).toBe((base.storage.cpu as Float32Array).buffer);
    } finally {
      device.destroy();
    }
  });
});
