/**
 * The self-contained HTML report of a bench run: the one-screen answers, inline SVG charts (time and
 * memory vs sequence length, sparse/dense ratio vs density, packed/padded speedup, the GPU run) and
 * every row as a table. No script, no network: open the file anywhere.
 */
import type { DeviceInfo } from '@webattn/core-tensor';
import { barChart, esc, lineChart, type Series } from './html-svg.js';
import { adapterLine, fmt, type Headline, type References } from './report.js';
import type { BenchRow } from './timing.js';

/** What report.json holds (and the HTML is made from). */
export interface ReportData {
  date: string;
  command: string;
  seconds: number;
  device: DeviceInfo;
  headlines: Headline[];
  rows: BenchRow[];
  references: { path: string; label: string }[];
}

/** One chart of the report: an id (file name in the docs), a caption and the SVG. */
export interface Chart {
  id: string;
  caption: string;
  svg: string;
}

const lOf = (name: string) => Number(/L=(\d+)/.exec(name)?.[1] ?? NaN);
const numOf = (r: BenchRow, k: string) => (typeof r[k] === 'number' ? (r[k] as number) : NaN);

/** Series `label → [(L, metric)]` from rows named `<label> L=<n>[ causal]`. */
function seriesByLength(rows: BenchRow[], metric: string): Series[] {
  const map = new Map<string, [number, number][]>();
  for (const r of rows) {
    const m = /^(.*?)\s*L=(\d+)(.*)$/.exec(r.name);
    if (!m || !Number.isFinite(numOf(r, metric))) continue;
    const label = `${m[1]}${m[3]}`.trim() || r.scenario;
    if (!map.has(label)) map.set(label, []);
    map.get(label)!.push([Number(m[2]), numOf(r, metric)]);
  }
  return [...map].map(([label, points]) => ({ label, points, dashed: label.includes('causal') }));
}

