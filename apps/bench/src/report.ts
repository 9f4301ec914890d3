import type { DeviceInfo } from '@webattn/core-tensor';
import type { BenchRow } from './timing.js';

function fmt(v: unknown): string {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a === 0 ? '0' : a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(2) : v.toPrecision(3);
  }
  return v === null || v === undefined ? '' : String(v);
}

/** Plain-text table of rows, grouped by scenario, headed by the adapter that produced them. */
export function renderTable(info: DeviceInfo, rows: BenchRow[]): string {
  const out: string[] = [];
  out.push(`adapter: ${info.adapter} | api: ${info.api} | backend: ${info.backend} | software: ${info.software} | features: ${info.features.join(', ') || 'none'}`);
  const scenarios = [...new Set(rows.map((r) => r.scenario))];
  for (const s of scenarios) {
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
