import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { cpu, Rng, WebattnError, type Device } from '@webattn/core-tensor';
import { FIXTURES, readSafetensors as fixtureRead } from '../../../test-utils/fixtures.js';
import { entryToTensor, readSafetensors, readSafetensorsHeader, writeSafetensors, type SafetensorsEntry } from './safetensors.js';
import { expectCode } from '../../../test-utils/index.js';

/** Hand-assembles a safetensors file (independent of writeSafetensors): header object + raw data. */
function assemble(header: unknown, data: Uint8Array, opts: { headerText?: string; lenOverride?: bigint } = {}): Uint8Array {
  const json = new TextEncoder().encode(opts.headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, opts.lenOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}


const rng = new Rng(1234);
const randF32 = (n: number) => Float32Array.from({ length: n }, () => rng.normal());

/** A valid two-tensor file: a [2,3] F32 and a [4] I32. */
function validFile(): { bytes: Uint8Array; a: Float32Array; b: Int32Array } {
  const a = randF32(6);
  const b = Int32Array.from([7, -3, 2147483647, -2147483648]);
  const data = new Uint8Array(24 + 16);
  data.set(new Uint8Array(a.buffer), 0);
  data.set(new Uint8Array(b.buffer), 24);
  const header = {
    __metadata__: { format: 'pt' },
    a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] },
    b: { dtype: 'I32', shape: [4], data_offsets: [24, 40] },
  };
  return { bytes: assemble(header, data), a, b };
}

