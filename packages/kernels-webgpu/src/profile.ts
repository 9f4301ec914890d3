/** `profile(device, fn)`: per-kernel GPU time and host counters of one piece of work. */
import { WebattnError, describe, type Device } from '@webattn/core-tensor';
import { WebGPUDevice, type DeviceProfile } from './device/webgpu-device.js';

/** What {@link profile} returns: the function's result beside the {@link DeviceProfile} of its work. */
export interface ProfileResult<R> extends DeviceProfile {
  /** What `fn` returned (awaited). */
  result: R;
}

/**
 * Runs `fn` (sync or async) on a WebGPU device while timing every dispatch it records, and returns
 * its result with per-kernel GPU time (`kernels`, most first, by kernel name), the total, the wall
 * time and the host counters of the window (dispatches, submits, buffers created vs pool hits,
 * uploads, uniform bytes, bind groups, readbacks and syncs with their wait, pipelines compiled).
 * With `timestamp-query` the times are GPU timestamps around each dispatch (each dispatch gets its
 * own compute pass, which adds a little GPU time); without it each dispatch is submitted alone and
 * waited for (`timing: 'serialized'`: ratios only). Throws `INVALID_ARGUMENT` naming `device` unless
 * it is a WebGPU device, naming `fn` unless it is a function, and when a profile already runs.
 *
 * @example
 * const p = await profile(device, () => model.forward({ inputIds }));
 * console.log(formatProfile(p, 10)); // top-10 kernels by GPU time, then the counters
 */
export async function profile<R>(device: Device, fn: () => R | Promise<R>, options: { timing?: 'auto' | 'timestamp-query' | 'serialized' } = {}): Promise<ProfileResult<Awaited<R>>> {
  if (!(device instanceof WebGPUDevice)) {
    const what = device instanceof Object && 'backend' in device ? `a ${String((device as Device).backend)} device` : describe(device);
    throw new WebattnError('INVALID_ARGUMENT', `device: expected a WebGPU device, got ${what}`, { argument: 'device' });
  }
  if (typeof fn !== 'function') throw new WebattnError('INVALID_ARGUMENT', `fn: expected a function, got ${describe(fn)}`, { argument: 'fn' });
  await device.startProfile(options);
  let result: Awaited<R>;
  try {
    result = await fn();
  } catch (e) {
    await device.stopProfile().catch(() => undefined);
    throw e;
  }
  const p = await device.stopProfile();
  return { ...p, result };
}

/**
 * A plain-text table of a {@link DeviceProfile}: the `top` kernels by GPU time (name, dispatches, ms,
 * µs per dispatch, share), the GPU and wall totals, and the host counters.
 * @example console.log(formatProfile(await device.stopProfile(), 10));
 */
export function formatProfile(p: DeviceProfile, top = 10): string {
  const rows = p.kernels.slice(0, Math.max(0, top));
  const w = Math.max(6, ...rows.map((k) => k.name.length));
  const lines = [`${'kernel'.padEnd(w)}  ${'calls'.padStart(6)}  ${'GPU ms'.padStart(9)}  ${'µs/call'.padStart(9)}  share`];
  for (const k of rows) {
    lines.push(`${k.name.padEnd(w)}  ${String(k.count).padStart(6)}  ${k.gpuMs.toFixed(3).padStart(9)}  ${k.meanUs.toFixed(1).padStart(9)}  ${(k.share * 100).toFixed(1).padStart(5)}%`);
  }
  lines.push(`GPU ${p.gpuMs.toFixed(2)} ms (${p.timing}) in ${p.wallMs.toFixed(2)} ms wall`);
  const c = p.counters;
  lines.push(
    `dispatches ${c.dispatches}, submits ${c.submits}, buffers created ${c.buffersCreated} (${(c.bytesCreated / 2 ** 20).toFixed(1)} MiB) / pool hits ${c.poolHits}, destroyed ${c.buffersDestroyed}, ` +
      `uploads ${c.uploads} (${(c.uploadBytes / 1024).toFixed(1)} KiB), uniforms ${(c.uniformBytes / 1024).toFixed(1)} KiB, bind groups ${c.bindGroupsCreated} new / ${c.bindGroupHits} cached, ` +
      `readbacks ${c.readbacks} (${c.readbackWaitMs.toFixed(1)} ms), syncs ${c.syncs} (${c.syncWaitMs.toFixed(1)} ms), pipelines compiled ${c.pipelinesCompiled}`,
  );
  return lines.join('\n');
}
