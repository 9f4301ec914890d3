import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileSource } from './compile.js';
import { compileMod, scoreMod, hostScore } from './mods.js';
import { relativePositionBias } from './catalogue/relative-position-bias.js';
import * as T from '@webattn/core-tensor';
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

describe('sources as a minifier leaves them', () => {
  const minified: [string, number][] = [
    // captures through a destructured parameter, renamed locals, !0 / !1 booleans, let, comments, method shorthand
    ['(e,t,n,r,o,{bias:i,offset:a})=>e+i[n][r-o+a]', 0.5 + 0.25],
    ['(e,t,n,r,o,i)=>{let a=i.offset;return e+i.bias[n][r-o+a]/* bias */}', 0.5 + 0.25],
    ['function(e,t,n,r,o,i){return r>=o?e+i["bias"][n][r-o+i.offset]:e}', 0.5 + 0.25],
    ['score(e,t,n,r,o,i){ // a method\n return (!0 ? e : 0) + i.bias[n][r - o + i.offset] }', 0.5 + 0.25],
  ];
  for (const [src, want] of minified) {
    it(src, () => {
      const table = T.tensor([[0, 0.25, 1], [0, 0, 0]], [2, 3], { dtype: 'float64' });
      const sigs = { bias: { kind: 'tensor', rank: 2, dtype: 'float32' }, offset: { kind: 'number', integer: true } } as const;
      const { ir, used } = compileSource(src, 'score', sigs, 'scoreMod');
      expect([...used].sort()).toEqual(['bias', 'offset']);
      const env = { score: 0.5, b: 0, h: 0, q: 1, kv: 1, numbers: { offset: 1 }, tensors: { bias: { data: [0, 0.25, 1, 0, 0, 0], shape: [2, 3] } } };
      expect(evaluate(ir, env)).toBeCloseTo(want, 12);
      // and the host path calls the very function with the captures parameter
      const fn = new Function(`return (${src.startsWith('score(') ? `{${src}}.score` : src})`)();
      expect(hostScore(scoreMod(fn, { bias: table, offset: 1 }))(0.5, 0, 0, 1, 1)).toBeCloseTo(want, 12);
    });
  }

  it('a renamed closure variable is refused with a hint about minifiers', () => {
    expect(() => compileSource('(e)=>e+t', 'score', { offset: { kind: 'number', integer: true } }, 'scoreMod')).toThrowError(/FLEX_COMPILE.*unknown identifier 't'.*minifier/);
  });

  it('a capture name the captures object lacks is refused, naming it', () => {
    expect(() => compileSource('(e,t,n,r,o,i)=>e+i.nope', 'score', {}, 'scoreMod')).toThrowError(/FLEX_COMPILE.*'nope' is not a capture/);
  });
});

describe('compiled mods are cached per function object', () => {
  it('the same mod compiles once (same IR object); another mod of the same function reuses the parse', () => {
    const m = relativePositionBias(T.randn([2, 9], { seed: 1 }));
    const a = compileMod(m, 's', 'scoreMod');
    const b = compileMod(m, 's', 'scoreMod');
    expect(b.ir).toBe(a.ir);
    const m2 = relativePositionBias(T.randn([2, 9], { seed: 2 }));
    const c = compileMod(m2, 's', 'scoreMod');
    expect(c.ir).toBe(a.ir); // same function object (the catalogue's), same capture signatures
    expect(c.captures.get('s0_bias')).toBe((m2 as { captures: Record<string, unknown> }).captures.bias);
    expect(c.key).toBe(a.key);
    expect(c.numberTypes.get('s0_offset')).toBe('i32');
  });
});
