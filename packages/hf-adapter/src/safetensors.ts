import { WebattnError, fromHalfBits, toHalfBits, fromTyped, type Device, type DType, type Tensor, type TypedArray } from '@webattn/core-tensor';
import { isJsonObject, parseStrictJson, type JsonValue } from './strict-json.js';

/** The element types of the safetensors format that webattn reads and writes. */
export type SafetensorsDType = 'BOOL' | 'U8' | 'I8' | 'I16' | 'U16' | 'F16' | 'BF16' | 'I32' | 'U32' | 'F32' | 'F64' | 'I64' | 'U64';

/**
 * Bytes per element of each {@link SafetensorsDType}.
 * @example SAFETENSORS_DTYPE_SIZE.BF16; // 2
 */
export const SAFETENSORS_DTYPE_SIZE: Readonly<Record<SafetensorsDType, number>> = Object.freeze({
  BOOL: 1,
  U8: 1,
  I8: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
});

/** The typed array that holds a dtype's raw elements (F16 and BF16: their 16-bit patterns). */
export type SafetensorsData =
  | Uint8Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

/**
 * One tensor of a safetensors file as raw host data: `data` is the typed array of the dtype
 * (`BOOL`/`U8`: Uint8Array, `I8`: Int8Array, `I16`: Int16Array, `U16`/`F16`/`BF16`: Uint16Array of the
 * bit patterns, `I32`: Int32Array, `U32`: Uint32Array, `F32`: Float32Array, `F64`: Float64Array,
 * `I64`: BigInt64Array, `U64`: BigUint64Array), row-major, with `prod(shape)` elements.
 */
export interface SafetensorsEntry {
  dtype: SafetensorsDType;
  shape: number[];
  data: SafetensorsData;
}

/** Result of {@link readSafetensors}. */
export interface SafetensorsFile<T = SafetensorsEntry> {
  /** Tensors by name, in the file's order of data offsets. */
  tensors: Record<string, T>;
  /** The `__metadata__` string→string map (empty when absent). */
  metadata: Record<string, string>;
}

/** Options of {@link readSafetensors} / {@link entryToTensor}. */
export interface ReadSafetensorsOptions {
  /** When given, tensors come back as webattn `Tensor`s on this device (converted: see {@link entryToTensor}). */
  device?: Device;
  /** Floating-point tensors become this dtype (`float32` or `float16`); default: `float32`, F16 stays `float16` where the device has f16. */
  dtype?: 'float32' | 'float16';
  /** Where the bytes came from, used in error messages (default `safetensors`). */
  source?: string;
  /**
   * Copy each tensor's bytes (default true). With `false`, a tensor whose bytes sit at an offset
   * aligned to its element size is a view of `bytes` (no second copy of a large checkpoint); the others
   * are still copied.
   */
  copy?: boolean;
}

/**
 * Largest header the format allows (bytes); a longer one is `SAFETENSORS_INVALID`.
 * @example SAFETENSORS_MAX_HEADER; // 100000000
 */
export const SAFETENSORS_MAX_HEADER = 100_000_000;

const DTYPE_ARRAY: Record<SafetensorsDType, { new (buffer: ArrayBuffer, byteOffset?: number, length?: number): SafetensorsData }> = {
  BOOL: Uint8Array,
  U8: Uint8Array,
  I8: Int8Array,
  I16: Int16Array,
  U16: Uint16Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I32: Int32Array,
  U32: Uint32Array,
  F32: Float32Array,
  F64: Float64Array,
  I64: BigInt64Array,
  U64: BigUint64Array,
};

/** dtypes other libraries write that webattn refuses by name. */
const KNOWN_UNSUPPORTED = ['F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4', 'C64', 'C128', 'I4', 'U4'];

