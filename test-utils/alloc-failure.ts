/**
 * Makes a WebGPU device's next storage-buffer creations fail the way a real allocation failure does: WebGPU
 * returns an invalid buffer and reports the error only through an error scope (`out-of-memory` for
 * `'oom'`, as Dawn's VK_ERROR_OUT_OF_DEVICE_MEMORY on the H100; `validation` for `'limit'`). The invalid
 * buffer is a real one (created with an invalid usage, MAP_READ | STORAGE); for `'oom'` the scope verdict is
 * rewritten into the out-of-memory error Dawn raises. Returns a function that restores the device.
 */
import type { WebGPUDevice } from '@webattn/kernels-webgpu';

export function failNextAllocations(device: WebGPUDevice, count: number, kind: 'oom' | 'limit', skip = 0): () => void {
  const gpu = device.gpu as GPUDevice & Record<string, unknown>;
  const orig = { createBuffer: gpu.createBuffer, pushErrorScope: gpu.pushErrorScope, popErrorScope: gpu.popErrorScope };
  const create = orig.createBuffer.bind(gpu);
  const push = orig.pushErrorScope.bind(gpu);
  const pop = orig.popErrorScope.bind(gpu);
  const filters: GPUErrorFilter[] = [];
  // scopes (by depth) whose verdict this helper rewrites: 'oom' → the synthetic OOM error, 'swallow' → none
  const rewrite = new Map<number, 'oom' | 'swallow'>();
  let left = count;
  let toSkip = skip;
  gpu.pushErrorScope = (filter: GPUErrorFilter) => {
    filters.push(filter);
    push(filter);
  };
  gpu.popErrorScope = async () => {
    const depth = filters.length;
    filters.pop();
    const how = rewrite.get(depth);
    rewrite.delete(depth);
    const real = await pop();
    if (how === 'oom') return { message: 'vkAllocateMemory failed with VK_ERROR_OUT_OF_DEVICE_MEMORY (simulated by failNextAllocations)' } as GPUError;
    if (how === 'swallow') return null;
    return real;
  };
  gpu.createBuffer = (desc: GPUBufferDescriptor) => {
    if (left > 0 && desc.usage & GPUBufferUsage.STORAGE) {
      if (toSkip > 0) toSkip--;
      else {
        left--;
        if (kind === 'oom') {
          // the innermost out-of-memory and validation scopes (the ones around this creation) get the verdict
          let oom = false;
          let val = false;
          for (let d = filters.length; d >= 1 && !(oom && val); d--) {
            if (filters[d - 1] === 'out-of-memory' && !oom) {
              rewrite.set(d, 'oom');
              oom = true;
            } else if (filters[d - 1] === 'validation' && !val) {
              rewrite.set(d, 'swallow');
              val = true;
            }
          }
        }
        // an invalid usage (MAP_READ with STORAGE) gives a genuinely invalid buffer of the asked size
        return create({ ...desc, usage: desc.usage | GPUBufferUsage.MAP_READ });
      }
    }
    return create(desc);
  };
  return () => {
    Object.assign(gpu, orig);
  };
}
