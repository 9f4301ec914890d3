import { WebattnError, getDefaultDevice, type Device, type Tensor } from '@webattn/core-tensor';
import { GPT2LMHeadModel, ViTForImageClassification, type GPT2Config, type Module, type ViTConfig } from '@webattn/models';
import { AttentionInterface, DEFAULT_ATTN_IMPLEMENTATION, setAttnImplementation, type AttnImplementation } from './attention-interface.js';
import { configToJson, decorateConfig, detectModelType, parseConfig, type PretrainedConfig, type SupportedModelType } from './config.js';
import { deviceHasF16, entryToTensor, readSafetensors, tensorToEntry, writeSafetensors, type SafetensorsEntry } from './safetensors.js';
import { isJsonObject, parseStrictJson } from './strict-json.js';

/** Options of {@link fromPretrained}. */
export interface FromPretrainedOptions {
  /** Attention implementation name (default `'sdpa'`): a built-in or one registered with `AttentionInterface.register`. */
  attnImplementation?: AttnImplementation;
  /** Device of the parameters (default: the default device). */
  device?: Device;
  /** Parameter dtype (default `float32`; `float16` needs a device with f16). */
  dtype?: 'float32' | 'float16';
  /** Allow checkpoint keys the model lacks and model parameters the checkpoint lacks (they keep their random init). Default false. */
  allowMissingKeys?: boolean;
  /** The `fetch` used for URLs (default `globalThis.fetch`). */
  fetch?: (url: string) => Promise<{ ok: boolean; status: number; arrayBuffer(): Promise<ArrayBuffer> }>;
}

/** The model classes {@link fromPretrained} builds. */
export type PretrainedModelClass = GPT2LMHeadModel | ViTForImageClassification;

/**
 * A model from {@link fromPretrained}: the webattn class with its transformers config and the
 * run-time switch `setAttnImplementation(name)` (transformers' `model.set_attn_implementation`).
 */
export type PretrainedModel<M extends PretrainedModelClass = PretrainedModelClass> = M & {
  config: M['config'] & PretrainedConfig & { attnImplementation: string; _attn_implementation: string };
  /** Switches the attention implementation by name at run time (see {@link setAttnImplementation}). */
  setAttnImplementation(name: AttnImplementation): void;
};

const CONFIG = 'config.json';
const WEIGHTS = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';

type Reader = (name: string) => Promise<Uint8Array | null>;

function isUrl(s: string): boolean {
  return /^(https?|blob|data):/i.test(s);
}
const IS_NODE = typeof process !== 'undefined' && !!process.versions?.node;

/** `node:fs/promises`, imported through a variable so browser bundlers neither resolve nor split it. */
async function nodeFs(): Promise<typeof import('node:fs/promises')> {
  const name = 'node:fs/promises';
  return (await import(/* @vite-ignore */ /* webpackIgnore: true */ name)) as typeof import('node:fs/promises');
}

function joinPath(base: string, name: string): string {
  return base.endsWith('/') ? `${base}${name}` : `${base}/${name}`;
}

function makeReader(dirOrUrl: string, options: FromPretrainedOptions): Reader {
  if (!isUrl(dirOrUrl) && IS_NODE) {
    return async (name) => {
      const { readFile } = await nodeFs();
      const path = dirOrUrl.startsWith('file:') ? new URL(joinPath(dirOrUrl, name)) : joinPath(dirOrUrl, name);
      try {
        const b = await readFile(path);
        return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return null;
        throw new WebattnError('NOT_FOUND', `${joinPath(dirOrUrl, name)}: cannot be read (${code ?? String(e)})`, { argument: name, cause: e });
      }
    };
  }
  const f = options.fetch ?? (globalThis.fetch as unknown as FromPretrainedOptions['fetch']);
  if (typeof f !== 'function') throw new WebattnError('INVALID_ARGUMENT', `options.fetch: no fetch available to read ${dirOrUrl}`, { argument: 'options.fetch' });
  return async (name) => {
    const url = joinPath(dirOrUrl, name);
    let r: Awaited<ReturnType<NonNullable<FromPretrainedOptions['fetch']>>>;
    try {
      r = await f(url);
    } catch (e) {
      throw new WebattnError('NOT_FOUND', `${url}: fetch failed (${String(e)})`, { argument: name, cause: e });
    }
    if (r.status === 404) return null;
    if (!r.ok) throw new WebattnError('NOT_FOUND', `${url}: HTTP ${r.status}`, { argument: name });
    return new Uint8Array(await r.arrayBuffer());
  };
}

