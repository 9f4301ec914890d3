#!/usr/bin/env python3
"""Writes docs/benchmarks.md from one device call's results (run-full.sh's $OUT/results.tar, unpacked):
webattn_peers.json, tfjs.json, torch_peers.json (kernels), webattn_models.json, torch_models.json (models),
env.json / steps.json / gpu.txt / clocks.csv (run-full.sh), probe*.json (matmul_probe.mjs, optional).
Every sentence about results is computed from those numbers; missing files or rows print as '—'.
Copies the JSON to RAW_DIR as <date>-<gpu>-<name>.json.
  python3 apps/bench/gpu/report.py --dir RESULTS --doc docs/benchmarks.md --raw docs/benchmarks"""
import argparse, csv, datetime, json, os, re, shutil, statistics

ap = argparse.ArgumentParser()
ap.add_argument('--dir', required=True)
ap.add_argument('--doc', required=True)
ap.add_argument('--raw', default=None, help='folder for copies of the raw JSON (docs/benchmarks)')
ap.add_argument('--date', default=None)
ap.add_argument('--micro', default=None, help="sgmat_micro.mjs JSON to render when the run has no micro.json (e.g. docs/benchmarks/*-sgmat-micro.json)")
A = ap.parse_args()


def load(name, default=None):
    p = os.path.join(A.dir, name)
    try:
        with open(p) as f:
            return json.load(f)
    except Exception:
        return default if default is not None else {'rows': []}


W, J, P = load('webattn_peers.json'), load('tfjs.json'), load('torch_peers.json')
WM, PM = load('webattn_models.json'), load('torch_models.json')
ENV, STEPS = load('env.json', {}), load('steps.json', {'steps': []})
PROBES = [load(n) for n in sorted(os.listdir(A.dir)) if n.startswith('probe') and n.endswith('.json')] if os.path.isdir(A.dir) else []
MICRO = load('micro.json')  # sgmat_micro.mjs (optional step `micro`), else --micro FILE
BWD = load('bwd_probe.json')  # bwd_probe.mjs (optional step `bwd`)
SGAB = load('sgmat_ab.json')  # sgmat_attn.mjs --ab (subgroup-matrix forward options)
if not MICRO.get('rows') and A.micro:
    with open(A.micro) as f:
        MICRO = json.load(f)
gpu_txt = open(os.path.join(A.dir, 'gpu.txt')).read().strip() if os.path.exists(os.path.join(A.dir, 'gpu.txt')) else ''
date = A.date or (W.get('date') or P.get('date') or str(datetime.date.today()))[:10]
QUICK = any(d.get('quick') for d in (W, J, P, WM, PM, load('webattn_vit.json'), load('webattn_gpt2-varlen.json')))


def index(doc):
    return {(r.get('kind'), r.get('name'), r.get('dtype')): r for r in doc.get('rows', [])}


Wi, Ji, Pi, WMi, PMi = index(W), index(J), index(P), index(WM), index(PM)


# ---------------------------------------------------------------- formatting helpers
def num(v, d=2):
    if v is None or (isinstance(v, float) and v != v):
        return '—'
    if isinstance(v, (int, float)):
        if abs(v) >= 1000:
            return f'{v:,.0f}'
        if abs(v) >= 100:
            return f'{v:.0f}'
        return f'{v:.{d}f}' if abs(v) >= 0.1 or v == 0 else f'{v:.2g}'
    return str(v)


def flops_attn(r, bwd=False):
    f = 4 * r['B'] * r['H'] * r['L'] ** 2 * r['E'] / (2 if r.get('causal') else 1)
    return f * (3.5 if bwd else 1)  # FlashAttention's count: backward = 2.5 × forward


def ms_of(r, key):
    if not r:
        return None
    v = r.get(key + '_ms')
    return v if isinstance(v, (int, float)) and v > 0 else None


def cell(r, key, flops=None):
    """'ms (TFLOP/s)', or why there is no number."""
    if not r:
        return '—'
    m = ms_of(r, key)
    if m is not None:
        return f'{num(m)} ({num(flops / m / 1e9, 1)})' if flops else num(m)
    if r.get(key + '_error'):
        return 'error¹'
    if r.get(key + '_skipped') or r.get('skipped'):
        return 'skipped²'
    return '—'


def ratio(peer_ms, ours_ms):
    if not (peer_ms and ours_ms):
        return '—'
    r = peer_ms / ours_ms
    return f'{r:.2f}×' if r >= 0.1 else f'{r:.2g}×'


def best(r, keys):
    """(ms, key) of the fastest of `keys` in row r."""
    c = [(ms_of(r, k), k) for k in keys if ms_of(r, k)]
    return min(c) if c else (None, None)


notes = []  # footnote lines: errors and skips, listed once


def safe(text):
    """Free text from the JSON (errors, adapter strings) made safe for a VitePress page: no HTML tags, no Vue
    interpolation, no table pipes."""
    return (str(text).replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;').replace('{{', '{ {').replace('}}', '} }')
            .replace('|', '/').replace('\n', ' '))


def note_errors(peer, r):
    if not r:
        return
    for k, v in r.items():
        if k.endswith('_error') or k == 'error':
            notes.append(f"- {peer} · {r.get('name')} {r.get('dtype', '')} · {k[:-6] if k != 'error' else 'row'}: {safe(str(v)[:220])}")
        elif k.endswith('skipped') and isinstance(v, str):
            notes.append(f"- {peer} · {r.get('name')} {r.get('dtype', '')} · skipped{(' ' + k[:-8]) if k != 'skipped' else ''}: {safe(v[:160])}")


# ---------------------------------------------------------------- header
dev = W.get('device') or WM.get('device') or J.get('device') or {}
gpu_name = P.get('gpu') or PM.get('gpu') or (gpu_txt.split(',')[0] if gpu_txt else '?')
slug = re.sub(r'[^a-z0-9]+', '-', (gpu_name or 'gpu').lower()).strip('-')
short = 'h100' if 'h100' in slug else ('h200' if 'h200' in slug else slug[:24] or 'gpu')
out = []
w = out.append
w('# GPU benchmarks: webattn vs PyTorch vs TF.js-WebGPU, one device call')
w('')
w('<!-- generated by apps/bench/gpu/report.py from the JSON of one device call: edit the scripts, not this file -->')
w('')
if QUICK:
    w('> **QUICK validation run** (`QUICK=1`): tiny shapes and toy model configs that test the scripts end to end. '
      'Do not read these numbers as performance.')
    w('')
