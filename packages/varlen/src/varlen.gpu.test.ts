import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from '@webattn/kernels-webgpu';
import { scaledDotProductAttention } from '@webattn/kernels-webgpu';
import { setFlashBackwardPath, setFlashStaging } from '@webattn/kernels-webgpu/internal';
import { BlockDiagonalMask, cuSeqlens, flashAttnVarlen, type FlashAttnVarlenOptions } from './index.js';
import { expectClose, gpuDevice } from '../../../test-utils/index.js';
import { fixtureCases, toTensor } from '../../../test-utils/fixtures.js';
import { packedAttentionReference } from '../../../test-utils/reference.js';

let gpu: WebGPUDevice;
const cpu = T.cpu();
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

interface Cfg {
  name: string;
  lq: number[];
  lk?: number[];
  Hq: number;
  Hkv: number;
  E: number;
  Ev?: number;
  opts?: Partial<FlashAttnVarlenOptions>;
  /** Pass cu_seqlens as int32 tensors on the device (the tile map is then built by a GPU kernel). */
  held?: boolean;
}

async function runCfg(c: Cfg, device: T.Device, dtype: T.DType) {
  const lk = c.lk ?? c.lq;
  const cuQ = cuSeqlens(c.lq);
  const cuK = cuSeqlens(lk);
  const Ev = c.Ev ?? c.E;
  const q = T.randn([cuQ[cuQ.length - 1]!, c.Hq, c.E], { seed: 11, device, dtype, requiresGrad: true });
  const k = T.randn([cuK[cuK.length - 1]!, c.Hkv, c.E], { seed: 12, device, dtype, requiresGrad: true });
  const v = T.randn([cuK[cuK.length - 1]!, c.Hkv, Ev], { seed: 13, device, dtype, requiresGrad: true });
  const g = T.randn([cuQ[cuQ.length - 1]!, c.Hq, Ev], { seed: 14, device, dtype });
  const held = (c_: Int32Array) => (c.held && device.backend === 'webgpu' ? T.tensor(c_, [c_.length], { dtype: 'int32', device }) : c_);
  const { output, lse } = flashAttnVarlen(q, k, v, {
    cuSeqlensQ: held(cuQ),
    cuSeqlensK: held(cuK),
    maxSeqlenQ: Math.max(0, ...c.lq),
    maxSeqlenK: Math.max(0, ...lk),
    ...c.opts,
    returnLse: true,
  });
  output.backward(g);
  return { out: await output.toArray(), lse: await lse.toArray(), dq: await q.grad!.toArray(), dk: await k.grad!.toArray(), dv: await v.grad!.toArray() };
}

const CFGS: Cfg[] = [
  { name: 'self, mixed lengths', lq: [5, 1, 12, 9], Hq: 2, Hkv: 2, E: 16 },
  { name: 'causal, GQA 4→2, empty sequences', lq: [7, 0, 13, 0, 3], Hq: 4, Hkv: 2, E: 32, opts: { causal: true } },
  { name: 'cross lengths, causal bottom-right, Lq<Lk', lq: [3, 5, 0, 7], lk: [5, 9, 4, 7], Hq: 2, Hkv: 1, E: 16, Ev: 24, opts: { causal: true } },
  { name: 'a single long sequence (multi-pass)', lq: [700], Hq: 1, Hkv: 1, E: 64, opts: { causal: true } },
  { name: 'many length-1 sequences', lq: new Array(40).fill(1), Hq: 2, Hkv: 2, E: 16, opts: { causal: true } },
  { name: 'local window [4, 0] and softcap 5', lq: [9, 17], Hq: 2, Hkv: 2, E: 16, opts: { causal: true, windowSize: [4, 0], softcap: 5 } },
  { name: 'window [2, 3] non-causal, scale', lq: [11, 6], Hq: 1, Hkv: 1, E: 16, opts: { windowSize: [2, 3], scale: 0.4 } },
  // the dense tile map: one long sequence among many short and empty ones, tiles ordered longest first
  { name: 'one long + many short and empty, causal, GQA 4→1', lq: [3, 0, 1, 150, 2, 0, 7, 1, 33, 5], Hq: 4, Hkv: 1, E: 16, opts: { causal: true } },
  { name: 'one long key sequence, short queries, causal bottom-right', lq: [2, 1, 9, 0], lk: [3, 140, 9, 6], Hq: 2, Hkv: 2, E: 16, opts: { causal: true } },
  // GPU-held cu_seqlens: the tile map comes from the prefix kernel (upper-bound grid, extra workgroups exit)
  { name: 'GPU-held cu_seqlens: cross lengths, empty sequences, causal, GQA 2→1', lq: [3, 0, 70, 7, 0], lk: [5, 9, 70, 0, 4], Hq: 2, Hkv: 1, E: 16, Ev: 8, held: true, opts: { causal: true } },
  { name: 'GPU-held cu_seqlens: one long + many short, non-causal', lq: [1, 90, 2, 1, 0, 4, 1, 1, 17], Hq: 2, Hkv: 2, E: 16, held: true },
  // 300 sequences (the GPU scan spans threads; the kernels' binary search takes 9 steps), first and last empty
  { name: 'GPU-held cu_seqlens: 300 short sequences, causal', lq: Array.from({ length: 300 }, (_, i) => (i === 0 || i === 299 ? 0 : (i * 5) % 4)), Hq: 1, Hkv: 1, E: 8, held: true, opts: { causal: true } },
];

