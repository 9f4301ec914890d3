#!/usr/bin/env node
/**
 * webattn-bench: reproduces the published experiments on the default device and prints every
 * number with the adapter that produced it. On software adapters compare ratios, not absolutes.
 *
 *   webattn-bench [scenario ...] [--json FILE] [--quick]
 *   scenarios: kernels, attention, varlen, flex, vit, gpt2-varlen (default: all); seed (the GPU run's shapes), tfjs (flash vs TF.js only): only when named
 */
import { writeFileSync } from 'node:fs';
import * as T from '@webattn/core-tensor';
import type { WebGPUDevice } from '@webattn/kernels-webgpu';
import '@webattn/kernels-webgpu';
import { renderTable } from './report.js';
import { attentionScenario, attentionVsTfjsScenario } from './scenarios/attention.js';
import { flexScenario } from './scenarios/flex.js';
import { kernelsScenario } from './scenarios/kernels.js';
import { memoryScenario } from './scenarios/memory.js';
import { seedScenario } from './scenarios/seed.js';
import { varlenScenario } from './scenarios/varlen.js';
import { vitScenario } from './scenarios/vit.js';
import { gpt2VarlenScenario } from './scenarios/gpt2-varlen.js';
import { wasmScenario } from './scenarios/wasm.js';
import { progressDone, type BenchRow } from './timing.js';

const SCENARIOS: Record<string, (d: T.Device, quick: boolean) => Promise<BenchRow[]>> = {
  kernels: kernelsScenario,
  attention: attentionScenario,
  varlen: varlenScenario,
  flex: flexScenario,
  vit: vitScenario,
  'gpt2-varlen': gpt2VarlenScenario,
  memory: memoryScenario,
  wasm: wasmScenario,
};

/** Scenarios run only when named (they target a real GPU). */
const EXTRA: Record<string, (d: T.Device, quick: boolean) => Promise<BenchRow[]>> = {
  seed: seedScenario,
  // flash forward vs TF.js-WebGPU's unfused attention only (also the first rows of `attention`)
  tfjs: (d, quick) => attentionVsTfjsScenario(d as WebGPUDevice, quick),
};

function usage(): never {
  console.error(`usage: webattn-bench [${Object.keys(SCENARIOS).join('|')} ...] [--json FILE] [--quick]`);
  process.exit(2);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let json: string | null = null;
  let quick = false;
  const picked: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--json') json = args[++i] ?? usage();
    else if (a === '--quick') quick = true;
    else if (a === '--help' || a === '-h') usage();
    else if (a in SCENARIOS || a in EXTRA) picked.push(a);
    else {
      console.error(`unknown scenario or flag: ${a}`);
      usage();
    }
  }
  const device = await T.getDevice();
  console.log(`webattn-bench on ${device.info.adapter} (${device.info.backend}/${device.info.api})`);
  const rows: BenchRow[] = [];
  for (const name of picked.length ? picked : Object.keys(SCENARIOS)) rows.push(...(await (SCENARIOS[name] ?? EXTRA[name])!(device, quick)));
  progressDone();
  console.log(renderTable(device.info, rows));
  if (json) {
    writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), device: device.info, rows }, null, 2));
    console.log(`\nwrote ${json}`);
  }
  device.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