function isSafetensorsDType(v: unknown): v is SafetensorsDType {
  return typeof v === 'string' && Object.prototype.hasOwnProperty.call(SAFETENSORS_DTYPE_SIZE, v);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function err(source: string, msg: string, argument?: string): WebattnError {
  return new WebattnError('SAFETENSORS_INVALID', `${source}: ${msg}`, argument !== undefined ? { argument } : undefined);
}

/** Product of a shape with overflow checks; returns the element count. */
function checkedNumel(shape: unknown, where: string, source: string): number {
  if (!Array.isArray(shape)) throw err(source, `${where}.shape: expected an array of non-negative integers, got ${describe(shape)}`, where);
  let n = 1;
  for (let d = 0; d < shape.length; d++) {
    const s = shape[d];
    if (typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0) {
      throw err(source, `${where}.shape[${d}]: expected a non-negative integer, got ${describe(s)}`, where);
    }
    n *= s;
    if (!Number.isSafeInteger(n)) throw err(source, `${where}.shape ${JSON.stringify(shape)}: the element count overflows 2^53`, where);
  }
  return n;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (v === null) return 'null';
  if (typeof v === 'object') return 'an object';
  return String(v);
}

function asBytes(bytes: Uint8Array | ArrayBuffer, source: string): Uint8Array {
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  if (ArrayBuffer.isView(bytes)) {
    const v = bytes as ArrayBufferView;
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  }
  throw new WebattnError('INVALID_ARGUMENT', `${source}: bytes: expected a Uint8Array or ArrayBuffer, got ${describe(bytes)}`, { argument: 'bytes' });
}

interface HeaderEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Parses and validates a safetensors header; returns the entries (sorted by offset), the metadata
 * and the byte offset where the data section starts.
 */
function parseHeader(u8: Uint8Array, source: string): { entries: HeaderEntry[]; metadata: Record<string, string>; dataStart: number } {
  if (u8.byteLength < 8) throw err(source, `the file has ${u8.byteLength} bytes; a safetensors file starts with an 8-byte little-endian header length`);
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const n64 = dv.getBigUint64(0, true);
  if (n64 > BigInt(SAFETENSORS_MAX_HEADER)) throw err(source, `header length ${n64} exceeds the format's limit of ${SAFETENSORS_MAX_HEADER} bytes`);
  const n = Number(n64);
  if (8 + n > u8.byteLength) throw err(source, `header length ${n} reaches past the end of the file (${u8.byteLength} bytes)`);
  if (n < 2) throw err(source, `header length ${n}: expected a JSON object of at least 2 bytes`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(u8.subarray(8, 8 + n));
  } catch {
    throw err(source, 'the header is not valid UTF-8');
  }
  if (text[0] !== '{') throw err(source, `the header must start with '{', got ${describe(text[0])}`);
  const header = parseStrictJson(text, 'SAFETENSORS_INVALID', `${source}: header`);
  if (!isJsonObject(header)) throw err(source, 'the header must be a JSON object');
  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];

  for (const name of Object.keys(header)) {
    const h = header[name] as JsonValue;
    if (name === '__metadata__') {
      if (!isJsonObject(h)) throw err(source, `__metadata__: expected an object of strings, got ${describe(h)}`, '__metadata__');
      for (const k of Object.keys(h)) {
        const v = h[k];
        if (typeof v !== 'string') throw err(source, `__metadata__["${k}"]: expected a string, got ${describe(v)}`, '__metadata__');
        setOwn(metadata, k, v);
      }
      continue;
    }
    const where = `tensor "${name}"`;
    if (!isJsonObject(h)) throw err(source, `${where}: expected an object {dtype, shape, data_offsets}, got ${describe(h)}`, name);
    const dtype = h['dtype'];
    if (!isSafetensorsDType(dtype)) {
      const known = typeof dtype === 'string' && KNOWN_UNSUPPORTED.includes(dtype);
      throw new WebattnError(
        known ? 'DTYPE_UNSUPPORTED' : 'SAFETENSORS_INVALID',
        `${source}: ${where}.dtype: ${known ? `${dtype} is not supported` : `unknown dtype ${describe(dtype)}`}; expected one of ${Object.keys(SAFETENSORS_DTYPE_SIZE).join(', ')}`,
        { argument: name },
      );
    }
    const numel = checkedNumel(h['shape'], where, source);
    const off = h['data_offsets'];
    if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
      throw err(source, `${where}.data_offsets: expected [begin, end] of non-negative integers, got ${JSON.stringify(off)}`, name);
    }
    const [begin, end] = off as [number, number];
    if (begin > end) throw err(source, `${where}.data_offsets [${begin}, ${end}]: begin > end`, name);
    const bytes = numel * SAFETENSORS_DTYPE_SIZE[dtype];
    if (!Number.isSafeInteger(bytes) || end - begin !== bytes) {
      throw err(source, `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes; shape ${JSON.stringify(h['shape'])} of ${dtype} needs ${bytes}`, name);
    }
    entries.push({ name, dtype, shape: (h['shape'] as number[]).slice(), begin, end });
  }
  const dataStart = 8 + n;
  const dataLen = u8.byteLength - dataStart;
  const sorted = entries.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of sorted) {
    if (e.begin < pos) throw err(source, `tensor "${e.name}": data_offsets [${e.begin}, ${e.end}] overlap the previous tensor (which ends at ${pos})`, e.name);
    if (e.begin > pos) throw err(source, `tensor "${e.name}": data_offsets [${e.begin}, ${e.end}] leave a gap after byte ${pos}: tensors must be contiguous`, e.name);
    pos = e.end;
  }
  if (pos !== dataLen) {
    throw err(source, `the tensors end at data byte ${pos} but the data section has ${dataLen} bytes: the last tensor must end exactly at the end of the file`);
  }
  return { entries: sorted, metadata, dataStart };
}

