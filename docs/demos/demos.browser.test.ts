/**
 * The docs site's live demos, end to end: builds the site (typedoc API, VitePress, demos), serves
 * docs/dist on 127.0.0.1, opens every demo page in headless Chromium (SwiftShader WebGPU) and requires
 * `window.__webattnDemo.status === 'ok'` — each demo compares its WebGPU output with the float64 CPU
 * reference itself — and no console error. WEBATTN_DOCS_PREBUILT=1 skips the build (site already built);
 * WEBATTN_DEMO_SCREENSHOTS=DIR saves a screenshot of each page.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM } from '../../test-utils/browser.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const dist = join(root, 'docs/dist');
// small shapes for CI (SwiftShader is slow); the pages' defaults are larger
const QUERY: Record<string, string> = { 'flex-playground': '?L=256', sdpa: '?maxL=256', models: '?tokens=4' };
type Page = Awaited<ReturnType<Browser['newPage']>>;
/** After the first result: drive a control and require a second, fresh result (the page's re-run path). */
const INTERACT: Record<string, (page: Page) => Promise<void>> = {
  // the attn_implementation dropdown re-runs that implementation and re-checks it against the CPU
  models: (page) => page.selectOption('#impl', 'eager').then(() => undefined),
};
const demos = readdirSync(join(root, 'docs/demos'))
  .filter((f) => f.endsWith('.html'))
  .map((f) => f.slice(0, -5));

let server: Server;
let base = '';
type Browser = Awaited<ReturnType<(typeof import('playwright-core'))['chromium']['launch']>>;
let browser: Browser;

beforeAll(async () => {
  if (process.env.WEBATTN_DOCS_PREBUILT !== '1') {
    const r = spawnSync(process.execPath, [join(root, 'scripts/docs-build.mjs')], { cwd: root, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`docs build failed (exit ${r.status}):\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
  }
  // @ts-expect-error plain JS module of the repo's scripts
  const { serve } = (await import('../../scripts/docs-serve.mjs')) as { serve: (dir: string, port: number) => Promise<{ server: Server; url: string }> };
  ({ server, url: base } = await serve(dist, 0));
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-webgpu-adapter=swiftshader', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  server?.close();
});

describe('docs site', () => {
  it('has the guide, the API reference and the demos in one site', () => {
    for (const p of ['index.html', 'guide/getting-started.html', 'guide/flex.html', 'guide/benchmarks.html', 'api/index.html', ...demos.map((d) => `demos/${d}.html`)])
      expect(existsSync(join(dist, p)), p).toBe(true);
    const home = readFileSync(join(dist, 'index.html'), 'utf8');
    // offline: no script, stylesheet or font from another origin
    expect(home.match(/(?:src|href)="https?:\/\/[^"]+\.(?:js|css|woff2?)"/g) ?? []).toEqual([]);
  });

  it.each(demos)('demo %s runs on WebGPU and matches the CPU reference, without console errors', async (name) => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    try {
      const res = await page.goto(`${base}demos/${name}.html${QUERY[name] ?? ''}`);
      expect(res?.status()).toBe(200);
      expect(await page.evaluate(() => document.documentElement.hasAttribute('data-webattn-demo'))).toBe(true);
      await page.waitForFunction(() => (window as unknown as { __webattnDemo?: unknown }).__webattnDemo !== undefined, undefined, { timeout: 150_000 });
      const r = (await page.evaluate(() => (window as unknown as { __webattnDemo: unknown }).__webattnDemo)) as { status: string; adapter: string | null; maxAbsDiff: number | null; message?: string };
      const shots = process.env.WEBATTN_DEMO_SCREENSHOTS;
      if (shots) {
        mkdirSync(shots, { recursive: true });
        await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
      }
      expect(r.message ?? '').toBe('');
      expect(r.status).toBe('ok');
      expect(typeof r.adapter === 'string' && r.adapter.length > 0).toBe(true);
      expect(r.maxAbsDiff).not.toBeNull();
      expect(Number.isFinite(r.maxAbsDiff)).toBe(true);
      expect(r.maxAbsDiff!).toBeLessThan(1e-3);
      const interact = INTERACT[name];
      if (interact) {
        await page.evaluate(() => {
          delete (window as unknown as { __webattnDemo?: unknown }).__webattnDemo;
        });
        await interact(page);
        await page.waitForFunction(() => (window as unknown as { __webattnDemo?: unknown }).__webattnDemo !== undefined, undefined, { timeout: 150_000 });
        const again = (await page.evaluate(() => (window as unknown as { __webattnDemo: unknown }).__webattnDemo)) as typeof r;
        expect(again.message ?? '').toBe('');
        expect(again.status).toBe('ok');
        expect(again.maxAbsDiff!).toBeLessThan(1e-3);
      }
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
