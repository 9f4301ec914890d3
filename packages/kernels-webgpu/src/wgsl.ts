/**
 * The one WGSL helper every kernel is written with: typed storage bindings with load/store
 * functions, a packed uniform block with named accessors, strided index math and the standard
 * entry point. No kernel writes binding boilerplate or index math of its own.
 */
/// <reference types="@webgpu/types" preserve="true" />
import { WebattnError, type DType, type Tensor } from '@webattn/core-tensor';
import type { GpuProgram, WebGPUDevice } from './device/webgpu-device.js';

/** Largest tensor rank the GPU kernels index. */
export const MAX_RANK = 8;

/** WGSL scalar type a dtype is stored as. */
export function storageType(dtype: DType): string {
  switch (dtype) {
    case 'float32':
      return 'f32';
    case 'float16':
      return 'f16';
    case 'int32':
      return 'i32';
    case 'uint32':
    case 'bool':
      return 'u32';
    default:
      throw new WebattnError('DTYPE_UNSUPPORTED', `dtype: ${dtype} is not supported by the WebGPU kernels`, { argument: 'dtype' });
  }
}

/** WGSL type arithmetic is done in for a dtype (f32 for every float dtype). */
export function computeType(dtype: DType): string {
  return dtype === 'float32' || dtype === 'float16' ? 'f32' : storageType(dtype);
}

/** A storage binding of a program. */
export interface BindingSpec {
  /** WGSL name (also gives `load_<name>` / `store_<name>`). */
  name: string;
  /** Element type of the bound tensor. */
  dtype: DType;
  /** Read-only or read-write storage. */
  access: 'read' | 'read_write';
  /** Declare as `array<atomic<u32>>` (float atomics via compare-exchange); no load/store helpers. */
  atomic?: boolean;
  /** Declare as `array<vec4<T>>` (four consecutive elements per index, 4-element-aligned views only); `load_<name>` then returns a vec4 of the compute type. */
  vec4?: boolean;
}

/** A uniform field: scalar or fixed-length array of u32 / i32 / f32. */
export type UniformField = [name: string, type: 'u32' | 'i32' | 'f32', length?: number];

/** Values for a uniform block: numbers or arrays (shorter arrays are zero-filled). */
export type UniformValues = Record<string, number | readonly number[]>;

/** Everything that defines a compute program. */
export interface ProgramSpec {
  /** Kernel name (labels and errors). */
  name: string;
  /** Extra cache-key parts: anything besides bindings/uniforms that changes the WGSL. */
  key: string;
  /** Storage bindings, in binding order. */
  bindings: readonly BindingSpec[];
  /** Uniform fields (read as `u_<name>()`). */
  uniforms: readonly UniformField[];
  /** Workgroup size (x, y, z). */
  workgroupSize: readonly [number, number?, number?];
  /** Helper WGSL placed before `main` (functions, workgroup variables, constants). */
  helpers?: string;
  /** Body of `main`; has `gid`, `lid`, `wid`, `nwg`, `lidx` and `flat_wg` (linearised workgroup id). */
  body: string;
  /** Enable the `subgroups` extension; `SG_LANE` and `SG_SIZE` are then set for every invocation. */
  subgroups?: boolean;
  /** Extra global directives (`enable …;`, `diagnostic(…);`), placed after `enable f16;`. */
  directives?: readonly string[];
}

function uniformLayout(fields: readonly UniformField[]): { offsets: Map<string, number>; words: number } {
  const offsets = new Map<string, number>();
  let w = 0;
  for (const [name, , len] of fields) {
    offsets.set(name, w);
    w += len ?? 1;
  }
  return { offsets, words: Math.max(4, Math.ceil(w / 4) * 4) };
}

function uniformWgsl(fields: readonly UniformField[]): string {
  const { offsets, words } = uniformLayout(fields);
  const lines = [`struct Uniforms { d: array<vec4<u32>, ${words / 4}> };`, `@group(0) @binding(UBIND) var<uniform> U: Uniforms;`];
  lines.push(`fn uword(i: u32) -> u32 { return U.d[i / 4u][i % 4u]; }`);
  for (const [name, type, len] of fields) {
    const off = offsets.get(name)!;
    const conv = type === 'u32' ? 'x' : `bitcast<${type}>(x)`;
    if (len === undefined) lines.push(`fn u_${name}() -> ${type} { let x = uword(${off}u); return ${conv}; }`);
    else lines.push(`fn u_${name}(i: u32) -> ${type} { let x = uword(${off}u + i); return ${conv}; }`);
  }
  return lines.join('\n');
}

