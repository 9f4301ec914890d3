import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { alibi, causalMask, createBlockMask, documentMask, flexAttention, maskMod, relativePositionBias, scoreMod, slidingWindow, softcap, type MaskMod, type MaskModFn, type ScoreMod, type ScoreModFn } from '@webattn/flex';
import '@webattn/kernels-wasm';
import { expectClose, expectCode } from '../../../test-utils/index.js';
import type { WasmDevice } from './device.js';
import fc from 'fast-check';
import { boolExpr, floatExpr } from '../../../test-utils/random-mods.js';

// flexAttention on the wasm device runs the score/mask functions compiled from flex's IR to JS tile functions inside
// the wasm flash kernel (forward and backward, block-sparse skipping). The oracle is flexAttention on the float64 CPU
// reference device — the user's JS functions on materialised scores — fed the same seeded inputs; capture gradients
// are also checked against central differences of the float64 reference forward.
describe.each([
  [1, 'wasm'],
  [2, 'wasm'],
  [2, 'js'],
] as const)('flexAttention inside the wasm flash kernel (%i threads, tile functions as %s)', (threads, tiles) => {
  let dev: T.Device;
  beforeAll(async () => {
    dev = await T.getDevice({ kind: 'wasm', wasmThreads: threads, cache: false });
    (dev as WasmDevice).pool.useWasmTiles = tiles === 'wasm';
  });
  afterAll(() => dev.destroy());

  // every case must run the wasm flex kernel (not the reference fallback on wasm memory): count its calls
  let calls = 0;
  for (const name of ['flex_attention', 'flex_attention_backward']) {
    const cfg = T.getKernel(name, 'wasm')!;
    T.registerKernel({ ...cfg, fn: (i, a, d) => (calls++, cfg.fn(i, a, d)) });
  }
  afterAll(() => expect(calls).toBeGreaterThanOrEqual(35));

  const qkv = (d: T.Device, [B, Hq, Hkv, L, S, E, Ev]: number[], grad: boolean) =>
    [
      [B!, Hq!, L!, E!],
      [B!, Hkv!, S!, E!],
      [B!, Hkv!, S!, Ev!],
    ].map((s, i) => T.randn(s, { seed: 40 + i, device: d, requiresGrad: grad })) as [T.Tensor, T.Tensor, T.Tensor];

  /** Runs flex on wasm and on the CPU reference; compares output, lse and the gradients of q, k, v (and `extra`). */
  async function compare(
    dims: number[],
    opts: (d: T.Device) => { scoreMod?: ScoreMod; blockMask?: Promise<Awaited<ReturnType<typeof createBlockMask>>>; extra?: T.Tensor[]; enableGqa?: boolean },
    tol = { atol: 3e-5, rtol: 3e-4 },
  ) {
    const run = async (d: T.Device) => {
      const [q, k, v] = qkv(d, dims, true);
      const o = opts(d);
      const bm = o.blockMask ? await o.blockMask : null;
      const r = flexAttention(q, k, v, { scoreMod: o.scoreMod ?? null, blockMask: bm, enableGqa: !!o.enableGqa, returnLse: true });
      const g = T.randn(r.output.shape, { seed: 77, device: d });
      r.output.backward(g);
      return { out: await r.output.toArray(), lse: await r.lse.toArray(), grads: await Promise.all([q, k, v, ...(o.extra ?? [])].map((t) => t.grad!.toArray())) };
    };
    const w = await run(dev);
    const c = await run(T.cpu());
    expectClose(w.out, c.out, tol.atol, tol.rtol, 'out');
    const finite = (a: ArrayLike<number>) => Array.from(a, (x) => (x === -Infinity ? -1e30 : x));
    expectClose(finite(w.lse), finite(c.lse), tol.atol, tol.rtol, 'lse');
    w.grads.forEach((g, i) => expectClose(g, c.grads[i]!, tol.atol * 4, tol.rtol * 4, `grad ${i}`));
    return w;
  }

  it('softcap score function (tanh), Lq ≠ Lkv, E ≠ Ev, forward and gradients', async () => {
    await compare([2, 3, 3, 45, 70, 16, 8], () => ({ scoreMod: softcap(2) }));
    // the tile functions ran in the form under test
    const tile = (dev as unknown as { pool: { tile: { wasm: unknown } } }).pool.tile;
    expect(tile.wasm !== null).toBe(tiles === 'wasm');
  });

  it('integer and float arithmetic of a score function: floor division, remainder, casts, conditions, min/max/pow', async () => {
    const fn = (s: number, b: number, h: number, q: number, kv: number, c: Record<string, number>) =>
      (q % 3 === 0 ? s * c.a : s - Math.floor((q - kv) / 4) * 0.1) + Math.min(Math.abs(s), 1) * Math.pow(1.5, h) - Math.max(kv % 5, 2) * 0.05 + Math.exp(-Math.abs(s)) + Math.sqrt(kv + 1) * 0.01;
    await compare([1, 2, 2, 21, 26, 8, 8], () => ({ scoreMod: scoreMod(fn, { a: 0.75 }) }), { atol: 5e-5, rtol: 5e-4 });
  });

  it('ALiBi with GQA (4 query heads on 2 key/value heads)', async () => {
    await compare([1, 4, 2, 33, 67, 8, 8], () => ({ scoreMod: alibi(4), enableGqa: true }));
  });

  it('learnable relative-position bias: gradient into the captured table', async () => {
    const L = 37;
    const tables = new Map<T.Device, T.Tensor>();
    const table = (d: T.Device) => {
      if (!tables.has(d)) tables.set(d, T.randn([2, 2 * L - 1], { seed: 5, device: d, requiresGrad: true }));
      return tables.get(d)!;
    };
    await compare([2, 2, 2, L, L, 8, 8], (d) => ({ scoreMod: relativePositionBias(table(d)), extra: [table(d)] }));
  });

  it('block masks: causal, sliding window with a score function, document (packed) mask', async () => {
    const L = 150;
    await compare([1, 2, 2, L, L, 8, 8], (d) => ({ blockMask: createBlockMask(causalMask, 1, 1, L, L, { blockSize: 64, device: d }) }));
    await compare([2, 2, 2, L, L, 8, 8], (d) => ({ scoreMod: softcap(3), blockMask: createBlockMask(slidingWindow(40), null, null, L, L, { blockSize: 64, device: d }) }));
    const docs = documentMask([0, 50, 61, 150], causalMask);
    await compare([1, 2, 2, L, L, 8, 8], (d) => ({ blockMask: createBlockMask(docs, 1, 1, L, L, { blockSize: 64, device: d }) }));
  });

  it('a block mask skips empty key tiles and its fully masked query rows give zeros (output and gradients)', async () => {
    const L = 130;
    // queries ≥ 64 see only keys of their own 64-block and none in [64, 128): rows 64..127 see nothing
    const m: MaskMod = maskMod((b, h, q, kv) => (q < 64 ? kv <= q : q >= 128 && kv >= 128));
    const w = await compare([1, 2, 2, L, L, 8, 8], (d) => ({ blockMask: createBlockMask(m, 1, 2, L, L, { blockSize: 64, device: d }) }));
    for (let h = 0; h < 2; h++) {
      for (let i = 64; i < 128; i++) {
        for (let e = 0; e < 8; e++) expect(w.out[(h * L + i) * 8 + e]).toBe(0);
        expect(w.lse[h * L + i]).toBe(-Infinity);
        for (let e = 0; e < 8; e++) expect(w.grads[0]![(h * L + i) * 8 + e]).toBe(0);
      }
    }
  });

  it('random score and mask functions (fast-check): output, lse and dq, dk, dv equal the JS functions on the reference', async () => {
    await fc.assert(
      fc.asyncProperty(floatExpr, fc.option(boolExpr, { freq: 3 }), async (body, mbody) => {
        const sm = scoreMod(eval(`(s, b, h, q, kv) => ${body}`) as ScoreModFn);
        const mm = mbody === null ? null : maskMod(eval(`(b, h, q, kv) => ${mbody}`) as MaskModFn);
        await compare([1, 2, 2, 70, 70, 8, 8], (d) => ({ scoreMod: sm, ...(mm ? { blockMask: createBlockMask(mm, 1, 2, 70, 70, { blockSize: 64, device: d }) } : {}) }), { atol: 5e-5, rtol: 5e-4 });
      }),
      { numRuns: 8, seed: 2026 },
    );
  });

  it('captured-table gradient matches central differences of the float64 reference', async () => {
    const [B, H, L, E] = [1, 2, 19, 8];
    const base = Array.from(T.readValues(T.randn([H, 2 * L - 1], { seed: 9 })));
    const g = Array.from(T.readValues(T.randn([B, H, L, E], { seed: 10 })));
    const loss64 = (vals: number[]) => {
      // float64 end to end, so the ±eps perturbation is not rounded away
      const [q, k, v] = qkv(T.cpu(), [B, H, H, L, L, E, E], false).map((t) => T.cast(t, 'float64')) as [T.Tensor, T.Tensor, T.Tensor];
      const table = T.tensor(vals, [H, 2 * L - 1], { device: T.cpu(), dtype: 'float64' });
      const o = flexAttention(q, k, v, { scoreMod: relativePositionBias(table) });
      return Array.from(T.readValues(o)).reduce((s, x, i) => s + x * g[i]!, 0);
    };
    const [q, k, v] = qkv(dev, [B, H, H, L, L, E, E], false);
    const table = T.tensor(base, [H, 2 * L - 1], { device: dev, requiresGrad: true });
    flexAttention(q, k, v, { scoreMod: relativePositionBias(table) }).backward(T.tensor(g, [B, H, L, E], { device: dev }));
    const got = await table.grad!.toArray();
    const eps = 1e-5;
    for (const at of [0, 7, 18, 25, 2 * L - 2 + 18, 2 * L - 1 + 30]) {
      const up = base.slice();
      const dn = base.slice();
      up[at] = up[at]! + eps;
      dn[at] = dn[at]! - eps;
      const fd = (loss64(up) - loss64(dn)) / (2 * eps);
      expect(Math.abs(got[at]! - fd)).toBeLessThan(2e-4 + 2e-3 * Math.abs(fd));
    }
  });

  it('a captured tensor read outside its shape raises INVALID_ARGUMENT naming the argument', async () => {
    const [q, k, v] = qkv(dev, [1, 1, 1, 20, 20, 8, 8], false);
    const short = T.randn([5], { seed: 1, device: dev });
    expectCode(() => flexAttention(q, k, v, { scoreMod: (s, b, h, qi, kv, c) => s + c.t[qi], captures: { t: short } }), 'INVALID_ARGUMENT', 'options.scoreMod');
  });

  it('the flex_attention kernel contract rejects bad attributes with stable codes', () => {
    const [q, k, v] = qkv(dev, [1, 1, 1, 8, 8, 4, 4], false);
    const base: T.FlexKernelAttrs = {
      scale: 0.5, causal: false, causalOffset: 0, maskKind: null, varlen: false,
      tileSource: '({ fwd() {}, bwd() {} })', scoreMod: true, maskMod: false, numbers: [], tensors: 0, gradSlots: [], blocks: null, argument: 'options.scoreMod',
    };
    const bad = (over: Partial<T.FlexKernelAttrs>) => () => T.runKernel('flex_attention', dev, [q, k, v], { ...base, ...over });
    expectCode(bad({ causal: true }), 'INVALID_ARGUMENT', 'options.scoreMod', 'dense layout');
    expectCode(bad({ tileSource: '({ fwd: 1 })' }), 'FLEX_COMPILE', '{ fwd, bwd }');
    expectCode(bad({ tileSource: '({ fwd( }' }), 'FLEX_COMPILE', 'did not compile');
    const blocks = { B: 1, H: 1, blockSize: 64, numQBlocks: 1, numKvBlocks: 1, kvNumBlocks: Int32Array.of(2), kvIndices: Int32Array.of(0), fullKvNumBlocks: Int32Array.of(0), fullKvIndices: Int32Array.of(0) };
    expectCode(bad({ blocks }), 'INVALID_ARGUMENT', 'block count of 2');
    expectCode(bad({ blocks: { ...blocks, kvNumBlocks: Int32Array.of(1), kvIndices: Int32Array.of(3) } }), 'INVALID_ARGUMENT', 'key block index 3');
  });
});
