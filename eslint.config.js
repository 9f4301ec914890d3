// ESLint 9 flat config: typescript-eslint's recommended rules (type-unaware, so it runs without a
// TypeScript program). `npm run lint` checks every package, app and helper.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  // AssemblyScript sources (kernels-wasm/assembly) are not TypeScript: decorators on functions
  { ignores: ['**/dist/**', '**/node_modules/**', 'docs/api/**', 'coverage/**', '.turbo/**', 'bench-results/**', 'packages/kernels-wasm/assembly/**', 'packages/kernels-wasm/src/wasm-bytes.ts', '.dev*/**', 'docs/.vitepress/cache/**', 'docs/.vitepress/dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts', '**/*.mjs', '**/*.js'],
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: {
        console: 'readonly',
        process: 'readonly',
        performance: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        navigator: 'readonly',
        window: 'readonly',
        document: 'readonly',
        globalThis: 'readonly',
        FinalizationRegistry: 'readonly',
        WeakRef: 'readonly',
        GPUBufferUsage: 'readonly',
        GPUMapMode: 'readonly',
        GPUShaderStage: 'readonly',
        URL: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
      },
    },
    rules: {
      // unused arguments are part of documented callback signatures (score_mod(s, b, h, q, kv))
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
);
