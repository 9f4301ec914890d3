import { cpu, Device, type DeviceInfo } from './device.js';
import { WebattnError } from './errors.js';
import { WebGPUDevice } from './webgpu-device.js';

/** Options of {@link getDevice}. */
export interface GetDeviceOptions {
  /** `webgpu`, `cpu`, or `auto` (default: the `WEBATTN_DEVICE` variable, else `auto` = WebGPU with CPU fallback). */
  kind?: 'webgpu' | 'cpu' | 'auto';
  /**
   * In Node: which Dawn route to try (default: the `WEBATTN_WEBGPU_BACKEND` variable, else all in order
   * `vulkan` (a real GPU), `opengl` (EGL surfaceless, Mesa llvmpipe), `swiftshader` (Vulkan SwiftShader)).
   */
  webgpuBackend?: 'vulkan' | 'opengl' | 'swiftshader';
  /** Reuse the cached device (default true). A lost or destroyed device is never reused. */
  cache?: boolean;
  /** Print the one-line warning when falling back to the CPU (default true). */
  warn?: boolean;
}

type Route = 'vulkan' | 'opengl' | 'swiftshader' | 'browser';
const SOFTWARE = /llvmpipe|swiftshader|lavapipe|software|softpipe|warp|basic render/i;
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

let cached: Promise<Device> | null = null;
let cachedKey = '';

function env(name: string): string | undefined {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return p?.env?.[name];
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return !!p?.versions?.node;
}

/**
 * Returns a device: WebGPU when one can be had, else the CPU reference backend with a one-line warning.
 *
 * In Node the `webgpu` package (Dawn) is tried in order: Vulkan on a real GPU; OpenGL through EGL with
 * `EGL_PLATFORM=surfaceless` (Mesa llvmpipe); Vulkan SwiftShader (Debian's chromium ships its ICD).
 * `WEBATTN_DEVICE=cpu|webgpu` and `WEBATTN_WEBGPU_BACKEND=vulkan|opengl|swiftshader` override. In a
 * browser `navigator.gpu` is used. Throws `DEVICE_UNAVAILABLE` when `kind: 'webgpu'` cannot be met.
 *
 * @example
 * const device = await getDevice();
 * console.log(device.info.adapter); // ... compute ...; device.destroy();
 */
export function getDevice(options: GetDeviceOptions = {}): Promise<Device> {
  const kind = options.kind ?? (env('WEBATTN_DEVICE') as GetDeviceOptions['kind']) ?? 'auto';
  if (!['webgpu', 'cpu', 'auto'].includes(kind)) {
    return Promise.reject(
      new WebattnError('INVALID_ARGUMENT', `kind (or WEBATTN_DEVICE): expected 'webgpu', 'cpu' or 'auto', got ${JSON.stringify(kind)}`, {
        argument: 'kind',
      }),
    );
  }
  if (kind === 'cpu') return Promise.resolve(cpu());
  const backend = options.webgpuBackend ?? (env('WEBATTN_WEBGPU_BACKEND') as GetDeviceOptions['webgpuBackend']);
  const key = `${kind}:${backend ?? ''}`;
  if (options.cache !== false && cached && cachedKey === key) {
    const c = cached;
    return c.then((d) => (d.lost ? getDevice({ ...options, cache: false }) : d));
  }
  const p = createDevice(kind, backend, options.warn ?? true);
  if (options.cache !== false) {
    cached = p;
    cachedKey = key;
    p.catch(() => {
      if (cached === p) cached = null;
    });
  }
  return p;
}