/**
 * Reads a `.safetensors` file, enforcing every rule of the format (8-byte little-endian header length,
 * header ≤ 100,000,000 bytes and inside the file, UTF-8 JSON object without duplicate keys,
 * `__metadata__` string→string, known dtypes, non-negative shapes with overflow-checked products,
 * `data_offsets` begin ≤ end matching elements × dtype size, tensors contiguous from 0 with no gaps or
 * overlaps, the last ending exactly at the end of the file).
 *
 * Without `options.device` each tensor is a {@link SafetensorsEntry} (raw typed data, copied so it is
 * aligned; total allocation ≤ the file size). With `options.device` each is a `Tensor` converted by
 * {@link entryToTensor} (BF16 → float32 exactly, F16 → float16 where the device has f16 else float32,
 * I64/U64 → int32 with a range check, ...).
 *
 * @throws WebattnError `SAFETENSORS_INVALID` naming the rule and the tensor; `DTYPE_UNSUPPORTED` for a
 * dtype of the format webattn does not read (F8_E4M3, ...); `LIMIT_EXCEEDED` when an I64/U64 value
 * does not fit int32.
 * @example
 * const { tensors, metadata } = readSafetensors(await readFile('model.safetensors'));
 * tensors['wte.weight'].shape; // [50257, 768]
 */
