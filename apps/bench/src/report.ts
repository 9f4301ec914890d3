import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DeviceInfo } from '@webattn/core-tensor';
import type { BenchRow } from './timing.js';

export function fmt(v: unknown): string {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a === 0 ? '0' : a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(2) : v.toPrecision(3);
  }
  return v === null || v === undefined ? '' : String(v);
}

/** The adapter line every report starts with. */
export function adapterLine(info: DeviceInfo): string {
  const why = info.reason ? ` | chosen: ${info.reason}` : '';
  return `adapter: ${info.adapter} | api: ${info.api} | backend: ${info.backend} | software: ${info.software} | features: ${info.features.join(', ') || 'none'}${why}`;
}

/** Plain-text table of rows, grouped by scenario, headed by the adapter that produced them. */
export function renderTable(info: DeviceInfo, rows: BenchRow[]): string {
  const out: string[] = [adapterLine(info)];
  for (const s of [...new Set(rows.map((r) => r.scenario))]) {
    const rs = rows.filter((r) => r.scenario === s);
    const cols = [...new Set(rs.flatMap((r) => Object.keys(r)))].filter((c) => c !== 'scenario');
    const cells = [cols, ...rs.map((r) => cols.map((c) => fmt(r[c])))];
    const widths = cols.map((_, i) => Math.max(...cells.map((row) => String(row[i]).length)));
    out.push('', `## ${s}`);
    cells.forEach((row, k) => {
      out.push(row.map((v, i) => String(v).padEnd(widths[i]!)).join('  '));
      if (k === 0) out.push(widths.map((w) => '-'.repeat(w)).join('  '));
    });
  }
  return out.join('\n');
}

// ---- reference figures ------------------------------------------------------------------------

/** A results file of an earlier run (ours on another adapter, or PyTorch's). */
export interface RefFile {
  /** path relative to the repository root */
  path: string;
  /** who and where, e.g. "webattn, H100 Dawn/Vulkan" */
  label: string;
  rows: BenchRow[];
  date?: string;
}

/** The reference runs the headlines compare with: the last llvmpipe run, the H100 run (webattn + PyTorch). */
export interface References {
  llvmpipe: Record<string, RefFile>;
  h100Webattn?: RefFile;
  h100Torch?: RefFile;
}

function newest(dir: string, suffix: string): string | null {
  if (!existsSync(dir)) return null;
  const files = readdirSync(dir).filter((f) => f.endsWith(suffix)).sort();
  return files.length ? join(dir, files[files.length - 1]!) : null;
}

function readRef(root: string, rel: string | null, label: string): RefFile | undefined {
  if (!rel) return undefined;
  try {
    const d = JSON.parse(readFileSync(join(root, rel), 'utf8')) as { rows: BenchRow[]; date?: string };
    return { path: rel, label, rows: d.rows, date: d.date };
  } catch {
    return undefined;
  }
}

/** Reads the reference runs found under `root` (apps/bench/results, docs/benchmarks); missing ones stay undefined. */
export function loadReferences(root: string): References {
  const rel = (dir: string, suffix: string) => {
    const f = newest(join(root, dir), suffix);
    return f ? `${dir}/${f.slice(join(root, dir).length + 1)}` : null;
  };
  const llvmpipe: Record<string, RefFile> = {};
  for (const s of ['attention', 'varlen', 'flex']) {
    const r = readRef(root, rel('apps/bench/results', `-llvmpipe-${s}.json`), 'webattn, llvmpipe');
    if (r) llvmpipe[s] = r;
  }
  return {
    llvmpipe,
    h100Webattn: readRef(root, rel('docs/benchmarks', '-h100-webattn.json'), 'webattn, H100 Dawn/Vulkan f32'),
    h100Torch: readRef(root, rel('docs/benchmarks', '-h100-torch.json'), 'PyTorch 2.11, H100'),
  };
}

// ---- headlines: one line per published question --------------------------------------------------

/** One answered question: our figure beside the published/reference one. */
export interface Headline {
  question: string;
  scenario: string;
  /** our figure, with the shape */
  ours: string;
  /** the published or earlier figure it reproduces, with where it came from */
  published: string;
  /** whether ours meets the stated target (null when there is none) */
  meets: boolean | null;
}

const x = (v: number) => `${v >= 10 ? v.toFixed(0) : v.toFixed(1)}×`;
const num = (r: BenchRow | undefined, k: string): number | null => (r && typeof r[k] === 'number' && Number.isFinite(r[k] as number) ? (r[k] as number) : null);
const byName = (rows: BenchRow[], name: string) => rows.find((r) => r.name === name);
const lOf = (name: string) => Number(/L=(\d+)/.exec(name)?.[1] ?? NaN);

