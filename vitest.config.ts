import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const pkg = (name: string) => fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url));
// Tests import packages by name and run against their TypeScript sources (one module instance each).
// Subpath exports first: an alias also matches `<name>/…`, and the first match wins.
const alias = Object.fromEntries([
  ['@webattn/kernels-webgpu/internal', fileURLToPath(new URL('./packages/kernels-webgpu/src/internal.ts', import.meta.url))],
  ...['core-tensor', 'kernels-webgpu', 'kernels-wasm', 'flex', 'varlen', 'models', 'hf-adapter'].map((n) => [`@webattn/${n}`, pkg(n)]),
]);

export default defineConfig({
  resolve: { alias },
  test: {
    projects: [
      {
        resolve: { alias },
        test: {
          name: 'unit',
          environment: 'node',
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
          fileParallelism: false,
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
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