/** The checkpoint's tensors by name, from `model.safetensors` or the shards of `model.safetensors.index.json`. */
async function readWeights(read: Reader, where: string): Promise<{ entries: Map<string, { entry: SafetensorsEntry; file: string }> }> {
  const entries = new Map<string, { entry: SafetensorsEntry; file: string }>();
  const single = await read(WEIGHTS);
  if (single) {
    const f = readSafetensors(single, { source: joinPath(where, WEIGHTS), copy: false });
    for (const [k, e] of Object.entries(f.tensors)) entries.set(k, { entry: e, file: WEIGHTS });
    return { entries };
  }
  const idx = await read(INDEX);
  if (!idx) {
    const bin = await read('pytorch_model.bin');
    throw new WebattnError(
      'NOT_FOUND',
      `${where}: found neither ${WEIGHTS} nor ${INDEX}${bin ? ' (pytorch_model.bin is a pickle, which webattn does not read: convert it with save_pretrained(safe_serialization=True))' : ''}`,
      { argument: WEIGHTS },
    );
  }
  const src = joinPath(where, INDEX);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(idx);
  } catch {
    throw new WebattnError('CONFIG_INVALID', `${src}: not valid UTF-8`, { argument: INDEX });
  }
  const j = parseStrictJson(text, 'CONFIG_INVALID', src);
  const map = isJsonObject(j) ? j['weight_map'] : undefined;
  if (!isJsonObject(map)) throw new WebattnError('CONFIG_INVALID', `${src}: "weight_map": expected an object of tensor name → shard file`, { argument: 'weight_map' });
  const byFile = new Map<string, string[]>();
  for (const [name, file] of Object.entries(map)) {
    if (typeof file !== 'string' || file.length === 0 || file.includes('/') || file.includes('\\') || file.startsWith('.')) {
      throw new WebattnError('CONFIG_INVALID', `${src}: "weight_map"["${name}"]: expected a shard file name in the same directory, got ${JSON.stringify(file)}`, { argument: 'weight_map' });
    }
    if (!byFile.has(file)) byFile.set(file, []);
    byFile.get(file)!.push(name);
  }
  for (const [file, names] of byFile) {
    const bytes = await read(file);
    if (!bytes) throw new WebattnError('NOT_FOUND', `${joinPath(where, file)}: shard listed in ${INDEX} is missing`, { argument: file });
    const f = readSafetensors(bytes, { source: joinPath(where, file), copy: false });
    for (const n of names) {
      const e = f.tensors[n];
      if (!e || !Object.prototype.hasOwnProperty.call(f.tensors, n)) {
        throw new WebattnError('SAFETENSORS_INVALID', `${joinPath(where, file)}: tensor "${n}" listed in ${INDEX} is not in this shard`, { argument: n });
      }
      entries.set(n, { entry: e, file });
    }
  }
  return { entries };
}

