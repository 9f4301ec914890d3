/**
 * The wasm backend's kernels, registered under backend `wasm` of the core-tensor registry: `matmul` and the
 * attention generator's CPU twin (`flash_attention` forward, `flash_attention_backward`). The elementwise, reduction,
 * norm and loss kernels live in elementwise.ts; every other op runs the CPU reference kernels on the same typed-array
 * storages (`WasmDevice.kernelFallback`).
 */
import { fromTyped, getKernel, type FlashKernelAttrs, type FlexKernelAttrs, registerKernel, stridedOffsets, Tensor, WebattnError, type Device, type KernelAttrs } from '@webattn/core-tensor';
import type { WasmDevice } from './device.js';
import { attentionBackwardRaw, attentionForwardRaw, denseStrides, matmulRaw, packedStrides, type RawAttention, type RawFlex } from './raw.js';

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

/** The flash backward of prepared inputs: delta = rowsum(dout ∘ out) in the lse layout, then the wasm kernel. */
function backwardOn(device: Device, p: Prepared, out: Tensor, dout: Tensor, lse: Tensor) {
  const o = values(out);
  const g = values(dout);
  const l = values(lse);
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
  return attentionBackwardRaw(poolOf(device), r, p.q, p.k, p.v, g, l, delta);
}

registerKernel({
  name: 'flash_attention_backward',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const a = attrs as unknown as WasmAttentionAttrs;
    const [q, k, v, out, dout, lse] = inputs as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
    const { mask, cuQ, cuK } = split(inputs, 6, a);
    const p = prepare(q, k, v, mask, cuQ, cuK, a);
    const { dq, dk, dv } = backwardOn(device, p, out, dout, lse);
    return [fromTyped(dq, q.shape, 'float32', device), fromTyped(dk, k.shape, 'float32', device), fromTyped(dv, v.shape, 'float32', device)];
  },
});

// ---- flex: score/mask functions and block-sparse masks inside the flash kernels ---------------------------------

/** The block classes `[B, H, nQ, nKv]` (0 empty, 1 partial, 2 full) of torch-style q-major block tables. */
function blockClasses(b: NonNullable<FlexKernelAttrs['blocks']>): Uint8Array {
  const { numQBlocks: nq, numKvBlocks: nk } = b;
  const cls = new Uint8Array(b.B * b.H * nq * nk);
  for (let row = 0; row < b.B * b.H * nq; row++) {
    const put = (num: Int32Array, idx: Int32Array, c: number) => {
      const n = num[row]!;
      if (!(n >= 0 && n <= nk)) throw new WebattnError('INVALID_ARGUMENT', `blocks: a block count of ${n} outside [0, ${nk}]`, { argument: 'blocks' });
      for (let i = 0; i < n; i++) {
        const kb = idx[row * nk + i]!;
        if (!(kb >= 0 && kb < nk)) throw new WebattnError('INVALID_ARGUMENT', `blocks: a key block index ${kb} outside [0, ${nk})`, { argument: 'blocks' });
        cls[row * nk + kb] = c;
      }
    };
    put(b.kvNumBlocks, b.kvIndices, 1);
    put(b.fullKvNumBlocks, b.fullKvIndices, 2);
  }
  return cls;
}

const classCache = new WeakMap<Int32Array, Uint8Array>();

function rawFlex(a: FlexKernelAttrs, captured: readonly Tensor[], withGrads: boolean): RawFlex {
  if (a.causal || a.maskKind || a.varlen) {
    throw new WebattnError('INVALID_ARGUMENT', `${a.argument}: the wasm flex kernel takes the dense layout without causal or mask inputs`, { argument: a.argument });
  }
  const tensors = captured.map((t, i) => {
    if (t.dtype === 'float32') return values(t);
    if (t.dtype === 'int32') return ints(t);
    throw new WebattnError('DTYPE_UNSUPPORTED', `${a.argument}: captured tensor ${i} must be float32 or int32 here, got ${t.dtype}`, { argument: a.argument });
  });
  let blocks: RawFlex['blocks'] = null;
  if (a.blocks) {
    let classes = classCache.get(a.blocks.kvIndices);
    if (!classes) classCache.set(a.blocks.kvIndices, (classes = blockClasses(a.blocks)));
    blocks = { B: a.blocks.B, H: a.blocks.H, blockSize: a.blocks.blockSize, nQ: a.blocks.numQBlocks, nKv: a.blocks.numKvBlocks, classes };
  }
  return {
    source: a.tileSource,
    wasm: a.tileWasm ?? null,
    score: a.scoreMod,
    mask: a.maskMod,
    numbers: a.numbers,
    tensors,
    gradSizes: withGrads ? a.gradSlots.map((s) => captured[s]!.size) : [],
    blocks,
  };
}

function outOfBounds(a: FlexKernelAttrs): never {
  throw new WebattnError('INVALID_ARGUMENT', `${a.argument}: a captured tensor was indexed outside its shape`, { argument: a.argument });
}

registerKernel({
  name: 'flex_attention',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const a = attrs as unknown as FlexKernelAttrs;
    const [q, k, v] = inputs as [Tensor, Tensor, Tensor];
    const p = prepare(q, k, v, null, null, null, { ...a, causal: false, maskKind: null, varlen: false });
    p.raw.flex = rawFlex(a, inputs.slice(3, 3 + a.tensors), false);
    const { out, lse, flex } = attentionForwardRaw(poolOf(device), p.raw, p.q, p.k, p.v);
    if (flex.outOfBounds) outOfBounds(a);
    return [fromTyped(out, p.oShape, 'float32', device), fromTyped(lse, p.lseShape, 'float32', device)];
  },
});

registerKernel({
  name: 'flex_attention_backward',
  backend: 'wasm',
  fn: (inputs, attrs, device) => {
    const a = attrs as unknown as FlexKernelAttrs;
    const [q, k, v, out, dout, lse] = inputs as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
    const captured = inputs.slice(6, 6 + a.tensors);
    const p = prepare(q, k, v, null, null, null, { ...a, causal: false, maskKind: null, varlen: false });
    p.raw.flex = rawFlex(a, captured, true);
    const r = backwardOn(device, p, out, dout, lse);
    if (r.flex.outOfBounds) outOfBounds(a);
    return [
      fromTyped(r.dq, q.shape, 'float32', device),
      fromTyped(r.dk, k.shape, 'float32', device),
      fromTyped(r.dv, v.shape, 'float32', device),
      ...a.gradSlots.map((s, i) => fromTyped(r.grads[i]!, captured[s]!.shape, 'float32', device)),
    ];
  },
});
