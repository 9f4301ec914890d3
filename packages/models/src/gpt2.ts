/** GPT-2 with transformers' layout and parameter names, pluggable attention, padding-free batches and a KV cache. */
import * as T from '@webattn/core-tensor';
import { Rng, WebattnError, describe, type Device, type Tensor } from '@webattn/core-tensor';
import { causalMask, createBlockMask, documentMask, maskMod, type BlockMask } from '@webattn/flex';
import { sdpaAttention, type AttentionFn, type AttentionOptions } from './attention.js';
import { Conv1D, CrossEntropyLoss, Dropout, Embedding, LayerNorm, activation, checkActivation, checkIdRange, nextSeed } from './layers.js';
import { Module, initNormal, keepDeep } from './module.js';

/** GPT-2 configuration with transformers' `config.json` keys (`GPT2Config`). */
export interface GPT2Config {
  model_type: 'gpt2';
  vocab_size: number;
  n_positions: number;
  n_embd: number;
  n_layer: number;
  n_head: number;
  n_inner: number | null;
  activation_function: string;
  resid_pdrop: number;
  embd_pdrop: number;
  attn_pdrop: number;
  layer_norm_epsilon: number;
  initializer_range: number;
  scale_attn_weights: boolean;
  scale_attn_by_inverse_layer_idx: boolean;
  reorder_and_upcast_attn: boolean;
  tie_word_embeddings: boolean;
  use_cache: boolean;
  bos_token_id: number | null;
  eos_token_id: number | null;
  pad_token_id: number | null;
  add_cross_attention: boolean;
  [key: string]: unknown;
}

/** transformers' `GPT2Config` defaults (GPT-2 small). */
export const GPT2_DEFAULTS: Readonly<GPT2Config> = Object.freeze({
  model_type: 'gpt2',
  vocab_size: 50257,
  n_positions: 1024,
  n_embd: 768,
  n_layer: 12,
  n_head: 12,
  n_inner: null,
  activation_function: 'gelu_new',
  resid_pdrop: 0.1,
  embd_pdrop: 0.1,
  attn_pdrop: 0.1,
  layer_norm_epsilon: 1e-5,
  initializer_range: 0.02,
  scale_attn_weights: true,
  scale_attn_by_inverse_layer_idx: false,
  reorder_and_upcast_attn: false,
  tie_word_embeddings: true,
  use_cache: true,
  bos_token_id: 50256,
  eos_token_id: 50256,
  pad_token_id: null,
  add_cross_attention: false,
});

function intField(c: Record<string, unknown>, k: string, min = 1): void {
  const v = c[k];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new WebattnError('CONFIG_INVALID', `config.${k}: expected an integer ≥ ${min}, got ${describe(v)}`, { argument: `config.${k}` });
}
function probField(c: Record<string, unknown>, k: string): void {
  const v = c[k];
  if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw new WebattnError('CONFIG_INVALID', `config.${k}: expected a probability in [0, 1), got ${describe(v)}`, { argument: `config.${k}` });
}

/**
 * A full GPT-2 config: transformers' defaults (GPT-2 small) overridden by `partial`. Throws
 * `CONFIG_INVALID` naming the key for a bad value (e.g. `n_embd` not divisible by `n_head`).
 * @example const cfg = gpt2Config({ n_layer: 2, n_embd: 64, n_head: 4, vocab_size: 97 });
 */
export function gpt2Config(partial: Partial<GPT2Config> = {}): GPT2Config {
  const c = { ...GPT2_DEFAULTS, ...partial } as GPT2Config;
  for (const k of ['vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head']) intField(c, k);
  if (c.n_inner !== null) intField(c, 'n_inner');
  for (const k of ['resid_pdrop', 'embd_pdrop', 'attn_pdrop']) probField(c, k);
  if (c.n_embd % c.n_head !== 0) throw new WebattnError('CONFIG_INVALID', `config.n_head: n_embd ${c.n_embd} is not divisible by n_head ${c.n_head}`, { argument: 'config.n_head' });
  if (!(c.layer_norm_epsilon > 0)) throw new WebattnError('CONFIG_INVALID', `config.layer_norm_epsilon: expected a positive number, got ${describe(c.layer_norm_epsilon)}`, { argument: 'config.layer_norm_epsilon' });
  if (c.add_cross_attention) throw new WebattnError('MODEL_UNSUPPORTED', 'config.add_cross_attention: GPT-2 cross-attention is not implemented', { argument: 'config.add_cross_attention' });
  if (c.reorder_and_upcast_attn) throw new WebattnError('MODEL_UNSUPPORTED', 'config.reorder_and_upcast_attn: not implemented (scores are already computed in float32)', { argument: 'config.reorder_and_upcast_attn' });
  checkActivation(c.activation_function, 'config.activation_function');
  return c;
}

