import { describe, expect, it } from 'vitest';
import * as T from './index.js';

const tick = () => new Promise<void>((r) => setTimeout(r, 1));

/** A deferred promise the test settles when it wants. */
function deferred<V>(): { promise: Promise<V>; resolve: (v: V) => void; reject: (e: unknown) => void } {
  let resolve!: (v: V) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<V>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

describe('noGradAsync / async noGrad', () => {
  const leaf = () => T.randn([3], { seed: 5, requiresGrad: true });

  it('keeps recording off across awaits until the promise settles, then records again', async () => {
    const x = leaf();
    const inside = await T.noGradAsync(async () => {
      const a = T.mul(x, 2);
      await tick();
      const b = T.mul(x, 3); // after an await: a synchronous noGrad would already have restored recording
      expect(T.isGradEnabled()).toBe(false);
      return [a, b];
    });
    expect(inside.map((t) => t.requiresGrad)).toEqual([false, false]);
    expect(inside.map((t) => t.gradFn)).toEqual([null, null]);
    expect(T.isGradEnabled()).toBe(true);
    const after = T.mul(x, 2);
    expect(after.requiresGrad).toBe(true);
    after.sum().backward();
    expect(Array.from(await x.grad!.toArray())).toEqual([2, 2, 2]);
  });

  it('noGrad given an async function behaves the same and resolves to its value', async () => {
    const x = leaf();
    const p = T.noGrad(async () => {
      await tick();
      return T.mul(x, x);
    });
    expect(p).toBeInstanceOf(Promise);
    expect(T.isGradEnabled()).toBe(false); // still pending
    const y = await p;
    expect(y.requiresGrad).toBe(false);
    expect(T.isGradEnabled()).toBe(true);
    const xs = await x.toArray();
    expect(Array.from(await y.toArray())).toEqual(Array.from(xs, (v) => Math.fround(v * v)));
  });

  it('a synchronous noGrad still restores recording on return', () => {
    const x = leaf();
    const y = T.noGrad(() => T.mul(x, 2));
    expect(y.requiresGrad).toBe(false);
    expect(T.isGradEnabled()).toBe(true);
    expect(T.mul(x, 2).requiresGrad).toBe(true);
  });

  it('overlapping scopes that settle out of order: recording resumes only after the last one', async () => {
    const x = leaf();
    const da = deferred<void>();
    const db = deferred<void>();
    const a = T.noGradAsync(() => da.promise);
    const b = T.noGradAsync(() => db.promise);
    expect(T.isGradEnabled()).toBe(false);
    da.resolve(); // the first one settles first (not LIFO)
    await a;
    expect(T.isGradEnabled()).toBe(false);
    expect(T.mul(x, 2).requiresGrad).toBe(false);
    db.resolve();
    await b;
    expect(T.isGradEnabled()).toBe(true);
    expect(T.mul(x, 2).requiresGrad).toBe(true);
  });

  it('a rejected scope turns recording back on and rethrows; so does a synchronous throw', async () => {
    const d = deferred<void>();
    const p = T.noGradAsync(() => d.promise);
    d.reject(new Error('boom'));
    await expect(p).rejects.toThrow('boom');
    expect(T.isGradEnabled()).toBe(true);
    await expect(
      T.noGradAsync(() => {
        throw new Error('sync');
      }),
    ).rejects.toThrow('sync');
    expect(T.isGradEnabled()).toBe(true);
    await expect(T.noGrad(async () => Promise.reject(new Error('late')))).rejects.toThrow('late');
    expect(T.isGradEnabled()).toBe(true);
  });

  it('bad input: a non-function throws INVALID_ARGUMENT naming fn', async () => {
    await expect(T.noGradAsync(42 as unknown as () => void)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', argument: 'fn' });
    expect(() => T.noGrad('x' as unknown as () => void)).toThrowError(/fn: expected a function/);
  });
});
