import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runInChromium } from '../../../test-utils/browser.js';
import { expectClose } from '../../../test-utils/index.js';

interface Result {
  got: { out: number[]; dq: number[]; dtable: number[] };
  want: { out: number[]; dq: number[]; dtable: number[] };
  info: { backend: string; api: string };
  closureError: string;
  src: string;
}

describe('flex in a minified production bundle, in headless Chromium (SwiftShader WebGPU)', () => {
  it('mods with captures compile and match the CPU path (forward, dq, d table); acorn is not bundled', async () => {
    const entry = fileURLToPath(new URL('./flex.browser-entry.ts', import.meta.url));
    const { result, bundle } = await runInChromium<Result>(entry, { minify: true });
    expect(result.info.backend).toBe('webgpu');
    // the build really renamed identifiers: the entry's own function lost its parameter names
    expect(result.src).not.toContain('qIdx');
    expect(bundle).not.toMatch(/acorn|parseExpressionAt/);
    expectClose(result.got.out, result.want.out, 5e-5, 5e-4, 'out');
    expectClose(result.got.dq, result.want.dq, 2e-4, 2e-3, 'dq');
    expectClose(result.got.dtable, result.want.dtable, 2e-4, 2e-3, 'd table');
    // a closure capture, renamed by the minifier, is refused with a message that says why
    expect(result.closureError).toMatch(/FLEX_COMPILE|unknown identifier/);
    expect(result.closureError).toMatch(/minifier/);
  });
});
