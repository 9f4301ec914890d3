import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import {
  alibi,
  andMasks,
  causalMask,
  createBlockMask,
  createMask,
  dilatedSlidingWindow,
  documentMask,
  flexAttention,
  globalSlidingWindow,
  neighborhood2d,
  prefixLM,
  relativePositionBias,
  slidingWindow,
  softcap,
  type MaskMod,
  type ScoreMod,
} from './index.js';
import { expectClose, gpuDevice } from '../../../test-utils/index.js';
import { fixtureCases, toTensor } from '../../../test-utils/fixtures.js';

let gpu: T.WebGPUDevice;
const cpu = T.cpu();
beforeAll(async () => {
  gpu = await gpuDevice();
});
afterAll(() => gpu?.destroy());

interface Case {
  name: string;
  L: number;
  H: number;
  score?: (d: T.Device) => ScoreMod;
  mask?: MaskMod;
  bs?: number;
  tableGrad?: boolean;
}

async function run(c: Case, device: T.Device, dtype: T.DType) {
  const shape = [1, c.H, c.L, 16];
  const q = T.randn(shape, { seed: 1, device, dtype, requiresGrad: true });
  const k = T.randn(shape, { seed: 2, device, dtype, requiresGrad: true });
  const v = T.randn(shape, { seed: 3, device, dtype, requiresGrad: true });
  const g = T.randn(shape, { seed: 4, device, dtype });
  const blockMask = c.mask ? await createBlockMask(c.mask, null, null, c.L, c.L, { device, blockSize: c.bs ?? 64 }) : null;
  const sm = c.score?.(device) ?? null;
  const { output, lse } = flexAttention(q, k, v, { scoreMod: sm, blockMask, returnLse: true });
  output.backward(g);
  const table = c.tableGrad ? (sm!.captures.bias as T.Tensor) : null;
  return {
    out: await output.toArray(),
    lse: await lse.toArray(),
    dq: await q.grad!.toArray(),
    dk: await k.grad!.toArray(),
    dv: await v.grad!.toArray(),
    dtable: table ? await table.grad!.toArray() : null,
    classes: blockMask?.classes ?? null,
  };
}

const CASES: Case[] = [
  { name: 'softcap', L: 70, H: 2, score: () => softcap(5) },
  { name: 'alibi', L: 67, H: 4, score: () => alibi(4) },
  { name: 'causal (block-sparse)', L: 150, H: 1, mask: causalMask },
  { name: 'sliding window', L: 200, H: 1, mask: slidingWindow(40) },
  { name: 'prefix LM', L: 130, H: 2, mask: prefixLM(20) },
  { name: 'document + causal inside', L: 140, H: 1, mask: documentMask([0, 50, 51, 140], causalMask) },
  { name: 'neighborhood2d 12×12 r=2', L: 144, H: 1, mask: neighborhood2d(12, 12, 2) },
  { name: 'dilated sliding window', L: 100, H: 1, mask: dilatedSlidingWindow(10, 3) },
  { name: 'global + sliding window', L: 160, H: 1, mask: globalSlidingWindow(16, 3) },
  { name: 'and(causal, window) + alibi', L: 96, H: 2, mask: andMasks(causalMask, slidingWindow(30)), score: () => alibi(2) },
  {
    name: 'relative position bias (learnable table)',
    L: 33,
    H: 2,
    tableGrad: true,
    score: (d) => relativePositionBias(T.randn([2, 65], { seed: 9, device: d, requiresGrad: true })),
    mask: causalMask,
  },
];

describe('flexAttention on the GPU equals the CPU path running the same JS functions (forward and backward)', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const ref = await run(c, cpu, 'float64');
      const got = await run(c, gpu, 'float32');
      if (ref.classes) expect(Array.from(got.classes!)).toEqual(Array.from(ref.classes));
      expectClose(got.out, ref.out, 3e-5, 3e-4, 'out');
      expectClose(got.lse, ref.lse, 1e-4, 1e-5, 'lse');
      expectClose(got.dq, ref.dq, 1e-4, 1e-3, 'dq');
      expectClose(got.dk, ref.dk, 1e-4, 1e-3, 'dk');
      expectClose(got.dv, ref.dv, 1e-4, 1e-3, 'dv');
      if (ref.dtable) expectClose(got.dtable!, ref.dtable, 1e-4, 1e-3, 'd table');
    });
  }
});
