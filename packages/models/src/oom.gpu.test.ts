import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { WebattnError } from '@webattn/core-tensor';
import type { WebGPUDevice } from '@webattn/kernels-webgpu';
import { ViTForImageClassification, eagerAttention, vitConfig } from '@webattn/models';
import { gpuDevice } from '../../../test-utils/index.js';
import { failNextAllocations } from '../../../test-utils/alloc-failure.js';

// The H100 failure of the published ViT/GPT-2 eager training step: the device ran out of memory
// (VK_ERROR_OUT_OF_DEVICE_MEMORY at CreateBuffer) and the step failed later with
// `KERNEL_FAILED binary_mul: [Invalid Buffer]`, then the next model failed too (the invalid buffer was pooled).
let device: WebGPUDevice;
beforeAll(async () => {
  device = await gpuDevice();
});
afterAll(() => device?.destroy());

const cfg = vitConfig({ image_size: 16, patch_size: 4, hidden_size: 16, num_attention_heads: 2, num_hidden_layers: 2, intermediate_size: 32, num_labels: 5 });

async function loss(dev: T.Device): Promise<number> {
  const model = new ViTForImageClassification(cfg, { attention: eagerAttention, device: dev, seed: 7 });
  const px = T.randn([3, 3, 16, 16], { seed: 11, device: dev });
  const labels = T.tensor([1, 4, 0], [3], { dtype: 'int32', device: dev });
  const out = await model.forward({ pixelValues: px, labels });
  return (await out.loss!.toArray())[0]!;
}

describe('ViT eager when an allocation fails mid-step', () => {
  it('raises OUT_OF_MEMORY (not KERNEL_FAILED Invalid Buffer), and the next step on the same device is right', async () => {
    const ref = await loss(T.cpu());
    for (const skip of [6, 25]) {
      // the forward allocates well over 25 buffers; the one after `skip` cannot be created
      const restore = failNextAllocations(device, 1, 'oom', skip);
      let caught: unknown = null;
      try {
        await T.tidyAsync(() => loss(device));
      } catch (e) {
        caught = e;
      } finally {
        restore();
      }
      expect(caught, `failing allocation ${skip + 1}`).toBeInstanceOf(WebattnError);
      expect((caught as WebattnError).code).toBe('OUT_OF_MEMORY');
      expect((caught as Error).message).toMatch(/out of device memory allocating \d+ bytes/);
      await device.sync().catch(() => undefined);
      // same shapes again (the pooled size classes of the failed step are reused): the CPU reference's loss
      for (let i = 0; i < 2; i++) expect(Math.abs((await T.tidyAsync(() => loss(device))) - ref)).toBeLessThan(1e-4 * Math.max(1, Math.abs(ref)));
    }
  });
});
