import * as T from '@webattn/core-tensor';
import { paritySuites } from '../test-support/parity-suite.js';

// every function against the float64 eager reference; sdpa also against transformers' sdpa, ViT flex also
// against transformers' flex_attention
paritySuites('(CPU reference device)', () => T.cpu(), {
  gpt2: (n) => (n === 'sdpa' ? ['eager', 'sdpa'] : ['eager']),
  vit: (n) => (n === 'sdpa' ? ['eager', 'sdpa'] : n === 'flex' ? ['eager', 'flex_attention'] : ['eager']),
});
