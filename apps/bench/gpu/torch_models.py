#!/usr/bin/env python3
"""transformers' GPT2LMHeadModel and ViTForImageClassification beside webattn_models.mjs, same GPU, same configs:
  GPT-2 small (124M), batch 8 x 1024: forward (no_grad), training step (loss + backward + torch.optim.AdamW) and
  greedy generation (64-token prompt, exactly 32 new tokens, KV cache) tokens/s;
  ViT-B/16 (224 px, 1000 classes), batch 32: forward and training step.
attn_implementation eager and sdpa; float32 (TF32 off, PyTorch's default) and bfloat16 autocast (fp32 master weights).
Random init, dropout 0. Each measurement: first call, second call, then the median of a few more (synced).
  python3 apps/bench/gpu/torch_models.py --json out.json     (QUICK=1: tiny configs; DEADLINE_S: budget)"""
import argparse, contextlib, json, os, sys, tempfile, time

import torch

from bench_out import Out

QUICK = os.environ.get('QUICK') == '1'
T0 = time.time()
DEADLINE = float(os.environ.get('DEADLINE_S', '1e9'))
left = lambda: DEADLINE - (time.time() - T0)
ONLY = os.environ.get('MODELS_ONLY', '').split(',') if os.environ.get('MODELS_ONLY') else None
REPS = 2 if QUICK else 3


