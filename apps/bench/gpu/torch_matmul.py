#!/usr/bin/env python3
"""PyTorch matmul peers on the same GPU: fp32 (TF32 off and on), fp16, bf16 at n = 1024, 2048, 4096."""
import argparse, json
import torch

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
for n in (1024, 2048, 4096):
    for tag, dt, tf32 in (('f32', torch.float32, False), ('f32 tf32', torch.float32, True), ('f16', torch.float16, False), ('bf16', torch.bfloat16, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        x = torch.randn(n, n, device='cuda', dtype=dt)
        y = torch.randn(n, n, device='cuda', dtype=dt)
        ms = bench(lambda: x @ y)
        rows.append(dict(scenario='torch', name=f'matmul {n}³ {tag}', ms=ms, tflops=2 * n ** 3 / ms / 1e9))
        print(json.dumps(rows[-1]), flush=True)
torch.backends.cuda.matmul.allow_tf32 = False
json.dump(dict(torch=torch.__version__, gpu=torch.cuda.get_device_name(), rows=rows), open(a.json, 'w'), indent=1)
