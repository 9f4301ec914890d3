/** Layers with PyTorch / transformers semantics and parameter names. */
import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Device, type Tensor } from '@webattn/core-tensor';
import { Module, initFull, initNormal } from './module.js';

/** Options shared by layer constructors. */
export interface LayerInit {
  /** Device of the new parameters (default: the default device). */
  device?: Device;
  /** Seed of the random initialisation (default: a fixed per-process stream). */
  seed?: number;
  /** Standard deviation of normal weight init (default 0.02, transformers' `initializer_range`). */
  std?: number;
}

let seedCounter = 0x1234;
/** Next seed of the default initialisation stream. */
export function nextSeed(): number {
  seedCounter = (Math.imul(seedCounter, 1664525) + 1013904223) >>> 0;
  return seedCounter;
}

function posInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new WebattnError('INVALID_ARGUMENT', `${name}: expected a positive integer, got ${describe(v)}`, { argument: name });
  return v;
}

function assertFloatInput(x: unknown, name: string, lastDim?: number): asserts x is Tensor {
  if (!(x instanceof T.Tensor)) throw new WebattnError('INVALID_ARGUMENT', `${name}: expected a Tensor, got ${describe(x)}`, { argument: name });
  if (!T.isFloat(x.dtype)) throw new WebattnError('DTYPE_UNSUPPORTED', `${name}: expected a floating-point tensor, got ${x.dtype}`, { argument: name });
  if (lastDim !== undefined && x.shape[x.rank - 1] !== lastDim) {
    throw new WebattnError('SHAPE_MISMATCH', `${name}: expected a last dimension of ${lastDim}, got shape ${describe(x.shape)}`, { argument: name });
  }
}

/**
 * `x [..., in] @ w [in, out] (+ bias [out])` as ONE matrix product over the flattened rows `[N, in]`:
 * its backward then takes the weight gradient as one `[in, N] @ [N, out]` product instead of a batched
 * product per leading index followed by a reduction over them.
 */
function rowsLinear(x: Tensor, w: Tensor, bias: Tensor | null): Tensor {
  const k = x.shape[x.rank - 1]!;
  const x2 = x.rank === 2 ? x : x.reshape([-1, k]);
  const y2 = T.matmul(x2, w);
  const y = bias ? T.add(y2, bias) : y2;
  return x.rank === 2 ? y : y.reshape([...x.shape.slice(0, -1), w.shape[1]!]);
}

/**
 * `y = x Wᵀ + b` with `weight` `[out, in]` (PyTorch `nn.Linear`); x `[..., in]` → `[..., out]`.
 * @example const fc = new Linear(64, 128); const y = fc.forward(x);
 */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  private readonly hasBias: boolean;
  constructor(inFeatures: number, outFeatures: number, options: LayerInit & { bias?: boolean } = {}) {
    super();
    this.inFeatures = posInt(inFeatures, 'inFeatures');
    this.outFeatures = posInt(outFeatures, 'outFeatures');
    this.registerParameter('weight', initNormal([outFeatures, inFeatures], options.std ?? 0.02, options.seed ?? nextSeed(), options.device));
    this.hasBias = options.bias ?? true;
    if (this.hasBias) this.registerParameter('bias', initFull([outFeatures], 0, options.device));
  }
  /** x `[..., in]` → `[..., out]`; throws `SHAPE_MISMATCH` / `DTYPE_UNSUPPORTED` naming `x`. */
  forward(x: Tensor): Tensor {
    assertFloatInput(x, 'x', this.inFeatures);
    return rowsLinear(x, this.param('weight').transpose(0, 1), this.hasBias ? this.param('bias') : null);
  }
}

/**
 * GPT-2's `Conv1D`: `y = x W + b` with `weight` `[in, out]` (transposed from Linear), as in the HF checkpoints.
 * @example const c = new Conv1D(192, 64); // nf=192 outputs, nx=64 inputs, weight [64, 192]
 */
