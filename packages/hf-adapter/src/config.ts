import { WebattnError } from '@webattn/core-tensor';
import { GPT2_DEFAULTS, VIT_DEFAULTS } from '@webattn/models';
import { isJsonObject, parseStrictJson, type JsonValue } from './strict-json.js';

/**
 * The model types webattn has classes for.
 * @example SUPPORTED_MODEL_TYPES.includes('gpt2'); // true
 */
export const SUPPORTED_MODEL_TYPES = ['gpt2', 'vit'] as const;
/** One of {@link SUPPORTED_MODEL_TYPES}. */
export type SupportedModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

/**
 * `architectures` entries webattn maps to a class, by model type.
 * @example SUPPORTED_ARCHITECTURES['ViTForImageClassification']; // 'vit'
 */
export const SUPPORTED_ARCHITECTURES: Readonly<Record<string, SupportedModelType>> = Object.freeze({
  GPT2LMHeadModel: 'gpt2',
  ViTForImageClassification: 'vit',
});

/**
 * A transformers config: the `config.json` keys (snake_case) with transformers' defaults filled in,
 * unknown keys kept. Aliases of `attribute_map` (e.g. `hidden_size` for GPT-2's `n_embd`) read and
 * write the canonical key and are not enumerable, so `JSON.stringify(config)` writes what
 * transformers writes. `_attn_implementation` / `attnImplementation` (not enumerable, not saved) say
 * which attention the model runs.
 */
export interface PretrainedConfig {
  model_type: string;
  architectures?: string[];
  [key: string]: unknown;
}

type Kind = 'posInt' | 'nonNegInt' | 'prob' | 'posFloat' | 'float' | 'bool' | 'string' | 'act' | 'intOrNull' | 'posIntOrNull' | 'stringOrNull' | 'any';

interface ModelSpec {
  defaults: Record<string, JsonValue>;
  /** transformers' `attribute_map`: alias → canonical key. */
  attributeMap: Record<string, string>;
  kinds: Record<string, Kind>;
}

const ACTIVATIONS = ['gelu', 'gelu_new', 'gelu_pytorch_tanh', 'relu', 'tanh', 'gelu_fast', 'quick_gelu', 'silu', 'swish'];

/** Keys of transformers' `PretrainedConfig` that every model has. */
const COMMON_DEFAULTS: Record<string, JsonValue> = {
  tie_word_embeddings: true,
  dtype: null,
  pad_token_id: null,
  bos_token_id: null,
  eos_token_id: null,
};
const COMMON_KINDS: Record<string, Kind> = {
  tie_word_embeddings: 'bool',
  output_hidden_states: 'bool',
  output_attentions: 'bool',
  return_dict: 'bool',
  is_encoder_decoder: 'bool',
  pad_token_id: 'intOrNull',
  bos_token_id: 'intOrNull',
  eos_token_id: 'any',
  dtype: 'stringOrNull',
};

const SPECS: Record<SupportedModelType, ModelSpec> = {
  gpt2: {
    // transformers GPT2Config.__init__ defaults: the models package's, plus the keys only the heads it lacks read
    defaults: {
      ...(GPT2_DEFAULTS as unknown as Record<string, JsonValue>),
      summary_type: 'cls_index',
      summary_use_proj: true,
      summary_activation: null,
      summary_proj_to_labels: true,
      summary_first_dropout: 0.1,
    },
    attributeMap: {
      hidden_size: 'n_embd',
      max_position_embeddings: 'n_positions',
      num_attention_heads: 'n_head',
      num_hidden_layers: 'n_layer',
    },
    kinds: {
      vocab_size: 'posInt',
      n_positions: 'posInt',
      n_embd: 'posInt',
      n_layer: 'nonNegInt',
      n_head: 'posInt',
      n_inner: 'posIntOrNull',
      activation_function: 'act',
      resid_pdrop: 'prob',
      embd_pdrop: 'prob',
      attn_pdrop: 'prob',
      layer_norm_epsilon: 'posFloat',
      initializer_range: 'float',
      scale_attn_weights: 'bool',
      use_cache: 'bool',
      scale_attn_by_inverse_layer_idx: 'bool',
      reorder_and_upcast_attn: 'bool',
      add_cross_attention: 'bool',
    },
  },
  vit: {
    // transformers ViTConfig.__init__ defaults (the models package's)
    defaults: { ...(VIT_DEFAULTS as unknown as Record<string, JsonValue>) },
    attributeMap: {},
    kinds: {
      hidden_size: 'posInt',
      num_hidden_layers: 'nonNegInt',
      num_attention_heads: 'posInt',
      intermediate_size: 'posInt',
      hidden_act: 'act',
      hidden_dropout_prob: 'prob',
      attention_probs_dropout_prob: 'prob',
      initializer_range: 'float',
      layer_norm_eps: 'posFloat',
      image_size: 'posInt',
      patch_size: 'posInt',
      num_channels: 'posInt',
      qkv_bias: 'bool',
      encoder_stride: 'posInt',
      pooler_output_size: 'posIntOrNull',
      pooler_act: 'act',
    },
  },
};

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `an array (${JSON.stringify(v).slice(0, 40)})`;
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

