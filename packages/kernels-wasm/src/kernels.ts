/**
 * The wasm backend's kernels, registered under backend `wasm` of the core-tensor registry: `matmul` and the
 * attention generator's CPU twin (`flash_attention` forward, `flash_attention_backward`). The elementwise, reduction,
 * norm and loss kernels live in elementwise.ts; every other op runs the CPU reference kernels on the same typed-array
 * storages (`WasmDevice.kernelFallback`).
 */
import { fromTyped, getKernel, type FlashKernelAttrs, registerKernel, stridedOffsets, Tensor, WebattnError, type Device, type KernelAttrs } from '@webattn/core-tensor';
import type { WasmDevice } from './device.js';
import { attentionBackwardRaw, attentionForwardRaw, denseStrides, matmulRaw, packedStrides, type RawAttention } from './raw.js';

/** Attributes of the wasm attention kernels: core-tensor's shared flash kernel contract. */
export type WasmAttentionAttrs = FlashKernelAttrs;

/** The elements of a float32 tensor in row-major order (no copy when contiguous). */
function values(t: Tensor): Float32Array {
  const data = t.storage.cpu as Float32Array;
  if (t.isContiguous) return data.subarray(t.offset, t.offset + t.size);
  const offs = stridedOffsets(t);
  const out = new Float32Array(offs.length);
  for (let i = 0; i < offs.length; i++) out[i] = data[offs[i]!]!;
  return out;
}

function ints(t: Tensor): Int32Array {
  const data = t.storage.cpu as Int32Array;
  if (t.isContiguous) return data.subarray(t.offset, t.offset + t.size);
  const offs = stridedOffsets(t);
  return Int32Array.from(offs, (o) => data[o]!);
}

function poolOf(device: Device) {
  return (device as WasmDevice).pool;
}

function cpuFallback(name: 'matmul', inputs: readonly Tensor[], attrs: KernelAttrs, device: Device): Tensor | Tensor[] {
  return getKernel(name, 'cpu')!.fn(inputs, attrs, device);
}

registerKernel({
  name: 'matmul',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const [a, b] = inputs as [Tensor, Tensor];
    if (a.dtype !== 'float32') return cpuFallback('matmul', inputs, attrs, device);
    const rank = a.rank;
    const batchShape = a.shape.slice(0, -2);
    const [M, K] = a.shape.slice(-2) as [number, number];
    const N = b.shape[rank - 1]!;
    const batch = batchShape.reduce((p, d) => p * d, 1);
    // a right operand broadcast over every batch dim (a weight matrix) is sent once
    const shared = batch > 1 && b.strides.slice(0, -2).every((s) => s === 0);
    const bm = shared ? new Tensor(b.storage, [K, N], b.strides.slice(-2), b.offset) : b;
    const c = matmulRaw(poolOf(device), values(a), values(bm), batch, M, N, K, shared);
    return fromTyped(c, [...batchShape, M, N], 'float32', device);
  },
});

interface Prepared {
  raw: RawAttention;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  oShape: number[];
  lseShape: number[];
}

