/** fast-check arbitraries of random score and mask function sources (tests of @webattn/flex). */
import fc from 'fast-check';

const intLeaf = fc.oneof(fc.constantFrom('b', 'h', 'q', 'kv'), fc.integer({ min: -3, max: 7 }).map(String));

/** Integer-valued index expressions over b, h, q, kv. */
export const intExpr: fc.Arbitrary<string> = fc.letrec<{ e: string }>((tie) => ({
  e: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    intLeaf,
    fc.tuple(tie('e'), fc.constantFrom('+', '-', '*'), tie('e')).map(([a, op, b]) => `(${a} ${op} ${b})`),
    fc.tuple(tie('e'), fc.integer({ min: 2, max: 5 })).map(([a, m]) => `(${a} % ${m})`),
    fc.tuple(tie('e'), fc.integer({ min: 2, max: 4 })).map(([a, d]) => `Math.floor(${a} / ${d})`),
  ),
})).e;

/** Boolean mask bodies. */
export const boolExpr: fc.Arbitrary<string> = fc.letrec<{ e: string }>((tie) => ({
  e: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.tuple(intExpr, fc.constantFrom('<', '<=', '>', '>=', '===', '!=='), intExpr).map(([a, op, b]) => `(${a} ${op} ${b})`),
    fc.tuple(tie('e'), fc.constantFrom('&&', '||'), tie('e')).map(([a, op, b]) => `(${a} ${op} ${b})`),
    tie('e').map((a) => `!${a}`),
  ),
})).e;

const floatLeaf = fc.oneof(fc.constant('s'), fc.double({ min: -2, max: 2, noNaN: true, noDefaultInfinity: true }).map((v) => `(${v.toFixed(3)})`), intExpr.map((e) => `(${e})`));

/** Number-valued score bodies (kept bounded so float32 and float64 agree). */
export const floatExpr: fc.Arbitrary<string> = fc.letrec<{ e: string }>((tie) => ({
  e: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    floatLeaf,
    fc.tuple(tie('e'), fc.constantFrom('+', '-'), tie('e')).map(([a, op, b]) => `(${a} ${op} ${b})`),
    fc.tuple(tie('e'), tie('e')).map(([a, b]) => `(Math.tanh(${a}) * ${b})`),
    fc.tuple(tie('e'), tie('e')).map(([a, b]) => `(${a} / (1.5 + Math.abs(${b})))`),
    tie('e').map((a) => `Math.tanh(${a})`),
    tie('e').map((a) => `Math.sqrt(1 + ${a} * ${a})`),
    fc.tuple(tie('e'), tie('e')).map(([a, b]) => `Math.max(${a}, ${b})`),
    fc.tuple(boolExpr, tie('e'), tie('e')).map(([c, a, b]) => `(${c} ? ${a} : ${b})`),
  ),
})).e;
