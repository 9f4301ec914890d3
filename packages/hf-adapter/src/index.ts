/**
 * `@webattn/hf-adapter` — HuggingFace checkpoints for webattn: validated `.safetensors` reading and
 * writing, `config.json` parsing with transformers' defaults and aliases, `fromPretrained` /
 * `savePretrained`, the `attn_implementation` switch (`AttentionInterface`) and a padding-free collator.
 *
 * @packageDocumentation
 */
export {
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
  entryToTensor,
  tensorToEntry,
  bf16ToFloat32,
  f16ToFloat32,
  deviceHasF16,
  SAFETENSORS_DTYPE_SIZE,
  SAFETENSORS_MAX_HEADER,
  type SafetensorsDType,
  type SafetensorsData,
  type SafetensorsEntry,
  type SafetensorsFile,
  type ReadSafetensorsOptions,
} from './safetensors.js';
export {
  parseConfig,
  detectModelType,
  configToJson,
  SUPPORTED_MODEL_TYPES,
  SUPPORTED_ARCHITECTURES,
  type PretrainedConfig,
  type SupportedModelType,
} from './config.js';
export {
  DataCollatorWithFlattening,
  type DataCollatorWithFlatteningOptions,
  type FlatteningFeature,
  type FlattenedBatch,
} from './collator.js';
export {
  AttentionInterface,
  setAttnImplementation,
  DEFAULT_ATTN_IMPLEMENTATION,
  type AttnImplementation,
  type BuiltinAttnImplementation,
  type AttentionSwitchable,
} from './attention-interface.js';
export {
  fromPretrained,
  savePretrained,
  serializePretrained,
  withAttnImplementation,
  type FromPretrainedOptions,
  type PretrainedModel,
  type PretrainedModelClass,
} from './pretrained.js';