export function readSafetensors(bytes: Uint8Array | ArrayBuffer, options?: ReadSafetensorsOptions & { device?: undefined }): SafetensorsFile<SafetensorsEntry>;
export function readSafetensors(bytes: Uint8Array | ArrayBuffer, options: ReadSafetensorsOptions & { device: Device }): SafetensorsFile<Tensor>;
export function readSafetensors(bytes: Uint8Array | ArrayBuffer, options: ReadSafetensorsOptions = {}): SafetensorsFile<SafetensorsEntry | Tensor> {
  const source = options.source ?? 'safetensors';
  const u8 = asBytes(bytes, source);
  const { entries, metadata, dataStart } = parseHeader(u8, source);
  const tensors: Record<string, SafetensorsEntry | Tensor> = {};
  const copy = options.copy ?? true;
  if (typeof copy !== 'boolean') throw new WebattnError('INVALID_ARGUMENT', `options.copy: expected a boolean, got ${describe(copy)}`, { argument: 'options.copy' });
  for (const e of entries) {
    const nbytes = e.end - e.begin;
    const size = SAFETENSORS_DTYPE_SIZE[e.dtype];
    const at = u8.byteOffset + dataStart + e.begin;
    let data: SafetensorsData;
    if (!copy && LITTLE_ENDIAN && at % size === 0) {
      data = new DTYPE_ARRAY[e.dtype](u8.buffer as ArrayBuffer, at, nbytes / size);
    } else {
      const buf = new ArrayBuffer(nbytes);
      new Uint8Array(buf).set(u8.subarray(dataStart + e.begin, dataStart + e.end));
      if (!LITTLE_ENDIAN) swapBytes(new Uint8Array(buf), size);
      data = new DTYPE_ARRAY[e.dtype](buf, 0, nbytes / size);
    }
    const entry: SafetensorsEntry = { dtype: e.dtype, shape: e.shape, data };
    setOwn(tensors, e.name, options.device ? entryToTensor(entry, options.device, { ...options, source: `${source}: tensor "${e.name}"` }) : entry);
  }
  return { tensors, metadata };
}

/**
 * Validates a file like {@link readSafetensors} (every rule, the data offsets included) but copies no
 * tensor data; returns names, dtypes, shapes and byte offsets into the data section.
 * @throws WebattnError `SAFETENSORS_INVALID` / `DTYPE_UNSUPPORTED` as {@link readSafetensors}.
 * @example
 * const { tensors } = readSafetensorsHeader(bytes);
 * tensors['wte.weight']; // { dtype: 'F32', shape: [50257, 768], dataOffsets: [0, 154389504] }
 */
export function readSafetensorsHeader(
  bytes: Uint8Array | ArrayBuffer,
  source = 'safetensors',
): { tensors: Record<string, { dtype: SafetensorsDType; shape: number[]; dataOffsets: [number, number] }>; metadata: Record<string, string> } {
  const { entries, metadata } = parseHeader(asBytes(bytes, source), source);
  const tensors: Record<string, { dtype: SafetensorsDType; shape: number[]; dataOffsets: [number, number] }> = {};
  for (const e of entries) setOwn(tensors, e.name, { dtype: e.dtype, shape: e.shape, dataOffsets: [e.begin, e.end] });
  return { tensors, metadata };
}

/** Defines an own enumerable property (a key named `__proto__` stays data, never a prototype). */
function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function swapBytes(u8: Uint8Array, size: number): void {
  if (size === 1) return;
  for (let i = 0; i < u8.length; i += size) u8.subarray(i, i + size).reverse();
}

/**
 * Exact bfloat16 → float32: the 16 bits are the high half of the float32.
 * @example bf16ToFloat32(new Uint16Array([0x3f80, 0xc000])); // Float32Array [1, -2]
 */
export function bf16ToFloat32(bits: Uint16Array): Float32Array {
  const u = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i]! << 16;
  return new Float32Array(u.buffer);
}

/**
 * float16 bit patterns → float32 values (exact).
 * @example f16ToFloat32(new Uint16Array([0x3c00, 0x3800])); // Float32Array [1, 0.5]
 */
export function f16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = fromHalfBits(bits[i]!);
  return out;
}

/**
 * True when `device` stores float16 (WebGPU with `shader-f16`; the CPU reference emulates it).
 * @example const dtype = deviceHasF16(device) ? 'float16' : 'float32';
 */
export function deviceHasF16(device: Device): boolean {
  return device.info.backend === 'cpu' || device.info.features.includes('shader-f16');
}

