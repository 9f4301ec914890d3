/**
 * Shared by the live demos: the header, the WebGPU check (a clear notice when the browser has none),
 * recording the WGSL the page compiles, and the result contract the demo test reads:
 * `window.__webattnDemo = { status: 'ok' | 'error', adapter, maxAbsDiff }`.
 */
import { getDevice, tidyAsync, type Device } from '@webattn/core-tensor';
import '@webattn/kernels-webgpu';

export interface DemoResult {
  status: 'ok' | 'error';
  adapter: string | null;
  maxAbsDiff: number | null;
  message?: string;
}

declare global {
  interface Window {
    __webattnDemo?: DemoResult;
  }
}

/** WGSL of every shader module the page created, in order. */
export const shaderLog: string[] = [];

/** Records shader sources (to show the WGSL the flex compiler produced). */
function recordShaders(): void {
  const proto = (globalThis as { GPUDevice?: { prototype: GPUDevice } }).GPUDevice?.prototype;
  if (!proto || (proto as unknown as { __recorded?: boolean }).__recorded) return;
  const orig = proto.createShaderModule;
  proto.createShaderModule = function (this: GPUDevice, d: GPUShaderModuleDescriptor) {
    shaderLog.push(d.code);
    return orig.call(this, d);
  };
  (proto as unknown as { __recorded?: boolean }).__recorded = true;
}

export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

export function setStatus(kind: 'ok' | 'error' | 'info', html: string): void {
  const el = $('status');
  el.className = `status ${kind}`;
  el.innerHTML = html;
}

export const escapeHtml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The visitor's WebGPU device and the CPU reference, or null (with the notice shown and the result set) when there is no WebGPU. */
export async function devices(): Promise<{ gpu: Device; cpu: Device } | null> {
  if (!('gpu' in navigator) || !navigator.gpu) {
    setStatus('error', '<span class="nogpu">This browser has no WebGPU (<code>navigator.gpu</code> is undefined).</span> The demo needs it: use a recent Chrome or Edge, or enable WebGPU in Firefox/Safari, and open the page over https or 127.0.0.1.');
    finish({ status: 'error', adapter: null, maxAbsDiff: null, message: 'no navigator.gpu' });
    return null;
  }
  recordShaders();
  try {
    const gpu = await getDevice({ kind: 'webgpu', cache: false, warn: false });
    const cpu = await getDevice({ kind: 'cpu', warn: false });
    return { gpu, cpu };
  } catch (e) {
    setStatus('error', `<span class="nogpu">navigator.gpu is there but no WebGPU adapter could be had:</span> ${escapeHtml(String((e as Error).message ?? e))}`);
    finish({ status: 'error', adapter: null, maxAbsDiff: null, message: String(e) });
    return null;
  }
}

export function finish(r: DemoResult): void {
  window.__webattnDemo = r;
  document.documentElement.dataset.webattnDemoStatus = r.status;
}

export async function maxAbsDiff(a: { toArray(): Promise<ArrayLike<number>> }, b: { toArray(): Promise<ArrayLike<number>> }): Promise<number> {
  const [x, y] = await Promise.all([a.toArray(), b.toArray()]);
  if (x.length !== y.length) return Infinity;
  let m = 0;
  for (let i = 0; i < x.length; i++) {
    const d = Math.abs(Number(x[i]) - Number(y[i]));
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Median ms of `fn` after one warm-up, each run synced on the device. */
export async function timeMs(device: Device, fn: () => void, reps = 3): Promise<number> {
  fn();
  await device.sync();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    await device.sync();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)]!;
}

/** Median ms of an async `fn` (a model forward) after one warm-up, each run inside `tidyAsync` (its tensors freed) and synced on the device. */
export async function timeAsyncMs(device: Device, fn: () => Promise<void>, reps = 3): Promise<number> {
  await tidyAsync(fn);
  await device.sync();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await tidyAsync(fn);
    await device.sync();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)]!;
}
