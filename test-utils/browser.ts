/**
 * Runs a bundled module in headless Chromium (SwiftShader WebGPU) through playwright-core and returns
 * what its `run()` export resolves to. Used by `*.browser.test.ts`.
 */
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CHROMIUM = process.env.WEBATTN_CHROMIUM ?? '/usr/bin/chromium';

const root = fileURLToPath(new URL('../', import.meta.url));

/**
 * Bundles `entry` (TS, may import @webattn/*) to one ESM file with vite and runs its `run()` in Chromium.
 * `minify: true` builds as an app ships (identifiers renamed), which is what flex must survive.
 */
export async function runInChromium<R>(entry: string, options: { minify?: boolean; crossOriginIsolated?: boolean } = {}): Promise<{ result: R; console: string[]; bundle: string }> {
  const { build } = await import('vite');
  const out = mkdtempSync(join(tmpdir(), 'webattn-browser-'));
  const alias = Object.fromEntries([
    ['@webattn/kernels-webgpu/internal', join(root, 'packages/kernels-webgpu/src/internal.ts')],
    ...['core-tensor', 'kernels-webgpu', 'kernels-wasm', 'flex', 'varlen', 'models', 'hf-adapter'].map((n) => [`@webattn/${n}`, join(root, `packages/${n}/src/index.ts`)]),
  ]);
  await build({
    configFile: false,
    logLevel: 'silent',
    resolve: { alias },
    build: { outDir: out, emptyOutDir: true, minify: options.minify ?? false, lib: { entry, formats: ['es'], fileName: () => 'bundle.js' } },
  });
  const bundle = readFileSync(join(out, 'bundle.js'), 'utf8');
  const html = `<!doctype html><meta charset="utf-8"><script type="module">
import { run } from './bundle.js';
run().then((r) => { window.__result = { ok: true, r }; }, (e) => { window.__result = { ok: false, e: String(e && e.stack || e) }; });
</script>`;
  // COOP + COEP make the page cross-origin isolated: SharedArrayBuffer (wasm threads) is available only then
  const isolation = options.crossOriginIsolated ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } : {};
  const server = createServer((req, res) => {
    for (const [k, v] of Object.entries(isolation)) res.setHeader(k, v);
    if (req.url === '/bundle.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(bundle);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(html);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--enable-unsafe-webgpu',
      '--enable-features=Vulkan',
      '--use-webgpu-adapter=swiftshader',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
  const logs: string[] = [];
  try {
    const page = await browser.newPage();
    page.on('console', (m) => logs.push(m.text()));
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForFunction(() => (window as unknown as { __result?: unknown }).__result !== undefined, undefined, { timeout: 120_000 });
    const res = (await page.evaluate(() => (window as unknown as { __result: unknown }).__result)) as { ok: boolean; r: R; e?: string };
    if (!res.ok) throw new Error(`in Chromium: ${res.e}\nconsole:\n${logs.join('\n')}`);
    return { result: res.r, console: logs, bundle };
  } finally {
    await browser.close();
    server.close();
    rmSync(out, { recursive: true, force: true });
  }
}
