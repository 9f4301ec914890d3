import { WebattnError, cpu, getDefaultDevice, tensor, type Device, type Tensor } from '@webattn/core-tensor';

/** One example for {@link DataCollatorWithFlattening}: token ids and optional labels (same length). */
export interface FlatteningFeature {
  input_ids?: ArrayLike<number>;
  /** camelCase spelling of `input_ids`. */
  inputIds?: ArrayLike<number>;
  labels?: ArrayLike<number>;
}

/** Options of {@link DataCollatorWithFlattening}. */
export interface DataCollatorWithFlatteningOptions {
  /** Return `positionIds` restarting at 0 for each sequence (default true; the models' packed path reads them). */
  returnPositionIds?: boolean;
  /** Label put at each sequence start (default -100, the ignore index of cross-entropy). */
  separatorId?: number;
  /** Also return `cuSeqLens` (int32 CPU tensor `[N+1]`) and `maxLength` (transformers' `return_flash_attn_kwargs`). */
  returnFlashAttnKwargs?: boolean;
  /** Device of `inputIds` / `labels` / `positionIds` (default: the default device). */
  device?: Device;
}

/** A padding-free batch: every sequence concatenated in one row. */
export interface FlattenedBatch {
  /** int32 `[1, total]`. */
  inputIds: Tensor;
  /** int32 `[1, total]`: `separatorId` at each sequence start, then the labels (or input ids) from index 1. */
  labels: Tensor;
  /** int32 `[1, total]`, 0, 1, … restarting for each sequence (when `returnPositionIds`). */
  positionIds?: Tensor;
  /** int32 CPU `[N+1]` offsets of the sequences (when `returnFlashAttnKwargs`). */
  cuSeqLens?: Tensor;
  /** Longest sequence (when `returnFlashAttnKwargs`). */
  maxLength?: number;
  /** Sequence lengths, always (host numbers). */
  lengths: number[];
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'object') return Array.isArray(v) ? `an array of ${v.length}` : 'an object';
  return `${typeof v} ${String(v)}`;
}

function intArray(v: unknown, argument: string): number[] {
  if (!v || typeof v !== 'object' || typeof (v as ArrayLike<number>).length !== 'number') {
    throw new WebattnError('INVALID_ARGUMENT', `${argument}: expected an array of integer token ids, got ${describe(v)}`, { argument });
  }
  const a = Array.from(v as ArrayLike<unknown>);
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    if (typeof x !== 'number' || !Number.isInteger(x) || x < -2147483648 || x > 2147483647) {
      throw new WebattnError('INVALID_ARGUMENT', `${argument}[${i}]: expected an int32 integer, got ${describe(x)}`, { argument });
    }
  }
  return a as number[];
}

/**
 * Padding-free collation (transformers' `DataCollatorWithFlattening`): concatenates the examples into
 * one row `[1, total]`, with position ids restarting at 0 for each sequence and the label
 * `separatorId` (-100) at each sequence start, so no token is padding and no loss crosses a boundary.
 * The models read position ids without an attention mask as packed sequences and run every attention
 * implementation on that packed layout (eager/sdpa: block-diagonal mask; flash_attention_2: varlen;
 * flex_attention: document block mask).
 *
 * @throws WebattnError `INVALID_ARGUMENT` naming the example and key (not an int array, empty, labels
 * of another length, a bad option).
 * @example
 * const collate = new DataCollatorWithFlattening({ returnFlashAttnKwargs: true });
 * const batch = collate.call([{ input_ids: [5, 6, 7] }, { input_ids: [8, 9] }]); // positionIds [[0,1,2,0,1]]
 * const { loss } = model.forward(batch.inputIds, { labels: batch.labels, positionIds: batch.positionIds });
 */
export class DataCollatorWithFlattening {
  readonly returnPositionIds: boolean;
  readonly separatorId: number;
  readonly returnFlashAttnKwargs: boolean;
  readonly device: Device | undefined;

  constructor(options: DataCollatorWithFlatteningOptions = {}) {
    const bool = (v: unknown, name: string, dflt: boolean): boolean => {
      if (v === undefined) return dflt;
      if (typeof v !== 'boolean') throw new WebattnError('INVALID_ARGUMENT', `options.${name}: expected a boolean, got ${describe(v)}`, { argument: `options.${name}` });
      return v;
    };
    this.returnPositionIds = bool(options.returnPositionIds, 'returnPositionIds', true);
    this.returnFlashAttnKwargs = bool(options.returnFlashAttnKwargs, 'returnFlashAttnKwargs', false);
    const sep = options.separatorId ?? -100;
    if (typeof sep !== 'number' || !Number.isInteger(sep)) {
      throw new WebattnError('INVALID_ARGUMENT', `options.separatorId: expected an integer, got ${describe(sep)}`, { argument: 'options.separatorId' });
    }
    this.separatorId = sep;
    this.device = options.device;
  }

  /** Collates `features` (see the class). */
  call(features: readonly FlatteningFeature[]): FlattenedBatch {
    if (!Array.isArray(features) || features.length === 0) {
      throw new WebattnError('INVALID_ARGUMENT', `features: expected a non-empty array of {input_ids, labels?}, got ${describe(features)}`, { argument: 'features' });
    }
    const ids: number[] = [];
    const labels: number[] = [];
    const pos: number[] = [];
    const lengths: number[] = [];
    const cu = [0];
    features.forEach((f, i) => {
      if (!f || typeof f !== 'object') throw new WebattnError('INVALID_ARGUMENT', `features[${i}]: expected {input_ids, labels?}, got ${describe(f)}`, { argument: 'features' });
      const x = intArray(f.input_ids ?? f.inputIds, `features[${i}].input_ids`);
      if (x.length === 0) throw new WebattnError('INVALID_ARGUMENT', `features[${i}].input_ids: expected at least one token, got an empty sequence`, { argument: 'features' });
      const lab = f.labels === undefined ? x : intArray(f.labels, `features[${i}].labels`);
      if (lab.length !== x.length) {
        throw new WebattnError('INVALID_ARGUMENT', `features[${i}].labels: expected ${x.length} labels (one per input id), got ${lab.length}`, { argument: 'features' });
      }
      ids.push(...x);
      labels.push(this.separatorId, ...lab.slice(1));
      for (let p = 0; p < x.length; p++) pos.push(p);
      lengths.push(x.length);
      cu.push(cu[cu.length - 1]! + x.length);
    });
    const device = this.device ?? getDefaultDevice();
    const T = ids.length;
    const out: FlattenedBatch = {
      inputIds: tensor(Int32Array.from(ids), [1, T], { dtype: 'int32', device }),
      labels: tensor(Int32Array.from(labels), [1, T], { dtype: 'int32', device }),
      lengths,
    };
    if (this.returnPositionIds) out.positionIds = tensor(Int32Array.from(pos), [1, T], { dtype: 'int32', device });
    if (this.returnFlashAttnKwargs) {
      out.cuSeqLens = tensor(Int32Array.from(cu), [cu.length], { dtype: 'int32', device: cpu() });
      out.maxLength = Math.max(...lengths);
    }
    return out;
  }
}