/** Checkpoint name → model name: base-model prefixes and legacy buffers, as transformers resolves them. */
function normalizeKeys(names: string[], modelType: SupportedModelType): { rename: Map<string, string>; dropped: string[] } {
  const prefix = modelType === 'gpt2' ? 'transformer.' : 'vit.';
  const headKeys = modelType === 'gpt2' ? ['lm_head.'] : ['classifier.'];
  const hasPrefix = names.some((n) => n.startsWith(prefix));
  const rename = new Map<string, string>();
  const dropped: string[] = [];
  for (const n of names) {
    // legacy GPT-2 checkpoints store the causal-mask buffers attn.bias / attn.masked_bias
    if (modelType === 'gpt2' && /\.attn\.(masked_)?bias$/.test(n)) {
      dropped.push(n);
      continue;
    }
    // a ViTModel checkpoint's pooler has no place in ViTForImageClassification (transformers ignores it)
    if (modelType === 'vit' && /^(vit\.)?pooler\./.test(n)) {
      dropped.push(n);
      continue;
    }
    const isHead = headKeys.some((h) => n.startsWith(h));
    rename.set(n, hasPrefix || isHead ? n : `${prefix}${n}`);
  }
  return { rename, dropped };
}

/**
 * Loads a HuggingFace checkpoint (transformers' `from_pretrained`): reads `config.json` and
 * `model.safetensors` (or the shards of `model.safetensors.index.json`) from a local directory in
 * Node, or over `fetch` from a URL (or a path next to the page in a browser); picks the class from
 * `model_type` / `architectures` (`gpt2` → `GPT2LMHeadModel`, `vit` → `ViTForImageClassification`);
 * converts the weights (BF16 → float32, F16 → float32, I64 → int32) and checks every name and shape;
 * returns the model in eval mode with `attnImplementation` set (default `'sdpa'`).
 *
 * @throws WebattnError `NOT_FOUND` naming the missing file; `CONFIG_INVALID` naming the key;
 * `MODEL_UNSUPPORTED` listing the supported types; `SAFETENSORS_INVALID` naming the file and rule;
 * `SHAPE_MISMATCH` naming the file, key and expected shape; `INVALID_ARGUMENT` listing missing /
 * unexpected keys with the file, or an unknown `attnImplementation` with the available names;
 * `DTYPE_UNSUPPORTED` for `dtype: 'float16'` on a device without f16.
 * The class is known only at run time: name it as a type argument (`fromPretrained<GPT2LMHeadModel>`)
 * or narrow with `instanceof`.
 * @example
 * const model = await fromPretrained<GPT2LMHeadModel>('./tiny-gpt2', { attnImplementation: 'flash_attention_2' });
 * const { logits } = await model.forward({ inputIds });
 */
