/**
 * `@webattn/varlen`: packed variable-length sequences — cu_seqlens, packing and padding helpers,
 * jagged tensors, block-diagonal masks and `flashAttnVarlen` on the shared attention generator's
 * packed layout.
 *
 * @packageDocumentation
 */
export { cuSeqlens, positionIds, validateCuSeqlens, maxSeqlenOf, type CuSeqlensLike } from './cu-seqlens.js';
export { packSequences, unpackSequences, padToLength, padToLongest, unpad, pad, JaggedTensor, type Packed, type Unpadded } from './pack.js';
export { BlockDiagonalMask, type BlockDiagonalKind } from './block-diagonal-mask.js';
export { flashAttnVarlen, type FlashAttnVarlenOptions } from './flash-attn-varlen.js';
export { collate, type Collated, type CollateStrategy } from './collate.js';
