/**
 * Row-major copies of strided views (a transposed `[B, L, H, E]` → `[B, H, L, E]`, a q/k/v chunk of a fused
 * projection). A view whose last dim is contiguous is copied a row at a time with `TypedArray.set` (a memcpy), not
 * element by element through an offset table: on typed arrays over the shared linear memory the per-element path
 * cost ~50 ms for 262k elements on the 2-core bench machine, as much as the attention kernel it fed.
 */
import { stridedOffsets, type Tensor } from '@webattn/core-tensor';

type Dense = Float32Array | Int32Array | Uint8Array;

/** The elements of `t` (float32 / int32 / bool storage) in row-major order; no copy when contiguous. */
export function denseOf<A extends Dense>(t: Tensor): A {
  const data = t.storage.cpu as A;
  if (t.isContiguous) return data.subarray(t.offset, t.offset + t.size) as A;
  const ctor = data.constructor as { new (n: number): A };
  const out = new ctor(t.size);
  const r = t.rank;
  const inner = t.shape[r - 1]!;
  if (t.size === 0) return out;
  if (t.strides[r - 1] !== 1 || inner < 4) {
    const offs = stridedOffsets(t);
    for (let i = 0; i < offs.length; i++) out[i] = data[offs[i]!]!;
    return out;
  }
  const shape = t.shape;
  const st = t.strides;
  const idx = new Array<number>(r - 1).fill(0);
  const rows = t.size / inner;
  let off = t.offset;
  for (let row = 0; row < rows; row++) {
    out.set(data.subarray(off, off + inner), row * inner);
    for (let d = r - 2; d >= 0; d--) {
      idx[d]!++;
      off += st[d]!;
      if (idx[d]! < shape[d]!) break;
      off -= st[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}
