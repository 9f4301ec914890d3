import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runInChromium } from '../../../test-utils/browser.js';
import { expectClose } from '../../../test-utils/index.js';

describe('in headless Chromium (SwiftShader WebGPU)', () => {
  it('matmul → softmax → layerNorm on navigator.gpu matches the CPU reference', async () => {
    const entry = fileURLToPath(new URL('../../../test-utils/kernels-browser-entry.ts', import.meta.url));
    const { result } = await runInChromium<{ got: number[]; want: number[]; info: { backend: string; api: string; adapter: string; reason: string; tier: string } }>(entry);
    expect(result.info.backend).toBe('webgpu');
    expect(result.info.api).toBe('browser');
    expect(result.info.reason).toMatch(/navigator\.gpu/);
    expect(['subgroup-matrix', 'subgroups', 'workgroup']).toContain(result.info.tier);
    console.log(`browser device: ${JSON.stringify(result.info)}`);
    expect(result.got.length).toBe(3 * 19 * 7);
    expectClose(result.got, result.want, 5e-5, 5e-4, 'browser');
  });
});
