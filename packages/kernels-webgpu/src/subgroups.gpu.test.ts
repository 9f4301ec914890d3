import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { scaledDotProductAttention, sdpaKernel, WebGPUDevice } from './index.js';
import { expectClose, hasSwiftShader } from '../../../test-utils/index.js';

// SwiftShader (Debian's chromium ships it) has `subgroups`; llvmpipe through GL does not.
let sw: WebGPUDevice;
const cpu = T.cpu();
beforeAll(async () => {
  if (!hasSwiftShader()) return; // the device machine: no chromium, the suite below is skipped
  sw = (await T.getDevice({ kind: 'webgpu', webgpuBackend: 'swiftshader', cache: false })) as WebGPUDevice;
  sw.poisonAllocations = true;
});
afterAll(() => sw?.destroy());

describe.skipIf(!hasSwiftShader())('subgroup reductions and their fallback on SwiftShader', () => {
  it('the adapter offers subgroups: tier, features and capabilities say so', () => {
    expect(sw.info.adapter).toMatch(/swiftshader/i);
    expect(sw.hasFeature('subgroups')).toBe(true);
    expect(sw.info.tier).toBe('subgroups');
    expect(sw.info.features).toContain('subgroups');
    expect(sw.info.features).not.toContain('shader-f16');
    expect(sw.info.reason).toMatch(/software adapter via Dawn Vulkan SwiftShader/);
    const caps = sw.caps;
    expect(caps.subgroups).toBe(true);
    expect(caps.subgroupMinSize).toBeGreaterThanOrEqual(4);
    expect(caps.subgroupMaxSize).toBeGreaterThanOrEqual(caps.subgroupMinSize);
    expect(caps.subgroupMatrix).toEqual([]);
    // the adapter's own limits were requested (SwiftShader: 12 storage buffers, 256 invocations)
    expect(caps.maxStorageBuffersPerStage).toBe(12);
    expect(caps.maxInvocations).toBe(256);
    sw.subgroupsEnabled = false;
    expect(sw.caps.subgroups).toBe(false);
    sw.subgroupsEnabled = true;
  });

  for (const useSg of [true, false]) {
    it(`softmax, layerNorm, sums and cross-entropy match the CPU (${useSg ? 'subgroups' : 'workgroup-memory fallback'})`, async () => {
      sw.subgroupsEnabled = useSg;
      const run = async (d: T.Device) => {
        const x = T.randn([5, 131], { seed: 1, device: d, requiresGrad: true });
        const w = T.randn([131], { seed: 2, device: d, requiresGrad: true });
        const t = T.tensor([3, 0, 130, 7, -100], [5], { dtype: 'int32', device: d });
        const h = T.layerNorm(T.softmax(T.mul(x, 4)), [131], w, null);
        const loss = T.add(T.crossEntropy(h, t), T.sum(T.max(h, 1)));
        loss.backward();
        return [await loss.toArray(), await x.grad!.toArray(), await w.grad!.toArray(), await T.sum(x, 1).toArray()];
      };
      const [g, r] = [await run(sw), await run(cpu)];
      g.forEach((a, i) => expectClose(a, r[i]!, 5e-5, 5e-4, `output ${i}`));
    });
  }

  it('attention (flash and math) agrees with the CPU on SwiftShader', async () => {
    sw.subgroupsEnabled = true;
    const mk = (d: T.Device, seed: number, shape: number[]) => T.randn(shape, { seed, device: d });
    const want = await scaledDotProductAttention(mk(cpu, 1, [1, 2, 40, 32]), mk(cpu, 2, [1, 2, 50, 32]), mk(cpu, 3, [1, 2, 50, 16]), { isCausal: true }).toArray();
    for (const b of ['flash', 'math'] as const) {
      const got = await sdpaKernel([b], () =>
        scaledDotProductAttention(mk(sw, 1, [1, 2, 40, 32]), mk(sw, 2, [1, 2, 50, 32]), mk(sw, 3, [1, 2, 50, 16]), { isCausal: true }),
      ).toArray();
      expectClose(got, want, 3e-5, 3e-4, b);
    }
  });
});