describe('flashAttnVarlen equals attention on each sequence alone (float64 reference)', () => {
  for (const c of CFGS) {
    it(c.name, async () => {
      const ref = await runCfg(c, cpu, 'float64');
      const got = await runCfg(c, gpu, 'float32');
      expectClose(got.out, ref.out, 3e-5, 3e-4, 'out');
      expectClose(got.lse, ref.lse, 1e-4, 1e-5, 'lse');
      expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dq');
      expectClose(got.dk, ref.dk, 1e-4, 1e-3, 'dk');
      expectClose(got.dv, ref.dv, 1e-4, 1e-3, 'dv');
      expect(got.out.some(Number.isNaN) || got.dq.some(Number.isNaN)).toBe(false);
    });
  }
});

describe('the packed grid with operand tiles staged in storage (the SwiftShader layout: per-workgroup scratch)', () => {
  for (const c of CFGS.filter((x) => /one long|GPU-held cu_seqlens: cross/.test(x.name))) {
    it(c.name, async () => {
      const ref = await runCfg(c, cpu, 'float64');
      setFlashStaging('storage');
      try {
        const got = await runCfg(c, gpu, 'float32');
        expectClose(got.out, ref.out, 3e-5, 3e-4, 'out');
        expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dq');
        expectClose(got.dk, ref.dk, 1e-4, 1e-3, 'dk');
        expectClose(got.dv, ref.dv, 1e-4, 1e-3, 'dv');
      } finally {
        setFlashStaging('auto');
      }
    });
  }
});

describe('the register backward on the packed grid (hardware GPUs; forced here)', () => {
  for (const c of CFGS.filter((x) => /GQA|one long \+ many|cross lengths|window/.test(x.name))) {
    it(c.name, async () => {
      const ref = await runCfg(c, cpu, 'float64');
      setFlashBackwardPath('registers');
      const built = () => (gpu.pipelineStats().byKernel['flash_attention_backward_dkv_registers']?.created ?? 0) + (gpu.pipelineStats().byKernel['flash_attention_backward_dq_registers']?.created ?? 0);
      try {
        const got = await runCfg(c, gpu, 'float32');
        expect(built()).toBeGreaterThan(0);
        expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dq');
        expectClose(got.dk, ref.dk, 1e-4, 1e-3, 'dk');
        expectClose(got.dv, ref.dv, 1e-4, 1e-3, 'dv');
      } finally {
        setFlashBackwardPath('auto');
      }
    });
  }
});

describe('flashAttnVarlen matches the PyTorch per-sequence fixtures', () => {
  for (const f of fixtureCases('varlen')) {
    it(f.name, async () => {
      const t = f.tensors;
      const p = f.params as { causal: boolean; max_seqlen_q: number; max_seqlen_k: number };
      const q = toTensor(t.q!, gpu, true);
      const k = toTensor(t.k!, gpu, true);
      const v = toTensor(t.v!, gpu, true);
      const out = flashAttnVarlen(q, k, v, {
        cuSeqlensQ: t.cu_seqlens_q!.data as Int32Array,
        cuSeqlensK: t.cu_seqlens_k!.data as Int32Array,
        maxSeqlenQ: p.max_seqlen_q,
        maxSeqlenK: p.max_seqlen_k,
        causal: p.causal,
      });
      out.backward(toTensor(t.dout!, gpu));
      expectClose(await out.toArray(), t.out!.data, 1e-4, 1e-3, 'out');
      expectClose(await q.grad!.toArray(), t.dq!.data, 3e-4, 2e-3, 'dq');
      expectClose(await k.grad!.toArray(), t.dk!.data, 3e-4, 2e-3, 'dk');
      expectClose(await v.grad!.toArray(), t.dv!.data, 1e-4, 1e-3, 'dv');
    });
  }
});

