/**
 * Targets of the flex IR for backends whose flash kernel runs on the host (the wasm backend registers
 * `flex_attention` / `flex_attention_backward`): JavaScript tile functions here, and the same functions as a wasm
 * module (wasm-tile.ts), which a backend runs where it can. The same IR that becomes WGSL for
 * WebGPU becomes the source of `{ fwd, bwd }` functions over typed-array views of the backend's memory (the
 * contract is core-tensor's `FlexKernelAttrs`); the backward is the IR's symbolic derivative, like the GPU's.
 * The backend compiles the source once per text and calls it per score tile on every thread.
 */
import * as T from '@webattn/core-tensor';
import { WebattnError, type FlexKernelAttrs, type Tensor } from '@webattn/core-tensor';
import { collectLoads, derivative } from './codegen.js';
import type { IR } from './ir.js';
import type { BlockMask } from './block-mask.js';
import type { CompiledMod } from './mods.js';
import { tileWasm } from './wasm-tile.js';

/** Where the tile functions find the captures: slot of each number and tensor, and each tensor's layout. */
interface Layout {
  numbers: Map<string, { slot: number; type: 'f32' | 'i32' }>;
  tensors: Map<string, { slot: number; int: boolean; shape: readonly number[] }>;
}

function numLit(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Infinity';
  if (v === -Infinity) return '(-Infinity)';
  if (Object.is(v, -0)) return '(-0)';
  return v < 0 ? `(${v})` : String(v);
}

/** JS expression of an IR node with the float64 interpreter's semantics (`codegen.evaluate`); loads clamp and flag. */
function js(ir: IR, L: Layout): string {
  const r = (n: IR) => js(n, L);
  switch (ir.k) {
    case 'num':
      return numLit(ir.v);
    case 'bool':
      return ir.v ? 'true' : 'false';
    case 'param':
      return ir.slot;
    case 'capnum':
      return `$n${L.numbers.get(ir.name)!.slot}`;
    case 'load': {
      const t = L.tensors.get(ir.name)!;
      const flat = ir.idx.map((ix, d) => `$ix(${r(ix)}, ${t.shape[d]})`).reduce((acc, cur, d) => (d === 0 ? cur : `(${acc}) * ${t.shape[d]} + ${cur}`), '');
      const v = `${t.int ? 'I' : 'F'}[$t${t.slot} + ${flat}]`;
      return ir.ty === 'bool' ? `(${v} !== 0)` : v;
    }
    case 'un':
      return `(${ir.op}${r(ir.a)})`;
    case 'bin': {
      const a = r(ir.a);
      const b = r(ir.b);
      const int = ir.a.ty === 'i32' && ir.b.ty === 'i32';
      switch (ir.op) {
        case '+':
        case '-':
          return int ? `((${a} ${ir.op} ${b}) | 0)` : `(${a} ${ir.op} ${b})`;
        case '*':
          return int ? `Math.imul(${a}, ${b})` : `(${a} * ${b})`;
        case '==':
          return `(${a} === ${b})`;
        case '!=':
          return `(${a} !== ${b})`;
        default:
          return `(${a} ${ir.op} ${b})`;
      }
    }
    case 'cond':
      return `(${r(ir.c)} ? ${r(ir.a)} : ${r(ir.b)})`;
    case 'idiv':
      return `Math.${ir.mode}(${r(ir.a)} / ${r(ir.b)})`;
    case 'cast':
      return ir.to === 'i32' ? `$i32(${r(ir.a)})` : ir.to === 'f32' ? `(+${r(ir.a)})` : `(!!${r(ir.a)})`;
    case 'call': {
      const a = ir.args.map(r);
      if (ir.fn === 'round') return `Math.floor(${a[0]} + 0.5)`;
      return `Math.${ir.fn}(${a.join(', ')})`;
    }
  }
}

/**
 * Source of the tile functions (core-tensor `FlexKernelAttrs.tileSource`) of a score IR and a mask IR, with
 * the gradients of `gradLoads` (tensor loads of float captures, each accumulating into gradient slot `slot`).
 */
