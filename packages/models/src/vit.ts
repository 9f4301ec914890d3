/** ViT with transformers' layout and parameter names and pluggable attention (softcap, 2-D neighbourhood masks via flex). */
import * as T from '@webattn/core-tensor';
import { WebattnError, describe, type Device, type Tensor } from '@webattn/core-tensor';
import { createBlockMask, maskMod, softcap as softcapMod, type BlockMask, type ScoreMod, type ScoreModFn } from '@webattn/flex';
import { sdpaAttention, type AttentionFn } from './attention.js';
import type { ModelOptions } from './gpt2.js';
import { CrossEntropyLoss, Dropout, LayerNorm, Linear, PatchEmbedding, activation, checkActivation, nextSeed } from './layers.js';
import { Module, initNormal, keepDeep } from './module.js';

/** ViT configuration with transformers' `config.json` keys (`ViTConfig`). */
export interface ViTConfig {
  model_type: 'vit';
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  hidden_act: string;
  hidden_dropout_prob: number;
  attention_probs_dropout_prob: number;
  initializer_range: number;
  layer_norm_eps: number;
  image_size: number;
  patch_size: number;
  num_channels: number;
  qkv_bias: boolean;
  encoder_stride: number;
  pooler_output_size: number | null;
  pooler_act: string;
  num_labels: number;
  id2label: Record<string, string>;
  label2id: Record<string, number>;
  [key: string]: unknown;
}

/** transformers' `ViTConfig` defaults (ViT-Base/16 at 224 px), without the label maps. */
export const VIT_DEFAULTS: Readonly<Omit<ViTConfig, 'num_labels' | 'id2label' | 'label2id'>> = Object.freeze({
  model_type: 'vit',
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
  hidden_act: 'gelu',
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
  initializer_range: 0.02,
  layer_norm_eps: 1e-12,
  image_size: 224,
  patch_size: 16,
  num_channels: 3,
  qkv_bias: true,
  encoder_stride: 16,
  pooler_output_size: null,
  pooler_act: 'tanh',
});

/**
 * A full ViT config: transformers' defaults (ViT-Base/16, 224 px) overridden by `partial`.
 * `num_labels` follows `id2label` when only that is given. Throws `CONFIG_INVALID` naming the key.
 * @example const cfg = vitConfig({ image_size: 32, patch_size: 8, hidden_size: 64, num_attention_heads: 4 });
 */
export function vitConfig(partial: Partial<ViTConfig> = {}): ViTConfig {
  let numLabels = partial.num_labels ?? (partial.id2label ? Object.keys(partial.id2label).length : 2);
  const id2label = partial.id2label ?? Object.fromEntries(Array.from({ length: numLabels }, (_, i) => [String(i), `LABEL_${i}`]));
  numLabels = partial.num_labels ?? Object.keys(id2label).length;
  const c = {
    ...VIT_DEFAULTS,
    ...partial,
    num_labels: numLabels,
    id2label,
    label2id: partial.label2id ?? Object.fromEntries(Object.entries(id2label).map(([k, v]) => [v, Number(k)])),
  } as ViTConfig;
  for (const k of ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'image_size', 'patch_size', 'num_channels', 'num_labels']) {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new WebattnError('CONFIG_INVALID', `config.${k}: expected a positive integer, got ${describe(v)}`, { argument: `config.${k}` });
  }
  for (const k of ['hidden_dropout_prob', 'attention_probs_dropout_prob']) {
    const v = c[k];
    if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw new WebattnError('CONFIG_INVALID', `config.${k}: expected a probability in [0, 1), got ${describe(v)}`, { argument: `config.${k}` });
  }
  if (c.hidden_size % c.num_attention_heads !== 0) throw new WebattnError('CONFIG_INVALID', `config.num_attention_heads: hidden_size ${c.hidden_size} is not divisible by ${c.num_attention_heads} heads`, { argument: 'config.num_attention_heads' });
  if (c.image_size % c.patch_size !== 0) throw new WebattnError('CONFIG_INVALID', `config.patch_size: image_size ${c.image_size} is not a multiple of patch_size ${c.patch_size}`, { argument: 'config.patch_size' });
  checkActivation(c.hidden_act, 'config.hidden_act');
  return c;
}

/**
 * The published ViT experiment's shapes (224 px, 16 heads of 64 = hidden 1024, ViT-L/16 depth 24):
 * `patch16` gives L = 196 + 1 tokens, `patch4` the long-sequence variant with L = 3136 + 1.
 * @example const cfg = vitConfig({ ...VIT_PUBLISHED.patch4, num_hidden_layers: 2 });
 */