function bad(source: string, key: string, expected: string, got: unknown): WebattnError {
  return new WebattnError('CONFIG_INVALID', `${source}: "${key}": expected ${expected}, got ${show(got)}`, { argument: key });
}

function checkKind(source: string, key: string, kind: Kind, v: unknown): void {
  const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x);
  switch (kind) {
    case 'posInt':
      if (!isInt(v) || v < 1) throw bad(source, key, 'a positive integer', v);
      return;
    case 'nonNegInt':
      if (!isInt(v) || v < 0) throw bad(source, key, 'a non-negative integer', v);
      return;
    case 'posIntOrNull':
      if (v !== null && (!isInt(v) || v < 1)) throw bad(source, key, 'a positive integer or null', v);
      return;
    case 'intOrNull':
      if (v !== null && !isInt(v)) throw bad(source, key, 'an integer or null', v);
      return;
    case 'prob':
      if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw bad(source, key, 'a probability in [0, 1]', v);
      return;
    case 'posFloat':
      if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw bad(source, key, 'a positive finite number', v);
      return;
    case 'float':
      if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(source, key, 'a finite number', v);
      return;
    case 'bool':
      if (typeof v !== 'boolean') throw bad(source, key, 'true or false (a JSON boolean)', v);
      return;
    case 'string':
      if (typeof v !== 'string') throw bad(source, key, 'a string', v);
      return;
    case 'stringOrNull':
      if (v !== null && typeof v !== 'string') throw bad(source, key, 'a string or null', v);
      return;
    case 'act':
      if (typeof v !== 'string' || !ACTIVATIONS.includes(v)) throw bad(source, key, `one of ${ACTIVATIONS.join(', ')}`, v);
      return;
    case 'any':
      return;
  }
}

/**
 * The model type of a config object: `model_type`, else the first known `architectures` entry.
 * @throws WebattnError `MODEL_UNSUPPORTED` listing the supported types; `CONFIG_INVALID` for a
 * non-string `model_type` or malformed `architectures`.
 * @example detectModelType({ architectures: ['GPT2LMHeadModel'] }); // 'gpt2'
 */
export function detectModelType(raw: Record<string, unknown>, source = 'config.json'): SupportedModelType {
  const mt = raw['model_type'];
  const arch = raw['architectures'];
  if (arch !== undefined && arch !== null && (!Array.isArray(arch) || !arch.every((a) => typeof a === 'string'))) {
    throw bad(source, 'architectures', 'an array of class names', arch);
  }
  if (mt !== undefined && typeof mt !== 'string') throw bad(source, 'model_type', 'a string', mt);
  const supported = `supported model types: ${SUPPORTED_MODEL_TYPES.join(', ')} (architectures ${Object.keys(SUPPORTED_ARCHITECTURES).join(', ')})`;
  if (typeof mt === 'string') {
    if ((SUPPORTED_MODEL_TYPES as readonly string[]).includes(mt)) return mt as SupportedModelType;
    throw new WebattnError('MODEL_UNSUPPORTED', `${source}: "model_type": ${JSON.stringify(mt)} has no webattn class; ${supported}`, { argument: 'model_type' });
  }
  for (const a of (arch as string[] | undefined) ?? []) {
    const t = SUPPORTED_ARCHITECTURES[a];
    if (t) return t;
  }
  throw new WebattnError(
    'MODEL_UNSUPPORTED',
    `${source}: neither "model_type" nor "architectures" (${JSON.stringify(arch ?? null)}) names a webattn class; ${supported}`,
    { argument: 'model_type' },
  );
}

