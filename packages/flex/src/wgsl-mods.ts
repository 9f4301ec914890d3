/** Turns compiled score/mask functions into the WGSL, bindings and uniforms the attention generator hooks take. */
import * as T from '@webattn/core-tensor';
import { WebattnError, type Device, type Tensor } from '@webattn/core-tensor';
import type { WebGPUDevice } from '@webattn/kernels-webgpu/internal';
import { MATH_HELPERS, deferFlagCheck, hookWgsl, renderProgram, type BindingSpec, type FlashHooks, type UniformField, type UniformValues } from '@webattn/kernels-webgpu/internal';
import { collectLoads, derivative, FLEX_HELPERS, wgsl } from './codegen.js';
import type { CompiledMod } from './mods.js';

let deterministic = false;

/**
 * Deterministic capture gradients (like `torch.use_deterministic_algorithms`): gradients into captured
 * tensors are accumulated per query row in a private buffer `[B·Hq·Lq, size]` and summed by a
 * reduction kernel in a fixed order, instead of float atomics whose order (and so rounding) varies
 * from run to run. Costs `B·Hq·Lq·size·4` bytes per captured tensor during the backward.
 * @example useDeterministicAlgorithms(true); // flexAttention capture gradients are now bit-reproducible
 */
export function useDeterministicAlgorithms(on: boolean): void {
  if (typeof on !== 'boolean') throw new WebattnError('INVALID_ARGUMENT', `on: expected a boolean, got ${typeof on}`, { argument: 'on' });
  deterministic = on;
}

/** Whether {@link useDeterministicAlgorithms} is on. */
export function areDeterministicAlgorithmsEnabled(): boolean {
  return deterministic;
}

/** WGSL and resources of the functions of one call. */
export interface ModResources {
  /** All the functions as module-scope WGSL (what the block-mask kernel and the compile probe include). */
  wgsl: string;
  /** The attention generator's typed hooks of the forward kernel. */
  hooks: FlashHooks;
  /**
   * The hooks of the backward kernels: captured-tensor indices clamp without setting the bounds flag
   * (the forward already checked the same indices), which saves the flag's storage binding; and the
   * capture gradients.
   */
  backwardHooks: FlashHooks;
  key: string;
  bindings: BindingSpec[];
  tensors: Tensor[];
  uniforms: UniformField[];
  values: UniformValues;
  /** Captured float tensors that require grad: their gradient buffers (atomic, or `[rows, size]` when deterministic). */
  grads: { name: string; id: string; source: Tensor; buffer: Tensor }[];
  gradBindings: BindingSpec[];
  /** Whether `grads` are per-row partial buffers to be summed over axis 0. */
  deterministic: boolean;
  /**
   * Raises (at the device's next read-back) an `INVALID_ARGUMENT` naming `argument` if a kernel that
   * ran with these resources read a captured tensor outside its shape. No-op without captured tensors.
   */
  checkBounds(argument: string, outputs: Tensor[]): void;
  /** The bounds flag (int32 `[1]`, bit i set when capture i was read outside its shape), or null. */
  oob: Tensor | null;
  /** The error for a set bounds flag. */
  boundsError(bits: number, argument: string): WebattnError;
}

const PARAMS_SCORE = `let p_score = s;\n  let p_b = i32(b);\n  let p_h = i32(h);\n  let p_q = i32(q);\n  let p_kv = i32(kv);`;
const PARAMS_MASK = `let p_b = i32(b);\n  let p_h = i32(h);\n  let p_q = i32(q);\n  let p_kv = i32(kv);`;

/**
 * Builds the WGSL for `score_mod` (+ `score_mod_grad`, `capture_grads`) and/or `mask_mod` with their
 * captures on `device`. Captured CPU tensors are uploaded (no gradient flows to them).
 */