feat = ', '.join(dev.get('features', [])) or 'none'
w(f"- **Date**: {date} · **GPU**: {gpu_txt or gpu_name}")
w(f"- **webattn** commit `{ENV.get('commit', '?')}`; Node {W.get('node') or ENV.get('node', '?')}; `webgpu` {W.get('webgpu', '?')} (Dawn) on "
  f"{dev.get('api', '?')}; adapter \"{safe(dev.get('adapter', '?'))}\"; tier `{dev.get('tier', '?')}`; features {feat}"
  + (f"; largest storage binding {W.get('limits', {}).get('maxStorageBufferBindingSize', 0) / 2**30:.1f} GiB" if W.get('limits', {}).get('maxStorageBufferBindingSize') else '')
  + (f" ({safe(dev.get('reason'))})" if dev.get('reason') else ''))
w(f"- **PyTorch** {P.get('torch') or PM.get('torch', '?')} (CUDA {P.get('cuda', '?')}, cuDNN {P.get('cudnn', '?')}); "
  f"**transformers** {PM.get('transformers', '?')}; **TF.js** {J.get('tfjs', '?')} with tfjs-backend-webgpu {J.get('tfjs_webgpu', '?')} "
  f"on webattn's own GPUDevice (same Dawn, adapter and limits); TF.js gradients {safe(J.get('gradients', '?'))}.")
if J.get('f16_reason'):
    w(f"- TF.js has no f16 rows: {J['f16_reason']}.")
if not W.get('f16', True):
    w('- webattn has no f16 rows: the adapter did not expose `shader-f16`.')
if ENV.get('sources'):
    w('- **Rows merged from several device calls** (each table\'s peers still come from one call): '
      + '; '.join(safe(str(x)) for x in ENV['sources']) + '.')
steps = STEPS.get('steps', [])
if steps:
    w('- Steps of the call (seconds, exit status; 124 = stopped by its timeout, rows up to then are kept): '
      + ', '.join(f"{s['name']} {s.get('seconds', '?')} s{'' if s.get('rc') == 0 else ' rc ' + str(s.get('rc'))}" for s in steps) + '.')
# SM clock per step (nvidia-smi sampled during the call)
clock_by_step = {}
cp = os.path.join(A.dir, 'clocks.csv')
if os.path.exists(cp) and steps:
    samples = []
    for line in csv.reader(open(cp)):
        try:
            samples.append((float(line[0]), float(line[1]), float(line[2])))
        except (ValueError, IndexError):
            pass
    for s in steps:
        sm = [c for t, c, _ in samples if s.get('start', 0) <= t <= s.get('end', 0)]
        pw = [p for t, _, p in samples if s.get('start', 0) <= t <= s.get('end', 0)]
        if sm:
            clock_by_step[s['name']] = (statistics.median(sm), min(sm), max(sm), statistics.median(pw) if pw else None)
    if clock_by_step:
        w('- SM clock during each step (nvidia-smi every 0.5 s; median, min–max MHz; median W): '
          + '; '.join(f"{k} {v[0]:.0f} ({v[1]:.0f}–{v[2]:.0f}), {num(v[3], 0)} W" for k, v in clock_by_step.items()) + '.')
w('- Method: webattn and TF.js kernels: one first call (pipeline compiles; reported apart), ~300 ms of back-to-back calls to ramp the GPU clock, '
  'then the median over up to 5 batches of k back-to-back calls (k sized for ~100 ms) with one sync per batch, divided by k; webattn models: median of 3 synced calls; PyTorch kernels: one first call, one warm-up, then CUDA events around enough calls for ~100 ms (at least 2); PyTorch models: '
  'like webattn. Attention TFLOP/s count 4·B·H·L²·E (halved when causal), ×3.5 for forward+backward. '
  '"speedup vs X" = X\'s time ÷ webattn\'s time (above 1: webattn is faster).')
w('- Reproduce: see the top of `apps/bench/gpu/run-full.sh` (pack, one device call, this report). Raw JSON: '
  + (f'`docs/benchmarks/{date}-{short}-*.json` (e.g. [webattn kernels](benchmarks/{date}-{short}-webattn_peers.json)).' if A.raw else 'the results folder.'))
w('')

# ---------------------------------------------------------------- reading it (computed)
reading = []
target_rows = []


def attn_rows(dtype):
    return [r for (k, n, d), r in Wi.items() if k == 'attention' and d == dtype]


def tf_speedups(key):
    xs = []
    for r in attn_rows('f32'):
        t = Ji.get(('attention', r['name'], 'f32'))
        a, b = ms_of(r, 'flash_' + key), ms_of(t, 'unfused_' + key)
        if a and b:
            xs.append((b / a, r['name']))
    return xs


for key, label in (('fwd', 'forward'), ('fwdbwd', 'forward+backward')):
    xs = tf_speedups(key)
    if xs:
        lo, hi = min(xs), max(xs)
        reading.append(f"webattn f32 flash {label} vs TF.js's unfused attention on the same adapter: {lo[0]:.2f}× ({lo[1]}) to "
                       f"{hi[0]:.2f}× ({hi[1]}), faster on {sum(x >= 1 for x, _ in xs)} of {len(xs)} shapes.")
for wd, pd, pk, plabel in (('f32', 'f32', 'efficient', 'PyTorch fp32 memory-efficient'), ('f16', 'f16', 'flash', 'PyTorch fp16 FlashAttention')):
    xs = []
    for r in attn_rows(wd):
        p = Pi.get(('attention', r['name'], pd))
        a, b = ms_of(r, 'flash_fwd'), ms_of(p, pk + '_fwd')
        if a and b:
            xs.append(b / a)
    if xs:
        reading.append(f"webattn {wd} flash forward takes {1 / max(xs):.1f}–{1 / min(xs):.1f}× the time of {plabel} ({len(xs)} shapes).")
