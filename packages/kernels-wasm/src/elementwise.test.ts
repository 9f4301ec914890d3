import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import './index.js';
import { minParallelElements } from './elementwise.js';
import { expectClose } from '../../../test-utils/index.js';
import { expectOpCaseMatchesReference, OP_CASES } from '../../../test-utils/op-cases.js';

// Oracle: the float64 CPU reference backend fed the same seeded inputs. On the 2-thread pool every job is split
// over both threads (minParallelElements(0)), so the threaded row split is what runs there.
const cpu = T.cpu();
const NEW_KERNELS = ['where', 'copy_into', 'embedding', 'embedding_backward', 'unary', 'binary', 'reduce', 'softmax', 'layer_norm', 'layer_norm_backward', 'gelu_backward', 'cross_entropy', 'cross_entropy_backward'];

/** Counts the wasm kernels (not the CPU fallback) that ran while `fn` ran: wraps the registered wasm entries. */
function countWasm<R>(fn: () => R): { result: R; ran: Map<string, number> } {
  const ran = new Map<string, number>();
  const saved = NEW_KERNELS.map((n) => T.getKernel(n, 'wasm')!);
  for (const cfg of saved) {
    T.registerKernel({
      ...cfg,
      fn: (inputs, attrs, device) => {
        ran.set(cfg.name, (ran.get(cfg.name) ?? 0) + 1);
        return cfg.fn(inputs, attrs, device);
      },
    });
  }
  try {
    return { result: fn(), ran };
  } finally {
    for (const cfg of saved) T.registerKernel(cfg);
  }
}

