#!/usr/bin/env python3
"""The seed shapes in PyTorch on the same GPU: SDPA flash (bf16) and math/efficient (fp32), FlexAttention
compiled (fp32: softcap, sliding window), padded vs varlen packing. Writes JSON rows like webattn-bench."""
import argparse, json, time
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

def shapes():
    out = []
    for E in (64, 128):
        for L in (512, 1024, 2048, 4096, 8192):
            for causal in (False, True):
                out.append(dict(B=8, H=16, L=L, E=E, causal=causal, tag=None))
    out.append(dict(B=32, H=16, L=1024, E=64, causal=True, tag=None))
    out.append(dict(B=128, H=16, L=196, E=64, causal=False, tag='vit'))
    out.append(dict(B=8, H=12, L=3136, E=64, causal=False, tag='long'))
    return out

def bench(fn, reps=5):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(reps):
        fn()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / reps

def name_of(s):
    return f"{s['tag'] + ' ' if s['tag'] else ''}B={s['B']} H={s['H']} L={s['L']} E={s['E']}{' causal' if s['causal'] else ''}"

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--json', required=True)
    a = ap.parse_args()
    dev = 'cuda'
    rows = []
    from torch.nn.attention.flex_attention import flex_attention, create_block_mask
    flex = torch.compile(flex_attention)
    for s in shapes():
        B, H, L, E, causal = s['B'], s['H'], s['L'], s['E'], s['causal']
        flops = 4 * B * H * L * L * E / (2 if causal else 1)
        row = dict(scenario='torch', name=name_of(s))
        for dtype, backend, key in ((torch.bfloat16, SDPBackend.FLASH_ATTENTION, 'flash_bf16'), (torch.float32, SDPBackend.EFFICIENT_ATTENTION, 'efficient_fp32'), (torch.float32, SDPBackend.MATH, 'math_fp32')):
            if key == 'math_fp32' and B * H * L * L * 4 > 16e9:
                row[key + '_ms'] = None
                continue
            q, k, v = (torch.randn(B, H, L, E, device=dev, dtype=dtype, requires_grad=True) for _ in range(3))
            with sdpa_kernel([backend]):
                try:
                    torch.cuda.reset_peak_memory_stats()
                    with torch.no_grad():
                        ms = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                    row[key + '_ms'] = ms
                    row[key + '_tflops'] = flops / ms / 1e9
                    row[key + '_peak_MiB'] = torch.cuda.max_memory_allocated() / 2**20
                    g = torch.randn_like(q)
                    def fb():
                        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                        o.backward(g)
                    row[key + '_fwdbwd_ms'] = bench(fb, reps=3)
                except Exception as e:  # a backend that refuses a shape
                    row[key + '_error'] = repr(e)[:200]
            del q, k, v
            torch.cuda.empty_cache()
        if not causal and L >= 1024 and E == 64 and not s['tag']:
            q, k, v = (torch.randn(B, H, L, E, device=dev, dtype=torch.float32) for _ in range(3))
            with torch.no_grad():
                row['flex_softcap_fp32_ms'] = bench(lambda: flex(q, k, v, score_mod=lambda sc, b, h, qi, ki: 30 * torch.tanh(sc / 30)))
                bm = create_block_mask(lambda b, h, qi, ki: (qi >= ki) & (qi - ki <= 256), None, None, L, L, device=dev)
                row['flex_window256_fp32_ms'] = bench(lambda: flex(q, k, v, block_mask=bm))
            del q, k, v
        rows.append(row)
        print(json.dumps(row), flush=True)
        json.dump(dict(torch=torch.__version__, gpu=torch.cuda.get_device_name(), rows=rows), open(a.json, 'w'), indent=1)
    gen = torch.Generator().manual_seed(7)
    for L in (512, 2048):
        lengths = torch.randint(1, L + 1, (16,), generator=gen).tolist()
        H = 16
        padded = torch.randn(16, H, L, 64, device=dev, dtype=torch.bfloat16)
        keep = torch.zeros(16, 1, 1, L, dtype=torch.bool, device=dev)
        for b, n in enumerate(lengths):
            keep[b, :, :, :n] = True
        causal = torch.ones(L, L, dtype=torch.bool, device=dev).tril()
        m = keep & causal
        with torch.no_grad():
            tpad = bench(lambda: F.scaled_dot_product_attention(padded, padded, padded, attn_mask=m))
            seqs = [torch.randn(1, H, n, 64, device=dev, dtype=torch.bfloat16) for n in lengths]
            tloop = bench(lambda: [F.scaled_dot_product_attention(x, x, x, is_causal=True) for x in seqs])
        rows.append(dict(scenario='torch', name=f'varlen B=16 H={H} lengths 1..{L}', padded_mask_bf16_ms=tpad, per_sequence_flash_bf16_ms=tloop))
        print(json.dumps(rows[-1]), flush=True)
    json.dump(dict(torch=torch.__version__, gpu=torch.cuda.get_device_name(), rows=rows), open(a.json, 'w'), indent=1)

if __name__ == '__main__':
    main()