/** Options of the model constructors. */
export interface ModelOptions {
  /** Attention implementation (default {@link sdpaAttention}). */
  attention?: AttentionFn;
  /** Device of the parameters (default: the default device). */
  device?: Device;
  /** Seed of the random initialisation. */
  seed?: number;
}

/** Per-layer key/value cache: `[key, value]` each `[B, H, S, headDim]`. */
export type KVCache = [key: Tensor, value: Tensor][];

/** Everything a block needs for one forward (masks resolved once per model call). */
interface Ctx {
  attention: AttentionFn;
  base: Omit<AttentionOptions, 'scaling' | 'layerIdx' | 'dropout'>;
}

class GPT2Attention extends Module {
  readonly c_attn: Conv1D;
  readonly c_proj: Conv1D;
  readonly resid_dropout: Dropout;
  constructor(readonly config: GPT2Config, readonly layerIdx: number, init: { device?: Device; seed: number }) {
    super();
    const d = config.n_embd;
    const std = config.initializer_range;
    this.c_attn = this.registerModule('c_attn', new Conv1D(3 * d, d, { std, seed: init.seed + 1, ...(init.device ? { device: init.device } : {}) }));
    this.c_proj = this.registerModule('c_proj', new Conv1D(d, d, { std: std / Math.sqrt(2 * config.n_layer), seed: init.seed + 2, ...(init.device ? { device: init.device } : {}) }));
    this.resid_dropout = this.registerModule('resid_dropout', new Dropout(config.resid_pdrop, { seed: init.seed + 3 }));
  }
  forward(x: Tensor, ctx: Ctx, past: [Tensor, Tensor] | null): { out: Tensor; kv: [Tensor, Tensor] } {
    const [B, L, D] = x.shape as [number, number, number];
    const H = this.config.n_head;
    const hd = D / H;
    const qkv = this.c_attn.forward(x);
    const split = (i: number) => qkv.slice(2, i * D, (i + 1) * D).reshape([B, L, H, hd]).transpose(1, 2);
    const q = split(0);
    let k = split(1);
    let v = split(2);
    if (past) {
      k = T.cat([past[0], k], 2);
      v = T.cat([past[1], v], 2);
    }
    let scaling = this.config.scale_attn_weights ? 1 / Math.sqrt(hd) : 1;
    if (this.config.scale_attn_by_inverse_layer_idx) scaling /= this.layerIdx + 1;
    // strided views of the fused projection (no copies); attention functions read any strides
    const [o] = ctx.attention(this, q, k, v, {
      ...ctx.base,
      scaling,
      dropout: this.training ? this.config.attn_pdrop : 0,
      layerIdx: this.layerIdx,
    });
    const out = this.resid_dropout.forward(this.c_proj.forward(o.reshape([B, L, D])));
    return { out, kv: [k, v] };
  }
}

class GPT2MLP extends Module {
  readonly c_fc: Conv1D;
  readonly c_proj: Conv1D;
  readonly dropout: Dropout;
  constructor(readonly config: GPT2Config, init: { device?: Device; seed: number }) {
    super();
    const d = config.n_embd;
    const inner = config.n_inner ?? 4 * d;
    const std = config.initializer_range;
    const dev = init.device ? { device: init.device } : {};
    this.c_fc = this.registerModule('c_fc', new Conv1D(inner, d, { std, seed: init.seed + 4, ...dev }));
    this.c_proj = this.registerModule('c_proj', new Conv1D(d, inner, { std: std / Math.sqrt(2 * config.n_layer), seed: init.seed + 5, ...dev }));
    this.dropout = this.registerModule('dropout', new Dropout(config.resid_pdrop, { seed: init.seed + 6 }));
  }
  forward(x: Tensor): Tensor {
    return this.dropout.forward(this.c_proj.forward(activation(this.config.activation_function, this.c_fc.forward(x))));
  }
}