describe('readSafetensors', () => {
  it('reads a hand-assembled file with metadata', () => {
    const { bytes, a, b } = validFile();
    const f = readSafetensors(bytes);
    expect(f.metadata).toEqual({ format: 'pt' });
    expect(Object.keys(f.tensors)).toEqual(['a', 'b']);
    expect(f.tensors['a']!.shape).toEqual([2, 3]);
    expect(Array.from(f.tensors['a']!.data as Float32Array)).toEqual(Array.from(a));
    expect(Array.from(f.tensors['b']!.data as Int32Array)).toEqual(Array.from(b));
    // ArrayBuffer input and an unaligned view give the same result
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    const g = readSafetensors(shifted.subarray(3));
    expect(Array.from(g.tensors['a']!.data as Float32Array)).toEqual(Array.from(a));
    expect(readSafetensors(bytes.slice().buffer).tensors['b']!.shape).toEqual([4]);
    // copy: false gives views where aligned (the file's header here is JSON.stringify'd, so maybe not)
    const padded = writeSafetensors({ a: { dtype: 'F32', shape: [2, 3], data: a } });
    const v = readSafetensors(padded, { copy: false });
    expect(v.tensors['a']!.data.buffer).toBe(padded.buffer);
    expect(Array.from(v.tensors['a']!.data as Float32Array)).toEqual(Array.from(a));
    const odd = new Uint8Array(padded.length + 1);
    odd.set(padded, 1);
    const w = readSafetensors(odd.subarray(1), { copy: false }); // misaligned: copied
    expect(w.tensors['a']!.data.buffer).not.toBe(odd.buffer);
    expect(Array.from(w.tensors['a']!.data as Float32Array)).toEqual(Array.from(a));
    expectCode(() => readSafetensors(padded, { copy: 'no' as unknown as boolean }), 'INVALID_ARGUMENT', 'options.copy');
  });

  it('reads the files transformers wrote (tiny GPT-2 and ViT), matching an independent parser', () => {
    for (const dir of ['tiny-gpt2', 'tiny-vit']) {
      const path = `${FIXTURES}${dir}/model.safetensors`;
      const ours = readSafetensors(readFileSync(path));
      const ref = fixtureRead(path);
      expect(Object.keys(ours.tensors).sort()).toEqual(Object.keys(ref).sort());
      expect(ours.metadata).toEqual({ format: 'pt' });
      for (const [k, r] of Object.entries(ref)) {
        expect(ours.tensors[k]!.shape).toEqual(r.shape);
        expect(ours.tensors[k]!.data).toEqual(r.data);
      }
    }
  });

  it('converts on load: BF16 → float32 exact, F16 → float32 values, I64/U64 → int32 with a range check, small ints widen', async () => {
    const dev: Device = cpu();
    // BF16: random sign/exponent/mantissa; oracle is the formula (-1)^s 2^(e-127) (1 + m/128)
    const bits = new Uint16Array(64);
    const expected: number[] = [];
    for (let i = 0; i < bits.length; i++) {
      const s = rng.next() < 0.5 ? 1 : 0;
      const e = 100 + Math.floor(rng.next() * 50);
      const m = Math.floor(rng.next() * 128);
      bits[i] = (s << 15) | (e << 7) | m;
      expected.push((s ? -1 : 1) * 2 ** (e - 127) * (1 + m / 128));
    }
    const bf = entryToTensor({ dtype: 'BF16', shape: [8, 8], data: bits }, dev);
    expect(bf.dtype).toBe('float32');
    expect(Array.from(await bf.toArray())).toEqual(expected);
    // F16 with forced float32: formula (-1)^s 2^(e-15) (1 + m/1024)
    const hb = new Uint16Array(32);
    const hexp: number[] = [];
    for (let i = 0; i < hb.length; i++) {
      const s = i & 1;
      const e = 1 + Math.floor(rng.next() * 29);
      const m = Math.floor(rng.next() * 1024);
      hb[i] = (s << 15) | (e << 10) | m;
      hexp.push((s ? -1 : 1) * 2 ** (e - 15) * (1 + m / 1024));
    }
    const h32 = entryToTensor({ dtype: 'F16', shape: [32], data: hb }, dev, { dtype: 'float32' });
    expect(h32.dtype).toBe('float32');
    expect(Array.from(await h32.toArray())).toEqual(hexp);
    const h16 = entryToTensor({ dtype: 'F16', shape: [32], data: hb }, dev);
    expect(h16.dtype).toBe('float16'); // the CPU reference stores float16
    expect(Array.from(await h16.toArray())).toEqual(hexp);
    // I64 / U64
    const i64 = entryToTensor({ dtype: 'I64', shape: [3], data: BigInt64Array.from([5n, -2147483648n, 2147483647n]) }, dev);
    expect(i64.dtype).toBe('int32');
    expect(Array.from(await i64.toArray())).toEqual([5, -2147483648, 2147483647]);
    expectCode(() => entryToTensor({ dtype: 'I64', shape: [2], data: BigInt64Array.from([1n, 2147483648n]) }, dev, { source: 'x.bin' }), 'LIMIT_EXCEEDED', 'x.bin', 'element 1', '2147483648');
    expectCode(() => entryToTensor({ dtype: 'U64', shape: [1], data: BigUint64Array.from([2n ** 40n]) }, dev), 'LIMIT_EXCEEDED');
    const i8 = entryToTensor({ dtype: 'I8', shape: [3], data: Int8Array.from([-128, 0, 127]) }, dev);
    expect(Array.from(await i8.toArray())).toEqual([-128, 0, 127]);
    const u16 = entryToTensor({ dtype: 'U16', shape: [2], data: Uint16Array.from([65535, 1]) }, dev);
    expect(Array.from(await u16.toArray())).toEqual([65535, 1]);
    const bool = entryToTensor({ dtype: 'BOOL', shape: [3], data: Uint8Array.from([0, 1, 1]) }, dev);
    expect(bool.dtype).toBe('bool');
    expect(Array.from(await bool.toArray())).toEqual([0, 1, 1]);
    // readSafetensors with a device returns Tensors
    const { bytes, a } = validFile();
    const f = readSafetensors(bytes, { device: dev });
    expect(f.tensors['a']!.shape).toEqual([2, 3]);
    expect(Array.from(await f.tensors['a']!.toArray())).toEqual(Array.from(a));
  });

  it('a device without f16 gets float32 for F16', () => {
    const fake = { info: { backend: 'webgpu', features: [] } } as unknown as Device;
    const calls: string[] = [];
    const dev = new Proxy(cpu(), {
      get(t, p, r) {
        if (p === 'info') return fake.info;
        if (p === 'upload') return (dtype: string, data: unknown) => (calls.push(dtype), t.upload(dtype as 'float32', data as Float32Array));
        return Reflect.get(t, p, r);
      },
    });
    const t = entryToTensor({ dtype: 'F16', shape: [1], data: Uint16Array.from([0x3c00]) }, dev);
    expect(t.dtype).toBe('float32');
    expect(calls).toEqual(['float32']);
  });

  it('refuses every broken rule with a coded error naming it', () => {
    const four = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);
    const t = (o: object) => ({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16], ...o } });
    expectCode(() => readSafetensors(new Uint8Array(5)), 'SAFETENSORS_INVALID', '8-byte');
    expectCode(() => readSafetensors(assemble(t({}), four, { lenOverride: 100_000_001n })), 'SAFETENSORS_INVALID', '100000000');
    expectCode(() => readSafetensors(assemble(t({}), four, { lenOverride: 2n ** 63n })), 'SAFETENSORS_INVALID', 'exceeds');
    expectCode(() => readSafetensors(assemble(t({}), four, { lenOverride: 5000n })), 'SAFETENSORS_INVALID', 'past the end');
    expectCode(() => readSafetensors(assemble(null, four, { headerText: '[1,2]' })), 'SAFETENSORS_INVALID', "start with '{'");
    expectCode(() => readSafetensors(assemble(null, four, { headerText: '{"x": ' })), 'SAFETENSORS_INVALID', 'invalid JSON');
    expectCode(() => readSafetensors(assemble(null, new Uint8Array(0), { headerText: '{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}' })), 'SAFETENSORS_INVALID', 'duplicate key "a"');
    const badUtf8 = assemble(null, four, { headerText: '{"x"}' });
    badUtf8[9] = 0xff;
    expectCode(() => readSafetensors(badUtf8), 'SAFETENSORS_INVALID', 'UTF-8');
    expectCode(() => readSafetensors(assemble({ __metadata__: { a: 1 }, ...t({}) }, four)), 'SAFETENSORS_INVALID', '__metadata__["a"]', 'string');
    expectCode(() => readSafetensors(assemble({ __metadata__: ['a'], ...t({}) }, four)), 'SAFETENSORS_INVALID', '__metadata__');
    expectCode(() => readSafetensors(assemble(t({ dtype: 'F8_E4M3' }), four)), 'DTYPE_UNSUPPORTED', 'F8_E4M3', 'tensor "x"');
    expectCode(() => readSafetensors(assemble(t({ dtype: 'Q4' }), four)), 'SAFETENSORS_INVALID', 'unknown dtype "Q4"');
    expectCode(() => readSafetensors(assemble(t({ shape: [-4] }), four)), 'SAFETENSORS_INVALID', 'shape[0]', 'non-negative');
    expectCode(() => readSafetensors(assemble(t({ shape: [2.5] }), four)), 'SAFETENSORS_INVALID', 'shape[0]');
    expectCode(() => readSafetensors(assemble(t({ shape: [2 ** 30, 2 ** 30, 2 ** 30] }), four)), 'SAFETENSORS_INVALID', 'overflows');
    expectCode(() => readSafetensors(assemble(t({ shape: 4 }), four)), 'SAFETENSORS_INVALID', 'shape');
    expectCode(() => readSafetensors(assemble(t({ data_offsets: [16, 0] }), four)), 'SAFETENSORS_INVALID', 'begin > end');
    expectCode(() => readSafetensors(assemble(t({ data_offsets: [0] }), four)), 'SAFETENSORS_INVALID', 'data_offsets');
    expectCode(() => readSafetensors(assemble(t({ data_offsets: [0, 12] }), four)), 'SAFETENSORS_INVALID', 'needs 16');
    expectCode(() => readSafetensors(assemble(t({ shape: [2] }), four)), 'SAFETENSORS_INVALID', 'needs 8');
    expectCode(() => readSafetensors(assemble(t({ data_offsets: [4, 20] }), new Uint8Array(20))), 'SAFETENSORS_INVALID', 'gap');
    expectCode(() => readSafetensors(assemble(t({}), new Uint8Array(20))), 'SAFETENSORS_INVALID', 'exactly at the end');
    expectCode(() => readSafetensors(assemble(t({}), new Uint8Array(12))), 'SAFETENSORS_INVALID', 'exactly at the end');
    const overlap = {
      x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      y: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    };
    expectCode(() => readSafetensors(assemble(overlap, new Uint8Array(12))), 'SAFETENSORS_INVALID', 'overlap');
    expectCode(() => readSafetensors(assemble({ x: [1] }, four)), 'SAFETENSORS_INVALID', 'tensor "x"');
    expectCode(() => readSafetensors(assemble(null, four, { headerText: '{"a":' + '['.repeat(5000) })), 'SAFETENSORS_INVALID', 'nesting');
    expectCode(() => readSafetensors('nope' as unknown as Uint8Array), 'INVALID_ARGUMENT', 'bytes');
  });

  it('accepts zero-sized tensors, an empty file body and a __proto__ tensor name', () => {
    const f = readSafetensors(assemble({ e: { dtype: 'F32', shape: [0, 3], data_offsets: [0, 0] }, __proto__x: { dtype: 'U8', shape: [], data_offsets: [0, 1] } }, Uint8Array.from([9])));
    expect(f.tensors['e']!.shape).toEqual([0, 3]);
    expect(Array.from(f.tensors['__proto__x']!.data)).toEqual([9]);
    const p = readSafetensors(assemble(null, Uint8Array.from([3]), { headerText: '{"__proto__":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}' }));
    expect(Object.keys(p.tensors)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(p.tensors)).toBe(Object.prototype);
    expect(readSafetensors(assemble({}, new Uint8Array(0))).tensors).toEqual({});
  });
});

