import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { WebattnError } from '@webattn/core-tensor';
import type { WebGPUDevice } from './index.js';
import { expectClose, expectCode, gpuDevice } from '../../../test-utils/index.js';
import { failNextAllocations } from '../../../test-utils/alloc-failure.js';

// A buffer the device cannot create (out of device memory: what ViT/GPT-2 eager training hit on the H100, Dawn's
// VK_ERROR_OUT_OF_DEVICE_MEMORY) used to come back as an invalid buffer that failed later kernels with
// `KERNEL_FAILED binary_mul: [Invalid Buffer] is invalid due to a previous error`, and went back into the pool,
// failing later models too. Now: a coded error naming the allocation, and the buffer is never reused.
let gpu: WebGPUDevice;
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

/** float64 reference of a @ b for [n, n] row-major matrices. */
function matmulRef(a: ArrayLike<number>, b: ArrayLike<number>, n: number): number[] {
  const out = new Array<number>(n * n).fill(0);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) for (let j = 0; j < n; j++) out[i * n + j]! += a[i * n + k]! * b[k * n + j]!;
  return out;
}

async function rejection(p: Promise<unknown>): Promise<WebattnError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, 'expected the read to reject').toBeInstanceOf(WebattnError);
  return e as WebattnError;
}

describe('a failed buffer allocation', () => {
  it('raises OUT_OF_MEMORY naming the bytes (not KERNEL_FAILED Invalid Buffer) on the op chain that used it, and synchronously once known', async () => {
    const n = 48;
    const x = T.randn([n, n], { seed: 5, device: gpu });
    const xv = await x.toArray();
    const restore = failNextAllocations(gpu, 1, 'oom');
    let y: T.Tensor;
    let z: T.Tensor;
    try {
      y = T.matmul(x, x); // its output buffer cannot be created
      z = T.mul(y, 2);
    } finally {
      restore();
    }
    for (const t of [z, y]) {
      const e = await rejection(t.toArray());
      expect(e.code).toBe('OUT_OF_MEMORY');
      expect(e.message).toContain(`allocating ${n * n * 4} bytes`);
      expect(e.message).toMatch(/out of device memory.*VK_ERROR_OUT_OF_DEVICE_MEMORY/);
      expect(e.message).not.toMatch(/Invalid Buffer/);
    }
    // known now: the next op that binds the failed tensor throws at its own call
    expectCode(() => T.add(y, 1), 'OUT_OF_MEMORY', `allocating ${n * n * 4} bytes`);
    await gpu.sync().catch(() => undefined); // the failed dispatches were reported above
    y.dispose();
    z.dispose();
    // the failed buffer was not pooled: the same size class works again and is right
    for (let i = 0; i < 3; i++) {
      const w = T.matmul(x, x);
      expectClose(await w.toArray(), matmulRef(xv, xv, n), 1e-4, 1e-4, `matmul after the failure, try ${i}`);
      w.dispose();
    }
    await gpu.sync();
  });

  it('an upload whose buffer fails reports OUT_OF_MEMORY at its read and later ops, and leaves the device usable', async () => {
    const restore = failNextAllocations(gpu, 1, 'oom');
    let u: T.Tensor;
    try {
      u = T.tensor(Float32Array.from({ length: 300 }, (_, i) => i / 7), [300], { device: gpu });
    } finally {
      restore();
    }
    expect((await rejection(u.toArray())).code).toBe('OUT_OF_MEMORY');
    expectCode(() => T.mul(u, 2), 'OUT_OF_MEMORY', 'allocating 1200 bytes');
    u.dispose();
    const v = T.tensor(Float32Array.from({ length: 300 }, (_, i) => i / 7), [300], { device: gpu });
    expectClose(await T.mul(v, 2).toArray(), Array.from({ length: 300 }, (_, i) => (2 * i) / 7), 1e-6, 1e-6);
  });

  it('a creation the adapter rejects (validation) is LIMIT_EXCEEDED naming the buffer size', async () => {
    const x = T.randn([8, 8], { seed: 2, device: gpu });
    const restore = failNextAllocations(gpu, 1, 'limit');
    let y: T.Tensor;
    try {
      y = T.exp(x);
    } finally {
      restore();
    }
    const e = await rejection(y.toArray());
    expect(e.code).toBe('LIMIT_EXCEEDED');
    expect(e.message).toMatch(/tensor allocation: creating a \d+-byte buffer for 256 bytes failed/);
    await gpu.sync().catch(() => undefined);
    expectClose(await T.exp(x).toArray(), Array.from(await x.toArray(), Math.exp), 1e-5, 1e-5);
  });
});
