/** Shared helpers of webattn's tests (not published). */
import { existsSync } from 'node:fs';
import { expect } from 'vitest';
import { getDevice, WebattnError, type Device, type TypedArray } from '@webattn/core-tensor';
import { WebGPUDevice } from '@webattn/kernels-webgpu';

/** Max |a-b| and the first failing index under atol + rtol·|b|. */
export function compare(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number) {
  let worst = 0;
  let bad = -1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const b = expected[i]!;
    if (Number.isNaN(b) && Number.isNaN(a)) continue;
    if (a === b) continue;
    const d = Math.abs(a - b);
    if (!(d <= atol + rtol * Math.abs(b))) {
      if (bad < 0) bad = i;
      worst = Math.max(worst, Number.isNaN(d) ? Infinity : d);
    }
  }
  return { bad, worst };
}

/** Asserts closeness elementwise (NaN in `actual` always fails unless `expected` is NaN). */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol = 1e-5, rtol = 1e-4, label = ''): void {
  expect(actual.length, `${label} length`).toBe(expected.length);
  const { bad, worst } = compare(actual, expected, atol, rtol);
  if (bad >= 0) {
    expect.fail(`${label}: element ${bad} is ${actual[bad]} but expected ${expected[bad]} (worst |diff| ${worst}, atol ${atol}, rtol ${rtol})`);
  }
}

/** The WebGPU device for GPU tests: must exist (a missing adapter fails, never skips), with poisoned allocations. */
export async function gpuDevice(): Promise<WebGPUDevice> {
  const d = await getDevice({ kind: 'webgpu', cache: false });
  expect(d).toBeInstanceOf(WebGPUDevice);
  const g = d as WebGPUDevice;
  g.poisonAllocations = true;
  return g;
}

/** Reads a tensor back as plain numbers. */
export async function values(t: { toArray(): Promise<TypedArray> }): Promise<number[]> {
  return Array.from(await t.toArray());
}

export type { Device };

/** Asserts `fn` throws a `WebattnError` with `code` whose message contains each string / matches each RegExp. */
export function expectCode(fn: () => unknown, code: string, ...fragments: (string | RegExp)[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a WebattnError').toBeInstanceOf(WebattnError);
  expect((caught as WebattnError).code).toBe(code);
  for (const f of fragments) {
    if (typeof f === 'string') expect((caught as Error).message).toContain(f);
    else expect((caught as Error).message).toMatch(f);
  }
}

/** Where Debian's chromium puts the SwiftShader Vulkan ICD that `webgpuBackend: 'swiftshader'` loads. */
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/**
 * Skips the calling test (with the reason, reported as skipped) on a machine without the SwiftShader ICD — the
 * GPU device machine has no chromium. CI installs chromium (scripts/ensure-system-deps.mjs) and sets
 * `WEBATTN_EXPECT_SWIFTSHADER=1`, so a missing ICD fails there instead of skipping.
 */
export function skipWithoutSwiftShader(ctx: { skip: (note?: string) => void }): void {
  if (hasSwiftShader()) return;
  ctx.skip(`no SwiftShader ICD at ${SWIFTSHADER_ICD} (Debian chromium) on this machine`);
}

/** True where the SwiftShader tests run: the ICD is installed, or `WEBATTN_EXPECT_SWIFTSHADER=1` demands them. */
export function hasSwiftShader(): boolean {
  return existsSync(SWIFTSHADER_ICD) || process.env.WEBATTN_EXPECT_SWIFTSHADER === '1';
}

/**
 * Skips the calling test (with the reason, reported as skipped) where `device` has no f16 subgroup matrices (`has`
 * false). The GPU machine's run sets `WEBATTN_EXPECT_SGMM=1` (with `orF16`, `WEBATTN_EXPECT_F16=1` too): there a
 * missing feature fails the test instead.
 */
export function skipWithoutSubgroupMatrix(ctx: { skip: (note?: string) => void }, device: Device, has: boolean, orF16 = false): void {
  if (has) return;
  const why = `adapter "${device.info.adapter}" has no f16 subgroup matrices (features: ${device.info.features.join(', ') || 'none'})`;
  const expectVar = orF16 ? 'WEBATTN_EXPECT_SGMM/F16' : 'WEBATTN_EXPECT_SGMM';
  if (process.env.WEBATTN_EXPECT_SGMM === '1' || (orF16 && process.env.WEBATTN_EXPECT_F16 === '1')) expect.fail(`${expectVar}=1 but ${why}`);
  ctx.skip(why);
}
