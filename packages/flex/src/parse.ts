/**
 * A small parser of the JavaScript subset flex compiles: one function (arrow, `function`, or method
 * shorthand), parameters that are identifiers or an object pattern (the captures parameter), a body
 * that is an expression or a block of `const`/`let` declarations and `return`, and expressions made of
 * literals, identifiers, unary/binary/logical/conditional operators, member access and calls.
 * It produces ESTree-shaped nodes (the shapes acorn gives) with line:column locations. Anything else
 * is parsed far enough to be named in the compiler's `FLEX_COMPILE` error (`unsupported syntax X`).
 *
 * Why not acorn: flex compiles synchronously inside `flexAttention`, so a parser loaded on demand
 * (dynamic import) would make the first call asynchronous; a full ES parser (118 of 239 KB of a
 * minified app) is far more than this subset needs.
 */

/** A parsed node: ESTree type, location, and the fields of that type. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Node = { type: string; loc: { start: { line: number; column: number } } } & Record<string, any>;

/** A syntax error at a position (the compiler turns it into `FLEX_COMPILE`). */
export class ParseError extends Error {
  constructor(
    message: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(`${message} (${line}:${column + 1})`);
  }
}

interface Token {
  t: 'num' | 'str' | 'tmpl' | 'name' | 'punc' | 'eof';
  v: string;
  num?: number;
  pos: number;
}

const PUNCS = ['>>>=', '...', '===', '!==', '**=', '>>>', '<<=', '>>=', '=>', '==', '!=', '<=', '>=', '&&', '||', '??', '?.', '**', '++', '--', '+=', '-=', '*=', '/=', '%=', '<<', '>>', '&=', '|=', '^=',
  '(', ')', '[', ']', '{', '}', ',', ';', ':', '?', '.', '+', '-', '*', '/', '%', '<', '>', '=', '!', '~', '&', '|', '^'];

function tokenize(src: string, locate: (pos: number) => [number, number]): Token[] {
  const out: Token[] = [];
  let i = 0;
  const err = (msg: string, at = i): never => {
    const [l, c] = locate(at);
    throw new ParseError(msg, l, c);
  };
  while (i < src.length) {
    const ch = src[i]!;
    if (/\s/.test(ch)) {
      i++;
      continue;
    }
    if (src.startsWith('//', i)) {
      while (i < src.length && src[i] !== '\n') i++;
      continue;
    }
    if (src.startsWith('/*', i)) {
      const end = src.indexOf('*/', i + 2);
      if (end < 0) err('unterminated comment');
      i = end + 2;
      continue;
    }
    const start = i;
    if (/[0-9]/.test(ch) || (ch === '.' && /[0-9]/.test(src[i + 1] ?? ''))) {
      const m = /^(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|(?:[0-9][0-9_]*)?\.?[0-9_]*(?:[eE][+-]?[0-9_]+)?)n?/.exec(src.slice(i))!;
      const text = m[0];
      if (text.endsWith('n')) err('BigInt literals are not supported');
      const clean = text.replace(/_/g, '');
      out.push({ t: 'num', v: text, num: /^0[xXoObB]/.test(clean) ? Number(clean) : parseFloat(clean), pos: start });
      i += text.length;
      continue;
    }
    if (/[A-Za-z_$\u0080-\uffff]/.test(ch)) {
      const m = /^[A-Za-z0-9_$\u0080-\uffff]+/.exec(src.slice(i))!;
      out.push({ t: 'name', v: m[0], pos: start });
      i += m[0].length;
      continue;
    }
    if (ch === '"' || ch === "'") {
      i++;
      while (i < src.length && src[i] !== ch) i += src[i] === '\\' ? 2 : 1;
      if (i >= src.length) err('unterminated string', start);
      i++;
      out.push({ t: 'str', v: src.slice(start + 1, i - 1), pos: start });
      continue;
    }
    if (ch === '`') {
      i++;
      let depth = 0;
      while (i < src.length && !(src[i] === '`' && depth === 0)) {
        if (src[i] === '\\') i++;
        else if (src.startsWith('${', i)) {
          depth++;
          i++;
        } else if (src[i] === '}' && depth > 0) depth--;
        i++;
      }
      if (i >= src.length) err('unterminated template literal', start);
      i++;
      out.push({ t: 'tmpl', v: src.slice(start, i), pos: start });
      continue;
    }
    const p = PUNCS.find((x) => src.startsWith(x, i));
    if (!p) err(`unexpected character ${JSON.stringify(ch)}`);
    out.push({ t: 'punc', v: p!, pos: start });
    i += p!.length;
  }
  out.push({ t: 'eof', v: '', pos: src.length });
  return out;
}