for (const threads of [1, 2]) {
  describe(`wasm elementwise kernels on ${threads} thread(s) match the float64 reference`, () => {
    let dev: T.Device;
    let prev = 0;
    beforeAll(async () => {
      dev = await T.getDevice({ kind: 'wasm', wasmThreads: threads, cache: false });
      prev = minParallelElements(threads === 1 ? undefined : 0);
    });
    afterAll(() => {
      minParallelElements(prev);
      dev?.destroy();
    });

    it('registers every kernel under backend wasm', () => {
      for (const n of NEW_KERNELS) expect(T.listKernels('wasm'), n).toContain(n);
    });

    describe('op-case table (forward and gradients through autograd)', () => {
      for (const c of OP_CASES) {
        it(c.name, () => expectOpCaseMatchesReference(c, dev));
      }
    });

    const both = (shape: number[], seed: number, scale = 1) =>
      [dev, cpu].map((d) => T.mul(T.randn(shape, { seed, device: d }), scale)) as [T.Tensor, T.Tensor];

    it('every unary op on odd lengths and a strided view, with the wasm kernel running', async () => {
      for (const n of [1, 3, 5, 7, 13, 8195]) {
        const [x, xc] = both([2, n], 11 + n, 2);
        const pos = (t: T.Tensor) => T.add(T.abs(t), 0.25);
        const fns: [string, (t: T.Tensor) => T.Tensor][] = [
          ['neg', T.neg], ['exp', T.exp], ['log', (t) => T.log(pos(t))], ['tanh', T.tanh], ['sqrt', (t) => T.sqrt(pos(t))],
          ['abs', T.abs], ['relu', T.relu], ['sigmoid', T.sigmoid], ['pow 3', (t) => T.pow(t, 3)], ['pow 0.5', (t) => T.pow(pos(t), 0.5)],
          ['gelu', (t) => T.gelu(t)], ['gelu tanh', (t) => T.gelu(t, 'tanh')], ['transpose contiguous', (t) => T.contiguous(t.transpose(0, 1))],
        ];
        for (const [name, f] of fns) {
          const { result, ran } = countWasm(() => f(x));
          // ([2, 1] transposed is already contiguous: no copy runs)
          if (n > 1 || !name.startsWith('transpose')) expect(ran.get('unary') ?? 0, name).toBeGreaterThan(0);
          expectClose(await result.toArray(), await f(xc).toArray(), 1e-6, 2e-6, `${name} n=${n}`);
        }
      }
    });

    it('contiguous copies of transposed and permuted views (tiled transpose path) equal the reference', async () => {
      const views: [string, (t: T.Tensor) => T.Tensor][] = [
        ['2-d transpose', (t) => t.reshape([70, 45]).transpose(0, 1)],
        ['batched transpose', (t) => t.reshape([3, 30, 35]).transpose(1, 2)],
        ['permute 3-d', (t) => t.reshape([5, 21, 30]).permute([2, 0, 1])],
        ['sliced transpose', (t) => t.reshape([70, 45]).slice(1, 3, 40, 2).transpose(0, 1)],
        ['head split', (t) => t.reshape([2, 35, 3, 15]).permute([0, 2, 1, 3])],
      ];
      for (const [name, view] of views) {
        const [x, xc] = both([3150], 41);
        const { result, ran } = countWasm(() => T.contiguous(view(x)));
        expect(ran.get('unary'), name).toBe(1);
        expect(Array.from(await result.toArray()), name).toEqual(Array.from(await T.contiguous(view(xc)).toArray()));
      }
    });

    it('where with broadcast cond / a / b, scalar sides, strided operands and special values', async () => {
      const cases: [string, (d: T.Device) => [T.Tensor, T.Tensor | number, T.Tensor | number]][] = [
        ['broadcast', (d) => [T.gt(T.randn([4, 1, 7], { seed: 1, device: d }), 0), T.randn([3, 7], { seed: 2, device: d }), T.randn([4, 3, 1], { seed: 3, device: d })]],
        ['scalar b', (d) => [T.gt(T.randn([5, 9], { seed: 4, device: d }), 0), T.randn([5, 9], { seed: 5, device: d }), -Infinity]],
        ['transposed cond', (d) => [T.gt(T.randn([9, 5], { seed: 6, device: d }), 0).transpose(0, 1), NaN, T.randn([5, 9], { seed: 7, device: d })]],
      ];
      for (const [name, mk] of cases) {
        const [c, a, b] = mk(dev);
        const [cc, ac, bc] = mk(cpu);
        const { result, ran } = countWasm(() => T.where(c, a, b));
        expect(ran.get('where'), name).toBe(1);
        expect(Array.from(await result.toArray()), name).toEqual(Array.from(await T.where(cc, ac, bc).toArray()));
      }
    });

    it('copy_into: same shape, broadcast source, transposed source, into strided views and onto itself', async () => {
      const cases: [string, (d: T.Device) => [T.Tensor, T.Tensor]][] = [
        ['same shape', (d) => [T.zeros([5, 7], { device: d }), T.randn([5, 7], { seed: 1, device: d })]],
        ['broadcast row', (d) => [T.zeros([4, 9], { device: d }), T.randn([9], { seed: 2, device: d })]],
        ['broadcast column', (d) => [T.zeros([4, 9], { device: d }), T.randn([4, 1], { seed: 3, device: d })]],
        ['transposed', (d) => [T.zeros([6, 5], { device: d }), T.randn([5, 6], { seed: 4, device: d }).transpose(0, 1)]],
        ['into a strided slice', (d) => [T.zeros([6, 5], { device: d }).slice(0, 1, 6, 2), T.randn([3, 5], { seed: 5, device: d })]],
        ['into a column slice', (d) => [T.zeros([6, 9], { device: d }).slice(1, 2, 7), T.randn([6, 1], { seed: 7, device: d })]],
        ['into a transposed view', (d) => [T.zeros([4, 7], { device: d }).transpose(0, 1), T.randn([7, 4], { seed: 8, device: d })]],
        ['into a 3-d permuted slice', (d) => [T.zeros([3, 8, 5], { device: d }).permute([2, 0, 1]).slice(2, 1, 7, 3), T.randn([5, 3, 2], { seed: 9, device: d })]],
      ];
      for (const [name, mk] of cases) {
        const [dst, src] = mk(dev);
        const [dstc, srcc] = mk(cpu);
        const { ran } = countWasm(() => T.copyInto(dst, src));
        expect(ran.get('copy_into'), name).toBe(1);
        T.copyInto(dstc, srcc);
        // the whole storage: the copy lands in place and nothing outside the view changes
        expect(Array.from(dst.storage.cpu!), name).toEqual(Array.from(dstc.storage.cpu!));
      }
      const x = T.randn([3, 4], { seed: 6, device: dev });
      const before = Array.from(await x.toArray());
      T.copyInto(x.slice(0, 1, 3), x.slice(0, 0, 2)); // overlapping rows of one storage
      expect(Array.from(await x.toArray())).toEqual([...before.slice(0, 4), ...before.slice(0, 8)]);
    });

    it('embedding forward and backward (repeated ids) and an out-of-range id refused like the reference', async () => {
      const ids = [3, 0, 10, 3, 7, 1, 3, 9, 10, 0, 5];
      const res = [];
      for (const dv of [dev, cpu]) {
        const w = T.randn([11, 13], { seed: 31, device: dv, requiresGrad: true });
        const { result: e, ran } = countWasm(() => T.embedding(w, T.tensor(ids, [ids.length], { dtype: 'int32', device: dv })));
        const { ran: ranB } = countWasm(() => T.sum(T.mul(e, T.randn([ids.length, 13], { seed: 32, device: dv }))).backward());
        if (dv === dev) {
          expect(ran.get('embedding')).toBe(1);
          expect(ranB.get('embedding_backward')).toBe(1);
        }
        res.push([await e.toArray(), await w.grad!.toArray()]);
        expect(() => T.embedding(w, T.tensor([1, 11], [2], { dtype: 'int32', device: dv }))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
      }
      expect(Array.from(res[0]![0]!)).toEqual(Array.from(res[1]![0]!));
      expectClose(res[0]![1]!, res[1]![1]!, 1e-6, 1e-6, 'embedding grad');
    });

    it('unary special values: exp overflow is +Infinity, NaN propagates, relu(NaN) = 0 like the reference', async () => {
      const vals = [NaN, Infinity, -Infinity, 100, -100, 0, -0, 88.7, 89, -104];
      const ops: ((t: T.Tensor) => T.Tensor)[] = [T.exp, T.neg, T.abs, T.relu, T.sigmoid, T.tanh, T.sqrt, T.log, (t) => T.gelu(t), (t) => T.gelu(t, 'tanh')];
      for (const f of ops) {
        const got = await f(T.tensor(vals, [vals.length], { device: dev })).toArray();
        const want = await f(T.tensor(vals, [vals.length], { device: cpu })).toArray();
        expectClose(got, want, 1e-6, 2e-6, f.name || 'gelu');
      }
    });

    it('binary ops on contiguous, scalar, row-broadcast, column-broadcast and transposed layouts; NaN propagates', async () => {
      const ops = [T.add, T.sub, T.mul, T.div, T.maximum, T.minimum];
      const layouts: [string, (d: T.Device) => [T.Tensor, T.Tensor]][] = [
        ['same shape odd', (d) => [T.randn([3, 37], { seed: 1, device: d }), T.randn([3, 37], { seed: 2, device: d })]],
        ['scalar', (d) => [T.randn([5, 9], { seed: 3, device: d }), T.randn([], { seed: 4, device: d })]],
        ['scalar first', (d) => [T.randn([1], { seed: 4, device: d }), T.randn([4, 5], { seed: 3, device: d })]],
        ['row broadcast', (d) => [T.randn([6, 4, 11], { seed: 5, device: d }), T.randn([11], { seed: 6, device: d })]],
        ['column broadcast', (d) => [T.randn([6, 11], { seed: 7, device: d }), T.randn([6, 1], { seed: 8, device: d })]],
        ['outer product', (d) => [T.randn([7, 1], { seed: 9, device: d }), T.randn([1, 9], { seed: 10, device: d })]],
        ['transposed', (d) => [T.randn([9, 7], { seed: 11, device: d }).transpose(0, 1), T.randn([7, 9], { seed: 12, device: d })]],
        ['rank 8', (d) => [T.randn([2, 1, 2, 3, 1, 2, 3, 2], { seed: 13, device: d }), T.randn([2, 2, 1, 3, 2, 1, 3, 1], { seed: 14, device: d })]],
        ['long rows', (d) => [T.randn([3, 9001], { seed: 15, device: d }), T.randn([3, 1], { seed: 16, device: d })]],
      ];
      for (const [name, mk] of layouts) {
        const [a, b] = mk(dev);
        const [ac, bc] = mk(cpu);
        for (const f of ops) {
          const { result, ran } = countWasm(() => f(a, b));
          expect(ran.get('binary'), `${name} ${f.name}`).toBe(1);
          expectClose(await result.toArray(), await f(ac, bc).toArray(), 1e-6, 2e-6, `${name} ${f.name}`);
        }
      }
      const x = T.tensor([NaN, 1, -Infinity, 2, 3], [5], { device: dev });
      const y = T.tensor([0, NaN, -Infinity, 2, 1], [5], { device: dev });
      expect(Array.from(await T.maximum(x, y).toArray())).toEqual([NaN, NaN, -Infinity, 2, 3]);
      expect(Array.from(await T.minimum(x, y).toArray())).toEqual([NaN, NaN, -Infinity, 2, 1]);
      expect(Array.from(await T.add(x, y).toArray())).toEqual([NaN, NaN, -Infinity, 4, 4]);
    });

    it('sum / max / min over every axis, odd and long, and NaN in max', async () => {
      for (const shape of [[3, 5, 7], [2, 1030, 3], [1, 9000], [4, 2, 1027]]) {
        const [x, xc] = both(shape, shape[1]!);
        for (let axis = 0; axis < shape.length; axis++) {
          for (const f of [T.sum, T.max, T.min]) {
            const { result, ran } = countWasm(() => f(x, axis));
            expect(ran.get('reduce')).toBe(1);
            expectClose(await result.toArray(), await f(xc, axis).toArray(), 2e-4, 2e-5, `${f.name} ${shape} axis ${axis}`);
          }
        }
      }
      const z = T.tensor([[1, NaN, 3, 4, 5], [1, 2, 3, 4, 5]], undefined, { device: dev });
      expect(Array.from(await T.max(z, 1).toArray())).toEqual([NaN, 5]);
      expect(Array.from(await T.max(z, 0).toArray())).toEqual([1, NaN, 3, 4, 5]);
      expect((await T.sum(z, 1).toArray())[0]).toBeNaN();
    });

    it('softmax and logSoftmax: odd rows, −∞ rows, partly −∞ rows, large scores, NaN rows', async () => {
      for (const n of [1, 2, 3, 5, 8, 13, 1001]) {
        const [x, xc] = both([5, n], n, 20);
        for (const f of [T.softmax, T.logSoftmax]) {
          const { result, ran } = countWasm(() => f(x));
          expect(ran.get('softmax')).toBe(1);
          expectClose(await result.toArray(), await f(xc).toArray(), 1e-6, 2e-5, `${f.name} n=${n}`);
        }
      }
      const rows = [
        [-Infinity, -Infinity, -Infinity, -Infinity, -Infinity],
        [-Infinity, 1, -Infinity, 2, 3],
        [1e30, 1e30, -1e30, 0, 5],
        [1, NaN, 2, 3, 4],
      ];
      for (const f of [T.softmax, T.logSoftmax]) {
        const got = await f(T.tensor(rows, undefined, { device: dev })).toArray();
        const want = await f(T.tensor(rows, undefined, { device: cpu })).toArray();
        expectClose(got, want, 1e-6, 1e-5, f.name);
      }
      expect(Array.from((await T.softmax(T.tensor(rows, undefined, { device: dev })).toArray()).slice(0, 5))).toEqual([0, 0, 0, 0, 0]);
    });

    it('layerNorm forward and backward (odd widths, weight only, bias only, both) vs the reference', async () => {
      for (const d of [1, 3, 5, 64, 771]) {
        for (const [hw, hb] of [[false, false], [true, false], [false, true], [true, true]]) {
          const mk = (dv: T.Device) => {
            const x = T.add(T.mul(T.randn([7, d], { seed: d, device: dv }), 3), 1.5).detach().requiresGrad_(true);
            const w = hw ? T.randn([d], { seed: d + 1, device: dv, requiresGrad: true }) : null;
            const b = hb ? T.randn([d], { seed: d + 2, device: dv, requiresGrad: true }) : null;
            return { x, w, b };
          };
          const r = [];
          for (const dv of [dev, cpu]) {
            const { x, w, b } = mk(dv);
            const { result: y, ran } = countWasm(() => T.layerNorm(x, [d], w, b, 1e-5));
            if (dv === dev) expect(ran.get('layer_norm')).toBe(1);
            const g = T.randn([7, d], { seed: 99, device: dv });
            const { ran: ranB } = countWasm(() => y.backward(g));
            if (dv === dev) expect(ranB.get('layer_norm_backward')).toBe(1);
            r.push([await y.toArray(), await x.grad!.toArray(), w ? await w.grad!.toArray() : null, b ? await b.grad!.toArray() : null]);
          }
          const label = `d=${d} w=${hw} b=${hb}`;
          expectClose(r[0]![0]!, r[1]![0]!, 2e-5, 2e-4, `${label} y`);
          expectClose(r[0]![1]!, r[1]![1]!, 5e-5, 5e-4, `${label} dx`);
          if (hw) expectClose(r[0]![2]!, r[1]![2]!, 5e-5, 5e-4, `${label} dw`);
          if (hb) expectClose(r[0]![3]!, r[1]![3]!, 5e-5, 5e-4, `${label} db`);
        }
      }
    });

    it('gelu backward (exact and tanh) and crossEntropy forward/backward with ignoreIndex on odd class counts', async () => {
      for (const approx of ['none', 'tanh'] as const) {
        const grads = [];
        for (const dv of [dev, cpu]) {
          const x = T.mul(T.randn([3, 1027], { seed: 21, device: dv }), 3).detach().requiresGrad_(true);
          const { ran } = countWasm(() => T.sum(T.mul(T.gelu(x, approx), T.randn([3, 1027], { seed: 22, device: dv }))).backward());
          if (dv === dev) expect(ran.get('gelu_backward')).toBe(1);
          grads.push(await x.grad!.toArray());
        }
        expectClose(grads[0]!, grads[1]!, 1e-6, 1e-5, `gelu ${approx} grad`);
      }
      for (const c of [1, 3, 7, 50257 % 1000]) {
        const n = 9;
        const ids = Array.from({ length: n }, (_, i) => (i % 4 === 3 ? -100 : (i * 5) % c));
        const res = [];
        for (const dv of [dev, cpu]) {
          const l = T.mul(T.randn([n, c], { seed: c, device: dv }), 4).detach().requiresGrad_(true);
          const { result: loss, ran } = countWasm(() => T.crossEntropy(l, T.tensor(ids, [n], { dtype: 'int32', device: dv })));
          const { ran: ranB } = countWasm(() => loss.backward());
          if (dv === dev) {
            expect(ran.get('cross_entropy')).toBe(1);
            expect(ranB.get('cross_entropy_backward')).toBe(1);
          }
          res.push([await loss.toArray(), await l.grad!.toArray()]);
        }
        expectClose(res[0]![0]!, res[1]![0]!, 1e-5, 1e-5, `ce c=${c}`);
        expectClose(res[0]![1]!, res[1]![1]!, 1e-6, 1e-5, `ce grad c=${c}`);
      }
      // an out-of-range class id is refused like the reference does (a coded error naming target)
      for (const dv of [dev, cpu]) {
        expect(() => T.crossEntropy(T.randn([2, 3], { seed: 1, device: dv }), T.tensor([0, 3], [2], { dtype: 'int32', device: dv }))).toThrow(
          expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/target/) }),
        );
      }
    });
  });
}

