import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runInChromium } from '../../../test-utils/browser.js';
import { modelCase, relErr } from '../test/parity.js';

/**
 * In headless Chromium (navigator.gpu on SwiftShader): fromPretrained('/models/tiny-gpt2') reads
 * config.json and model.safetensors through the page's fetch (paths served next to the page), runs
 * sdpa and flex_attention, and the logits come back to be compared with transformers' here. The page
 * is one bundled file: this also checks that hf-adapter bundles without Node-only chunks.
 */
describe('fromPretrained in the browser', () => {
  it('loads over fetch, switches attention, matches transformers', async () => {
    const g = modelCase('gpt2');
    const b64 = (f: string) => readFileSync(join(g.dir, f)).toString('base64');
    const ids = g.ref('input_ids');
    const dir = mkdtempSync(join(tmpdir(), 'webattn-hf-browser-'));
    const entry = join(dir, 'entry.ts');
    writeFileSync(
      entry,
      `import { getDevice, tensor } from '@webattn/core-tensor';
import '@webattn/kernels-webgpu';
import { fromPretrained } from '@webattn/hf-adapter';
const FILES: Record<string, string> = { 'config.json': ${JSON.stringify(b64('config.json'))}, 'model.safetensors': ${JSON.stringify(b64('model.safetensors'))} };
export async function run() {
  const realFetch = globalThis.fetch.bind(globalThis);
  const asked: string[] = [];
  // a static server next to the page: /models/tiny-gpt2/<file>
  globalThis.fetch = (async (url: string) => {
    asked.push(String(url));
    const m = /^\\/models\\/tiny-gpt2\\/(.+)$/.exec(String(url));
    if (!m || !FILES[m[1]!]) return new Response('not found', { status: 404 });
    return realFetch('data:application/octet-stream;base64,' + FILES[m[1]!]);
  }) as typeof fetch;
  const device = await getDevice();
  const model = await fromPretrained('/models/tiny-gpt2', { device });
  const inputIds = tensor(Int32Array.from(${JSON.stringify(Array.from(ids.data as Int32Array))}), ${JSON.stringify(ids.shape)}, { dtype: 'int32', device });
  const out: Record<string, number[]> = {};
  out.sdpa = Array.from(await (await model.forward({ inputIds })).logits.toArray());
  model.setAttnImplementation('flex_attention');
  out.flex = Array.from(await (await model.forward({ inputIds })).logits.toArray());
  return { adapter: device.info.adapter, backend: device.info.backend, asked, attn: model.config.attnImplementation, out };
}
`,
    );
    try {
      const { result } = await runInChromium<{ adapter: string; backend: string; asked: string[]; attn: string; out: Record<string, number[]> }>(entry);
      expect(result.backend).toBe('webgpu');
      expect(result.asked).toEqual(['/models/tiny-gpt2/config.json', '/models/tiny-gpt2/model.safetensors']);
      expect(result.attn).toBe('flex_attention');
      const ref = g.ref('eager.logits').data as Float32Array;
      expect(relErr(result.out['sdpa']!, ref)).toBeLessThanOrEqual(1e-4);
      expect(relErr(result.out['flex']!, ref)).toBeLessThanOrEqual(1e-4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
