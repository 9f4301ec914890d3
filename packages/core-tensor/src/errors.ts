/**
 * Stable error codes carried by every {@link WebattnError}.
 *
 * - `SHAPE_MISMATCH`: shapes that must agree (or broadcast) do not.
 * - `INVALID_ARGUMENT`: a value outside its allowed range or of the wrong kind.
 * - `DTYPE_UNSUPPORTED`: a dtype the operation or the device does not support.
 * - `DEVICE_MISMATCH`: tensors on different devices were combined.
 * - `DEVICE_LOST`: the GPU device was lost; call `getDevice()` again for a new one.
 * - `DEVICE_UNAVAILABLE`: no device of the requested kind could be created.
 * - `LIMIT_EXCEEDED`: a tensor or dispatch exceeds an adapter limit (the message names it).
 * - `OUT_OF_MEMORY`: the device could not allocate a tensor's memory (the message names the size and the memory in use).
 * - `KERNEL_NOT_REGISTERED`: no kernel for this op on this backend.
 * - `KERNEL_COMPILE`: a WGSL module or pipeline failed to build (the message names the kernel).
 * - `KERNEL_FAILED`: a dispatch failed validation on the GPU (the message names the kernel).
 * - `TENSOR_DISPOSED`: the tensor's storage was released by `dispose()`.
 * - `AUTOGRAD`: misuse of the autograd tape (e.g. `backward()` on a non-scalar without a gradient).
 * - `NO_BACKEND`: no attention backend can run these inputs (the message lists why each refused).
 * - `FLEX_COMPILE`: a flex score/mask function could not be compiled.
 * - `SAFETENSORS_INVALID`: a `.safetensors` file breaks a rule of the format (the message names the rule).
 * - `CONFIG_INVALID`: a `config.json` (or a config object) holds a malformed value (the message names the key).
 * - `NOT_FOUND`: a file or URL that was needed is missing (the message names it).
 * - `MODEL_UNSUPPORTED`: a checkpoint's architecture / model_type has no webattn class (the message lists those supported).
 */
export type ErrorCode =
  | 'SHAPE_MISMATCH'
  | 'INVALID_ARGUMENT'
  | 'DTYPE_UNSUPPORTED'
  | 'DEVICE_MISMATCH'
  | 'DEVICE_LOST'
  | 'DEVICE_UNAVAILABLE'
  | 'LIMIT_EXCEEDED'
  | 'OUT_OF_MEMORY'
  | 'KERNEL_NOT_REGISTERED'
  | 'KERNEL_COMPILE'
  | 'KERNEL_FAILED'
  | 'TENSOR_DISPOSED'
  | 'AUTOGRAD'
  | 'NO_BACKEND'
  | 'FLEX_COMPILE'
  | 'SAFETENSORS_INVALID'
  | 'CONFIG_INVALID'
  | 'NOT_FOUND'
  | 'MODEL_UNSUPPORTED';

/**
 * The one error class of webattn. `code` is stable and meant for programs; `message` names the
 * argument, what was expected and what came.
 *
 * @example
 * try { add(a, b) } catch (e) { if (e instanceof WebattnError && e.code === 'SHAPE_MISMATCH') ... }
 */
export class WebattnError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode;
  /** The argument at fault, when there is one. */
  readonly argument?: string;
  constructor(code: ErrorCode, message: string, options?: { argument?: string; cause?: unknown }) {
    super(`[${code}] ${message}`, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'WebattnError';
    this.code = code;
    if (options?.argument !== undefined) this.argument = options.argument;
  }
}

/** Throws `WebattnError(code, message)` unless `cond` holds. */
export function check(cond: unknown, code: ErrorCode, message: () => string, argument?: string): asserts cond {
  if (!cond) throw new WebattnError(code, message(), argument !== undefined ? { argument } : undefined);
}
