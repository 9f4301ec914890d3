import * as T from '@webattn/core-tensor';
import { lastSdpaBackend, scaledDotProductAttention, sdpaKernel, type SdpaBackend } from '@webattn/kernels-webgpu';
import { lineChart } from '../../apps/bench/src/html-svg.js';
import { $, devices, escapeHtml, finish, maxAbsDiff, setStatus, timeMs } from './common.js';

const H = 2;
const E = 32;
const BACKENDS: SdpaBackend[] = ['flash', 'math'];

async function main(): Promise<void> {
  // ?maxL=256 preselects the longest length (the demo test uses a short sweep)
  const maxParam = new URLSearchParams(location.search).get('maxL');
  if (maxParam) $<HTMLSelectElement>('maxL').value = maxParam;
  const d = await devices();
  if (!d) return;
  const { gpu, cpu } = d;
  const adapter = gpu.info.adapter || '(unnamed adapter)';
  const btn = $<HTMLButtonElement>('run');

  async function run(): Promise<void> {
    btn.disabled = true;
    try {
      const maxL = Number($<HTMLSelectElement>('maxL').value);
      const mk = (dev: T.Device, L: number, seed: number) => T.randn([1, H, L, E], { seed, device: dev });
      // correctness first: both backends against the float64 CPU reference
      setStatus('info', `Checking flash and math against the CPU reference on <b>${escapeHtml(adapter)}</b>…`);
      const Lc = 128;
      const ref = scaledDotProductAttention(mk(cpu, Lc, 1), mk(cpu, Lc, 2), mk(cpu, Lc, 3));
      let diff = 0;
      for (const b of BACKENDS) {
        const [q, k, v] = [mk(gpu, Lc, 1), mk(gpu, Lc, 2), mk(gpu, Lc, 3)];
        const o = sdpaKernel([b], () => T.noGrad(() => scaledDotProductAttention(q, k, v)));
        if (lastSdpaBackend() !== b) throw new Error(`asked for ${b}, ${lastSdpaBackend()} ran`);
        diff = Math.max(diff, await maxAbsDiff(o, ref));
        for (const t of [q, k, v, o]) t.dispose();
      }
      const rows: { L: number; b: SdpaBackend; ms: number; mib: number }[] = [];
      for (let L = 64; L <= maxL; L *= 2) {
        for (const b of BACKENDS) {
          setStatus('info', `Timing ${b} at L=${L} on <b>${escapeHtml(adapter)}</b>…`);
          const [q, k, v] = [mk(gpu, L, 1), mk(gpu, L, 2), mk(gpu, L, 3)];
          const f = () => sdpaKernel([b], () => T.noGrad(() => scaledDotProductAttention(q, k, v).dispose()));
          const ms = await timeMs(gpu, f);
          await gpu.sync();
          gpu.resetPeakMemory();
          const before = gpu.memoryStats().currentBytes;
          f();
          await gpu.sync();
          const mib = (gpu.memoryStats().peakBytes - before) / 2 ** 20;
          rows.push({ L, b, ms, mib });
          for (const t of [q, k, v]) t.dispose();
          render(rows);
        }
      }
      const ok = diff < 1e-3;
      const last = (b: SdpaBackend) => rows.filter((r) => r.b === b).pop()!;
      const [f, m] = [last('flash'), last('math')];
      setStatus(
        ok ? 'ok' : 'error',
        `${ok ? '✓' : '✗'} <b>${escapeHtml(adapter)}</b>: flash and math match the CPU reference to ${diff.toExponential(2)}. At L=${f.L} flash is ${(m.ms / f.ms).toFixed(1)}× ${m.ms >= f.ms ? 'faster' : 'slower'} than math and needs ${(m.mib / Math.max(f.mib, 1e-9)).toFixed(0)}× less memory.`,
      );
      finish({ status: ok ? 'ok' : 'error', adapter, maxAbsDiff: diff });
    } catch (e) {
      const msg = String((e as Error).message ?? e);
      setStatus('error', `✗ ${escapeHtml(msg)}`);
      finish({ status: 'error', adapter, maxAbsDiff: null, message: msg });
    } finally {
      btn.disabled = false;
    }
  }

  function render(rows: { L: number; b: SdpaBackend; ms: number; mib: number }[]): void {
    const series = (k: 'ms' | 'mib') => BACKENDS.map((b) => ({ label: b, points: rows.filter((r) => r.b === b).map((r) => [r.L, r[k]] as [number, number]) }));
    const Ls = [...new Set(rows.map((r) => r.L))];
    $('time-chart').innerHTML = lineChart({ title: 'Forward time', xLabel: 'sequence length L', yLabel: 'ms', series: series('ms'), logX: true, logY: true, xTicks: Ls, width: 540 });
    $('mem-chart').innerHTML = lineChart({ title: 'Peak device memory', xLabel: 'sequence length L', yLabel: 'MiB', series: series('mib'), logX: true, logY: true, xTicks: Ls, width: 540 });
    $('table').innerHTML = `<table><tr><th>L</th>${BACKENDS.map((b) => `<th>${b} ms</th><th>${b} MiB</th>`).join('')}<th>math / flash time</th></tr>${Ls.map((L) => {
      const r = (b: SdpaBackend) => rows.find((x) => x.L === L && x.b === b);
      const f = r('flash');
      const m = r('math');
      return `<tr><td>${L}</td>${BACKENDS.map((b) => `<td>${r(b)?.ms.toFixed(2) ?? ''}</td><td>${r(b)?.mib.toFixed(2) ?? ''}</td>`).join('')}<td>${f && m ? `${(m.ms / f.ms).toFixed(2)}×` : ''}</td></tr>`;
    }).join('')}</table>`;
  }

  btn.onclick = () => void run();
  await run();
}

void main();