/** The attention implementation names of transformers' config (`_attn_implementation`) are kept here. */
const ATTN = Symbol('attnImplementation');

/**
 * Parses a `config.json` (its text, bytes or an already-parsed object) the way transformers'
 * `AutoConfig` does for the supported models: picks the model type (`model_type`, else
 * `architectures`), fills transformers' defaults (GPT2Config / ViTConfig and PretrainedConfig), maps
 * `attribute_map` aliases to their canonical key (`hidden_size` → `n_embd`, `num_attention_heads` →
 * `n_head`, `num_hidden_layers` → `n_layer`, `max_position_embeddings` → `n_positions` for GPT-2; the
 * alias stays readable and writable on the result), derives `num_labels` from `id2label`, keeps
 * unknown keys, and validates every known key's type and range.
 *
 * @throws WebattnError `CONFIG_INVALID` naming the key, what was expected and what came (malformed
 * JSON names the offset); `MODEL_UNSUPPORTED` listing the supported types.
 * @example
 * const config = parseConfig(await readFile('config.json', 'utf8'));
 * config.hidden_size === config.n_embd; // true for GPT-2
 */
export function parseConfig(input: string | Uint8Array | Record<string, unknown>, options: { source?: string } = {}): PretrainedConfig {
  const source = options.source ?? 'config.json';
  let raw: Record<string, unknown>;
  if (typeof input === 'string' || input instanceof Uint8Array) {
    let text: string;
    try {
      text = typeof input === 'string' ? input : new TextDecoder('utf-8', { fatal: true }).decode(input);
    } catch {
      throw new WebattnError('CONFIG_INVALID', `${source}: not valid UTF-8`, { argument: source });
    }
    const v = parseStrictJson(text, 'CONFIG_INVALID', source);
    if (!isJsonObject(v)) throw new WebattnError('CONFIG_INVALID', `${source}: expected a JSON object, got ${show(v)}`, { argument: source });
    raw = { ...v };
  } else if (isJsonObject(input)) {
    raw = { ...input };
  } else {
    throw new WebattnError('INVALID_ARGUMENT', `config: expected config.json text, bytes or an object, got ${show(input)}`, { argument: 'config' });
  }
  const modelType = detectModelType(raw, source);
  const spec = SPECS[modelType];
  // attribute_map: an alias given in the file sets the canonical key (and both given must agree)
  for (const [alias, canon] of Object.entries(spec.attributeMap)) {
    if (alias in raw) {
      if (canon in raw && raw[canon] !== raw[alias]) {
        throw new WebattnError('CONFIG_INVALID', `${source}: "${alias}" (${show(raw[alias])}) and its canonical key "${canon}" (${show(raw[canon])}) disagree`, { argument: alias });
      }
      raw[canon] = raw[alias];
      delete raw[alias];
    }
  }
  const cfg: Record<string, unknown> = { ...COMMON_DEFAULTS, ...spec.defaults, ...raw, model_type: modelType };
  if (raw['architectures'] === undefined) {
    cfg['architectures'] = [Object.keys(SUPPORTED_ARCHITECTURES).find((a) => SUPPORTED_ARCHITECTURES[a] === modelType)!];
  }
  // legacy name: transformers reads torch_dtype as dtype
  if ('torch_dtype' in cfg && cfg['dtype'] === null) {
    cfg['dtype'] = cfg['torch_dtype'];
    delete cfg['torch_dtype'];
  }
  for (const [k, kind] of Object.entries({ ...COMMON_KINDS, ...spec.kinds })) if (k in cfg) checkKind(source, k, kind, cfg[k]);
  // labels (classification heads): id2label ↔ num_labels as PretrainedConfig derives them
  if ('id2label' in cfg) {
    const m = cfg['id2label'];
    if (!isJsonObject(m) || !Object.entries(m).every(([k, v]) => /^\d+$/.test(k) && typeof v === 'string')) {
      throw bad(source, 'id2label', 'an object of "index" → label string', m);
    }
  }
  if ('num_labels' in cfg) {
    checkKind(source, 'num_labels', 'posInt', cfg['num_labels']);
    if (!('id2label' in cfg)) cfg['id2label'] = Object.fromEntries(Array.from({ length: cfg['num_labels'] as number }, (_, i) => [String(i), `LABEL_${i}`]));
    else if (Object.keys(cfg['id2label'] as object).length !== cfg['num_labels']) {
      throw new WebattnError('CONFIG_INVALID', `${source}: "num_labels" (${cfg['num_labels']}) disagrees with "id2label" (${Object.keys(cfg['id2label'] as object).length} labels)`, { argument: 'num_labels' });
    }
    delete cfg['num_labels'];
  }
  if ('id2label' in cfg && !('label2id' in cfg)) cfg['label2id'] = Object.fromEntries(Object.entries(cfg['id2label'] as Record<string, string>).map(([i, l]) => [l, Number(i)]));
  // consistency
  const hidden = modelType === 'gpt2' ? 'n_embd' : 'hidden_size';
  const heads = modelType === 'gpt2' ? 'n_head' : 'num_attention_heads';
  if ((cfg[hidden] as number) % (cfg[heads] as number) !== 0) {
    throw new WebattnError('CONFIG_INVALID', `${source}: "${hidden}" (${cfg[hidden]}) must be divisible by "${heads}" (${cfg[heads]})`, { argument: hidden });
  }
  if (modelType === 'vit' && (cfg['image_size'] as number) % (cfg['patch_size'] as number) !== 0) {
    throw new WebattnError('CONFIG_INVALID', `${source}: "image_size" (${cfg['image_size']}) must be divisible by "patch_size" (${cfg['patch_size']})`, { argument: 'image_size' });
  }
  return decorateConfig(cfg as PretrainedConfig, modelType);
}

