import { describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import '@webattn/kernels-webgpu';
import '@webattn/kernels-wasm';

// With both backends imported, auto takes a hardware GPU when there is one, else wasm before a software WebGPU
// rasterizer (llvmpipe, SwiftShader: CI's case), says why, and every backend can still be forced.
describe('device choice with the WebGPU and wasm backends registered', () => {
  it('auto: a hardware adapter first, else wasm before a software one; kind and WEBATTN_DEVICE still force a backend', async () => {
    const gpu = await T.getDevice({ kind: 'webgpu', cache: false });
    expect(gpu.backend).toBe('webgpu');
    const hardware = !gpu.info.software;
    gpu.destroy();
    const auto = await T.getDevice({ cache: false, wasmThreads: 2 });
    if (hardware) {
      expect(auto.backend).toBe('webgpu');
      expect(auto.info.reason).toMatch(/^auto: webgpu \(hardware\)/);
    } else {
      expect(auto.backend).toBe('wasm');
      expect(auto.info.reason).toMatch(/^auto: wasm/);
      expect(auto.info.reason).toMatch(/webgpu \(hardware\)/); // the hardware try came first and failed
    }
    auto.destroy();
    const prev = process.env.WEBATTN_DEVICE;
    process.env.WEBATTN_DEVICE = 'cpu';
    try {
      expect((await T.getDevice({ cache: false })).backend).toBe('cpu');
    } finally {
      if (prev === undefined) delete process.env.WEBATTN_DEVICE;
      else process.env.WEBATTN_DEVICE = prev;
    }
  });
});