async function createDevice(kind: 'webgpu' | 'auto', backend: GetDeviceOptions['webgpuBackend'], warn: boolean): Promise<Device> {
  const reasons: string[] = [];
  const routes: Route[] = isNode() ? (backend ? [backend] : ['vulkan', 'opengl', 'swiftshader']) : ['browser'];
  if (backend && !['vulkan', 'opengl', 'swiftshader'].includes(backend)) {
    throw new WebattnError(
      'INVALID_ARGUMENT',
      `webgpuBackend (or WEBATTN_WEBGPU_BACKEND): expected 'vulkan', 'opengl' or 'swiftshader', got ${JSON.stringify(backend)}`,
      { argument: 'webgpuBackend' },
    );
  }
  for (const route of routes) {
    try {
      const dev = await tryRoute(route, !!backend);
      if (dev) return dev;
      reasons.push(`${route}: no adapter`);
    } catch (e) {
      reasons.push(`${route}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  if (kind === 'webgpu') {
    throw new WebattnError('DEVICE_UNAVAILABLE', `no WebGPU adapter could be created (${reasons.join('; ')})`);
  }
  if (warn) console.warn(`[webattn] no WebGPU adapter (${reasons.join('; ')}); using the CPU reference backend`);
  return cpu();
}

/**
 * Every Dawn instance ever created stays referenced: a collected instance (even one that found no
 * adapter) is torn down on the finalizer's schedule, which crashed or deadlocked the process.
 */
const dawnInstances: GPU[] = [];

async function loadDawn(options: string[]): Promise<GPU> {
  const name = 'webgpu';
  const mod = (await import(/* @vite-ignore */ name)) as { create: (o: string[]) => GPU; globals: object };
  for (const [k, v] of Object.entries(mod.globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  const gpu = mod.create(options);
  dawnInstances.push(gpu);
  return gpu;
}

async function tryRoute(route: Route, explicit: boolean): Promise<WebGPUDevice | null> {
  let gpu: GPU;
  let adapterOptions: GPURequestAdapterOptions = { powerPreference: 'high-performance' };
  const setEnv = (k: string, v: string) => {
    const p = (globalThis as { process?: { env: Record<string, string | undefined> } }).process;
    if (p && p.env[k] === undefined) p.env[k] = v;
  };
  if (route === 'browser') {
    const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
    if (!nav?.gpu) throw new Error('navigator.gpu is missing (WebGPU not enabled in this browser)');
    gpu = nav.gpu;
  } else if (route === 'opengl') {
    setEnv('EGL_PLATFORM', 'surfaceless');
    gpu = await loadDawn(['backend=opengl']);
    adapterOptions = { featureLevel: 'compatibility' } as GPURequestAdapterOptions;
  } else if (route === 'swiftshader') {
    const fs = await import(/* @vite-ignore */ 'node:fs');
    if (!env('VK_ICD_FILENAMES')) {
      if (!fs.existsSync(SWIFTSHADER_ICD)) throw new Error(`${SWIFTSHADER_ICD} not found (install Debian's chromium)`);
      setEnv('VK_ICD_FILENAMES', SWIFTSHADER_ICD);
    }
    gpu = await loadDawn(['backend=vulkan']);
  } else {
    const fs = await import(/* @vite-ignore */ 'node:fs');
    const dirs = ['/usr/lib/x86_64-linux-gnu', '/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib'];
    if (!dirs.some((d) => fs.existsSync(`${d}/libvulkan.so.1`))) throw new Error('libvulkan.so.1 not found');
    // On a real GPU Dawn hides shader-f16 on NVIDIA and the experimental subgroup-matrix feature unless
    // asked: WEBATTN_DAWN_UNSAFE=0 turns these toggles off.
    const toggles = env('WEBATTN_DAWN_UNSAFE') === '0' ? [] : ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'];
    gpu = await loadDawn(['backend=vulkan', ...toggles]);
  }
  const adapter = await gpu.requestAdapter(adapterOptions);
  if (!adapter) return null;
  const ai = adapter.info;
  const base = ai.description || `${ai.vendor} ${ai.architecture}`.trim() || 'unknown adapter';
  const description = ai.device && !base.includes(ai.device) ? `${base} (${ai.device})` : base;
  const software = SOFTWARE.test(`${description} ${ai.architecture} ${ai.vendor}`);
  // The plain Vulkan route is for a real GPU; software Vulkan is the last route (unless asked for).
  if (route === 'vulkan' && software && !explicit) throw new Error(`only a software Vulkan adapter (${description})`);
  const wanted = ['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix'] as GPUFeatureName[];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const requiredLimits: Record<string, number> = {};
  const lim = adapter.limits as unknown as Record<string, number>;
  for (const k in lim) {
    const v = lim[k];
    if (typeof v === 'number') requiredLimits[k] = v;
  }
  const gpuDevice = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  const info: DeviceInfo = {
    backend: 'webgpu',
    api: route === 'swiftshader' ? 'vulkan' : route,
    adapter: description,
    vendor: ai.vendor,
    architecture: ai.architecture,
    software,
    features: requiredFeatures as string[],
  };
  return new WebGPUDevice(gpuDevice, info, undefined, [gpu, adapter]);
}