/**
 * Adds the non-enumerable accessors of a config (a parsed one, or a model's): `attribute_map`
 * aliases, `num_labels` (from `id2label`, 2 without labels) unless the config holds it, and
 * `_attn_implementation` / `attnImplementation` (default `'sdpa'`). @internal
 */
export function decorateConfig<C extends object>(cfg: C, modelType: SupportedModelType): C {
  const c = cfg as Record<string, unknown>;
  const spec = SPECS[modelType];
  for (const [alias, canon] of Object.entries(spec.attributeMap)) {
    if (Object.prototype.hasOwnProperty.call(c, alias)) continue;
    Object.defineProperty(c, alias, { get: () => c[canon], set: (v) => (c[canon] = v), enumerable: false, configurable: true });
  }
  if (!Object.prototype.hasOwnProperty.call(c, 'num_labels')) {
    Object.defineProperty(c, 'num_labels', { get: () => (c['id2label'] ? Object.keys(c['id2label'] as object).length : 2), enumerable: false, configurable: true });
  }
  if (!Object.prototype.hasOwnProperty.call(c, ATTN)) setConfigAttn(c, DEFAULT_ATTN);
  return cfg;
}

const DEFAULT_ATTN = 'sdpa';

/** Sets the attention implementation name a config reports (used by the switch). @internal */
export function setConfigAttn(cfg: object, name: string): void {
  if (!Object.prototype.hasOwnProperty.call(cfg, ATTN)) {
    Object.defineProperty(cfg, ATTN, { value: name, writable: true, enumerable: false, configurable: true });
    for (const n of ['_attn_implementation', 'attnImplementation']) {
      Object.defineProperty(cfg, n, { get: () => (cfg as Record<symbol, string>)[ATTN], enumerable: false, configurable: true });
    }
  }
  (cfg as Record<symbol, string>)[ATTN] = name;
}

/**
 * The JSON transformers writes for a config: enumerable keys (aliases and the attention switch are
 * not), sorted, indented by 2, newline-terminated.
 * @example await writeFile('config.json', configToJson(model.config));
 */
export function configToJson(cfg: Record<string, unknown>): string {
  const keys = Object.keys(cfg).sort();
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = cfg[k];
  return `${JSON.stringify(out, null, 2)}\n`;
}