/**
 * Converts a {@link SafetensorsEntry} to a webattn `Tensor` on `device`:
 * F32 → float32; F64 → float64 on the CPU reference, float32 elsewhere; BF16 → float32 (exact);
 * F16 → float16 where the device has f16, else float32 (exact); `options.dtype` forces the float dtype;
 * I64/U64 → int32 with a range check; I32 → int32; U32 → uint32; I8/U8/I16/U16 → int32; BOOL → bool.
 *
 * @throws WebattnError `LIMIT_EXCEEDED` naming the tensor and the first element outside int32.
 * @example
 * const t = entryToTensor({ dtype: 'BF16', shape: [2], data: new Uint16Array([0x3f80, 0x4000]) }, device);
 * await t.toArray(); // Float32Array [1, 2]
 */
export function entryToTensor(entry: SafetensorsEntry, device: Device, options: { dtype?: 'float32' | 'float16'; source?: string } = {}): Tensor {
  const source = options.source ?? 'tensor';
  const { dtype, shape, data } = entry;
  const floatTarget = (natural: DType): DType => {
    const want = options.dtype ?? natural;
    if (want === 'float16' && !deviceHasF16(device)) return 'float32';
    return want;
  };
  let out: TypedArray;
  let dt: DType;
  switch (dtype) {
    case 'F32':
      dt = floatTarget('float32');
      out = data as Float32Array;
      break;
    case 'F64':
      dt = options.dtype ? floatTarget(options.dtype) : device.info.features.includes('float64') ? 'float64' : 'float32';
      out = dt === 'float64' ? (data as Float64Array) : Float32Array.from(data as Float64Array);
      break;
    case 'BF16':
      dt = floatTarget('float32');
      out = bf16ToFloat32(data as Uint16Array);
      break;
    case 'F16':
      dt = floatTarget('float16');
      out = f16ToFloat32(data as Uint16Array);
      break;
    case 'I64':
    case 'U64': {
      const src = data as BigInt64Array | BigUint64Array;
      const o = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const v = src[i]!;
        if (v > 2147483647n || v < -2147483648n) {
          throw new WebattnError('LIMIT_EXCEEDED', `${source}: ${dtype} element ${i} = ${v} does not fit int32 (webattn's integer dtype)`, { argument: source });
        }
        o[i] = Number(v);
      }
      dt = 'int32';
      out = o;
      break;
    }
    case 'I32':
      dt = 'int32';
      out = data as Int32Array;
      break;
    case 'U32':
      dt = 'uint32';
      out = data as Uint32Array;
      break;
    case 'I8':
    case 'U8':
    case 'I16':
    case 'U16':
      dt = 'int32';
      out = Int32Array.from(data as ArrayLike<number>);
      break;
    case 'BOOL': {
      const o = new Uint8Array(data.length);
      const src = data as Uint8Array;
      for (let i = 0; i < src.length; i++) o[i] = src[i] ? 1 : 0;
      dt = 'bool';
      out = o;
      break;
    }
    default:
      throw new WebattnError('DTYPE_UNSUPPORTED', `${source}: unknown dtype ${describe(dtype)}`, { argument: source });
  }
  return fromTyped(out, shape, dt, device);
}

/**
 * Reads a webattn `Tensor` back to a {@link SafetensorsEntry} (float32 → F32, float16 → F16,
 * float64 → F64, int32 → I32, uint32 → U32, bool → BOOL).
 *
 * @example
 * const entry = await tensorToEntry(model.stateDict()['lm_head.weight']);
 */
export async function tensorToEntry(t: Tensor): Promise<SafetensorsEntry> {
  const values = await t.toArray();
  const shape = [...t.shape];
  switch (t.dtype) {
    case 'float32':
      return { dtype: 'F32', shape, data: Float32Array.from(values as Float32Array) };
    case 'float16': {
      const h = new Uint16Array(values.length);
      for (let i = 0; i < values.length; i++) h[i] = toHalfBits(values[i]!);
      return { dtype: 'F16', shape, data: h };
    }
    case 'float64':
      return { dtype: 'F64', shape, data: Float64Array.from(values as Float64Array) };
    case 'int32':
      return { dtype: 'I32', shape, data: Int32Array.from(values as Int32Array) };
    case 'uint32':
      return { dtype: 'U32', shape, data: Uint32Array.from(values as Uint32Array) };
    case 'bool':
      return { dtype: 'BOOL', shape, data: Uint8Array.from(values as Uint8Array, (v) => (v ? 1 : 0)) };
  }
}

