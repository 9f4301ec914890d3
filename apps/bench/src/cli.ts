#!/usr/bin/env node
/**
 * webattn-bench: reproduces the published experiments on the default device and prints every
 * number with the adapter that produced it, beside the published figure it reproduces. On software
 * adapters compare ratios, not absolutes. Every run writes bench-results/report.html + report.json.
 *
 *   webattn-bench [scenario ...] [--full] [--tables] [--out DIR] [--json FILE]
 *
 * The default run takes the quick part of each default scenario on the default device — the wasm backend where
 * the only WebGPU adapters are software rasterizers (about a minute on a 2-core machine; ~80 s on llvmpipe with
 * `WEBATTN_DEVICE=webgpu`); `--full` runs today's whole sweep. Name scenarios to pick them. Ops that ran the CPU
 * reference kernels instead of the device's are counted per scenario (rows `cpu fallback`).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from '@webattn/kernels-webgpu';
import '@webattn/kernels-webgpu';
// the fast CPU backend: the default device where the only WebGPU adapters are software rasterizers
import '@webattn/kernels-wasm';
import { describeFallbacks, installFallbackCensus, takeFallbacks } from './fallback.js';
import { charts, renderHtml, type ReportData } from './html-report.js';
import { headlines, loadReferences, renderHeadlines, renderTable } from './report.js';
import { attentionScenario, attentionVsTfjsScenario } from './scenarios/attention.js';
import { flexScenario } from './scenarios/flex.js';
import { kernelsScenario } from './scenarios/kernels.js';
import { memoryScenario } from './scenarios/memory.js';
import { seedScenario } from './scenarios/seed.js';
import { varlenScenario } from './scenarios/varlen.js';
import { vitScenario } from './scenarios/vit.js';
import { gpt2VarlenScenario } from './scenarios/gpt2-varlen.js';
import { wasmScenario } from './scenarios/wasm.js';
import { beginStep, progress, progressDone, progressTick, startPlan, type BenchRow } from './timing.js';

/**
 * What a scenario module exports: either `(device, quick) => rows` (quick = the default run's part)
 * or an object with the two parts.
 */
export type ScenarioRun = ((device: T.Device, quick: boolean) => Promise<BenchRow[]>) | { quick: (device: T.Device) => Promise<BenchRow[]>; full: (device: T.Device) => Promise<BenchRow[]> };

/** One entry of the registry: adding a scenario is one line below. */
export interface Scenario {
  name: string;
  run: ScenarioRun;
  /** part of the run with no scenario named (false: only when named, e.g. GPU-machine shapes) */
  inDefault: boolean;
  /** expected seconds of the quick and the full part on llvmpipe (drives the progress bar's ETA; it rescales by the speed of the finished steps) */
  seconds: [quick: number, full: number];
}

// Budget of the default run on a 2-core machine: ≤ 180 s including `npm run build` (~25 s) and Dawn's start. On the
// wasm backend (the default device there) these take ~40-60 s; forced onto llvmpipe ~80 s: keep a new scenario's quick
// part under ~15 s on llvmpipe.
const SCENARIOS: Scenario[] = [
  { name: 'kernels', run: kernelsScenario, inDefault: true, seconds: [2, 15] },
  // memory runs early: tensors other scenarios leave to the collector would show in its byte counts
  { name: 'memory', run: memoryScenario, inDefault: true, seconds: [20, 150] },
  { name: 'attention', run: attentionScenario, inDefault: true, seconds: [30, 300] },
  { name: 'varlen', run: varlenScenario, inDefault: true, seconds: [8, 120] },
  { name: 'flex', run: flexScenario, inDefault: true, seconds: [22, 240] },
  { name: 'vit', run: vitScenario, inDefault: true, seconds: [15, 300] },
  { name: 'gpt2-varlen', run: gpt2VarlenScenario, inDefault: true, seconds: [15, 300] },
  // the CPU backend's own bench: only when named, to keep the default run under three minutes
  { name: 'wasm', run: wasmScenario, inDefault: false, seconds: [20, 120] },
  { name: 'seed', run: seedScenario, inDefault: false, seconds: [20, 600] },
  // flash forward vs TF.js-WebGPU's unfused attention only (also the first rows of `attention` on a WebGPU device); on
  // another default device (wasm) it opens the WebGPU adapter for these rows, each row naming it
  { name: 'tfjs', run: tfjsOnWebGPU, inDefault: false, seconds: [20, 300] },
];

