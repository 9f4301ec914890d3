#!/usr/bin/env node
// Serves the built site (docs/dist/, `npm run docs` makes it) on 127.0.0.1.
//   node scripts/docs-serve.mjs [--port N]      (default 4173; 0 picks a free port)
import { createServer } from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png', '.woff2': 'font/woff2', '.wasm': 'application/wasm', '.ico': 'image/x-icon', '.txt': 'text/plain' };

/** Starts a static server of `dir` on 127.0.0.1:`port`; resolves to the server and its URL. */
export async function serve(dir, port = 4173) {
  const server = createServer((req, res) => {
    let p = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    p = normalize(p).replace(/^(\.\.[/\\])+/, '');
    let f = join(dir, p);
    if (existsSync(f) && statSync(f).isDirectory()) f = join(f, 'index.html');
    else if (!existsSync(f) && existsSync(`${f}.html`)) f = `${f}.html`;
    if (!f.startsWith(dir) || !existsSync(f)) {
      const nf = join(dir, '404.html');
      res.writeHead(404, { 'content-type': TYPES['.html'] });
      res.end(existsSync(nf) ? readFileSync(nf) : 'not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(f)] ?? 'application/octet-stream' });
    res.end(readFileSync(f));
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = fileURLToPath(new URL('../docs/dist/', import.meta.url));
  if (!existsSync(join(dir, 'index.html'))) {
    console.error('docs/dist/ has no site: run `npm run docs` first');
    process.exit(1);
  }
  const i = process.argv.indexOf('--port');
  const { url } = await serve(dir, i > 0 ? Number(process.argv[i + 1]) : 4173);
  console.log(`webattn docs on ${url} (Ctrl-C stops)`);
}
