import { cpu, type Device } from './device.js';
import { WebattnError } from './errors.js';
import { backendFactories, getBackendFactory, listBackends, type BackendFactory } from './registry.js';

/**
 * Options of {@link getDevice}. Backend packages add their own fields by declaration merging
 * (`@webattn/kernels-webgpu` adds `webgpuBackend` and `dawnUnsafe`).
 */
export interface GetDeviceOptions {
  /**
   * `auto`, `cpu`, or a registered backend's name such as `webgpu` (default: the `WEBATTN_DEVICE`
   * variable, else `auto`: a hardware WebGPU adapter, else another registered backend ranked above
   * software WebGPU, else software WebGPU, else the CPU reference with a one-line warning).
   */
  kind?: string;
  /** Reuse the live default device of these options (default true). A lost or destroyed device is never reused. */
  cache?: boolean;
  /** Print the one-line warning when `auto` falls back to the CPU (default true). */
  warn?: boolean;
  /** Passed to a factory by `auto`: false asks for hardware devices only. Not for callers. */
  allowSoftware?: boolean;
}

const cache = new Map<string, Promise<Device>>();

function env(name: string): string | undefined {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return p?.env?.[name];
}

function cacheKey(kind: string, options: GetDeviceOptions): string {
  const rest = Object.entries(options)
    .filter(([k, v]) => !['kind', 'cache', 'warn', 'allowSoftware'].includes(k) && v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : 1));
  return JSON.stringify([kind, rest]);
}

/**
 * Returns a device from the registered backends: the live default device for these options until it
 * is destroyed or lost, then one new default (concurrent calls share it).
 *
 * `kind: 'auto'` (the default) tries, in order: a hardware adapter of the highest-priority backend
 * (WebGPU when `@webattn/kernels-webgpu` is imported), other registered backends by priority, software
 * adapters (llvmpipe, SwiftShader) at their lower priority, then the CPU reference backend with a
 * one-line warning. `kind: 'cpu'` is the reference backend; any other name asks that backend only and
 * throws `DEVICE_UNAVAILABLE` (with its reason) when it cannot. `WEBATTN_DEVICE` sets the default kind.
 * `device.info.reason` says why the device was chosen. Throws `INVALID_ARGUMENT` for an unknown kind.
 *
 * @example
 * import '@webattn/kernels-webgpu'; // registers the WebGPU backend
 * const device = await getDevice(); console.log(device.info.adapter, device.info.reason);
 */
export function getDevice(options: GetDeviceOptions = {}): Promise<Device> {
  if (options === null || typeof options !== 'object') {
    return Promise.reject(new WebattnError('INVALID_ARGUMENT', `options: expected an object, got ${String(options)}`, { argument: 'options' }));
  }
  const fromEnv = options.kind === undefined ? env('WEBATTN_DEVICE') : undefined;
  const kind = options.kind ?? fromEnv ?? 'auto';
  const known = ['auto', ...listBackends()];
  if (typeof kind !== 'string' || !known.includes(kind)) {
    const hint = kind === 'webgpu' ? " (import '@webattn/kernels-webgpu' to register the WebGPU backend)" : '';
    return Promise.reject(
      new WebattnError(
        'INVALID_ARGUMENT',
        `${fromEnv !== undefined ? 'WEBATTN_DEVICE' : 'kind'}: expected one of ${known.map((k) => `'${k}'`).join(', ')}, got ${JSON.stringify(kind)}${hint}`,
        { argument: 'kind' },
      ),
    );
  }
  if (kind === 'cpu') return Promise.resolve(cpu());
  if (options.cache === false) return createDevice(kind, options);
  const key = cacheKey(kind, options);
  const hit = cache.get(key);
  if (hit) {
    return hit.then((d) => {
      if (!d.lost) return d;
      // the first caller to see the dead device replaces it; the others share the replacement
      if (cache.get(key) === hit) cache.delete(key);
      return getDevice(options);
    });
  }
  const p = createDevice(kind, options);
  cache.set(key, p);
  p.catch(() => {
    if (cache.get(key) === p) cache.delete(key);
  });
  return p;
}

async function tryFactory(f: BackendFactory, options: GetDeviceOptions, reasons: string[], label: string, explicit = false): Promise<Device | null> {
  try {
    const d = await f.create(options);
    if (d) return d;
    reasons.push(`${label}: unavailable`);
  } catch (e) {
    // a bad option is the caller's error, not an unavailable backend
    if (e instanceof WebattnError && e.code === 'INVALID_ARGUMENT') throw e;
    reasons.push(`${label}: ${String((e as Error)?.message ?? e).split('\n')[0]}`);
    if (explicit && e instanceof WebattnError) throw e;
  }
  return null;
}

async function createDevice(kind: string, options: GetDeviceOptions): Promise<Device> {
  const reasons: string[] = [];
  if (kind !== 'auto') {
    const f = getBackendFactory(kind)!;
    const d = await tryFactory(f, { ...options, kind }, reasons, kind, true);
    if (!d) throw new WebattnError('DEVICE_UNAVAILABLE', `no '${kind}' device could be created (${reasons.join('; ')})`);
    d.info.reason = `kind '${kind}' asked for${d.info.reason ? `: ${d.info.reason}` : ''}`;
    return d;
  }
  const tries: { f: BackendFactory; priority: number; allowSoftware: boolean }[] = [];
  for (const f of backendFactories()) {
    if (f.softwarePriority === undefined) tries.push({ f, priority: f.priority, allowSoftware: true });
    else tries.push({ f, priority: f.priority, allowSoftware: false }, { f, priority: f.softwarePriority, allowSoftware: true });
  }
  tries.sort((a, b) => b.priority - a.priority);
  for (const t of tries) {
    const label = t.f.softwarePriority === undefined ? t.f.name : `${t.f.name} (${t.allowSoftware ? 'software' : 'hardware'})`;
    const d = await tryFactory(t.f, { ...options, kind: t.f.name, allowSoftware: t.allowSoftware }, reasons, label);
    if (d) {
      const skipped = reasons.length ? ` after ${reasons.join('; ')}` : '';
      d.info.reason = `auto: ${label}${d.info.reason ? `, ${d.info.reason}` : ''}${skipped}`;
      return d;
    }
  }
  const why = reasons.length ? reasons.join('; ') : "no backend registered: import '@webattn/kernels-webgpu'";
  if (options.warn ?? true) console.warn(`[webattn] no accelerated device (${why}); using the CPU reference backend`);
  const c = cpu();
  c.info.reason = `auto: fallback (${why})`;
  return c;
}