function bindingWgsl(b: BindingSpec, i: number): string {
  const st = storageType(b.dtype);
  const access = b.access === 'read' ? 'read' : 'read_write';
  if (b.atomic) return `@group(0) @binding(${i}) var<storage, read_write> ${b.name}: array<atomic<u32>>;`;
  const v = (t: string) => (b.vec4 ? `vec4<${t}>` : t);
  const ct = v(computeType(b.dtype));
  const lines = [`@group(0) @binding(${i}) var<storage, ${access}> ${b.name}: array<${v(st)}>;`];
  lines.push(`fn load_${b.name}(i: u32) -> ${ct} { return ${ct}(${b.name}[i]); }`);
  if (b.access === 'read_write') lines.push(`fn store_${b.name}(i: u32, v: ${ct}) { ${b.name}[i] = ${v(st)}(v); }`);
  return lines.join('\n');
}

/** Infinities without const-expression overflow (private vars are not const-evaluated). */
const PRELUDE = `var<private> INF_BITS: vec2<u32> = vec2<u32>(0x7f800000u, 0xff800000u);
fn pos_inf() -> f32 { return bitcast<f32>(INF_BITS.x); }
fn neg_inf() -> f32 { return bitcast<f32>(INF_BITS.y); }`;

/** Builds the full WGSL source of a program. */
export function renderProgram(spec: ProgramSpec): string {
  const [x, y = 1, z = 1] = spec.workgroupSize;
  const f16 = spec.bindings.some((b) => b.dtype === 'float16');
  const parts: string[] = [];
  if (f16) parts.push('enable f16;');
  if (spec.directives) parts.push(...spec.directives);
  if (spec.subgroups) parts.push('enable subgroups;\nvar<private> SG_LANE: u32;\nvar<private> SG_SIZE: u32;');
  spec.bindings.forEach((b, i) => parts.push(bindingWgsl(b, i)));
  if (spec.uniforms.length) parts.push(uniformWgsl(spec.uniforms).replace('UBIND', String(spec.bindings.length)));
  parts.push(`const WG_SIZE: u32 = ${x * y * z}u;`);
  parts.push(PRELUDE);
  if (spec.helpers) parts.push(spec.helpers);
  parts.push(
    `@compute @workgroup_size(${x}, ${y}, ${z})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lidx: u32${spec.subgroups ? ',\n        @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_size) sg_size: u32' : ''}) {
  let flat_wg = (wid.z * nwg.y + wid.y) * nwg.x + wid.x;${spec.subgroups ? '\n  SG_LANE = sg_lane;\n  SG_SIZE = sg_size;' : ''}
${spec.body}
}`,
  );
  return parts.join('\n');
}

/** Packs uniform values into the layout {@link renderProgram} declares. */
export function packUniforms(fields: readonly UniformField[], values: UniformValues): ArrayBuffer {
  const { offsets, words } = uniformLayout(fields);
  const buf = new ArrayBuffer(words * 4);
  const u = new Uint32Array(buf);
  const i = new Int32Array(buf);
  const f = new Float32Array(buf);
  for (const [name, type, len] of fields) {
    const v = values[name];
    if (v === undefined) throw new Error(`internal: uniform '${name}' missing`);
    const arr = typeof v === 'number' ? [v] : v;
    if (arr.length > (len ?? 1)) throw new Error(`internal: uniform '${name}' too long`);
    const off = offsets.get(name)!;
    arr.forEach((x, k) => {
      if (type === 'f32') f[off + k] = x;
      else if (type === 'i32') i[off + k] = x;
      else u[off + k] = x >>> 0;
    });
  }
  return buf;
}

const programCache = new Map<string, GpuProgram>();

/** Turns a spec into a cached {@link GpuProgram} (the device caches its pipeline by the same key). */
export function program(spec: ProgramSpec): GpuProgram {
  const key = [
    spec.name,
    spec.key,
    spec.bindings.map((b) => `${b.name}:${b.dtype}:${b.access}${b.atomic ? ':a' : ''}${b.vec4 ? ':v4' : ''}`).join(','),
    spec.uniforms.map((u) => u.join(':')).join(','),
    spec.workgroupSize.join('x'),
    spec.subgroups ? 'sg' : '',
    (spec.directives ?? []).join(''),
  ].join('|');
  let p = programCache.get(key);
  if (!p) {
    p = {
      name: spec.name,
      key,
      source: () => renderProgram(spec),
      bindings: spec.bindings.map((b) => b.access),
      uniform: spec.uniforms.length > 0,
    };
    programCache.set(key, p);
  }
  return p;
}

