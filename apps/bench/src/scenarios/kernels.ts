import * as T from '@webattn/core-tensor';
import { progress, timeIt, type BenchRow } from '../timing.js';

/** Matmul and softmax throughput at two sizes (small sizes on software adapters). */
export async function kernelsScenario(device: T.Device, quick: boolean): Promise<BenchRow[]> {
  const soft = device.info.software;
  const mm = quick ? [64, 128] : soft ? [128, 256, 512] : [1024, 2048, 4096];
  const sm: [number, number][] = quick ? [[64, 128], [256, 512]] : soft ? [[256, 512], [1024, 1024]] : [[4096, 1024], [16384, 4096]];
  const rows: BenchRow[] = [];
  const dtypes: T.DType[] = device.backend === 'webgpu' && (device as unknown as { hasFeature(f: string): boolean }).hasFeature('shader-f16') ? ['float32', 'float16'] : ['float32'];
  for (const dtype of dtypes) {
    for (const n of mm) {
      progress(`kernels: matmul ${n}x${n}x${n} ${dtype}`);
      const a = T.randn([n, n], { seed: 1, device, dtype });
      const b = T.randn([n, n], { seed: 2, device, dtype });
      const { ms, reps } = await timeIt(device, () => T.noGrad(() => T.matmul(a, b).dispose()));
      const flop = 2 * n * n * n;
      const tag = dtype === 'float16' ? 'f16' : 'f32';
      rows.push({ scenario: 'kernels', name: `matmul ${n}³ ${tag}`, ms, reps, gflops: flop / ms / 1e6, tflops: flop / ms / 1e9, gbps: (3 * n * n * (dtype === 'float16' ? 2 : 4)) / ms / 1e6 });
      a.dispose();
      b.dispose();
    }
  }
  for (const [r, c] of sm) {
    progress(`kernels: softmax ${r}x${c}`);
    const x = T.randn([r, c], { seed: 3, device });
    const { ms, reps } = await timeIt(device, () => T.noGrad(() => T.softmax(x).dispose()));
    rows.push({ scenario: 'kernels', name: `softmax ${r}×${c}`, ms, reps, gflops: (5 * r * c) / ms / 1e6, gbps: (2 * r * c * 4) / ms / 1e6 });
    x.dispose();
  }
  return rows;
}
