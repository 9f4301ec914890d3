#!/usr/bin/env python3
"""transformers' GPT2LMHeadModel and ViTForImageClassification beside webattn_models.mjs, same GPU, same configs:
  GPT-2 small (124M), batch 8 x 1024: forward (no_grad), training step (loss + backward + torch.optim.AdamW) and
  greedy generation (64-token prompt, exactly 32 new tokens, KV cache) tokens/s;
  ViT-B/16 (224 px, 1000 classes), batch 32: forward and training step.
attn_implementation eager and sdpa; float32 (TF32 off, PyTorch's default) and bfloat16 autocast (fp32 master weights).
Random init, dropout 0. Each measurement: first call, second call, then the median of a few more (synced).
  python3 apps/bench/gpu/torch_models.py --json out.json     (QUICK=1: tiny configs; DEADLINE_S: budget)
--scenario vit | gpt2-varlen: the published experiments of issue 13 beside webattn_models.mjs --scenario (same shapes,
depths VIT_DEPTH / VIT_LONG_DEPTH / VARLEN_DEPTH first, at equal depth with webattn, then the published 24 layers), in
plain PyTorch modules: eager / SDPA / SDPA-flash / FlexAttention (compiled) ViT; GPT-2 padded SDPA vs packed varlen_attn,
FlexAttention document mask and SDPA with a dense block-diagonal mask."""
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


def train_into(row, loss_fn, opt, peak=True, **kw):
    """Times a training step (forward `loss_fn()` → backward → `opt.step()` → zero grads) into row['train_*'],
    with the step's losses and, when `peak`, the peak CUDA memory of the steps."""
    losses = []
    if peak:
        torch.cuda.reset_peak_memory_stats()

    def train():
        loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    m = into(row, 'train', train, **kw)
    if peak:
        row['train_peak_mib'] = round(torch.cuda.max_memory_allocated() / 2 ** 20)
    row['train_losses'] = ','.join(f'{x:.4f}' for x in losses)
    row['train_loss_finite'] = all(x == x and abs(x) != float('inf') for x in losses)
    return m


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


# ---------------------------------------------------------------- published scenarios (issue 13)
def published_lengths(B, max_len, seed=11):
    """Same list as webattn_models.mjs publishedLengths: B lengths uniform in 1..max_len from a 32-bit LCG."""
    x, out = seed, []
    for _ in range(B):
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        out.append(1 + ((x >> 8) % max_len))
    return out


def env_int(k, d):
    return int(os.environ[k]) if os.environ.get(k) else d


_FLEX = {}


def flex_fn():
    """torch.compile(flex_attention), built once (its first call per shape compiles)."""
    if 'f' not in _FLEX:
        from torch.nn.attention.flex_attention import flex_attention
        _FLEX['f'] = torch.compile(flex_attention)
    return _FLEX['f']


