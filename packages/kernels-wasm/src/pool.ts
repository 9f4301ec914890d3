/**
 * The wasm kernels and the threads that run them. One `WebAssembly.Module` is instantiated once per thread over
 * one shared `WebAssembly.Memory`; a job is a kernel id plus arguments written into the control block at the start
 * of memory. The calling thread is worker 0 and takes its share, so a job is synchronous (like every other
 * webattn kernel): the other threads are woken with `Atomics.notify` and the caller waits (`Atomics.wait` in Node
 * and in workers; a spin on the main thread of a browser, where waiting is forbidden).
 *
 * Without `SharedArrayBuffer` (a browser page that is not cross-origin isolated) the single-threaded build runs
 * on the calling thread alone.
 */
import { WebattnError } from '@webattn/core-tensor';
import { WASM_BASE64, WASM_SINGLE_BASE64 } from './wasm-bytes.js';

/** Where the JS side may place tensors: everything below is the control block and the kernels' static data. */
const HEAP_BASE = 1 << 20;
const PAGE = 65536;
const MAX_PAGES = 65536;

interface Exports {
  run(kernel: number, tid: number, nth: number): void;
  flexExp(x: number): number;
  flexLog(x: number): number;
  flexTanh(x: number): number;
  flexSin(x: number): number;
  flexCos(x: number): number;
  flexPow(x: number, y: number): number;
  flexSign(x: number): number;
  attnScratchBytes(E: number, Ev: number, maxLk: number): number;
  matmulScratchBytes(): number;
  expTest(p: number, n: number): void;
}

/** Kernel ids of `run` in assembly/index.ts. */
export const KERNEL = {
  matmul: 1,
  attnForward: 2,
  attnBackward: 3,
  unary: 4,
  binary: 5,
  reduce: 6,
  softmax: 7,
  layerNorm: 8,
  layerNormBackward: 9,
  geluBackward: 10,
  crossEntropy: 11,
  crossEntropyBackward: 12,
  stridedCopy: 13,
  where: 14,
  /**
   * Not a wasm kernel: every worker compiles the flex tile functions whose UTF-8 source is at I0 (I1 bytes) and,
   * when I3 > 0, instantiates their wasm module at I2 (I3 bytes).
   */
  loadTile: 100,
} as const;

/** Int32 slots of the control block the flex tile import reads: capture block, gradient block, its size per thread. */
const TILE_ARGS = 16 + 44;

/**
 * The `flexTile` import of the kernels (the same text runs on the calling thread and in every worker): calls the
 * flex tile functions (see core-tensor's FlexKernelAttrs) on the score tile the kernel hands over (row stride 64,
 * the kernels' key block). \`state\` holds the memory, its views and the compiled functions.
 */
const TILE_IMPORT = `(state) => function flexTile(mode, tid, a, r, rows, cols, b, h, i0, j0, maskOn) {
  const w = state.wasm;
  if (w !== null) {
    const I = new Int32Array(state.memory.buffer, ${TILE_ARGS * 4}, 3);
    if (mode === 0) w.fwd(a >> 2, rows, cols, 64, b, h, i0, j0, maskOn, I[0]);
    else w.bwd(a >> 2, r >> 2, rows, cols, 64, b, h, i0, j0, maskOn, I[0], I[1] + tid * I[2]);
    return;
  }
  const buf = state.memory.buffer;
  if (state.F === null || state.F.buffer.byteLength !== buf.byteLength) { state.F = new Float32Array(buf); state.I = new Int32Array(buf); }
  const I = state.I;
  const cap = I[${TILE_ARGS}];
  if (mode === 0) state.fns.fwd(state.F, I, a >> 2, rows, cols, 64, b, h, i0, j0, maskOn, cap);
  else state.fns.bwd(state.F, I, a >> 2, r >> 2, rows, cols, 64, b, h, i0, j0, maskOn, cap, I[${TILE_ARGS + 1}] + tid * I[${TILE_ARGS + 2}]);
}`;