def measure(fn, reps=REPS, budget_s=8.0):
    def once():
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - t) * 1e3
    first = once()
    second = once()
    times = [second]
    start = time.perf_counter()
    while len(times) < reps and time.perf_counter() - start < budget_s:
        times.append(once())
    times.sort()
    return dict(ms=times[len(times) // 2], reps=len(times), first_ms=first, second_ms=second)


def into(row, key, fn, **kw):
    try:
        m = measure(fn, **kw)
        for k, v in m.items():
            row[f'{key}_{k}'] = v
        return m
    except Exception as e:
        row[key + '_error'] = (type(e).__name__ + ': ' + str(e)).replace('\n', ' ')[:300]
        return None


def build(cls, cfg, impl, save_dir):
    """The model with attn_implementation=impl: from_config, else through save_pretrained/from_pretrained
    (the route tools/fixtures/make_fixtures.py uses with transformers 5.17)."""
    try:
        m = cls._from_config(cfg, attn_implementation=impl)
        if getattr(m.config, '_attn_implementation', None) == impl:
            return m
    except Exception:
        pass
    torch.manual_seed(1)
    cls(cfg).save_pretrained(save_dir)
    return cls.from_pretrained(save_dir, attn_implementation=impl)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--json', default=None)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print('torch-models: no CUDA device', file=sys.stderr)
        sys.exit(2)
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel, ViTConfig, ViTForImageClassification
    transformers.logging.set_verbosity_error()
    dev = 'cuda'
    out = Out(a.json, dict(peer='torch-models', date=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), quick=QUICK,
                           torch=torch.__version__, transformers=transformers.__version__, gpu=torch.cuda.get_device_name(),
                           float32_matmul_precision=torch.get_float32_matmul_precision(),
                           optimizer='torch.optim.AdamW(lr=1e-4), default (foreach) implementation'), T0)
    print(f'torch-models: torch {torch.__version__}, transformers {transformers.__version__} on {torch.cuda.get_device_name()}', flush=True)
    if QUICK:
        gcfg = GPT2Config(vocab_size=1024, n_positions=128, n_embd=64, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        gB, gL, prompt, new = 2, 64, 16, 4
        vcfg = ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_attention_heads=2, num_hidden_layers=2, intermediate_size=128, num_labels=10)
        vB = 2
    else:
        gcfg = GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        gB, gL, prompt, new = 8, 1024, 64, 32
        vcfg = ViTConfig(num_labels=1000)
        vB = 32
    tmp = tempfile.mkdtemp(prefix='torch-models-')
    order = [(impl, dt, m) for impl, dt in (('sdpa', 'f32'), ('eager', 'f32'), ('sdpa', 'bf16'), ('eager', 'bf16')) for m in ('gpt2', 'vit')]
    for impl, dt, which in order:
        if ONLY and which not in ONLY:
            continue
        is_gpt = which == 'gpt2'
        cfg = gcfg if is_gpt else vcfg
        row = dict(kind='model', model='GPT-2 small' if is_gpt else 'ViT-B/16', name=f"{'GPT-2 small' if is_gpt else 'ViT-B/16'} {impl}",
                   attn=impl, dtype=dt, precision='bf16 autocast, fp32 weights' if dt == 'bf16' else 'fp32', B=gB if is_gpt else vB)
        if is_gpt:
            row.update(L=gL, layers=cfg.n_layer, hidden=cfg.n_embd, heads=cfg.n_head, vocab=cfg.vocab_size)
        else:
            row.update(image=cfg.image_size, patch=cfg.patch_size, layers=cfg.num_hidden_layers, hidden=cfg.hidden_size, heads=cfg.num_attention_heads)
        if left() < 15:
            row['skipped'] = f'time budget ({left():.0f} s left)'
            out.emit(row)
            continue
        print(f"model {row['name']} {dt}", flush=True)
        model = opt = None
        try:
            t = time.perf_counter()
            torch.manual_seed(1)
            model = build(GPT2LMHeadModel if is_gpt else ViTForImageClassification, cfg, impl, os.path.join(tmp, which)).to(dev)
            torch.cuda.synchronize()
            row['init_ms'] = (time.perf_counter() - t) * 1e3
            row['attn_implementation'] = getattr(model.config, '_attn_implementation', None)
            row['params'] = sum(p.numel() for p in model.parameters())
            amp = (lambda: torch.autocast('cuda', dtype=torch.bfloat16)) if dt == 'bf16' else contextlib.nullcontext
            g = torch.Generator(device='cpu').manual_seed(1)
            if is_gpt:
                ids = torch.randint(0, cfg.vocab_size, (gB, gL), generator=g).to(dev)
                fwd_kw, train_kw = dict(input_ids=ids), dict(input_ids=ids, labels=ids)
                prompt_ids = torch.randint(0, cfg.vocab_size, (1, prompt), generator=g).to(dev)
            else:
                px = torch.randn(vB, 3, cfg.image_size, cfg.image_size, generator=g).to(dev)
                labels = (torch.arange(vB) * 37 % cfg.num_labels).to(dev)
                fwd_kw, train_kw = dict(pixel_values=px), dict(pixel_values=px, labels=labels)
            model.eval()

            def fwd():
                with torch.no_grad(), amp():
                    model(**fwd_kw)
            into(row, 'fwd', fwd)
            if is_gpt and left() > 10:
                def gen():
                    with torch.no_grad(), amp():
                        model.generate(prompt_ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, use_cache=True,
                                       pad_token_id=cfg.eos_token_id, attention_mask=torch.ones_like(prompt_ids))
                m = into(row, 'gen', gen, reps=2)
                if m:
                    row.update(gen_new_tokens=new, gen_prompt=prompt, gen_tokens_per_s=new / (m['ms'] / 1e3))
            if left() > 10:
                model.train()
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
                losses = []

                def train():
                    with amp():
                        loss = model(**train_kw).loss
                    loss.backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    losses.append(loss.item())
                into(row, 'train', train)
                row['train_losses'] = ','.join(f'{x:.4f}' for x in losses)
                row['train_loss_finite'] = all(x == x and abs(x) != float('inf') for x in losses)
        except Exception as e:
            row['error'] = (type(e).__name__ + ': ' + str(e)).replace('\n', ' ')[:300]
        out.emit(row)
        del model, opt
        torch.cuda.empty_cache()
    print(f'torch-models done: {len(out.rows)} rows in {time.time() - T0:.0f} s', flush=True)


if __name__ == '__main__':
    main()
