import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebGPUDevice } from '@webattn/kernels-webgpu';
import { gpuDevice } from '../../../test-utils/index.js';
import { readSafetensors, writeSafetensors } from './safetensors.js';

let device: WebGPUDevice;
beforeAll(async () => {
  device = await gpuDevice();
});
afterAll(() => device?.destroy());

describe('readSafetensors onto WebGPU', () => {
  it('converts F16 (float16 with shader-f16, else float32), BF16 → float32, I64 → int32, BOOL → bool; values from the bit formulas', async () => {
    const f16 = Uint16Array.from([0x3c00, 0xc000, 0x3555, 0x0001]); // 1, -2, 0.333251953125, 2^-24
    const bf16 = Uint16Array.from([0x3f80, 0x4049, 0xbf00]); // 1, 3.140625, -0.5
    const bytes = writeSafetensors({
      h: { dtype: 'F16', shape: [4], data: f16 },
      b: { dtype: 'BF16', shape: [3], data: bf16 },
      i: { dtype: 'I64', shape: [2], data: BigInt64Array.from([-7n, 2147483647n]) },
      m: { dtype: 'BOOL', shape: [3], data: Uint8Array.from([1, 0, 1]) },
    });
    const { tensors } = readSafetensors(bytes, { device });
    const hasF16 = device.info.features.includes('shader-f16');
    expect(tensors['h']!.dtype).toBe(hasF16 ? 'float16' : 'float32');
    // 0x3555: exponent 13, mantissa 0x155 = 341 → 2^-2 · (1 + 341/1024); 0x0001: subnormal 2^-24
    expect(Array.from(await tensors['h']!.toArray())).toEqual([1, -2, 2 ** -2 * (1 + 341 / 1024), 2 ** -24]);
    expect(tensors['b']!.dtype).toBe('float32');
    expect(Array.from(await tensors['b']!.toArray())).toEqual([1, 2 * (1 + 73 / 128), -0.5]);
    expect(tensors['i']!.dtype).toBe('int32');
    expect(Array.from(await tensors['i']!.toArray())).toEqual([-7, 2147483647]);
    expect(tensors['m']!.dtype).toBe('bool');
    expect(Array.from(await tensors['m']!.toArray())).toEqual([1, 0, 1]);
  });
});