/**
 * Instantiates a flex tile module (core-tensor's FlexKernelAttrs.tileWasm) over `memory` with the kernels' f32 math
 * (`ex`: the kernel instance's exports on this thread). The same text runs on the calling thread and in workers.
 */
const TILE_WASM = `(bytes, memory, ex) => new WebAssembly.Instance(new WebAssembly.Module(bytes), {
  env: { memory },
  m: { exp: ex.flexExp, log: ex.flexLog, tanh: ex.flexTanh, sin: ex.flexSin, cos: ex.flexCos, pow: ex.flexPow, sign: ex.flexSign },
}).exports`;

/** The exports of a flex tile module. */
interface TileWasm {
  fwd: (...a: number[]) => void;
  bwd: (...a: number[]) => void;
}

/** The flex tile functions of a source text (core-tensor's FlexKernelAttrs.tileSource). */
interface TileFns {
  fwd: (...a: unknown[]) => void;
  bwd: (...a: unknown[]) => void;
}
interface TileState {
  memory: WebAssembly.Memory;
  F: Float32Array | null;
  I: Int32Array | null;
  fns: TileFns;
  wasm: TileWasm | null;
}
const noTile: TileFns = {
  fwd: () => {
    throw new Error('no flex tile functions are loaded');
  },
  bwd: () => {
    throw new Error('no flex tile functions are loaded');
  },
};

/** Source of the worker threads (inline, so that no file has to be resolved next to a bundle). */
const WORKER_SOURCE = `
const start = (data) => {
  const { module, memory, tid } = data;
  const state = { memory, F: null, I: null, fns: null, wasm: null };
  const flexTile = (${TILE_IMPORT})(state);
  const instance = new WebAssembly.Instance(module, { env: { memory, abort() { throw new Error('wasm abort'); }, flexTile } });
  const ctrl = new Int32Array(memory.buffer, 0, 16);
  let seen = 0; // jobs are numbered from 1; the pool issues none before every worker is ready
  Atomics.add(ctrl, 5, 1);
  Atomics.notify(ctrl, 5);
  for (;;) {
    Atomics.wait(ctrl, 0, seen);
    const now = Atomics.load(ctrl, 0);
    if (now === seen) continue;
    seen = now;
    const kernel = Atomics.load(ctrl, 2);
    if (kernel < 0) break;
    const n = Atomics.load(ctrl, 3);
    if (tid < n) {
      try {
        if (kernel === ${KERNEL.loadTile}) {
          const args = new Int32Array(memory.buffer, 64, 4);
          const src = new TextDecoder().decode(new Uint8Array(memory.buffer, args[0], args[1]).slice());
          state.fns = new Function('return ' + src)();
          state.wasm = args[3] > 0 ? (${TILE_WASM})(new Uint8Array(memory.buffer, args[2], args[3]).slice(), memory, instance.exports) : null;
        } else instance.exports.run(kernel, tid, n);
      } catch (e) { Atomics.store(ctrl, 4, 1); }
      if (Atomics.add(ctrl, 1, 1) + 1 === n - 1) Atomics.notify(ctrl, 1);
    }
  }
};
if (typeof self !== 'undefined' && typeof self.postMessage === 'function' && typeof require === 'undefined') {
  self.onmessage = (e) => start(e.data);
} else {
  const { parentPort, workerData } = require('node:worker_threads');
  start(workerData);
  parentPort.close();
}
`;

function decode(b64: string): Uint8Array {
  const g = globalThis as { Buffer?: { from(s: string, enc: string): Uint8Array } };
  if (g.Buffer) return new Uint8Array(g.Buffer.from(b64, 'base64'));
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return !!p?.versions?.node;
}

interface ThreadHandle {
  terminate(): unknown;
}

/** Options of {@link WasmPool.create}. */
export interface WasmPoolOptions {
  /** Threads including the calling one (default: the machine's cores, at most 8). 1 = no workers. */
  threads?: number;
}

