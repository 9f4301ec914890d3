import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { WebattnError } from '@webattn/core-tensor';
import { FIXTURES } from '../../../test-utils/fixtures.js';
import { configToJson, parseConfig } from './config.js';
import { expectCode } from '../../../test-utils/index.js';


describe('parseConfig', () => {
  it("reads transformers' GPT-2 config.json; attribute_map aliases read and write the canonical keys", () => {
    const text = readFileSync(`${FIXTURES}tiny-gpt2/config.json`, 'utf8');
    const file = JSON.parse(text) as Record<string, unknown>;
    const c = parseConfig(text);
    expect(c.model_type).toBe('gpt2');
    expect(c['n_embd']).toBe(64);
    expect(c['hidden_size']).toBe(64);
    expect(c['num_attention_heads']).toBe(4);
    expect(c['num_hidden_layers']).toBe(2);
    expect(c['max_position_embeddings']).toBe(64);
    c['hidden_size'] = 32;
    expect(c['n_embd']).toBe(32);
    c['hidden_size'] = 64;
    // every key of the file kept with its value; aliases and the switch are not enumerable
    for (const [k, v] of Object.entries(file)) expect(c[k], k).toEqual(v);
    expect(Object.keys(c)).not.toContain('hidden_size');
    expect(Object.keys(c)).not.toContain('_attn_implementation');
    expect(c['_attn_implementation']).toBe('sdpa');
    expect(c['attnImplementation']).toBe('sdpa');
  });

  it('fills GPT2Config defaults and accepts aliases in the file', () => {
    const c = parseConfig({ model_type: 'gpt2', hidden_size: 128, num_attention_heads: 8, n_layer: 3, custom_key: [1, 2] });
    expect(c['n_embd']).toBe(128);
    expect(c['n_head']).toBe(8);
    expect(c['n_layer']).toBe(3);
    expect(c['vocab_size']).toBe(50257);
    expect(c['n_positions']).toBe(1024);
    expect(c['activation_function']).toBe('gelu_new');
    expect(c['layer_norm_epsilon']).toBe(1e-5);
    expect(c['resid_pdrop']).toBe(0.1);
    expect(c['tie_word_embeddings']).toBe(true);
    expect(c['custom_key']).toEqual([1, 2]);
    expect(c.architectures).toEqual(['GPT2LMHeadModel']);
    expect(Object.keys(c)).not.toContain('hidden_size');
    expect(JSON.parse(configToJson(c))['n_embd']).toBe(128);
  });

  it('reads the ViT config and derives num_labels from id2label; picks the type from architectures', () => {
    const c = parseConfig(readFileSync(`${FIXTURES}tiny-vit/config.json`));
    expect(c.model_type).toBe('vit');
    expect(c['num_labels']).toBe(10);
    expect(c['layer_norm_eps']).toBe(1e-12);
    expect(c['qkv_bias']).toBe(true);
    const d = parseConfig({ architectures: ['ViTForImageClassification'], num_labels: 3 });
    expect(d.model_type).toBe('vit');
    expect(d['hidden_size']).toBe(768);
    expect(d['image_size']).toBe(224);
    expect(d['patch_size']).toBe(16);
    expect(d['num_labels']).toBe(3);
    expect(d['id2label']).toEqual({ '0': 'LABEL_0', '1': 'LABEL_1', '2': 'LABEL_2' });
  });

  it('refuses malformed values naming the key, and unsupported models listing the supported', () => {
    expectCode(() => parseConfig('{"model_type": "gpt2", "n_embd": "64"}', { source: 'a/config.json' }), 'CONFIG_INVALID', 'a/config.json', '"n_embd"', 'positive integer', '"64"');
    expectCode(() => parseConfig({ model_type: 'gpt2', n_head: 0 }), 'CONFIG_INVALID', '"n_head"');
    expectCode(() => parseConfig({ model_type: 'gpt2', n_embd: 10, n_head: 3 }), 'CONFIG_INVALID', 'divisible');
    expectCode(() => parseConfig({ model_type: 'gpt2', attn_pdrop: 1.5 }), 'CONFIG_INVALID', '"attn_pdrop"', '[0, 1]');
    expectCode(() => parseConfig({ model_type: 'gpt2', scale_attn_weights: 'true' }), 'CONFIG_INVALID', '"scale_attn_weights"', 'boolean');
    expectCode(() => parseConfig({ model_type: 'gpt2', activation_function: 'mish2' }), 'CONFIG_INVALID', '"activation_function"', 'gelu_new');
    expectCode(() => parseConfig({ model_type: 'gpt2', hidden_size: 64, n_embd: 32 }), 'CONFIG_INVALID', 'disagree');
    expectCode(() => parseConfig({ model_type: 'vit', image_size: 30, patch_size: 8 }), 'CONFIG_INVALID', 'image_size');
    expectCode(() => parseConfig({ model_type: 'vit', num_labels: 3, id2label: { '0': 'a' } }), 'CONFIG_INVALID', 'num_labels');
    expectCode(() => parseConfig('{"model_type": "gpt2",}'), 'CONFIG_INVALID', 'invalid JSON');
    expectCode(() => parseConfig('{"model_type": "gpt2", "n_layer": 2, "n_layer": 3}'), 'CONFIG_INVALID', 'duplicate key "n_layer"');
    expectCode(() => parseConfig('[1]'), 'CONFIG_INVALID', 'JSON object');
    expectCode(() => parseConfig({ model_type: 'llama' }), 'MODEL_UNSUPPORTED', '"llama"', 'gpt2, vit');
    expectCode(() => parseConfig({ architectures: ['BertModel'] }), 'MODEL_UNSUPPORTED', 'BertModel', 'GPT2LMHeadModel');
    expectCode(() => parseConfig({}), 'MODEL_UNSUPPORTED', 'gpt2, vit');
    expectCode(() => parseConfig({ model_type: 3 } as unknown as Record<string, unknown>), 'CONFIG_INVALID', '"model_type"');
    expectCode(() => parseConfig(42 as unknown as string), 'INVALID_ARGUMENT', 'config');
  });

  it('fuzz: any JSON value under any known key gives a config or a coded error, never another exception', () => {
    const base = JSON.parse(readFileSync(`${FIXTURES}tiny-gpt2/config.json`, 'utf8')) as Record<string, unknown>;
    const vit = JSON.parse(readFileSync(`${FIXTURES}tiny-vit/config.json`, 'utf8')) as Record<string, unknown>;
    const keys = [...new Set([...Object.keys(base), ...Object.keys(vit), 'hidden_size', 'num_attention_heads', 'num_labels', 'torch_dtype'])];
    fc.assert(
      fc.property(fc.boolean(), fc.constantFrom(...keys), fc.jsonValue({ maxDepth: 2 }), (useVit, key, value) => {
        const cfg = { ...(useVit ? vit : base), [key]: value };
        try {
          const c = parseConfig(JSON.stringify(cfg));
          expect(['gpt2', 'vit']).toContain(c.model_type);
        } catch (e) {
          expect(e).toBeInstanceOf(WebattnError);
          expect(['CONFIG_INVALID', 'MODEL_UNSUPPORTED']).toContain((e as WebattnError).code);
        }
      }),
      { numRuns: 2000, seed: 9 },
    );
  });
});
