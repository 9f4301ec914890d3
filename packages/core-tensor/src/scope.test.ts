import { describe, expect, it } from 'vitest';
import * as T from './index.js';
import { expectCode } from '../../../test-utils/index.js';

const cpu = T.cpu();
const live = () => cpu.memoryStats().liveStorages;


describe('handles and storage reference counts', () => {
  it('disposing one handle keeps the storage while a view lives', async () => {
    const before = live();
    const a = T.randn([2, 3], { seed: 1, device: cpu });
    const expected = Array.from(await a.toArray());
    const t = a.transpose(0, 1);
    const r = a.reshape([6]);
    expect(live()).toBe(before + 1);
    a.dispose();
    expect(live()).toBe(before + 1);
    expectCode(() => T.exp(a), 'TENSOR_DISPOSED', /x:/);
    expect(Array.from(await r.toArray())).toEqual(expected);
    expect(Array.from(await t.toArray())).toEqual([0, 3, 1, 4, 2, 5].map((i) => expected[i]!));
    r.dispose();
    expect(live()).toBe(before + 1);
    t.dispose();
    t.dispose(); // idempotent
    expect(live()).toBe(before);
  });

  it('a disposed tensor reaching a kernel is a coded TENSOR_DISPOSED, never a TypeError', () => {
    const a = T.randn([4], { seed: 2, device: cpu });
    a.dispose();
    expectCode(() => a.storage, 'TENSOR_DISPOSED');
    expectCode(() => T.add(a, 1), 'TENSOR_DISPOSED', /a:/);
    expectCode(() => T.matmul(T.ones([2, 4]), a), 'TENSOR_DISPOSED', /b:/);
    expectCode(() => T.layerNorm(a, [4]), 'TENSOR_DISPOSED', /x:/);
    expectCode(() => a.detach(), 'TENSOR_DISPOSED');
    expectCode(() => T.tensor([1], undefined, { requiresGrad: true }).backward(a), 'TENSOR_DISPOSED', /grad/);
  });

  it('Symbol.dispose (using) disposes the handle', async () => {
    const before = live();
    {
      using t = T.randn([3], { seed: 3, device: cpu });
      expect((await t.toArray()).length).toBe(3);
      expect(live()).toBe(before + 1);
    }
    expect(live()).toBe(before);
  });

  it('an impossible size is LIMIT_EXCEEDED naming shape, not a RangeError', () => {
    expectCode(() => T.randn([1e6, 1e6, 1e6], { device: cpu }), 'LIMIT_EXCEEDED', /shape/);
    expectCode(() => T.randn([1e5, 1e5], { device: cpu }), 'LIMIT_EXCEEDED', /shape/);
    expectCode(() => T.full([1e6, 1e6, 1e6], 1, { device: cpu }), 'LIMIT_EXCEEDED', /shape/);
  });
});