class GPT2Block extends Module {
  readonly ln_1: LayerNorm;
  readonly attn: GPT2Attention;
  readonly ln_2: LayerNorm;
  readonly mlp: GPT2MLP;
  constructor(config: GPT2Config, layerIdx: number, init: { device?: Device; seed: number }) {
    super();
    const ln = { eps: config.layer_norm_epsilon, ...(init.device ? { device: init.device } : {}) };
    this.ln_1 = this.registerModule('ln_1', new LayerNorm(config.n_embd, ln));
    this.attn = this.registerModule('attn', new GPT2Attention(config, layerIdx, init));
    this.ln_2 = this.registerModule('ln_2', new LayerNorm(config.n_embd, ln));
    this.mlp = this.registerModule('mlp', new GPT2MLP(config, init));
  }
  forward(x: Tensor, ctx: Ctx, past: [Tensor, Tensor] | null): { out: Tensor; kv: [Tensor, Tensor] } {
    const a = this.attn.forward(this.ln_1.forward(x), ctx, past);
    const h = T.add(x, a.out);
    return { out: T.add(h, this.mlp.forward(this.ln_2.forward(h))), kv: a.kv };
  }
}

/** Inputs of {@link GPT2Model.forward} / {@link GPT2LMHeadModel.forward}. */
export interface GPT2Inputs {
  /** Int32 token ids `[B, L]`, each in `[0, vocab_size)`. */
  inputIds: Tensor;
  /** `[B, Lpast + L]` padding mask (1/true = real token; int32, bool or float). */
  attentionMask?: Tensor | null;
  /**
   * Int32 `[B, L]` positions in `[0, n_positions)`. Without `attentionMask`, positions that restart at 0
   * inside a row mean packed sequences (padding-free): attention becomes block-diagonal for every attention function.
   */
  positionIds?: Tensor | null;
  /** Int32 `[B, L]` labels (−100 = ignore); the loss predicts token t+1 from position t (HF's shift). */
  labels?: Tensor | null;
  /** Key/value cache of earlier tokens (from a previous call with `useCache`). */
  pastKeyValues?: KVCache | null;
  /** Return the updated cache. */
  useCache?: boolean;
}

/** Token-id tensors generate() built from sampled tokens (each in [0, vocab_size) by construction). */
const checkedIds = new WeakSet<Tensor>();

async function hostInts(t: Tensor, name: string, shape?: readonly number[]): Promise<Int32Array> {
  if (!(t instanceof T.Tensor)) throw new WebattnError('INVALID_ARGUMENT', `${name}: expected a Tensor, got ${describe(t)}`, { argument: name });
  if (shape && !T.shapesEqual(t.shape, shape)) throw new WebattnError('SHAPE_MISMATCH', `${name}: expected shape ${describe(shape)}, got ${describe(t.shape)}`, { argument: name });
  return Int32Array.from(await t.toArray(), (v) => Number(v));
}

/**
 * The GPT-2 transformer (HF `GPT2Model`): `wte`, `wpe`, `drop`, `h.{i}`, `ln_f`, parameter names as
 * transformers' (`h.0.attn.c_attn.weight`, Conv1D weights `[in, out]`). `forward` resolves masks once
 * (padding, packed sequences, block masks for flex) and calls the attention function of every layer.
 * Bad input throws coded errors naming the argument (`inputIds` rank/dtype/range, `positionIds` ≥ n_positions).
 * @example
 * const m = new GPT2Model(gpt2Config({ n_layer: 2 }), { attention: flashAttention });
 * const { lastHiddenState } = await m.forward({ inputIds });
 */
