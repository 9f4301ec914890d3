/**
 * The flex compiler: a plain TypeScript score/mask function → AST (./parse.ts) → typed IR. Unsupported
 * syntax, unknown identifiers and wrong types raise `WebattnError('FLEX_COMPILE')` with line:column and a hint.
 *
 * Captures reach the function through its last parameter — `(s, b, h, q, kv, c) => s + c.bias[h][q]` or
 * `(s, b, h, q, kv, { bias }) => …` — whose property names survive minifiers. Free identifiers that
 * name a capture (closure captures) are accepted as a convenience for unminified code.
 */
import { WebattnError } from '@webattn/core-tensor';
import { parseFunction, ParseError, type Node } from './parse.js';
import { cast, num, type BinOp, type IR, type MathFn, type ParamSlot, type Ty } from './ir.js';

/** What the compiler knows of a capture: a number (integer or not) or a tensor (rank, dtype). */
export type CaptureSig = { kind: 'number'; integer: boolean } | { kind: 'tensor'; rank: number; dtype: 'float32' | 'int32' | 'bool' };

/** A compiled function: its IR, the captures it uses and the WGSL type of each captured number. */
export interface Compiled {
  ir: IR;
  used: Set<string>;
  /** Captured numbers (unprefixed name) → i32 or f32, as the compiler typed them. */
  numberTypes: Map<string, 'i32' | 'f32'>;
  /** Captures reached through free identifiers (closure captures: break under minification). */
  closure: Set<string>;
}

const parsed = new WeakMap<object, Node>();
const parsedSrc = new Map<string, Node>();

/** The AST of a function, parsed once per function object (and per source text for sources). */
function parseCached(fnOrSrc: string | ((...a: never[]) => unknown), argument: string): Node {
  const key = typeof fnOrSrc === 'function' ? fnOrSrc : null;
  const hit = key ? parsed.get(key) : parsedSrc.get(fnOrSrc as string);
  if (hit) return hit;
  const src = typeof fnOrSrc === 'function' ? fnOrSrc.toString() : fnOrSrc;
  let ast: Node;
  try {
    ast = parseFunction(src);
  } catch (e) {
    const where = e instanceof ParseError ? ` ${e.line}:${e.column + 1}` : '';
    throw new WebattnError('FLEX_COMPILE', `${argument}${where}: cannot parse the function source (${(e as Error).message}); write it as an arrow function or function expression`, { argument });
  }
  if (key) parsed.set(key, ast);
  else {
    if (parsedSrc.size > 512) parsedSrc.clear();
    parsedSrc.set(src, ast);
  }
  return ast;
}

const MATH: Record<string, { arity: [number, number] }> = {
  exp: { arity: [1, 1] }, log: { arity: [1, 1] }, tanh: { arity: [1, 1] }, abs: { arity: [1, 1] }, sqrt: { arity: [1, 1] },
  floor: { arity: [1, 1] }, ceil: { arity: [1, 1] }, round: { arity: [1, 1] }, trunc: { arity: [1, 1] }, sign: { arity: [1, 1] },
  sin: { arity: [1, 1] }, cos: { arity: [1, 1] }, pow: { arity: [2, 2] }, min: { arity: [2, 8] }, max: { arity: [2, 8] },
};

type AnyNode = Node;

/**
 * Compiles `src` (an arrow function or function expression) with parameters bound to `slots`
 * (`['score','b','h','q','kv']` for score mods, `['b','h','q','kv']` for mask mods), or to IR given in `bind`.
 */