function prepare(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | null, cuQ: Tensor | null, cuK: Tensor | null, a: WasmAttentionAttrs): Prepared {
  for (const [t, n] of [[q, 'query'], [k, 'key'], [v, 'value']] as const) {
    if (t.dtype !== 'float32') {
      throw new WebattnError('DTYPE_UNSUPPORTED', `${n}: the wasm attention kernels take float32, got ${t.dtype}`, { argument: n });
    }
  }
  let raw: RawAttention;
  let oShape: number[];
  let lseShape: number[];
  if (a.varlen) {
    const [TQ, Hq, E] = q.shape as [number, number, number];
    const [, Hkv] = k.shape as [number, number, number];
    const Ev = v.shape[2]!;
    const cq = ints(cuQ!);
    const ck = ints(cuK!);
    const B = cq.length - 1;
    const qLen = new Int32Array(B);
    const kLen = new Int32Array(B);
    for (let b = 0; b < B; b++) {
      qLen[b] = cq[b + 1]! - cq[b]!;
      kLen[b] = ck[b + 1]! - ck[b]!;
    }
    raw = {
      B, Hq, Hkv, E, Ev, qLen, qStart: cq.slice(0, B), kLen, kStart: ck.slice(0, B),
      strides: { q: packedStrides(Hq, E), k: packedStrides(Hkv, E), v: packedStrides(Hkv, Ev), o: packedStrides(Hq, Ev) },
      oSize: TQ * Hq * Ev, lseBatch: 0, lseHead: TQ, lseSize: Hq * TQ,
      causalOffset: a.causal ? Int32Array.from(qLen, (l, b) => kLen[b]! - l) : null,
      scale: a.scale, mask: null,
    };
    oShape = [TQ, Hq, Ev];
    lseShape = [Hq, TQ];
  } else {
    const [B, Hq, Lq, E] = q.shape as [number, number, number, number];
    const [, Hkv, Lk] = k.shape as [number, number, number, number];
    const Ev = v.shape[3]!;
    let m: RawAttention['mask'] = null;
    if (mask) {
      const full = [B, Hq, Lq, Lk];
      const data = values(mask.contiguous());
      const add = a.maskKind === 'bool' ? Float32Array.from(data, (x) => (x ? 0 : -Infinity)) : data;
      // strides of the contiguous mask, 0 where it broadcasts
      const st: number[] = [];
      let acc = 1;
      for (let d = 3; d >= 0; d--) {
        st[d] = mask.shape[d] === 1 && full[d] !== 1 ? 0 : acc;
        acc *= mask.shape[d]!;
      }
      m = { data: add, strides: st as unknown as [number, number, number, number] };
    }
    raw = {
      B, Hq, Hkv, E, Ev,
      qLen: new Int32Array(B).fill(Lq), qStart: new Int32Array(B), kLen: new Int32Array(B).fill(Lk), kStart: new Int32Array(B),
      strides: { q: denseStrides(Hq, Lq, E), k: denseStrides(Hkv, Lk, E), v: denseStrides(Hkv, Lk, Ev), o: denseStrides(Hq, Lq, Ev) },
      oSize: B * Hq * Lq * Ev, lseBatch: Hq * Lq, lseHead: Lq, lseSize: B * Hq * Lq,
      causalOffset: a.causal ? new Int32Array(B).fill(a.causalOffset) : null,
      scale: a.scale, mask: m,
    };
    oShape = [B, Hq, Lq, Ev];
    lseShape = [B, Hq, Lq];
  }
  return { raw, q: values(q), k: values(k), v: values(v), oShape, lseShape };
}

function split(inputs: readonly Tensor[], first: number, a: WasmAttentionAttrs): { mask: Tensor | null; cuQ: Tensor | null; cuK: Tensor | null } {
  let i = first;
  const mask = a.maskKind ? inputs[i++]! : null;
  const cuQ = a.varlen ? inputs[i++]! : null;
  const cuK = a.varlen ? inputs[i++]! : null;
  return { mask, cuQ, cuK };
}

registerKernel({
  name: 'flash_attention',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const a = attrs as unknown as WasmAttentionAttrs;
    const [q, k, v] = inputs as [Tensor, Tensor, Tensor];
    const { mask, cuQ, cuK } = split(inputs, 3, a);
    const p = prepare(q, k, v, mask, cuQ, cuK, a);
    const { out, lse } = attentionForwardRaw(poolOf(device), p.raw, p.q, p.k, p.v);
    return [fromTyped(out, p.oShape, 'float32', device), fromTyped(lse, p.lseShape, 'float32', device)];
  },
});

registerKernel({
  name: 'flash_attention_backward',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const a = attrs as unknown as WasmAttentionAttrs;
    const [q, k, v, out, dout, lse] = inputs as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
    const { mask, cuQ, cuK } = split(inputs, 6, a);
    const p = prepare(q, k, v, mask, cuQ, cuK, a);
    const o = values(out);
    const g = values(dout);
    const l = values(lse);
    // delta = rowsum(dout ∘ out), laid out like lse
    const r = p.raw;
    const delta = new Float32Array(r.lseSize);
    for (let b = 0; b < r.B; b++) {
      for (let h = 0; h < r.Hq; h++) {
        for (let i = 0; i < r.qLen[b]!; i++) {
          const oi = b * r.strides.o.batch + (r.qStart[b]! + i) * r.strides.o.row + h * r.strides.o.head;
          let s = 0;
          for (let e = 0; e < r.Ev; e++) s += o[oi + e]! * g[oi + e]!;
          delta[b * r.lseBatch + h * r.lseHead + r.qStart[b]! + i] = s;
        }
      }
    }
    const { dq, dk, dv } = attentionBackwardRaw(poolOf(device), r, p.q, p.k, p.v, g, l, delta);
    return [fromTyped(dq, q.shape, 'float32', device), fromTyped(dk, k.shape, 'float32', device), fromTyped(dv, v.shape, 'float32', device)];
  },
});
