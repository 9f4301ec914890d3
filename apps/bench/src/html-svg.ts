/**
 * The few SVG primitives the HTML report needs: a line/scatter chart with linear or log axes and a
 * grouped bar chart. Plain strings, no DOM, no dependency: the report stays one self-contained file.
 */

/** One line (or set of points) of a chart. */
export interface Series {
  label: string;
  points: [number, number][];
  /** draw points only, no connecting line */
  scatter?: boolean;
  dashed?: boolean;
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logX?: boolean;
  logY?: boolean;
  /** tick values on x (default: the distinct x of the data, or nice ones on a log axis) */
  xTicks?: number[];
  width?: number;
  height?: number;
}

export const PALETTE = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];

export const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function tickLabel(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (Number.isInteger(v) && a < 1e5) return String(v);
  if (a >= 1e4) return `${+(v / 1000).toPrecision(3)}k`;
  if (a >= 1) return String(+v.toPrecision(3));
  return String(+v.toPrecision(2));
}

/** Nice ticks: 1-2-5 decades on a log axis, about six steps on a linear one. */
export function niceTicks(lo: number, hi: number, log: boolean): number[] {
  if (log) {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++)
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** e;
        if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
      }
    return out.length >= 2 ? out : [lo, hi];
  }
  const span = hi - lo || 1;
  const step0 = span / 6;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

