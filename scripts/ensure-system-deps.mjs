#!/usr/bin/env node
// Makes sure the system packages the gpu and browser test projects need are present on a Debian
// machine: chromium (the browser project, and the SwiftShader Vulkan ICD it ships), Mesa's EGL +
// llvmpipe (Dawn's OpenGL adapter) and the Vulkan loader. Missing ones are installed with apt-get
// when running as root; otherwise this fails at once with the exact command to run.
// WEBATTN_SKIP_SYSTEM_DEPS=1 skips the check (for machines set up another way).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const PACKAGES = [
  // [debian package, why, files that show it is there when dpkg is absent]
  ['chromium', 'browser tests (headless Chromium) and the Vulkan SwiftShader ICD', ['/usr/bin/chromium', '/usr/lib/chromium/vk_swiftshader_icd.json']],
  ['libegl-mesa0', 'Mesa EGL for the OpenGL/llvmpipe WebGPU adapter', ['libEGL_mesa.so.0']],
  ['libgl1-mesa-dri', 'Mesa llvmpipe driver', ['swrast_dri.so']],
  ['libegl1', 'the EGL loader', ['libEGL.so.1']],
  ['libvulkan1', 'the Vulkan loader (SwiftShader, real GPUs)', ['libvulkan.so.1']],
];

if (process.env.WEBATTN_SKIP_SYSTEM_DEPS === '1') process.exit(0);
if (process.platform !== 'linux') {
  console.log(`system deps: not Linux (${process.platform}); not checked (the gpu/browser projects need a WebGPU adapter and Chromium)`);
  process.exit(0);
}

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
function installed(pkg, files) {
  if (has('dpkg-query')) {
    const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.includes('install ok installed')) return true;
  }
  // no dpkg record: look for the files themselves (absolute paths, or libraries known to ldconfig)
  let libs = '';
  try {
    libs = execFileSync(existsSync('/sbin/ldconfig') ? '/sbin/ldconfig' : 'ldconfig', ['-p'], { encoding: 'utf8' });
  } catch {
    // no ldconfig: only the file checks below decide
  }
  const dri = ['/usr/lib/x86_64-linux-gnu/dri', '/usr/lib/aarch64-linux-gnu/dri', '/usr/lib/dri', '/usr/lib64/dri'];
  return files.every((f) => (f.startsWith('/') ? existsSync(f) : libs.includes(f) || dri.some((d) => existsSync(`${d}/${f}`))));
}

const missing = PACKAGES.filter(([pkg, , files]) => !installed(pkg, files));
if (!missing.length) process.exit(0);

const names = missing.map(([p]) => p).join(' ');
const why = missing.map(([p, w]) => `  ${p}: ${w}`).join('\n');
const root = typeof process.getuid === 'function' && process.getuid() === 0;
const cmd = `apt-get update && apt-get install -y ${names}`;
if (!root || !has('apt-get')) {
  console.error(`system deps: missing\n${why}\nInstall them, then run the tests again:\n  ${root ? '' : 'sudo '}${has('apt-get') ? cmd.replace('&& apt-get', `&& ${root ? '' : 'sudo '}apt-get`) : `(no apt-get here) install the equivalents of: ${names}`}`);
  process.exit(1);
}
console.log(`system deps: installing ${names}\n${why}`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
for (const args of [['update', '-qq'], ['install', '-y', '-qq', ...missing.map(([p]) => p)]]) {
  const r = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env });
  if (r.status !== 0) {
    console.error(`system deps: 'apt-get ${args.join(' ')}' failed (exit ${r.status}); run it by hand:\n  ${cmd}`);
    process.exit(1);
  }
}
const still = missing.filter(([pkg, , files]) => !installed(pkg, files));
if (still.length) {
  console.error(`system deps: still missing after apt-get: ${still.map(([p]) => p).join(' ')}`);
  process.exit(1);
}
console.log('system deps: installed');