export class GPT2Model extends Module {
  readonly config: GPT2Config;
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly drop: Dropout;
  readonly h: GPT2Block[];
  readonly ln_f: LayerNorm;
  attention: AttentionFn;
  private maskCache = new Map<string, BlockMask>();
  constructor(config: Partial<GPT2Config> = {}, options: ModelOptions = {}) {
    super();
    this.config = gpt2Config(config);
    const c = this.config;
    this.attention = options.attention ?? sdpaAttention;
    const seed = options.seed ?? nextSeed();
    const dev = options.device ? { device: options.device } : {};
    this.wte = this.registerModule('wte', new Embedding(c.vocab_size, c.n_embd, { std: c.initializer_range, seed, ...dev }));
    this.wpe = this.registerModule('wpe', new Embedding(c.n_positions, c.n_embd, { std: c.initializer_range, seed: seed + 1, ...dev }));
    this.drop = this.registerModule('drop', new Dropout(c.embd_pdrop, { seed: seed + 2 }));
    const hList = this.registerModule('h', new Module());
    this.h = [];
    for (let i = 0; i < c.n_layer; i++) this.h.push(hList.registerModule(String(i), new GPT2Block(c, i, { seed: seed + 16 * (i + 1), ...dev })));
    this.ln_f = this.registerModule('ln_f', new LayerNorm(c.n_embd, { eps: c.layer_norm_epsilon, ...dev }));
  }

  /** Replaces the attention function of every layer. */
  setAttention(fn: AttentionFn): void {
    if (typeof fn !== 'function') throw new WebattnError('INVALID_ARGUMENT', `fn: expected an attention function, got ${describe(fn)}`, { argument: 'fn' });
    this.attention = fn;
  }

  private async blockMask(key: string, make: () => Promise<BlockMask>): Promise<BlockMask> {
    let bm = this.maskCache.get(key);
    if (!bm) {
      bm = await make();
      keepDeep(bm.tables(this.device)); // upload now and keep the cached device tables (held in a WeakMap)
      keepDeep(bm); // cached across calls: exempt from the caller's tidy() scope
      if (this.maskCache.size > 16) this.maskCache.clear();
      this.maskCache.set(key, bm);
    }
    return bm;
  }