/** A line chart as an `<svg>` string (an empty-data note when no series has points). */
export function lineChart(spec: ChartSpec): string {
  const W = spec.width ?? 560;
  const H = spec.height ?? 320;
  const m = { l: 64, r: 16, t: 34, b: 48 };
  const pts = spec.series.flatMap((s) => s.points).filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b) && (!spec.logX || a > 0) && (!spec.logY || b > 0));
  const head = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(spec.title)}" font-family="system-ui, sans-serif" font-size="11">`;
  const title = `<text x="${W / 2}" y="18" text-anchor="middle" font-size="13" font-weight="600">${esc(spec.title)}</text>`;
  if (!pts.length) return `${head}${title}<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#6b7280">no data in this run</text></svg>`;
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  if (spec.logY) {
    y0 = 10 ** (Math.floor(Math.log10(y0) * 2) / 2);
    y1 = 10 ** (Math.ceil(Math.log10(y1) * 2) / 2);
  } else {
    y0 = Math.min(0, y0);
    y1 = y1 * 1.08 || 1;
  }
  if (x0 === x1) [x0, x1] = spec.logX ? [x0 / 2, x1 * 2] : [x0 - 1, x1 + 1];
  else if (!spec.logX) [x0, x1] = [Math.min(0, x0), x1 * 1.05];
  const fx = (v: number) => (spec.logX ? (Math.log(v) - Math.log(x0)) / (Math.log(x1) - Math.log(x0)) : (v - x0) / (x1 - x0));
  const fy = (v: number) => (spec.logY ? (Math.log(v) - Math.log(y0)) / (Math.log(y1) - Math.log(y0)) : (v - y0) / (y1 - y0));
  const px = (v: number) => m.l + fx(v) * (W - m.l - m.r);
  const py = (v: number) => H - m.b - fy(v) * (H - m.t - m.b);
  const parts: string[] = [head, title];
  const xt = spec.xTicks ?? (spec.logX ? [...new Set(pts.map((p) => p[0]))].sort((a, b) => a - b) : niceTicks(x0, x1, false));
  for (const t of xt) {
    const X = px(t).toFixed(1);
    parts.push(`<line x1="${X}" x2="${X}" y1="${m.t}" y2="${H - m.b}" stroke="#e5e7eb"/><text x="${X}" y="${H - m.b + 14}" text-anchor="middle" fill="#374151">${tickLabel(t)}</text>`);
  }
  for (const t of niceTicks(y0, y1, !!spec.logY)) {
    const Y = py(t).toFixed(1);
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${Y}" y2="${Y}" stroke="#e5e7eb"/><text x="${m.l - 6}" y="${Y}" dy="3.5" text-anchor="end" fill="#374151">${tickLabel(t)}</text>`);
  }
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#9ca3af"/>`);
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 12}" text-anchor="middle" fill="#111827">${esc(spec.xLabel)}${spec.logX ? ' (log)' : ''}</text>`);
  parts.push(`<text transform="translate(14 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle" fill="#111827">${esc(spec.yLabel)}${spec.logY ? ' (log)' : ''}</text>`);
  spec.series.forEach((s, i) => {
    const c = PALETTE[i % PALETTE.length]!;
    const ps = s.points.filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b) && (!spec.logX || a > 0) && (!spec.logY || b > 0)).sort((a, b) => a[0] - b[0]);
    if (!s.scatter && ps.length > 1)
      parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 4"' : ''} points="${ps.map(([a, b]) => `${px(a).toFixed(1)},${py(b).toFixed(1)}`).join(' ')}"/>`);
    if (s.scatter || !s.dashed) for (const [a, b] of ps) parts.push(`<circle cx="${px(a).toFixed(1)}" cy="${py(b).toFixed(1)}" r="${s.scatter ? 4.5 : 3}" fill="${c}"><title>${esc(`${s.label}: ${tickLabel(a)}, ${tickLabel(b)}`)}</title></circle>`);
  });
  // legend, top-left inside the plot
  spec.series.forEach((s, i) => {
    const c = PALETTE[i % PALETTE.length]!;
    const Y = m.t + 12 + i * 15;
    parts.push(`<line x1="${m.l + 8}" x2="${m.l + 26}" y1="${Y}" y2="${Y}" stroke="${c}" stroke-width="${s.scatter ? 6 : 2}"${s.dashed ? ' stroke-dasharray="5 4"' : ''}/><text x="${m.l + 31}" y="${Y}" dy="3.5" fill="#111827">${esc(s.label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

export interface BarSpec {
  title: string;
  yLabel: string;
  /** categories on x */
  groups: string[];
  /** one value per group (null: no bar) */
  series: { label: string; values: (number | null)[] }[];
  /** a horizontal reference line (e.g. 1× or a published figure) */
  refLine?: { y: number; label: string };
  width?: number;
  height?: number;
}

/** A grouped bar chart as an `<svg>` string. */
export function barChart(spec: BarSpec): string {
  const W = spec.width ?? 560;
  const H = spec.height ?? 320;
  const m = { l: 56, r: 16, t: 34, b: 56 };
  const vals = spec.series.flatMap((s) => s.values).filter((v): v is number => v !== null && Number.isFinite(v));
  const head = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(spec.title)}" font-family="system-ui, sans-serif" font-size="11">`;
  const title = `<text x="${W / 2}" y="18" text-anchor="middle" font-size="13" font-weight="600">${esc(spec.title)}</text>`;
  if (!vals.length) return `${head}${title}<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#6b7280">no data in this run</text></svg>`;
  const y1 = Math.max(...vals, spec.refLine?.y ?? 0) * 1.15;
  const py = (v: number) => H - m.b - (v / y1) * (H - m.t - m.b);
  const parts = [head, title];
  for (const t of niceTicks(0, y1, false)) {
    const Y = py(t).toFixed(1);
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${Y}" y2="${Y}" stroke="#e5e7eb"/><text x="${m.l - 6}" y="${Y}" dy="3.5" text-anchor="end" fill="#374151">${tickLabel(t)}</text>`);
  }
  const gw = (W - m.l - m.r) / spec.groups.length;
  const bw = (gw * 0.8) / spec.series.length;
  spec.groups.forEach((g, gi) => {
    const gx = m.l + gi * gw + gw * 0.1;
    spec.series.forEach((s, si) => {
      const v = s.values[gi];
      if (v === null || v === undefined || !Number.isFinite(v)) return;
      const X = gx + si * bw;
      parts.push(`<rect x="${X.toFixed(1)}" y="${py(v).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(H - m.b - py(v)).toFixed(1)}" fill="${PALETTE[si % PALETTE.length]}"><title>${esc(`${s.label} · ${g}: ${tickLabel(v)}`)}</title></rect>`);
      parts.push(`<text x="${(X + bw / 2 - 1).toFixed(1)}" y="${(py(v) - 4).toFixed(1)}" text-anchor="middle" font-size="10" fill="#111827">${tickLabel(v)}</text>`);
    });
    parts.push(`<text x="${(m.l + gi * gw + gw / 2).toFixed(1)}" y="${H - m.b + 15}" text-anchor="middle" fill="#111827">${esc(g)}</text>`);
  });
  if (spec.refLine) {
    const Y = py(spec.refLine.y).toFixed(1);
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${Y}" y2="${Y}" stroke="#111827" stroke-dasharray="6 4"/><text x="${m.l + 6}" y="${Number(Y) - 5}" fill="#111827">${esc(spec.refLine.label)}</text>`);
  }
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#9ca3af"/>`);
  parts.push(`<text transform="translate(14 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle" fill="#111827">${esc(spec.yLabel)}</text>`);
  spec.series.forEach((s, i) => {
    const X = m.l + 8 + i * 150;
    parts.push(`<rect x="${X}" y="${H - 18}" width="12" height="10" fill="${PALETTE[i % PALETTE.length]}"/><text x="${X + 16}" y="${H - 9}" fill="#111827">${esc(s.label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}
