/**
 * The flex IR as a WebAssembly module of tile functions (core-tensor `FlexKernelAttrs.tileWasm`): the same two
 * functions as the JS tile source (tile-mods.ts) — `fwd` applies the mask and score functions to a score tile,
 * `bwd` turns ∂L/∂(modified score) into ∂L/∂(raw score) and accumulates capture gradients — compiled to wasm f32/i32
 * code over the backend's shared memory. Arithmetic is f32 like the WGSL target; integer division and remainder go
 * through f64 (no traps); captured-tensor reads clamp and raise the out-of-bounds flag.
 */
import { derivative } from './codegen.js';
import type { IR, Ty } from './ir.js';

/** Where the captures live (see tile-mods.ts). */
export interface WasmLayout {
  numbers: Map<string, { slot: number; type: 'f32' | 'i32' }>;
  tensors: Map<string, { slot: number; int: boolean; shape: readonly number[] }>;
}

// ---- encoding --------------------------------------------------------------------------------------------------
const I32 = 0x7f, F32 = 0x7d;
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}
const str = (s: string) => [...uleb(s.length), ...[...s].map((c) => c.charCodeAt(0))];
const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
function f32c(v: number): number[] {
  const b = new Uint8Array(new Float32Array([v]).buffer);
  return [0x43, ...b];
}
const i32c = (v: number) => [0x41, ...sleb(v | 0)];
const MEM = [0x02, 0x00]; // align 4, offset 0
const OP = {
  get: 0x20, set: 0x21, gget: 0x23, gset: 0x24, i32load: 0x28, f32load: 0x2a, i32store: 0x36, f32store: 0x38,
  block: 0x02, loop: 0x03, if: 0x04, else: 0x05, end: 0x0b, br: 0x0c, brIf: 0x0d, call: 0x10,
  i32eqz: 0x45, i32eq: 0x46, i32ne: 0x47, i32lt: 0x48, i32gt: 0x4a, i32le: 0x4c, i32ge: 0x4e,
  f32eq: 0x5b, f32ne: 0x5c, f32lt: 0x5d, f32gt: 0x5e, f32le: 0x5f, f32ge: 0x60,
  i32add: 0x6a, i32sub: 0x6b, i32mul: 0x6c, i32xor: 0x73, i32shl: 0x74, i32shr: 0x75,
  f32abs: 0x8b, f32neg: 0x8c, f32ceil: 0x8d, f32floor: 0x8e, f32trunc: 0x8f, f32sqrt: 0x91,
  f32add: 0x92, f32sub: 0x93, f32mul: 0x94, f32div: 0x95, f32min: 0x96, f32max: 0x97,
  f64ceil: 0x9b, f64floor: 0x9c, f64trunc: 0x9d, f64sub: 0xa1, f64mul: 0xa2, f64div: 0xa3,
  f32fromI32: 0xb2, f64fromI32: 0xb7, f64fromF32: 0xbb,
} as const;
const TRUNC_SAT_F32 = [0xfc, 0x00];
const TRUNC_SAT_F64 = [0xfc, 0x02];

/** Imported math, in import order (function indices 0..6). */
const MATH = ['exp', 'log', 'tanh', 'sin', 'cos', 'pow', 'sign'] as const;
const FN_IX = MATH.length; // the clamp helper
const FN_FWD = FN_IX + 1;
const FN_BWD = FN_IX + 2;

/** Locals of one function: parameters first, then named locals by type. */
class Fn {
  private readonly names = new Map<string, number>();
  readonly extra: number[] = [];
  constructor(params: string[]) {
    params.forEach((p, i) => this.names.set(p, i));
  }
  local(name: string, ty: number): number {
    let i = this.names.get(name);
    if (i === undefined) {
      i = this.names.size;
      this.names.set(name, i);
      this.extra.push(ty);
    }
    return i;
  }
  get(name: string): number {
    const i = this.names.get(name);
    if (i === undefined) throw new Error(`wasm tile: no local ${name}`);
    return i;
  }
  body(code: number[]): number[] {
    const locals = vec(this.extra.map((t) => [1, t]));
    const b = [...locals, ...code, OP.end];
    return [...uleb(b.length), ...b];
  }
}

