/**
 * TF.js WebGPU 4.22 as a peer, on the SAME GPUDevice webattn uses (one adapter, one run): TF.js's
 * `WebGPUBackend` accepts any device, so in Node it runs on Dawn through the `webgpu` package that
 * webattn already loaded (the `GPUBufferUsage`/`GPUMapMode` globals are installed by `getDevice`).
 * Attention is TF.js's unfused pattern — matMul(q, kᵀ)·scale → softmax → matMul(p, v) — which
 * materialises the Lq×Lkv score matrix; matmul is `tf.matMul`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import type { WebGPUDevice } from '@webattn/kernels-webgpu';

// TF.js registers its WebGPU kernels under the backend name 'webgpu'
const NAME = 'webgpu';
let boundTo: WebGPUDevice | null = null;

/** Makes TF.js run on `device`'s GPUDevice (registers the backend once per device). */
export async function tfjsOn(device: WebGPUDevice): Promise<typeof tf> {
  if (boundTo !== device) {
    if (tf.findBackend(NAME)) tf.removeBackend(NAME);
    const info = device.info as unknown as { vendor?: string; architecture?: string };
    tf.registerBackend(NAME, () => {
      // the backend's constructor checks `navigator.gpu`, absent in Node 20: present a placeholder
      // while it runs (it then only uses the device it is given)
      const g = globalThis as { navigator?: { gpu?: unknown } };
      const had = 'navigator' in g;
      const saved = g.navigator;
      if (!g.navigator?.gpu) Object.defineProperty(g, 'navigator', { value: { ...(saved ?? {}), gpu: {} }, configurable: true, writable: true });
      try {
        return new WebGPUBackend(device.gpu, { vendor: info.vendor ?? '', architecture: info.architecture ?? '' } as never);
      } finally {
        if (had) Object.defineProperty(g, 'navigator', { value: saved, configurable: true, writable: true });
        else delete g.navigator;
      }
    });
    boundTo = device;
  }
  await tf.setBackend(NAME);
  await tf.ready();
  return tf;
}

/** Waits until TF.js's queued GPU work is done (reads one element of `t`). */
export async function tfjsSync(t: tf.Tensor): Promise<void> {
  const one = tf.slice(t, Array(t.rank).fill(0), Array(t.rank).fill(1));
  await one.data();
  one.dispose();
}

/** Unfused scaled-dot-product attention of TF.js: `[B, H, L, E]` inputs, optional causal mask. */
export function tfjsAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, causal = false): tf.Tensor4D {
  return tf.tidy(() => {
    const E = q.shape[3];
    let s = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(E)) as tf.Tensor4D;
    if (causal) {
      const L = q.shape[2];
      const Lk = k.shape[2];
      const keep = tf.linalg.bandPart(tf.ones([L, Lk]), -1, 0);
      s = tf.add(s, tf.mul(tf.sub(1, keep), -1e30)) as tf.Tensor4D;
    }
    return tf.matMul(tf.softmax(s), v) as tf.Tensor4D;
  });
}

/** Random normal TF.js tensor (seeded) of a shape. */
export function tfjsRandn(shape: number[], seed: number): tf.Tensor {
  return tf.randomNormal(shape, 0, 1, 'float32', seed);
}
