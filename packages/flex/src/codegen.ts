/**
 * IR → WGSL, symbolic derivatives of the IR, and a float64 interpreter of the IR (the CPU path's
 * backward). Forward on the CPU runs the user's JS function itself.
 */
import { add, cast, div, mul, neg, num, sub, type IR } from './ir.js';

/** WGSL identifier of a capture (names are mapped to safe identifiers). */
export type NameMap = (name: string) => string;

function f32lit(v: number): string {
  if (v === Infinity) return 'pos_inf()';
  if (v === -Infinity) return 'neg_inf()';
  if (Number.isNaN(v)) return 'nan_f32()'; // a private, not a constant: const-evaluated NaN is a WGSL error
  // beyond f32's range a literal is a WGSL error: round like Math.fround (to ±Infinity or ±0)
  const f = Math.fround(v);
  if (f === Infinity) return 'pos_inf()';
  if (f === -Infinity) return 'neg_inf()';
  if (f === 0 && v !== 0) return 'f32(0.0)';
  const s = String(v);
  return /[.eE]/.test(s) ? `f32(${s})` : `f32(${s}.0)`;
}

/** WGSL expression of an IR node (parameters are `p_score`, `p_b`, `p_h`, `p_q`, `p_kv`). */
export function wgsl(ir: IR, id: NameMap): string {
  const r = (n: IR): string => wgsl(n, id);
  switch (ir.k) {
    case 'num':
      return ir.ty === 'i32' ? `${ir.v}i` : f32lit(ir.v);
    case 'bool':
      return ir.v ? 'true' : 'false';
    case 'param':
      return `p_${ir.slot}`;
    case 'capnum':
      return `u_${id(ir.name)}()`;
    case 'load': {
      const v = `load_${id(ir.name)}(idx_${id(ir.name)}(${ir.idx.map(r).join(', ')}))`;
      return ir.ty === 'bool' ? `(${v} != 0u)` : v;
    }
    case 'un':
      return `(${ir.op}${r(ir.a)})`;
    case 'bin':
      return `(${r(ir.a)} ${ir.op} ${r(ir.b)})`;
    case 'cond':
      return `select(${r(ir.b)}, ${r(ir.a)}, ${r(ir.c)})`;
    case 'idiv':
      return `${ir.mode}_div_i32(${r(ir.a)}, ${r(ir.b)})`;
    case 'cast':
      return `${ir.to}(${r(ir.a)})`;
    case 'call': {
      const a = ir.args.map(r);
      switch (ir.fn) {
        case 'tanh':
          return `tanh_flex(${a[0]})`;
        case 'pow':
          return `pow_any(${a[0]}, ${a[1]})`;
        case 'round':
          return `floor(${a[0]} + 0.5)`;
        case 'sign':
          return ir.ty === 'i32' ? `sign(${a[0]})` : `sign(${a[0]})`;
        default:
          return `${ir.fn}(${a.join(', ')})`;
      }
    }
  }
}

/** WGSL helpers the rendered expressions call (besides core-tensor's MATH_HELPERS). */
export const FLEX_HELPERS = `
var<private> NAN_BITS: u32 = 0x7fc00000u;
fn nan_f32() -> f32 { return bitcast<f32>(NAN_BITS); }
fn is_nan_bits(x: f32) -> bool { let u = bitcast<u32>(x); return (u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0u; }
fn tanh_flex(x: f32) -> f32 { return select(tanh_safe(x), x, is_nan_bits(x)); }
fn floor_div_i32(a: i32, b: i32) -> i32 { let q = a / b; return select(q, q - 1i, (a % b != 0i) && ((a < 0i) != (b < 0i))); }
fn ceil_div_i32(a: i32, b: i32) -> i32 { let q = a / b; return select(q, q + 1i, (a % b != 0i) && ((a < 0i) == (b < 0i))); }
`;

/**
 * d(ir)/d(target) as IR, where `isTarget` picks the leaf (the score parameter, or one tensor load).
 * Integer and boolean nodes have zero derivative; piecewise-constant functions too.
 */