// adamwUpdate has no fused wasm kernel: on wasm it must run as wasm elementwise kernels (not the CPU reference
// fallback over wasm memory), and match torch.optim.AdamW's formula written out in float64.
describe('adamwUpdate on wasm: elementwise kernels, torch.optim.AdamW formula', () => {
  it('three steps with weight decay match the float64 formula, in place', async () => {
    const dev = await T.getDevice({ kind: 'wasm', wasmThreads: 1, cache: false });
    try {
      const o = { lr: 0.05, b1: 0.8, b2: 0.95, eps: 1e-6, wd: 0.1 };
      const n = 37;
      const p0 = Array.from(await T.randn([n], { seed: 1, dtype: 'float64' }).toArray());
      const grads = await Promise.all([2, 3, 4].map(async (s) => Array.from(await T.randn([n], { seed: s, dtype: 'float64' }).toArray())));
      const p = T.tensor(p0, [n], { device: dev });
      const m = T.zeros([n], { device: dev });
      const v = T.zeros([n], { device: dev });
      const { ran } = countWasm(() =>
        grads.forEach((g, s) => T.adamwUpdate(p, T.tensor(g, [n], { device: dev }), m, v, { lr: o.lr, beta1: o.b1, beta2: o.b2, eps: o.eps, weightDecay: o.wd, step: s + 1 })),
      );
      expect(ran.get('binary') ?? 0, 'wasm binary kernels ran').toBeGreaterThan(0);
      expect(ran.get('copy_into') ?? 0, 'the state was written in place by wasm kernels').toBeGreaterThan(0);
      const w = p0.slice();
      const mm = p0.map(() => 0);
      const vv = p0.map(() => 0);
      grads.forEach((g, s) => {
        const t = s + 1;
        for (let i = 0; i < n; i++) {
          w[i]! *= 1 - o.lr * o.wd;
          mm[i] = o.b1 * mm[i]! + (1 - o.b1) * g[i]!;
          vv[i] = o.b2 * vv[i]! + (1 - o.b2) * g[i]! ** 2;
          w[i]! -= (o.lr * (mm[i]! / (1 - o.b1 ** t))) / (Math.sqrt(vv[i]! / (1 - o.b2 ** t)) + o.eps);
        }
      });
      expectClose(Array.from(await p.toArray()), w, 1e-5, 1e-5);
      expectClose(Array.from(await m.toArray()), mm, 1e-6, 1e-5);
      expectClose(Array.from(await v.toArray()), vv, 1e-6, 1e-5);
    } finally {
      dev.destroy();
    }
  });
});