tgt = next((r for r in attn_rows('f16') if r['name'] == 'B=8 H=16 L=4096 E=64'), None)
if tgt:
    f, fb = ms_of(tgt, 'flash_fwd'), ms_of(tgt, 'flash_fwdbwd')
    target_rows.append(('f16 flash forward, B=8 H=16 L=4096 E=64', f'{flops_attn(tgt) / f / 1e9:.1f} TFLOP/s' if f else '—', '≥ 60 TFLOP/s', f and flops_attn(tgt) / f / 1e9 >= 60))
    target_rows.append(('f16 flash forward+backward, same shape', f'{flops_attn(tgt, True) / fb / 1e9:.1f} TFLOP/s' if fb else '—', '≥ 30 TFLOP/s', fb and flops_attn(tgt, True) / fb / 1e9 >= 30))
xs = tf_speedups('fwd')
if xs:
    n_tf_skipped = sum(1 for r in attn_rows('f32') if not ms_of(Ji.get(('attention', r['name'], 'f32')), 'unfused_fwd'))
    target_rows.append(('every attention shape vs TF.js (f32 forward)', f'min {min(xs)[0]:.2f}× ({min(xs)[1]}); {sum(x >= 3 for x, _ in xs)}/{len(xs)} shapes ≥ 3×'
                        + (f'; TF.js did not run {n_tf_skipped} shapes (see the notes)' if n_tf_skipped else ''), '≥ 3× faster', all(x >= 3 for x, _ in xs)))
for n in (4096,):
    m16 = Wi.get(('matmul', f'matmul {n}³', 'f16'))
    m32, t32 = Wi.get(('matmul', f'matmul {n}³', 'f32')), Ji.get(('matmul', f'matmul {n}³', 'f32'))
    if ms_of(m16, 'fwd'):
        tf = 2 * n ** 3 / ms_of(m16, 'fwd') / 1e9
        target_rows.append((f'f16 matmul {n}³', f'{tf:.1f} TFLOP/s', '≥ 100 TFLOP/s', tf >= 100))
    if ms_of(m32, 'fwd') and ms_of(t32, 'fwd'):
        s = ms_of(t32, 'fwd') / ms_of(m32, 'fwd')
        target_rows.append((f'f32 matmul {n}³ vs TF.js', f'{s:.2f}×', '≥ 2×', s >= 2))
for (k, n, d), r in Wi.items():
    if k == 'varlen' and r.get('max_len') == 2048:
        a, b = ms_of(r, 'packed_fwd'), ms_of(r, 'padded_fwd')
        if a and b:
            target_rows.append((f'varlen packed vs padded, lengths 1..2048, {d} forward', f'{b / a:.2f}×', '≥ 2×', b / a >= 2))
rep = [(r.get('name'), r.get('dtype'), k[:-len('_pipelines_repeat')], v) for doc in (W,) for r in doc.get('rows', []) for k, v in r.items() if k.endswith('_pipelines_repeat')]
sec = [(r.get('name'), r.get('dtype'), k[:-len('_second_pipelines')], v) for r in WM.get('rows', []) for k, v in r.items() if k.endswith('_second_pipelines')]
if rep or sec:
    bad = [x for x in rep + sec if x[3]]
    target_rows.append(('second run compiles nothing (pipelines created by repeated kernel calls and by models\' second forward/train/generate)',
                        f'{len(bad)} of {len(rep) + len(sec)} measurements created pipelines' + (f" (e.g. {bad[0][0]} {bad[0][1]} {bad[0][2]}: {bad[0][3]})" if bad else ''), '0', not bad))
# models
for model in ('GPT-2 small', 'ViT-B/16'):
    for kind, label in (('train', 'training step'), ('fwd', 'forward')):
        ours = [(ms_of(r, kind), r['attn'], r['dtype']) for r in WM.get('rows', []) if r.get('model') == model and ms_of(r, kind)]
        theirs = [(ms_of(r, kind), r['attn'], r['dtype']) for r in PM.get('rows', []) if r.get('model') == model and ms_of(r, kind)]
        for dcls, wds, pds in (('32-bit', ('f32',), ('f32',)), ('16-bit', ('f16',), ('bf16',))):
            o = [x for x in ours if x[2] in wds]
            t = [x for x in theirs if x[2] in pds]
            if o and t:
                bo, bt = min(o), min(t)
                reading.append(f"{model} {label}, {dcls}: webattn's fastest ({bo[1]}, {bo[2]}) {num(bo[0])} ms vs transformers' fastest "
                               f"({bt[1]}, {bt[2]}{' autocast' if bt[2] == 'bf16' else ''}) {num(bt[0])} ms: {bo[0] / bt[0]:.1f}× the time.")
    g = [(r.get('gen_tokens_per_s'), r['attn'], r['dtype']) for r in WM.get('rows', []) if r.get('model') == model and r.get('gen_tokens_per_s')]
    gp = [(r.get('gen_tokens_per_s'), r['attn'], r['dtype']) for r in PM.get('rows', []) if r.get('model') == model and r.get('gen_tokens_per_s')]
    if g and gp:
        bo, bt = max(g), max(gp)
        reading.append(f"{model} greedy generation: webattn {bo[0]:.1f} tokens/s ({bo[1]}, {bo[2]}) vs transformers {bt[0]:.1f} tokens/s ({bt[1]}, {bt[2]}).")
for (k, n, d), r in sorted(Wi.items(), key=lambda kv: (str(kv[0][1]), str(kv[0][2]))):
    if k == 'varlen':
        a, b = ms_of(r, 'packed_fwd'), ms_of(r, 'padded_fwd')
        p = Pi.get(('varlen', n, 'f16' if d == 'f16' else 'bf16'))
        pa, pb = ms_of(p, 'packed_fwd'), ms_of(p, 'padded_fwd')
        if a and b:
            reading.append(f"{n.replace('varlen ', 'Varlen ')}, {d}: webattn's packed forward runs at {b / a:.2f}× the speed of its padded run"
                           + (f"; PyTorch varlen_attn at {pb / pa:.2f}× the speed of its padded SDPA ({p['dtype']})" if pa and pb else '') + '.')