async function tfjsOnWebGPU(device: T.Device, quick: boolean): Promise<BenchRow[]> {
  if (device.backend === 'webgpu') return attentionVsTfjsScenario(device as WebGPUDevice, quick);
  const gpu = (await T.getDevice({ kind: 'webgpu' })) as WebGPUDevice;
  try {
    return await attentionVsTfjsScenario(gpu, quick);
  } finally {
    gpu.destroy();
  }
}

const runPart = (s: Scenario, device: T.Device, full: boolean) => (typeof s.run === 'function' ? s.run(device, !full) : full ? s.run.full(device) : s.run.quick(device));

function usage(code = 2): never {
  const names = SCENARIOS.map((s) => s.name + (s.inDefault ? '' : ' (only when named)')).join(', ');
  console.error(`usage: webattn-bench [scenario ...] [--full] [--tables] [--out DIR] [--json FILE]
  scenarios: ${names}
  default: the quick part of every default scenario (≤ 3 min on llvmpipe); --full: the whole sweep
  --tables: print every row (they are always in the report); --out: report folder (default bench-results)`);
  process.exit(code);
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const args = process.argv.slice(2);
  let json: string | null = null;
  let full = false;
  let tables = false;
  let outDir = 'bench-results';
  const picked: Scenario[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const s = SCENARIOS.find((x) => x.name === a);
    if (a === '--json') json = args[++i] ?? usage();
    else if (a === '--out') outDir = args[++i] ?? usage();
    else if (a === '--full') full = true;
    else if (a === '--quick') full = false; // the default; kept for old scripts
    else if (a === '--tables') tables = true;
    else if (a === '--help' || a === '-h') usage(0);
    else if (s) picked.push(s);
    else {
      console.error(`unknown scenario or flag: ${a}`);
      usage();
    }
  }
  const run = picked.length ? picked : SCENARIOS.filter((s) => s.inDefault);
  const device = await T.getDevice();
  installFallbackCensus();
  console.log(`webattn-bench on ${device.info.adapter} (${device.info.backend}/${device.info.api}) · ${run.map((s) => s.name).join(', ')}${full ? ' · full sweep' : ''}`);
  if (device.info.reason) console.log(`device: ${device.info.reason}`);
  startPlan(run.map((s) => ({ name: s.name, estimateS: s.seconds[full ? 1 : 0] })));
  const tick = setInterval(progressTick, 1000);
  tick.unref();
  const rows: BenchRow[] = [];
  for (const s of run) {
    beginStep(s.name);
    progress(`${s.name}: starting`);
    takeFallbacks();
    const t1 = performance.now();
    rows.push(...(await runPart(s, device, full)));
    const fb = takeFallbacks();
    if (fb.length) {
      const ms = fb.reduce((p, f) => p + f.ms, 0);
      rows.push({ scenario: 'cpu fallback', name: s.name, ops: describeFallbacks(fb), fallback_ms: ms, share_of_scenario: ms / (performance.now() - t1) });
    }
  }
  clearInterval(tick);
  progressDone();
  const seconds = (performance.now() - t0) / 1000;

  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const refs = loadReferences(root);
  const hs = headlines(rows, refs);
  if (tables || full) console.log(`${renderTable(device.info, rows)}\n`);
  console.log(renderHeadlines(device.info, hs, seconds));

  const data: ReportData = {
    date: new Date().toISOString(),
    command: `webattn-bench ${args.join(' ')}`.trim(),
    seconds,
    device: device.info,
    headlines: hs,
    rows,
    references: [...Object.values(refs.llvmpipe), refs.h100Webattn, refs.h100Torch].filter((r) => r !== undefined).map((r) => ({ path: r.path, label: r.label })),
  };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'report.json'), `${JSON.stringify(data, null, 2)}\n`);
  writeFileSync(join(outDir, 'report.html'), renderHtml(data, charts(rows, refs, device.info.adapter), refs));
  console.log(`\nreport: ${join(outDir, 'report.html')} (charts, every row) · ${join(outDir, 'report.json')}`);
  if (json) {
    writeFileSync(json, JSON.stringify({ date: data.date, device: device.info, rows }, null, 2));
    console.log(`wrote ${json}`);
  }
  device.destroy();
}

main().catch((e) => {
  progressDone();
  console.error(e);
  process.exit(1);
});
