#!/usr/bin/env node
// Builds the docs site into docs/dist/ (run after `npm run build`; `npm run docs` does both):
//   1. the API reference: typedoc (packages mode) → markdown in docs/api/ (typedoc.json)
//   2. the bench charts for the benchmarks page: SVGs + a report from bench-results/report.json when
//      a local run left one, else from the committed llvmpipe results (apps/bench/results/)
//   3. VitePress → docs/dist/ (guide, API, benchmarks)
//   4. the live demos (docs/demos/*.html, TypeScript importing the packages) → docs/dist/demos/ with vite
// Everything is local: no CDN, no fonts or scripts fetched at build or view time.
// Flags: --demos-only (step 4 alone, for the demo test when the site is already built), --no-api.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const docs = join(root, 'docs');
const args = new Set(process.argv.slice(2));
const t0 = performance.now();
const step = (msg) => console.log(`docs: ${msg} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);

function run(cmd, argv) {
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', env: { ...process.env, NODE_NO_WARNINGS: '1' } });
  if (r.status !== 0) {
    console.error(`docs: ${cmd} ${argv.join(' ')} failed (exit ${r.status})`);
    process.exit(r.status ?? 1);
  }
}

/** Bench charts and report for the benchmarks page (docs/public/bench/, generated). */
async function benchAssets() {
  const dist = join(root, 'apps/bench/dist');
  if (!existsSync(join(dist, 'html-report.js'))) {
    console.warn('docs: apps/bench is not built (npm run build): the benchmarks page has no charts');
    return;
  }
  const { charts, renderHtml } = await import(pathToFileURL(join(dist, 'html-report.js')).href);
  const { loadReferences, headlines } = await import(pathToFileURL(join(dist, 'report.js')).href);
  const refs = loadReferences(root);
  let data;
  const local = join(root, 'bench-results/report.json');
  if (existsSync(local)) {
    data = JSON.parse(readFileSync(local, 'utf8'));
    data.source = 'bench-results/report.json (the last local `npm run bench`)';
  } else {
    const rows = [];
    let device;
    let date = '';
    for (const f of Object.values(refs.llvmpipe)) {
      const d = JSON.parse(readFileSync(join(root, f.path), 'utf8'));
      rows.push(...d.rows);
      device = d.device;
      date = d.date;
    }
    if (!device) return;
    data = { date, command: 'webattn-bench attention varlen flex --full', seconds: 0, device, headlines: headlines(rows, refs), rows, references: [] };
    data.source = Object.values(refs.llvmpipe).map((f) => f.path).join(', ');
  }
  const out = join(docs, 'public/bench');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const list = charts(data.rows, refs, data.device.adapter);
  for (const c of list) writeFileSync(join(out, `${c.id}.svg`), c.svg);
  writeFileSync(join(out, 'report.html'), renderHtml(data, list, refs));
  writeFileSync(join(out, 'charts.json'), JSON.stringify({ source: data.source, adapter: data.device.adapter, date: data.date, charts: list.map(({ id, caption }) => ({ id, caption })), headlines: data.headlines }, null, 2));
}

async function demos() {
  const { build } = await import('vite');
  // every package export (`.`, `./internal`, …) → its TypeScript source, matched exactly
  const alias = [];
  for (const dir of readdirSync(join(root, 'packages'))) {
    const pj = join(root, 'packages', dir, 'package.json');
    if (!existsSync(pj)) continue;
    const pkg = JSON.parse(readFileSync(pj, 'utf8'));
    for (const [key, v] of Object.entries(pkg.exports ?? { '.': { import: './dist/index.js' } })) {
      const target = typeof v === 'string' ? v : v.import;
      if (!target) continue;
      const src = join(root, 'packages', dir, target.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts'));
      const name = key === '.' ? pkg.name : `${pkg.name}/${key.slice(2)}`;
      alias.push({ find: new RegExp(`^${name.replace(/[/.]/g, '\\$&')}$`), replacement: src });
    }
  }
  const dir = join(docs, 'demos');
  const input = Object.fromEntries(readdirSync(dir).filter((f) => f.endsWith('.html')).map((f) => [f.slice(0, -5), join(dir, f)]));
  await build({
    configFile: false,
    root: dir,
    base: './',
    logLevel: 'warn',
    resolve: { alias },
    build: { outDir: join(docs, 'dist/demos'), emptyOutDir: true, target: 'es2022', rollupOptions: { input }, chunkSizeWarningLimit: 4000 },
  });
}

if (args.has('--demos-only')) {
  await demos();
  step('demos built');
  process.exit(0);
}
if (!args.has('--no-api')) {
  run(process.execPath, [join(root, 'node_modules/typedoc/bin/typedoc'), '--logLevel', 'Warn']);
  step('API reference generated');
}
await benchAssets();
step('bench charts generated');
run(process.execPath, [join(root, 'node_modules/vitepress/bin/vitepress.js'), 'build', 'docs']);
step('VitePress site built');
await demos();
step(`demos built → ${join(docs, 'dist')}`);
