#!/usr/bin/env node
// Host cost per dispatch of the WebGPU device (issue 12): tiny shapes, so the GPU work is negligible and what is
// timed is JS + Dawn API calls. Cases: a toy ViT forward (flash attention, eval, no grad) and a chain of 200 small
// ops (matmul / add / layernorm-ish). For each, REPS calls are recorded back to back (host time = until the last call
// returned, before any sync), then one sync; µs per dispatch = host ms / dispatches recorded. Device counters of the
// timed window: dispatches, bind groups created vs cache hits, buffers created vs pool hits, uniform bytes.
// A/B in ONE process: BASE=DIR loads an older build as variant "base" beside this tree's build ("new"), rounds
// interleaved. DIR is either another checkout with built packages (DIR/packages/<p>/dist, its node_modules linking
// @webattn/* to them, e.g. /work/main) or a folder DIR/node_modules/@webattn/<p>/{package.json,dist} (copies of an
// older build's packages, the other node_modules entries linked from this tree's).
//   node apps/bench/gpu/host_probe.mjs [--json FILE]   (ROUNDS=7, REPS=10, CASES=vit,chain, BASE=dir, DTYPE=float32,
//   NOSUBMIT=1: encode but never submit, host only)
import { existsSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const ROUNDS = Number(process.env.ROUNDS ?? 7);
const REPS = Number(process.env.REPS ?? 10);
const CASES = (process.env.CASES ?? 'vit,chain').split(',');
const DTYPE = process.env.DTYPE ?? 'float32';
const NOSUBMIT = process.env.NOSUBMIT === '1';
const args = process.argv.slice(2);
const json = args.includes('--json') ? args[args.indexOf('--json') + 1] : null;

async function load(root) {
  const inTree = root && existsSync(join(root, 'packages/core-tensor/dist/index.js'));
  const imp = (p) => (root ? import(pathToFileURL(join(root, inTree ? 'packages' : 'node_modules/@webattn', p, 'dist/index.js')).href) : import(`@webattn/${p}`));
  const T = await imp('core-tensor');
  await imp('kernels-webgpu');
  const M = await imp('models');
  const dev = await T.getDevice({ kind: 'webgpu' });
  // time inside queue.submit: on llvmpipe (OpenGL) Dawn runs the GL work there, so "excl. submit" is the JS + API part
  const q = dev.gpu.queue;
  const submit = q.submit.bind(q);
  const timer = { submitMs: 0 };
  q.submit = (cbs) => {
    const s = performance.now();
    try {
      // NOSUBMIT=1: command buffers are encoded and finished but dropped, so no GPU work competes for the host's
      // cores (llvmpipe runs on them): a pure host measurement; the results are not computed then
      return NOSUBMIT ? undefined : submit(cbs);
    } finally {
      timer.submitMs += performance.now() - s;
    }
  };
  return { T, M, dev, timer };
}

const variants = [{ name: 'new', ...(await load(null)) }];
if (process.env.BASE) variants.unshift({ name: 'base', ...(await load(process.env.BASE)) });
const info = variants[variants.length - 1].dev.info;
console.log(`host-probe on ${info.adapter} (${info.api}) tier ${info.tier}; variants ${variants.map((v) => v.name).join(', ')}; ${ROUNDS} rounds × ${REPS} calls; ${DTYPE}${NOSUBMIT ? '; NOSUBMIT (nothing runs on the GPU)' : ''}`);

function makeCases({ T, M, dev }) {
  const out = {};
  if (CASES.includes('vit')) {
    const cfg = M.vitConfig({ image_size: 32, patch_size: 8, hidden_size: 64, num_attention_heads: 2, num_hidden_layers: 4, intermediate_size: 128, num_labels: 10 });
    const model = new M.ViTForImageClassification(cfg, { attention: M.flashAttention, device: dev, seed: 1 });
    model.eval();
    model.parameters().forEach((p) => (p.requiresGrad = false));
    const px = T.randn([2, cfg.num_channels, 32, 32], { seed: 3, device: dev, dtype: 'float32' });
    out.vit = { setup: async () => DTYPE === 'float16' && (await model.to('float16')), call: async () => T.tidyAsync(async () => void (await model.forward({ pixelValues: DTYPE === 'float16' ? px.to?.('float16') ?? px : px }))) };
  }
  if (CASES.includes('chain')) {
    const x0 = T.randn([16, 64], { seed: 1, device: dev, dtype: DTYPE });
    const w = T.randn([64, 64], { seed: 2, device: dev, dtype: DTYPE });
    const b = T.randn([64], { seed: 3, device: dev, dtype: DTYPE });
    out.chain = {
      setup: async () => undefined,
      call: async () =>
        T.tidy(() =>
          T.noGrad(() => {
            let x = x0;
            for (let i = 0; i < 50; i++) {
              x = T.add(T.matmul(x, w), b); // 2 dispatches
              x = T.mul(x, 0.5); // 1
              x = T.tanh ? T.tanh(x) : T.relu(x); // 1
            }
            return x.sum();
          }),
        ),
    };
  }
  return out;
}

const rows = [];
for (const v of variants) {
  v.cases = makeCases(v);
  for (const c of Object.values(v.cases)) {
    await c.setup();
    for (let i = 0; i < 3; i++) await c.call(); // warm: pipelines, pool, bind groups
    await v.dev.sync();
  }
}
const res = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const name of CASES) {
    for (const v of r % 2 ? [...variants].reverse() : variants) {
      const c = v.cases[name];
      const dev = v.dev;
      await dev.sync();
      const c0 = dev.counters();
      const sub0 = v.timer.submitMs;
      const t0 = performance.now();
      for (let i = 0; i < REPS; i++) await c.call();
      const host = performance.now() - t0;
      const inSubmit = v.timer.submitMs - sub0;
      await dev.sync();
      const wall = performance.now() - t0;
      const c1 = dev.counters();
      const d = {};
      for (const k of ['dispatches', 'submits', 'bindGroupsCreated', 'bindGroupHits', 'buffersCreated', 'poolHits', 'uniformBytes', 'pipelinesCompiled']) d[k] = c1[k] - c0[k];
      const row = { round: r, case: name, variant: v.name, host_ms: host, wall_ms: wall, us_per_dispatch: (host * 1000) / d.dispatches, us_excl_submit: ((host - inSubmit) * 1000) / d.dispatches, ...d };
      rows.push(row);
      (res[`${name}|${v.name}`] ??= []).push(row);
    }
  }
}
const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
console.log('case      variant  host µs/dispatch median [min..max]   excl. submit [min..max]   dispatches/call  bindGroups created/hits  buffers created/poolHits  uniform B/dispatch');
const summary = [];
for (const [k, rs] of Object.entries(res)) {
  const [name, variant] = k.split('|');
  const us = rs.map((x) => x.us_per_dispatch);
  const ux = rs.map((x) => x.us_excl_submit);
  const last = rs[rs.length - 1];
  const s = { case: name, variant, us_median: med(us), us_min: Math.min(...us), us_max: Math.max(...us), us_excl_submit_median: med(ux), us_excl_submit_min: Math.min(...ux), us_excl_submit_max: Math.max(...ux), dispatches_per_call: last.dispatches / REPS, bindGroupsCreated: last.bindGroupsCreated, bindGroupHits: last.bindGroupHits, buffersCreated: last.buffersCreated, poolHits: last.poolHits, uniform_per_dispatch: last.uniformBytes / last.dispatches };
  summary.push(s);
  console.log(
    `${name.padEnd(9)} ${variant.padEnd(8)} ${s.us_median.toFixed(1).padStart(8)} [${s.us_min.toFixed(1)}..${s.us_max.toFixed(1)}]`.padEnd(52) +
      `${s.us_excl_submit_median.toFixed(1).padStart(7)} [${s.us_excl_submit_min.toFixed(1)}..${s.us_excl_submit_max.toFixed(1)}]`.padEnd(26) +
      `${s.dispatches_per_call.toFixed(0).padStart(8)}        ${s.bindGroupsCreated}/${s.bindGroupHits}`.padEnd(40) +
      `${s.buffersCreated}/${s.poolHits}`.padEnd(26) +
      `${s.uniform_per_dispatch.toFixed(0)}`,
  );
}
if (variants.length === 2) {
  for (const name of CASES) {
    const ratios = [];
    for (let r = 0; r < ROUNDS; r++) {
      const b = rows.find((x) => x.round === r && x.case === name && x.variant === 'base');
      const n = rows.find((x) => x.round === r && x.case === name && x.variant === 'new');
      ratios.push([b.us_per_dispatch / n.us_per_dispatch, b.us_excl_submit / n.us_excl_submit]);
    }
    console.log(`${name}: base/new per round ${ratios.map((x) => x[0].toFixed(2)).join(' ')} (median ${med(ratios.map((x) => x[0])).toFixed(2)}); excl. submit ${ratios.map((x) => x[1].toFixed(2)).join(' ')} (median ${med(ratios.map((x) => x[1])).toFixed(2)})`);
  }
}
if (json) writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), device: info, rounds: ROUNDS, reps: REPS, rows, summary }, null, 1));
for (const v of variants) v.dev.destroy();