export function tileSource(score: IR | null, mask: IR | null, L: Layout, gradLoads: { load: Extract<IR, { k: 'load' }>; slot: number }[], nGrad: number): string {
  const nN = L.numbers.size;
  const nT = L.tensors.size;
  const prelude = [
    ...[...L.numbers.values()].map((n) => `const $n${n.slot} = ${n.type === 'i32' ? 'I' : 'F'}[cap + ${n.slot}];`),
    ...[...L.tensors.values()].map((t) => `const $t${t.slot} = I[cap + ${nN + t.slot}];`),
    'let $oob = 0;',
    'const $i32 = (v) => (Number.isFinite(v) ? Math.trunc(v) | 0 : 0);',
    'const $ix = (v, n) => { v = $i32(v); if (v < 0) { $oob = 1; return 0; } if (v >= n) { $oob = 1; return n - 1; } return v; };',
  ].join('\n    ');
  const flag = `if ($oob) I[cap + ${nN + nT + nGrad}] = 1;`;
  const maskLine = mask ? `if (maskOn && !(${js(mask, L)})) { F[$p] = -Infinity; continue; }` : '';
  const scoreLine = score ? `{ const score = F[$p]; F[$p] = ${js(score, L)}; }` : '';
  let bwdBody = '';
  if (score) {
    const dScore = derivative(score, (x) => x.k === 'param' && x.slot === 'score');
    const capLines = gradLoads.map(({ load, slot }) => {
      const t = L.tensors.get(load.name)!;
      const flat = load.idx.map((ix, d) => `$ix(${js(ix, L)}, ${t.shape[d]})`).reduce((acc, cur, d) => (d === 0 ? cur : `(${acc}) * ${t.shape[d]} + ${cur}`), '');
      const d = derivative(score, (x) => x === load);
      return `{ const $g = $gb${slot} + ${flat}; F[$g] += $ds * (${js(d, L)}); }`;
    });
    const gradBases = Array.from({ length: nGrad }, (_, g) => `const $gb${g} = gcap + I[cap + ${nN + nT + g}];`).join('\n    ');
    bwdBody = `${gradBases}
    for (let $r = 0; $r < rows; $r++) {
      const q = q0 + $r;
      const $row = s + $r * ld;
      const $raw = rr + $r * ld;
      for (let $c = 0; $c < cols; $c++) {
        const $p = $row + $c;
        const $ds = F[$p];
        if ($ds === 0) continue;
        const kv = kv0 + $c;
        const score = F[$raw + $c];
        F[$p] = $ds * (${js(dScore, L)});
        ${capLines.join('\n        ')}
      }
    }`;
  }
  return `({
  fwd(F, I, s, rows, cols, ld, b, h, q0, kv0, maskOn, cap) {
    ${prelude}
    for (let $r = 0; $r < rows; $r++) {
      const q = q0 + $r;
      const $row = s + $r * ld;
      for (let $c = 0; $c < cols; $c++) {
        const kv = kv0 + $c;
        const $p = $row + $c;
        ${maskLine}
        ${scoreLine}
      }
    }
    ${flag}
  },
  bwd(F, I, s, rr, rows, cols, ld, b, h, q0, kv0, maskOn, cap, gcap) {
    ${prelude}
    ${bwdBody}
    ${flag}
  },
})`;
}

/** Whether `device`'s backend runs flex functions inside its own flash kernel (a registered `flex_attention`). */
export function backendRunsFlex(device: T.Device): boolean {
  return device.backend !== 'webgpu' && device.backend !== 'cpu' && !!T.getKernel('flex_attention', device.backend) && !!T.getKernel('flex_attention_backward', device.backend);
}

/**
 * flexAttention on a backend's `flex_attention` kernels (e.g. the wasm backend): the compiled score and mask
 * functions as JS tile functions, the block mask as its tables, captured tensors as kernel inputs; recorded on
 * the autograd tape with gradients into q, k, v and the float captures that require grad.
 */
