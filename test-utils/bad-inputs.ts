/**
 * The bad-input table of the three attention front doors (SDPA, flex, varlen): every malformed call
 * must raise a `WebattnError` with a stable code naming the argument — at the call, or (for values
 * that live on the GPU) at the next read-back — never a silent result, a NaN, a TypeError or a hang.
 * `bad-input.test.ts` runs it on the CPU device, `bad-input.gpu.test.ts` on WebGPU.
 */
import { expect } from 'vitest';
import * as T from '@webattn/core-tensor';
import { WebattnError, type Device, type Tensor } from '@webattn/core-tensor';
import { scaledDotProductAttention } from '@webattn/kernels-webgpu';
import { createBlockMask, createMask, documentMask, documentScoreMod, flexAttention, maskMod, scoreMod, causalMask, relativePositionBias, alibi } from '@webattn/flex';
import { flashAttnVarlen } from '@webattn/varlen';

export interface BadInput {
  /** Front door and what is wrong. */
  name: string;
  door: 'sdpa' | 'flex' | 'varlen';
  /** Expected code and argument. */
  code: string;
  argument: string;
  /** Where it can run (default both). */
  only?: 'cpu' | 'webgpu';
  /**
   * Makes the call. A returned tensor (or promise of one) is read back: the error may surface there
   * (GPU-held values are checked on the GPU timeline).
   */
  call: (d: Device) => unknown;
}

const r = (shape: number[], d: Device, seed = 1, requiresGrad = false) => T.randn(shape, { seed, device: d, requiresGrad });
const qkv = (d: Device, shape = [1, 2, 8, 4]) => [r(shape, d, 1), r(shape, d, 2), r(shape, d, 3)] as const;
const packed = (d: Device, rows = 6) => [r([rows, 1, 4], d, 1), r([rows, 1, 4], d, 2), r([rows, 1, 4], d, 3)] as const;
const disposed = (d: Device) => {
  const t = r([1, 2, 8, 4], d, 9);
  t.dispose();
  return t;
};
const sdpa = (o: Record<string, unknown>) => (d: Device) => {
  const [q, k, v] = qkv(d);
  return scaledDotProductAttention(q, k, v, o as never);
};
const flex = (o: Record<string, unknown>) => (d: Device) => {
  const [q, k, v] = qkv(d);
  return flexAttention(q, k, v, o as never);
};
const varlen = (o: Record<string, unknown>) => (d: Device) => {
  const [q, k, v] = packed(d);
  return flashAttnVarlen(q, k, v, { cuSeqlensQ: [0, 2, 6], maxSeqlenQ: 4, ...o } as never);
};
/** cu_seqlens held on the device (a tensor) — checked by a kernel on WebGPU. */
const gpuCu = (vals: number[]) => (d: Device) => T.tensor(vals, [vals.length], { dtype: 'int32', device: d });
const varlenGpuCu = (cu: number[], max = 4) => (d: Device) => {
  const [q, k, v] = packed(d);
  return flashAttnVarlen(q, k, v, { cuSeqlensQ: gpuCu(cu)(d), maxSeqlenQ: max });
};