for (k, n, d), r in Wi.items():
    if k == 'flex' and r.get('variant') == 'window' and ms_of(r, 'fwd'):
        dr = Wi.get(('attention', f"B={r['B']} H={r['H']} L={r['L']} E={r['E']} causal", d))
        if ms_of(dr, 'flash_fwd'):
            reading.append(f"{n}, {d}: the block-sparse window forward runs at {ms_of(dr, 'flash_fwd') / ms_of(r, 'fwd'):.2f}× the speed of dense causal flash"
                           + (f" at block density {r['density']:.3f}." if r.get('density') else '.'))
firsts = [(r.get(k), r['name'], r.get('dtype'), k[:-9]) for r in W.get('rows', []) for k in r if k.endswith('_first_ms') and isinstance(r.get(k), (int, float))]
if firsts:
    top = max(firsts)
    reading.append(f"First calls (pipeline compiles included) of the webattn kernels took up to {top[0] / 1e3:.1f} s ({top[1]} {top[2]} {top[3]}); "
                   f"{W.get('pipelines_total', '?')} pipelines in the kernel run.")
if clock_by_step:
    low = [(k, v[0]) for k, v in clock_by_step.items() if v[0] < 1000]
    if low:
        mx = max((v[2] for v in clock_by_step.values()), default=None)
        reading.append('The median SM clock was below 1000 MHz during ' + ', '.join(f'{k} ({c:.0f} MHz)' for k, c in low)
                       + f': those rows were measured at that clock (highest sample of the call: {mx:.0f} MHz).')
# published scenarios (issue 13): webattn ÷ PyTorch at equal depth, padded ÷ packed
WV, PV = load('webattn_vit.json'), load('torch_vit.json')
WG, PG = load('webattn_gpt2-varlen.json'), load('torch_gpt2-varlen.json')
for var in dict.fromkeys((r.get('variant'), r.get('layers')) for r in WV.get('rows', [])):
    rat = []
    for r in WV.get('rows', []):
        p = next((q for q in PV.get('rows', []) if (q.get('variant'), q.get('layers'), q.get('attn'), q.get('dtype')) == (r.get('variant'), r.get('layers'), r.get('attn'), 'f32')), None)
        if (r.get('variant'), r.get('layers')) == var and ms_of(r, 'train') and ms_of(p, 'train'):
            rat.append((ms_of(r, 'train') / ms_of(p, 'train'), r.get('attn')))
    if rat:
        reading.append(f"Published ViT {var[0]}, {var[1]} layers (equal depth), f32 train step: webattn takes {min(rat)[0]:.1f}× ({min(rat)[1]}) to "
                       f"{max(rat)[0]:.1f}× ({max(rat)[1]}) the time of PyTorch.")
for peer, doc in (('webattn', WG), ('PyTorch', PG)):
    for r in doc.get('rows', []):
        pad = next((p for p in doc.get('rows', []) if p.get('layout') == 'padded' and (p.get('layers'), p.get('dtype')) == (r.get('layers'), r.get('dtype'))
                    and p.get('attn') == (r.get('attn') if peer == 'webattn' else 'sdpa')), None)
        if r.get('layout') == 'packed' and ms_of(pad, 'train') and ms_of(r, 'train'):
            reading.append(f"GPT-2 {r.get('layers')} layers, {peer} {r.get('dtype')}: packed {r.get('attn')} vs padded {pad.get('attn')}: train "
                           f"{ms_of(pad, 'train') / ms_of(r, 'train'):.2f}×" + (f", eval {ms_of(pad, 'eval') / ms_of(r, 'eval'):.2f}×" if ms_of(pad, 'eval') and ms_of(r, 'eval') else '')
                           + ' faster (goal ≥ 2×).')
fails = [s for s in steps if s.get('rc') not in (0, None)]
if fails:
    reading.append('Steps that did not finish: ' + ', '.join(f"{s['name']} (exit {s['rc']})" for s in fails) + '; their tables hold the rows measured before that.')
w('## Reading it')
w('')
if reading:
    for s in reading:
        w(f'- {s}')
else:
    w('- No results to read.')
w('')
if target_rows:
    w('### Issue 12 targets')
    w('')
    w('| target | measured | goal | met |')
    w('|---|---|---|---|')
    for a, b, c, d in target_rows:
        w(f"| {a} | {b} | {c} | {'yes' if d else 'no'} |")
    w('')

# ---------------------------------------------------------------- attention tables
names = []
for (k, n, d) in list(Wi) + list(Pi) + list(Ji):
    if k == 'attention' and n not in names:
        names.append(n)
shape_of = {}
for doc in (W, P, J):
    for r in doc.get('rows', []):
        if r.get('kind') == 'attention' and all(x in r for x in ('B', 'H', 'L', 'E')):
            shape_of.setdefault(r['name'], r)