const BINARY: Record<string, number> = {
  '??': 1, '||': 2, '&&': 3, '|': 4, '^': 5, '&': 6, '==': 7, '!=': 7, '===': 7, '!==': 7,
  '<': 8, '>': 8, '<=': 8, '>=': 8, instanceof: 8, in: 8, '<<': 9, '>>': 9, '>>>': 9,
  '+': 10, '-': 10, '*': 11, '/': 11, '%': 11, '**': 12,
};

/** Parses the function whose source is `src` (as `Function.prototype.toString` gives it). */
export function parseFunction(src: string): Node {
  const lineStarts = [0];
  for (let i = 0; i < src.length; i++) if (src[i] === '\n') lineStarts.push(i + 1);
  const locate = (pos: number): [number, number] => {
    let l = lineStarts.length - 1;
    while (lineStarts[l]! > pos) l--;
    return [l + 1, pos - lineStarts[l]!];
  };
  const toks = tokenize(src, locate);
  let k = 0;
  const peek = (o = 0) => toks[Math.min(k + o, toks.length - 1)]!;
  const next = () => toks[k++]!;
  const is = (v: string, o = 0) => {
    const t = peek(o);
    return (t.t === 'punc' || t.t === 'name') && t.v === v;
  };
  const loc = (tok: Token) => {
    const [line, column] = locate(tok.pos);
    return { start: { line, column } };
  };
  const node = (type: string, at: Token, fields: Record<string, unknown> = {}): Node => ({ type, loc: loc(at), ...fields });
  const fail = (msg: string, at = peek()): never => {
    const [l, c] = locate(at.pos);
    throw new ParseError(msg, l, c);
  };
  const expect = (v: string) => {
    if (!is(v)) fail(`expected '${v}', got ${peek().t === 'eof' ? 'the end' : `'${peek().v}'`}`);
    return next();
  };
  /** Index of the token closing the bracket opened at token `from`. */
  const closing = (from: number): number => {
    let depth = 0;
    for (let j = from; j < toks.length; j++) {
      const t = toks[j]!;
      if (t.t !== 'punc') continue;
      if (t.v === '(' || t.v === '[' || t.v === '{') depth++;
      else if (t.v === ')' || t.v === ']' || t.v === '}') {
        depth--;
        if (depth === 0) return j;
      }
    }
    return fail('unbalanced brackets', toks[from]);
  };

  const pattern = (): Node => {
    const at = peek();
    if (at.t === 'name') return node('Identifier', next(), { name: at.v });
    if (is('{')) {
      next();
      const properties: Node[] = [];
      while (!is('}')) {
        const pAt = peek();
        if (is('...')) return fail('rest elements are not supported');
        if (pAt.t !== 'name' && pAt.t !== 'str') fail('expected a property name in the pattern');
        next();
        const key = node('Identifier', pAt, { name: pAt.v });
        let value: Node = key;
        let shorthand = true;
        if (is(':')) {
          next();
          value = pattern();
          shorthand = false;
        }
        if (is('=')) {
          const d = next();
          assign();
          value = node('AssignmentPattern', d);
        }
        properties.push(node('Property', pAt, { key, value, shorthand }));
        if (!is('}')) expect(',');
      }
      next();
      return node('ObjectPattern', at, { properties });
    }
    if (is('[')) {
      k = closing(k) + 1;
      return node('ArrayPattern', at);
    }
    return fail(`unexpected '${at.v}' in parameters`);
  };

  const params = (): Node[] => {
    expect('(');
    const out: Node[] = [];
    while (!is(')')) {
      if (is('...')) {
        const at = next();
        pattern();
        out.push(node('RestElement', at));
      } else {
        let p = pattern();
        if (is('=')) {
          const at = next();
          assign();
          p = node('AssignmentPattern', at, { left: p });
        }
        out.push(p);
      }
      if (!is(')')) expect(',');
    }
    next();
    return out;
  };

  const block = (): Node => {
    const at = expect('{');
    const body: Node[] = [];
    while (!is('}')) {
      if (peek().t === 'eof') fail("expected '}'");
      const st = statement();
      if (st === null) continue;
      body.push(st);
      if (st.unparsed) {
        // unsupported statement: the compiler rejects it; skip to the end of the function
        k = toks.length - 1;
        return node('BlockStatement', at, { body });
      }
    }
    next();
    return node('BlockStatement', at, { body });
  };

  const statement = (): Node | null => {
    const at = peek();
    if (is(';')) {
      next();
      return null;
    }
    if (at.t === 'name' && (at.v === 'const' || at.v === 'let' || at.v === 'var')) {
      next();
      const declarations: Node[] = [];
      do {
        const dAt = peek();
        const id = pattern();
        let init: Node | null = null;
        if (is('=')) {
          next();
          init = assign();
        }
        declarations.push(node('VariableDeclarator', dAt, { id, init }));
      } while (is(',') && next());
      if (is(';')) next();
      return node('VariableDeclaration', at, { kind: at.v, declarations });
    }
    if (at.t === 'name' && at.v === 'return') {
      next();
      const argument = is(';') || is('}') ? null : expression();
      if (is(';')) next();
      return node('ReturnStatement', at, { argument });
    }
    const kinds: Record<string, string> = { if: 'IfStatement', for: 'ForStatement', while: 'WhileStatement', do: 'DoWhileStatement', switch: 'SwitchStatement', throw: 'ThrowStatement', try: 'TryStatement', function: 'FunctionDeclaration', class: 'ClassDeclaration', break: 'BreakStatement', continue: 'ContinueStatement' };
    if (at.t === 'name' && kinds[at.v]) return node(kinds[at.v]!, at, { unparsed: true });
    if (is('{')) return node('BlockStatement', at, { unparsed: true });
    const expr = expression();
    if (is(';')) next();
    return node('ExpressionStatement', at, { expression: expr });
  };

  const fnRest = (at: Token, type: 'FunctionExpression', extra: Record<string, unknown>): Node => {
    const ps = params();
    return node(type, at, { params: ps, body: block(), ...extra });
  };

  const arrow = (at: Token, ps: Node[], isAsync: boolean): Node => {
    expect('=>');
    const body = is('{') ? block() : assign();
    return node('ArrowFunctionExpression', at, { params: ps, body, expression: body.type !== 'BlockStatement', async: isAsync, generator: false });
  };

  const primary = (): Node => {
    const at = peek();
    switch (at.t) {
      case 'num':
        next();
        return node('Literal', at, { value: at.num });
      case 'str':
        next();
        return node('Literal', at, { value: at.v });
      case 'tmpl':
        next();
        return node('TemplateLiteral', at);
      case 'eof':
        return fail('unexpected end of the function source');
      case 'name': {
        if (at.v === 'true' || at.v === 'false') {
          next();
          return node('Literal', at, { value: at.v === 'true' });
        }
        if (at.v === 'null') {
          next();
          return node('Literal', at, { value: null });
        }
        if (at.v === 'this') {
          next();
          return node('ThisExpression', at);
        }
        const isAsync = at.v === 'async' && (peek(1).t === 'name' || is('(', 1)) && !is('=>', 1);
        if (isAsync && is('function', 1)) {
          next();
          next();
          const generator = is('*') && !!next();
          if (peek().t === 'name') next();
          return fnRest(at, 'FunctionExpression', { async: true, generator });
        }
        if (at.v === 'function') {
          next();
          const generator = is('*') && !!next();
          if (peek().t === 'name') next();
          return fnRest(at, 'FunctionExpression', { async: false, generator });
        }
        if (isAsync) {
          next();
          if (peek().t === 'name') return arrow(at, [node('Identifier', peek(), { name: next().v })], true);
          return arrow(at, params(), true);
        }
        if (at.v === 'new') {
          next();
          unary();
          return node('NewExpression', at);
        }
        next();
        if (is('=>')) return arrow(at, [node('Identifier', at, { name: at.v })], false);
        return node('Identifier', at, { name: at.v });
      }
      case 'punc': {
        if (at.v === '(') {
          const close = closing(k);
          if (toks[close + 1]?.t === 'punc' && toks[close + 1]!.v === '=>') return arrow(at, params(), false);
          next();
          const e = expression();
          expect(')');
          return e;
        }
        if (at.v === '[') {
          k = closing(k) + 1;
          return node('ArrayExpression', at);
        }
        if (at.v === '{') {
          k = closing(k) + 1;
          return node('ObjectExpression', at);
        }
        return fail(`unexpected '${at.v}'`);
      }
    }
  };

  const postfix = (): Node => {
    let e = primary();
    for (;;) {
      const at = peek();
      if (is('.')) {
        next();
        const p = peek();
        if (p.t !== 'name') fail('expected a property name after .');
        next();
        e = node('MemberExpression', at, { object: e, property: node('Identifier', p, { name: p.v }), computed: false, loc: e.loc });
      } else if (is('?.')) {
        return node('ChainExpression', at);
      } else if (is('[')) {
        next();
        const property = expression();
        expect(']');
        e = node('MemberExpression', at, { object: e, property, computed: true, loc: e.loc });
      } else if (is('(')) {
        next();
        const args: Node[] = [];
        while (!is(')')) {
          if (is('...')) fail('spread arguments are not supported');
          args.push(assign());
          if (!is(')')) expect(',');
        }
        next();
        e = node('CallExpression', at, { callee: e, arguments: args, loc: e.loc });
      } else if (at.t === 'tmpl') {
        next();
        e = node('TaggedTemplateExpression', at);
      } else if (is('++') || is('--')) {
        next();
        e = node('UpdateExpression', at);
      } else return e;
    }
  };

  const unary = (): Node => {
    const at = peek();
    if (at.t === 'punc' && ['!', '-', '+', '~'].includes(at.v)) {
      next();
      return node('UnaryExpression', at, { operator: at.v, argument: unary(), prefix: true });
    }
    if (at.t === 'punc' && (at.v === '++' || at.v === '--')) {
      next();
      unary();
      return node('UpdateExpression', at);
    }
    if (at.t === 'name' && ['typeof', 'void', 'delete'].includes(at.v) && !is('=>', 1)) {
      next();
      return node('UnaryExpression', at, { operator: at.v, argument: unary(), prefix: true });
    }
    if (at.t === 'name' && at.v === 'await') {
      next();
      unary();
      return node('AwaitExpression', at);
    }
    return postfix();
  };

  const binary = (minPrec: number): Node => {
    let left = unary();
    for (;;) {
      const at = peek();
      const op = at.t === 'punc' || (at.t === 'name' && (at.v === 'in' || at.v === 'instanceof')) ? at.v : '';
      const prec = BINARY[op];
      if (prec === undefined || prec < minPrec) return left;
      next();
      const right = op === '**' ? binary(prec) : binary(prec + 1);
      const type = op === '&&' || op === '||' || op === '??' ? 'LogicalExpression' : 'BinaryExpression';
      left = { type, loc: left.loc, operator: op, left, right, opLoc: loc(at) };
    }
  };

  const assign = (): Node => {
    const test = binary(1);
    const at = peek();
    if (is('?')) {
      next();
      const consequent = assign();
      expect(':');
      const alternate = assign();
      return { type: 'ConditionalExpression', loc: test.loc, test, consequent, alternate };
    }
    if (at.t === 'punc' && at.v.endsWith('=') && !['==', '===', '!=', '!==', '<=', '>=', '=>'].includes(at.v)) {
      next();
      assign();
      return node('AssignmentExpression', at, { operator: at.v });
    }
    return test;
  };

  const expression = (): Node => {
    const first = assign();
    if (!is(',')) return first;
    const expressions = [first];
    while (is(',')) {
      next();
      expressions.push(assign());
    }
    return { type: 'SequenceExpression', loc: first.loc, expressions };
  };

  // the function itself: arrow, function expression, or method shorthand `name(...) { ... }`
  const at = peek();
  let fn: Node;
  if (at.t === 'name' && at.v !== 'function' && at.v !== 'async' && is('(', 1) && (() => {
    const close = closing(k + 1);
    return toks[close + 1]?.v === '{';
  })()) {
    next();
    fn = fnRest(at, 'FunctionExpression', { async: false, generator: false });
  } else {
    fn = assign();
  }
  return fn;
}
