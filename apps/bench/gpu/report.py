#!/usr/bin/env python3
"""Merges webattn.json and torch.json into the markdown table of docs/benchmarks.md."""
import datetime, json, sys

def load(p):
    try:
        if p.endswith('.log'):  # webattn-bench's streamed rows
            rows, dev = [], {}
            for line in open(p):
                if line.startswith('ROW '):
                    rows.append(json.loads(line[4:]))
                if line.startswith('webattn-bench on '):
                    dev = {'adapter': line[len('webattn-bench on '):].strip()}
            return {'rows': rows, 'device': dev}
        return json.load(open(p))
    except Exception as e:
        return {'error': repr(e), 'rows': []}

w, t = load(sys.argv[1]), load(sys.argv[2])
gpu = open(sys.argv[3]).read().strip() if len(sys.argv) > 3 else '?'
dev = w.get('device', {})
torch_rows = {r['name']: r for r in t.get('rows', [])}
f = lambda v, d=2: '' if v is None else (f'{v:.{d}f}' if isinstance(v, (int, float)) else str(v))
print(f"# GPU benchmarks\n\nDate: {datetime.date.today()} · GPU/driver: {gpu} · webattn adapter: {dev.get('adapter')} ({dev.get('api')}, features: {', '.join(dev.get('features', [])) or 'none'}) · PyTorch {t.get('torch')}\n")
print('webattn runs float32 (the adapter offers no `shader-f16`); PyTorch flash needs bf16, so both bf16 flash and fp32 (efficient, math) are listed. Ratios are webattn time / PyTorch time (lower is better for webattn).\n')
print('| shape | webattn flash fwd ms | TFLOP/s | fwd+bwd ms | peak MiB | torch flash bf16 fwd ms | torch efficient fp32 fwd ms | torch math fp32 fwd ms | webattn / torch flash | webattn / torch fp32 |')
print('|---|---|---|---|---|---|---|---|---|---|')
for r in w.get('rows', []):
    if r.get('op') != 'sdpa flash':
        continue
    tr = torch_rows.get(r['name'], {})
    if r.get('skipped'):
        print(f"| {r['name']} | skipped: {r['skipped']} | | | | {f(tr.get('flash_bf16_ms'))} | {f(tr.get('efficient_fp32_ms'))} | {f(tr.get('math_fp32_ms'))} | | |")
        continue
    rf = r['fwd_ms'] / tr['flash_bf16_ms'] if tr.get('flash_bf16_ms') else None
    re = r['fwd_ms'] / tr['efficient_fp32_ms'] if tr.get('efficient_fp32_ms') else None
    print(f"| {r['name']} | {f(r['fwd_ms'])} | {f(r.get('fwd_tflops'), 1)} | {f(r.get('fwdbwd_ms'))} | {f(r.get('peak_MiB'), 0)} | {f(tr.get('flash_bf16_ms'))} | {f(tr.get('efficient_fp32_ms'))} | {f(tr.get('math_fp32_ms'))} | {f(rf)} | {f(re)} |")
print('\n## flex and varlen\n')
print('| shape | op | webattn ms | note | torch ms |')
print('|---|---|---|---|---|')
for r in w.get('rows', []):
    op = r.get('op', '')
    tr = torch_rows.get(r['name'], {})
    if op == 'flex softcap':
        print(f"| {r['name']} | {op} | {f(r['fwd_ms'])} | | flex compiled fp32: {f(tr.get('flex_softcap_fp32_ms'))} |")
    elif op.startswith('flex slidingWindow'):
        print(f"| {r['name']} | {op} | {f(r['fwd_ms'])} | density {f(r.get('density'), 3)}, {f(r.get('speedup_vs_dense'))}× vs dense flash | flex compiled fp32: {f(tr.get('flex_window256_fp32_ms'))} |")
    elif op == 'packed vs padded':
        key = next((k for k in torch_rows if k.startswith('varlen') and k.endswith(r['name'].split('lengths ')[1].split(' ')[0])), None)
        tv = torch_rows.get(key, {}) if key else {}
        print(f"| {r['name']} | {op} | packed {f(r['fwd_ms'])} / padded {f(r.get('padded_ms'))} | {f(r.get('speedup_vs_padded'))}× | torch bf16 padded+mask {f(tv.get('padded_mask_bf16_ms'))}, per-sequence flash {f(tv.get('per_sequence_flash_bf16_ms'))} |")
