import { tidyAsync, type Device } from '@webattn/core-tensor';

/**
 * Wall-clock milliseconds of `fn` (each run synced on the device), after `warmup` runs: `ms` is the best of the
 * reps (other load on a shared machine only ever adds time, so the minimum is the stable figure; on a 2-core machine
 * at load 10 the median of the same kernel moved 4× between runs while the minimum moved ~10%), `median` beside it.
 */
export async function timeIt(device: Device, fn: () => unknown, opts: { warmup?: number; reps?: number; budgetMs?: number } = {}): Promise<{ ms: number; median: number; reps: number }> {
  const warmup = opts.warmup ?? 1;
  const maxReps = opts.reps ?? 5;
  const budget = opts.budgetMs ?? 4000;
  for (let i = 0; i < warmup; i++) {
    fn();
    await device.sync();
  }
  const times: number[] = [];
  const start = performance.now();
  while (times.length < maxReps && (times.length === 0 || performance.now() - start < budget)) {
    const t0 = performance.now();
    fn();
    await device.sync();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { ms: times[0]!, median: times[Math.floor(times.length / 2)]!, reps: times.length };
}

/**
 * Repetitions for a timing on `device`: the wasm backend's kernels take milliseconds, so it affords several times
 * the reps of a software WebGPU rasterizer (whose budget caps them anyway) — the minimum needs them on a busy machine.
 */
export function repsOn(device: Device, reps: number): number {
  return device.backend === 'wasm' ? Math.max(reps, 3) * 3 : reps;
}

/**
 * Times several variants round-robin — one run of each per round, `rounds` rounds (fewer when `budgetMs` runs out
 * after at least two) — and returns each one's best and median ms. Interleaving puts every variant under the same
 * load: timed one after the other, two variants of a ratio saw different halves of a busy machine (a ViT step
 * measured 20 ms and 137 ms in consecutive blocks of ten reps).
 */
export async function timeInterleaved(
  device: Device,
  fns: Record<string, () => unknown>,
  opts: { rounds: number; budgetMs: number; warmup?: number; tidy?: boolean },
): Promise<Record<string, { ms: number; median: number; reps: number }>> {
  const names = Object.keys(fns);
  // tidy: each run inside `tidyAsync` (model steps, which leave their intermediates to it)
  const once = async (f: () => unknown) => {
    if (opts.tidy) {
      await tidyAsync(async () => {
        await f();
      });
    } else await f();
    await device.sync();
  };
  for (let w = 0; w < (opts.warmup ?? 1); w++) for (const n of names) await once(fns[n]!);
  const times: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const start = performance.now();
  for (let r = 0; r < opts.rounds && (r < 2 || performance.now() - start < opts.budgetMs); r++) {
    for (const n of names) {
      const t0 = performance.now();
      await once(fns[n]!);
      times[n]!.push(performance.now() - t0);
    }
  }
  return Object.fromEntries(
    names.map((n) => {
      const t = times[n]!.sort((a, b) => a - b);
      return [n, { ms: t[0]!, median: t[Math.floor(t.length / 2)]!, reps: t.length }];
    }),
  );
}

/** One result row of a scenario. */
export interface BenchRow {
  scenario: string;
  name: string;
  [metric: string]: string | number | boolean | null;
}

// ---- progress bar with ETA ------------------------------------------------------------------
// The CLI announces the plan (scenarios with an expected duration); scenarios only call
// `progress(msg)`. The bar advances with time inside a scenario (capped below its share) and jumps
// at each scenario's end; the ETA scales the remaining estimate by how fast the run goes so far.

interface PlanStep {
  name: string;
  estimateS: number;
}
let plan: PlanStep[] = [];
let current = -1;
let runStart = 0;
let stepStart = 0;
let doneEstimate = 0;
let doneActual = 0;
let lastMsg = '';
let lastPrint = 0;

/** Starts a run of `steps` (expected seconds each, on this adapter); resets the bar. */
export function startPlan(steps: PlanStep[]): void {
  plan = steps;
  current = -1;
  runStart = performance.now();
  doneEstimate = doneActual = 0;
}

/** Marks the start of step `name` of the plan (ends the previous one). */
export function beginStep(name: string): void {
  endStep();
  current = plan.findIndex((s) => s.name === name);
  stepStart = performance.now();
}

function endStep(): void {
  if (current < 0) return;
  doneEstimate += plan[current]!.estimateS;
  doneActual += (performance.now() - stepStart) / 1000;
  current = -1;
}

const clock = (s: number) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`;

/** The progress line for `msg`: bar, percent, elapsed, ETA. */
export function progressLine(msg: string, now = performance.now()): string {
  const total = plan.reduce((p, s) => p + s.estimateS, 0);
  if (!total) return msg;
  const inStep = current >= 0 ? (now - stepStart) / 1000 : 0;
  const est = current >= 0 ? plan[current]!.estimateS : 0;
  const done = doneEstimate + Math.min(inStep, 0.95 * est);
  const frac = Math.min(0.99, done / total);
  // speed: actual seconds per estimated second so far (1 before anything finished)
  const speed = doneEstimate > 0 ? doneActual / doneEstimate : 1;
  const after = plan.slice(current + 1).reduce((p, s) => p + s.estimateS, 0);
  const left = (current >= 0 ? Math.max(est - inStep, 0.1 * est) + after : total - doneEstimate) * speed;
  const width = 24;
  const fill = Math.round(frac * width);
  const bar = `[${'#'.repeat(fill)}${'-'.repeat(width - fill)}]`;
  return `${bar} ${String(Math.round(frac * 100)).padStart(2)}% ${clock((now - runStart) / 1000)} elapsed, ~${clock(left)} left · ${msg}`;
}

/** Progress on stderr (a single rewritten line on a TTY; one line per message otherwise). */
export function progress(msg: string): void {
  lastMsg = msg;
  const line = progressLine(msg);
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
  else process.stderr.write(`${line}\n`);
  lastPrint = performance.now();
}

/** Redraws the bar (the ETA moves) while a long measurement runs; call from a timer. */
export function progressTick(): void {
  if (process.stderr.isTTY && lastMsg && performance.now() - lastPrint > 900) progress(lastMsg);
}

/** Ends a progress line. */
export function progressDone(): void {
  endStep();
  lastMsg = '';
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
}

/**
 * Best wall-clock ms (see {@link timeIt}) of an async training/eval step, each inside `tidyAsync` (so it frees its
 * intermediates) and synced on the device, after one warm-up run.
 */
export async function timeStep(device: Device, fn: () => Promise<void>, reps: number, budgetMs: number): Promise<number> {
  await tidyAsync(fn);
  await device.sync();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < reps && (times.length === 0 || performance.now() - start < budgetMs)) {
    const t0 = performance.now();
    await tidyAsync(fn);
    await device.sync();
    times.push(performance.now() - t0);
  }
  return Math.min(...times);
}