describe('tidy', () => {
  it('disposes what fn created except returned tensors (also nested in arrays, objects, Maps)', async () => {
    const before = live();
    const x = T.randn([4], { seed: 4, device: cpu });
    let inner: T.Tensor | null = null;
    const out = T.tidy(() => {
      inner = T.exp(x);
      const y = T.mul(inner, 2);
      const z = T.add(y, 1);
      return { z, list: [T.neg(x)], map: new Map([['s', T.sum(x)]]) };
    });
    expect(live()).toBe(before + 4); // x, z, neg, sum
    expectCode(() => T.exp(inner!), 'TENSOR_DISPOSED');
    const xv = Array.from(await x.toArray());
    expect(Array.from(await out.z.toArray())).toEqual(xv.map((v) => Math.fround(Math.fround(Math.fround(Math.exp(v)) * 2) + 1)));
    expect(Array.from(await out.list[0]!.toArray())).toEqual(xv.map((v) => -v));
    for (const t of [x, out.z, out.list[0]!, out.map.get('s')!]) t.dispose();
    expect(live()).toBe(before);
  });

  it('keep() exempts a tensor; nested scopes hand results to the outer scope', () => {
    const before = live();
    let kept!: T.Tensor;
    let passed!: T.Tensor;
    T.tidy(() => {
      const a = T.ones([2], { device: cpu });
      passed = T.tidy(() => {
        kept = T.keep(T.mul(a, 3));
        T.add(a, 1);
        return T.mul(a, 5);
      });
      expect(passed.isReleased).toBe(false);
    });
    expect(passed.isReleased).toBe(true); // the outer scope owned it
    expect(kept.isReleased).toBe(false);
    expect(live()).toBe(before + 1);
    kept.dispose();
    expect(live()).toBe(before);
  });

  it('disposes everything when fn throws, and refuses an async fn', async () => {
    const before = live();
    expect(() =>
      T.tidy(() => {
        T.ones([3], { device: cpu });
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(live()).toBe(before);
    expectCode(() => T.tidy((async () => T.ones([1])) as unknown as () => T.Tensor), 'INVALID_ARGUMENT', /tidyAsync/);
    expectCode(() => T.tidy('x' as unknown as () => void), 'INVALID_ARGUMENT', /fn/);
    await Promise.resolve();
    expect(live()).toBe(before);
  });

  it('tidyAsync disposes across awaits and keeps what it resolves to', async () => {
    const before = live();
    const r = await T.tidyAsync(async () => {
      const a = T.randn([5], { seed: 5, device: cpu });
      const s = T.sum(T.mul(a, a));
      const v = await s.item();
      const b = T.mul(a, 2);
      return { v, b };
    });
    expect(r.v).toBeGreaterThan(0);
    expect(live()).toBe(before + 1);
    r.b.dispose();
    expect(live()).toBe(before);
  });

  it('a loss returned from tidy still back-propagates; its graph is freed by backward', async () => {
    const w = T.randn([3, 3], { seed: 6, device: cpu, requiresGrad: true });
    const x = T.randn([2, 3], { seed: 7, device: cpu });
    const before = live();
    const loss = T.tidy(() => T.sum(T.tanh(T.matmul(x, w))));
    const held = live() - before; // loss + what the graph saved (x, w handles share storage; tanh's output)
    expect(held).toBeGreaterThanOrEqual(2);
    loss.backward();
    // float64 oracle: d/dw sum(tanh(x w)) = xᵀ (1 − tanh²)
    const xv = Array.from(await x.toArray());
    const wv = Array.from(await w.toArray());
    const expected = new Array<number>(9).fill(0);
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 3; j++) {
        let z = 0;
        for (let k = 0; k < 3; k++) z += xv[i * 3 + k]! * wv[k * 3 + j]!;
        const d = 1 - Math.tanh(z) ** 2;
        for (let k = 0; k < 3; k++) expected[k * 3 + j] += xv[i * 3 + k]! * d;
      }
    const got = Array.from(await w.grad!.toArray());
    got.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 4));
    expect(live()).toBe(before + 2); // loss and w.grad
    w.grad = null; // the setter disposes the gradient autograd made
    loss.dispose();
    expect(live()).toBe(before);
    w.dispose();
    x.dispose();
  });

  it('a graph that no result can reach is freed when the scope closes (no backward)', () => {
    const w = T.randn([8], { seed: 8, device: cpu, requiresGrad: true });
    const before = live();
    T.tidy(() => {
      T.sum(T.exp(T.mul(w, w)));
    });
    expect(live()).toBe(before);
    w.dispose();
  });
});

