import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const pkg = (name: string) => fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url));
// Tests import packages by name and run against their TypeScript sources (one module instance each).
// Subpath exports first: an alias also matches `<name>/…`, and the first match wins.
const alias = Object.fromEntries([
  ['@webattn/kernels-webgpu/internal', fileURLToPath(new URL('./packages/kernels-webgpu/src/internal.ts', import.meta.url))],
  ...['core-tensor', 'kernels-webgpu', 'kernels-wasm', 'flex', 'varlen', 'models', 'hf-adapter'].map((n) => [`@webattn/${n}`, pkg(n)]),
]);

// Worker count of the unit + gpu group: two files at a time (see the gpu project); WEBATTN_GPU_WORKERS overrides.
const gpuWorkers = Number(process.env.WEBATTN_GPU_WORKERS) || 2;

export default defineConfig({
  resolve: { alias },
  test: {
    projects: [
      {
        resolve: { alias },
        test: {
          name: 'unit',
          environment: 'node',
          // In the gpu project's group, with its worker count (vitest requires one count per group): the sequencer runs
          // the gpu files first (projects by name), so unit's ~22 s of small files fill the tail where one gpu worker
          // would wait for the other, instead of running first on one worker (vitest's default on 2 cores) for ~40 s.
          maxWorkers: gpuWorkers,
          sequence: { groupOrder: 1 },
          include: ['packages/*/src/**/*.test.ts', 'apps/*/src/**/*.test.ts'],
          exclude: ['**/*.gpu.test.ts', '**/*.browser.test.ts', '**/node_modules/**'],
          testTimeout: 60_000,
        },
      },
      {
        resolve: { alias },
        test: {
          name: 'gpu',
          environment: 'node',
          include: ['packages/*/src/**/*.gpu.test.ts', 'apps/*/src/**/*.gpu.test.ts'],
          pool: 'forks',
          // Two files at a time, after the unit project and before the browser one (groups run in order). With an empty
          // Mesa shader cache (CI) llvmpipe's compile of each pipeline (LLVM, one thread) dominates this project: the
          // second core halves its wall time. vitest's default on a 2-core machine is one worker (cores − 1).
          // WEBATTN_GPU_WORKERS overrides (1: the old sequential run).
          maxWorkers: gpuWorkers,
          sequence: { groupOrder: 1 },
          // llvmpipe with 4-wide (SSE) instead of 8-wide (AVX2) vectors, as on a CPU without AVX: the same WGSL, the
          // same results to check, less LLVM work per pipeline (CPU time of three cold compiles, two interleaved
          // A/B runs on the shared CI box: 56 and 52 s at 128 bits, 95 and 91 s at 256). Set it to 256 to test the wide path.
          env: { LP_NATIVE_VECTOR_WIDTH: process.env.LP_NATIVE_VECTOR_WIDTH || '128' },
          testTimeout: 180_000,
          hookTimeout: 120_000,
        },
      },
      {
        resolve: { alias },
        test: {
          name: 'browser',
          environment: 'node',
          include: ['packages/*/src/**/*.browser.test.ts', 'docs/demos/**/*.browser.test.ts'],
          pool: 'forks',
          // one file at a time, alone: headless Chromium with SwiftShader WebGPU takes the whole machine
          fileParallelism: false,
          sequence: { groupOrder: 2 },
          testTimeout: 180_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