describe('writeSafetensors', () => {
  const allDtypes = (): Record<string, SafetensorsEntry> => ({
    f32: { dtype: 'F32', shape: [2, 3], data: randF32(6) },
    f64: { dtype: 'F64', shape: [3], data: Float64Array.from([Math.PI, -1e300, 5e-324]) },
    f16: { dtype: 'F16', shape: [2], data: Uint16Array.from([0x3c00, 0xc000]) },
    bf16: { dtype: 'BF16', shape: [1], data: Uint16Array.from([0x3f80]) },
    i64: { dtype: 'I64', shape: [2], data: BigInt64Array.from([-(2n ** 62n), 3n]) },
    u64: { dtype: 'U64', shape: [1], data: BigUint64Array.from([2n ** 63n]) },
    i32: { dtype: 'I32', shape: [1], data: Int32Array.from([-5]) },
    u32: { dtype: 'U32', shape: [1], data: Uint32Array.from([4000000000]) },
    i16: { dtype: 'I16', shape: [1], data: Int16Array.from([-300]) },
    u16: { dtype: 'U16', shape: [1], data: Uint16Array.from([60000]) },
    i8: { dtype: 'I8', shape: [3], data: Int8Array.from([-1, 2, -3]) },
    u8: { dtype: 'U8', shape: [1], data: Uint8Array.from([200]) },
    bool: { dtype: 'BOOL', shape: [2, 1], data: Uint8Array.from([1, 0]) },
    scalar: { dtype: 'F32', shape: [], data: Float32Array.from([2.5]) },
    empty: { dtype: 'F32', shape: [0], data: new Float32Array(0) },
  });

  it('round-trips every dtype with metadata; the header is padded to 8 bytes with spaces', () => {
    const t = allDtypes();
    const bytes = writeSafetensors(t, { format: 'pt', note: 'ünïcode' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    expect(text.trimEnd().endsWith('}')).toBe(true);
    expect(/^ *$/.test(text.slice(text.lastIndexOf('}') + 1))).toBe(true);
    const back = readSafetensors(bytes);
    expect(back.metadata).toEqual({ format: 'pt', note: 'ünïcode' });
    expect(Object.keys(back.tensors).sort()).toEqual(Object.keys(t).sort());
    for (const [k, e] of Object.entries(t)) {
      expect(back.tensors[k]!.dtype).toBe(e.dtype);
      expect(back.tensors[k]!.shape).toEqual(e.shape);
      expect(Array.from(back.tensors[k]!.data as ArrayLike<unknown>)).toEqual(Array.from(e.data as ArrayLike<unknown>));
    }
    // the transformers files re-written by us read back byte-identical tensors
    const src = readSafetensors(readFileSync(`${FIXTURES}tiny-gpt2/model.safetensors`));
    const again = readSafetensors(writeSafetensors(src.tensors, src.metadata));
    expect(again).toEqual(src);
  });

  it('refuses bad tensors and metadata with INVALID_ARGUMENT naming the tensor', () => {
    const w = (t: unknown, m?: unknown) => () => writeSafetensors(t as Record<string, SafetensorsEntry>, m as Record<string, string>);
    expectCode(w({ a: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }), 'INVALID_ARGUMENT', 'tensor "a"', 'needs 12 bytes');
    expectCode(w({ a: { dtype: 'F32', shape: [2], data: new Int32Array(2) } }), 'INVALID_ARGUMENT', 'Float32Array', 'Int32Array');
    expectCode(w({ a: { dtype: 'Q8', shape: [2], data: new Uint8Array(2) } }), 'INVALID_ARGUMENT', 'tensor "a".dtype');
    expectCode(w({ a: { dtype: 'F32', shape: [-1], data: new Float32Array(0) } }), 'INVALID_ARGUMENT', 'shape[0]');
    expectCode(w({ __metadata__: { dtype: 'F32', shape: [0], data: new Float32Array(0) } }), 'INVALID_ARGUMENT', 'reserved');
    expectCode(w({}, { a: 3 }), 'INVALID_ARGUMENT', 'metadata["a"]');
    expectCode(w(null), 'INVALID_ARGUMENT', 'tensors');
  });
});

describe('safetensors fuzz (fast-check)', () => {
  const base = writeSafetensors(
    {
      w: { dtype: 'F32', shape: [3, 4], data: randF32(12) },
      b: { dtype: 'BF16', shape: [5], data: Uint16Array.from([1, 2, 3, 4, 5]) },
      i: { dtype: 'I64', shape: [2], data: BigInt64Array.from([1n, -1n]) },
      z: { dtype: 'U8', shape: [0], data: new Uint8Array(0) },
    },
    { format: 'pt' },
  );
  const hlen = Number(new DataView(base.buffer).getBigUint64(0, true));

  /** Runs the reader; only a WebattnError may escape, and a success must be self-consistent. */
  const probe = (bytes: Uint8Array) => {
    let out: ReturnType<typeof readSafetensors> | undefined;
    try {
      out = readSafetensors(bytes);
    } catch (e) {
      if (!(e instanceof WebattnError)) throw e;
      expect(['SAFETENSORS_INVALID', 'DTYPE_UNSUPPORTED']).toContain(e.code);
      return;
    }
    let total = 0;
    for (const t of Object.values(out.tensors)) {
      total += t.data.byteLength;
      expect(t.data.length).toBe(t.shape.reduce((p, s) => p * s, 1));
    }
    expect(total).toBeLessThanOrEqual(bytes.length); // no allocation beyond the file size
  };

  it('random byte mutations of a valid file', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), (muts) => {
        const b = base.slice();
        for (const [i, v] of muts) b[i] = v;
        probe(b);
      }),
      { numRuns: 3000, seed: 42 },
    );
  });

  it('mutations focused on the header text (digits, brackets, quotes) and truncation / extension', () => {
    const chars = '0123456789[]{}",:-. eE'.split('').map((c) => c.charCodeAt(0));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 8, max: 8 + hlen - 1 }), fc.constantFrom(...chars)), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: -20, max: 20 }),
        (muts, dlen) => {
          let b = base.slice();
          for (const [i, v] of muts) b[i] = v;
          if (dlen < 0) b = b.slice(0, b.length + dlen);
          else if (dlen > 0) {
            const c = new Uint8Array(b.length + dlen);
            c.set(b);
            b = c;
          }
          probe(b);
        },
      ),
      { numRuns: 3000, seed: 7 },
    );
  });

  it('random headers: arbitrary JSON values in place of a tensor entry and random header lengths', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (v, len) => {
        const hdr = JSON.stringify({ t: v });
        probe(assemble(null, new Uint8Array(16), { headerText: hdr }));
        probe(assemble(null, new Uint8Array(16), { headerText: hdr, lenOverride: len }));
      }),
      { numRuns: 2000, seed: 3 },
    );
  });

  it('readSafetensorsHeader agrees with readSafetensors on the base file', () => {
    const h = readSafetensorsHeader(base);
    expect(h.tensors['w']).toEqual({ dtype: 'F32', shape: [3, 4], dataOffsets: expect.any(Array) });
    expect(h.metadata).toEqual({ format: 'pt' });
  });
});