export async function fromPretrained<M extends PretrainedModelClass = PretrainedModelClass>(dirOrUrl: string, options: FromPretrainedOptions = {}): Promise<PretrainedModel<M>> {
  if (typeof dirOrUrl !== 'string' || dirOrUrl.length === 0) {
    throw new WebattnError('INVALID_ARGUMENT', `dirOrUrl: expected a directory path or URL, got ${typeof dirOrUrl === 'string' ? '""' : typeof dirOrUrl}`, { argument: 'dirOrUrl' });
  }
  if (options === null || typeof options !== 'object') throw new WebattnError('INVALID_ARGUMENT', 'options: expected an object', { argument: 'options' });
  const attnName = options.attnImplementation ?? DEFAULT_ATTN_IMPLEMENTATION;
  const attention = AttentionInterface.get(attnName); // fail before reading anything
  const dtype = options.dtype ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'float16') {
    throw new WebattnError('DTYPE_UNSUPPORTED', `options.dtype: expected 'float32' or 'float16', got ${JSON.stringify(dtype)}`, { argument: 'options.dtype' });
  }
  const allowMissing = options.allowMissingKeys ?? false;
  if (typeof allowMissing !== 'boolean') throw new WebattnError('INVALID_ARGUMENT', `options.allowMissingKeys: expected a boolean, got ${JSON.stringify(allowMissing)}`, { argument: 'options.allowMissingKeys' });
  const device = options.device ?? getDefaultDevice();
  if (dtype === 'float16' && !deviceHasF16(device)) {
    throw new WebattnError('DTYPE_UNSUPPORTED', `options.dtype: float16 needs a device with shader-f16; ${device.info.adapter} has none (use 'float32')`, { argument: 'options.dtype' });
  }
  const read = makeReader(dirOrUrl, options);
  const cfgBytes = await read(CONFIG);
  if (!cfgBytes) throw new WebattnError('NOT_FOUND', `${joinPath(dirOrUrl, CONFIG)}: missing (a checkpoint directory holds config.json and model.safetensors)`, { argument: CONFIG });
  const config = parseConfig(cfgBytes, { source: joinPath(dirOrUrl, CONFIG) });
  const modelType = detectModelType(config);
  const { entries } = await readWeights(read, dirOrUrl);

  const plain = { ...config } as Record<string, unknown>;
  const model: PretrainedModelClass =
    modelType === 'gpt2'
      ? new GPT2LMHeadModel(plain as Partial<GPT2Config>, { attention, device })
      : new ViTForImageClassification(plain as Partial<ViTConfig>, { attention, device });

  const { rename, dropped } = normalizeKeys([...entries.keys()], modelType);
  void dropped;
  const params = new Map<string, Tensor>((model as Module).namedParameters());
  const aliases = (model as Module).namedAliases();
  const dict: Record<string, Tensor> = {};
  const unexpected: string[] = [];
  for (const [ck, mk] of rename) {
    const { entry, file } = entries.get(ck)!;
    const target = params.get(mk) ?? (aliases.has(mk) ? params.get(aliases.get(mk)!) : undefined);
    if (!target) {
      unexpected.push(`${ck} (${file})`);
      continue;
    }
    if (entry.shape.length !== target.shape.length || entry.shape.some((s, i) => s !== target.shape[i])) {
      throw new WebattnError('SHAPE_MISMATCH', `${joinPath(dirOrUrl, file)}: tensor "${ck}": expected shape [${target.shape.join(', ')}] for ${mk} (from config.json), got [${entry.shape.join(', ')}]`, { argument: ck });
    }
    if (!['F32', 'F16', 'BF16', 'F64'].includes(entry.dtype)) {
      throw new WebattnError('DTYPE_UNSUPPORTED', `${joinPath(dirOrUrl, file)}: tensor "${ck}": expected a floating-point dtype (F32, F16, BF16, F64) for a parameter, got ${entry.dtype}`, { argument: ck });
    }
    dict[mk] = entryToTensor(entry, device, { dtype: 'float32', source: `${joinPath(dirOrUrl, file)}: tensor "${ck}"` });
  }
  const loaded = new Set(Object.keys(dict).map((k) => (aliases.has(k) ? aliases.get(k)! : k)));
  const missing = [...params.keys()].filter((k) => !loaded.has(k));
  if (!allowMissing && (missing.length || unexpected.length)) {
    const files = [...new Set([...entries.values()].map((e) => e.file))].join(', ');
    throw new WebattnError(
      'INVALID_ARGUMENT',
      `${dirOrUrl}: the weights (${files}) do not match ${model.constructor.name} built from config.json: ` +
        `missing keys [${missing.join(', ')}], unexpected keys [${unexpected.join(', ')}] (pass allowMissingKeys: true to keep the random init)`,
      { argument: WEIGHTS },
    );
  }
  await (model as Module).loadStateDict(dict, { strict: false });
  if (dtype === 'float16') await (model as Module).to('float16');
  (model as Module).eval();
  return attachSwitch(model, modelType, attnName) as unknown as PretrainedModel<M>;
}

/** Decorates a model's config (aliases, attnImplementation) and adds `setAttnImplementation`. */
function attachSwitch(model: PretrainedModelClass, modelType: SupportedModelType, attnName: string): PretrainedModel {
  decorateConfig(model.config, modelType);
  setAttnImplementation(model, attnName);
  Object.defineProperty(model, 'setAttnImplementation', {
    value(name: AttnImplementation) {
      setAttnImplementation(model, name);
    },
    enumerable: false,
    configurable: true,
    writable: true,
  });
  return model as PretrainedModel;
}