describe('autograd frees the graph', () => {
  it('a second backward is AUTOGRAD unless retainGraph; retainGraph accumulates twice', async () => {
    const w = T.tensor([0.5, -1, 2], undefined, { device: cpu, requiresGrad: true });
    const loss = T.sum(T.mul(T.exp(w), w));
    loss.backward(undefined, { retainGraph: true });
    loss.backward();
    expectCode(() => loss.backward(), 'AUTOGRAD', /second time.*retainGraph/);
    const wv = [0.5, -1, 2];
    const g = Array.from(await w.grad!.toArray());
    // d/dw (e^w w) = e^w (1 + w), twice
    g.forEach((v, i) => expect(v).toBeCloseTo(2 * Math.exp(wv[i]!) * (1 + wv[i]!), 4));
    expectCode(() => loss.backward(undefined, { retainGraph: 'yes' as unknown as boolean }), 'INVALID_ARGUMENT', /retainGraph/);
  });

  it('frees saved tensors and intermediate gradients: only the leaf grads stay', () => {
    const w = T.randn([4, 4], { seed: 9, device: cpu, requiresGrad: true });
    const b = T.randn([4], { seed: 10, device: cpu, requiresGrad: true });
    const x = T.randn([3, 4], { seed: 11, device: cpu });
    const before = live();
    const made: T.Tensor[] = [];
    const m = (t: T.Tensor) => (made.push(t), t);
    const h = m(T.softmax(m(T.add(m(T.matmul(x, w)), b))));
    const loss = m(T.crossEntropy(m(T.layerNorm(h, [4], null, null)), m(T.tensor(new Int32Array([0, 1, 3]), [3], { device: cpu }))));
    loss.backward();
    for (const t of made) t.dispose();
    expect(live()).toBe(before + 2); // w.grad, b.grad
    w.grad = null;
    b.grad = null;
    expect(live()).toBe(before);
  });

  it('user disposal of out, loss and grads inside a training loop keeps memory flat (40 steps)', async () => {
    const { params, step } = tinyModel();
    const counts: number[] = [];
    const bytes: number[] = [];
    const losses: number[] = [];
    for (let s = 1; s <= 40; s++) {
      const useTidy = s % 2 === 0; // alternate: inside tidy, and with only the user's own dispose()
      const l = useTidy ? T.tidy(() => step(true)) : step(false);
      losses.push(await l.item());
      l.dispose();
      counts.push(live());
      bytes.push(cpu.memoryStats().currentBytes);
    }
    expect(losses[39]!).toBeLessThan(losses[0]!); // it trains
    expect(bytes[39]).toBe(bytes[9]); // steps 40 and 10 (tidy)
    expect(counts[39]).toBe(counts[9]);
    expect(bytes[38]).toBe(bytes[8]); // steps 39 and 9 (user dispose only)
    expect(counts[38]).toBe(counts[8]);
    for (const p of params) p.dispose();
  });
});

/** A 2-layer attention model on core ops; `step(useTidy=false)` disposes every handle it makes. */
function tinyModel() {
  const B = 2;
  const L = 6;
  const H = 2;
  const D = 4;
  const E = H * D;
  const V = 12;
  let seed = 40;
  const mk = (shape: number[], scale: number) => {
    const p = T.tidy(() => T.mul(T.randn(shape, { seed: seed++, device: cpu }), scale));
    p.requiresGrad = true;
    return p;
  };
  const emb = mk([V, E], 0.5);
  const layers = [0, 1].map(() => ({ ln: mk([E], 1), wq: mk([E, E], 0.35), wk: mk([E, E], 0.35), wv: mk([E, E], 0.35), wo: mk([E, E], 0.35) }));
  const head = mk([E, V], 0.35);
  const params = [emb, ...layers.flatMap((l) => [l.ln, l.wq, l.wk, l.wv, l.wo]), head];
  const ids = T.tensor(Int32Array.from({ length: B * L }, (_, i) => (i * 5) % V), [B, L], { device: cpu });
  const tgt = T.tensor(Int32Array.from({ length: B * L }, (_, i) => (i * 7 + 1) % V), [B * L], { device: cpu });
  params.push(ids, tgt);
  const step = (inTidy: boolean) => {
    const made: T.Tensor[] = [];
    const m = <X extends T.Tensor>(t: X): X => (made.push(t), t);
    let x = m(T.embedding(emb, ids));
    for (const l of layers) {
      const h = m(T.layerNorm(x, [E], l.ln));
      const split = (w: T.Tensor) => m(m(m(T.matmul(h, w)).reshape([B, L, H, D])).transpose(1, 2));
      const q = split(l.wq);
      const k = split(l.wk);
      const v = split(l.wv);
      const p = m(T.softmax(m(T.mul(m(T.matmul(q, m(k.transpose(-1, -2)))), 1 / Math.sqrt(D)))));
      const a = m(m(m(m(T.matmul(p, v)).transpose(1, 2)).reshape([B, L, E])).matmul(l.wo));
      x = m(T.add(x, a));
    }
    const loss = T.crossEntropy(m(m(T.matmul(x, head)).reshape([B * L, V])), tgt);
    loss.backward();
    T.noGrad(() => {
      for (const p of params.slice(0, -2)) {
        const d = T.mul(p.grad!, 0.2);
        const u = T.sub(p, d);
        T.copyInto(p, u);
        if (!inTidy) {
          u.dispose();
          d.dispose();
        }
        p.grad = null;
      }
    });
    if (!inTidy) for (const t of made) t.dispose();
    return loss;
  };
  return { params, step };
}