/** The charts of a run (empty-data charts are left out), plus the GPU run's when the references have one. */
export function charts(rows: BenchRow[], refs: References, adapter: string): Chart[] {
  const out: Chart[] = [];
  const short = adapter.replace(/\s*\(.*$/, '').slice(0, 60);
  const att = rows.filter((r) => r.scenario === 'attention');
  if (att.length) {
    const Ls = [...new Set(att.map((r) => lOf(r.name)).filter(Number.isFinite))].sort((a, b) => a - b);
    out.push({
      id: 'attention-time',
      caption: `SDPA forward time vs sequence length per backend (B=${att[0]!.B} H=${att[0]!.H} E=${att[0]!.E}; ${short})`,
      svg: lineChart({ title: 'Attention forward time', xLabel: 'sequence length L', yLabel: 'ms', series: seriesByLength(att, 'fwd_ms'), logX: true, logY: true, xTicks: Ls }),
    });
    out.push({
      id: 'attention-memory',
      caption: `Peak device memory of forward+backward vs sequence length (${short})`,
      svg: lineChart({ title: 'Attention peak memory (fwd+bwd)', xLabel: 'sequence length L', yLabel: 'MiB', series: seriesByLength(att, 'peak_MiB'), logX: true, logY: true, xTicks: Ls }),
    });
  }
  const flex = rows.filter((r) => r.scenario === 'flex' && Number.isFinite(numOf(r, 'sparse_over_dense')));
  if (flex.length) {
    const series: Series[] = flex.map((r) => ({ label: r.name, points: [[numOf(r, 'density'), numOf(r, 'sparse_over_dense')]], scatter: true }));
    series.push({ label: 'target: density + 0.15', points: [[0, 0.15], [1, 1.15]], dashed: true });
    series.push({ label: 'ideal: time ∝ density', points: [[0, 0], [1, 1]], dashed: true });
    out.push({
      id: 'flex-sparsity',
      caption: `Block-sparse flex: time relative to dense flex vs block density (${short}); below the dashed target line is good`,
      svg: lineChart({ title: 'Block-sparse / dense flex time vs density', xLabel: 'block density', yLabel: 'sparse time / dense time', series }),
    });
  }
  const vl = rows.filter((r) => r.scenario === 'varlen');
  if (vl.length) {
    const strategies = [...new Set(vl.map((r) => r.name.split(' ').slice(1).join(' ')))];
    const dists = [...new Set(vl.map((r) => r.name.split(' ')[0]!))];
    out.push({
      id: 'varlen-speedup',
      caption: `Varlen: forward speedup over padding to the max length (${short}); the dashed line is the published GPT-2 figure (2.1×, H100)`,
      svg: barChart({
        title: 'Speedup over pad-to-max (forward)',
        yLabel: '× faster than pad-to-max',
        groups: strategies,
        series: dists.map((d) => ({ label: `${d} lengths`, values: strategies.map((s) => numOf(vl.find((r) => r.name === `${d} ${s}`) ?? ({} as BenchRow), 'speedup_fwd_vs_pad_max')) })),
        refLine: { y: 2.1, label: 'published packed vs padded: 2.1×' },
      }),
    });
  }
  const vit = rows.filter((r) => r.scenario === 'vit' && Number.isFinite(numOf(r, 'step_ms')));
  if (vit.length) {
    out.push({
      id: 'vit-step',
      caption: `ViT train step per attention implementation (B=${vit[0]!.B} L=${vit[0]!.L} H=${vit[0]!.H} E=${vit[0]!.E}; ${short})`,
      svg: barChart({ title: 'ViT train step', yLabel: 'ms per step', groups: vit.map((r) => r.name.replace(/^train step /, '')), series: [{ label: 'step ms', values: vit.map((r) => numOf(r, 'step_ms')) }] }),
    });
  }
  const g2 = rows.filter((r) => r.scenario === 'gpt2-varlen' && Number.isFinite(numOf(r, 'train_speedup_vs_padded')));
  if (g2.length) {
    out.push({
      id: 'gpt2-step',
      caption: `GPT-2 step: speedup over the padded batch (B=${g2[0]!.B}, lengths ≤ ${g2[0]!.max_len}; ${short}); the dashed line is the published 2.1× (H100)`,
      svg: barChart({
        title: 'GPT-2 step vs padded',
        yLabel: '× faster than padded',
        groups: g2.map((r) => r.name),
        series: [
          { label: 'train step', values: g2.map((r) => numOf(r, 'train_speedup_vs_padded')) },
          { label: 'eval step', values: g2.map((r) => numOf(r, 'eval_speedup_vs_padded')) },
        ],
        refLine: { y: 2.1, label: 'published packed vs padded: 2.1×' },
      }),
    });
  }
  const gpu = gpuChart(refs);
  if (gpu) out.push(gpu);
  return out;
}

function gpuChart(refs: References): Chart | null {
  const w = refs.h100Webattn?.rows.filter((r) => r.op === 'sdpa flash' && /^B=8 H=16 L=\d+ E=64$/.test(r.name));
  const t = refs.h100Torch?.rows.filter((r) => /^B=8 H=16 L=\d+ E=64$/.test(r.name));
  if (!w?.length || !t?.length) return null;
  const pts = (rows: BenchRow[], k: string): [number, number][] => rows.map((r) => [lOf(r.name), numOf(r, k)] as [number, number]).filter((p) => Number.isFinite(p[1]));
  return {
    id: 'gpu-h100',
    caption: `The GPU run (${refs.h100Webattn!.path}, ${refs.h100Torch!.path}): forward time at B=8 H=16 E=64 on one H100, webattn (Dawn/Vulkan, f32) vs PyTorch 2.11`,
    svg: lineChart({
      title: 'H100: webattn vs PyTorch, forward',
      xLabel: 'sequence length L',
      yLabel: 'ms',
      logX: true,
      logY: true,
      series: [
        { label: 'webattn flash f32', points: pts(w, 'fwd_ms') },
        { label: 'torch flash bf16', points: pts(t, 'flash_bf16_ms') },
        { label: 'torch efficient fp32', points: pts(t, 'efficient_fp32_ms') },
        { label: 'torch math fp32', points: pts(t, 'math_fp32_ms') },
      ],
    }),
  };
}

function table(rows: BenchRow[]): string {
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((c) => c !== 'scenario');
  const head = cols.map((c) => `<th>${esc(c)}</th>`).join('');
  const body = rows.map((r) => `<tr>${cols.map((c) => `<td${typeof r[c] === 'number' ? ' class="n"' : ''}>${esc(fmt(r[c]))}</td>`).join('')}</tr>`).join('\n');
  return `<div class="scroll"><table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
}

function gpuTable(refs: References): string {
  const w = refs.h100Webattn?.rows.filter((r) => r.op === 'sdpa flash');
  if (!w?.length) return '';
  const t = new Map((refs.h100Torch?.rows ?? []).map((r) => [r.name, r]));
  const rows: BenchRow[] = w.map((r) => {
    const tr = t.get(r.name);
    const tf = tr ? numOf(tr, 'flash_bf16_ms') : NaN;
    return {
      scenario: 'gpu',
      name: r.name,
      webattn_fwd_ms: numOf(r, 'fwd_ms'),
      webattn_tflops: numOf(r, 'fwd_tflops'),
      webattn_fwdbwd_ms: numOf(r, 'fwdbwd_ms'),
      webattn_peak_MiB: numOf(r, 'peak_MiB'),
      torch_flash_bf16_ms: Number.isFinite(tf) ? tf : null,
      torch_efficient_fp32_ms: tr ? numOf(tr, 'efficient_fp32_ms') : null,
      webattn_over_torch_flash: Number.isFinite(tf) ? numOf(r, 'fwd_ms') / tf : null,
    };
  });
  return `<h2>The GPU run (H100)</h2><p>From <code>${esc(refs.h100Webattn!.path)}</code> and <code>${esc(refs.h100Torch?.path ?? '')}</code> (see docs/benchmarks.md): ${esc(refs.h100Webattn!.label)} beside ${esc(refs.h100Torch?.label ?? 'PyTorch')}, same machine, same run.</p>${table(rows)}`;
}

/** The report page. */
export function renderHtml(data: ReportData, chartList: Chart[], refs: References): string {
  const hl = data.headlines
    .map(
      (h) =>
        `<tr><td class="mark ${h.meets === null ? '' : h.meets ? 'ok' : 'bad'}">${h.meets === null ? '·' : h.meets ? '✓' : '✗'}</td><th>${esc(h.question)}</th><td>${esc(h.ours)}</td><td class="pub">${esc(h.published)}</td></tr>`,
    )
    .join('\n');
  const scenarios = [...new Set(data.rows.map((r) => r.scenario))];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>webattn-bench report · ${esc(data.device.adapter)}</title><link rel="icon" href="data:,">
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1260px;padding:16px 24px;color:#111827}
h1{font-size:22px;margin:4px 0} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
.meta{color:#4b5563;font-size:13px} code{background:#f3f4f6;padding:1px 4px;border-radius:3px}
table{border-collapse:collapse;font-size:12.5px} td,th{border:1px solid #e5e7eb;padding:3px 7px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums} .scroll td:first-child{white-space:nowrap} thead th{background:#f9fafb;position:sticky;top:0}
.answers th{white-space:nowrap} .answers td.pub{color:#374151;font-size:12px} .mark{font-weight:700;text-align:center}
.ok{color:#059669} .bad{color:#dc2626} .charts{display:flex;flex-wrap:wrap;gap:18px}
figure{margin:0;border:1px solid #e5e7eb;border-radius:6px;padding:6px;max-width:572px} figcaption{font-size:12px;color:#4b5563;max-width:560px}
.scroll{overflow-x:auto}
</style></head><body>
<h1>webattn-bench report</h1>
<p class="meta">${esc(data.date)} · <code>${esc(data.command)}</code>${data.seconds > 0 ? ` · ${data.seconds.toFixed(0)} s` : ''}<br>${esc(adapterLine(data.device))}${
    data.device.software ? '<br><b>Software adapter</b>: compare ratios, not absolute times.' : ''
  }</p>
<h2>Answers</h2>
<table class="answers"><thead><tr><th></th><th>question</th><th>ours (${esc(data.device.adapter.slice(0, 60))})</th><th>published / reference</th></tr></thead><tbody>
${hl}
</tbody></table>
<h2>Charts</h2>
<div class="charts">${chartList.map((c) => `<figure>${c.svg}<figcaption>${esc(c.caption)}</figcaption></figure>`).join('\n')}</div>
${scenarios.map((s) => `<h2>${esc(s)}</h2>${table(data.rows.filter((r) => r.scenario === s))}`).join('\n')}
${gpuTable(refs)}
${data.references.length ? `<h2>Reference runs</h2><ul>${data.references.map((r) => `<li><code>${esc(r.path)}</code> — ${esc(r.label)}</li>`).join('')}</ul>` : ''}
</body></html>
`;
}
