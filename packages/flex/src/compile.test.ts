import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileSource } from './compile.js';
import { derivative, evaluate, type EvalEnv } from './codegen.js';
import { boolExpr, floatExpr } from '../../../test-utils/random-mods.js';

const env = (s: number, b: number, h: number, q: number, kv: number): EvalEnv => ({ score: s, b, h, q, kv, numbers: {}, tensors: {} });

describe('the flex compiler agrees with JavaScript (differential, fast-check)', () => {
  it('score functions: IR value equals the JS function, IR derivative equals a central difference', () => {
    fc.assert(
      fc.property(floatExpr, fc.double({ min: -3, max: 3, noNaN: true }), fc.nat(3), fc.nat(3), fc.nat(9), fc.nat(9), (body, s, b, h, q, kv) => {
        const src = `(s, b, h, q, kv) => ${body}`;
        const fn = eval(src) as (...a: number[]) => number;
        const { ir } = compileSource(src, 'score', {}, 'scoreMod');
        const want = fn(s, b, h, q, kv);
        const got = evaluate(ir, env(s, b, h, q, kv)) as number;
        expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-9 * (1 + Math.abs(want)));
        const d = evaluate(derivative(ir, (x) => x.k === 'param' && x.slot === 'score'), env(s, b, h, q, kv)) as number;
        const e = 1e-6;
        const num = (fn(s + e, b, h, q, kv) - fn(s - e, b, h, q, kv)) / (2 * e);
        // a kink (max, ternary switch, abs) inside ±e makes the difference meaningless: skip those points
        const left = (fn(s, b, h, q, kv) - fn(s - e, b, h, q, kv)) / e;
        const right = (fn(s + e, b, h, q, kv) - fn(s, b, h, q, kv)) / e;
        if (Math.abs(left - right) < 1e-4 * (1 + Math.abs(num))) expect(Math.abs(d - num)).toBeLessThan(1e-4 * (1 + Math.abs(num)));
      }),
      { numRuns: 300, seed: 42 },
    );
  });

  it('mask functions: IR value equals the JS function', () => {
    fc.assert(
      fc.property(boolExpr, fc.nat(3), fc.nat(3), fc.nat(40), fc.nat(40), (body, b, h, q, kv) => {
        const src = `(b, h, q, kv) => ${body}`;
        const fn = eval(src) as (...a: number[]) => boolean;
        const { ir } = compileSource(src, 'mask', {}, 'maskMod');
        expect(evaluate(ir, env(0, b, h, q, kv))).toBe(fn(b, h, q, kv));
      }),
      { numRuns: 300, seed: 7 },
    );
  });

  it('keeps JS semantics: / is real division, Math.floor(a / b) is floor division, % keeps the dividend sign', () => {
    const { ir } = compileSource('(b, h, q, kv) => Math.floor((q - kv) / 4) === -2 && (q - kv) % 3 === -2 && (q / 2) > 2.4', 'mask', {}, 'm');
    expect(evaluate(ir, env(0, 0, 0, 5, 10))).toBe(true); // floor(-5/4) = -2, -5 % 3 = -2, 2.5 > 2.4
    expect(ir.k).toBe('bin');
  });
});