export const BAD_INPUTS: BadInput[] = [
  // ---- SDPA
  { name: "isCausal: 'false' (a string for a boolean)", door: 'sdpa', code: 'INVALID_ARGUMENT', argument: 'options.isCausal', call: sdpa({ isCausal: 'false' }) },
  { name: "enableGqa: 'true'", door: 'sdpa', code: 'INVALID_ARGUMENT', argument: 'options.enableGqa', call: sdpa({ enableGqa: 'true' }) },
  { name: 'scale NaN', door: 'sdpa', code: 'INVALID_ARGUMENT', argument: 'options.scale', call: sdpa({ scale: Number.NaN }) },
  { name: 'scale Infinity', door: 'sdpa', code: 'INVALID_ARGUMENT', argument: 'options.scale', call: sdpa({ scale: Infinity }) },
  { name: "scale '0.5'", door: 'sdpa', code: 'INVALID_ARGUMENT', argument: 'options.scale', call: sdpa({ scale: '0.5' }) },
  { name: 'dropoutP 1.5', door: 'sdpa', code: 'INVALID_ARGUMENT', argument: 'options.dropoutP', call: sdpa({ dropoutP: 1.5 }) },
  { name: "dropoutP '0.1'", door: 'sdpa', code: 'INVALID_ARGUMENT', argument: 'options.dropoutP', call: sdpa({ dropoutP: '0.1' }) },
  { name: 'dropoutSeed 1.5', door: 'sdpa', code: 'INVALID_ARGUMENT', argument: 'options.dropoutSeed', call: sdpa({ dropoutSeed: 1.5 }) },
  { name: "returnLse: 'yes'", door: 'sdpa', code: 'INVALID_ARGUMENT', argument: 'options.returnLse', call: sdpa({ returnLse: 'yes' }) },
  { name: 'misspelt option iscausal', door: 'sdpa', code: 'INVALID_ARGUMENT', argument: 'options.iscausal', call: sdpa({ iscausal: true }) },
  { name: 'attnMask an array', door: 'sdpa', code: 'INVALID_ARGUMENT', argument: 'options.attnMask', call: sdpa({ attnMask: [[true]] }) },
  {
    name: 'options not an object',
    door: 'sdpa',
    code: 'INVALID_ARGUMENT',
    argument: 'options',
    call: (d) => {
      const [q, k, v] = qkv(d);
      return scaledDotProductAttention(q, k, v, 5 as never);
    },
  },
  {
    name: 'E = 0 blames the query, not options.scale',
    door: 'sdpa',
    code: 'SHAPE_MISMATCH',
    argument: 'query',
    call: (d) => {
      const z = T.zeros([1, 1, 4, 0], { device: d });
      return scaledDotProductAttention(z, z, z);
    },
  },
  {
    name: 'a disposed query',
    door: 'sdpa',
    code: 'TENSOR_DISPOSED',
    argument: 'query',
    call: (d) => {
      const [, k, v] = qkv(d);
      return scaledDotProductAttention(disposed(d), k, v);
    },
  },
  {
    name: 'a disposed attnMask',
    door: 'sdpa',
    code: 'TENSOR_DISPOSED',
    argument: 'options.attnMask',
    call: (d) => {
      const m = T.ones([8, 8], { dtype: 'bool', device: d });
      m.dispose();
      return sdpa({ attnMask: m })(d);
    },
  },
  // ---- flex
  { name: 'scale NaN', door: 'flex', code: 'INVALID_ARGUMENT', argument: 'options.scale', call: flex({ scale: Number.NaN }) },
  { name: 'scale Infinity', door: 'flex', code: 'INVALID_ARGUMENT', argument: 'options.scale', call: flex({ scale: Infinity }) },
  { name: 'scale -Infinity', door: 'flex', code: 'INVALID_ARGUMENT', argument: 'options.scale', call: flex({ scale: -Infinity }) },
  { name: "enableGqa: 'false'", door: 'flex', code: 'INVALID_ARGUMENT', argument: 'options.enableGqa', call: flex({ enableGqa: 'false' }) },
  { name: "returnLse: 1", door: 'flex', code: 'INVALID_ARGUMENT', argument: 'options.returnLse', call: flex({ returnLse: 1 }) },
  { name: 'misspelt option score_mod', door: 'flex', code: 'INVALID_ARGUMENT', argument: 'options.score_mod', call: flex({ score_mod: (s: number) => s }) },
  { name: 'blockMask not a BlockMask', door: 'flex', code: 'INVALID_ARGUMENT', argument: 'options.blockMask', call: flex({ blockMask: { qLen: 8, kvLen: 8 } }) },
  { name: 'scoreMod a number', door: 'flex', code: 'FLEX_COMPILE', argument: 'options.scoreMod', call: flex({ scoreMod: 3 }) },
  {
    name: 'a disposed query (was a TypeError)',
    door: 'flex',
    code: 'TENSOR_DISPOSED',
    argument: 'query',
    call: (d) => {
      const [, k, v] = qkv(d);
      return flexAttention(disposed(d), k, v);
    },
  },
  {
    name: 'a disposed captured tensor',
    door: 'flex',
    code: 'TENSOR_DISPOSED',
    argument: 'options.scoreMod captures.bias',
    call: (d) => {
      const t = r([2, 15], d, 4);
      t.dispose();
      return flex({ scoreMod: relativePositionBias(t) })(d);
    },
  },
  {
    name: 'E = 0 blames the query, not options.scale',
    door: 'flex',
    code: 'SHAPE_MISMATCH',
    argument: 'query',
    call: (d) => {
      const z = T.zeros([1, 1, 4, 0], { device: d });
      return flexAttention(z, z, z);
    },
  },
  {
    name: 'captured-tensor index past the end (CPU: at the call; GPU: at read-back)',
    door: 'flex',
    code: 'INVALID_ARGUMENT',
    argument: 'options.scoreMod',
    // a table one column short of 2L − 1: q − kv + offset reaches 14 for L = 8
    call: (d) => flex({ scoreMod: scoreMod((s, b, h, q, kv, c) => s + c.bias[h][q - kv + c.offset], { bias: r([2, 14], d, 4), offset: 7 }) })(d),
  },
  {
    name: 'captured-tensor negative index',
    door: 'flex',
    code: 'INVALID_ARGUMENT',
    argument: 'options.scoreMod',
    call: (d) => flex({ scoreMod: scoreMod((s, b, h, q, kv, c) => s + c.w[q - kv], { w: r([8], d, 4) }) })(d),
  },
  {
    name: 'captured-tensor index out of range in a mask function',
    door: 'flex',
    code: 'INVALID_ARGUMENT',
    argument: 'mask',
    call: (d) => createBlockMask(maskMod((b, h, q, kv, c) => c.keep[q + kv] > 0, { keep: r([8], d, 4) }), null, null, 8, 8, { device: d, blockSize: 64 }),
  },
  {
    name: 'documentMask built for 20 tokens used at L=64',
    door: 'flex',
    code: 'SHAPE_MISMATCH',
    argument: 'mask',
    call: (d) => createBlockMask(documentMask([0, 12, 20], causalMask), null, null, 64, 64, { device: d, blockSize: 64 }),
  },
  {
    name: 'documentScoreMod built for 6 tokens used at L=8',
    door: 'flex',
    code: 'SHAPE_MISMATCH',
    argument: 'options.scoreMod',
    call: flex({ scoreMod: documentScoreMod([0, 3, 6], alibi(2)) }),
  },
  {
    name: 'createMask with a short documentMask',
    door: 'flex',
    code: 'SHAPE_MISMATCH',
    argument: 'mask',
    only: 'cpu',
    call: () => createMask(documentMask([0, 5]), 1, 1, 8, 8),
  },
  {
    name: 'createBlockMask H = null with an h-dependent mask',
    door: 'flex',
    code: 'INVALID_ARGUMENT',
    argument: 'H',
    call: (d) => createBlockMask((b, h, q, kv) => q >= kv + h, null, null, 70, 70, { device: d, blockSize: 64 }),
  },
  {
    name: 'createBlockMask B = null with a b-dependent mask',
    door: 'flex',
    code: 'INVALID_ARGUMENT',
    argument: 'B',
    call: (d) => createBlockMask((b, h, q, kv) => (b === 0 ? q >= kv : q <= kv), null, 2, 70, 70, { device: d, blockSize: 64 }),
  },
  {
    name: 'createBlockMask H = null with a mask reading a per-head table',
    door: 'flex',
    code: 'INVALID_ARGUMENT',
    argument: 'H',
    call: (d) => createBlockMask(maskMod((b, h, q, kv, c) => q - kv <= c.win[h], { win: T.tensor([2, 9], [2], { dtype: 'int32', device: d }) }), 1, null, 70, 70, { device: d, blockSize: 64 }),
  },
  { name: "createBlockMask blockSize '64'", door: 'flex', code: 'INVALID_ARGUMENT', argument: 'options.blockSize', call: (d) => createBlockMask(causalMask, null, null, 8, 8, { device: d, blockSize: '64' as never }) },
  { name: "createBlockMask B 'two'", door: 'flex', code: 'INVALID_ARGUMENT', argument: 'B', call: (d) => createBlockMask(causalMask, 'two' as never, null, 8, 8, { device: d }) },
  { name: 'createBlockMask device not a Device', door: 'flex', code: 'INVALID_ARGUMENT', argument: 'options.device', only: 'cpu', call: () => createBlockMask(causalMask, null, null, 8, 8, { device: 'webgpu' as never }) },
  { name: 'captures next to a ScoreMod (they would be ignored)', door: 'flex', code: 'INVALID_ARGUMENT', argument: 'options.captures', call: (d) => flex({ scoreMod: alibi(2), captures: { x: 1 } })(d) },
  { name: 'createBlockMask captures next to a MaskMod', door: 'flex', code: 'INVALID_ARGUMENT', argument: 'options.captures', only: 'cpu', call: () => createBlockMask(causalMask, null, null, 8, 8, { captures: { x: 1 } }) },
  { name: 'scoreMod captures not an object', door: 'flex', code: 'INVALID_ARGUMENT', argument: 'captures', call: () => scoreMod((s) => s, 5 as never) },
  {
    name: 'a closure capture under another name (what a minifier leaves)',
    door: 'flex',
    code: 'FLEX_COMPILE',
    argument: 'options.scoreMod',
    call: flex({ scoreMod: scoreMod(new Function('s', 'b', 'h', 'q', 'kv', 'return s + e') as never, { window: 3 }) }),
  },
  // ---- varlen
  { name: 'scale NaN', door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.scale', call: varlen({ scale: Number.NaN }) },
  { name: "causal: 'false'", door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.causal', call: varlen({ causal: 'false' }) },
  { name: "validate: 'no'", door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.validate', call: varlen({ validate: 'no' }) },
  { name: 'softcap -1', door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.softcap', call: varlen({ softcap: -1 }) },
  { name: 'softcap NaN', door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.softcap', call: varlen({ softcap: Number.NaN }) },
  { name: 'windowSize [1]', door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.windowSize', call: varlen({ windowSize: [1] }) },
  { name: "maxSeqlenQ '4'", door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.maxSeqlenQ', call: varlen({ maxSeqlenQ: '4' }) },
  { name: 'maxSeqlenQ missing', door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.maxSeqlenQ', call: varlen({ maxSeqlenQ: undefined }) },
  { name: 'misspelt option max_seqlen_q', door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.max_seqlen_q', call: varlen({ max_seqlen_q: 4 }) },
  { name: 'host cu_seqlens not starting at 0', door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.cuSeqlensQ', call: varlen({ cuSeqlensQ: [1, 2, 6] }) },
  { name: 'host cu_seqlens decreasing', door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.cuSeqlensQ', call: varlen({ cuSeqlensQ: [0, 4, 2, 6] }) },
  { name: 'host cu_seqlens last ≠ total rows', door: 'varlen', code: 'SHAPE_MISMATCH', argument: 'options.cuSeqlensQ', call: varlen({ cuSeqlensQ: [0, 2, 5] }) },
  { name: 'host maxSeqlenQ smaller than the longest sequence', door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.maxSeqlenQ', call: varlen({ cuSeqlensQ: [0, 1, 6] }) },
  { name: 'host cuSeqlensK with another batch', door: 'varlen', code: 'SHAPE_MISMATCH', argument: 'options.cuSeqlensK', call: varlen({ cuSeqlensK: [0, 6], maxSeqlenK: 6 }) },
  { name: 'GPU-held cu_seqlens not starting at 0', door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.cuSeqlensQ', only: 'webgpu', call: varlenGpuCu([1, 2, 6]) },
  { name: 'GPU-held cu_seqlens decreasing', door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.cuSeqlensQ', only: 'webgpu', call: varlenGpuCu([0, 4, 2, 6]) },
  { name: 'GPU-held cu_seqlens last ≠ total rows', door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.cuSeqlensQ', only: 'webgpu', call: varlenGpuCu([0, 2, 5]) },
  { name: 'GPU-held cu_seqlens, maxSeqlenQ too small', door: 'varlen', code: 'INVALID_ARGUMENT', argument: 'options.maxSeqlenQ', only: 'webgpu', call: varlenGpuCu([0, 1, 6], 4) },
  {
    name: 'E = 0 blames q, not options.scale',
    door: 'varlen',
    code: 'SHAPE_MISMATCH',
    argument: 'q',
    call: (d) => {
      const z = T.zeros([6, 1, 0], { device: d });
      return flashAttnVarlen(z, z, z, { cuSeqlensQ: [0, 6], maxSeqlenQ: 6 });
    },
  },
  {
    name: 'a disposed k',
    door: 'varlen',
    code: 'TENSOR_DISPOSED',
    argument: 'k',
    call: (d) => {
      const [q, k, v] = packed(d);
      k.dispose();
      return flashAttnVarlen(q, k, v, { cuSeqlensQ: [0, 6], maxSeqlenQ: 6 });
    },
  },
  {
    name: 'options missing',
    door: 'varlen',
    code: 'INVALID_ARGUMENT',
    argument: 'options',
    call: (d) => {
      const [q, k, v] = packed(d);
      return flashAttnVarlen(q, k, v, undefined as never);
    },
  },
];

/** Runs one case on `device` and asserts its code and argument (at the call, or at read-back). */
export async function expectBadInput(c: BadInput, device: Device): Promise<WebattnError> {
  let err: unknown = null;
  try {
    let out = c.call(device);
    if (out instanceof Promise) out = await out;
    const t = out instanceof T.Tensor ? out : out && typeof out === 'object' && 'output' in out ? (out as { output: Tensor }).output : null;
    if (t) await t.toArray();
    if (device.backend === 'webgpu') await (device as T.WebGPUDevice).sync();
  } catch (e) {
    err = e;
  }
  expect(err, `${c.door}: ${c.name} raised nothing`).toBeInstanceOf(WebattnError);
  const we = err as WebattnError;
  expect(we.code, `${c.door}: ${c.name}: ${we.message}`).toBe(c.code);
  expect(we.argument, `${c.door}: ${c.name}: ${we.message}`).toBe(c.argument);
  expect(we.message).toContain(c.argument);
  return we;
}