export function backendFlex(q: Tensor, k: Tensor, v: Tensor, scale: number, sc: CompiledMod | null, mc: CompiledMod | null, bm: BlockMask | null, argument: string): { output: Tensor; lse: Tensor } {
  const device = q.device;
  const L: Layout = { numbers: new Map(), tensors: new Map() };
  const numbers: { value: number; type: 'f32' | 'i32' }[] = [];
  const sources: Tensor[] = [];
  for (const c of [sc, mc]) {
    if (!c) continue;
    for (const [name, val] of c.captures) {
      if (typeof val === 'number') {
        const type = c.numberTypes.get(name) ?? 'f32';
        L.numbers.set(name, { slot: numbers.length, type });
        numbers.push({ value: val, type });
      } else {
        if (!val.storage.cpu) {
          throw new WebattnError('DEVICE_MISMATCH', `${argument} captures.${name}: expected a tensor in host memory (on '${device.backend}' or 'cpu'), got one on ${val.device.info.adapter}`, { argument });
        }
        val.assertLive(`${argument} captures.${name}`);
        L.tensors.set(name, { slot: sources.length, int: !T.isFloat(val.dtype), shape: val.shape });
        sources.push(val);
      }
    }
  }
  // the kernel's captured inputs: contiguous float32 / int32 (bools as 0/1)
  const captured = sources.map((t) => {
    const d = t.detach();
    return T.isFloat(t.dtype) ? (t.dtype === 'float32' ? d : T.cast(d, 'float32')) : t.dtype === 'int32' ? d : T.cast(d, 'int32');
  });
  const gradSlots = sources.map((t, i) => (t.requiresGrad && T.isFloat(t.dtype) ? i : -1)).filter((i) => i >= 0);
  const gradLoads = sc
    ? collectLoads(sc.ir)
        .map((load) => ({ load, slot: gradSlots.indexOf(L.tensors.get(load.name)?.slot ?? -1) }))
        .filter((l) => l.slot >= 0)
    : [];
  const attrs: FlexKernelAttrs = {
    scale,
    causal: false,
    causalOffset: 0,
    maskKind: null,
    varlen: false,
    tileSource: tileSource(sc?.ir ?? null, mc?.ir ?? null, L, gradLoads, gradSlots.length),
    tileWasm: tileWasm(sc?.ir ?? null, mc?.ir ?? null, L, gradLoads, gradSlots.length),
    scoreMod: !!sc,
    maskMod: !!mc,
    numbers,
    tensors: captured.length,
    gradSlots,
    blocks: bm
      ? {
          B: bm.B,
          H: bm.H,
          blockSize: bm.blockSize,
          numQBlocks: bm.numQBlocks,
          numKvBlocks: bm.numKvBlocks,
          kvNumBlocks: bm.kvNumBlocks,
          kvIndices: bm.kvIndices,
          fullKvNumBlocks: bm.fullKvNumBlocks,
          fullKvIndices: bm.fullKvIndices,
        }
      : null,
    argument,
  };
  const [qd, kd, vd] = [q.detach(), k.detach(), v.detach()];
  const [out, lse] = T.runKernel('flex_attention', device, [qd, kd, vd, ...captured], attrs) as [Tensor, Tensor];
  const outS = out.detach();
  const lseS = lse.detach();
  const gradInputs = gradSlots.map((s) => sources[s]!);
  const output = T.record(
    [out],
    'flexAttention',
    [q, k, v, ...gradInputs],
    (g) => {
      const r = T.runKernel('flex_attention_backward', device, [qd, kd, vd, outS, g, lseS, ...captured], attrs);
      return [r[0]!, r[1]!, r[2]!, ...gradInputs.map((t, i) => (t.dtype === 'float32' ? r[3 + i]! : T.cast(r[3 + i]!, t.dtype)))];
    },
    [outS, lseS],
  )[0]!;
  return { output, lse };
}