/** Which scenarios the one-screen summary knows a question for (others get a generic line). */
export const PUBLISHED_GPT2 = 'GPT-2 (24 layers, 16×64 heads, lengths 1..1023, batch 32) padded SDPA 342 ms → packed flash varlen 160 ms = 2.1× (H100, published)';

/** The headlines of a run: flash vs math, block-sparse, varlen, softcap, models. */
export function headlines(rows: BenchRow[], refs: References): Headline[] {
  const out: Headline[] = [];
  const att = rows.filter((r) => r.scenario === 'attention' && /^(flash|math) L=/.test(r.name));
  if (att.length) {
    const Ls = [...new Set(att.filter((r) => r.name.startsWith('flash') && num(r, 'flash_over_math_fwd') !== null).map((r) => lOf(r.name)))].sort((a, b) => a - b);
    const L = Ls[Ls.length - 1];
    if (L !== undefined) {
      const f = byName(att, `flash L=${L}`);
      const fc = byName(att, `flash L=${L} causal`);
      const m = byName(att, `math L=${L}`);
      const shape = `B=${f?.B} H=${f?.H} E=${f?.E} L=${L}`;
      const refA = refs.llvmpipe.attention?.rows;
      const refF = refA && byName(refA, `flash L=${L}`);
      const refF1k = refA && byName(refA, 'flash L=1024');
      const torch = refs.h100Torch && byName(refs.h100Torch.rows, 'B=8 H=16 L=2048 E=64');
      const pub: string[] = [];
      if (refF) pub.push(`${x(num(refF, 'flash_over_math_fwd')!)} at L=${L}${L !== 1024 && refF1k ? `, ${x(num(refF1k, 'flash_over_math_fwd') ?? NaN)} at L=1024` : ''} (llvmpipe, ${refs.llvmpipe.attention!.path})`);
      if (torch) pub.push(`PyTorch flash bf16 ${x(num(torch, 'math_fp32_ms')! / num(torch, 'flash_bf16_ms')!)} faster than math fp32 at B=8 H=16 L=2048 (H100)`);
      out.push({
        question: 'flash vs math: time',
        scenario: 'attention',
        ours: `flash ${x(num(f, 'flash_over_math_fwd')!)} faster fwd${fc ? ` (causal ${x(num(fc, 'flash_over_math_fwd')!)})` : ''}, fwd+bwd ${x(num(f, 'flash_over_math_fwdbwd')!)} at ${shape}`,
        published: pub.join('; ') || 'no reference run found',
        meets: num(f, 'flash_over_math_fwd')! > 1,
      });
      const pf = num(f, 'peak_MiB');
      const pm = num(m, 'peak_MiB');
      if (pf !== null && pm !== null) {
        const refM2k = refA && byName(refA, 'math L=2048');
        const refF2k = refA && byName(refA, 'flash L=2048');
        const t4k = refs.h100Torch && byName(refs.h100Torch.rows, 'B=8 H=16 L=4096 E=64');
        const pub2: string[] = [];
        if (refM2k && refF2k) pub2.push(`${fmt(num(refF2k, 'peak_MiB'))} vs ${fmt(num(refM2k, 'peak_MiB'))} MiB at L=2048 (llvmpipe)`);
        if (t4k) pub2.push(`PyTorch flash ${fmt(num(t4k, 'flash_bf16_peak_MiB'))} vs math ${fmt(num(t4k, 'math_fp32_peak_MiB'))} MiB at B=8 H=16 L=4096 (H100); flash memory is O(L), math O(L²)`);
        out.push({
          question: 'flash vs math: peak memory',
          scenario: 'attention',
          ours: `flash ${fmt(pf)} MiB vs math ${fmt(pm)} MiB (${x(pm / pf)} less) at ${shape}`,
          published: pub2.join('; ') || 'flash memory is O(L), math O(L²)',
          meets: pf < pm,
        });
      }
    }
  }

  const flex = rows.filter((r) => r.scenario === 'flex');
  const sw = flex.find((r) => r.name.startsWith('slidingWindow'));
  if (sw) {
    const d = num(sw, 'density')!;
    const ratio = num(sw, 'sparse_over_dense')!;
    const others = flex
      .filter((r) => r !== sw && num(r, 'sparse_over_dense') !== null)
      .map((r) => `${r.name.split(' L=')[0]} ${fmt(num(r, 'sparse_over_dense'))} (d ${fmt(num(r, 'density'))})`)
      .join(', ');
    const h = refs.h100Webattn?.rows.find((r) => r.op === 'flex slidingWindow(256)' && lOf(r.name) === 4096);
    const t = refs.h100Torch && h ? byName(refs.h100Torch.rows, h.name) : undefined;
    const refF = refs.llvmpipe.flex?.rows.find((r) => r.name.startsWith('slidingWindow'));
    const pub: string[] = ['target time ≤ (density + 0.15) × dense'];
    if (refF) pub.push(`${fmt(num(refF, 'sparse_over_dense'))} at d ${fmt(num(refF, 'density'))}, ${refF.name.split(' ').pop()} (llvmpipe)`);
    if (h) pub.push(`${x(num(h, 'speedup_vs_dense')!)} over dense flash at d ${fmt(num(h, 'density'))}, B=8 H=16 L=4096 (H100)${t ? `; PyTorch FlexAttention ${fmt(num(t, 'flex_window256_fp32_ms'))} ms vs ours ${fmt(num(h, 'fwd_ms'))} ms` : ''}`);
    out.push({
      question: 'block-sparse flex vs dense flex',
      scenario: 'flex',
      ours: `${sw.name}: density ${fmt(d)}, time ${fmt(ratio)}× dense (${x(1 / ratio)} faster)${others ? `; ${others}` : ''}`,
      published: pub.join('; '),
      meets: ratio <= d + 0.15,
    });
  }
  const sc = flex.find((r) => r.name.startsWith('softcap'));
  if (sc) {
    const refS = refs.llvmpipe.flex?.rows.find((r) => r.name.startsWith('softcap'));
    const h = refs.h100Webattn?.rows.find((r) => r.op === 'flex softcap' && lOf(r.name) === 1024);
    const t = refs.h100Torch && h ? byName(refs.h100Torch.rows, h.name) : undefined;
    const pub: string[] = [];
    if (refS) pub.push(`${x(num(refS, 'speedup')!)} at ${refS.name.split(' ').pop()} (llvmpipe)`);
    if (h && t) pub.push(`H100 B=8 H=16 L=1024: ours fused ${fmt(num(h, 'fwd_ms'))} ms vs PyTorch compiled flex ${fmt(num(t, 'flex_softcap_fp32_ms'))} ms`);
    out.push({
      question: 'fused softcap vs unfused',
      scenario: 'flex',
      ours: `fused ${x(num(sc, 'speedup')!)} faster than unfused matmul+tanh+softmax (${sc.name})`,
      published: pub.join('; ') || 'no reference run found',
      meets: num(sc, 'speedup')! > 1,
    });
  }

  const vl = rows.filter((r) => r.scenario === 'varlen');
  const packed = vl.find((r) => r.name.endsWith(' packed'));
  if (packed) {
    const dist = packed.name.split(' ')[0]!;
    const fd = vl.find((r) => r.name === `${dist} flex-document`);
    const refP = refs.llvmpipe.varlen?.rows.find((r) => r.name === `${dist} packed`);
    const h = refs.h100Webattn?.rows.filter((r) => r.op === 'packed vs padded') ?? [];
    const pub = [PUBLISHED_GPT2.replace(' (H100, published)', ' (published, H100)')];
    if (refP) pub.push(`${x(num(refP, 'speedup_fwd_vs_pad_max')!)} at lengths 1..${refP.L} (llvmpipe)`);
    if (h.length) pub.push(`webattn H100: ${h.map((r) => `${x(num(r, 'speedup_vs_padded')!)} at ${/lengths [\d.]+/.exec(r.name)?.[0] ?? r.name}`).join(', ')}`);
    out.push({
      question: 'packed vs padded varlen',
      scenario: 'varlen',
      ours: `packed ${x(num(packed, 'speedup_fwd_vs_pad_max')!)} faster fwd, ${x(num(packed, 'speedup_fwdbwd_vs_pad_max')!)} fwd+bwd than pad-to-${packed.L} (B=${packed.B}, ${dist} lengths 1..${packed.L}, useful ${fmt(num(vl.find((r) => r.name === `${dist} pad-to-max`), 'useful_fraction'))})${fd ? `; flex document mask ${x(num(fd, 'speedup_fwd_vs_pad_max')!)}` : ''}`,
      published: pub.join('; '),
      meets: num(packed, 'speedup_fwd_vs_pad_max')! >= 1.5,
    });
  }

  const mem = rows.filter((r) => r.scenario === 'memory' && typeof r.flat === 'boolean');
  if (mem.length) {
    out.push({
      question: 'device memory over training steps',
      scenario: 'memory',
      ours: mem.map((r) => `${r.name}: Δ ${fmt(r.bytes_delta)} B, ${fmt(r.storages_delta)} storages${r.flat ? ' (flat)' : Number(r.bytes_delta) > 0 ? ' (GROWS)' : ' (not flat)'}`).join('; '),
      published: 'a training step frees its intermediates: device memory after step 1000 equals step 10 (issue 13 target)',
      meets: mem.every((r) => r.flat === true),
    });
  }
  const vit = rows.filter((r) => r.scenario === 'vit' && num(r, 'step_ms') !== null);
  const vit0 = vit[0];
  out.push({
    question: 'ViT train step per attention implementation',
    scenario: 'vit',
    ours: vit0
      ? `step ms at B=${vit0.B} L=${vit0.L} H=${vit0.H} E=${vit0.E}, ${vit0.layers} layer(s): ${vit.map((r) => `${r.name.replace(/^train step /, '')} ${fmt(num(r, 'step_ms'))}`).join(', ')}`
      : `not measured in this run (scenario 'vit')`,
    published: 'published ViT: 224 px, patch 16 → L=196, 16 heads of 64, batch 128 (eager / SDPA / flash / flex softcap / flex 5×5 neighborhood)',
    meets: null,
  });
  const g2 = rows.filter((r) => r.scenario === 'gpt2-varlen');
  const g2p = g2.find((r) => r.name.startsWith('packed flash'));
  const others = g2.filter((r) => r !== g2p && r.name.startsWith('packed'));
  out.push({
    question: 'GPT-2 step, padded vs packed',
    scenario: 'gpt2-varlen',
    ours: g2p
      ? `${g2p.name} ${x(num(g2p, 'train_speedup_vs_padded')!)} faster train step, ${x(num(g2p, 'eval_speedup_vs_padded')!)} eval than padded (B=${g2p.B}, lengths ≤ ${g2p.max_len}, useful ${fmt(num(g2p, 'useful_fraction'))}, ${g2p.layers} layer(s))${others.map((r) => `; ${r.name} ${x(num(r, 'train_speedup_vs_padded')!)}`).join('')}`
      : g2.length
        ? g2.slice(0, 4).map(shortRow).join(', ')
        : `not measured in this run (scenario 'gpt2-varlen')`,
    published: `${PUBLISHED_GPT2}; goal ≥ 2×`,
    meets: g2p ? num(g2p, 'train_speedup_vs_padded')! >= 2 : null,
  });
  const fb = rows.filter((r) => r.scenario === 'cpu fallback');
  if (fb.length) {
    out.push({
      question: 'ops that ran the CPU reference kernels instead of the device\'s',
      scenario: 'cpu fallback',
      ours: fb.map((r) => `${r.name}: ${r.ops} = ${fmt(num(r, 'share_of_scenario') !== null ? 100 * num(r, 'share_of_scenario')! : null)}% of its time`).join('; '),
      published: 'every timed attention row runs on the device\'s kernels; small bool/int32 ops (masks, ids) may take the reference path',
      meets: null,
    });
  }
  return out;
}

/** `name: first timing` of a row, for scenarios the summary has no specific question for. */
function shortRow(r: BenchRow): string {
  const keys = Object.keys(r).filter((k) => typeof r[k] === 'number' && /(_ms|ms|speedup|MiB)$/.test(k));
  return `${r.name}: ${keys.slice(0, 1).map((k) => `${fmt(r[k])} ${k.replace(/_/g, ' ')}`).join(', ')}`;
}

/** The one-screen terminal summary. */
export function renderHeadlines(info: DeviceInfo, hs: Headline[], seconds: number): string {
  const out = [`webattn-bench · ${info.adapter} (${info.backend}/${info.api}${info.software ? ', software: compare ratios, not absolutes' : ''}) · ${seconds.toFixed(0)} s`];
  if (info.reason) out.push(`device chosen: ${info.reason}`);
  out.push('');
  for (const h of hs) {
    const mark = h.meets === null ? '·' : h.meets ? '✓' : '✗';
    out.push(`${mark} ${h.question}`);
    out.push(`    ours:      ${h.ours}`);
    out.push(`    published: ${h.published}`);
  }
  return out.join('\n');
}
