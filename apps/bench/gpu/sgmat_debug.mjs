#!/usr/bin/env node
// Diagnostics of the subgroup-matrix attention forward on one small head (one workgroup): the first tile's
// raw scores S (after the MMAs), its probabilities P, then the output and lse, each against a float64
// reference from the same f16 inputs. Prints max |diff| and the first row. usage: node sgmat_debug.mjs
import * as T from '@webattn/core-tensor';
import { flashForward, setFlashSubgroupMatrix, hasSgmatAttention } from '@webattn/kernels-webgpu/internal';

const dev = await T.getDevice({ kind: 'webgpu' });
const real = hasSgmatAttention(dev);
const dtype = real ? 'float16' : 'float32';
console.log(`sgmat-debug on ${dev.info.adapter}: ${real ? 'real' : 'emulated'}`);
const [L, E, Ev] = [32, 16, 32];
const q = T.randn([1, 1, L, E], { seed: 1, device: dev, dtype });
const k = T.randn([1, 1, L, E], { seed: 2, device: dev, dtype });
const v = T.randn([1, 1, L, Ev], { seed: 3, device: dev, dtype });
const [qa, ka, va] = [await q.toArray(), await k.toArray(), await v.toArray()];
const scale = 0.25;
const S = [], P = [], O = [], LSE = [];
for (let i = 0; i < L; i++) {
  const s = [];
  for (let j = 0; j < L; j++) { let x = 0; for (let e = 0; e < E; e++) x += qa[i * E + e] * ka[j * E + e]; s.push(x); }
  S.push(s);
  const m = Math.max(...s.map((x) => x * scale));
  const pr = s.map((x) => Math.exp(x * scale - m));
  const l = pr.reduce((a, b) => a + b, 0);
  P.push(pr);
  LSE.push(m + Math.log(l));
  const o = [];
  for (let e = 0; e < Ev; e++) { let y = 0; for (let j = 0; j < L; j++) y += (pr[j] / l) * va[j * Ev + e]; o.push(y); }
  O.push(o);
}
const cmp = (name, got, want) => {
  let m = 0;
  let first = -1;
  for (let i = 0; i < want.length; i++) { const d = Math.abs(got[i] - want[i]); if (!(d <= 0.02 + 0.02 * Math.abs(want[i])) && first < 0) first = i; m = Math.max(m, Number.isNaN(d) ? Infinity : d); }
  console.log(`${name}: max|diff| ${m.toExponential(3)} first bad ${first}${first >= 0 ? ` (got ${got[first]} want ${want[first]})` : ''}`);
  console.log(`  got  row0 ${Array.from(got.slice(0, 8), (x) => x.toFixed(3)).join(' ')}\n  want row0 ${Array.from(want.slice(0, 8), (x) => x.toFixed(3)).join(' ')}`);
  if (first >= 0) console.log(`  got  row1 ${Array.from(got.slice(Ev, Ev + 8), (x) => x.toFixed(3)).join(' ')}\n  want row1 ${Array.from(want.slice(Ev, Ev + 8), (x) => x.toFixed(3)).join(' ')}`);
};
const variants = real
  ? [{ rs: 32, nsg: 1, bc: 32 }, { rs: 32, nsg: 1, bc: 32, kt: true }, { rs: 32, nsg: 1, bc: 32, qreload: true }, { rs: 32, nsg: 1, bc: 32, kt: true, qreload: true }, { rs: 16, nsg: 2, bc: 16, kt: true, qreload: true }]
  : [{ rs: 32, nsg: 1, bc: 32 }, { rs: 16, nsg: 2, bc: 16 }];
const only = process.env.SGMAT_DEBUG_STEPS ?? 'S,full';
for (const base of variants) {
  const mode = real ? 'auto' : 'emulate';
  console.log(`config ${JSON.stringify(base)}`);
  const p = { q, k, v, scale, causal: false, causalOffset: 0, mask: null, hooks: null };
  try {
    setFlashSubgroupMatrix(mode, { ...base, debug: 'S' });
    let r = flashForward(p);
    const bc = base.bc;
    cmp('S (raw q·k, first tile)', Array.from(await r.out.toArray()).filter((_, i) => i % Ev < bc), S.flatMap((row) => row.slice(0, bc)));
    if (only.includes('P')) {
    setFlashSubgroupMatrix(mode, { ...base, debug: 'P' });
    r = flashForward(p);
    const refM = S.map((row) => Math.max(...row.slice(0, bc).map((x) => x * scale)));
    cmp('P (first tile)', Array.from(await r.out.toArray()).filter((_, i) => i % Ev < bc), S.flatMap((row, i) => row.slice(0, bc).map((x) => Math.exp(x * scale - refM[i]))));
    cmp('m_ref (first tile)', await r.lse.toArray(), refM);
    }
    setFlashSubgroupMatrix(mode, base);
    r = flashForward(p);
    cmp('out', await r.out.toArray(), O.flat());
    cmp('lse', await r.lse.toArray(), LSE);
  } catch (e) {
    console.log(`error ${String(e).slice(0, 600)}`);
  }
}
setFlashSubgroupMatrix('off');
const r = flashForward({ q, k, v, scale, causal: false, causalOffset: 0, mask: null, hooks: null });
cmp('tiles out', await r.out.toArray(), O.flat());
// the f16 backward of the tile path (delta was read as f32 bits before: dq infinite)
if (real) {
  const cpu = T.cpu();
  const shape = [1, 2, 37, 64];
  const mk = (seed, device, dt) => T.randn(shape, { seed, device, dtype: 'float16' }).cast(dt).detach().requiresGrad_();
  const g = [1, 2, 3].map((s) => mk(s, dev, 'float16'));
  const c = [1, 2, 3].map((s) => mk(s, cpu, 'float64'));
  const { scaledDotProductAttention, sdpaKernel } = await import('@webattn/kernels-webgpu');
  setFlashSubgroupMatrix('off');
  const og = sdpaKernel(['flash'], () => scaledDotProductAttention(g[0], g[1], g[2], { isCausal: true }));
  og.sum().backward();
  scaledDotProductAttention(c[0], c[1], c[2], { isCausal: true }).sum().backward();
  for (let i = 0; i < 3; i++) cmp(`tiles f16 backward d${'qkv'[i]}`, await g[i].grad.toArray(), await c[i].grad.toArray());
}
dev.destroy();
process.exit(0);
