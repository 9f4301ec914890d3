// Bundled and run inside Chromium by kernels.browser.test.ts.
import * as T from '@webattn/core-tensor';
import '@webattn/kernels-webgpu';

export async function run() {
  const gpu = await T.getDevice({ kind: 'webgpu' });
  const cpu = T.cpu();
  const compute = (d: T.Device) => {
    const a = T.randn([3, 19, 13], { seed: 11, device: d });
    const b = T.randn([13, 7], { seed: 12, device: d });
    const w = T.randn([7], { seed: 13, device: d });
    return T.layerNorm(T.softmax(T.matmul(a, b)), [7], w, null);
  };
  const got = Array.from(await compute(gpu).toArray());
  const want = Array.from(await compute(cpu).toArray());
  const info = gpu.info;
  gpu.destroy();
  return { got, want, info };
}
