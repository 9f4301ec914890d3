// Runs in headless Chromium (bundled by test-utils/browser.ts): the wasm backend on the page's threads.
import * as T from '@webattn/core-tensor';
import '@webattn/kernels-wasm';
import { createBlockMask, flexAttention, slidingWindow, softcap } from '@webattn/flex';

export async function run() {
  const dev = await T.getDevice({ kind: 'wasm', wasmThreads: 2 });
  const B = 1, H = 2, L = 70, E = 16;
  const attrs = { scale: 0.25, causal: true, causalOffset: 0, maskKind: null, varlen: false } as const;
  const mk = (d: T.Device, s: number) => T.randn([B, H, L, E], { seed: s, device: d });
  const [out] = T.runKernel('flash_attention', dev, [mk(dev, 1), mk(dev, 2), mk(dev, 3)], attrs);
  const c = T.cpu();
  const s = T.mul(T.matmul(mk(c, 1), mk(c, 2).transpose(-1, -2)), 0.25);
  const rows = T.arange(0, L, 1, { dtype: 'int32', device: c }).reshape([L, 1]);
  const cols = T.arange(0, L, 1, { dtype: 'int32', device: c }).reshape([1, L]);
  const ref = T.matmul(T.softmax(T.where(T.le(cols, rows), s, -Infinity)), mk(c, 3));
  const a = T.randn([33, 65], { seed: 4, device: dev });
  const w = T.randn([65, 17], { seed: 5, device: dev });
  const mm = T.matmul(a, w);
  const mmRef = T.matmul(T.randn([33, 65], { seed: 4, device: c }), T.randn([65, 17], { seed: 5, device: c }));
  // flex: the score/mask functions as JS tile functions inside the wasm kernel (on the page's worker threads)
  const flexRun = async (d: T.Device) => {
    const [q, k, v] = [1, 2, 3].map((sd) => T.randn([B, H, 130, E], { seed: sd, device: d, requiresGrad: true }));
    const bm = await createBlockMask(slidingWindow(50), 1, 1, 130, 130, { blockSize: 64, device: d });
    const o = flexAttention(q!, k!, v!, { scoreMod: softcap(2), blockMask: bm });
    o.backward(T.randn(o.shape, { seed: 9, device: d }));
    return [...(await o.toArray()), ...(await q!.grad!.toArray())];
  };
  const flex = Array.from(await flexRun(dev));
  const flexRef = Array.from(await flexRun(c));
  const result = {
    flex,
    flexRef,
    adapter: dev.info.adapter,
    isolated: (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated ?? false,
    out: Array.from(await out!.toArray()),
    ref: Array.from(await ref.toArray()),
    mm: Array.from(await mm.toArray()),
    mmRef: Array.from(await mmRef.toArray()),
  };
  dev.destroy();
  return result;
}
