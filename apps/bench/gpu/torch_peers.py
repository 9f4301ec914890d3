#!/usr/bin/env python3
"""PyTorch peers on the same GPU, same shapes as webattn_peers.mjs / tfjs_peer.mjs: matmul n³ (fp32 with TF32
off and on, fp16, bf16) and attention forward (SDPA flash fp16, efficient fp32, math fp32, and unfused
matmul -> softmax -> matmul in fp32 and fp16)."""
import argparse, json
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

def bench(fn, reps=20):
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

ap = argparse.ArgumentParser()
ap.add_argument('--json', required=True)
a = ap.parse_args()
rows = []
def emit(r):
    rows.append(r)
    print(json.dumps(r), flush=True)
    json.dump(dict(torch=torch.__version__, gpu=torch.cuda.get_device_name(), rows=rows), open(a.json, 'w'), indent=1)

for n in (1024, 2048, 4096):
    for tag, dt, tf32 in (('f32', torch.float32, False), ('f32 tf32', torch.float32, True), ('f16', torch.float16, False), ('bf16', torch.bfloat16, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        x = torch.randn(n, n, device='cuda', dtype=dt)
        y = torch.randn(n, n, device='cuda', dtype=dt)
        ms = bench(lambda: x @ y)
        emit(dict(scenario='torch', name=f'matmul {n}³ {tag}', ms=ms, tflops=2 * n ** 3 / ms / 1e9))
torch.backends.cuda.matmul.allow_tf32 = False

shapes = [dict(B=1, H=16, L=4096, E=64, tag=''), dict(B=8, H=16, L=1024, E=64, tag=''), dict(B=128, H=16, L=196, E=64, tag='vit ')]
with torch.no_grad():
    for s in shapes:
        B, H, L, E = s['B'], s['H'], s['L'], s['E']
        flops = 4 * B * H * L * L * E
        for tag, dt in (('f32', torch.float32), ('f16', torch.float16)):
            q, k, v = (torch.randn(B, H, L, E, device='cuda', dtype=dt) for _ in range(3))
            row = dict(scenario='torch', name=f"{s['tag']}attention B={B} H={H} L={L} E={E} {tag}")
            backends = ((SDPBackend.FLASH_ATTENTION, 'flash'), (SDPBackend.EFFICIENT_ATTENTION, 'efficient'), (SDPBackend.MATH, 'math'))
            for be, key in backends:
                try:
                    with sdpa_kernel([be]):
                        ms = bench(lambda: F.scaled_dot_product_attention(q, k, v))
                    row[key + '_ms'] = ms
                    row[key + '_tflops'] = flops / ms / 1e9
                except Exception as e:
                    row[key + '_error'] = repr(e)[:160]
            scale = E ** -0.5
            ms = bench(lambda: torch.softmax((q @ k.transpose(-1, -2)) * scale, -1) @ v)
            row['unfused_ms'] = ms
            row['unfused_tflops'] = flops / ms / 1e9
            emit(row)
            del q, k, v
            torch.cuda.empty_cache()
