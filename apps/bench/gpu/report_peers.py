#!/usr/bin/env python3
"""Merges one device call's webattn / PyTorch / TF.js rows (webattn_peers.mjs, torch_peers.py, tfjs_peer.mjs)
and the matmul probes (matmul_probe.mjs) into the "Peers on one GPU" section of docs/benchmarks.md, between
<!-- peers:begin --> and <!-- peers:end --> (appended when the markers are missing).
  report_peers.py --dir RESULTS_DIR --doc docs/benchmarks.md [--date YYYY-MM-DD]"""
import argparse, datetime, json, os, re

ap = argparse.ArgumentParser()
ap.add_argument('--dir', required=True)
ap.add_argument('--doc', required=True)
ap.add_argument('--date', default=str(datetime.date.today()))
a = ap.parse_args()

def load(name):
    try:
        return json.load(open(os.path.join(a.dir, name)))
    except Exception:
        return {'rows': []}

w, t, j = load('webattn_peers.json'), load('torch_peers.json'), load('tfjs.json')
probes = [load(n) for n in sorted(os.listdir(a.dir)) if n.startswith('probe') and n.endswith('.json')]
gpu = open(os.path.join(a.dir, 'gpu.txt')).read().strip() if os.path.exists(os.path.join(a.dir, 'gpu.txt')) else '?'
W = {r['name']: r for r in w.get('rows', [])}
P = {r['name']: r for r in t.get('rows', [])}
J = {re.sub(r'^(vit )?attention unfused ', r'\1attention ', r['name']): r for r in j.get('rows', [])}
f = lambda v, d=2: '—' if v is None else (f'{v:.{d}f}' if isinstance(v, (int, float)) else str(v))
dev = w.get('device', {})
out = []
out.append('<!-- peers:begin -->')
out.append('## Peers on one GPU: webattn, PyTorch and TF.js-WebGPU in the same device call\n')
out.append(f"- **Date**: {a.date} · **GPU**: {gpu} · **webattn** adapter {dev.get('adapter')} ({dev.get('api')}), features: "
           f"{', '.join(dev.get('features', [])) or 'none'} · **PyTorch** {t.get('torch', '?')} · **TF.js** {j.get('tfjs', '?')} WebGPU backend on the same Dawn (`webgpu` 0.6.2) and adapter.")
out.append('- Reproduce: `npm run build`, `TFJS_DIR=<folder with @tensorflow/tfjs-core and tfjs-backend-webgpu 4.22> bash apps/bench/gpu/pack-full.sh`, '
           'then one device call of `STEPS="peers probe" bash .dev-gemm/run-full.sh` carrying `.gl` and `.dev-gemm`; '
           'then `python3 apps/bench/gpu/report_peers.py --dir <results> --doc docs/benchmarks.md`. Raw JSON: `apps/bench/results/h100-*.json`.')
out.append('- webattn and TF.js times: median of 5 forward runs after a warm-up, each synced; PyTorch: CUDA events over 20 runs. '
           'Attention TFLOP/s counts 4·B·H·L²·E; TF.js has no float16 dtype, so its f16 cells are empty.\n')
out.append('### Attention forward (no mask), ms (TFLOP/s)\n')
out.append('| shape | dtype | webattn flash | webattn math (unfused) | TF.js unfused | PyTorch flash | PyTorch efficient | PyTorch math | PyTorch unfused | webattn flash vs TF.js |')
out.append('|---|---|---|---|---|---|---|---|---|---|')
cell = lambda r, k: (f"{f(r.get(k + '_ms'))} ({f(r.get(k + '_tflops'), 1)})" if r.get(k + '_ms') is not None else ('error' if r.get(k + '_error') else '—'))
for name in [n for n in W if 'attention' in n]:
    base, dt = name.rsplit(' ', 1)
    r, p = W[name], P.get(name, {})
    tj = J.get(name, {}) if dt == 'f32' else {}
    tfc = f"{f(tj.get('ms'))} ({f(tj.get('tflops'), 1)})" if tj.get('ms') else '—'
    ratio = f"{tj['ms'] / r['flash_ms']:.2f}× faster" if tj.get('ms') and r.get('flash_ms') else '—'
    out.append(f"| {base} | {dt} | {cell(r, 'flash')} | {cell(r, 'math')} | {tfc} | {cell(p, 'flash')} | {cell(p, 'efficient')} | {cell(p, 'math')} | {cell(p, 'unfused')} | {ratio} |")
out.append('\n### Matmul n×n×n, ms (TFLOP/s)\n')
out.append('| n | dtype | webattn | TF.js | PyTorch | PyTorch TF32 | webattn vs TF.js |')
out.append('|---|---|---|---|---|---|---|')
mm = lambda r: f"{f(r.get('ms'), 3)} ({f(r.get('tflops'), 1)})" if r and r.get('ms') else '—'
for name in [n for n in W if n.startswith('matmul')]:
    n, dt = name.split(' ')[1], name.split(' ')[2]
    r, tj = W[name], J.get(name, {})
    ratio = f"{tj['ms'] / r['ms']:.2f}×" if tj.get('ms') and r.get('ms') else '—'
    out.append(f"| {n} | {dt} | {mm(r)} | {mm(tj)} | {mm(P.get(name))} | {mm(P.get(name + ' tf32')) if dt == 'f32' else '—'} | {ratio} |")
if any(p.get('rows') for p in probes):
    out.append('\n### Matmul kernels and subgroup-matrix probes (`apps/bench/gpu/matmul_probe.mjs`)\n')
    out.append('Each row: one kernel configuration at the size named, mean of back-to-back runs synced once; "first" is the first call '
               '(pipeline compile + run). `sgmm` = the subgroup-matrix f16 kernel (f16 in, f32 accumulate, f16 out): sgm×sgn subgroups, '
               'tm×tn result matrices per subgroup, tk-deep K tiles staged in workgroup memory, nsz = 16 (16x16x16) or 8 (16x8x16); '
               '"toggles" = extra Dawn toggles on the device.\n')
    out.append('| case | kernel | toggles | ms | first ms | TFLOP/s | max rel. diff vs tiled f16 |')
    out.append('|---|---|---|---|---|---|---|')
    for p in probes:
        for r in p.get('rows', []):
            k = r.get('kernel', '').replace('|', '/')
            if r.get('error') or r.get('skipped'):
                out.append(f"| {r['name']} | {k} | {r.get('toggles') or ''} | {r.get('error', r.get('skipped', ''))[:120].replace('|', '/')} | | | |")
            else:
                out.append(f"| {r['name']} | {k} | {r.get('toggles') or ''} | {f(r.get('ms'), 3)} | {f(r.get('first_ms'), 0)} | {f(r.get('tflops'), 1)} | {f(r.get('rel_err_vs_tiled'), 5) if r.get('rel_err_vs_tiled') is not None else ''} |")
out.append('<!-- peers:end -->')
section = '\n'.join(out) + '\n'
doc = open(a.doc).read() if os.path.exists(a.doc) else ''
if '<!-- peers:begin -->' in doc:
    doc = re.sub(r'<!-- peers:begin -->.*?<!-- peers:end -->\n?', lambda m: section, doc, flags=re.S)
else:
    doc = doc.rstrip('\n') + '\n\n' + section
open(a.doc, 'w').write(doc)
print(section)
