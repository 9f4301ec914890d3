/** The typed expression IR that flex functions compile to (and differentiate in). */
export type Ty = 'f32' | 'i32' | 'bool';

export type IR =
  | { k: 'num'; v: number; ty: 'f32' | 'i32' }
  | { k: 'bool'; v: boolean; ty: 'bool' }
  /** A function parameter: 0 = score (score mods), then b, h, q, kv. */
  | { k: 'param'; slot: ParamSlot; ty: Ty }
  /** A captured number (uniform). */
  | { k: 'capnum'; name: string; ty: 'f32' | 'i32' }
  /** An element of a captured tensor. */
  | { k: 'load'; name: string; idx: IR[]; ty: Ty; id: number }
  | { k: 'un'; op: '-' | '!'; a: IR; ty: Ty }
  | { k: 'bin'; op: BinOp; a: IR; b: IR; ty: Ty }
  | { k: 'cond'; c: IR; a: IR; b: IR; ty: Ty }
  | { k: 'call'; fn: MathFn; args: IR[]; ty: Ty }
  /** Integer floor/ceil division (JS `Math.floor(a / b)` on integers). */
  | { k: 'idiv'; mode: 'floor' | 'ceil'; a: IR; b: IR; ty: 'i32' }
  | { k: 'cast'; to: Ty; a: IR; ty: Ty };

export type ParamSlot = 'score' | 'b' | 'h' | 'q' | 'kv';
export type BinOp = '+' | '-' | '*' | '/' | '%' | '<' | '<=' | '>' | '>=' | '==' | '!=' | '&&' | '||';
export type MathFn = 'exp' | 'log' | 'tanh' | 'abs' | 'min' | 'max' | 'floor' | 'ceil' | 'sqrt' | 'pow' | 'sign' | 'sin' | 'cos' | 'round' | 'trunc';

export const num = (v: number, ty: 'f32' | 'i32' = 'f32'): IR => ({ k: 'num', v, ty });
export const cast = (a: IR, to: Ty): IR => (a.ty === to ? a : a.k === 'num' && to !== 'bool' ? num(a.v, to) : { k: 'cast', to, a, ty: to });

/** Simplifying constructors (keep derivative IR small). */
export function add(a: IR, b: IR): IR {
  if (isZero(a)) return b;
  if (isZero(b)) return a;
  return { k: 'bin', op: '+', a, b, ty: 'f32' };
}
export function sub(a: IR, b: IR): IR {
  if (isZero(b)) return a;
  if (isZero(a)) return neg(b);
  return { k: 'bin', op: '-', a, b, ty: 'f32' };
}
export function mul(a: IR, b: IR): IR {
  if (isZero(a) || isZero(b)) return num(0);
  if (isOne(a)) return b;
  if (isOne(b)) return a;
  return { k: 'bin', op: '*', a, b, ty: 'f32' };
}
export function div(a: IR, b: IR): IR {
  if (a.k === 'num' && b.k === 'num') return num(a.v / b.v);
  if (isZero(a)) return num(0);
  if (isOne(b)) return a;
  return { k: 'bin', op: '/', a, b, ty: 'f32' };
}
export function neg(a: IR): IR {
  if (isZero(a)) return num(0);
  return { k: 'un', op: '-', a, ty: 'f32' };
}
export function isZero(a: IR): boolean {
  return a.k === 'num' && a.v === 0;
}
function isOne(a: IR): boolean {
  return a.k === 'num' && a.v === 1;
}