/** The kernels, their memory and their threads. */
export class WasmPool {
  /** Threads that run each job (1 = the calling thread alone). */
  readonly threads: number;
  /** Why the pool has the threads it has (e.g. "2 threads" or "1 thread: SharedArrayBuffer is unavailable"). */
  readonly threadNote: string;
  private readonly memory: WebAssembly.Memory;
  private readonly ex: Exports;
  private readonly workers: ThreadHandle[];
  private readonly canWait: boolean;
  private top = HEAP_BASE;
  private readonly shared: boolean;
  /** Free blocks by size (bytes, a multiple of 16) and the size of every block ever cut from the top. */
  private readonly freeBySize = new Map<number, number[]>();
  private readonly blockSize = new Map<number, number>();
  /** Blocks of the running job, released by `release`. */
  private readonly frame: number[] = [];
  /** Job results handed out by `keep` and not yet adopted by a storage (freed when their view is collected). */
  private readonly kept = new Map<number, WeakRef<ArrayBufferView>>();
  private readonly keptGc = new FinalizationRegistry<number>((p) => {
    this.kept.delete(p);
    this.freeBlock(p);
  });
  /** Every `ArrayBuffer` / `SharedArrayBuffer` object this memory has shown (a new one after each growth). */
  private readonly buffers = new WeakSet<ArrayBufferLike>();
  private destroyed = false;
  private readonly tile: TileState;
  private tileSource: string | null = null;
  private readonly tileCache = new Map<string, { fns: TileFns; wasm: TileWasm | null }>();
  /**
   * Whether flex tile functions run as the wasm module flex compiles (when given and the memory is shared) rather
   * than as JS (default true; the tests and the bench turn it off to compare).
   */
  useWasmTiles = true;

  private constructor(memory: WebAssembly.Memory, ex: Exports, workers: ThreadHandle[], threads: number, note: string, tile: TileState) {
    this.memory = memory;
    this.shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
    this.tile = tile;
    this.ex = ex;
    this.workers = workers;
    this.threads = threads;
    this.threadNote = note;
    // the main thread of a browser may not block; Node's main thread and every worker may
    this.canWait = isNode() || typeof (globalThis as { document?: unknown }).document === 'undefined';
  }

