/** Turns compiled score/mask functions into the WGSL, bindings and uniforms the attention generator hooks take. */
import * as T from '@webattn/core-tensor';
import { WebattnError, type Device, type Tensor } from '@webattn/core-tensor';
import { MATH_HELPERS, type BindingSpec, type UniformField, type UniformValues } from '@webattn/kernels-webgpu';
import { children, collectLoads, derivative, FLEX_HELPERS, wgsl } from './codegen.js';
import type { IR } from './ir.js';
import type { CompiledMod } from './mods.js';

/** WGSL and resources of the functions of one call. */
export interface ModResources {
  wgsl: string;
  /** WGSL of the capture-gradient scatter (dQ kernel only). */
  gradWgsl: string;
  key: string;
  bindings: BindingSpec[];
  tensors: Tensor[];
  uniforms: UniformField[];
  values: UniformValues;
  /** Captured float tensors that require grad: their atomic gradient buffers (backward). */
  grads: { name: string; id: string; source: Tensor; buffer: Tensor }[];
  gradBindings: BindingSpec[];
}

const PARAMS_SCORE = `let p_score = s;\n  let p_b = i32(b);\n  let p_h = i32(h);\n  let p_q = i32(q);\n  let p_kv = i32(kv);`;
const PARAMS_MASK = `let p_b = i32(b);\n  let p_h = i32(h);\n  let p_q = i32(q);\n  let p_kv = i32(kv);`;

/**
 * Builds the WGSL for `score_mod` (+ `score_mod_grad`, `capture_grads`) and/or `mask_mod` with their
 * captures on `device`. Captured CPU tensors are uploaded (no gradient flows to them).
 */
export function modResources(device: Device, score: CompiledMod | null, mask: CompiledMod | null, withGrad: boolean): ModResources {
  const ids = new Map<string, string>();
  const bindings: BindingSpec[] = [];
  const tensors: Tensor[] = [];
  const uniforms: UniformField[] = [];
  const values: UniformValues = {};
  const grads: ModResources['grads'] = [];
  const idxFns: string[] = [];
  const all = new Map<string, number | Tensor>([...(score?.captures ?? []), ...(mask?.captures ?? [])]);
  let n = 0;
  for (const [name, v] of all) {
    const id = `cap${n++}`;
    ids.set(name, id);
    if (typeof v === 'number') {
      const integer = isIntegerCapture(score, mask, name);
      uniforms.push([id, integer ? 'i32' : 'f32']);
      values[id] = v;
      continue;
    }
    let t = v.contiguous().detach();
    if (t.device !== device) {
      if (t.device.backend !== 'cpu') throw new WebattnError('DEVICE_MISMATCH', `captures: tensor '${name}' is on another GPU device`, { argument: 'captures' });
      const dtype = t.dtype === 'float64' || t.dtype === 'float16' ? 'float32' : t.dtype;
      t = T.tensor(T.readValues(t), t.shape, { dtype, device });
    }
    if (t.dtype === 'float64' || t.dtype === 'float16') t = t.cast('float32').detach();
    bindings.push({ name: id, dtype: t.dtype, access: 'read' });
    tensors.push(t);
    uniforms.push([`${id}_dims`, 'u32', 2]);
    values[`${id}_dims`] = [t.shape[0]!, t.shape[1] ?? 1];
    const args = t.rank === 1 ? 'i0: i32' : 'i0: i32, i1: i32';
    const flat = t.rank === 1 ? 'a0' : `a0 * u_${id}_dims(1u) + u32(clamp(i1, 0i, i32(u_${id}_dims(1u)) - 1i))`;
    idxFns.push(`fn idx_${id}(${args}) -> u32 { let a0 = u32(clamp(i0, 0i, i32(u_${id}_dims(0u)) - 1i)); return ${flat}; }`);
    if (withGrad && v.requiresGrad && T.isFloat(v.dtype) && v.device === device && T.isGradEnabled()) {
      const buffer = T.zeros([v.size], { device });
      grads.push({ name, id, source: v, buffer });
    }
  }
  const id = (name: string) => ids.get(name)!;
  const parts: string[] = [MATH_HELPERS, FLEX_HELPERS, ...idxFns];
  const gradParts: string[] = [];
  if (score) {
    parts.push(`fn score_mod(s: f32, b: u32, h: u32, q: u32, kv: u32) -> f32 {\n  ${PARAMS_SCORE}\n  return ${wgsl(score.ir, id)};\n}`);
    if (withGrad) {
      const ds = derivative(score.ir, (x) => x.k === 'param' && x.slot === 'score');
      parts.push(`fn score_mod_grad(s: f32, b: u32, h: u32, q: u32, kv: u32, g: f32) -> f32 {\n  ${PARAMS_SCORE}\n  return g * ${wgsl(ds, id)};\n}`);
      const loads = collectLoads(score.ir).filter((l) => grads.some((g) => g.name === l.name));
      const lines = loads.map((l) => {
        const gid = ids.get(l.name)!;
        const dl = derivative(score.ir, (x) => x === l);
        return `  atomic_add_${gid}(idx_${gid}(${l.idx.map((i) => wgsl(i, id)).join(', ')}), g * ${wgsl(dl, id)});`;
      });
      if (grads.length) {
        for (const g of grads) {
          gradParts.push(`fn atomic_add_${g.id}(i: u32, v: f32) {
  var old = atomicLoad(&grad_${g.id}[i]);
  loop {
    let r = atomicCompareExchangeWeak(&grad_${g.id}[i], old, bitcast<u32>(bitcast<f32>(old) + v));
    if (r.exchanged) { break; }
    old = r.old_value;
  }
}`);
        }
        gradParts.push(`fn capture_grads(s: f32, b: u32, h: u32, q: u32, kv: u32, g: f32) {\n  ${PARAMS_SCORE}\n${lines.join('\n')}\n}`);
      }
    }
  }
  if (mask) parts.push(`fn mask_mod(b: u32, h: u32, q: u32, kv: u32) -> bool {\n  ${PARAMS_MASK}\n  return ${wgsl(mask.ir, id)};\n}`);
  const gradBindings: BindingSpec[] = grads.map((g) => ({ name: `grad_${g.id}`, dtype: 'float32', access: 'read_write', atomic: true }));
  return {
    wgsl: parts.join('\n'),
    gradWgsl: gradParts.join('\n'),
    key: `${score?.key ?? '-'}#${mask?.key ?? '-'}#g${withGrad ? grads.map((g) => g.id).join(',') : 'none'}`,
    bindings,
    tensors,
    uniforms,
    values,
    grads,
    gradBindings,
  };
}

function isIntegerCapture(score: CompiledMod | null, mask: CompiledMod | null, name: string): boolean {
  const find = (ir: IR, seen = new Set<IR>()): 'f32' | 'i32' | null => {
    if (seen.has(ir)) return null;
    seen.add(ir);
    if (ir.k === 'capnum' && ir.name === name) return ir.ty;
    for (const c of children(ir)) {
      const r = find(c, seen);
      if (r) return r;
    }
    return null;
  };
  return (score && find(score.ir)) === 'i32' || (mask && find(mask.ir)) === 'i32';
}
