import { WebattnError, describe } from '@webattn/core-tensor';

/** Throws `INVALID_ARGUMENT` naming `name` unless `v` is an integer ≥ `min`. */
export function posInt(v: unknown, name: string, min = 1): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new WebattnError('INVALID_ARGUMENT', `${name}: expected an integer ≥ ${min}, got ${describe(v)}`, { argument: name });
}
