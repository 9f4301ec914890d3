#!/usr/bin/env python3
"""PyTorch SDPA flash fp16 on the shapes of apps/bench/gpu/sgmat_attn.mjs (same GPU, same call): fwd and fwd+bwd."""
import json, sys
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

def bench(fn, reps=10):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(reps):
        fn()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / reps

rows = []
for (B, H, L, E, causal) in ((8, 16, 4096, 64, False), (8, 16, 1024, 64, False), (128, 16, 196, 64, False), (8, 16, 1024, 128, False), (8, 16, 4096, 64, True)):
    flops = 4 * B * H * L * L * E / (2 if causal else 1)
    q, k, v = (torch.randn(B, H, L, E, device='cuda', dtype=torch.float16, requires_grad=True) for _ in range(3))
    g = torch.randn_like(q)
    row = dict(scenario='torch', name=f"B={B} H={H} L={L} E={E}{' causal' if causal else ''} f16")
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        with torch.no_grad():
            ms = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
        row.update(fwd_ms=ms, fwd_tflops=flops / ms / 1e9)
        ms = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal).backward(g))
        row.update(fwdbwd_ms=ms, fwdbwd_tflops=3.5 * flops / ms / 1e9)
    rows.append(row)
    print('ROW ' + json.dumps(row), flush=True)
if len(sys.argv) > 1:
    json.dump(rows, open(sys.argv[1], 'w'), indent=1)
