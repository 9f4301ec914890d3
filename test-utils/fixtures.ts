/** Loads the PyTorch reference fixtures in `fixtures/` (safetensors + index.json). */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as T from '@webattn/core-tensor';

export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));

export interface FixtureTensor {
  shape: number[];
  dtype: string;
  data: Float32Array | Int32Array | Uint8Array;
}

export interface FixtureCase {
  group: string;
  name: string;
  file: string;
  params: Record<string, unknown>;
  tensors: Record<string, FixtureTensor>;
}

/** Minimal safetensors parse for fixtures (F32, I32, U8). */
export function readSafetensors(path: string): Record<string, FixtureTensor> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const base = 8 + n;
  const out: Record<string, FixtureTensor> = {};
  for (const [name, h] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = h.data_offsets;
    const bytes = buf.subarray(base + a, base + b);
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    const data = h.dtype === 'F32' ? new Float32Array(copy.buffer) : h.dtype === 'I32' ? new Int32Array(copy.buffer) : copy;
    out[name] = { shape: h.shape, dtype: h.dtype, data };
  }
  return out;
}

/** All cases of a group (`sdpa`, `flex`, `varlen`, `model`). */
export function fixtureCases(group: string): FixtureCase[] {
  const index = JSON.parse(readFileSync(`${FIXTURES}index.json`, 'utf8')) as { cases: Omit<FixtureCase, 'tensors'>[] };
  return index.cases.filter((c) => c.group === group).map((c) => ({ ...c, tensors: readSafetensors(`${FIXTURES}${c.file}`) }));
}

/** A fixture tensor on a device (U8 becomes bool). */
export function toTensor(f: FixtureTensor, device: T.Device, requiresGrad = false): T.Tensor {
  const dtype = f.dtype === 'F32' ? 'float32' : f.dtype === 'I32' ? 'int32' : 'bool';
  return T.tensor(f.data, f.shape, { dtype, device, requiresGrad });
}