/**
 * Writes tensors (raw {@link SafetensorsEntry}s, see {@link tensorToEntry} for device tensors) and
 * optional string metadata as a `.safetensors` file. The header is JSON padded with spaces to a multiple
 * of 8 bytes; tensors are laid out in name order, contiguous from offset 0. Round-trips with
 * {@link readSafetensors}.
 *
 * @throws WebattnError `INVALID_ARGUMENT` naming the tensor (unknown dtype, bad shape, data of the
 * wrong type or length, the reserved name `__metadata__`, a non-string metadata value).
 * @example
 * const bytes = writeSafetensors({ w: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } }, { format: 'pt' });
 * await writeFile('model.safetensors', bytes);
 */
export function writeSafetensors(tensors: Record<string, SafetensorsEntry>, metadata?: Record<string, string>): Uint8Array {
  const bad = (msg: string, argument: string) => new WebattnError('INVALID_ARGUMENT', `writeSafetensors: ${msg}`, { argument });
  if (!isJsonObject(tensors)) throw bad(`tensors: expected an object of {dtype, shape, data}, got ${describe(tensors)}`, 'tensors');
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    if (!isJsonObject(metadata)) throw bad(`metadata: expected an object of strings, got ${describe(metadata)}`, 'metadata');
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw bad(`metadata["${k}"]: expected a string, got ${describe(v)}`, 'metadata');
    }
    header['__metadata__'] = { ...metadata };
  }
  const names = Object.keys(tensors).sort();
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    if (name === '__metadata__') throw bad('a tensor may not be named "__metadata__" (reserved by the format)', name);
    const e = tensors[name] as SafetensorsEntry;
    if (!isJsonObject(e)) throw bad(`tensor "${name}": expected {dtype, shape, data}, got ${describe(e)}`, name);
    if (!isSafetensorsDType(e.dtype)) throw bad(`tensor "${name}".dtype: expected one of ${Object.keys(SAFETENSORS_DTYPE_SIZE).join(', ')}, got ${describe(e.dtype)}`, name);
    let numel: number;
    try {
      numel = checkedNumel(e.shape, `tensor "${name}"`, 'writeSafetensors');
    } catch (x) {
      throw bad((x as Error).message.replace(/^\[\w+\] writeSafetensors: /, ''), name);
    }
    const Ctor = DTYPE_ARRAY[e.dtype];
    const okType = e.data instanceof Ctor || (e.data instanceof Uint8Array && e.data.byteLength === numel * SAFETENSORS_DTYPE_SIZE[e.dtype]);
    if (!okType) throw bad(`tensor "${name}".data: expected a ${Ctor.name} for ${e.dtype} (or its raw bytes as a Uint8Array), got ${e.data?.constructor?.name ?? describe(e.data)}`, name);
    const raw = new Uint8Array(e.data.buffer, e.data.byteOffset, e.data.byteLength);
    const nbytes = numel * SAFETENSORS_DTYPE_SIZE[e.dtype];
    if (raw.byteLength !== nbytes) throw bad(`tensor "${name}".data: shape ${JSON.stringify(e.shape)} of ${e.dtype} needs ${nbytes} bytes, got ${raw.byteLength}`, name);
    let bytes = raw;
    if (!LITTLE_ENDIAN) {
      bytes = raw.slice();
      swapBytes(bytes, SAFETENSORS_DTYPE_SIZE[e.dtype]);
    }
    header[name] = { dtype: e.dtype, shape: e.shape.slice(), data_offsets: [offset, offset + nbytes] };
    chunks.push(bytes);
    offset += nbytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const hlen = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + hlen + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(hlen), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + hlen);
  let p = 8 + hlen;
  for (const c of chunks) {
    out.set(c, p);
    p += c.byteLength;
  }
  return out;
}