const wty = (t: Ty) => (t === 'f32' ? F32 : I32);

/** Converts the value on the stack from IR type `from` to `to` (JS-like: f32 → i32 truncates, NaN → 0). */
function coerce(from: Ty, to: Ty): number[] {
  if (from === to || (from !== 'f32' && to !== 'f32' && to !== 'bool') || (from === 'bool' && to === 'i32')) return [];
  if (to === 'f32') return [OP.f32fromI32];
  if (to === 'i32') return TRUNC_SAT_F32;
  // to bool
  return from === 'f32' ? [OP.f32abs, ...f32c(0), OP.f32gt] : [...i32c(0), OP.i32ne];
}

function emit(ir: IR, f: Fn, L: WasmLayout): number[] {
  const e = (n: IR) => emit(n, f, L);
  const as = (n: IR, t: Ty) => [...e(n), ...coerce(n.ty, t)];
  const asF64 = (n: IR) => [...e(n), ...(n.ty === 'f32' ? [OP.f64fromF32] : [OP.f64fromI32])];
  switch (ir.k) {
    case 'num':
      return ir.ty === 'i32' ? i32c(ir.v) : f32c(ir.v);
    case 'bool':
      return i32c(ir.v ? 1 : 0);
    case 'param':
      return [OP.get, f.get(`p_${ir.slot}`)];
    case 'capnum': {
      const n = L.numbers.get(ir.name)!;
      return [OP.get, f.get(`n${n.slot}`), ...coerce(n.type, ir.ty)];
    }
    case 'load': {
      const t = L.tensors.get(ir.name)!;
      const idx = (k: number) => [...as(ir.idx[k]!, 'i32'), ...i32c(t.shape[k]!), OP.call, FN_IX];
      let flat = idx(0);
      for (let d = 1; d < ir.idx.length; d++) flat = [...flat, ...i32c(t.shape[d]!), OP.i32mul, ...idx(d), OP.i32add];
      const addr = [OP.get, f.get(`t${t.slot}`), ...flat, ...i32c(2), OP.i32shl, OP.i32add];
      const v = t.int ? [...addr, OP.i32load, ...MEM] : [...addr, OP.f32load, ...MEM];
      const ty: Ty = t.int ? 'i32' : 'f32';
      return [...v, ...coerce(ty, ir.ty)];
    }
    case 'un':
      if (ir.op === '!') return [...as(ir.a, 'bool'), OP.i32eqz];
      return ir.ty === 'f32' ? [...as(ir.a, 'f32'), OP.f32neg] : [...i32c(0), ...as(ir.a, 'i32'), OP.i32sub];
    case 'bin': {
      const { op, a, b } = ir;
      if (op === '&&') return [...as(a, 'bool'), OP.if, I32, ...as(b, 'bool'), OP.else, ...i32c(0), OP.end];
      if (op === '||') return [...as(a, 'bool'), OP.if, I32, ...i32c(1), OP.else, ...as(b, 'bool'), OP.end];
      const int = a.ty !== 'f32' && b.ty !== 'f32';
      const cmp: Record<string, [number, number]> = {
        '<': [OP.i32lt, OP.f32lt], '<=': [OP.i32le, OP.f32le], '>': [OP.i32gt, OP.f32gt], '>=': [OP.i32ge, OP.f32ge],
        '==': [OP.i32eq, OP.f32eq], '!=': [OP.i32ne, OP.f32ne],
      };
      if (cmp[op]) return int ? [...as(a, 'i32'), ...as(b, 'i32'), cmp[op]![0]] : [...as(a, 'f32'), ...as(b, 'f32'), cmp[op]![1]];
      if (op === '%') {
        // a − b·trunc(a/b) in f64 (JS % on these values), then to the node's type
        const r = [...asF64(a), ...asF64(a), ...asF64(b), OP.f64div, OP.f64trunc, ...asF64(b), OP.f64mul, OP.f64sub];
        return ir.ty === 'f32' ? [...r, 0xb6] : [...r, ...TRUNC_SAT_F64];
      }
      if (int && op !== '/') {
        const o = op === '+' ? OP.i32add : op === '-' ? OP.i32sub : OP.i32mul;
        return [...as(a, 'i32'), ...as(b, 'i32'), o, ...coerce('i32', ir.ty)];
      }
      const o = op === '+' ? OP.f32add : op === '-' ? OP.f32sub : op === '*' ? OP.f32mul : OP.f32div;
      return [...as(a, 'f32'), ...as(b, 'f32'), o, ...coerce('f32', ir.ty)];
    }
    case 'cond':
      return [...as(ir.c, 'bool'), OP.if, wty(ir.ty), ...as(ir.a, ir.ty), OP.else, ...as(ir.b, ir.ty), OP.end];
    case 'idiv':
      return [...asF64(ir.a), ...asF64(ir.b), OP.f64div, ir.mode === 'floor' ? OP.f64floor : OP.f64ceil, ...TRUNC_SAT_F64];
    case 'cast':
      return as(ir.a, ir.to);
    case 'call': {
      const args = ir.args;
      const x = as(args[0]!, 'f32');
      let r: number[];
      switch (ir.fn) {
        case 'sqrt': r = [...x, OP.f32sqrt]; break;
        case 'abs': r = [...x, OP.f32abs]; break;
        case 'floor': r = [...x, OP.f32floor]; break;
        case 'ceil': r = [...x, OP.f32ceil]; break;
        case 'trunc': r = [...x, OP.f32trunc]; break;
        case 'round': r = [...x, ...f32c(0.5), OP.f32add, OP.f32floor]; break;
        case 'min': r = [...x, ...as(args[1]!, 'f32'), OP.f32min]; break;
        case 'max': r = [...x, ...as(args[1]!, 'f32'), OP.f32max]; break;
        case 'pow': r = [...x, ...as(args[1]!, 'f32'), OP.call, MATH.indexOf('pow')]; break;
        default: r = [...x, OP.call, MATH.indexOf(ir.fn as (typeof MATH)[number])];
      }
      return [...r, ...coerce('f32', ir.ty)];
    }
  }
}