export function modResources(
  device: Device,
  score: CompiledMod | null,
  mask: CompiledMod | null,
  withGrad: boolean,
  rows = 0,
): ModResources {
  const det = deterministic && withGrad;
  const ids = new Map<string, string>();
  const names = new Map<string, string>();
  const bindings: BindingSpec[] = [];
  const tensors: Tensor[] = [];
  const uniforms: UniformField[] = [];
  const values: UniformValues = {};
  const grads: ModResources['grads'] = [];
  const idxFns: string[] = [];
  const idxFnsNoCheck: string[] = [];
  const all = new Map<string, number | Tensor>([...(score?.captures ?? []), ...(mask?.captures ?? [])]);
  const numberTypes = new Map([...(score?.numberTypes ?? []), ...(mask?.numberTypes ?? [])]);
  const hasTensors = [...all.values()].some((v) => typeof v !== 'number');
  const oob = hasTensors ? T.zeros([1], { dtype: 'int32', device }) : null;
  if (oob) {
    bindings.push({ name: 'flex_oob', dtype: 'int32', access: 'read_write', atomic: true });
    tensors.push(oob);
  }
  let n = 0;
  let bit = 0;
  const bitNames: string[] = [];
  for (const [name, v] of all) {
    const id = `cap${n++}`;
    ids.set(name, id);
    names.set(id, name.replace(/^[sm]\d+_/, ''));
    if (typeof v === 'number') {
      uniforms.push([id, numberTypes.get(name) ?? 'f32']);
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
    const b = Math.min(bit++, 31);
    bitNames[b] = names.get(id)!;
    const args = t.rank === 1 ? 'i0: i32' : 'i0: i32, i1: i32';
    const out = t.rank === 1 ? `i0 < 0i || i0 >= i32(u_${id}_dims(0u))` : `i0 < 0i || i0 >= i32(u_${id}_dims(0u)) || i1 < 0i || i1 >= i32(u_${id}_dims(1u))`;
    const flat = t.rank === 1 ? 'a0' : `a0 * u_${id}_dims(1u) + u32(clamp(i1, 0i, i32(u_${id}_dims(1u)) - 1i))`;
    const clampBody = `let a0 = u32(clamp(i0, 0i, i32(u_${id}_dims(0u)) - 1i));\n  return ${flat};`;
    idxFns.push(`fn idx_${id}(${args}) -> u32 {\n  if (${out}) { atomicOr(&flex_oob[0], ${(1 << b) >>> 0}u); }\n  ${clampBody}\n}`);
    idxFnsNoCheck.push(`fn idx_${id}(${args}) -> u32 {\n  ${clampBody}\n}`);
    if (withGrad && v.requiresGrad && T.isFloat(v.dtype) && v.device === device && T.isGradEnabled()) {
      const buffer = T.zeros([det ? rows * v.size : v.size], { device });
      grads.push({ name, id, source: v, buffer });
    }
  }
  const id = (name: string) => ids.get(name)!;
  const parts: string[] = [MATH_HELPERS, FLEX_HELPERS];
  const gradParts: string[] = [];
  let scoreBody: string | null = null;
  let scoreGradBody: string | null = null;
  let gradBody = '';
  if (score) {
    scoreBody = `  ${PARAMS_SCORE}\n  return ${wgsl(score.ir, id)};`;
    if (withGrad) {
      const ds = derivative(score.ir, (x) => x.k === 'param' && x.slot === 'score');
      scoreGradBody = `  ${PARAMS_SCORE}\n  return g * ${wgsl(ds, id)};`;
      const loads = collectLoads(score.ir).filter((l) => grads.some((g) => g.name === l.name));
      const lines = loads.map((l) => {
        const gid = ids.get(l.name)!;
        const dl = derivative(score.ir, (x) => x === l);
        return `  atomic_add_${gid}(slot, idx_${gid}(${l.idx.map((i) => wgsl(i, id)).join(', ')}), g * ${wgsl(dl, id)});`;
      });
      if (grads.length) {
        if (det) {
          uniforms.push(['flex_hq', 'u32'], ['flex_lq', 'u32'], ...grads.map((g): UniformField => [`${g.id}_size`, 'u32']));
          values.flex_hq = 0; // set by the caller (rows of the dQ kernel)
          values.flex_lq = 0;
          for (const g of grads) {
            values[`${g.id}_size`] = g.source.size;
            // one query row (b, h, q) per dQ thread: a private slice, accumulated in kv order
            gradParts.push(`fn atomic_add_${g.id}(slot: u32, i: u32, v: f32) { let at = slot * u_${g.id}_size() + i; grad_${g.id}[at] = grad_${g.id}[at] + v; }`);
          }
        } else {
          for (const g of grads) {
            gradParts.push(`fn atomic_add_${g.id}(slot: u32, i: u32, v: f32) {
  var old = atomicLoad(&grad_${g.id}[i]);
  loop {
    let r = atomicCompareExchangeWeak(&grad_${g.id}[i], old, bitcast<u32>(bitcast<f32>(old) + v));
    if (r.exchanged) { break; }
    old = r.old_value;
  }
}`);
          }
        }
        const slot = det ? '(b * u_flex_hq() + h) * u_flex_lq() + q' : '0u';
        gradBody = `  ${PARAMS_SCORE}\n  let slot = ${slot};\n${lines.join('\n')}`;
      }
    }
  }
  const maskBody = mask ? `  ${PARAMS_MASK}\n  return ${wgsl(mask.ir, id)};` : null;
  const gradBindings: BindingSpec[] = grads.map((g) =>
    det ? { name: `grad_${g.id}`, dtype: 'float32', access: 'read_write' } : { name: `grad_${g.id}`, dtype: 'float32', access: 'read_write', atomic: true },
  );
  const key = `${score?.key ?? '-'}#${mask?.key ?? '-'}#g${withGrad ? grads.map((g) => g.id).join(',') : 'none'}${det ? '#det' : ''}`;
  const hooks: FlashHooks = {
    key,
    scoreMod: scoreBody,
    scoreModGrad: scoreGradBody,
    maskMod: maskBody,
    helpers: [...idxFns, ...parts].join('\n'),
    captures: { bindings, tensors, uniforms, values },
  };
  const backwardHooks: FlashHooks = {
    ...hooks,
    key: `${key}#bwd`,
    helpers: [...idxFnsNoCheck, ...parts].join('\n'),
    captures: { bindings: oob ? bindings.slice(1) : bindings, tensors: oob ? tensors.slice(1) : tensors, uniforms, values },
    captureGrads: grads.length
      ? {
          body: gradBody,
          helpers: gradParts.join('\n'),
          bindings: gradBindings,
          tensors: grads.map((g) => g.buffer),
        }
      : null,
  };
  return {
    wgsl: hookWgsl(hooks),
    hooks,
    backwardHooks,
    key,
    bindings,
    tensors,
    uniforms,
    values,
    grads,
    gradBindings,
    deterministic: det,
    oob,
    boundsError(bits: number, argument: string) {
      const which = bitNames.filter((_, i) => bits & (1 << i));
      return new WebattnError(
        'INVALID_ARGUMENT',
        `${argument}: captured tensor${which.length > 1 ? 's' : ''} ${which.map((w) => `'${w}'`).join(', ')} indexed outside ${which.length > 1 ? 'their shapes' : 'its shape'} (checked on the GPU)`,
        { argument },
      );
    },
    checkBounds(argument: string, outputs: Tensor[]) {
      if (!oob) return;
      deferFlagCheck(oob, 'flex captures bounds', (bits) => (bits ? this.boundsError(bits, argument) : null), outputs);
    },
  };
}

const probed = new WeakMap<object, Set<string>>();

/**
 * Compiles the WGSL of a call's functions on its own, once per (device, key), and turns a shader
 * compilation error into `FLEX_COMPILE` naming `argument`, raised when `outputs` are read (instead of
 * the attention kernels' own `KERNEL_COMPILE`). The renderer is meant to make this unreachable (constant
 * folding, literals clamped to f32): this is the backstop for WGSL a driver still rejects.
 */
export function probeCompile(device: Device, res: ModResources, argument: string, outputs: Tensor[]): void {
  if (device.backend !== 'webgpu') return;
  const dev = device as WebGPUDevice;
  let seen = probed.get(dev);
  if (!seen) probed.set(dev, (seen = new Set()));
  if (seen.has(res.key)) return;
  seen.add(res.key);
  const calls = [res.wgsl.includes('fn score_mod(') ? 'sink = sink + score_mod(1.0, 0u, 0u, 0u, 0u);' : '', res.wgsl.includes('fn mask_mod(') ? 'sink = sink + select(0.0, 1.0, mask_mod(0u, 0u, 0u, 0u));' : ''];
  const code = renderProgram({
    name: 'flex_probe',
    key: res.key,
    bindings: res.bindings,
    uniforms: res.uniforms,
    workgroupSize: [1],
    helpers: res.wgsl,
    body: `  var sink = 0.0;\n  ${calls.join('\n  ')}\n  if (sink == 12345.0) { return; }`,
  });
  const mod = dev.gpu.createShaderModule({ label: 'flex_probe', code });
  const check = mod.getCompilationInfo().then((info) => {
    const errs = info.messages.filter((m) => m.type === 'error');
    if (!errs.length) return null;
    return new WebattnError('FLEX_COMPILE', `${argument}: the function compiled to WGSL that the GPU rejected: ${errs.map((m) => m.message).join(' | ').slice(0, 400)}`, { argument });
  });
  dev.deferCheck('flex_probe', check, outputs.map((t) => t.storage));
}
