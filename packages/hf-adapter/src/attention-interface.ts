import { WebattnError } from '@webattn/core-tensor';
import { eagerAttention, flashAttention, flexAttention, sdpaAttention, type AttentionFn } from '@webattn/models';
import { setConfigAttn } from './config.js';

/** The implementation names transformers knows and webattn has built in. */
export type BuiltinAttnImplementation = 'eager' | 'sdpa' | 'flash_attention_2' | 'flex_attention';
/** A built-in name or one added with `AttentionInterface.register`. */
export type AttnImplementation = BuiltinAttnImplementation | (string & {});

/**
 * The default implementation, as in transformers when torch SDPA is available.
 * @example fromPretrained(dir); // runs 'sdpa'
 */
export const DEFAULT_ATTN_IMPLEMENTATION: BuiltinAttnImplementation = 'sdpa';

const BUILTINS: Readonly<Record<BuiltinAttnImplementation, AttentionFn>> = Object.freeze({
  eager: eagerAttention,
  sdpa: sdpaAttention,
  flash_attention_2: flashAttention,
  flex_attention: flexAttention,
});

const registry = new Map<string, AttentionFn>(Object.entries(BUILTINS));

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null) return 'null';
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/**
 * The global name → `AttentionFn` (from `@webattn/models`) registry (transformers' `AttentionInterface`). It starts with
 * `eager`, `sdpa`, `flash_attention_2` and `flex_attention`; `register` adds a name (or replaces one,
 * built-ins included, as transformers allows) that `fromPretrained({attnImplementation})` and
 * `setAttnImplementation` then accept. The function contract is the models' `AttentionFn`:
 * q/k/v `[B, H, L, E]` → `[output [B, L, H, Ev], weights | null]`.
 *
 * @example
 * AttentionInterface.register('logged_sdpa', (m, q, k, v, o) => (console.log(q.shape), sdpaAttention(m, q, k, v, o)));
 * const model = await fromPretrained('./gpt2', { attnImplementation: 'logged_sdpa' });
 */
export const AttentionInterface = Object.freeze({
  /**
   * Registers `fn` under `name`. A function with `usesBlockMask: true` gets the model's block mask
   * (as FlexAttention does).
   * @throws WebattnError `INVALID_ARGUMENT` when `name` is not a non-empty string or `fn` not a function.
   */
  register(name: string, fn: AttentionFn): void {
    if (typeof name !== 'string' || name.length === 0) {
      throw new WebattnError('INVALID_ARGUMENT', `name: expected a non-empty string, got ${describe(name)}`, { argument: 'name' });
    }
    if (typeof fn !== 'function') {
      throw new WebattnError('INVALID_ARGUMENT', `fn: expected an attention function (module, query, key, value, options) => [output, weights], got ${describe(fn)}`, { argument: 'fn' });
    }
    registry.set(name, fn);
  },
  /**
   * The function registered under `name`.
   * @throws WebattnError `INVALID_ARGUMENT` naming the value and listing the available names.
   */
  get(name: string): AttentionFn {
    const fn = typeof name === 'string' ? registry.get(name) : undefined;
    if (!fn) throw unknownImplementation(name);
    return fn;
  },
  /** True when `name` is registered. */
  has(name: string): boolean {
    return typeof name === 'string' && registry.has(name);
  },
  /** Every registered name (built-ins first, then in registration order). */
  list(): string[] {
    return [...registry.keys()];
  },
  /** Removes a name added with `register` (a replaced built-in returns to the built-in); returns whether it was there. */
  unregister(name: string): boolean {
    if (Object.prototype.hasOwnProperty.call(BUILTINS, name)) {
      const changed = registry.get(name) !== BUILTINS[name as BuiltinAttnImplementation];
      registry.set(name, BUILTINS[name as BuiltinAttnImplementation]);
      return changed;
    }
    return registry.delete(name);
  },
});

function unknownImplementation(name: unknown): WebattnError {
  const opts = AttentionInterface.list()
    .map((n) => `\`attn_implementation="${n}"\``)
    .join(', ');
  return new WebattnError(
    'INVALID_ARGUMENT',
    `attnImplementation: Specified \`attn_implementation=${typeof name === 'string' ? `"${name}"` : describe(name)}\` is not supported. The only possible arguments are ${opts} (register more with AttentionInterface.register(name, fn))`,
    { argument: 'attnImplementation' },
  );
}

/** What {@link setAttnImplementation} needs of a model: the models' `setAttention` and `config`. */
export interface AttentionSwitchable {
  setAttention(fn: AttentionFn): void;
  config: object;
}

/**
 * Switches a model's attention at run time by name (transformers' `model.set_attn_implementation`):
 * looks `name` up in {@link AttentionInterface}, hands the function to `model.setAttention`, and makes
 * `model.config.attnImplementation` (and `_attn_implementation`) report the name. Weights, gradients
 * and optimizer state are untouched.
 *
 * @throws WebattnError `INVALID_ARGUMENT` naming the value and listing the available names.
 * @example
 * setAttnImplementation(model, 'flex_attention');
 * model.config.attnImplementation; // 'flex_attention'
 */
export function setAttnImplementation(model: AttentionSwitchable, name: AttnImplementation): void {
  if (!model || typeof model.setAttention !== 'function') {
    throw new WebattnError('INVALID_ARGUMENT', `model: expected a webattn model with setAttention(fn), got ${describe(model)}`, { argument: 'model' });
  }
  const fn = AttentionInterface.get(name);
  model.setAttention(fn);
  setConfigAttn(model.config, name);
}