describe('BlockDiagonalMask with scaledDotProductAttention and flashAttnVarlen equal a float64 per-sequence reference', () => {
  it('causal from bottom-right blocks', async () => {
    const lq = [3, 6, 4];
    const lk = [5, 6, 9];
    const mask = BlockDiagonalMask.fromSeqlens(lq, lk).makeCausalFromBottomRight();
    const q = T.randn([mask.totalQ, 2, 16], { seed: 1, device: gpu });
    const k = T.randn([mask.totalK, 2, 16], { seed: 2, device: gpu });
    const v = T.randn([mask.totalK, 2, 16], { seed: 3, device: gpu });
    const want = packedAttentionReference(await q.toArray(), await k.toArray(), await v.toArray(), { Hq: 2, Hkv: 2, E: 16, Ev: 16 }, cuSeqlens(lq), cuSeqlens(lk), { causal: true });
    const dense = scaledDotProductAttention(q.transpose(0, 1).unsqueeze(0), k.transpose(0, 1).unsqueeze(0), v.transpose(0, 1).unsqueeze(0), {
      attnMask: mask.materialize(gpu),
    });
    const packed = flashAttnVarlen(q, k, v, { cuSeqlensQ: mask.qCu, cuSeqlensK: mask.kCu, maxSeqlenQ: 6, maxSeqlenK: 9, causal: true });
    expectClose(await dense.squeeze(0).transpose(0, 1).toArray(), want, 2e-5, 2e-4, 'SDPA + BlockDiagonalMask');
    expectClose(await packed.toArray(), want, 2e-5, 2e-4, 'flashAttnVarlen');
  });
});

describe('GPU-held cu_seqlens', () => {
  it('well-formed ones run (the validation kernel passes them) and equal the host-array call', async () => {
    const lq = [5, 0, 9];
    const cu = cuSeqlens(lq);
    const q = T.randn([14, 2, 8], { seed: 1, device: gpu });
    const k = T.randn([14, 1, 8], { seed: 2, device: gpu });
    const want = packedAttentionReference(await q.toArray(), await k.toArray(), await k.toArray(), { Hq: 2, Hkv: 1, E: 8, Ev: 8 }, cu, cu, { causal: true });
    const held = T.tensor(cu, [cu.length], { dtype: 'int32', device: gpu });
    const out = flashAttnVarlen(q, k, k, { cuSeqlensQ: held, maxSeqlenQ: 9, causal: true });
    expectClose(await out.toArray(), want, 2e-5, 2e-4, 'GPU-held');
    // a view with an offset (cu_seqlens sliced out of a larger int32 tensor) reads the view, not its storage
    const big = T.tensor(Int32Array.from([77, ...cu, 3]), [cu.length + 2], { dtype: 'int32', device: gpu });
    const view = big.slice(0, 1, cu.length + 1);
    const out2 = flashAttnVarlen(q, k, k, { cuSeqlensQ: view, maxSeqlenQ: 9, causal: true });
    expectClose(await out2.toArray(), want, 2e-5, 2e-4, 'GPU-held view');
  });
});

describe('cu_seqlens validation', () => {
  const q = T.randn([6, 1, 8], { seed: 1, device: cpu });
  const call = (cu: unknown, max = 4) => () => flashAttnVarlen(q, q, q, { cuSeqlensQ: cu as Int32Array, maxSeqlenQ: max });
  it('rejects bad cu_seqlens naming the argument', () => {
    expect(call(T.tensor([0, 2, 6], [3]))).toThrowError(/DTYPE_UNSUPPORTED.*options.cuSeqlensQ: expected an int32 tensor, got float32/);
    expect(call([0.5, 2, 6])).toThrowError(/cuSeqlensQ\[0\]: expected int32/);
    expect(call([1, 2, 6])).toThrowError(/cuSeqlensQ: must start at 0, got 1/);
    expect(call([0, 4, 2, 6])).toThrowError(/cuSeqlensQ: must be non-decreasing/);
    expect(call([0, 2, 5])).toThrowError(/cuSeqlensQ: last entry 5 must equal the number of packed rows 6/);
    expect(call([0, 1, 6], 4)).toThrowError(/maxSeqlenQ: 4 is smaller than the longest sequence \(5\)/);
    expect(() => flashAttnVarlen(q, q, q, { cuSeqlensQ: [0, 6], cuSeqlensK: [0, 3, 6], maxSeqlenQ: 6 })).toThrowError(/cuSeqlensK/);
    expect(() => flashAttnVarlen(q.reshape([6, 8]), q, q, { cuSeqlensQ: [0, 6], maxSeqlenQ: 6 })).toThrowError(/q: expected a packed tensor/);
  });
});
