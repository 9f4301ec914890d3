import { describe, expect, it } from 'vitest';
import { charts, renderHtml } from './html-report.js';
import { lineChart, niceTicks } from './html-svg.js';
import { headlines, type References } from './report.js';
import { beginStep, progressLine, startPlan, type BenchRow } from './timing.js';

const noRefs: References = { llvmpipe: {} };
const att = (backend: string, L: number, fwd: number, peak: number, ratio: number | null): BenchRow => ({
  scenario: 'attention',
  name: `${backend} L=${L}`,
  B: 1,
  H: 2,
  E: 64,
  fwd_ms: fwd,
  fwdbwd_ms: 3 * fwd,
  peak_MiB: peak,
  flash_over_math_fwd: ratio,
  flash_over_math_fwdbwd: ratio === null ? null : ratio / 2,
});

describe('headlines', () => {
  it('answers flash vs math at the longest length both ran, with the memory ratio', () => {
    const rows = [att('math', 128, 40, 1.5, null), att('flash', 128, 10, 0.3, 4), att('math', 512, 300, 18, null), att('flash', 512, 60, 1.2, 5)];
    const hs = headlines(rows, noRefs);
    const t = hs.find((h) => h.question === 'flash vs math: time')!;
    expect(t.ours).toContain('5.0× faster fwd');
    expect(t.ours).toContain('L=512');
    expect(t.meets).toBe(true);
    const m = hs.find((h) => h.question === 'flash vs math: peak memory')!;
    expect(m.ours).toContain(`${(18 / 1.2).toFixed(0)}× less`);
  });

  it('judges block sparsity against density + 0.15 and states the published GPT-2 figure for varlen', () => {
    const rows: BenchRow[] = [
      { scenario: 'flex', name: 'slidingWindow(256) L=1024', density: 0.33, sparse_over_dense: 0.6 },
      { scenario: 'varlen', name: 'uniform pad-to-max', B: 16, L: 256, useful_fraction: 0.43, speedup_fwd_vs_pad_max: 1, speedup_fwdbwd_vs_pad_max: 1 },
      { scenario: 'varlen', name: 'uniform packed', B: 16, L: 256, useful_fraction: 1, speedup_fwd_vs_pad_max: 3, speedup_fwdbwd_vs_pad_max: 2 },
    ];
    const hs = headlines(rows, noRefs);
    expect(hs.find((h) => h.scenario === 'flex')!.meets).toBe(false); // 0.6 > 0.33 + 0.15
    const v = hs.find((h) => h.scenario === 'varlen')!;
    expect(v.meets).toBe(true);
    expect(v.published).toContain('342 ms → packed flash varlen 160 ms = 2.1×');
    expect(hs.find((h) => h.scenario === 'vit')!.ours).toContain('not measured');
  });
});

describe('SVG charts', () => {
  it('places points on log axes by their logarithm', () => {
    const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', logX: true, logY: true, series: [{ label: 's', points: [[100, 1], [1000, 10], [10000, 100]] }], width: 500, height: 300 });
    const cx = [...svg.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(cx).toHaveLength(3);
    // equal ratios → equal pixel steps
    expect(cx[1]![0] - cx[0]![0]).toBeCloseTo(cx[2]![0] - cx[1]![0], 0);
    expect(cx[0]![1] - cx[1]![1]).toBeCloseTo(cx[1]![1] - cx[2]![1], 0);
  });

  it('makes 1-2-5 ticks on a log axis and round steps on a linear one', () => {
    expect(niceTicks(0.3, 30, true)).toEqual([0.5, 1, 2, 5, 10, 20]);
    expect(niceTicks(0, 1, false)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
  });

  it('writes a self-contained report (no script, no external resource) with a chart per question', () => {
    const rows = [att('math', 128, 40, 1.5, null), att('flash', 128, 10, 0.3, 4)];
    const list = charts(rows, noRefs, 'test adapter');
    expect(list.map((c) => c.id)).toEqual(['attention-time', 'attention-memory']);
    const info = { backend: 'webgpu', api: 'opengl', adapter: 'test adapter', software: true, features: [] } as never;
    const html = renderHtml({ date: 'd', command: 'webattn-bench', seconds: 1, device: info, headlines: headlines(rows, noRefs), rows, references: [] }, list, noRefs);
    expect(html).not.toMatch(/<script|(?:src|href)="https?:|url\(https?:/);
    expect((html.match(/<svg /g) ?? []).length).toBe(2);
  });
});

describe('progress bar', () => {
  it('scales the time left by the speed of the finished steps', () => {
    startPlan([
      { name: 'a', estimateS: 10 },
      { name: 'b', estimateS: 30 },
    ]);
    const t0 = performance.now();
    beginStep('a');
    // nothing finished yet: the estimate as is (step a not started long ago)
    expect(progressLine('x', t0)).toMatch(/~0:(39|40) left/);
  });
});