/** Dispatch size for `n` work items in workgroups of `wg` (2-D when above the per-dimension limit). */
export function linearGrid(n: number, wg: number, device: WebGPUDevice): [number, number, number] {
  const groups = Math.ceil(n / wg);
  const max = device.limits.maxComputeWorkgroupsPerDimension;
  if (groups <= max) return [groups, 1, 1];
  const y = Math.ceil(groups / max);
  return [Math.ceil(groups / y), y, 1];
}

/** Runs a program over tensors (binding order) with uniform values. */
export function run(spec: ProgramSpec, tensors: readonly Tensor[], values: UniformValues, grid: [number, number, number]): void {
  const device = tensors[0]!.device as WebGPUDevice;
  const prog = program(spec);
  const uniforms = spec.uniforms.length ? packUniforms(spec.uniforms, values) : null;
  device.dispatch(
    prog,
    tensors.map((t) => t.storage),
    uniforms,
    grid,
  );
}

/**
 * WGSL of a function `off_<name>(flat)` mapping a row-major index of the shape `u_shape` to an element offset of a
 * strided tensor; `fastPaths` (WGSL statements, each on a line of its own after a newline) may return early.
 */
export function stridedOffsetFn(name: string, fastPaths = ''): string {
  return `fn off_${name}(flat: u32) -> u32 {${fastPaths}
  var rem = flat;
  var off = u_${name}_off();
  for (var d = i32(u_rank()) - 1; d >= 0; d = d - 1) {
    let n = u_shape(u32(d));
    off = off + (rem % n) * u_${name}_st(u32(d));
    rem = rem / n;
  }
  return off;
}`;
}

/** Uniform fields of a strided operand `name` (offset + strides). */
export function stridedFields(name: string): UniformField[] {
  return [
    [`${name}_off`, 'u32'],
    [`${name}_st`, 'u32', MAX_RANK],
  ];
}

/** Checks the rank limit of the GPU kernels. */
export function checkRank(shape: readonly number[], argument: string): void {
  if (shape.length > MAX_RANK) {
    throw new WebattnError('LIMIT_EXCEEDED', `${argument}: rank ${shape.length} exceeds the WebGPU kernels' maximum rank of ${MAX_RANK}`, { argument });
  }
}

/**
 * WGSL of workgroup reductions `wg_sum(v, lidx)` / `wg_max(v, lidx)` over a 1-D workgroup of
 * `WG_SIZE` (a power of two) threads. With `subgroups`, each subgroup reduces with `subgroupAdd/Max`
 * and one slot per subgroup goes through workgroup memory; without, a tree in workgroup memory.
 * Programs using the subgroup form must set `subgroups: true` in their spec.
 */
export function wgReduce(subgroups: boolean): string {
  const tree = `
  red_buf[lidx] = v;
  workgroupBarrier();
  var s = WG_SIZE / 2u;
  loop {
    if (s == 0u) { break; }
    if (lidx < s) {
      let a = red_buf[lidx];
      let b = red_buf[lidx + s];
      red_buf[lidx] = select(a + b, max(a, b), is_max);
    }
    workgroupBarrier();
    s = s / 2u;
  }
  let r = red_buf[0];`;
  const sg = `
  let part = select(subgroupAdd(v), subgroupMax(v), is_max);
  if (SG_LANE == 0u) { red_buf[lidx / SG_SIZE] = part; }
  workgroupBarrier();
  var r = red_buf[0];
  for (var i = 1u; i < (WG_SIZE + SG_SIZE - 1u) / SG_SIZE; i = i + 1u) {
    r = select(r + red_buf[i], max(r, red_buf[i]), is_max);
  }`;
  return `
var<workgroup> red_buf: array<f32, WG_SIZE>;
fn wg_reduce(v: f32, lidx: u32, is_max: bool) -> f32 {
  // leading barrier: no thread may overwrite red_buf while another still reads the previous result
  // (llvmpipe through GL gave wrong back-to-back reductions without it)
  workgroupBarrier();${subgroups ? sg : tree}
  workgroupBarrier();
  return r;
}
fn wg_sum(v: f32, lidx: u32) -> f32 { return wg_reduce(v, lidx, false); }
fn wg_max(v: f32, lidx: u32) -> f32 { return wg_reduce(v, lidx, true); }
`;
}

/** True when kernels on `device` should use subgroup operations (the feature exists and is not disabled). */
export function useSubgroups(device: WebGPUDevice): boolean {
  return device.hasFeature('subgroups') && device.subgroupsEnabled;
}
