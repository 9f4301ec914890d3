import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runInChromium } from '../../../test-utils/browser.js';
import { expectClose } from '../../../test-utils/index.js';

interface Result {
  want: number[];
  host: number[];
  held: number[];
  info: { backend: string; api: string };
  limit: number;
}

describe('flashAttnVarlen in headless Chromium (SwiftShader WebGPU)', () => {
  it('forward and backward (causal, GQA 4→2, empty sequences) match the float64 CPU path, with host and GPU-held cu_seqlens', async () => {
    const entry = fileURLToPath(new URL('./varlen.browser-entry.ts', import.meta.url));
    const { result } = await runInChromium<Result>(entry);
    expect(result.info.backend).toBe('webgpu');
    console.log(`browser varlen: maxStorageBuffersPerShaderStage ${result.limit}`);
    expect(result.host.length).toBe(result.want.length);
    expectClose(result.host, result.want, 1e-4, 1e-3, 'host cu_seqlens');
    expectClose(result.held, result.want, 1e-4, 1e-3, 'GPU-held cu_seqlens');
  });
});
