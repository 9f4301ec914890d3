#!/usr/bin/env python3
"""PyTorch on the shapes of shapes.json (the ones webattn_peers.mjs and tfjs_peer.mjs run), same GPU:
  matmul n^3 (fp32 with TF32 off and on, fp16, bf16);
  attention forward and forward+backward: SDPA flash (fp16, bf16), efficient (fp32, fp16), math (fp32, where
  the L x L scores stay under 2 GiB) and the unfused matmul -> softmax -> matmul (fp32, fp16; same bound);
  FlexAttention (torch.compile) softcap and causal sliding window, fp32 and fp16, with its compile time;
  varlen: torch.nn.attention.varlen.varlen_attn (packed, fp16) vs SDPA with a padding mask (padded).
Rows stream to stdout and to --json after every row. QUICK=1: tiny shapes; DEADLINE_S: time budget.
  python3 apps/bench/gpu/torch_peers.py --json out.json"""
import argparse, inspect, json, os, sys, time

import torch

from bench_out import Out
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HERE = os.path.dirname(os.path.abspath(__file__))
QUICK = os.environ.get('QUICK') == '1'
# SHAPES_FILE: another file of shapes.json's form (a rerun of some rows)
SH = json.load(open(os.environ.get('SHAPES_FILE') or os.path.join(HERE, 'shapes.json')))['quick' if QUICK else 'full']
T0 = time.time()
DEADLINE = float(os.environ.get('DEADLINE_S', '1e9'))
left = lambda: DEADLINE - (time.time() - T0)
DT = {'f32': torch.float32, 'f16': torch.float16, 'bf16': torch.bfloat16}


def attn_name(s):
    return f"{s['tag'] + ' ' if s.get('tag') else ''}B={s['B']} H={s['H']} L={s['L']} E={s['E']}{' causal' if s.get('causal') else ''}"


