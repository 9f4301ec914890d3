/**
 * One table of op cases (odd shapes, never tile multiples) used by the CPU finite-difference test and
 * the GPU-vs-CPU test. Each case makes its inputs from seeds, so every device sees the same numbers.
 */
import * as T from '@webattn/core-tensor';
import type { Device, DType, Tensor } from '@webattn/core-tensor';

export interface OpCase {
  name: string;
  /** Float inputs (gradients are checked for these). */
  inputs: { shape: number[]; transform?: 'positive' | 'bounded'; constant?: boolean }[];
  /** Builds the output from the inputs. */
  fn: (x: Tensor[], device: Device) => Tensor;
}

/** Makes case inputs on `device` (seeded). */
export function makeInputs(c: OpCase, device: Device, dtype: DType, seedBase = 100): Tensor[] {
  return c.inputs.map((inp, i) => {
    let t = T.randn(inp.shape, { seed: seedBase + i * 7919, device, dtype });
    if (inp.transform === 'positive') t = T.add(T.abs(t), 0.5);
    if (inp.transform === 'bounded') t = T.mul(T.tanh(t), 2);
    return t.detach().requiresGrad_(true);
  });
}

const ints = (data: number[], shape: number[], device: Device) => T.tensor(data, shape, { dtype: 'int32', device });