  /** Compiles the kernels and starts the threads. */
  static async create(options: WasmPoolOptions = {}): Promise<WasmPool> {
    const want = options.threads ?? (await defaultThreads());
    if (!Number.isInteger(want) || want < 1 || want > 64) {
      throw new WebattnError('INVALID_ARGUMENT', `threads: expected an integer in [1, 64], got ${String(want)}`, { argument: 'threads' });
    }
    const shared = typeof SharedArrayBuffer !== 'undefined';
    // with SharedArrayBuffer even one thread uses the shared-memory build: its memory grows without detaching
    // the views that tensors' storages keep (resident storages)
    if (!shared) {
      const memory = new WebAssembly.Memory({ initial: 32, maximum: MAX_PAGES });
      const tile: TileState = { memory, F: null, I: null, fns: noTile, wasm: null };
      const module = await WebAssembly.compile(decode(WASM_SINGLE_BASE64) as BufferSource);
      const inst = await WebAssembly.instantiate(module, { env: { memory, abort: abortWasm, flexTile: tileImport(tile) } });
      const note = '1 thread: SharedArrayBuffer is unavailable (serve the page cross-origin isolated for threads)';
      return new WasmPool(memory, inst.exports as unknown as Exports, [], 1, note, tile);
    }
    const memory = new WebAssembly.Memory({ initial: 32, maximum: MAX_PAGES, shared: true });
    const tile: TileState = { memory, F: null, I: null, fns: noTile, wasm: null };
    const module = await WebAssembly.compile(decode(WASM_BASE64) as BufferSource);
    const inst = await WebAssembly.instantiate(module, { env: { memory, abort: abortWasm, flexTile: tileImport(tile) } });
    const workers: ThreadHandle[] = [];
    for (let tid = 1; tid < want; tid++) workers.push(await startWorker({ module, memory, tid }));
    // wait until every worker has instantiated the module (at most 20 s)
    const ctrl = new Int32Array(memory.buffer, 0, 16);
    const t0 = Date.now();
    while (Atomics.load(ctrl, 5) < want - 1) {
      if (Date.now() - t0 > 20_000) {
        for (const w of workers) void w.terminate();
        throw new WebattnError('DEVICE_UNAVAILABLE', `wasm backend: ${want - 1 - Atomics.load(ctrl, 5)} of ${want - 1} worker threads did not start`);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    return new WasmPool(memory, inst.exports as unknown as Exports, workers, want, want === 1 ? '1 thread (as asked)' : `${want} threads`, tile);
  }

  /**
   * Makes the flex tile functions of `source` (core-tensor's `FlexKernelAttrs.tileSource`) the ones the attention
   * kernels call, on every thread; compiled once per source text. Throws `FLEX_COMPILE` when the source does not
   * evaluate to `{ fwd, bwd }` (e.g. a page whose Content-Security-Policy forbids `new Function`).
   */
  setTileSource(source: string, wasm: Uint8Array | null = null): void {
    const useWasm = !!wasm && this.shared && this.useWasmTiles;
    const key = `${useWasm ? 'w' : 'j'}${source}`;
    if (key === this.tileSource) return;
    let hit = this.tileCache.get(key);
    if (!hit) {
      let fns: TileFns;
      try {
        fns = new Function(`return ${source}`)() as TileFns;
      } catch (e) {
        throw new WebattnError('FLEX_COMPILE', `wasm backend: the flex tile functions did not compile (${String(e)})`);
      }
      if (typeof fns?.fwd !== 'function' || typeof fns.bwd !== 'function') {
        throw new WebattnError('FLEX_COMPILE', 'wasm backend: the flex tile source must evaluate to { fwd, bwd }');
      }
      let w: TileWasm | null = null;
      if (useWasm) {
        try {
          w = (new Function(`return ${TILE_WASM}`)() as (b: Uint8Array, m: WebAssembly.Memory, ex: Exports) => TileWasm)(wasm!, this.memory, this.ex);
        } catch (e) {
          throw new WebattnError('FLEX_COMPILE', `wasm backend: the flex tile module did not compile (${String(e)})`);
        }
      }
      this.tileCache.set(key, (hit = { fns, wasm: w }));
    }
    if (this.workers.length) {
      const mark = this.mark();
      try {
        const bytes = new TextEncoder().encode(source);
        const mod = hit.wasm ? wasm! : new Uint8Array(0);
        this.run(KERNEL.loadTile, [this.put(bytes), bytes.length, mod.length ? this.put(mod) : 0, mod.length]);
      } finally {
        this.release(mark);
      }
    }
    this.tile.fns = hit.fns;
    this.tile.wasm = hit.wasm;
    this.tileSource = key;
  }

  /** Writes the capture block's and gradient block's positions (bytes) for the next attention job's tile functions. */
  setTileArgs(capBytes: number, gradBytes: number, gradBytesPerThread: number): void {
    new Int32Array(this.memory.buffer, TILE_ARGS * 4, 3).set([capBytes >> 2, gradBytes >> 2, gradBytesPerThread >> 2]);
  }

  /** Scratch bytes per thread the attention kernels need for head dims E, Ev and at most `maxLk` keys a sequence. */
  attnScratchBytes(E: number, Ev: number, maxLk: number): number {
    return this.ex.attnScratchBytes(E, Ev, maxLk);
  }

  /** Scratch bytes per thread of the matmul kernel. */
  matmulScratchBytes(): number {
    return this.ex.matmulScratchBytes();
  }

  /** Starts a job frame: everything `alloc`ated after it is released by `release(mark)`. */
  mark(): number {
    return this.frame.length;
  }

  /** Releases the allocations of the job frame made since `mark` (blocks handed out by `keep` stay). */
  release(mark: number): void {
    while (this.frame.length > mark) this.freeBlock(this.frame.pop()!);
  }

  /** Reserves `bytes` (16-byte aligned) in linear memory for the current job frame; returns the byte offset. */
  alloc(bytes: number): number {
    const p = this.block(bytes);
    this.frame.push(p);
    return p;
  }

  /**
   * A block of at least `bytes` outside any job frame (freed by `freeBlock`): an exact-size free block, else the
   * smallest free one up to twice the size, else fresh memory at the top (growing the memory when needed).
   */
  block(bytes: number): number {
    const size = Math.max(16, Math.ceil(Math.max(bytes, 0) / 16) * 16);
    let list = this.freeBySize.get(size);
    if (!list?.length) {
      let best = 0;
      for (const [sz, l] of this.freeBySize) if (l.length && sz > size && sz <= 2 * size && (!best || sz < best)) best = sz;
      list = best ? this.freeBySize.get(best) : undefined;
    }
    if (list?.length) return list.pop()!;
    const p = this.top;
    const end = p + size;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE);
      if (have / PAGE + pages > MAX_PAGES) {
        throw new WebattnError('LIMIT_EXCEEDED', `wasm backend: ${end} bytes of linear memory needed, above the 4 GiB of wasm32`);
      }
      this.memory.grow(pages);
    }
    this.top = end;
    this.blockSize.set(p, size);
    return p;
  }