for key, title in (('fwd', 'forward'), ('fwdbwd', 'forward + backward')):
    w(f'## Attention {title}: ms (TFLOP/s)')
    w('')
    w('| shape | webattn f32 flash | webattn f16 flash | webattn f32 math | TF.js f32 unfused | PyTorch f32 efficient | PyTorch f32 math | '
      'PyTorch f16 flash | PyTorch bf16 flash | PyTorch f16 unfused | speedup vs TF.js (f32) | speedup vs PyTorch f32 eff. | speedup vs PyTorch f16 flash (f16) |')
    w('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    for n in names:
        s = shape_of.get(n)
        if not s:
            continue
        fl = flops_attn(s, key == 'fwdbwd')
        w32, w16 = Wi.get(('attention', n, 'f32')), Wi.get(('attention', n, 'f16'))
        t32 = Ji.get(('attention', n, 'f32'))
        p32, p16, pb16 = Pi.get(('attention', n, 'f32')), Pi.get(('attention', n, 'f16')), Pi.get(('attention', n, 'bf16'))
        if key == 'fwd':
            for peer, r in (('webattn', w32), ('webattn', w16), ('TF.js', t32), ('PyTorch', p32), ('PyTorch', p16), ('PyTorch', pb16)):
                note_errors(peer, r)
        w(f"| {n} | {cell(w32, 'flash_' + key, fl)} | {cell(w16, 'flash_' + key, fl)} | {cell(w32, 'math_' + key, fl)} | {cell(t32, 'unfused_' + key, fl)} | "
          f"{cell(p32, 'efficient_' + key, fl)} | {cell(p32, 'math_' + key, fl)} | {cell(p16, 'flash_' + key, fl)} | {cell(pb16, 'flash_' + key, fl)} | "
          f"{cell(p16, 'unfused_' + key, fl)} | {ratio(ms_of(t32, 'unfused_' + key), ms_of(w32, 'flash_' + key))} | "
          f"{ratio(ms_of(p32, 'efficient_' + key), ms_of(w32, 'flash_' + key))} | {ratio(ms_of(p16, 'flash_' + key), ms_of(w16, 'flash_' + key))} |")
    w('')

# ---------------------------------------------------------------- matmul
mm = []
for (k, n, d) in list(Wi) + list(Pi) + list(Ji):
    if k == 'matmul' and n not in mm:
        mm.append(n)
if mm:
    w('## Matmul n×n×n: ms (TFLOP/s)')
    w('')
    w('| size | webattn f32 | webattn f16 | TF.js f32 | PyTorch f32 | PyTorch TF32 | PyTorch f16 | PyTorch bf16 | f32 speedup vs TF.js | f32 speedup vs PyTorch | f16 speedup vs PyTorch |')
    w('|---|---|---|---|---|---|---|---|---|---|---|')
    for n in mm:
        size = int(re.findall(r'\d+', n)[0])
        fl = 2 * size ** 3
        g = lambda idx, d: idx.get(('matmul', n, d))
        for peer, idx, d in (('webattn', Wi, 'f32'), ('webattn', Wi, 'f16'), ('TF.js', Ji, 'f32'), ('PyTorch', Pi, 'f32'), ('PyTorch', Pi, 'f16')):
            note_errors(peer, g(idx, d))
        w(f"| {n.replace('matmul ', '')} | {cell(g(Wi, 'f32'), 'fwd', fl)} | {cell(g(Wi, 'f16'), 'fwd', fl)} | {cell(g(Ji, 'f32'), 'fwd', fl)} | {cell(g(Pi, 'f32'), 'fwd', fl)} | "
          f"{cell(g(Pi, 'tf32'), 'fwd', fl)} | {cell(g(Pi, 'f16'), 'fwd', fl)} | {cell(g(Pi, 'bf16'), 'fwd', fl)} | {ratio(ms_of(g(Ji, 'f32'), 'fwd'), ms_of(g(Wi, 'f32'), 'fwd'))} | "
          f"{ratio(ms_of(g(Pi, 'f32'), 'fwd'), ms_of(g(Wi, 'f32'), 'fwd'))} | {ratio(ms_of(g(Pi, 'f16'), 'fwd'), ms_of(g(Wi, 'f16'), 'fwd'))} |")
    w('')

# ---------------------------------------------------------------- flex
fx = [r for r in W.get('rows', []) + P.get('rows', []) + J.get('rows', []) if r.get('kind') == 'flex']
fnames = []
for r in fx:
    if r['name'] not in fnames:
        fnames.append(r['name'])
if fnames:
    w('## Flex: softcap score mod and causal sliding window, ms')
    w('')
    w('webattn `flexAttention` (block-sparse for the window), TF.js the same math unfused and dense (additive L×L band), '
      'PyTorch `flex_attention` under `torch.compile` (first call = compile, in the last column).')
    w('')
    w('| variant | dtype | webattn fwd | webattn fwd+bwd | TF.js fwd | TF.js fwd+bwd | PyTorch fwd | PyTorch fwd+bwd | speedup vs TF.js fwd | speedup vs PyTorch fwd | window vs dense causal flash (webattn) | PyTorch first call (compile) s |')
    w('|---|---|---|---|---|---|---|---|---|---|---|---|')
    for n in fnames:
        for d in ('f32', 'f16'):
            wr, tr, pr = Wi.get(('flex', n, d)), Ji.get(('flex', n, d)), Pi.get(('flex', n, d))
            if not (wr or tr or pr):
                continue
            for peer, r in (('webattn', wr), ('TF.js', tr), ('PyTorch', pr)):
                note_errors(peer, r)
            dense = ''
            if wr and wr.get('variant') == 'window':
                dn = f"B={wr['B']} H={wr['H']} L={wr['L']} E={wr['E']} causal"
                dr = Wi.get(('attention', dn, d))
                dense = ratio(ms_of(dr, 'flash_fwd'), ms_of(wr, 'fwd')) + (f" (density {wr['density']:.3f})" if wr.get('density') else '')
            comp = num(pr.get('fwd_first_ms') / 1e3, 1) if pr and pr.get('fwd_first_ms') else '—'
            w(f"| {n} | {d} | {cell(wr, 'fwd')} | {cell(wr, 'fwdbwd')} | {cell(tr, 'unfused_fwd')} | {cell(tr, 'unfused_fwdbwd')} | {cell(pr, 'fwd')} | {cell(pr, 'fwdbwd')} | "
              f"{ratio(ms_of(tr, 'unfused_fwd'), ms_of(wr, 'fwd'))} | {ratio(ms_of(pr, 'fwd'), ms_of(wr, 'fwd'))} | {dense or '—'} | {comp} |")
    w('')

# ---------------------------------------------------------------- varlen
vr = [r for r in W.get('rows', []) + P.get('rows', []) if r.get('kind') == 'varlen']
vnames = []
for r in vr:
    if r['name'] not in vnames:
        vnames.append(r['name'])
if vnames:
    w('## Varlen: packed vs padded, causal, ms')
    w('')
    w('Packed: webattn `flashAttnVarlen` / PyTorch `torch.nn.attention.varlen.varlen_attn` (FlashAttention, fp16/bf16 only) on the '
      'concatenated tokens with cu_seqlens. Padded: SDPA on [B, H, maxLen, E] with a padding + causal mask. Lengths spread evenly over 1..maxLen.')
    w('')
    w('| batch | dtype | tokens | webattn packed fwd | webattn padded fwd | packed speedup | webattn packed fwd+bwd | webattn padded fwd+bwd | packed speedup (fwd+bwd) | PyTorch packed fwd | PyTorch padded fwd | PyTorch packed fwd+bwd | PyTorch padded fwd+bwd |')
    w('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    for n in vnames:
        for d in ('f32', 'f16', 'bf16'):
            wr, pr = Wi.get(('varlen', n, d)), Pi.get(('varlen', n, d))
            if not (wr or pr):
                continue
            note_errors('webattn', wr)
            note_errors('PyTorch', pr)
            tok = (wr or pr).get('tokens', '—')
            w(f"| {n.replace('varlen ', '').replace(' causal', '')} | {d} | {tok} | {cell(wr, 'packed_fwd')} | {cell(wr, 'padded_fwd')} | {ratio(ms_of(wr, 'padded_fwd'), ms_of(wr, 'packed_fwd'))} | "
              f"{cell(wr, 'packed_fwdbwd')} | {cell(wr, 'padded_fwdbwd')} | {ratio(ms_of(wr, 'padded_fwdbwd'), ms_of(wr, 'packed_fwdbwd'))} | "
              f"{cell(pr, 'packed_fwd')} | {cell(pr, 'padded_fwd')} | {cell(pr, 'packed_fwdbwd')} | {cell(pr, 'padded_fwdbwd')} |")
    w('')

# ---------------------------------------------------------------- models
if WM.get('rows') or PM.get('rows'):
    w('## Models: GPT-2 small and ViT-B/16, same configs, random init')
    w('')
    g0 = next((r for r in WM.get('rows', []) + PM.get('rows', []) if r.get('model') == 'GPT-2 small' and 'L' in r), None)
    v0 = next((r for r in WM.get('rows', []) + PM.get('rows', []) if r.get('model') == 'ViT-B/16' and 'image' in r), None)
    if g0:
        w(f"GPT-2: {g0.get('layers')} layers, {g0.get('heads')} heads, width {g0.get('hidden')}, vocab {g0.get('vocab')}; batch {g0.get('B')} × {g0.get('L')} tokens "
          f"for forward and training (loss on the inputs, AdamW lr 1e-4); generation: greedy, batch 1, "
          f"{next((r.get('gen_prompt') for r in WM.get('rows', []) + PM.get('rows', []) if r.get('gen_prompt')), '?')}-token prompt, "
          f"{next((r.get('gen_new_tokens') for r in WM.get('rows', []) + PM.get('rows', []) if r.get('gen_new_tokens')), '?')} new tokens with the KV cache.")
    if v0:
        w(f"ViT: {v0.get('image')} px, patch {v0.get('patch')}, {v0.get('layers')} layers, {v0.get('heads')} heads, width {v0.get('hidden')}; batch {v0.get('B')}.")
    w('webattn: `@webattn/models` with attention function flash / sdpa / eager; f16 = float16 weights and activations. '
      'transformers: `attn_implementation` sdpa / eager; bf16 = `torch.autocast(bfloat16)` over fp32 weights. '
      'Forward runs without gradients (webattn: parameters frozen; PyTorch: `no_grad`). "1st" = first call (webattn: pipeline compiles); '
      '"2nd-run pipelines" = pipelines the second call created.')
    w('')
    w('| model | peer | attention | dtype | params (M) | forward ms | 1st forward ms | training step ms | 1st step ms | generation tokens/s | 2nd-run pipelines (fwd/train/gen) | fwd vs transformers | train vs transformers |')
    w('|---|---|---|---|---|---|---|---|---|---|---|---|---|')

    def peer_match(r):
        """transformers row of the same attention kind and precision class."""
        attn = 'eager' if r['attn'] == 'eager' else 'sdpa'
        d = 'bf16' if r['dtype'] == 'f16' else 'f32'
        return PMi.get(('model', f"{r['model']} {attn}", d))
    for model in ('GPT-2 small', 'ViT-B/16'):
        for peer, doc in (('webattn', WM), ('transformers', PM)):
            for r in doc.get('rows', []):
                if r.get('model') != model:
                    continue
                note_errors(peer, r)
                if r.get('skipped') or r.get('error') and not ms_of(r, 'fwd'):
                    w(f"| {model} | {peer} | {r.get('attn')} | {r.get('dtype')} | | {'skipped²' if r.get('skipped') else 'error¹'} | | | | | | | |")
                    continue
                pipes = '/'.join(str(r.get(f'{k}_second_pipelines', '—')) for k in ('fwd', 'train', 'gen')) if peer == 'webattn' else ''
                m = peer_match(r) if peer == 'webattn' else None
                gen = num(r.get('gen_tokens_per_s'), 1) if r.get('gen_tokens_per_s') else ('error¹' if r.get('gen_error') else '—')
                w(f"| {model} | {peer} | {r.get('attn')} | {r.get('dtype')} | {num(r.get('params', 0) / 1e6, 1) if r.get('params') else '—'} | {cell(r, 'fwd')} | {num(r.get('fwd_first_ms'))} | "
                  f"{cell(r, 'train')} | {num(r.get('train_first_ms'))} | {gen} | {pipes} | "
                  f"{ratio(ms_of(m, 'fwd'), ms_of(r, 'fwd')) if m else ''} | {ratio(ms_of(m, 'train'), ms_of(r, 'train')) if m else ''} |")
    w('')
    losses = [(r['name'], r['dtype'], r.get('train_losses')) for r in WM.get('rows', []) + PM.get('rows', []) if r.get('train_losses')]
    nonfinite = [f'{n} {d}' for n, d, l in losses if any(x in l for x in ('nan', 'inf', 'NaN', 'Infinity'))]
    if losses:
        w(f"Training losses were finite in {len(losses) - len(nonfinite)} of {len(losses)} runs" + (f" (not finite: {', '.join(nonfinite)})." if nonfinite else '.'))
        w('')

# ---------------------------------------------------------------- published scenarios (issue 13)
if WV.get('rows') or PV.get('rows'):
    w('## Published ViT: train step per attention function, webattn vs PyTorch at equal depth')
    w('')
    w('ViT at 224 px, 16 heads of 64 (width 1024, MLP 4096: ViT-L/16 width), 1000 classes, random init, dropout 0; train step = forward + '
      'cross-entropy + backward + AdamW (lr 1e-4), median of the timed calls after the first (webattn: pipeline compiles; PyTorch: '
      'torch.compile of flex_attention). The published experiment has 24 layers; webattn runs at the depth it fits in the call '
      '(`layers` column), PyTorch at that depth AND at 24. PyTorch: plain modules of the same layout; eager = explicit matmul + softmax, '
      'sdpa = `F.scaled_dot_product_attention`, flash = SDPA restricted to FlashAttention (bf16; fp32: memory-efficient, which is what '
      'SDPA offers), flex = `torch.compile(flex_attention)` with softcap 20·tanh(s/20) or the 5×5 neighbourhood block mask (cls sees all). '
      '"webattn ÷ PyTorch" = webattn f32 time over PyTorch f32 time at the same depth and shape.')
    w('')
    w('| variant | B | L | layers | attention | webattn f32 ms | PyTorch f32 ms | PyTorch bf16 ms | webattn ÷ PyTorch f32 | webattn peak MiB | PyTorch f32 peak MiB |')
    w('|---|---|---|---|---|---|---|---|---|---|---|')
    keys = []
    for r in WV.get('rows', []) + PV.get('rows', []):
        k = (r.get('variant'), r.get('layers'), r.get('attn'))
        if k not in keys:
            keys.append(k)
    pick = lambda doc, k, d: next((r for r in doc.get('rows', []) if (r.get('variant'), r.get('layers'), r.get('attn')) == k and r.get('dtype') == d), None)
    for k in keys:
        wr, pr, pb = pick(WV, k, 'f32'), pick(PV, k, 'f32'), pick(PV, k, 'bf16')
        for peer, r in (('webattn', wr), ('PyTorch', pr), ('PyTorch', pb)):
            note_errors(peer, r)
        r0 = wr or pr or pb
        wm, pm = ms_of(wr, 'train'), ms_of(pr, 'train')
        w(f"| {k[0]} | {r0.get('B')} | {r0.get('L')} | {k[1]} | {k[2]} | {cell(wr, 'train') if wr else '—'} | {cell(pr, 'train') if pr else '—'} | {cell(pb, 'train') if pb else '—'} | "
          f"{num(wm / pm) + '×' if wm and pm else '—'} | {(wr or {}).get('train_peak_mib', '—')} | {(pr or {}).get('train_peak_mib', '—')} |")
    w('')
    w('webattn neighbourhood: flexAttention with the model\'s block mask (block 64 on the 14×14 grid, 128 on the 56×56 one); '
      'PyTorch: `create_block_mask` (block 128). The long variant (patch 4, L = 3137) runs at batch ' + str(next((r.get('B') for r in WV.get('rows', []) + PV.get('rows', []) if r.get('L', 0) > 1000), '—')) + '.')
    w('')
if WG.get('rows') or PG.get('rows'):
    w('## Published GPT-2 padding-free: padded vs packed train and eval step')
    w('')
    r0 = (WG.get('rows') or PG.get('rows'))[0]
    w(f"GPT-2, 16 heads of 64 (width 1024), vocab 1024, n_positions 1024, random init, dropout 0; batch {r0.get('B')} sequences of lengths uniform in "
      f"1..{r0.get('max_len')} (seed {r0.get('lengths_seed')}): {r0.get('tokens')} real tokens; padded to the longest ({r0.get('longest')}): "
      f"{r0.get('padded_tokens')} token slots. Padded = `[B, longest]` + attention mask (causal + padding); packed = one row of all tokens with "
      "position ids restarting at 0 (block-diagonal causal attention). Train step = forward + loss + backward + AdamW; eval step = forward "
      "without gradients. Published (PyTorch on an H100, 24 layers): padded SDPA 342 ms vs packed flash varlen 160 ms (2.1×). "
      "webattn runs at the depth it fits in the call; PyTorch at that depth and at 24. Ratio = padded ms ÷ packed ms (above 1: packing is faster).")
    w('')
    w('| peer | layers | dtype | packed attention | padded attention | padded train ms | packed train ms | train padded ÷ packed | padded eval ms | packed eval ms | eval padded ÷ packed |')
    w('|---|---|---|---|---|---|---|---|---|---|---|')
    for peer, doc in (('webattn', WG), ('PyTorch', PG)):
        rows = doc.get('rows', [])
        for r in rows:
            note_errors(peer, r)
        for r in rows:
            if r.get('layout') != 'packed':
                continue
            pads = [p for p in rows if p.get('layout') == 'padded' and p.get('layers') == r.get('layers') and p.get('dtype') == r.get('dtype')]
            pad = next((p for p in pads if p.get('attn') == r.get('attn')), None) or next((p for p in pads if p.get('attn') == 'sdpa'), None)
            tr = ratio(ms_of(pad, 'train'), ms_of(r, 'train'))
            er = ratio(ms_of(pad, 'eval'), ms_of(r, 'eval'))
            w(f"| {peer} | {r.get('layers')} | {r.get('dtype')} | {r.get('attn')} | {(pad or {}).get('attn', '—')} | {cell(pad, 'train')} | {cell(r, 'train')} | {tr} | "
              f"{cell(pad, 'eval')} | {cell(r, 'eval')} | {er} |")
    w('')

# ---------------------------------------------------------------- compile / first call
rows_first = [(r['name'], r.get('dtype'), k[:-9], r[k], r.get(k[:-9] + '_ms'), r.get(k[:-9] + '_pipelines_first')) for r in W.get('rows', []) for k in r if k.endswith('_first_ms')]
if rows_first:
    w('## First call (pipeline compiles) vs steady state, webattn kernels')
    w('')
    tot = W.get('pipelines_total')
    slow = sorted(rows_first, key=lambda x: -(x[3] - (x[4] or 0)))[:8]
    w(f"{len(rows_first)} measurements; pipelines created in the whole kernel run: {tot if tot is not None else '—'}; "
      f"sum of first-call excess (first − steady): {sum(max(0, x[3] - (x[4] or 0)) for x in rows_first) / 1e3:.1f} s. The slowest first calls:")
    w('')
    w('| row | dtype | measurement | first call ms | steady ms | pipelines built by the first call |')
    w('|---|---|---|---|---|---|')
    for n, d, k, f, s, p in slow:
        w(f'| {n} | {d} | {k} | {num(f)} | {num(s)} | {p if p is not None else "—"} |')
    w('')

# ---------------------------------------------------------------- probes (optional)
if any(p.get('rows') for p in PROBES):
    w('## Matmul kernel probes (`apps/bench/gpu/matmul_probe.mjs`)')
    w('')
    w('| case | kernel | toggles | ms | first ms | TFLOP/s |')
    w('|---|---|---|---|---|---|')
    for p in PROBES:
        for r in p.get('rows', []):
            k = str(r.get('kernel', '')).replace('|', '/')
            w(f"| {r.get('name')} | {k} | {r.get('toggles') or ''} | {num(r.get('ms'), 3) if not r.get('error') else 'error: ' + str(r['error'])[:80]} | {num(r.get('first_ms'), 0)} | {num(r.get('tflops'), 1)} |")
    w('')

# ---------------------------------------------------------------- subgroup-matrix microbenchmarks (optional)
if MICRO.get('rows'):
    w('## Subgroup-matrix microbenchmarks (`apps/bench/gpu/sgmat_micro.mjs`)')
    w('')
    w('Where the time of WGSL tensor-core kernels goes on this GPU: each row is one small raw kernel (or the f16 '
      'matmul), timed in back-to-back batches of dispatches. `toggles` = default, or Dawn\'s '
      '`disable_robustness,disable_workgroup_init,skip_validation`. GB/s counts the matrix bytes moved.')
    w('')
    w('| group | kernel | toggles | ms | TFLOP/s | GB/s | compile ms |')
    w('|---|---|---|---|---|---|---|')
    for r in MICRO['rows']:
        t = 'default' if r.get('toggles') in (None, '', 'default') else 'no robustness/init/validation'
        val = ('error: ' + safe(str(r['error']))[:80]) if r.get('error') else ('skipped: ' + safe(str(r['skipped']))[:60]) if r.get('skipped') else num(r.get('ms'), 3)
        w(f"| {r.get('group', '')} | {safe(str(r.get('name', '')))} | {t} | {val} | {num(r.get('tflops'), 1)} | {num(r.get('gbps'), 0)} | {num(r.get('compile_ms'), 0)} |")
    w('')

# ---------------------------------------------------------------- register backward probe (optional)
if BWD.get('rows'):
    w('## Flash forward+backward: backward variants (`apps/bench/gpu/bwd_probe.mjs`)')
    w('')
    w('fwd+bwd ms (TFLOP/s) per backward variant, interleaved round by round in one process on the same inputs. '
      '`old` = 8×8 (f32) / 16×8 (f16) register grids without prefetch (the default before), `auto` = the defaults of the '
      'measured commit, `nods` / `ds` = the default grids with the scores backward (dQ = dS·K) off / forced where the '
      'call qualifies; other names as bwd_probe.mjs explains. rel = max relative gradient difference from the first variant.')
    w('')
    vs = []
    for r in BWD['rows']:
        vs += [k[:-len('_fwdbwd_ms')] for k in r if k.endswith('_fwdbwd_ms') and k[:-len('_fwdbwd_ms')] not in vs]
    w('| shape | dtype | ' + ' | '.join(vs) + ' | max rel |')
    w('|---|---|' + '---|' * len(vs) + '---|')
    for r in BWD['rows']:
        rel = [r[k] for k in r if '_vs_' in k and k.endswith('_rel')]
        cells = [f"{num(r.get(v + '_fwdbwd_ms'), 2)}" + (f" ({num(r.get(v + '_tflops'), 1)})" if r.get(v + '_tflops') else '') for v in vs]
        w(f"| B={r['B']} H={r['H']} L={r['L']} E={r['E']} | {r['dtype']} | " + ' | '.join(cells) + f" | {num(max(rel), 7) if rel else '—'} |")
    w('')

# ---------------------------------------------------------------- subgroup-matrix forward options (optional)
if SGAB.get('rows'):
    w('## Subgroup-matrix forward options, f16 (`apps/bench/gpu/sgmat_attn.mjs --ab`)')
    w('')
    w('Each configuration is first checked against a float64 reference (maxdiff), then timed; ms (TFLOP/s).')
    w('')
    shapes = list(dict.fromkeys(r['name'] for r in SGAB['rows']))
    w('| config | ' + ' | '.join(shapes) + ' | maxdiff |')
    w('|---|' + '---|' * len(shapes) + '---|')
    for c in dict.fromkeys(r['config'] for r in SGAB['rows']):
        by = {r['name']: r for r in SGAB['rows'] if r['config'] == c}
        md = max((r.get('maxdiff') or 0) for r in by.values())
        w(f"| {'default of the measured commit' if c == 'default' else safe(str(c))} | " + ' | '.join(f"{num(by[n].get('fwd_ms'), 2)} ({num(by[n].get('fwd_tflops'), 1)})" if n in by else '—' for n in shapes) + f" | {md:.1e} |")
    w('')

if notes:
    w('## Errors and skips')
    w('')
    w('¹ error: the call threw (message below). ² skipped: not run (reason below).')
    w('')
    seen = set()
    for n in notes:
        if n not in seen:
            seen.add(n)
            w(n)
    w('')
prev = sorted(n for n in os.listdir(A.raw) if n.endswith('.md')) if A.raw and os.path.isdir(A.raw) else []
if prev:
    w('Earlier results (other kernels, other calls): ' + ', '.join(f'[{n[:-3]}](benchmarks/{n[:-3]})' for n in prev) + '.')
    w('')

os.makedirs(os.path.dirname(os.path.abspath(A.doc)), exist_ok=True)
with open(A.doc, 'w') as f:
    f.write('\n'.join(out).rstrip('\n') + '\n')
if A.raw:
    os.makedirs(A.raw, exist_ok=True)
    for n in sorted(os.listdir(A.dir)):
        if n.endswith('.json'):
            shutil.copy(os.path.join(A.dir, n), os.path.join(A.raw, f'{date}-{short}-{n}'))
print(f'report: wrote {A.doc} ({len(out)} lines, {len(notes)} notes)' + (f'; raw JSON in {A.raw}' if A.raw else ''))