export const VIT_PUBLISHED: { patch16: Partial<ViTConfig>; patch4: Partial<ViTConfig> } = {
  patch16: { image_size: 224, patch_size: 16, hidden_size: 1024, num_attention_heads: 16, num_hidden_layers: 24, intermediate_size: 4096, num_labels: 1000 },
  patch4: { image_size: 224, patch_size: 4, hidden_size: 1024, num_attention_heads: 16, num_hidden_layers: 24, intermediate_size: 4096, num_labels: 1000 },
};

/** ViT options: the attention function and the published variants. */
export interface ViTOptions extends ModelOptions {
  /** Score modification handed to the attention function (flex only), e.g. `softcap(20)`. */
  scoreMod?: ScoreMod | ScoreModFn | null;
  /** Shorthand for `scoreMod: softcap(cap)`. */
  softcap?: number;
  /**
   * 2-D neighbourhood attention on the patch grid (radius 2 = the 5×5 window); the cls token sees and is seen
   * by all. Built as a block mask: needs an attention function with `usesBlockMask` (flexAttention).
   */
  neighborhoodRadius?: number;
  /** Block size of the neighbourhood block mask (a multiple of 64; default 128; smaller = sparser on small grids). */
  blockSize?: number;
  /** Add the pooler (`ViTModel` default true; the classifier uses none). */
  addPoolingLayer?: boolean;
}

class ViTSelfAttention extends Module {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  constructor(readonly config: ViTConfig, init: { device?: Device; seed: number }) {
    super();
    const d = config.hidden_size;
    const o = { std: config.initializer_range, bias: config.qkv_bias, ...(init.device ? { device: init.device } : {}) };
    this.query = this.registerModule('query', new Linear(d, d, { ...o, seed: init.seed + 1 }));
    this.key = this.registerModule('key', new Linear(d, d, { ...o, seed: init.seed + 2 }));
    this.value = this.registerModule('value', new Linear(d, d, { ...o, seed: init.seed + 3 }));
  }
}

class ViTLayer extends Module {
  readonly attention: Module;
  readonly selfAttn: ViTSelfAttention;
  readonly outDense: Linear;
  readonly intermediate: Linear;
  readonly output: Linear;
  readonly layernorm_before: LayerNorm;
  readonly layernorm_after: LayerNorm;
  readonly dropout: Dropout;
  readonly dropout2: Dropout;
  constructor(readonly config: ViTConfig, readonly layerIdx: number, init: { device?: Device; seed: number }) {
    super();
    const d = config.hidden_size;
    const dev = init.device ? { device: init.device } : {};
    const std = config.initializer_range;
    this.attention = this.registerModule('attention', new Module());
    this.selfAttn = this.attention.registerModule('attention', new ViTSelfAttention(config, init));
    const out = this.attention.registerModule('output', new Module());
    this.outDense = out.registerModule('dense', new Linear(d, d, { std, seed: init.seed + 4, ...dev }));
    this.intermediate = this.registerModule('intermediate', new Module()).registerModule('dense', new Linear(d, config.intermediate_size, { std, seed: init.seed + 5, ...dev }));
    this.output = this.registerModule('output', new Module()).registerModule('dense', new Linear(config.intermediate_size, d, { std, seed: init.seed + 6, ...dev }));
    this.layernorm_before = this.registerModule('layernorm_before', new LayerNorm(d, { eps: config.layer_norm_eps, ...dev }));
    this.layernorm_after = this.registerModule('layernorm_after', new LayerNorm(d, { eps: config.layer_norm_eps, ...dev }));
    this.dropout = this.registerModule('dropout', new Dropout(config.hidden_dropout_prob, { seed: init.seed + 7 }));
    this.dropout2 = this.registerModule('dropout2', new Dropout(config.hidden_dropout_prob, { seed: init.seed + 8 }));
  }
  forward(x: Tensor, attention: AttentionFn, scoreMod: ScoreMod | ScoreModFn | null, blockMask: BlockMask | null): Tensor {
    const [B, L, D] = x.shape as [number, number, number];
    const H = this.config.num_attention_heads;
    const hd = D / H;
    const h = this.layernorm_before.forward(x);
    const heads = (t: Tensor) => t.reshape([B, L, H, hd]).transpose(1, 2); // views; attention functions read any strides
    const [o] = attention(this.selfAttn, heads(this.selfAttn.query.forward(h)), heads(this.selfAttn.key.forward(h)), heads(this.selfAttn.value.forward(h)), {
      scaling: 1 / Math.sqrt(hd),
      dropout: this.training ? this.config.attention_probs_dropout_prob : 0,
      isCausal: false,
      blockMask,
      scoreMod,
      layerIdx: this.layerIdx,
    });
    const a = this.dropout.forward(this.outDense.forward(o.reshape([B, L, D])));
    const r = T.add(x, a);
    const m = this.dropout2.forward(this.output.forward(activation(this.config.hidden_act, this.intermediate.forward(this.layernorm_after.forward(r)), 'config.hidden_act')));
    return T.add(r, m);
  }
}

