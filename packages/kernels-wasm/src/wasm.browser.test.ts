import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runInChromium } from '../../../test-utils/browser.js';
import { expectClose } from '../../../test-utils/index.js';

interface Result {
  adapter: string;
  isolated: boolean;
  out: number[];
  ref: number[];
  mm: number[];
  mmRef: number[];
  flex: number[];
  flexRef: number[];
}

const entry = fileURLToPath(new URL('./wasm.browser-entry.ts', import.meta.url));

describe('wasm backend in a minified bundle in headless Chromium', () => {
  it('cross-origin isolated page: 2 worker threads, flash attention, matmul and flex match the CPU reference', async () => {
    const { result, console: logs } = await runInChromium<Result>(entry, { minify: true, crossOriginIsolated: true });
    expect(result.isolated).toBe(true);
    expect(result.adapter).toMatch(/2 threads/);
    expectClose(result.out, result.ref, 2e-5, 2e-4, 'attention');
    expectClose(result.mm, result.mmRef, 1e-4, 1e-4, 'matmul');
    expectClose(result.flex, result.flexRef, 1e-4, 1e-3, 'flex softcap + sliding-window block mask: output and dq');
    expect(logs.filter((l) => /error/i.test(l))).toEqual([]);
  });

  it('page without isolation: falls back to one thread and says why', async () => {
    const { result } = await runInChromium<Result>(entry, { minify: true });
    expect(result.isolated).toBe(false);
    expect(result.adapter).toMatch(/1 thread: SharedArrayBuffer is unavailable/);
    expectClose(result.out, result.ref, 2e-5, 2e-4, 'attention');
    expectClose(result.flex, result.flexRef, 1e-4, 1e-3, 'flex on one thread');
  });
});