export function derivative(ir: IR, isTarget: (n: IR) => boolean, memo = new Map<IR, IR>()): IR {
  const hit = memo.get(ir);
  if (hit) return hit;
  const d = (n: IR) => derivative(n, isTarget, memo);
  const f = (n: IR) => cast(n, 'f32');
  let out: IR;
  if (isTarget(ir)) out = num(1);
  else if (ir.ty !== 'f32') out = num(0);
  else {
    switch (ir.k) {
      case 'num':
      case 'param':
      case 'capnum':
      case 'load':
        out = num(0);
        break;
      case 'cast':
        out = d(ir.a);
        break;
      case 'un':
        out = ir.op === '-' ? neg(d(ir.a)) : num(0);
        break;
      case 'cond':
        out = { k: 'cond', c: ir.c, a: d(ir.a), b: d(ir.b), ty: 'f32' };
        if (ir.a && (out as Extract<IR, { k: 'cond' }>).a.k === 'num' && (out as Extract<IR, { k: 'cond' }>).b.k === 'num') {
          const o = out as Extract<IR, { k: 'cond' }>;
          if ((o.a as { v: number }).v === 0 && (o.b as { v: number }).v === 0) out = num(0);
        }
        break;
      case 'bin': {
        const a = f(ir.a);
        const b = f(ir.b);
        const da = d(ir.a);
        const db = d(ir.b);
        switch (ir.op) {
          case '+':
            out = add(da, db);
            break;
          case '-':
            out = sub(da, db);
            break;
          case '*':
            out = add(mul(da, b), mul(a, db));
            break;
          case '/':
            out = sub(div(da, b), div(mul(a, db), mul(b, b)));
            break;
          case '%':
            // a − b·trunc(a/b): piecewise, d = da − db·trunc(a/b)
            out = sub(da, mul(db, { k: 'call', fn: 'trunc', args: [div(a, b)], ty: 'f32' }));
            break;
          default:
            out = num(0);
        }
        break;
      }
      case 'call': {
        const [x0, y0] = ir.args;
        const x = x0!;
        const dx = d(x);
        const call = (fn: Extract<IR, { k: 'call' }>['fn'], ...args: IR[]): IR => ({ k: 'call', fn, args, ty: 'f32' });
        switch (ir.fn) {
          case 'exp':
            out = mul(ir, dx);
            break;
          case 'log':
            out = div(dx, x);
            break;
          case 'tanh':
            out = mul(sub(num(1), mul(ir, ir)), dx);
            break;
          case 'sqrt':
            out = div(dx, mul(num(2), ir));
            break;
          case 'sin':
            out = mul(call('cos', x), dx);
            break;
          case 'cos':
            out = neg(mul(call('sin', x), dx));
            break;
          case 'abs':
            out = mul(call('sign', x), dx);
            break;
          case 'pow': {
            const y = y0!;
            const dy = d(y);
            const t1 = mul(mul(y, call('pow', x, sub(y, num(1)))), dx);
            const t2 = dy.k === 'num' && dy.v === 0 ? num(0) : mul(mul(ir, call('log', x)), dy);
            out = add(t1, t2);
            break;
          }
          case 'min':
          case 'max': {
            const y = y0!;
            const pick: IR = { k: 'bin', op: ir.fn === 'min' ? '<=' : '>=', a: f(x), b: f(y), ty: 'bool' };
            out = { k: 'cond', c: pick, a: dx, b: d(y), ty: 'f32' };
            break;
          }
          default:
            out = num(0);
        }
      }
    }
  }
  memo.set(ir, out);
  return out;
}

/** Values the interpreter reads: parameters, captured numbers and tensors. */
export interface EvalEnv {
  score: number;
  b: number;
  h: number;
  q: number;
  kv: number;
  numbers: Record<string, number>;
  tensors: Record<string, { data: ArrayLike<number>; shape: readonly number[] }>;
}

const toI32 = (v: number) => (Number.isFinite(v) ? Math.trunc(v) | 0 : 0);