  /** Returns a block from `block` (or a kept job allocation) to the free lists. */
  freeBlock(p: number): void {
    const size = this.blockSize.get(p);
    if (size === undefined) return;
    let list = this.freeBySize.get(size);
    if (!list) this.freeBySize.set(size, (list = []));
    list.push(p);
  }

  /** Bytes of linear memory in use by blocks (live tensors and the running job), for tests and reports. */
  heapBytes(): number {
    let free = 0;
    for (const [sz, l] of this.freeBySize) free += sz * l.length;
    return this.top - HEAP_BASE - free;
  }

  /**
   * Whether tensors' storages live in linear memory (shared memory: views stay valid when it grows), so kernels
   * read their inputs in place and hand their outputs over without copies.
   */
  get resident(): boolean {
    return this.shared;
  }

  /**
   * The result at job allocation `p` (`n` elements) as a typed array: with resident storages a view of the block,
   * taken out of the job frame for a device storage to adopt (see `adopt`); otherwise a copy.
   */
  keep<A extends Float32Array | Int32Array>(p: number, n: number, ctor: { new (b: ArrayBufferLike, o: number, n: number): A } = Float32Array as never): A {
    const view = this.view(ctor, p, n);
    if (!this.resident) return view.slice() as A;
    const at = this.frame.lastIndexOf(p);
    if (at >= 0) this.frame.splice(at, 1);
    this.kept.set(p, new WeakRef(view));
    this.keptGc.register(view, p, view);
    return view;
  }

  /**
   * Takes over a block handed out by `keep` when `data` is exactly that view; returns its byte offset, or −1
   * (the caller then copies). The caller frees the block with `freeBlock` when the storage goes.
   */
  adopt(data: ArrayBufferView): number {
    const p = data.byteOffset;
    if (!this.resident || this.kept.get(p)?.deref() !== data) return -1;
    this.kept.delete(p);
    this.keptGc.unregister(data);
    return p;
  }

  /** A typed view of `n` elements at byte offset `p` (registers the current buffer as this memory's). */
  view<A>(ctor: { new (b: ArrayBufferLike, o: number, n: number): A }, p: number, n: number): A {
    const buf = this.memory.buffer;
    this.buffers.add(buf);
    return new ctor(buf, p, n);
  }

  /** A float32 view of `n` elements at byte offset `p`. */
  f32(p: number, n: number): Float32Array {
    return this.view(Float32Array, p, n);
  }

  /** An int32 view of `n` elements at byte offset `p`. */
  i32(p: number, n: number): Int32Array {
    return this.view(Int32Array, p, n);
  }