/**
 * The ViT encoder (HF `ViTModel`): `embeddings.{cls_token, position_embeddings, patch_embeddings.projection}`,
 * `encoder.layer.{i}.{attention.attention.{query,key,value}, attention.output.dense, intermediate.dense,
 * output.dense, layernorm_before, layernorm_after}`, `layernorm`, optional `pooler.dense`. Pre-LN encoder.
 * Pixel values `[B, C, H, W]` float → `lastHiddenState [B, 1 + N, hidden]`. A wrong rank/dtype/channel
 * count, an image size not a multiple of the patch, or one unlike `config.image_size` throw coded errors naming `pixelValues`.
 * @example
 * const vit = new ViTModel(vitConfig({ image_size: 32, patch_size: 8 }), { attention: flexAttention, softcap: 20 });
 * const { lastHiddenState } = await vit.forward({ pixelValues });
 */
export class ViTModel extends Module {
  readonly config: ViTConfig;
  readonly embeddings: Module;
  readonly patchEmbeddings: PatchEmbedding;
  readonly layers: ViTLayer[];
  readonly layernorm: LayerNorm;
  readonly pooler: Linear | null;
  attention: AttentionFn;
  scoreMod: ScoreMod | ScoreModFn | null;
  readonly neighborhoodRadius: number | null;
  private readonly blockSize: number;
  private maskCache = new Map<string, BlockMask>();
  private readonly embDropout: Dropout;
  constructor(config: Partial<ViTConfig> = {}, options: ViTOptions = {}) {
    super();
    this.config = vitConfig(config);
    const c = this.config;
    const seed = options.seed ?? nextSeed();
    const dev = options.device ? { device: options.device } : {};
    this.attention = options.attention ?? sdpaAttention;
    if (options.softcap !== undefined && !(typeof options.softcap === 'number' && options.softcap > 0)) throw new WebattnError('INVALID_ARGUMENT', `options.softcap: expected a positive number, got ${describe(options.softcap)}`, { argument: 'options.softcap' });
    this.scoreMod = options.scoreMod ?? (options.softcap ? softcapMod(options.softcap) : null);
    const r = options.neighborhoodRadius;
    if (r !== undefined && !(Number.isInteger(r) && r >= 0)) throw new WebattnError('INVALID_ARGUMENT', `options.neighborhoodRadius: expected an integer ≥ 0, got ${describe(r)}`, { argument: 'options.neighborhoodRadius' });
    this.neighborhoodRadius = r ?? null;
    this.blockSize = options.blockSize ?? 128;
    const D = c.hidden_size;
    const N = (c.image_size / c.patch_size) ** 2;
    this.embeddings = this.registerModule('embeddings', new Module());
    this.embeddings.registerParameter('cls_token', initNormal([1, 1, D], c.initializer_range, seed, options.device));
    this.embeddings.registerParameter('position_embeddings', initNormal([1, N + 1, D], c.initializer_range, seed + 1, options.device));
    this.patchEmbeddings = this.embeddings.registerModule('patch_embeddings', new PatchEmbedding(c.num_channels, D, c.patch_size, { std: c.initializer_range, seed: seed + 2, ...dev }));
    this.embDropout = new Dropout(c.hidden_dropout_prob, { seed: seed + 3 });
    const enc = this.registerModule('encoder', new Module()).registerModule('layer', new Module());
    this.layers = [];
    for (let i = 0; i < c.num_hidden_layers; i++) this.layers.push(enc.registerModule(String(i), new ViTLayer(c, i, { seed: seed + 16 * (i + 1), ...dev })));
    this.layernorm = this.registerModule('layernorm', new LayerNorm(D, { eps: c.layer_norm_eps, ...dev }));
    this.pooler = options.addPoolingLayer ?? true ? this.registerModule('pooler', new Module()).registerModule('dense', new Linear(D, c.pooler_output_size ?? D, { std: c.initializer_range, seed: seed + 4, ...dev })) : null;
  }