/** Loads the captured numbers and tensor bases (byte addresses) into locals. */
function prelude(f: Fn, L: WasmLayout): number[] {
  const out: number[] = [];
  const nN = L.numbers.size;
  const at = (slot: number) => [OP.get, f.get('cap'), ...i32c(slot), OP.i32add, ...i32c(2), OP.i32shl];
  for (const n of L.numbers.values()) out.push(...at(n.slot), n.type === 'i32' ? OP.i32load : OP.f32load, ...MEM, OP.set, f.local(`n${n.slot}`, n.type === 'i32' ? I32 : F32));
  for (const t of L.tensors.values()) out.push(...at(nN + t.slot), OP.i32load, ...MEM, ...i32c(2), OP.i32shl, OP.set, f.local(`t${t.slot}`, I32));
  out.push(...i32c(0), OP.gset, 0);
  return out;
}

/** `for (r = 0; r < rows; r++) { q = q0 + r; for (c = 0; c < cols; c++) { kv = kv0 + c; body } }` */
function tileLoops(f: Fn, body: number[]): number[] {
  const r = f.local('r', I32), c = f.local('c', I32);
  const q = f.local('p_q', I32), kv = f.local('p_kv', I32);
  const inc = (l: number) => [OP.get, l, ...i32c(1), OP.i32add, OP.set, l];
  return [
    ...i32c(0), OP.set, r,
    OP.block, 0x40, OP.loop, 0x40,
    OP.get, r, OP.get, f.get('rows'), OP.i32ge, OP.brIf, 1,
    OP.get, f.get('q0'), OP.get, r, OP.i32add, OP.set, q,
    ...i32c(0), OP.set, c,
    OP.block, 0x40, OP.loop, 0x40,
    OP.get, c, OP.get, f.get('cols'), OP.i32ge, OP.brIf, 1,
    OP.get, f.get('kv0'), OP.get, c, OP.i32add, OP.set, kv,
    OP.block, 0x40, ...body, OP.end,
    ...inc(c), OP.br, 0,
    OP.end, OP.end,
    ...inc(r), OP.br, 0,
    OP.end, OP.end,
  ];
}

