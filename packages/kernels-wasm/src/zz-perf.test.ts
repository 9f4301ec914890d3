import { it } from 'vitest';
import { WasmPool } from './pool.js';
import { attentionForwardRaw, attentionBackwardRaw, denseStrides, matmulRaw } from './raw.js';
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
it('perf', async () => {
  const pool = await WasmPool.create({ threads: 1 });
  const B = 1, H = 4, L = 1024, E = 64;
  const q = Float32Array.from({ length: B * H * L * E }, () => Math.random() - 0.5);
  const p = { B, Hq: H, Hkv: H, E, Ev: E, qLen: new Int32Array([L]), qStart: new Int32Array(1), kLen: new Int32Array([L]), kStart: new Int32Array(1),
    strides: { q: denseStrides(H, L, E), k: denseStrides(H, L, E), v: denseStrides(H, L, E), o: denseStrides(H, L, E) },
    oSize: B * H * L * E, lseBatch: H * L, lseHead: L, lseSize: B * H * L, causalOffset: null, scale: 0.125, mask: null };
  let f = 1e9, b = 1e9, m = 1e9;
  for (let r = 0; r < 5; r++) {
    const c0 = cpuMs(); const { lse } = attentionForwardRaw(pool, p as any, q, q, q); const c1 = cpuMs();
    attentionBackwardRaw(pool, p as any, q, q, q, q, lse, lse); const c2 = cpuMs();
    f = Math.min(f, c1 - c0); b = Math.min(b, c2 - c1);
  }
  const a = Float32Array.from({ length: 1024 * 1024 }, () => Math.random());
  for (let r = 0; r < 3; r++) { const c0 = cpuMs(); matmulRaw(pool, a, a, 1, 1024, 1024, 1024); m = Math.min(m, cpuMs() - c0); }
  console.log(`1 thread CPU time: attn fwd ${f.toFixed(1)} ms, bwd ${b.toFixed(1)} ms; matmul 1024^3 ${m.toFixed(1)} ms = ${(2 * 1024 ** 3 / m / 1e6).toFixed(1)} GFLOP/s`);
  pool.destroy();
}, 120000);
