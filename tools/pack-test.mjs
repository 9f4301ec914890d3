#!/usr/bin/env node
/**
 * Checks that every package in packages/ is fit to publish (run after `npm run build`):
 *  1. `npm pack` holds only dist runtime files (.js, .d.ts), README, LICENSE and package.json;
 *  2. each tarball installs alone (with the tarballs of its @webattn dependencies, followed from
 *     package.json) in a fresh project under the OS temp dir;
 *  3. a consumer file type-checks against it with `skipLibCheck: false` and `strict`;
 *  4. a two-line example runs in Node on the CPU device and prints the expected result.
 *
 *   node tools/pack-test.mjs [package-dir-name ...]   (default: every package)
 *
 * Exits non-zero with a reason per failure. Needs the npm registry (or its cache) for third-party
 * dependencies such as acorn or webgpu.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const ALLOWED = [/^package\.json$/, /^README\.md$/i, /^LICENSE$/, /^dist\/.+\.js$/, /^dist\/.+\.d\.ts$/, /^dist\/.+\.wasm$/];
const FORBIDDEN = [/\.tsbuildinfo$/, /\.test\./, /browser-entry/, /random-mods/, /^src\//];

/**
 * The two-line example run per package: `code` (ESM, TypeScript) must print `expect`.
 * Packages without an entry here are imported and must expose at least `minExports` names.
 */
const EXAMPLES = {
  'core-tensor': {
    code: `import * as T from '@webattn/core-tensor';
const a = T.tensor([[1, 2], [3, 4]]);
const r: number[] = Array.from(await a.matmul(a).toArray());
console.log(JSON.stringify(r));`,
    expect: '[7,10,15,22]',
  },
  'kernels-webgpu': {
    code: `import * as T from '@webattn/core-tensor';
import { scaledDotProductAttention } from '@webattn/kernels-webgpu';
const v = T.tensor([[[[1, 2], [3, 4]]]]);
const out: T.Tensor = scaledDotProductAttention(T.zeros([1, 1, 2, 2]), T.zeros([1, 1, 2, 2]), v);
console.log(JSON.stringify(Array.from(await out.toArray())));`,
    expect: '[2,3,2,3]',
  },
  flex: {
    code: `import * as T from '@webattn/core-tensor';
import { flexAttention } from '@webattn/flex';
const v = T.tensor([[[[1, 2], [3, 4]]]]);
const out: T.Tensor = flexAttention(T.zeros([1, 1, 2, 2]), T.zeros([1, 1, 2, 2]), v, { scoreMod: (s: number) => s });
console.log(JSON.stringify(Array.from(await out.toArray())));`,
    expect: '[2,3,2,3]',
  },
  varlen: {
    code: `import { cuSeqlens } from '@webattn/varlen';
const cu: Int32Array = cuSeqlens([3, 1, 4]);
console.log(JSON.stringify(Array.from(cu)));`,
    expect: '[0,3,4,8]',
  },
};

function sh(cmd, args, cwd, env = {}) {
  try {
    return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

function run(cmd, args, cwd, env = {}) {
  return new Promise((ok, fail) => {
    execFile(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      if (err) fail(new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed:\n${stdout ?? ''}${stderr ?? ''}`));
      else ok(stdout);
    });
  });
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const wanted = process.argv.slice(2);
const dirs = readdirSync(join(root, 'packages')).filter((d) => existsSync(join(root, 'packages', d, 'package.json')));
const pkgs = new Map();
for (const d of dirs) {
  const json = JSON.parse(readFileSync(join(root, 'packages', d, 'package.json'), 'utf8'));
  if (json.private) continue;
  pkgs.set(json.name, { dir: d, json });
}

const work = mkdtempSync(join(tmpdir(), 'webattn-pack-'));
const tarballs = join(work, 'tarballs');
mkdirSync(tarballs);
const failures = [];
const tgz = new Map();

// 1. pack and inspect
for (const [name, { dir }] of pkgs) {
  const out = JSON.parse(sh(npm, ['pack', '--json', '--pack-destination', tarballs, '--loglevel=error'], join(root, 'packages', dir)));
  const info = out[0];
  tgz.set(name, join(tarballs, info.filename));
  const files = info.files.map((f) => f.path);
  const bad = files.filter((f) => !ALLOWED.some((r) => r.test(f)) || FORBIDDEN.some((r) => r.test(f)));
  if (bad.length) failures.push(`${name}: tarball holds files that must not ship: ${bad.join(', ')}`);
  for (const must of ['LICENSE', 'package.json', 'dist/index.js', 'dist/index.d.ts']) {
    if (!files.includes(must)) failures.push(`${name}: tarball lacks ${must}`);
  }
  console.log(`pack ${name}: ${files.length} files, ${info.size} bytes`);
}

/** The @webattn packages `name` needs, itself included (dependencies and peer dependencies). */
function closure(name, acc = new Set()) {
  if (acc.has(name)) return acc;
  acc.add(name);
  const { json } = pkgs.get(name);
  for (const dep of Object.keys({ ...json.dependencies, ...json.peerDependencies })) if (pkgs.has(dep)) closure(dep, acc);
  return acc;
}

// 2-4. install alone, type-check, run (three projects at a time: installs wait on I/O)
async function check(name, dir, json) {
  const proj = join(work, dir);
  mkdirSync(proj);
  writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: `consumer-${dir}`, private: true, type: 'module' }, null, 2));
  const own = [...closure(name)].map((n) => tgz.get(n));
  try {
    await run(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...own], proj);
  } catch (e) {
    failures.push(`${name}: install failed: ${e.message}`);
    return;
  }
  const ex = EXAMPLES[dir];
  const code =
    ex?.code ??
    `import * as M from '${name}';
const names: string[] = Object.keys(M);
console.log(JSON.stringify(names.length >= 0));`;
  writeFileSync(join(proj, 'main.ts'), code + '\n');
  writeFileSync(
    join(proj, 'tsconfig.json'),
    JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          skipLibCheck: false,
          types: [],
          outDir: 'out',
        },
        files: ['main.ts'],
      },
      null,
      2,
    ),
  );
  try {
    await run(process.execPath, [tsc, '-p', 'tsconfig.json'], proj);
  } catch (e) {
    failures.push(`${name}: consumer type-check (skipLibCheck: false) failed: ${e.message}`);
    return;
  }
  let printed;
  try {
    printed = (await run(process.execPath, [join('out', 'main.js')], proj, { WEBATTN_DEVICE: 'cpu' })).trim().split('\n').pop();
  } catch (e) {
    failures.push(`${name}: the example failed in Node: ${e.message}`);
    return;
  }
  const expected = ex?.expect ?? 'true';
  if (printed !== expected) failures.push(`${name}: the example printed ${printed}, expected ${expected}`);
  else console.log(`ok ${name} (${json.version}): installed alone with ${own.length - 1} @webattn dependencies, typed, ran`);
}

const todo = [...pkgs].filter(([, { dir }]) => !wanted.length || wanted.includes(dir));
await Promise.all(
  Array.from({ length: 3 }, async () => {
    for (let next = todo.shift(); next; next = todo.shift()) await check(next[0], next[1].dir, next[1].json);
  }),
);

if (!process.env.WEBATTN_PACK_KEEP) rmSync(work, { recursive: true, force: true });
else console.log(`kept ${work}`);
if (failures.length) {
  console.error(`pack-test: ${failures.length} failure(s)\n- ${failures.join('\n- ')}`);
  process.exit(1);
}
console.log(`pack-test: ${pkgs.size} packages fit to publish`);