export function compileSource(
  src: string | ((...a: never[]) => unknown),
  kind: 'score' | 'mask',
  captures: Record<string, CaptureSig>,
  argument: string,
  bind?: IR[],
  prefix = '',
): Compiled {
  const fnNode = parseCached(src, argument);
  const at = (n: AnyNode) => `${argument} ${n.loc ? `${n.loc.start.line}:${n.loc.start.column + 1}` : ''}`;
  const fail = (n: AnyNode, msg: string, hint = ''): never => {
    throw new WebattnError('FLEX_COMPILE', `${at(n)}: ${msg}${hint ? ` — ${hint}` : ''}`, { argument });
  };
  if (fnNode.type !== 'ArrowFunctionExpression' && fnNode.type !== 'FunctionExpression') {
    fail(fnNode, `expected a function expression, got ${fnNode.type}`, 'pass (score, b, h, qIdx, kvIdx) => ... or a function(...) {...}');
  }
  if (fnNode.async || fnNode.generator) fail(fnNode, 'async and generator functions are not supported');
  const slots: ParamSlot[] = kind === 'score' ? ['score', 'b', 'h', 'q', 'kv'] : ['b', 'h', 'q', 'kv'];
  const params = fnNode.params as AnyNode[];
  const sig = `(${[...slots, 'captures'].join(', ')})`;
  if (params.length > slots.length + 1) fail(fnNode, `expected at most ${slots.length + 1} parameters ${sig}, got ${params.length}`);
  const env = new Map<string, IR>();
  /** Local names bound to a capture: the captures parameter itself ('' ) or a destructured property. */
  const capAlias = new Map<string, string>();
  let capsParam: string | null = null;
  const capHint = (name: string) => `the captures given are { ${Object.keys(captures).join(', ')} }; pass ${name} in captures: scoreMod(fn, { ${name} })`;
  params.forEach((p, i) => {
    if (i === slots.length) {
      // the captures parameter
      if (p.type === 'Identifier') capsParam = p.name as string;
      else if (p.type === 'ObjectPattern') {
        for (const prop of p.properties as AnyNode[]) {
          if (prop.value.type !== 'Identifier') fail(prop, 'captures parameter: expected { name } or { name: local }', 'no nested patterns or defaults');
          const name = prop.key.name as string;
          if (!captures[name]) fail(prop, `captures parameter: '${name}' is not a capture`, capHint(name));
          capAlias.set(prop.value.name as string, name);
        }
      } else fail(p, 'the captures parameter must be an identifier or an object pattern { a, b }');
      return;
    }
    if (p.type !== 'Identifier') fail(p, 'parameters must be plain identifiers', 'no defaults or destructuring (except the captures parameter)');
    const slot = slots[i]!;
    env.set(p.name, bind ? bind[i]! : { k: 'param', slot, ty: slot === 'score' ? 'f32' : 'i32' });
  });
  const used = new Set<string>();
  const closure = new Set<string>();
  const numberTypes = new Map<string, 'i32' | 'f32'>();
  let loadId = 0;
  /** The capture a node names: `c.name`, `c['name']`, a destructured alias, or a free identifier (closure). */
  const captureOf = (n: AnyNode): string | null => {
    if (n.type === 'Identifier') {
      const name = n.name as string;
      if (env.has(name)) return null;
      const alias = capAlias.get(name);
      if (alias) return alias;
      if (captures[name]) {
        closure.add(name);
        return name;
      }
      return null;
    }
    if (n.type === 'MemberExpression' && n.object.type === 'Identifier' && capsParam !== null && n.object.name === capsParam && !env.has(capsParam)) {
      const name = n.computed ? (n.property.type === 'Literal' && typeof n.property.value === 'string' ? n.property.value : null) : (n.property.name as string);
      if (name === null) return fail(n, 'the captures parameter must be indexed by a name', `write ${capsParam}.name`);
      if (!captures[name]) return fail(n, `'${name}' is not a capture`, capHint(name));
      return name;
    }
    return null;
  };
  const unknown = (n: AnyNode, name: string): never =>
    fail(
      n,
      `unknown identifier '${name}'`,
      `pass values through the captures parameter: (${kind === 'score' ? 's, ' : ''}b, h, q, kv, c) => … c.${name} …, with captures { ${name} }. ` +
        `A closure variable cannot be compiled once a minifier renamed it (this function's source is what a bundler left)`,
    );

  const unify = (a: IR, b: IR): [IR, IR] => {
    if (a.ty === 'bool' || b.ty === 'bool') return [a, b];
    if (a.ty === b.ty) return [a, b];
    return [cast(a, 'f32'), cast(b, 'f32')];
  };
  const numeric = (n: AnyNode, a: IR, what: string): IR => {
    if (a.ty === 'bool') fail(n, `${what}: expected a number, got a boolean`, 'compare first, or use a ternary');
    return a;
  };
  const boolean = (n: AnyNode, a: IR, what: string): IR => {
    if (a.ty !== 'bool') fail(n, `${what}: expected a boolean, got a number`, 'write an explicit comparison such as x !== 0');
    return a;
  };

  const captureValue = (n: AnyNode, name: string): IR => {
    const c = captures[name]!;
    used.add(name);
    if (c.kind === 'number') {
      const ty = c.integer ? 'i32' : 'f32';
      numberTypes.set(name, ty);
      return { k: 'capnum', name: prefix + name, ty };
    }
    return fail(n, `captured tensor '${name}' must be indexed`, `write ${name}[i]${c.rank === 2 ? '[j]' : ''}`);
  };

  const expr = (n: AnyNode): IR => {
    switch (n.type) {
      case 'Literal': {
        if (typeof n.value === 'number') return num(n.value, Number.isInteger(n.value) && Math.abs(n.value) < 2 ** 31 ? 'i32' : 'f32');
        if (typeof n.value === 'boolean') return { k: 'bool', v: n.value, ty: 'bool' };
        return fail(n, `unsupported literal ${JSON.stringify(n.value)}`, 'only numbers and booleans');
      }
      case 'Identifier': {
        const name = n.name as string;
        const local = env.get(name);
        if (local) return local;
        if (name === 'Infinity') return num(Infinity);
        if (name === 'NaN') return num(NaN);
        const cap = captureOf(n);
        if (!cap) return unknown(n, name);
        return captureValue(n, cap);
      }
      case 'UnaryExpression': {
        const a = expr(n.argument);
        if (n.operator === '-') {
          numeric(n, a, 'unary -');
          return a.k === 'num' ? num(-a.v, a.ty as 'f32' | 'i32') : { k: 'un', op: '-', a, ty: a.ty };
        }
        if (n.operator === '+') return numeric(n, a, 'unary +');
        if (n.operator === '!' && a.k === 'num') return { k: 'bool', v: !a.v, ty: 'bool' }; // minifiers write !0 / !1
        if (n.operator === '!') return { k: 'un', op: '!', a: boolean(n, a, '!'), ty: 'bool' };
        return fail(n, `unsupported operator '${n.operator}'`);
      }
      case 'BinaryExpression': {
        const op0 = n.operator as string;
        const map: Record<string, BinOp> = { '+': '+', '-': '-', '*': '*', '/': '/', '%': '%', '<': '<', '<=': '<=', '>': '>', '>=': '>=', '===': '==', '==': '==', '!==': '!=', '!=': '!=' };
        const op = map[op0];
        if (!op) return fail(n, `unsupported operator '${op0}'`, 'supported: + - * / % < <= > >= === !== && || ! ?:');
        let a = expr(n.left);
        let b = expr(n.right);
        if (op === '==' || op === '!=') {
          if ((a.ty === 'bool') !== (b.ty === 'bool')) fail(n, `cannot compare a boolean with a number`);
          [a, b] = unify(a, b);
          return { k: 'bin', op, a, b, ty: 'bool' };
        }
        numeric(n.left, a, `left of ${op0}`);
        numeric(n.right, b, `right of ${op0}`);
        if (op === '/') {
          // constant operands fold in float64 (JS semantics: 1 / 0 is Infinity), never a WGSL const-expression error
          if (a.k === 'num' && b.k === 'num') return num(a.v / b.v);
          return { k: 'bin', op, a: cast(a, 'f32'), b: cast(b, 'f32'), ty: 'f32' };
        }
        [a, b] = unify(a, b);
        const cmp = op === '<' || op === '<=' || op === '>' || op === '>=';
        if (!cmp && a.k === 'num' && b.k === 'num') {
          // constants fold in float64 as JS computes them (2147483647 * 2 is not an i32 overflow, nor a WGSL const-eval error)
          const v = op === '+' ? a.v + b.v : op === '-' ? a.v - b.v : op === '*' ? a.v * b.v : a.v % b.v;
          return num(v, a.ty === 'i32' && Number.isInteger(v) && Math.abs(v) < 2 ** 31 ? 'i32' : 'f32');
        }
        return { k: 'bin', op, a, b, ty: cmp ? 'bool' : a.ty };
      }
      case 'LogicalExpression': {
        const op = n.operator === '&&' ? '&&' : n.operator === '||' ? '||' : null;
        if (!op) return fail(n, `unsupported operator '${n.operator}'`);
        return { k: 'bin', op, a: boolean(n.left, expr(n.left), op), b: boolean(n.right, expr(n.right), op), ty: 'bool' };
      }
      case 'ConditionalExpression': {
        const c = boolean(n.test, expr(n.test), 'condition of ?:');
        let a = expr(n.consequent);
        let b = expr(n.alternate);
        if ((a.ty === 'bool') !== (b.ty === 'bool')) fail(n, 'both branches of ?: must be numbers or both booleans');
        [a, b] = unify(a, b);
        return { k: 'cond', c, a, b, ty: a.ty };
      }
      case 'MemberExpression': {
        if (!n.computed && n.object.type === 'Identifier' && n.object.name === 'Math') {
          if (n.property.name === 'PI') return num(Math.PI);
          if (n.property.name === 'E') return num(Math.E);
          return fail(n, `Math.${n.property.name} is not a supported constant`, 'use Math.PI or Math.E');
        }
        const direct = captureOf(n);
        if (direct) return captureValue(n, direct);
        if (!n.computed) return fail(n, 'property access is not supported', 'only captures can be read (c.name) and captured tensors indexed: t[i] or t[i][j]');
        const idx: AnyNode[] = [];
        let base: AnyNode = n;
        while (base.type === 'MemberExpression' && base.computed && !captureOf(base)) {
          idx.unshift(base.property);
          base = base.object;
        }
        const name = captureOf(base);
        if (!name) return base.type === 'Identifier' && !env.has(base.name) ? unknown(base, base.name) : fail(base, 'only captured tensors can be indexed');
        const c = captures[name]!;
        if (c.kind !== 'tensor') return fail(base, `captured number '${name}' cannot be indexed`);
        if (idx.length !== c.rank) return fail(n, `captured tensor '${name}' has rank ${c.rank} but is indexed with ${idx.length} indices`);
        used.add(name);
        const ir = idx.map((i) => cast(numeric(i, expr(i), 'index'), 'i32'));
        const ty: Ty = c.dtype === 'float32' ? 'f32' : c.dtype === 'int32' ? 'i32' : 'bool';
        return { k: 'load' as const, name: prefix + name, idx: ir, ty, id: loadId++ };
      }
      case 'CallExpression': {
        const callee = n.callee as AnyNode;
        if (callee.type !== 'MemberExpression' || callee.computed || callee.object.type !== 'Identifier' || callee.object.name !== 'Math') {
          return fail(n, 'only Math functions can be called', `supported: Math.${Object.keys(MATH).join(', Math.')}`);
        }
        const fnName = callee.property.name as string;
        const spec = MATH[fnName];
        if (!spec) return fail(callee, `Math.${fnName} is not supported`, `supported: Math.${Object.keys(MATH).join(', Math.')}`);
        const args = (n.arguments as AnyNode[]).map((a) => numeric(a, expr(a), `argument of Math.${fnName}`));
        if (args.length < spec.arity[0] || args.length > spec.arity[1]) fail(n, `Math.${fnName} takes ${spec.arity[0]}${spec.arity[1] > spec.arity[0] ? '+' : ''} arguments, got ${args.length}`);
        const fn = fnName as MathFn;
        if ((fn === 'floor' || fn === 'ceil') && args[0]!.k === 'bin' && args[0]!.op === '/') {
          const d = args[0] as Extract<IR, { k: 'bin' }>;
          const ia = d.a.k === 'cast' ? d.a.a : d.a;
          const ib = d.b.k === 'cast' ? d.b.a : d.b;
          if (ia.ty === 'i32' && ib.ty === 'i32') return { k: 'idiv', mode: fn, a: ia, b: ib, ty: 'i32' };
        }
        if (fn === 'floor' || fn === 'ceil' || fn === 'round' || fn === 'trunc') {
          return args[0]!.ty === 'i32' ? args[0]! : { k: 'call', fn, args, ty: 'f32' };
        }
        if (fn === 'abs' || fn === 'min' || fn === 'max' || fn === 'sign') {
          const allInt = args.every((a) => a.ty === 'i32');
          const as = allInt ? args : args.map((a) => cast(a, 'f32'));
          if (fn === 'min' || fn === 'max') return as.reduce((p, c) => ({ k: 'call', fn, args: [p, c], ty: allInt ? 'i32' : 'f32' }));
          return { k: 'call', fn, args: as, ty: allInt ? 'i32' : 'f32' };
        }
        return { k: 'call', fn, args: args.map((a) => cast(a, 'f32')), ty: 'f32' };
      }
      case 'ParenthesizedExpression':
        return expr(n.expression);
      default:
        return fail(n, `unsupported syntax ${n.type}`, 'use expressions, const declarations and return');
    }
  };

  let result: IR;
  if (fnNode.body.type === 'BlockStatement') {
    const body = fnNode.body.body as AnyNode[];
    let ret: IR | null = null;
    for (const st of body) {
      if (ret) fail(st, 'unreachable statement after return');
      if (st.type === 'VariableDeclaration') {
        if (st.kind === 'var') fail(st, `'var' declarations are not supported`, 'use const');
        for (const d of st.declarations as AnyNode[]) {
          if (d.id.type !== 'Identifier' || !d.init) fail(d, `expected ${st.kind} name = expression`);
          env.set(d.id.name, expr(d.init));
        }
      } else if (st.type === 'ReturnStatement') {
        if (!st.argument) fail(st, 'return needs a value');
        ret = expr(st.argument);
      } else {
        fail(st, `unsupported statement ${st.type}`, 'the body may hold const declarations and one final return');
      }
    }
    if (!ret) return fail(fnNode, 'the function never returns a value');
    result = ret;
  } else {
    result = expr(fnNode.body);
  }
  if (kind === 'score') {
    if (result.ty === 'bool') fail(fnNode, 'wrong return type: a score mod must return a number, this one returns a boolean', 'did you mean a mask mod?');
    result = cast(result, 'f32');
  } else if (result.ty !== 'bool') {
    fail(fnNode, 'wrong return type: a mask mod must return a boolean, this one returns a number', 'return a comparison such as qIdx >= kvIdx');
  }
  return { ir: result, used, numberTypes, closure };
}