/** Float64 interpretation of the IR with the WGSL semantics (integer ops on i32, clamped indices). */
export function evaluate(ir: IR, env: EvalEnv, memo = new Map<IR, number | boolean>()): number | boolean {
  const hit = memo.get(ir);
  if (hit !== undefined) return hit;
  const e = (n: IR) => evaluate(n, env, memo) as number;
  const eb = (n: IR) => evaluate(n, env, memo) as boolean;
  let v: number | boolean;
  switch (ir.k) {
    case 'num':
      v = ir.v;
      break;
    case 'bool':
      v = ir.v;
      break;
    case 'param':
      v = env[ir.slot];
      break;
    case 'capnum':
      v = env.numbers[ir.name]!;
      break;
    case 'load': {
      const t = env.tensors[ir.name]!;
      let flat = 0;
      ir.idx.forEach((ix, i) => {
        const dim = t.shape[i]!;
        flat = flat * dim + Math.min(Math.max(toI32(e(ix)), 0), dim - 1);
      });
      const raw = t.data[flat]!;
      v = ir.ty === 'bool' ? raw !== 0 : raw;
      break;
    }
    case 'un':
      v = ir.op === '-' ? -e(ir.a) : !eb(ir.a);
      break;
    case 'bin': {
      if (ir.op === '&&') v = eb(ir.a) && eb(ir.b);
      else if (ir.op === '||') v = eb(ir.a) || eb(ir.b);
      else {
        const a = evaluate(ir.a, env, memo);
        const b = evaluate(ir.b, env, memo);
        const x = a as number;
        const y = b as number;
        const int = ir.a.ty === 'i32' && ir.b.ty === 'i32';
        switch (ir.op) {
          case '+': v = int ? (x + y) | 0 : x + y; break;
          case '-': v = int ? (x - y) | 0 : x - y; break;
          case '*': v = int ? Math.imul(x, y) : x * y; break;
          case '/': v = x / y; break;
          case '%': v = x % y; break;
          case '<': v = x < y; break;
          case '<=': v = x <= y; break;
          case '>': v = x > y; break;
          case '>=': v = x >= y; break;
          case '==': v = a === b; break;
          case '!=': v = a !== b; break;
        }
      }
      break;
    }
    case 'cond':
      v = eb(ir.c) ? evaluate(ir.a, env, memo) : evaluate(ir.b, env, memo);
      break;
    case 'idiv': {
      const q = e(ir.a) / e(ir.b);
      v = ir.mode === 'floor' ? Math.floor(q) : Math.ceil(q);
      break;
    }
    case 'cast':
      v = ir.to === 'i32' ? toI32(e(ir.a)) : ir.to === 'f32' ? +e(ir.a) : !!evaluate(ir.a, env, memo);
      break;
    case 'call': {
      const a = ir.args.map(e);
      const x = a[0]!;
      switch (ir.fn) {
        case 'round': v = Math.floor(x + 0.5); break;
        case 'min': v = Math.min(x, a[1]!); break;
        case 'max': v = Math.max(x, a[1]!); break;
        case 'pow': v = Math.pow(x, a[1]!); break;
        default: v = (Math as unknown as Record<string, (n: number) => number>)[ir.fn]!(x);
      }
      break;
    }
  }
  memo.set(ir, v!);
  return v!;
}

/** Direct children of an IR node. */
export function children(ir: IR): IR[] {
  switch (ir.k) {
    case 'un':
    case 'cast':
      return [ir.a];
    case 'bin':
    case 'idiv':
      return [ir.a, ir.b];
    case 'cond':
      return [ir.c, ir.a, ir.b];
    case 'call':
      return ir.args;
    case 'load':
      return ir.idx;
    default:
      return [];
  }
}

/** The float tensor loads of an IR (each distinct load node once). */
export function collectLoads(ir: IR, out: Extract<IR, { k: 'load' }>[] = [], seen = new Set<IR>()): Extract<IR, { k: 'load' }>[] {
  if (seen.has(ir)) return out;
  seen.add(ir);
  if (ir.k === 'load' && ir.ty === 'f32') out.push(ir);
  children(ir).forEach((c) => collectLoads(c, out, seen));
  return out;
}