/** Byte address of element (r, c) of the tile at element index `base` with row stride ld. */
function tileAddr(f: Fn, base: string): number[] {
  return [OP.get, f.get(base), OP.get, f.get('r'), OP.get, f.get('ld'), OP.i32mul, OP.i32add, OP.get, f.get('c'), OP.i32add, ...i32c(2), OP.i32shl];
}

/** Sets the flag slot of the capture block when a read was clamped. */
function flagOut(f: Fn, flagSlot: number): number[] {
  return [OP.gget, 0, OP.if, 0x40, OP.get, f.get('cap'), ...i32c(flagSlot), OP.i32add, ...i32c(2), OP.i32shl, ...i32c(1), OP.i32store, ...MEM, OP.end];
}

/**
 * The tile module of a score IR and a mask IR, with the capture gradients of `gradLoads`. The module imports
 * `env.memory` (shared, at most 65536 pages) and `m.exp|log|tanh|sin|cos|pow|sign` (f32), and exports
 * `fwd(s, rows, cols, ld, b, h, q0, kv0, maskOn, cap)` and `bwd(s, r, rows, cols, ld, b, h, q0, kv0, maskOn, cap, gcap)`
 * (element indices, as the JS tile functions minus their two views).
 */
export function tileWasm(score: IR | null, mask: IR | null, L: WasmLayout, gradLoads: { load: Extract<IR, { k: 'load' }>; slot: number }[], nGrad: number): Uint8Array {
  const nN = L.numbers.size;
  const nT = L.tensors.size;
  const flagSlot = nN + nT + nGrad;
  // fwd
  const fw = new Fn(['s', 'rows', 'cols', 'ld', 'p_b', 'p_h', 'q0', 'kv0', 'maskOn', 'cap']);
  const fwPre = prelude(fw, L);
  const addr = fw.local('addr', I32);
  fw.local('p_score', F32);
  const fwBody: number[] = [...tileAddr(fwLoopsPrep(fw), 's'), OP.set, addr];
  if (mask) {
    fwBody.push(OP.get, fw.get('maskOn'), OP.if, 0x40, ...emit(mask, fw, L), ...coerce(mask.ty, 'bool'), OP.i32eqz, OP.if, 0x40, OP.get, addr, ...f32c(-Infinity), OP.f32store, ...MEM, OP.br, 2, OP.end, OP.end);
  }
  if (score) {
    fwBody.push(OP.get, addr, OP.f32load, ...MEM, OP.set, fw.get('p_score'), OP.get, addr, ...emit(score, fw, L), ...coerce(score.ty, 'f32'), OP.f32store, ...MEM);
  }
  const fwCode = fw.body([...fwPre, ...tileLoops(fw, fwBody), ...flagOut(fw, flagSlot)]);
  // bwd
  const bw = new Fn(['s', 'rr', 'rows', 'cols', 'ld', 'p_b', 'p_h', 'q0', 'kv0', 'maskOn', 'cap', 'gcap']);
  const bwPre = prelude(bw, L);
  let bwCode: number[];
  if (score) {
    const baddr = bw.local('addr', I32);
    const ds = bw.local('ds', F32);
    bw.local('p_score', F32);
    fwLoopsPrep(bw);
    const gb: number[] = [];
    for (let g = 0; g < nGrad; g++) {
      gb.push(OP.get, bw.get('gcap'), OP.get, bw.get('cap'), ...i32c(nN + nT + g), OP.i32add, ...i32c(2), OP.i32shl, OP.i32load, ...MEM, OP.i32add, ...i32c(2), OP.i32shl, OP.set, bw.local(`g${g}`, I32));
    }
    const dScore = derivative(score, (x) => x.k === 'param' && x.slot === 'score');
    const body: number[] = [
      ...tileAddr(bw, 's'), OP.set, baddr,
      OP.get, baddr, OP.f32load, ...MEM, OP.set, ds,
      OP.get, ds, ...f32c(0), OP.f32eq, OP.brIf, 0,
      ...tileAddr(bw, 'rr'), OP.f32load, ...MEM, OP.set, bw.get('p_score'),
      OP.get, baddr, OP.get, ds, ...emit(dScore, bw, L), ...coerce(dScore.ty, 'f32'), OP.f32mul, OP.f32store, ...MEM,
    ];
    const ga = bw.local('gaddr', I32);
    for (const { load, slot } of gradLoads) {
      const t = L.tensors.get(load.name)!;
      const idx = (k: number) => [...emit(load.idx[k]!, bw, L), ...coerce(load.idx[k]!.ty, 'i32'), ...i32c(t.shape[k]!), OP.call, FN_IX];
      let flat = idx(0);
      for (let d = 1; d < load.idx.length; d++) flat = [...flat, ...i32c(t.shape[d]!), OP.i32mul, ...idx(d), OP.i32add];
      const dl = derivative(score, (x) => x === load);
      body.push(
        OP.get, bw.get(`g${slot}`), ...flat, ...i32c(2), OP.i32shl, OP.i32add, OP.set, ga,
        OP.get, ga, OP.get, ga, OP.f32load, ...MEM, OP.get, ds, ...emit(dl, bw, L), ...coerce(dl.ty, 'f32'), OP.f32mul, OP.f32add, OP.f32store, ...MEM,
      );
    }
    bwCode = bw.body([...bwPre, ...gb, ...tileLoops(bw, body), ...flagOut(bw, flagSlot)]);
  } else {
    bwCode = bw.body([...bwPre]);
  }
  // ix(v, n): clamp to [0, n) and flag
  const ix = new Fn(['v', 'n']);
  const ixCode = ix.body([
    OP.get, 0, ...i32c(0), OP.i32lt, OP.if, I32, ...i32c(1), OP.gset, 0, ...i32c(0),
    OP.else, OP.get, 0, OP.get, 1, OP.i32ge, OP.if, I32, ...i32c(1), OP.gset, 0, OP.get, 1, ...i32c(1), OP.i32sub, OP.else, OP.get, 0, OP.end, OP.end,
  ]);
  const types = [
    [0x60, ...vec([[F32]]), ...vec([[F32]])], // 0: f32 → f32
    [0x60, ...vec([[F32], [F32]]), ...vec([[F32]])], // 1: (f32, f32) → f32
    [0x60, ...vec([[I32], [I32]]), ...vec([[I32]])], // 2: ix
    [0x60, ...vec(Array.from({ length: 10 }, () => [I32])), 0x00], // 3: fwd
    [0x60, ...vec(Array.from({ length: 12 }, () => [I32])), 0x00], // 4: bwd
  ];
  const imports = [
    [...str('env'), ...str('memory'), 0x02, 0x03, ...uleb(1), ...uleb(65536)],
    ...MATH.map((m) => [...str('m'), ...str(m), 0x00, m === 'pow' ? 1 : 0]),
  ];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(2, vec(imports)),
    ...section(3, vec([[2], [3], [4]])),
    ...section(6, vec([[I32, 0x01, ...i32c(0), OP.end]])),
    ...section(7, vec([[...str('fwd'), 0x00, FN_FWD], [...str('bwd'), 0x00, FN_BWD]])),
    ...section(10, [...uleb(3), ...ixCode, ...fwCode, ...bwCode]),
  ];
  return Uint8Array.from(bytes);
}

/** Declares the loop locals before the body is emitted (so the body's local indices are final). */
function fwLoopsPrep(f: Fn): Fn {
  f.local('r', I32);
  f.local('c', I32);
  f.local('p_q', I32);
  f.local('p_kv', I32);
  return f;
}