  /**
   * The byte offset of `data` for a kernel to read: where it already lies in this memory (a resident storage),
   * else a copy in the current job frame.
   */
  put(data: Float32Array | Int32Array | Uint8Array): number {
    if (this.resident && this.buffers.has(data.buffer)) return data.byteOffset;
    const p = this.alloc(data.byteLength);
    this.view(Uint8Array, p, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return p;
  }

  /**
   * Runs kernel `id` with integer arguments `ints` and float arguments `floats` on the first `threads` threads
   * (default all; 1 runs on the calling thread alone, without waking the workers — for small jobs).
   */
  run(id: number, ints: readonly number[], floats: readonly number[] = [], threads = this.threads): void {
    if (this.destroyed) throw new WebattnError('DEVICE_LOST', 'wasm backend: the device was destroyed; call getDevice() again');
    const buf = this.memory.buffer;
    const ctrl = new Int32Array(buf, 0, 16);
    new Int32Array(buf, 64, ints.length).set(ints);
    new Float32Array(buf, 256, floats.length).set(floats);
    const n = Math.max(1, Math.min(this.threads, Math.floor(threads)));
    if (n === 1) {
      this.ex.run(id, 0, 1);
      return;
    }
    Atomics.store(ctrl, 1, 0);
    Atomics.store(ctrl, 4, 0);
    Atomics.store(ctrl, 2, id);
    Atomics.store(ctrl, 3, n);
    Atomics.add(ctrl, 0, 1);
    Atomics.notify(ctrl, 0);
    let err: unknown = null;
    try {
      this.ex.run(id, 0, n);
    } catch (e) {
      err = e;
    }
    let d: number;
    while ((d = Atomics.load(ctrl, 1)) !== n - 1) {
      if (this.canWait) Atomics.wait(ctrl, 1, d, 10_000);
    }
    if (err || Atomics.load(ctrl, 4)) {
      throw new WebattnError('KERNEL_FAILED', `wasm kernel ${id} failed${err ? `: ${String(err)}` : ' on a worker thread'}`);
    }
  }

  /** Stops the threads; the pool is unusable afterwards. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.workers.length) {
      const ctrl = new Int32Array(this.memory.buffer, 0, 16);
      Atomics.store(ctrl, 2, -1);
      Atomics.add(ctrl, 0, 1);
      Atomics.notify(ctrl, 0);
      for (const w of this.workers) void w.terminate();
    }
  }
}

function tileImport(state: TileState): (...a: number[]) => void {
  return (new Function(`return ${TILE_IMPORT}`)() as (s: TileState) => (...a: number[]) => void)(state);
}

function abortWasm(): never {
  throw new WebattnError('KERNEL_FAILED', 'wasm backend: a kernel aborted');
}

async function defaultThreads(): Promise<number> {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.WEBATTN_WASM_THREADS;
  if (env !== undefined) {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) {
      throw new WebattnError('INVALID_ARGUMENT', `WEBATTN_WASM_THREADS: expected a positive integer, got ${JSON.stringify(env)}`, {
        argument: 'WEBATTN_WASM_THREADS',
      });
    }
    return Math.min(n, 64);
  }
  let hc = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  if (hc === undefined && isNode()) {
    const os = (await import(/* @vite-ignore */ 'node:os')) as typeof import('node:os');
    hc = os.availableParallelism();
  }
  return Math.max(1, Math.min(8, hc ?? 1));
}

async function startWorker(data: { module: WebAssembly.Module; memory: WebAssembly.Memory; tid: number }): Promise<ThreadHandle> {
  if (isNode()) {
    const wt = (await import(/* @vite-ignore */ 'node:worker_threads')) as typeof import('node:worker_threads');
    const w = new wt.Worker(WORKER_SOURCE, { eval: true, workerData: data });
    w.unref();
    return w;
  }
  const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: 'text/javascript' }));
  const w = new Worker(url);
  w.postMessage(data);
  return w;
}