export class Conv1D extends Module {
  readonly nf: number;
  readonly nx: number;
  constructor(nf: number, nx: number, options: LayerInit = {}) {
    super();
    this.nf = posInt(nf, 'nf');
    this.nx = posInt(nx, 'nx');
    this.registerParameter('weight', initNormal([nx, nf], options.std ?? 0.02, options.seed ?? nextSeed(), options.device));
    this.registerParameter('bias', initFull([nf], 0, options.device));
  }
  /** x `[..., nx]` → `[..., nf]`. */
  forward(x: Tensor): Tensor {
    assertFloatInput(x, 'x', this.nx);
    return rowsLinear(x, this.param('weight'), this.param('bias'));
  }
}

/**
 * Lookup table `weight` `[num, dim]`; int32 ids of any shape → `[...ids.shape, dim]`. Ids outside
 * `[0, num)` throw `INVALID_ARGUMENT` naming `ids` (checked on the host when the ids live there).
 * @example const wte = new Embedding(50257, 768); const h = wte.forward(ids);
 */
export class Embedding extends Module {
  readonly numEmbeddings: number;
  readonly embeddingDim: number;
  constructor(numEmbeddings: number, embeddingDim: number, options: LayerInit = {}) {
    super();
    this.numEmbeddings = posInt(numEmbeddings, 'numEmbeddings');
    this.embeddingDim = posInt(embeddingDim, 'embeddingDim');
    this.registerParameter('weight', initNormal([numEmbeddings, embeddingDim], options.std ?? 0.02, options.seed ?? nextSeed(), options.device));
  }
  /** ids int32 → embeddings. */
  forward(ids: Tensor, argument = 'ids'): Tensor {
    if (!(ids instanceof T.Tensor)) throw new WebattnError('INVALID_ARGUMENT', `${argument}: expected an int32 Tensor, got ${describe(ids)}`, { argument });
    if (ids.dtype !== 'int32') throw new WebattnError('DTYPE_UNSUPPORTED', `${argument}: expected int32 ids, got ${ids.dtype}`, { argument });
    if (ids.device.backend === 'cpu') checkIdRange(T.readValues(ids), this.numEmbeddings, argument);
    return T.embedding(this.param('weight'), ids);
  }
}

/** Throws `INVALID_ARGUMENT` naming `argument` when a value falls outside `[0, n)`. */
export function checkIdRange(vals: ArrayLike<number>, n: number, argument: string, what = 'ids'): void {
  for (let i = 0; i < vals.length; i++) {
    const v = vals[i]!;
    if (!(v >= 0 && v < n)) throw new WebattnError('INVALID_ARGUMENT', `${argument}: ${what} must lie in [0, ${n}), got ${v} at flat index ${i}`, { argument });
  }
}

/**
 * Layer normalisation over the last dim, with `weight` and optional `bias` (PyTorch `nn.LayerNorm`,
 * `bias: false` like `nn.LayerNorm(bias=False)`).
 * @example const ln = new LayerNorm(768, { eps: 1e-5 }); const y = ln.forward(x);
 */
export class LayerNorm extends Module {
  readonly dim: number;
  readonly eps: number;
  readonly hasBias: boolean;
  constructor(dim: number, options: { eps?: number; bias?: boolean; device?: Device } = {}) {
    super();
    this.dim = posInt(dim, 'dim');
    this.eps = options.eps ?? 1e-5;
    if (!(this.eps > 0)) throw new WebattnError('INVALID_ARGUMENT', `options.eps: expected a positive number, got ${describe(options.eps)}`, { argument: 'options.eps' });
    this.hasBias = options.bias ?? true;
    this.registerParameter('weight', initFull([dim], 1, options.device));
    if (this.hasBias) this.registerParameter('bias', initFull([dim], 0, options.device));
  }
  /** x `[..., dim]` → same shape. */
  forward(x: Tensor): Tensor {
    assertFloatInput(x, 'x', this.dim);
    return T.layerNorm(x, [this.dim], this.param('weight'), this.hasBias ? this.param('bias') : null, this.eps);
  }
}

/**
 * Inverted dropout: in training, zeroes elements with probability `p` and scales the rest by
 * 1/(1−p); identity in eval mode or when p = 0. Masks come from a seeded stream (same seed → same masks).
 * @example const drop = new Dropout(0.1, { seed: 1 }); const y = drop.forward(x);
 */