  /** Replaces the attention function of every layer. */
  setAttention(fn: AttentionFn): void {
    if (typeof fn !== 'function') throw new WebattnError('INVALID_ARGUMENT', `fn: expected an attention function, got ${describe(fn)}`, { argument: 'fn' });
    this.attention = fn;
  }

  /** The neighbourhood block mask over `1 + gh·gw` tokens (cls first), cached per device. */
  async neighborhoodMask(gh: number, gw: number, device: Device): Promise<BlockMask> {
    const r = this.neighborhoodRadius ?? 0;
    const key = `${gh}x${gw}:${r}:${this.blockSize}`;
    let bm = this.maskCache.get(key);
    if (!bm) {
      const L = 1 + gh * gw;
      const mm = maskMod(
        (b, h, qIdx, kvIdx, c) =>
          qIdx === 0 || kvIdx === 0 || (Math.abs(Math.floor((qIdx - 1) / c.cols) - Math.floor((kvIdx - 1) / c.cols)) <= c.radius && Math.abs(((qIdx - 1) % c.cols) - ((kvIdx - 1) % c.cols)) <= c.radius),
        { cols: gw, radius: r },
      );
      bm = await createBlockMask(mm, null, null, L, L, { device, blockSize: this.blockSize });
      keepDeep(bm.tables(device)); // upload now and keep the cached device tables (held in a WeakMap)
      keepDeep(bm); // cached across calls: exempt from the caller's tidy() scope
      this.maskCache.set(key, bm);
    }
    return bm;
  }

  /** `lastHiddenState` `[B, 1 + N, hidden]` (after the final LayerNorm) and `poolerOutput` `[B, hidden]` when pooling. */
  async forward(inputs: { pixelValues: Tensor }): Promise<{ lastHiddenState: Tensor; poolerOutput: Tensor | null }> {
    if (!inputs || typeof inputs !== 'object') throw new WebattnError('INVALID_ARGUMENT', `inputs: expected { pixelValues }, got ${describe(inputs)}`, { argument: 'inputs' });
    const px = inputs.pixelValues;
    const c = this.config;
    if (!(px instanceof T.Tensor)) throw new WebattnError('INVALID_ARGUMENT', `pixelValues: expected a float Tensor [B, C, H, W], got ${describe(px)}`, { argument: 'pixelValues' });
    if (px.rank !== 4) throw new WebattnError('SHAPE_MISMATCH', `pixelValues: expected a 4-D tensor [B, C, H, W], got shape ${describe(px.shape)}`, { argument: 'pixelValues' });
    if (!T.isFloat(px.dtype)) throw new WebattnError('DTYPE_UNSUPPORTED', `pixelValues: expected a floating-point tensor, got ${px.dtype}`, { argument: 'pixelValues' });
    const [B, , Hh, Ww] = px.shape as [number, number, number, number];
    const p = c.patch_size;
    if (Hh % p !== 0 || Ww % p !== 0) throw new WebattnError('SHAPE_MISMATCH', `pixelValues: image size ${Hh}x${Ww} is not a multiple of the patch size ${p}`, { argument: 'pixelValues' });
    if (Hh !== c.image_size || Ww !== c.image_size) throw new WebattnError('SHAPE_MISMATCH', `pixelValues: expected ${c.image_size}x${c.image_size} images (config.image_size), got ${Hh}x${Ww}`, { argument: 'pixelValues' });
    const device = this.device;
    if (px.device !== device) throw new WebattnError('DEVICE_MISMATCH', `pixelValues: expected a tensor on the model's device (${device.info.adapter}), got one on ${px.device.info.adapter}`, { argument: 'pixelValues' });
    const x0 = px.dtype === this.layernorm.param('weight').dtype ? px : T.cast(px, this.layernorm.param('weight').dtype);
    const patches = this.patchEmbeddings.forward(x0);
    const D = c.hidden_size;
    const cls = this.embeddings.param('cls_token').expand([B, 1, D]);
    let x = T.add(T.cat([cls, patches], 1), this.embeddings.param('position_embeddings'));
    x = this.embDropout.forward(x);
    let bm: BlockMask | null = null;
    if (this.neighborhoodRadius !== null) {
      if (!this.attention.usesBlockMask) throw new WebattnError('INVALID_ARGUMENT', 'options.neighborhoodRadius: the neighbourhood mask is a block mask: use flexAttention (an attention function with usesBlockMask)', { argument: 'options.neighborhoodRadius' });
      bm = await this.neighborhoodMask(Hh / p, Ww / p, device);
    }
    for (const layer of this.layers) x = layer.forward(x, this.attention, this.scoreMod, bm);
    const last = this.layernorm.forward(x);
    const poolerOutput = this.pooler ? activation(c.pooler_act, this.pooler.forward(last.slice(1, 0, 1).reshape([B, D])), 'config.pooler_act') : null;
    return { lastHiddenState: last, poolerOutput };
  }

