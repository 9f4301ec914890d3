// Shared by the Node peers of apps/bench/gpu (webattn_peers.mjs, webattn_models.mjs, tfjs_peer.mjs):
// options, the shared shape list, the deadline, the streaming JSON writer and the varlen lengths.
import { readFileSync, renameSync, writeFileSync } from "node:fs";

const args = process.argv.slice(2);
/** `--name value` of the command line, else `dflt`. */
export const opt = (k, dflt) =>
  args.includes(k) ? args[args.indexOf(k) + 1] : dflt;
/** QUICK=1 or --quick: tiny shapes (llvmpipe, a validation call). */
export const QUICK = process.env.QUICK === "1" || args.includes("--quick");
/** The shape lists of shapes.json (`full` or `quick`); SHAPES_FILE: another file of that form (a rerun of some rows). */
export const SHAPES = JSON.parse(
  readFileSync(process.env.SHAPES_FILE ?? new URL("./shapes.json", import.meta.url), "utf8")
)[QUICK ? "quick" : "full"];

const t0 = performance.now();
// DEADLINE_S: seconds this script may spend; work that would start after it is reported as skipped
const deadlineS = Number(process.env.DEADLINE_S ?? 1e9);
/** Seconds left before the script's deadline. */
export const secondsLeft = () => deadlineS - (performance.now() - t0) / 1000;

/** A result file that is rewritten after every row, so a run killed by its timeout keeps what it measured. */
export function resultFile(path, meta) {
  const rows = [];
  const write = () => {
    if (!path) return;
    // write then rename: a step killed by its timeout mid-write still leaves the previous complete file
    writeFileSync(
      `${path}.tmp`,
      JSON.stringify(
        { ...meta, rows, seconds: (performance.now() - t0) / 1000 },
        null,
        1
      )
    );
    renameSync(`${path}.tmp`, path);
  };
  write();
  return {
    rows,
    meta,
    emit(row) {
      rows.push(row);
      console.log(`ROW ${JSON.stringify(row)}`);
      write();
    },
    write,
  };
}

/**
 * Sequence lengths of the varlen rows, shared with torch_peers.py: B lengths spread evenly over 1..maxLen
 * in a fixed shuffled order (i·7 mod B), so every peer packs the same batch.
 */
export function varlenLengths(B, maxLen) {
  return Array.from(
    { length: B },
    (_, i) =>
      1 + Math.floor(((maxLen - 1) * ((i * 7) % B)) / Math.max(1, B - 1))
  );
}

/** Row name of an attention shape, shared by every peer and the report. */
export const attnName = (s) =>
  `${s.tag ? `${s.tag} ` : ""}B=${s.B} H=${s.H} L=${s.L} E=${s.E}${
    s.causal ? " causal" : ""
  }`;

/** Median of a list of numbers. */
export const median = (xs) =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Batched timing shared by the webattn and TF.js peers. `batch(k)` runs k back-to-back calls with one sync
 * and resolves to the time per call. After one call to size the batches (k calls ≈ 100 ms) comes ~300 ms of
 * the same work (`warmMs`; the matmul rows take 1500: 300 ms left the H100's SM clock at 345-855 MHz in tensor-core
 * work) so the GPU's clock ramps up (one synced call at a time leaves the H100 at 345 MHz), then the
 * median over up to `reps` batches within `budgetMs`: as PyTorch's CUDA events around enough calls.
 */
export async function timeBatches(batch, reps, budgetMs, warmMs = Math.min(300, budgetMs / 4)) {
  const one = await batch(1);
  const k = Math.max(1, Math.min(64, Math.ceil(100 / Math.max(one, 0.05))));
  const w0 = performance.now();
  while (performance.now() - w0 < warmMs) await batch(k);
  const times = [];
  const start = performance.now();
  while (times.length < reps && (times.length === 0 || performance.now() - start < budgetMs)) times.push(await batch(k));
  return { ms: median(times), reps: times.length, batch: k };
}

/** The error of a failed measurement, short and on one line. */
export const errText = (e) =>
  String(e?.message ?? e)
    .replace(/\s+/g, " ")
    .slice(0, 300);
