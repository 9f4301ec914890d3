import { describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import '@webattn/kernels-webgpu';
import '@webattn/kernels-wasm';

// On this machine (no GPU) the only WebGPU adapters are software rasterizers (llvmpipe, SwiftShader): with both
// backends imported, auto picks wasm, says why, and every backend can still be forced.
describe('device choice with the WebGPU and wasm backends registered', () => {
  it('auto prefers wasm over a software WebGPU adapter; kind and WEBATTN_DEVICE still force a backend', async () => {
    const auto = await T.getDevice({ cache: false, wasmThreads: 2 });
    expect(auto.backend).toBe('wasm');
    expect(auto.info.reason).toMatch(/^auto: wasm/);
    expect(auto.info.reason).toMatch(/webgpu \(hardware\)/); // the hardware try came first and failed
    auto.destroy();
    const gpu = await T.getDevice({ kind: 'webgpu', cache: false });
    expect(gpu.backend).toBe('webgpu');
    expect(gpu.info.software).toBe(true);
    gpu.destroy();
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