/**
 * Adds transformers' run-time switch to a model built directly (`new GPT2LMHeadModel(...)`):
 * `model.setAttnImplementation(name)` and `model.config.attnImplementation`.
 * @example
 * const model = withAttnImplementation(new GPT2LMHeadModel(gpt2Config({ n_layer: 2 })), 'eager');
 * model.setAttnImplementation('flex_attention');
 */
export function withAttnImplementation<M extends PretrainedModelClass>(model: M, name: AttnImplementation = DEFAULT_ATTN_IMPLEMENTATION): PretrainedModel<M> {
  if (!(model instanceof GPT2LMHeadModel) && !(model instanceof ViTForImageClassification)) {
    throw new WebattnError('INVALID_ARGUMENT', 'model: expected a GPT2LMHeadModel or ViTForImageClassification', { argument: 'model' });
  }
  return attachSwitch(model, model instanceof GPT2LMHeadModel ? 'gpt2' : 'vit', name) as unknown as PretrainedModel<M>;
}

/**
 * The files transformers' `save_pretrained` writes, as bytes: `config.json` (the model's config,
 * with `architectures`, `model_type` and `dtype`) and `model.safetensors` (every parameter once, tied
 * weights once, `{"format": "pt"}` metadata). Works in the browser (no file system).
 * @example
 * const files = await serializePretrained(model); // { 'config.json': Uint8Array, 'model.safetensors': Uint8Array }
 */
export async function serializePretrained(model: PretrainedModelClass): Promise<Record<string, Uint8Array>> {
  if (!(model instanceof GPT2LMHeadModel) && !(model instanceof ViTForImageClassification)) {
    throw new WebattnError('INVALID_ARGUMENT', 'model: expected a GPT2LMHeadModel or ViTForImageClassification', { argument: 'model' });
  }
  const state = (model as Module).stateDict();
  const tensors: Record<string, SafetensorsEntry> = {};
  let dtype = 'float32';
  for (const [k, t] of Object.entries(state)) {
    tensors[k] = await tensorToEntry(t);
    if (t.dtype === 'float16') dtype = 'float16';
  }
  const cfg: Record<string, unknown> = { ...model.config };
  if ('id2label' in cfg) delete cfg['num_labels']; // transformers derives it from id2label
  cfg['architectures'] = [model.constructor.name];
  cfg['dtype'] = dtype;
  cfg['model_type'] = model instanceof GPT2LMHeadModel ? 'gpt2' : 'vit';
  cfg['transformers_version'] ??= '5.17.0';
  return {
    [CONFIG]: new TextEncoder().encode(configToJson(cfg)),
    [WEIGHTS]: writeSafetensors(tensors, { format: 'pt' }),
  };
}

/**
 * Writes `config.json` + `model.safetensors` into `dir` (created if needed) in Node, in the layout
 * transformers' `from_pretrained` loads (and {@link fromPretrained} reloads with identical logits).
 * @throws WebattnError `INVALID_ARGUMENT` outside Node or for a model that is not GPT-2 / ViT.
 * @example
 * await savePretrained(model, './my-gpt2');
 * // python: GPT2LMHeadModel.from_pretrained('./my-gpt2')
 */
export async function savePretrained(model: PretrainedModelClass, dir: string): Promise<void> {
  if (typeof dir !== 'string' || dir.length === 0) throw new WebattnError('INVALID_ARGUMENT', 'dir: expected a directory path', { argument: 'dir' });
  if (!IS_NODE) throw new WebattnError('INVALID_ARGUMENT', 'savePretrained: needs a file system (Node); in a browser use serializePretrained(model)', { argument: 'dir' });
  const files = await serializePretrained(model);
  const { mkdir, writeFile } = await nodeFs();
  await mkdir(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) await writeFile(joinPath(dir, name), bytes);
}