export const OP_CASES: OpCase[] = [
  { name: 'add broadcast', inputs: [{ shape: [3, 1, 5] }, { shape: [4, 5] }], fn: ([a, b]) => T.add(a!, b!) },
  { name: 'sub scalar-broadcast', inputs: [{ shape: [7] }, { shape: [3, 1] }], fn: ([a, b]) => T.sub(a!, b!) },
  { name: 'mul', inputs: [{ shape: [2, 3, 5] }, { shape: [2, 1, 5] }], fn: ([a, b]) => T.mul(a!, b!) },
  { name: 'div', inputs: [{ shape: [5, 3] }, { shape: [3], transform: 'positive' }], fn: ([a, b]) => T.div(a!, b!) },
  { name: 'neg', inputs: [{ shape: [9] }], fn: ([a]) => T.neg(a!) },
  { name: 'exp', inputs: [{ shape: [3, 7] }], fn: ([a]) => T.exp(a!) },
  { name: 'log', inputs: [{ shape: [3, 7], transform: 'positive' }], fn: ([a]) => T.log(a!) },
  { name: 'tanh', inputs: [{ shape: [11] }], fn: ([a]) => T.tanh(a!) },
  { name: 'sqrt', inputs: [{ shape: [13], transform: 'positive' }], fn: ([a]) => T.sqrt(a!) },
  { name: 'pow 3', inputs: [{ shape: [2, 5] }], fn: ([a]) => T.pow(a!, 3) },
  { name: 'pow 2.5', inputs: [{ shape: [2, 5], transform: 'positive' }], fn: ([a]) => T.pow(a!, 2.5) },
  {
    name: 'where',
    inputs: [{ shape: [4, 5], constant: true }, { shape: [5] }, { shape: [4, 1] }],
    fn: ([c, a, b]) => T.where(T.gt(c!.detach(), 0), a!, b!),
  },
  { name: 'gelu exact', inputs: [{ shape: [3, 11] }], fn: ([a]) => T.gelu(T.mul(a!, 2)) },
  { name: 'gelu tanh', inputs: [{ shape: [3, 11] }], fn: ([a]) => T.gelu(T.mul(a!, 2), 'tanh') },
  { name: 'sum axis 1', inputs: [{ shape: [3, 5, 7] }], fn: ([a]) => T.sum(a!, 1) },
  { name: 'sum all', inputs: [{ shape: [3, 5, 7] }], fn: ([a]) => T.sum(a!) },
  { name: 'sum axes 0,2 keepdim', inputs: [{ shape: [3, 5, 7] }], fn: ([a]) => T.sum(a!, [0, 2], true) },
  { name: 'sum long row', inputs: [{ shape: [2, 77] }], fn: ([a]) => T.sum(a!, -1) },
  { name: 'mean axis 0', inputs: [{ shape: [6, 5] }], fn: ([a]) => T.mean(a!, 0) },
  { name: 'max axis 2', inputs: [{ shape: [3, 5, 7] }], fn: ([a]) => T.max(a!, 2) },
  { name: 'max long row', inputs: [{ shape: [3, 70] }], fn: ([a]) => T.max(a!, 1) },
  { name: 'min axis 0', inputs: [{ shape: [4, 3] }], fn: ([a]) => T.min(a!, 0) },
  { name: 'softmax last', inputs: [{ shape: [3, 5, 13] }], fn: ([a]) => T.softmax(T.mul(a!, 3)) },
  { name: 'softmax axis 1', inputs: [{ shape: [3, 5, 4] }], fn: ([a]) => T.softmax(a!, 1) },
  { name: 'logSoftmax', inputs: [{ shape: [4, 67] }], fn: ([a]) => T.logSoftmax(a!) },
  {
    name: 'layerNorm affine',
    inputs: [{ shape: [3, 4, 19] }, { shape: [19] }, { shape: [19] }],
    fn: ([x, w, b]) => T.layerNorm(x!, [19], w!, b!, 1e-5),
  },
  { name: 'layerNorm plain', inputs: [{ shape: [5, 71] }], fn: ([x]) => T.layerNorm(x!, [71]) },
  { name: 'matmul batched broadcast', inputs: [{ shape: [2, 3, 7, 5] }, { shape: [5, 9] }], fn: ([a, b]) => T.matmul(a!, b!) },
  {
    name: 'matmul transposed operands',
    inputs: [{ shape: [3, 17, 6] }, { shape: [3, 19, 6] }],
    fn: ([a, b]) => T.matmul(a!, b!.transpose(-1, -2)),
  },
  { name: 'matmul vector', inputs: [{ shape: [5] }, { shape: [3, 5, 2] }], fn: ([a, b]) => T.matmul(a!, b!) },
  {
    name: 'embedding',
    inputs: [{ shape: [11, 6] }],
    fn: ([w], d) => T.embedding(w!, ints([3, 0, 10, 3, 7, 1, 3, 9], [2, 4], d)),
  },
  {
    name: 'crossEntropy ignoreIndex',
    inputs: [{ shape: [7, 13] }],
    fn: ([l], d) => T.crossEntropy(l!, ints([0, 12, -100, 5, 5, -100, 3], [7], d)),
  },
  {
    name: 'crossEntropy sum 3-d',
    inputs: [{ shape: [2, 3, 5] }],
    fn: ([l], d) => T.crossEntropy(l!, ints([4, 0, 1, 2, 3, 4], [2, 3], d), { reduction: 'sum' }),
  },
  { name: 'transpose+contiguous', inputs: [{ shape: [3, 4, 5] }], fn: ([a]) => T.mul(a!.permute([2, 0, 1]).contiguous(), 1) },
  { name: 'slice step', inputs: [{ shape: [9, 4] }], fn: ([a]) => T.mul(a!.slice(0, 1, 8, 3), 2) },
  { name: 'expand', inputs: [{ shape: [3, 1] }], fn: ([a]) => T.mul(a!.expand([2, 3, 4]), 1) },
  { name: 'reshape view', inputs: [{ shape: [4, 6] }], fn: ([a]) => T.exp(a!.transpose(0, 1).reshape([3, 8])) },
  { name: 'maximum', inputs: [{ shape: [6] }, { shape: [2, 6] }], fn: ([a, b]) => T.maximum(a!, b!) },
  { name: 'sigmoid relu abs', inputs: [{ shape: [9] }], fn: ([a]) => T.add(T.sigmoid(a!), T.mul(T.relu(a!), T.abs(a!))) },
];

/**
 * Runs `c` forward and through autograd on `device` and on the CPU reference with the same seeded inputs and
 * asserts both agree (tolerances of float32 kernels); the output must live on `device`.
 */
export async function expectOpCaseMatchesReference(c: OpCase, device: Device): Promise<void> {
  const { expect } = await import('vitest');
  const { expectClose } = await import('./index.js');
  const results = [];
  for (const d of [device, T.cpu()]) {
    const inputs = makeInputs(c, d, 'float32');
    const out = c.fn(inputs, d);
    const w = T.randn(out.shape, { seed: 4242, device: d });
    T.sum(T.mul(out, w)).backward();
    results.push({
      out: await out.toArray(),
      grads: await Promise.all(inputs.map((x, i) => (c.inputs[i]!.constant ? null : x.grad!.toArray()))),
      device: out.device,
    });
  }
  const [g, r] = results as [(typeof results)[0], (typeof results)[0]];
  expect(g.device).toBe(device);
  expectClose(g.out, r.out, 2e-5, 2e-4, `${c.name} forward`);
  g.grads.forEach((gg, i) => {
    if (gg) expectClose(gg, r.grads[i]!, 5e-5, 5e-4, `${c.name} grad ${i}`);
  });
}
