import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { lastSdpaBackend, scaledDotProductAttention, sdpaKernel } from '@webattn/kernels-webgpu';
import { flashAttnVarlen } from '@webattn/varlen';
import { flexAttention } from '@webattn/flex';
import '@webattn/kernels-wasm';
import { expectClose } from '../../../test-utils/index.js';

// The front doors on the wasm device: SDPA's flash backend and flashAttnVarlen run the wasm flash kernels
// (forward and backward through autograd); flex runs its functions inside the wasm flash kernel (flex.test.ts). The oracle
// is the math backend on the float64 CPU reference device, fed the same seeded inputs.
describe('front doors on the wasm device', () => {
  let dev: T.Device;
  beforeAll(async () => {
    dev = await T.getDevice({ kind: 'wasm', wasmThreads: 2 });
  });
  afterAll(() => dev.destroy());

  const inputs = (d: T.Device, shapes: number[][], grad: boolean) =>
    shapes.map((s, i) => T.randn(s, { seed: 10 + i, device: d, requiresGrad: grad }));

  it('SDPA picks flash (the wasm kernel): causal GQA with a bool mask, forward and gradients vs float64 math', async () => {
    const shapes = [[2, 4, 37, 16], [2, 2, 53, 16], [2, 2, 53, 8]];
    const mk = (d: T.Device) => {
      const [q, k, v] = inputs(d, shapes, true) as [T.Tensor, T.Tensor, T.Tensor];
      const mask = T.ge(T.rand([2, 1, 37, 53], { seed: 3, device: d }), 0.25);
      return { q, k, v, mask };
    };
    const a = mk(dev);
    const out = scaledDotProductAttention(a.q, a.k, a.v, { isCausal: true, enableGqa: true, attnMask: a.mask });
    expect(lastSdpaBackend()).toBe('flash');
    const r = mk(T.cpu());
    const ref = sdpaKernel(['math'], () => scaledDotProductAttention(r.q, r.k, r.v, { isCausal: true, enableGqa: true, attnMask: r.mask }));
    expectClose(await out.toArray(), await ref.toArray(), 2e-5, 2e-4, 'out');
    const g = (d: T.Device) => T.randn([2, 4, 37, 8], { seed: 4, device: d });
    out.backward(g(dev));
    ref.backward(g(T.cpu()));
    for (const n of ['q', 'k', 'v'] as const) expectClose(await a[n].grad!.toArray(), await r[n].grad!.toArray(), 5e-5, 5e-4, `d${n}`);
  });

  it('SDPA with dropout falls back to math and says why flash refused when only flash is allowed', () => {
    const [q, k, v] = inputs(dev, [[1, 1, 4, 4], [1, 1, 4, 4], [1, 1, 4, 4]], false) as [T.Tensor, T.Tensor, T.Tensor];
    expect(() => sdpaKernel(['flash'], () => scaledDotProductAttention(q, k, v, { dropoutP: 0.5 }))).toThrow(/dropout/);
  });

  it('flashAttnVarlen runs the wasm kernel on the packed layout (bottom-right causal), with gradients', async () => {
    const lens = [3, 17, 1, 29];
    const total = lens.reduce((x, y) => x + y);
    const cu = [0, 3, 20, 21, 50];
    const mk = (d: T.Device) => inputs(d, [[total, 4, 16], [total, 2, 16], [total, 2, 16]], true) as [T.Tensor, T.Tensor, T.Tensor];
    const [q, k, v] = mk(dev);
    const out = flashAttnVarlen(q, k, v, { cuSeqlensQ: cu, cuSeqlensK: cu, maxSeqlenQ: 29, maxSeqlenK: 29, causal: true });
    const [qc, kc, vc] = mk(T.cpu());
    // oracle: each sequence alone through SDPA math on the CPU reference (head-major [1, H, L, E])
    const refs: T.Tensor[] = [];
    for (let b = 0; b < lens.length; b++) {
      const s = (t: T.Tensor) => t.slice(0, cu[b]!, cu[b + 1]!).transpose(0, 1).unsqueeze(0);
      const o = sdpaKernel(['math'], () => scaledDotProductAttention(s(qc), s(kc), s(vc), { isCausal: true, enableGqa: true }));
      refs.push(o.squeeze(0).transpose(0, 1));
    }
    const ref = T.cat(refs, 0);
    expectClose(await out.toArray(), await ref.toArray(), 2e-5, 2e-4, 'varlen out');
    const g = (d: T.Device) => T.randn([total, 4, 16], { seed: 6, device: d });
    out.backward(g(dev));
    ref.backward(g(T.cpu()));
    expectClose(await k.grad!.toArray(), await kc.grad!.toArray(), 5e-5, 5e-4, 'varlen dk');
  });

  it('flexAttention with a bare score function runs on the wasm device', async () => {
    const mk = (d: T.Device) => inputs(d, [[1, 2, 12, 8], [1, 2, 12, 8], [1, 2, 12, 8]], false) as [T.Tensor, T.Tensor, T.Tensor];
    const soft = (s: number) => 5 * Math.tanh(s / 5);
    const out = flexAttention(...mk(dev), { scoreMod: soft });
    const ref = flexAttention(...mk(T.cpu()), { scoreMod: soft });
    expectClose(await out.toArray(), await ref.toArray(), 1e-6, 1e-5, 'flex');
  });
});
