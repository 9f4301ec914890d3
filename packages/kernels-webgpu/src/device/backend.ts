/**
 * The WebGPU backend factory: finds an adapter (Dawn from the `webgpu` package in Node, `navigator.gpu`
 * in browsers), requests every capability the adapter has, and registers itself with core-tensor's
 * `getDevice()` when this module is imported.
 */
/// <reference types="@webgpu/types" preserve="true" />
import { registerBackend, WebattnError, type BackendFactory, type Device, type GetDeviceOptions } from '@webattn/core-tensor';
import { WebGPUDevice } from './webgpu-device.js';

/** Dawn routes in Node: a real GPU through Vulkan, Mesa llvmpipe through EGL/OpenGL, Vulkan SwiftShader. */
export type WebGPURoute = 'vulkan' | 'opengl' | 'swiftshader';

declare module '@webattn/core-tensor' {
  interface GetDeviceOptions {
    /**
     * WebGPU in Node: which Dawn route to try (default: the `WEBATTN_WEBGPU_BACKEND` variable, else in
     * order `vulkan` (a real GPU), `opengl` (EGL surfaceless, Mesa llvmpipe), `swiftshader`).
     */
    webgpuBackend?: WebGPURoute;
    /**
     * WebGPU in Node on the hardware Vulkan route: pass Dawn's `allow_unsafe_apis` and
     * `vulkan_enable_f16_on_nvidia` toggles so the adapter exposes `shader-f16` on NVIDIA and
     * `chromium-experimental-subgroup-matrix` (default true; the `WEBATTN_DAWN_UNSAFE=0` variable or
     * `false` here turns them off).
     */
    dawnUnsafe?: boolean;
    /**
     * WebGPU: dispatches per eagerly submitted chunk while a loop records work (default: the
     * `WEBATTN_FLUSH_BATCH` variable, else 8; 0 = submit only at a flush). See `WebGPUDevice.flushBatch`.
     */
    flushBatch?: number;
  }
}

/** Features requested whenever the adapter has them. */
export const WANTED_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix'] as const;

const SOFTWARE = /llvmpipe|swiftshader|lavapipe|software|softpipe|warp|basic render/i;
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
const ROUTES: readonly WebGPURoute[] = ['vulkan', 'opengl', 'swiftshader'];
const UNSAFE_TOGGLES = 'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia';
/** Full-resolution GPU timestamps for `profile()` (Dawn rounds them to ~100 µs by default). */
const TIMESTAMP_TOGGLE = 'disable-dawn-features=timestamp_quantization';

function env(name: string): string | undefined {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return p?.env?.[name];
}

function setEnv(k: string, v: string): void {
  const p = (globalThis as { process?: { env: Record<string, string | undefined> } }).process;
  if (p && p.env[k] === undefined) p.env[k] = v;
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return !!p?.versions?.node;
}

/**
 * Dawn instances by creation options. Every instance ever created stays referenced: a collected
 * instance (even one that found no adapter) is torn down on the finalizer's schedule, which crashed or
 * deadlocked the process. Reusing one instance per route also keeps create/destroy cycles from growing
 * the process (each instance holds its driver state).
 */
const dawnInstances = new Map<string, GPU>();