  /** Hidden states `[B, L, n_embd]` after `ln_f`, and the cache when `useCache`. */
  async forward(inputs: GPT2Inputs): Promise<{ lastHiddenState: Tensor; pastKeyValues: KVCache | null }> {
    if (!inputs || typeof inputs !== 'object') throw new WebattnError('INVALID_ARGUMENT', `inputs: expected { inputIds, ... }, got ${describe(inputs)}`, { argument: 'inputs' });
    const c = this.config;
    const ids = inputs.inputIds;
    if (!(ids instanceof T.Tensor)) throw new WebattnError('INVALID_ARGUMENT', `inputIds: expected an int32 Tensor [B, L], got ${describe(ids)}`, { argument: 'inputIds' });
    if (ids.rank !== 2) throw new WebattnError('SHAPE_MISMATCH', `inputIds: expected a 2-D tensor [B, L], got shape ${describe(ids.shape)}`, { argument: 'inputIds' });
    if (ids.dtype !== 'int32') throw new WebattnError('DTYPE_UNSUPPORTED', `inputIds: expected int32 token ids, got ${ids.dtype}`, { argument: 'inputIds' });
    const [B, L] = ids.shape as [number, number];
    if (L === 0) throw new WebattnError('SHAPE_MISMATCH', 'inputIds: expected at least one token per row, got L = 0', { argument: 'inputIds' });
    const device = this.device;
    if (ids.device !== device) throw new WebattnError('DEVICE_MISMATCH', `inputIds: expected a tensor on the model's device (${device.info.adapter}), got one on ${ids.device.info.adapter}`, { argument: 'inputIds' });
    // ids that generate() made from tokens it sampled are in range: no readback (a sync) per decode step
    if (!checkedIds.has(ids)) checkIdRange(await hostInts(ids, 'inputIds'), c.vocab_size, 'inputIds', 'token ids');
    const past = inputs.pastKeyValues ?? null;
    if (past && past.length !== c.n_layer) throw new WebattnError('SHAPE_MISMATCH', `pastKeyValues: expected ${c.n_layer} layers, got ${past.length}`, { argument: 'pastKeyValues' });
    const P = past ? past[0]![0].shape[2]! : 0;
    const S = P + L;
    // positions
    let pos: Int32Array;
    let posT: Tensor;
    if (inputs.positionIds) {
      pos = await hostInts(inputs.positionIds, 'positionIds', [B, L]);
      if (inputs.positionIds.dtype !== 'int32') throw new WebattnError('DTYPE_UNSUPPORTED', `positionIds: expected int32, got ${inputs.positionIds.dtype}`, { argument: 'positionIds' });
      checkIdRange(pos, c.n_positions, 'positionIds', `positions (n_positions = ${c.n_positions})`);
      posT = inputs.positionIds.device === device ? inputs.positionIds : T.tensor(pos, [B, L], { dtype: 'int32', device });
    } else {
      if (S > c.n_positions) throw new WebattnError('INVALID_ARGUMENT', `inputIds: ${S} positions (cache ${P} + ${L} tokens) exceed n_positions = ${c.n_positions}`, { argument: 'inputIds' });
      pos = new Int32Array(B * L);
      for (let b = 0; b < B; b++) for (let i = 0; i < L; i++) pos[b * L + i] = P + i;
      posT = T.tensor(pos, [B, L], { dtype: 'int32', device });
    }
    // masks
    const base: Ctx['base'] = { isCausal: false, positionIds: posT };
    const fn = this.attention;
    if (inputs.attentionMask) {
      const m = inputs.attentionMask;
      const mv = await hostInts(m instanceof T.Tensor && T.isFloat(m.dtype) ? T.cast(m, 'int32') : m, 'attentionMask', [B, S]);
      const padded = mv.some((x) => x === 0);
      if (padded && fn.usesBlockMask) {
        // flex: the padding (and causality) as a block mask reading the key validity [B, S]
        const valid = T.tensor(Int32Array.from(mv, (x) => (x !== 0 ? 1 : 0)), [B, S], { dtype: 'int32', device });
        const mm = maskMod((b, h, qIdx, kvIdx, cp) => kvIdx <= qIdx + cp.past && cp.valid[b][kvIdx] > 0, { valid, past: P });
        base.blockMask = await createBlockMask(mm, B, 1, L, S, { device });
      } else if (padded) {
        const keyOk = T.tensor(Uint8Array.from(mv, (x) => (x !== 0 ? 1 : 0)), [B, 1, 1, S], { dtype: 'bool', device });
        base.attentionMask = L === 1 ? keyOk : T.logicalAnd(keyOk, causalDense(L, S, device));
      } else {
        base.isCausal = L > 1;
        if (fn.usesBlockMask && L > 1 && L === S) base.blockMask = await this.blockMask(`causal:${L}`, () => createBlockMask(causalMask, null, null, L, L, { device }));
        if (fn.usesBlockMask && L > 1 && L !== S) throw new WebattnError('INVALID_ARGUMENT', 'pastKeyValues: flex attention runs a cache only with one-token steps', { argument: 'pastKeyValues' });
      }
    } else {
      const cu = past ? null : packedOffsets(pos, B, L);
      if (cu) {
        base.cuSeqlens = T.tensor(cu, [cu.length], { dtype: 'int32', device: T.cpu() });
        base.maxSeqlen = Math.max(...Array.from(cu.subarray(1), (x, i) => x - cu[i]!));
        base.isCausal = true;
        if (fn.usesBlockMask) {
          const key = `doc:${Array.from(cu).join(',')}`;
          base.blockMask = await this.blockMask(key, () => createBlockMask(documentMask(cu, causalMask), 1, 1, B * L, B * L, { device }));
        }
      } else {
        base.isCausal = L > 1;
        if (fn.usesBlockMask && L > 1 && L === S) base.blockMask = await this.blockMask(`causal:${L}`, () => createBlockMask(causalMask, null, null, L, L, { device }));
        if (fn.usesBlockMask && L > 1 && L !== S) throw new WebattnError('INVALID_ARGUMENT', 'pastKeyValues: flex attention runs a cache only with one-token steps', { argument: 'pastKeyValues' });
      }
    }
    const ctx: Ctx = { attention: fn, base };
    let x = T.add(this.wte.forward(ids, 'inputIds'), this.wpe.forward(posT, 'positionIds'));
    x = this.drop.forward(x);
    const kv: KVCache = [];
    this.h.forEach((blk, i) => {
      const r = blk.forward(x, ctx, past ? past[i]! : null);
      x = r.out;
      if (inputs.useCache) kv.push(r.kv);
    });
    return { lastHiddenState: this.ln_f.forward(x), pastKeyValues: inputs.useCache ? kv : null };
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

function causalDense(L: number, S: number, device: Device): Tensor {
  const rows = T.arange(S - L, S, 1, { dtype: 'int32', device }).reshape([1, 1, L, 1]);
  const cols = T.arange(0, S, 1, { dtype: 'int32', device }).reshape([1, 1, 1, S]);
  return T.le(cols, rows);
}

/**
 * Offsets of packed sequences over the flattened `[B, L]` positions when some row restarts at 0
 * after its first token (a padding-free batch), else null.
 * @example packedOffsets(Int32Array.from([0, 1, 2, 0, 1]), 1, 5); // Int32Array [0, 3, 5]
 */
export function packedOffsets(pos: Int32Array, B: number, L: number): Int32Array | null {
  let packed = false;
  const cu: number[] = [0];
  for (let b = 0; b < B; b++) {
    for (let i = 1; i < L; i++) {
      if (pos[b * L + i] === 0) {
        packed = true;
        cu.push(b * L + i);
      }
    }
    cu.push((b + 1) * L);
  }
  return packed ? Int32Array.from(cu) : null;
}

/** Options of {@link GPT2LMHeadModel.generate}. */
export interface GenerateOptions {
  /** Tokens to add (default 20). */
  maxNewTokens?: number;
  /** Sampling temperature; 0 or absent = greedy. */
  temperature?: number;
  /** Keep only the k most likely tokens when sampling. */
  topK?: number;
  /** Nucleus sampling: keep the smallest set of tokens with probability ≥ topP. */
  topP?: number;
  /** Seed of the sampler. */
  seed?: number;
  /** Stop a row at this token (default `config.eos_token_id`; null = never). */
  eosTokenId?: number | null;
}

/**
 * GPT-2 with its language-model head (HF `GPT2LMHeadModel`): `transformer.*` and `lm_head.weight`,
 * tied to `transformer.wte.weight` when `tie_word_embeddings` (listed once; `lm_head.weight` is accepted
 * as an alias by `loadStateDict`). `forward` returns logits `[B, L, vocab]` and, with labels, the mean
 * cross-entropy of the shifted labels (ignore −100).
 * @example
 * const model = new GPT2LMHeadModel(gpt2Config({ n_layer: 2, vocab_size: 97 }), { attention: flexAttention });
 * const { logits, loss } = await model.forward({ inputIds, labels: inputIds });
 */
export class GPT2LMHeadModel extends Module {
  readonly config: GPT2Config;
  readonly transformer: GPT2Model;
  readonly lm_head: Module;
  constructor(config: Partial<GPT2Config> = {}, options: ModelOptions = {}) {
    super();
    this.transformer = this.registerModule('transformer', new GPT2Model(config, options));
    this.config = this.transformer.config;
    this.lm_head = this.registerModule('lm_head', new Module());
    if (this.config.tie_word_embeddings) {
      this.lm_head.registerParameter('weight', this.transformer.wte.param('weight'));
      this.tieAlias('lm_head.weight', 'transformer.wte.weight');
    } else {
      this.lm_head.registerParameter('weight', initNormal([this.config.vocab_size, this.config.n_embd], this.config.initializer_range, (options.seed ?? 7) + 99, options.device));
    }
  }

  /** The attention function in use. */
  get attention(): AttentionFn {
    return this.transformer.attention;
  }

  /** Replaces the attention function of every layer. */
  setAttention(fn: AttentionFn): void {
    this.transformer.setAttention(fn);
  }

  protected override onMoved(): void {
    if (this.config.tie_word_embeddings) this.lm_head.registerParameter('weight', this.transformer.wte.param('weight'));
  }

  /** Logits `[B, L, vocab]`, the loss when `labels` are given, and the cache when `useCache`. */
  async forward(inputs: GPT2Inputs): Promise<{ logits: Tensor; loss: Tensor | null; pastKeyValues: KVCache | null }> {
    // the labels are read back (to check their range) BEFORE the forward is recorded: a readback after it
    // would wait for the whole forward on the GPU before the loss and backward could be recorded
    const early = inputs?.labels instanceof T.Tensor && inputs.labels.dtype === 'int32' ? hostInts(inputs.labels, 'labels') : null;
    early?.catch(() => undefined); // its error (if any) is thrown where it is awaited
    const { lastHiddenState, pastKeyValues } = await this.transformer.forward(inputs);
    // one [B·L, D] @ [D, V] product (its weight gradient is then one GEMM, not B of them summed)
    const [Bh, Lh, Dh] = lastHiddenState.shape as [number, number, number];
    const logits = T.matmul(lastHiddenState.reshape([Bh * Lh, Dh]), this.lm_head.param('weight').transpose(0, 1)).reshape([Bh, Lh, this.config.vocab_size]);
    let loss: Tensor | null = null;
    if (inputs.labels) {
      const labels = inputs.labels;
      const [B, L] = inputs.inputIds.shape as [number, number];
      if (!(labels instanceof T.Tensor) || labels.dtype !== 'int32') throw new WebattnError('DTYPE_UNSUPPORTED', `labels: expected int32 labels, got ${labels instanceof T.Tensor ? labels.dtype : describe(labels)}`, { argument: 'labels' });
      if (!T.shapesEqual(labels.shape, [B, L])) throw new WebattnError('SHAPE_MISMATCH', `labels: expected shape [${B}, ${L}], got ${describe(labels.shape)}`, { argument: 'labels' });
      if (L < 2) throw new WebattnError('SHAPE_MISMATCH', 'labels: the shifted loss needs at least 2 tokens per row', { argument: 'labels' });
      const lv = await (early ?? hostInts(labels, 'labels'));
      for (let i = 0; i < lv.length; i++) {
        if (lv[i] !== -100 && !(lv[i]! >= 0 && lv[i]! < this.config.vocab_size)) throw new WebattnError('INVALID_ARGUMENT', `labels: expected values in [0, ${this.config.vocab_size}) or −100, got ${lv[i]} at flat index ${i}`, { argument: 'labels' });
      }
      const shifted = logits.slice(1, 0, L - 1);
      loss = new CrossEntropyLoss().forward(shifted, labels.slice(1, 1, L));
    }
    return { logits, loss, pastKeyValues };
  }

  /**
   * Autoregressive generation with a KV cache: one prefill, then one-token decode steps through the
   * same attention function. Greedy unless `temperature` > 0 (then top-k / top-p sampling, seeded).
   * Returns int32 `[B, L + generated]`; finished rows are padded with the eos id. Prompts must share a length.
   * Runs without recording autograd (`noGradAsync`, like transformers' `torch.no_grad` generate): do not run a
   * training step concurrently with it.
   * @example const out = await model.generate(prompt, { maxNewTokens: 16, temperature: 0.8, topK: 40, seed: 1 });
   */
  async generate(inputIds: Tensor, options: GenerateOptions = {}): Promise<Tensor> {
    const maxNew = options.maxNewTokens ?? 20;
    if (!Number.isInteger(maxNew) || maxNew < 0) throw new WebattnError('INVALID_ARGUMENT', `options.maxNewTokens: expected an integer ≥ 0, got ${describe(options.maxNewTokens)}`, { argument: 'options.maxNewTokens' });
    const temp = options.temperature ?? 0;
    if (typeof temp !== 'number' || !(temp >= 0)) throw new WebattnError('INVALID_ARGUMENT', `options.temperature: expected a number ≥ 0, got ${describe(options.temperature)}`, { argument: 'options.temperature' });
    const topK = options.topK ?? 0;
    if (!Number.isInteger(topK) || topK < 0) throw new WebattnError('INVALID_ARGUMENT', `options.topK: expected an integer ≥ 0, got ${describe(options.topK)}`, { argument: 'options.topK' });
    const topP = options.topP ?? 1;
    if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) throw new WebattnError('INVALID_ARGUMENT', `options.topP: expected a number in (0, 1], got ${describe(options.topP)}`, { argument: 'options.topP' });
    const eos = options.eosTokenId === undefined ? this.config.eos_token_id : options.eosTokenId;
    if (!(inputIds instanceof T.Tensor) || inputIds.rank !== 2) throw new WebattnError('SHAPE_MISMATCH', `inputIds: expected an int32 Tensor [B, L], got ${inputIds instanceof T.Tensor ? describe(inputIds.shape) : describe(inputIds)}`, { argument: 'inputIds' });
    const [B, L0] = inputIds.shape as [number, number];
    if (L0 + maxNew > this.config.n_positions) throw new WebattnError('INVALID_ARGUMENT', `options.maxNewTokens: prompt ${L0} + ${maxNew} new tokens exceed n_positions = ${this.config.n_positions}`, { argument: 'options.maxNewTokens' });
    const rng = new Rng(options.seed ?? 0x5eed);
    const V = this.config.vocab_size;
    const device = this.device;
    const rows: number[][] = [];
    const first = await hostInts(inputIds, 'inputIds');
    for (let b = 0; b < B; b++) rows.push(Array.from(first.subarray(b * L0, (b + 1) * L0)));
    const done = new Array<boolean>(B).fill(false);
    const wasTraining = this.training;
    this.eval();
    try {
      {
        let cache: KVCache | null = null;
        let step = inputIds;
        for (let t = 0; t < maxNew; t++) {
          // one step in its own memory scope: only the new cache survives it
          const prev: KVCache | null = cache;
          const r = await T.tidyAsync(async () => {
            // no tape (as transformers' generate under torch.no_grad): nothing saved for a backward
            const input: GPT2Inputs = { inputIds: step, pastKeyValues: prev, useCache: true };
            const o: { logits: Tensor; pastKeyValues: KVCache | null } = await T.noGradAsync(() => this.forward(input));
            const Lc = o.logits.shape[1]!;
            const lastRow = await o.logits.slice(1, Lc - 1, Lc).toArray();
            return { kv: o.pastKeyValues!.map(([k, v]) => [k.detach(), v.detach()] as [Tensor, Tensor]), lastRow };
          });
          if (prev) {
            for (const [k, v] of prev) {
              k.dispose();
              v.dispose();
            }
          }
          cache = r.kv;
          const last = r.lastRow;
          const next = new Int32Array(B);
          for (let b = 0; b < B; b++) {
            const tok = done[b] ? (eos ?? 0) : sample(last.subarray(b * V, (b + 1) * V), temp, topK, topP, rng);
            next[b] = tok;
            rows[b]!.push(tok);
            if (eos !== null && tok === eos) done[b] = true;
          }
          if (done.every(Boolean)) break;
          step = T.tensor(next, [B, 1], { dtype: 'int32', device });
          if (next.every((t) => t >= 0 && t < V)) checkedIds.add(step);
        }
      }
    } finally {
      this.train(wasTraining);
    }
    const n = Math.max(...rows.map((r) => r.length));
    const flat = new Int32Array(B * n);
    rows.forEach((r, b) => {
      flat.set(r, b * n);
      if (r.length < n) flat.fill(eos ?? 0, b * n + r.length, (b + 1) * n);
    });
    return T.tensor(flat, [B, n], { dtype: 'int32', device });
  }
}

function sample(logits: ArrayLike<number>, temp: number, topK: number, topP: number, rng: Rng): number {
  const V = logits.length;
  if (temp === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  let idx = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]!);
  if (topK > 0) idx = idx.slice(0, topK);
  const m = logits[idx[0]!]!;
  let p = idx.map((i) => Math.exp((logits[i]! - m) / temp));
  let z = p.reduce((a, b) => a + b, 0);
  p = p.map((x) => x / z);
  if (topP < 1) {
    let acc = 0;
    let keep = 0;
    while (keep < p.length && acc < topP) acc += p[keep++]!;
    idx = idx.slice(0, keep);
    p = p.slice(0, keep);
    z = p.reduce((a, b) => a + b, 0);
    p = p.map((x) => x / z);
  }
  let u = rng.next();
  for (let i = 0; i < p.length; i++) {
    u -= p[i]!;
    if (u <= 0) return idx[i]!;
  }
  return idx[idx.length - 1]!;
}