  protected override onMoved(): void {
    for (const bm of this.maskCache.values()) bm.dispose();
    this.maskCache.clear();
  }

  protected override onDispose(): void {
    for (const bm of this.maskCache.values()) bm.dispose();
    this.maskCache.clear();
  }
}

/**
 * ViT with a linear classifier on the cls token (HF `ViTForImageClassification`): `vit.*` (no pooler)
 * and `classifier.{weight,bias}`. `forward({pixelValues, labels?})` → logits `[B, num_labels]` and the
 * cross-entropy loss for int32 labels `[B]`.
 * @example
 * const model = new ViTForImageClassification(vitConfig({ num_labels: 10 }), { attention: flexAttention, neighborhoodRadius: 2 });
 * const { logits, loss } = await model.forward({ pixelValues, labels });
 */
export class ViTForImageClassification extends Module {
  readonly config: ViTConfig;
  readonly vit: ViTModel;
  readonly classifier: Linear;
  constructor(config: Partial<ViTConfig> = {}, options: ViTOptions = {}) {
    super();
    this.vit = this.registerModule('vit', new ViTModel(config, { ...options, addPoolingLayer: false }));
    this.config = this.vit.config;
    const seed = (options.seed ?? 11) + 7;
    this.classifier = this.registerModule('classifier', new Linear(this.config.hidden_size, this.config.num_labels, { std: this.config.initializer_range, seed, ...(options.device ? { device: options.device } : {}) }));
  }

  /** The attention function in use. */
  get attention(): AttentionFn {
    return this.vit.attention;
  }

  /** Replaces the attention function of every layer. */
  setAttention(fn: AttentionFn): void {
    this.vit.setAttention(fn);
  }

  /** Logits `[B, num_labels]` and, with int32 `labels` `[B]` in `[0, num_labels)`, the mean cross-entropy. */
  async forward(inputs: { pixelValues: Tensor; labels?: Tensor | null }): Promise<{ logits: Tensor; loss: Tensor | null }> {
    // labels read back before the forward is recorded (after it, the readback would wait for the whole forward)
    const early = inputs?.labels instanceof T.Tensor && inputs.labels.dtype === 'int32' ? inputs.labels.toArray() : null;
    early?.catch(() => undefined); // its error (if any) is thrown where it is awaited
    const { lastHiddenState } = await this.vit.forward(inputs);
    const B = lastHiddenState.shape[0]!;
    const logits = this.classifier.forward(lastHiddenState.slice(1, 0, 1).reshape([B, this.config.hidden_size]));
    let loss: Tensor | null = null;
    if (inputs.labels) {
      const labels = inputs.labels;
      if (!(labels instanceof T.Tensor) || labels.dtype !== 'int32') throw new WebattnError('DTYPE_UNSUPPORTED', `labels: expected int32 class indices [B], got ${labels instanceof T.Tensor ? labels.dtype : describe(labels)}`, { argument: 'labels' });
      if (!T.shapesEqual(labels.shape, [B])) throw new WebattnError('SHAPE_MISMATCH', `labels: expected shape [${B}], got ${describe(labels.shape)}`, { argument: 'labels' });
      const lv = await (early ?? labels.toArray());
      for (let i = 0; i < lv.length; i++) {
        if (!(lv[i]! >= 0 && lv[i]! < this.config.num_labels)) throw new WebattnError('INVALID_ARGUMENT', `labels: expected class indices in [0, ${this.config.num_labels}), got ${lv[i]} at index ${i}`, { argument: 'labels' });
      }
      loss = new CrossEntropyLoss().forward(logits, labels);
    }
    return { logits, loss };
  }
}