async function loadDawn(options: string[]): Promise<GPU> {
  const key = options.join(' ');
  const hit = dawnInstances.get(key);
  if (hit) return hit;
  const name = 'webgpu';
  let mod: { create: (o: string[]) => GPU; globals: object };
  try {
    mod = (await import(/* @vite-ignore */ name)) as typeof mod;
  } catch (e) {
    throw new WebattnError(
      'DEVICE_UNAVAILABLE',
      "WebGPU in Node needs the 'webgpu' package (Dawn), an optional peer dependency of @webattn/kernels-webgpu: run `npm i webgpu`",
      { cause: e },
    );
  }
  for (const [k, v] of Object.entries(mod.globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  const gpu = mod.create(options);
  dawnInstances.set(key, gpu);
  return gpu;
}

/** Looks for the Vulkan loader on the usual Linux paths. */
async function hasVulkanLoader(): Promise<boolean> {
  const fs = await import(/* @vite-ignore */ 'node:fs');
  const dirs = ['/usr/lib/x86_64-linux-gnu', '/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib'];
  if (dirs.some((d) => fs.existsSync(`${d}/libvulkan.so.1`))) return true;
  // macOS and Windows have no libvulkan.so: let Dawn pick its native backend
  const p = (globalThis as { process?: { platform?: string } }).process;
  return p?.platform !== 'linux';
}

async function instanceFor(route: WebGPURoute | 'browser', options: GetDeviceOptions): Promise<{ gpu: GPU; adapterOptions: GPURequestAdapterOptions; reason: string }> {
  if (route === 'browser') {
    const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
    if (!nav?.gpu) throw new Error('navigator.gpu is missing (WebGPU not enabled in this browser)');
    return { gpu: nav.gpu, adapterOptions: { powerPreference: 'high-performance' }, reason: 'navigator.gpu' };
  }
  if (route === 'opengl') {
    setEnv('EGL_PLATFORM', 'surfaceless');
    return {
      gpu: await loadDawn(['backend=opengl']),
      adapterOptions: { featureLevel: 'compatibility' } as GPURequestAdapterOptions,
      reason: 'Dawn OpenGL through EGL surfaceless',
    };
  }
  if (route === 'swiftshader') {
    const fs = await import(/* @vite-ignore */ 'node:fs');
    if (!env('VK_ICD_FILENAMES')) {
      if (!fs.existsSync(SWIFTSHADER_ICD)) throw new Error(`${SWIFTSHADER_ICD} not found (install Debian's chromium)`);
      setEnv('VK_ICD_FILENAMES', SWIFTSHADER_ICD);
    }
    return { gpu: await loadDawn(['backend=vulkan']), adapterOptions: { powerPreference: 'high-performance' }, reason: 'Dawn Vulkan SwiftShader' };
  }
  if (!(await hasVulkanLoader())) throw new Error('libvulkan.so.1 not found');
  const unsafe = options.dawnUnsafe ?? env('WEBATTN_DAWN_UNSAFE') !== '0';
  const p = (globalThis as { process?: { platform?: string } }).process;
  const backend = p?.platform === 'linux' ? ['backend=vulkan'] : [];
  return {
    gpu: await loadDawn([...backend, ...(unsafe ? [UNSAFE_TOGGLES, TIMESTAMP_TOGGLE] : [])]),
    adapterOptions: { powerPreference: 'high-performance' },
    reason: `Dawn ${backend.length ? 'Vulkan' : 'native'}${unsafe ? ' with allow_unsafe_apis,vulkan_enable_f16_on_nvidia' : ''}`,
  };
}

async function tryRoute(route: WebGPURoute | 'browser', explicit: boolean, allowSoftware: boolean, options: GetDeviceOptions): Promise<WebGPUDevice> {
  const { gpu, adapterOptions, reason } = await instanceFor(route, options);
  const adapter = await gpu.requestAdapter(adapterOptions);
  if (!adapter) throw new Error('no adapter');
  const ai = adapter.info;
  const base = ai.description || `${ai.vendor} ${ai.architecture}`.trim() || 'unknown adapter';
  const description = ai.device && !base.includes(ai.device) ? `${base} (${ai.device})` : base;
  const software = SOFTWARE.test(`${description} ${ai.architecture} ${ai.vendor}`) || !!(adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter;
  if (software && !allowSoftware) throw new Error(`software adapter (${description})`);
  // The plain Vulkan route is for a real GPU; software Vulkan is the last route (unless asked for).
  if (route === 'vulkan' && software && !explicit) throw new Error(`only a software Vulkan adapter (${description})`);
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  const lim = adapter.limits as unknown as Record<string, number>;
  for (const k in lim) {
    const v = lim[k];
    if (typeof v === 'number') requiredLimits[k] = v;
  }
  const gpuDevice = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  return new WebGPUDevice(
    gpuDevice,
    {
      backend: 'webgpu',
      api: route === 'swiftshader' ? 'vulkan' : route,
      adapter: description,
      vendor: ai.vendor,
      architecture: ai.architecture,
      software,
      features: requiredFeatures as string[],
      reason: `${software ? 'software' : 'hardware'} adapter via ${reason}`,
    },
    { adapterInfo: ai, keepAlive: [gpu, adapter], ...(options.flushBatch !== undefined ? { flushBatch: options.flushBatch } : {}) },
  );
}

/**
 * Creates a WebGPU device, trying the Dawn routes in order in Node or `navigator.gpu` in a browser.
 * Throws (an Error whose message lists why each route failed) when none gives a device; throws
 * `INVALID_ARGUMENT` for a bad `webgpuBackend`.
 */
export async function createWebGPUDevice(options: GetDeviceOptions = {}): Promise<WebGPUDevice> {
  const fromEnv = options.webgpuBackend === undefined ? env('WEBATTN_WEBGPU_BACKEND') : undefined;
  const route = options.webgpuBackend ?? (fromEnv as WebGPURoute | undefined);
  if (route !== undefined && !ROUTES.includes(route)) {
    const arg = fromEnv !== undefined ? 'WEBATTN_WEBGPU_BACKEND' : 'webgpuBackend';
    throw new WebattnError('INVALID_ARGUMENT', `${arg}: expected 'vulkan', 'opengl' or 'swiftshader', got ${JSON.stringify(route)}`, { argument: arg });
  }
  if (options.dawnUnsafe !== undefined && typeof options.dawnUnsafe !== 'boolean') {
    throw new WebattnError('INVALID_ARGUMENT', `dawnUnsafe: expected a boolean, got ${JSON.stringify(options.dawnUnsafe)}`, { argument: 'dawnUnsafe' });
  }
  const allowSoftware = options.allowSoftware !== false;
  const routes: (WebGPURoute | 'browser')[] = !isNode() ? ['browser'] : route ? [route] : allowSoftware ? [...ROUTES] : ['vulkan', 'opengl'];
  const reasons: string[] = [];
  for (const r of routes) {
    try {
      return await tryRoute(r, !!route, allowSoftware, options);
    } catch (e) {
      if (e instanceof WebattnError && (e.code === 'INVALID_ARGUMENT' || e.code === 'DEVICE_UNAVAILABLE')) throw e;
      reasons.push(`${r}: ${String((e as Error)?.message ?? e).split('\n')[0]}`);
    }
  }
  throw new Error(reasons.join('; '));
}

/**
 * The WebGPU backend's factory as registered with core-tensor: priority 100 for hardware adapters,
 * 10 for software ones (llvmpipe, SwiftShader), so a faster CPU backend can rank between them.
 */
export const webgpuBackend: BackendFactory = {
  name: 'webgpu',
  priority: 100,
  softwarePriority: 10,
  create: (options: GetDeviceOptions): Promise<Device | null> => createWebGPUDevice(options),
};

registerBackend(webgpuBackend);