export class Dropout extends Module {
  readonly p: number;
  private seed: number;
  constructor(p = 0.5, options: { seed?: number } = {}) {
    super();
    if (typeof p !== 'number' || !(p >= 0 && p < 1)) throw new WebattnError('INVALID_ARGUMENT', `p: expected a probability in [0, 1), got ${describe(p)}`, { argument: 'p' });
    this.p = p;
    this.seed = (options.seed ?? nextSeed()) >>> 0;
  }
  /** Applies the mask (training) or returns x unchanged. */
  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x;
    assertFloatInput(x, 'x');
    this.seed = (Math.imul(this.seed, 1664525) + 1013904223) >>> 0;
    const keep = T.cast(T.ge(T.rand(x.shape, { seed: this.seed, device: x.device, dtype: x.dtype === 'float64' ? 'float64' : 'float32' }), this.p), x.dtype);
    return T.mul(x, T.mul(keep, 1 / (1 - this.p)));
  }
}

/** The activations of transformers' `ACT2FN` that webattn implements. */
export type Activation = 'gelu' | 'gelu_new' | 'gelu_pytorch_tanh' | 'relu' | 'tanh';

/**
 * GELU: exact (`approximate: 'none'`, transformers' `gelu`) or the tanh form (`gelu_new`).
 * @example const act = new GELU('tanh');
 */
export class GELU extends Module {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') {
    super();
    if (approximate !== 'none' && approximate !== 'tanh') throw new WebattnError('INVALID_ARGUMENT', `approximate: expected 'none' or 'tanh', got ${describe(approximate)}`, { argument: 'approximate' });
  }
  forward(x: Tensor): Tensor {
    return T.gelu(x, this.approximate);
  }
}

const ACTIVATIONS = ['gelu', 'gelu_new', 'gelu_pytorch_tanh', 'gelu_fast', 'relu', 'tanh'];

/** Throws `CONFIG_INVALID` naming `argument` unless `name` is an activation webattn implements. */
export function checkActivation(name: unknown, argument: string): void {
  if (typeof name !== 'string' || !ACTIVATIONS.includes(name)) {
    throw new WebattnError('CONFIG_INVALID', `${argument}: expected one of ${ACTIVATIONS.join(', ')}, got ${describe(name)}`, { argument });
  }
}

/**
 * Applies a transformers activation by name (`INVALID_ARGUMENT` for an unknown name).
 * @example const y = activation('gelu_new', x);
 */
export function activation(name: string, x: Tensor, argument = 'activation_function'): Tensor {
  switch (name) {
    case 'gelu':
      return T.gelu(x, 'none');
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
    case 'gelu_fast':
      return T.gelu(x, 'tanh');
    case 'relu':
      return T.relu(x);
    case 'tanh':
      return T.tanh(x);
    default:
      throw new WebattnError('INVALID_ARGUMENT', `${argument}: expected one of gelu, gelu_new, gelu_pytorch_tanh, relu, tanh, got ${describe(name)}`, { argument });
  }
}

/**
 * Conv2d with kernel = stride = `patchSize` (ViT's patch projection), computed as unfold + matmul:
 * pixels `[B, C, H, W]` → `[B, (H/p)·(W/p), D]` in row-major patch order. `projection.weight`
 * `[D, C, p, p]` and `projection.bias` `[D]` as in HF checkpoints (under `projection`).
 * H or W not a multiple of p → `SHAPE_MISMATCH` naming `pixelValues`.
 * @example const pe = new PatchEmbedding(3, 768, 16); const tokens = pe.forward(pixels); // [B, 196, 768]
 */
