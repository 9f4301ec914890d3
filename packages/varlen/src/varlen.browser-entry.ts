// Bundled and run inside Chromium (SwiftShader WebGPU: 10 storage buffers per shader stage) by
// varlen.browser.test.ts: packed attention forward and backward, host and GPU-held cu_seqlens, against
// the float64 CPU reference path of the same function.
import * as T from '@webattn/core-tensor';
import '@webattn/kernels-webgpu';
import { cuSeqlens, flashAttnVarlen } from '@webattn/varlen';

export async function run() {
  const gpu = await T.getDevice({ kind: 'webgpu' });
  const cpu = T.cpu();
  const lq = [3, 0, 41, 1, 7, 0, 2];
  const lk = [5, 2, 41, 1, 9, 3, 2];
  const [cuQ, cuK] = [cuSeqlens(lq), cuSeqlens(lk)];
  const compute = async (d: T.Device, dtype: T.DType, held: boolean) => {
    const q = T.randn([cuQ[lq.length]!, 4, 16], { seed: 1, device: d, dtype, requiresGrad: true });
    const k = T.randn([cuK[lk.length]!, 2, 16], { seed: 2, device: d, dtype, requiresGrad: true });
    const v = T.randn([cuK[lk.length]!, 2, 8], { seed: 3, device: d, dtype, requiresGrad: true });
    const g = T.randn([cuQ[lq.length]!, 4, 8], { seed: 4, device: d, dtype });
    const on = (c: Int32Array) => (held ? T.tensor(c, [c.length], { dtype: 'int32', device: d }) : c);
    const out = flashAttnVarlen(q, k, v, { cuSeqlensQ: on(cuQ), cuSeqlensK: on(cuK), maxSeqlenQ: 41, maxSeqlenK: 41, causal: true });
    out.backward(g);
    const arr = async (t: T.Tensor) => Array.from(await t.toArray(), Number);
    return [...(await arr(out)), ...(await arr(q.grad!)), ...(await arr(k.grad!)), ...(await arr(v.grad!))];
  };
  const want = await compute(cpu, 'float64', false);
  const host = await compute(gpu, 'float32', false);
  const held = await compute(gpu, 'float32', true);
  const info = gpu.info;
  const limit = (gpu as unknown as { limits: GPUSupportedLimits }).limits.maxStorageBuffersPerShaderStage;
  gpu.destroy();
  return { want, host, held, info, limit };
}
