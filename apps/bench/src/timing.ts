import type { Device } from '@webattn/core-tensor';

/** Median wall-clock milliseconds of `fn` (each run synced on the device), after `warmup` runs. */
export async function timeIt(device: Device, fn: () => unknown, opts: { warmup?: number; reps?: number; budgetMs?: number } = {}): Promise<{ ms: number; reps: number }> {
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
  return { ms: times[Math.floor(times.length / 2)]!, reps: times.length };
}

/** One result row of a scenario. */
export interface BenchRow {
  scenario: string;
  name: string;
  [metric: string]: string | number | boolean | null;
}

/** Progress on stderr (a single rewritten line on a TTY). */
export function progress(msg: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${msg}`);
  else process.stderr.write(`${msg}\n`);
}

/** Ends a progress line. */
export function progressDone(): void {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
}