export class PatchEmbedding extends Module {
  readonly projection: Module;
  constructor(readonly numChannels: number, readonly hiddenSize: number, readonly patchSize: number, options: LayerInit = {}) {
    super();
    posInt(numChannels, 'numChannels');
    posInt(hiddenSize, 'hiddenSize');
    posInt(patchSize, 'patchSize');
    this.projection = this.registerModule('projection', new Module());
    this.projection.registerParameter('weight', initNormal([hiddenSize, numChannels, patchSize, patchSize], options.std ?? 0.02, options.seed ?? nextSeed(), options.device));
    this.projection.registerParameter('bias', initFull([hiddenSize], 0, options.device));
  }
  /** pixels `[B, C, H, W]` → patch tokens `[B, N, D]`. */
  forward(pixelValues: Tensor): Tensor {
    const x = pixelValues;
    assertFloatInput(x, 'pixelValues');
    if (x.rank !== 4) throw new WebattnError('SHAPE_MISMATCH', `pixelValues: expected a 4-D tensor [B, C, H, W], got shape ${describe(x.shape)}`, { argument: 'pixelValues' });
    const [B, C, H, W] = x.shape as [number, number, number, number];
    const p = this.patchSize;
    if (C !== this.numChannels) throw new WebattnError('SHAPE_MISMATCH', `pixelValues: expected ${this.numChannels} channels, got ${C} (shape ${describe(x.shape)})`, { argument: 'pixelValues' });
    if (H % p !== 0 || W % p !== 0) throw new WebattnError('SHAPE_MISMATCH', `pixelValues: image size ${H}x${W} is not a multiple of the patch size ${p}`, { argument: 'pixelValues' });
    const gh = H / p;
    const gw = W / p;
    // unfold: [B, C, gh, p, gw, p] → [B, gh, gw, C, p, p] → [B, N, C·p·p]
    const cols = x.reshape([B, C, gh, p, gw, p]).permute([0, 2, 4, 1, 3, 5]).contiguous().reshape([B, gh * gw, C * p * p]);
    const w = this.projection.param('weight').reshape([this.hiddenSize, C * p * p]);
    return rowsLinear(cols, w.transpose(0, 1), this.projection.param('bias'));
  }
}

/**
 * Cross-entropy over the last dim of `logits` `[..., C]` against int32 `target` `[...]`; targets equal
 * to `ignoreIndex` (default −100) do not count; mean over counted targets (PyTorch `nn.CrossEntropyLoss`).
 * float16 logits give a float32 loss (computed in float32, as under `torch.autocast`).
 * @example const loss = new CrossEntropyLoss().forward(logits, labels);
 */
export class CrossEntropyLoss extends Module {
  readonly ignoreIndex: number;
  readonly reduction: 'mean' | 'sum' | 'none';
  constructor(options: { ignoreIndex?: number; reduction?: 'mean' | 'sum' | 'none' } = {}) {
    super();
    this.ignoreIndex = options.ignoreIndex ?? -100;
    if (!Number.isInteger(this.ignoreIndex)) throw new WebattnError('INVALID_ARGUMENT', `options.ignoreIndex: expected an integer, got ${describe(options.ignoreIndex)}`, { argument: 'options.ignoreIndex' });
    this.reduction = options.reduction ?? 'mean';
  }
  /** Loss (a scalar unless `reduction: 'none'`); labels outside `[0, C)` other than ignoreIndex throw on the CPU. */
  forward(logits: Tensor, target: Tensor): Tensor {
    assertFloatInput(logits, 'logits');
    if (!(target instanceof T.Tensor) || target.dtype !== 'int32') {
      throw new WebattnError('DTYPE_UNSUPPORTED', `target: expected int32 class indices, got ${target instanceof T.Tensor ? target.dtype : describe(target)}`, { argument: 'target' });
    }
    if (target.device.backend === 'cpu') {
      const c = logits.shape[logits.rank - 1]!;
      const vals = T.readValues(target);
      for (let i = 0; i < vals.length; i++) {
        const v = vals[i]!;
        if (v !== this.ignoreIndex && !(v >= 0 && v < c)) throw new WebattnError('INVALID_ARGUMENT', `target: class indices must lie in [0, ${c}) or equal ignoreIndex ${this.ignoreIndex}, got ${v} at flat index ${i}`, { argument: 'target' });
      }
    }
    // float16 logits: the loss runs in float32 (as torch.autocast does for cross_entropy), so the loss
    // and its gradient (scaled by a GradScaler) neither lose precision nor overflow
    const x = logits.dtype === 'float16' ? T.cast(logits, 'float32') : logits;
    return T.crossEntropy(x, target, { ignoreIndex: this.ignoreIndex, reduction: this.reduction });
  }
}