def varlen_lengths(B, max_len):
    """Same lengths as common.mjs varlenLengths: evenly over 1..max_len in the order i*7 mod B."""
    return [1 + ((max_len - 1) * ((i * 7) % B)) // max(1, B - 1) for i in range(B)]


def bench(fn, target_ms=100.0, max_reps=20):
    """(first call ms, median-free mean ms of the timed reps, reps): one call apart (compiles, autotune),
    one more warm-up, then CUDA events around enough reps for ~target_ms (at least 2)."""
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    first = (time.perf_counter() - t) * 1e3
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    fn()
    e.record()
    torch.cuda.synchronize()
    one = max(s.elapsed_time(e), 1e-3)
    reps = int(max(2, min(max_reps, target_ms // one)))
    s.record()
    for _ in range(reps):
        fn()
    e.record()
    torch.cuda.synchronize()
    return first, s.elapsed_time(e) / reps, reps


def into(row, key, fn, **kw):
    try:
        first, ms, reps = bench(fn, **kw)
        row[key + '_ms'], row[key + '_first_ms'], row[key + '_reps'] = ms, first, reps
        return ms
    except Exception as e:  # a backend that refuses a shape or dtype
        row[key + '_error'] = (type(e).__name__ + ': ' + str(e)).replace('\n', ' ')[:300]
        return None
    finally:
        torch.cuda.empty_cache()


def enough(out, row, need):
    if left() > need:
        return True
    row['skipped'] = f'time budget ({left():.0f} s left)'
    out.emit(row)
    return False


def grads_fn(f, inputs, g):
    def run():
        for t in inputs:
            t.grad = None
        f().backward(g)
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--json', default=None)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print('torch-peers: no CUDA device', file=sys.stderr)
        sys.exit(2)
    dev = 'cuda'
    props = torch.cuda.get_device_properties(0)
    out = Out(a.json, dict(peer='torch', date=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), quick=QUICK,
                           torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                           gpu=torch.cuda.get_device_name(), sm_count=props.multi_processor_count,
                           memory_GiB=props.total_memory / 2**30), T0)
    print(f'torch-peers: torch {torch.__version__} on {torch.cuda.get_device_name()}', flush=True)

    # ---- matmul
    for n in SH['matmul']:
        for tag, dt, tf32 in (('f32', torch.float32, False), ('tf32', torch.float32, True), ('f16', torch.float16, False), ('bf16', torch.bfloat16, False)):
            row = dict(kind='matmul', name=f'matmul {n}³', dtype=tag, n=n)
            if not enough(out, row, 3):
                continue
            torch.backends.cuda.matmul.allow_tf32 = tf32
            x = torch.randn(n, n, device=dev, dtype=dt)
            y = torch.randn(n, n, device=dev, dtype=dt)
            into(row, 'fwd', lambda: x @ y)
            out.emit(row)
            del x, y
    torch.backends.cuda.matmul.allow_tf32 = False

    # ---- attention
    plan = (('f32', (('efficient', SDPBackend.EFFICIENT_ATTENTION), ('math', SDPBackend.MATH), ('unfused', None))),
            ('f16', (('flash', SDPBackend.FLASH_ATTENTION), ('efficient', SDPBackend.EFFICIENT_ATTENTION), ('unfused', None))),
            ('bf16', (('flash', SDPBackend.FLASH_ATTENTION),)))
    for s in SH['attention']:
        B, H, L, E, causal = s['B'], s['H'], s['L'], s['E'], bool(s.get('causal'))
        big = B * H * L * L * 4 > 2 * 2**30
        for tag, backends in plan:
            row = dict(kind='attention', name=attn_name(s), dtype=tag, B=B, H=H, L=L, E=E, causal=causal)
            if not enough(out, row, 6):
                continue
            q, k, v, g = (torch.randn(B, H, L, E, device=dev, dtype=DT[tag], requires_grad=i < 3) for i in range(4))
            scale = E ** -0.5
            mask = torch.ones(L, L, dtype=torch.bool, device=dev).tril() if causal else None
            for key, be in backends:
                if key in ('math', 'unfused') and big:
                    row[key + '_skipped'] = 'L×L scores over 2 GiB'
                    continue
                if be is None:
                    def f():
                        sc = (q @ k.transpose(-1, -2)) * scale
                        if mask is not None:
                            sc = sc.masked_fill(~mask, float('-inf'))
                        return torch.softmax(sc, -1) @ v
                else:
                    def f(be=be):
                        with sdpa_kernel([be]):
                            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                with torch.no_grad():
                    ok = into(row, key + '_fwd', f)
                if ok is not None and left() > 6:
                    into(row, key + '_fwdbwd', grads_fn(f, (q, k, v), g))
            out.emit(row)
            del q, k, v, g
            torch.cuda.empty_cache()

    # ---- varlen: packed (varlen_attn, flash) vs padded (SDPA with a padding + causal mask)
    try:
        from torch.nn.attention.varlen import varlen_attn
        params = inspect.signature(varlen_attn).parameters
        causal_kw = dict(is_causal=True) if 'is_causal' in params else dict(window_size=(-1, 0))
    except Exception as e:  # older torch
        varlen_attn, causal_kw = None, repr(e)[:200]
    for s in SH['varlen']:
        B, H, max_len, E = s['B'], s['H'], s['maxLen'], s['E']
        lengths = varlen_lengths(B, max_len)
        total = sum(lengths)
        for tag in ('f32', 'f16', 'bf16'):
            row = dict(kind='varlen', name=f'varlen B={B} H={H} lengths 1..{max_len} E={E} causal', dtype=tag, B=B, H=H, E=E, max_len=max_len, tokens=total)
            if not enough(out, row, 6):
                continue
            dt = DT[tag]
            keep = torch.zeros(B, 1, 1, max_len, dtype=torch.bool, device=dev)
            for b, n in enumerate(lengths):
                keep[b, ..., :n] = True
            m = keep & torch.ones(max_len, max_len, dtype=torch.bool, device=dev).tril()
            qd, kd, vd, gd = (torch.randn(B, H, max_len, E, device=dev, dtype=dt, requires_grad=i < 3) for i in range(4))
            padded = lambda: F.scaled_dot_product_attention(qd, kd, vd, attn_mask=m)
            with torch.no_grad():
                into(row, 'padded_fwd', padded)
            into(row, 'padded_fwdbwd', grads_fn(padded, (qd, kd, vd), gd))
            if varlen_attn is None:
                row['packed_error'] = f'torch.nn.attention.varlen unavailable: {causal_kw}'
            elif tag == 'f32':
                row['packed_skipped'] = 'varlen_attn (flash) takes fp16/bf16 only'
            else:
                cu = torch.tensor([0] + [sum(lengths[: i + 1]) for i in range(B)], dtype=torch.int32, device=dev)
                qp, kp, vp, gp = (torch.randn(total, H, E, device=dev, dtype=dt, requires_grad=i < 3) for i in range(4))
                packed = lambda: varlen_attn(qp, kp, vp, cu, cu, max_len, max_len, **causal_kw)
                with torch.no_grad():
                    into(row, 'packed_fwd', packed)
                into(row, 'packed_fwdbwd', grads_fn(packed, (qp, kp, vp), gp))
                del qp, kp, vp, gp
            out.emit(row)
            del qd, kd, vd, gd
            torch.cuda.empty_cache()

    # ---- flex (compiled): softcap score mod, causal sliding-window block mask; first call = compile
    try:
        from torch.nn.attention.flex_attention import flex_attention, create_block_mask
        flex = torch.compile(flex_attention)
    except Exception as e:
        flex = None
        flex_err = repr(e)[:200]
    cap, window = SH['softcap'], SH['window']
    for s in SH['flex']:
        B, H, L, E = s['B'], s['H'], s['L'], s['E']
        for tag in ('f32', 'f16'):
            q, k, v, g = (torch.randn(B, H, L, E, device=dev, dtype=DT[tag], requires_grad=i < 3) for i in range(4))
            for variant in ('softcap', 'window'):
                label = f'flex softcap({cap})' if variant == 'softcap' else f'flex slidingWindow({window})'
                row = dict(kind='flex', variant=variant, name=f'{label} B={B} H={H} L={L} E={E}', dtype=tag, B=B, H=H, L=L, E=E, causal=variant == 'window')
                if not enough(out, row, 25):
                    continue
                if flex is None:
                    row['error'] = flex_err
                    out.emit(row)
                    continue
                try:
                    if variant == 'softcap':
                        kw = dict(score_mod=lambda sc, b, h, qi, ki: cap * torch.tanh(sc / cap))
                    else:
                        bm = create_block_mask(lambda b, h, qi, ki: (qi >= ki) & (qi - ki <= window), None, None, L, L, device=dev)
                        kw = dict(block_mask=bm)
                        row['density'] = 1 - bm.sparsity() / 100
                    f = lambda: flex(q, k, v, **kw)
                    with torch.no_grad():
                        ok = into(row, 'fwd', f)
                    if ok is not None and left() > 25:
                        into(row, 'fwdbwd', grads_fn(f, (q, k, v), g))
                except Exception as e:
                    row['error'] = repr(e)[:300]
                out.emit(row)
            del q, k, v, g
            torch.cuda.empty_cache()
    print(f'torch-peers done: {len(out.rows)} rows in {time.time() - T0:.0f} s', flush=True)


if __name__ == '__main__':
    main()