def sdpa_backend_ctx(kind, dtype):
    """`flash`: SDPA restricted to FlashAttention (fp16/bf16 only; in fp32 the memory-efficient kernel, named in the row)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    if kind != 'flash':
        return contextlib.nullcontext, None
    if dtype == torch.float32:
        return (lambda: sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION])), 'SDPA memory-efficient (flash takes fp16/bf16 only)'
    return (lambda: sdpa_kernel([SDPBackend.FLASH_ATTENTION])), 'SDPA FlashAttention'


def make_vit(cfg, attend):
    import torch.nn as nn
    import torch.nn.functional as F
    d, H, p = cfg['hidden'], cfg['heads'], cfg['patch']
    E = d // H

    class Block(nn.Module):
        def __init__(s):
            super().__init__()
            s.ln1, s.ln2 = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)
            s.q, s.k, s.v, s.o = (nn.Linear(d, d) for _ in range(4))
            s.fc1, s.fc2 = nn.Linear(d, cfg['mlp']), nn.Linear(cfg['mlp'], d)

        def forward(s, x):
            B, L, _ = x.shape
            h = s.ln1(x)
            q, k, v = (m(h).view(B, L, H, E).transpose(1, 2) for m in (s.q, s.k, s.v))
            x = x + s.o(attend(q, k, v).transpose(1, 2).reshape(B, L, d))
            return x + s.fc2(F.gelu(s.fc1(s.ln2(x))))

    class ViT(nn.Module):
        def __init__(s):
            super().__init__()
            s.patch = nn.Conv2d(3, d, p, stride=p)
            n = (cfg['image'] // p) ** 2
            s.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
            s.pos = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
            s.blocks = nn.ModuleList(Block() for _ in range(cfg['layers']))
            s.ln = nn.LayerNorm(d, eps=1e-12)
            s.head = nn.Linear(d, cfg['classes'])

        def forward(s, px, labels):
            x = s.patch(px).flatten(2).transpose(1, 2)
            x = torch.cat([s.cls.expand(x.shape[0], -1, -1), x], 1) + s.pos
            for b in s.blocks:
                x = b(x)
            return F.cross_entropy(s.head(s.ln(x)[:, 0]).float(), labels)
    return ViT()


def vit_attention(kind, grid, L, dev):
    """(attend(q, k, v), note) for eager / sdpa / flash / flex+softcap / flex+neighborhood (5×5 on the patch grid, cls sees all)."""
    import torch.nn.functional as F
    if kind == 'eager':
        return (lambda q, k, v: torch.softmax((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5, -1) @ v), 'explicit matmul + softmax'
    if kind in ('sdpa', 'flash'):
        return (lambda q, k, v: F.scaled_dot_product_attention(q, k, v)), None
    flex = flex_fn()
    if kind == 'flex+softcap':
        def softcap(score, b, h, qi, ki):
            return 20.0 * torch.tanh(score / 20.0)
        return (lambda q, k, v: flex(q, k, v, score_mod=softcap)), 'torch.compile(flex_attention), score_mod 20·tanh(s/20)'
    from torch.nn.attention.flex_attention import create_block_mask

    def nb(b, h, qi, ki):
        qq, kk = qi - 1, ki - 1
        near = ((qq // grid - kk // grid).abs() <= 2) & ((qq % grid - kk % grid).abs() <= 2)
        return (qi == 0) | (ki == 0) | near
    bm = create_block_mask(nb, None, None, L, L, device=dev)
    return (lambda q, k, v: flex(q, k, v, block_mask=bm)), 'torch.compile(flex_attention), 5×5 neighbourhood block mask (create_block_mask, block 128)'


def vit_published(out):
    dev = 'cuda'
    depth = env_int('VIT_DEPTH', 2)
    if QUICK:
        groups = {'patch16': (dict(image=32, patch=4, hidden=64, heads=4, mlp=256, classes=10), 2, depth, ['eager', 'sdpa', 'flash', 'flex+softcap', 'flex+neighborhood']),
                  'patch4 (long)': (dict(image=32, patch=2, hidden=64, heads=4, mlp=256, classes=10), 2, 1, ['flash', 'sdpa', 'flex+softcap', 'flex+neighborhood'])}
    else:
        big = dict(image=224, hidden=1024, heads=16, mlp=4096, classes=1000)
        groups = {'patch16': (dict(big, patch=16), env_int('VIT_B', 128), depth, ['eager', 'sdpa', 'flash', 'flex+softcap', 'flex+neighborhood']),
                  'patch4 (long)': (dict(big, patch=4), env_int('VIT_LONG_B', 8), env_int('VIT_LONG_DEPTH', 1), ['flash', 'sdpa', 'flex+softcap', 'flex+neighborhood'])}
    # most informative first (a run cut by its deadline loses the tail): fp32 at webattn's depth (the equal-depth
    # comparison), bf16 at the published 24 layers, bf16 at webattn's depth, fp32 at 24 layers
    if os.environ.get('VIT_VARIANTS'):  # e.g. patch16: only those groups
        groups = {k: v for k, v in groups.items() if k in os.environ['VIT_VARIANTS'].split(',')}
    plan = [(v, 'eq', 'f32') for v in groups] + ([] if QUICK else [(v, 24, 'bf16') for v in groups]) + [(v, 'eq', 'bf16') for v in groups] + ([] if QUICK else [(v, 24, 'f32') for v in groups])
    inputs = {}
    for variant, layers, dt in plan:
        base, B, eq_depth, kinds = groups[variant]
        layers = eq_depth if layers == 'eq' else layers
        grid = base['image'] // base['patch']
        L = grid * grid + 1
        if variant not in inputs:
            g = torch.Generator(device='cpu').manual_seed(1)
            inputs[variant] = (torch.randn(B, 3, base['image'], base['image'], generator=g).to(dev), (torch.arange(B) * 37 % base['classes']).to(dev))
        px, labels = inputs[variant]
        for kind in kinds:
            row = dict(kind='vit-published', variant=variant, name=f'ViT {variant} {kind}', attn=kind, dtype=dt,
                       precision='bf16 autocast, fp32 weights' if dt == 'bf16' else 'fp32', B=B, L=L, image=base['image'],
                       patch=base['patch'], layers=layers, hidden=base['hidden'], heads=base['heads'], head_dim=base['hidden'] // base['heads'])
            if left() < 20:
                row['skipped'] = f'time budget ({left():.0f} s left)'
                out.emit(row)
                continue
            print(f"model {row['name']} {dt} depth {layers} B={B}", flush=True)
            model = opt = None
            try:
                torch.manual_seed(1)
                attend, note = vit_attention(kind, grid, L, dev)
                dtype = torch.bfloat16 if dt == 'bf16' else torch.float32
                ctx, bnote = sdpa_backend_ctx(kind, dtype)
                row['impl'] = bnote or note or 'F.scaled_dot_product_attention (default backend choice)'
                model = make_vit(dict(base, layers=layers), attend).to(dev)
                row['params'] = sum(p.numel() for p in model.parameters())
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
                amp = (lambda: torch.autocast('cuda', dtype=torch.bfloat16)) if dt == 'bf16' else contextlib.nullcontext

                def loss_fn():
                    with ctx(), amp():
                        return model(px, labels)
                train_into(row, loss_fn, opt, budget_s=6.0)
            except Exception as e:
                row['error'] = (type(e).__name__ + ': ' + str(e)).replace('\n', ' ')[:300]
            out.emit(row)
            del model, opt
            torch.cuda.empty_cache()


def make_gpt2(cfg, attend):
    import torch.nn as nn
    import torch.nn.functional as F
    d, H = cfg['hidden'], cfg['heads']
    E = d // H

    class Block(nn.Module):
        def __init__(s):
            super().__init__()
            s.ln_1, s.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
            s.c_attn, s.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            s.c_fc, s.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(s, x, meta):
            B, L, _ = x.shape
            q, k, v = s.c_attn(s.ln_1(x)).view(B, L, 3, H, E).unbind(2)
            x = x + s.c_proj(attend(q, k, v, meta).reshape(B, L, d))
            return x + s.mlp_proj(F.gelu(s.c_fc(s.ln_2(x)), approximate='tanh'))

    class GPT2(nn.Module):
        def __init__(s):
            super().__init__()
            s.wte, s.wpe = nn.Embedding(cfg['vocab'], d), nn.Embedding(cfg['positions'], d)
            for e in (s.wte, s.wpe):
                nn.init.normal_(e.weight, std=0.02)
            s.h = nn.ModuleList(Block() for _ in range(cfg['layers']))
            s.ln_f = nn.LayerNorm(d)

        def forward(s, ids, pos, meta, labels=None):
            x = s.wte(ids) + s.wpe(pos)
            for b in s.h:
                x = b(x, meta)
            logits = s.ln_f(x) @ s.wte.weight.t()  # tied lm_head
            if labels is None:
                return logits
            return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100)
    return GPT2()


def gpt2_varlen(out):
    """Padded (SDPA + padding mask) vs packed (varlen_attn / FlexAttention document mask / SDPA dense block-diagonal mask)."""
    import torch.nn.functional as F
    dev = 'cuda'
    depth = env_int('VARLEN_DEPTH', 1)
    if QUICK:
        base, B, max_len, depths = dict(vocab=1024, positions=128, hidden=64, heads=4), 4, 63, [depth]
    else:
        base, B, max_len, depths = dict(vocab=1024, positions=1024, hidden=1024, heads=16), 32, 1023, [depth, 24]
    lengths = published_lengths(B, max_len)
    Lp, total = max(lengths), sum(lengths)
    tok = lambda b, i: (b * 131 + i * 17) % base['vocab']
    p_ids = torch.zeros(B, Lp, dtype=torch.long)
    p_lab = torch.full((B, Lp), -100, dtype=torch.long)
    keep = torch.zeros(B, Lp, dtype=torch.bool)
    k_ids, k_pos, k_lab, doc = [], [], [], []
    for b, n in enumerate(lengths):
        for i in range(n):
            p_ids[b, i] = p_lab[b, i] = tok(b, i)
            keep[b, i] = True
            k_ids.append(tok(b, i))
            k_pos.append(i)
            k_lab.append(-100 if i == 0 else tok(b, i))
            doc.append(b)
    p_ids, p_lab, keep = p_ids.to(dev), p_lab.to(dev), keep.to(dev)
    p_pos = torch.arange(Lp, device=dev).expand(B, Lp)
    k_ids, k_pos, k_lab = (torch.tensor(a, device=dev)[None] for a in (k_ids, k_pos, k_lab))
    doc = torch.tensor(doc, device=dev)
    cu = torch.tensor([0] + [sum(lengths[: i + 1]) for i in range(B)], dtype=torch.int32, device=dev)
    pad_mask = keep[:, None, None, :] & torch.ones(Lp, Lp, dtype=torch.bool, device=dev).tril()
    try:
        from torch.nn.attention.varlen import varlen_attn
        import inspect
        causal_kw = dict(is_causal=True) if 'is_causal' in inspect.signature(varlen_attn).parameters else dict(window_size=(-1, 0))
        varlen_note = f'torch.nn.attention.varlen.varlen_attn({", ".join(f"{k}={v}" for k, v in causal_kw.items())})'
    except Exception as e:
        varlen_attn, varlen_note = None, f'torch.nn.attention.varlen unavailable: {e!r}'[:200]
    bm_cache = {}

    def doc_block_mask():
        if 'bm' not in bm_cache:
            from torch.nn.attention.flex_attention import create_block_mask
            bm_cache['bm'] = create_block_mask(lambda b, h, qi, ki: (doc[qi] == doc[ki]) & (qi >= ki), None, None, total, total, device=dev)
        return bm_cache['bm']

    # attend(q, k, v, meta) with q, k, v [B, L, H, E] -> [B, L, H, E]
    def padded_sdpa(q, k, v, meta):
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=pad_mask).transpose(1, 2)

    def packed_varlen(q, k, v, meta):
        return varlen_attn(q[0].contiguous(), k[0].contiguous(), v[0].contiguous(), cu, cu, max_len, max_len, **causal_kw)[None]

    def packed_flex(q, k, v, meta):
        return flex_fn()(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=meta).transpose(1, 2)

    def packed_sdpa(q, k, v, meta):
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=meta).transpose(1, 2)
    cases = {
        'f32': [('sdpa', 'padded', padded_sdpa), ('flex (document mask)', 'packed', packed_flex), ('sdpa', 'packed', packed_sdpa)],
        'bf16': [('sdpa', 'padded', padded_sdpa), ('varlen_attn', 'packed', packed_varlen), ('flex (document mask)', 'packed', packed_flex)],
    }
    impl = {'sdpa padded': 'F.scaled_dot_product_attention, bool causal+padding mask [B,1,L,L]', 'varlen_attn packed': varlen_note,
            'flex (document mask) packed': 'torch.compile(flex_attention), document causal block mask', 'sdpa packed': 'F.scaled_dot_product_attention, dense block-diagonal causal mask [1,1,T,T]'}
    # fp32 at webattn's depth (equal-depth comparison), bf16 at 24 layers (the published setting), bf16 at webattn's depth, fp32 at 24
    plan = [(depths[0], 'f32')] + ([] if QUICK else [(24, 'bf16')]) + [(depths[0], 'bf16')] + ([] if QUICK else [(24, 'f32')])
    if os.environ.get('VARLEN_PLAN'):  # e.g. "eq:f32,24:bf16": only those (depth, dtype) pairs
        want = {(depths[0] if d == 'eq' else int(d), t) for d, t in (x.split(':') for x in os.environ['VARLEN_PLAN'].split(','))}
        plan = [x for x in plan if x in want]
    for layers, dt in plan:
        res = {}
        for attn, layout, fn in cases[dt]:
            row = dict(kind='gpt2-varlen', name=f'GPT-2 {layout} {attn}', attn=attn, layout=layout, dtype=dt,
                       precision='bf16 autocast, fp32 weights' if dt == 'bf16' else 'fp32', impl=impl[f'{attn} {layout}'], B=B, max_len=max_len,
                       longest=Lp, tokens=total, padded_tokens=B * Lp, layers=layers, hidden=base['hidden'], heads=base['heads'], vocab=base['vocab'], lengths_seed=11)
            if left() < 20:
                row['skipped'] = f'time budget ({left():.0f} s left)'
                out.emit(row)
                continue
            if attn == 'varlen_attn' and varlen_attn is None:
                row['error'] = varlen_note
                out.emit(row)
                continue
            print(f"model {row['name']} {dt} depth {layers}", flush=True)
            model = opt = None
            try:
                torch.manual_seed(1)
                model = make_gpt2(dict(base, layers=layers), fn).to(dev)
                row['params'] = sum(p.numel() for p in model.parameters())
                if layout == 'padded':
                    args = (p_ids, p_pos, None)
                    lab = p_lab
                else:
                    meta = None
                    if fn is packed_flex:
                        meta = doc_block_mask()
                    elif fn is packed_sdpa:
                        meta = ((doc[:, None] == doc[None, :]) & torch.ones(total, total, dtype=torch.bool, device=dev).tril())[None, None]
                    args = (k_ids, k_pos, meta)
                    lab = k_lab
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
                amp = (lambda: torch.autocast('cuda', dtype=torch.bfloat16)) if dt == 'bf16' else contextlib.nullcontext

                def loss_fn():
                    with amp():
                        return model(*args, labels=lab)
                train_into(row, loss_fn, opt, budget_s=5.0)
                model.eval()

                def ev():
                    with torch.no_grad(), amp():
                        model(*args)
                into(row, 'eval', ev, budget_s=3.0)
            except Exception as e:
                row['error'] = (type(e).__name__ + ': ' + str(e)).replace('\n', ' ')[:300]
            res[layout] = res.get(layout) or row
            if layout == 'packed':
                pd = res.get('padded', {})
                for k in ('train', 'eval'):
                    if pd.get(f'{k}_ms') and row.get(f'{k}_ms'):
                        row[f'{k}_padded_over_packed'] = pd[f'{k}_ms'] / row[f'{k}_ms']
            out.emit(row)
            del model, opt
            torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--json', default=None)
    ap.add_argument('--scenario', default=os.environ.get('MODELS_SCENARIO', 'models'), choices=['models', 'vit', 'gpt2-varlen'])
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
    if a.scenario != 'models':
        out.meta.update(scenario=a.scenario, impl='plain PyTorch modules (same layer layout as @webattn/models), random init, torch.optim.AdamW(lr=1e-4)')
        (vit_published if a.scenario == 'vit' else gpt2_varlen)(out)
        out.write()
        print(f'torch-models {a.scenario} done: {len(out.rows)} rows in {time.time() - T0:.0f} s', flush=True)
        return
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

                def loss_fn():
                    with amp():
                        return model(**train_kw).loss
                train_into(row, loss_fn, opt, peak=False)
        except Exception as e:
            row['error'] = (type(e).__name__ + ': ' + str(e)).replace('\n', ' ')[:300]
        out.emit(row)
        del model, opt
        torch.cuda.empty_cache()
    print(f'torch-models done: {len(out.rows)} rows in {time.time() - T0:.0f} s', flush=True)


if __name__ == '__main__':
    main()
