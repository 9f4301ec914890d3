// Bundled (minified, as an app ships) and run inside Chromium by flex.browser.test.ts.
import * as T from '@webattn/core-tensor';
import '@webattn/kernels-webgpu';
import { createBlockMask, flexAttention, relativePositionBias, scoreMod, slidingWindow, maskMod } from '@webattn/flex';

export async function run() {
  const gpu = await T.getDevice({ kind: 'webgpu' });
  const cpu = T.cpu();
  const L = 40;
  const compute = async (d: T.Device) => {
    const q = T.randn([1, 2, L, 16], { seed: 1, device: d, requiresGrad: true });
    const k = T.randn([1, 2, L, 16], { seed: 2, device: d });
    const v = T.randn([1, 2, L, 16], { seed: 3, device: d });
    const table = T.randn([2, 2 * L - 1], { seed: 4, device: d, requiresGrad: true });
    // a user mod whose captures arrive through the parameter (minifiers keep property names)
    const slope = 0.05;
    const tilt = scoreMod((s, b, h, qi, kv, { slope: w }) => s - w * Math.abs(qi - kv), { slope });
    const rel = relativePositionBias(table);
    const both = scoreMod((s, b, h, qi, kv, c) => s + c.bias[h][qi - kv + c.offset] - c.slope * Math.abs(qi - kv), { bias: table, offset: L - 1, slope });
    const window = 12;
    const mask = maskMod((b, h, qi, kv, c) => qi >= kv && qi - kv <= c.window, { window });
    const bm = await createBlockMask(mask, null, null, L, L, { device: d, blockSize: 64 });
    const bm2 = await createBlockMask(slidingWindow(20), null, null, L, L, { device: d, blockSize: 64 });
    const o1 = flexAttention(q, k, v, { scoreMod: both, blockMask: bm });
    const o2 = flexAttention(q, k, v, { scoreMod: tilt, blockMask: bm2 });
    const o3 = flexAttention(q, k, v, { scoreMod: rel });
    const loss = T.add(T.add(T.sum(T.mul(o1, o1)), T.sum(o2)), T.sum(o3));
    loss.backward();
    return {
      out: [...(await o1.toArray()), ...(await o2.toArray()), ...(await o3.toArray())],
      dq: Array.from(await q.grad!.toArray()),
      dtable: Array.from(await table.grad!.toArray()),
    };
  };
  const got = await compute(gpu);
  const want = await compute(cpu);
  // the closure-capture convenience fails with a message that names minification
  let closureError = '';
  try {
    const offset = (Number(globalThis.location?.port) % 3) + 1; // not a constant a minifier could inline
    flexAttention(T.randn([1, 1, 8, 4], { seed: 5, device: cpu }), T.randn([1, 1, 8, 4], { seed: 6, device: cpu }), T.randn([1, 1, 8, 4], { seed: 7, device: cpu }), {
      scoreMod: scoreMod((s) => s + offset, { offset }),
    });
  } catch (e) {
    closureError = String(e);
  }
  const src = String((b: number, h: number, qIdx: number, kvIdx: number) => qIdx >= kvIdx);
  const info = gpu.info;
  gpu.destroy();
  return { got, want, info, closureError, src };
}
