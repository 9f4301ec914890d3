import { describe, expect, it } from 'vitest';
import * as T from '@webattn/core-tensor';
import { AdamW, GPT2LMHeadModel, GradScaler, Linear, SGD, clipGradNorm, gpt2Config, sdpaAttention } from '@webattn/models';

// Optimizer and loss-scaling math on the CPU reference backend, which stores float16 by rounding every
// value to half precision (the same rounding a float16 GPU buffer does). Oracles: the PyTorch formulas
// evaluated in float64 here, with the float16 write-back rounding applied by roundTo.
const cpu = T.cpu();
const h = (v: number) => T.roundTo('float16', v);

async function code(fn: () => unknown): Promise<[string, string | undefined]> {
  try {
    await fn();
  } catch (e) {
    const w = e as T.WebattnError;
    return [w.code, w.argument];
  }
  return ['none', undefined];
}

/** A float16 leaf on the CPU with seeded values. */
function halfParam(shape: number[], seed: number): T.Tensor {
  return T.randn(shape, { seed, device: cpu, dtype: 'float16' }).detach().requiresGrad_(true);
}

describe('AdamW / SGD with float16 parameters: float32 state and arithmetic', () => {
  it('AdamW keeps float32 moments and matches the float64 formula with float16 write-back (no NaN where float16 state gave one)', async () => {
    const p = halfParam([2, 6], 11);
    const p0 = Array.from(await p.toArray());
    // zeros (m = v = 0: a float16 eps of 1e-8 rounds to 0 and gives 0/0), tiny values (g² underflows float16)
    const gv = [0, 0, 1e-5, -2e-5, 3e-4, 0.5, -1.25, 2, 1e-6, -7e-3, 0.03, 0];
    const lr = 1e-2;
    const [b1, b2, eps, wd] = [0.9, 0.999, 1e-8, 0.01];
    const opt = new AdamW([p], { lr, betas: [b1, b2], eps, weightDecay: wd });
    const w = p0.slice();
    const m = gv.map(() => 0);
    const v = gv.map(() => 0);
    for (let t = 1; t <= 4; t++) {
      p.grad = T.tensor(gv.map((g) => g * t), [2, 6], { dtype: 'float16', device: cpu });
      opt.step();
      for (let j = 0; j < w.length; j++) {
        const g = h(gv[j]! * t); // the gradient as float16 holds it
        const wdec = w[j]! * (1 - lr * wd);
        m[j] = b1 * m[j]! + (1 - b1) * g;
        v[j] = b2 * v[j]! + (1 - b2) * g * g;
        const upd = (lr / (1 - b1 ** t)) * (m[j]! / (Math.sqrt(v[j]!) / Math.sqrt(1 - b2 ** t) + eps));
        w[j] = h(wdec - upd); // the parameter is written back in float16
      }
    }
    expect(p.dtype).toBe('float16');
    const got = Array.from(await p.toArray());
    expect(got.some(Number.isNaN)).toBe(false);
    // float32 arithmetic vs float64: equal after float16 rounding up to one float16 step at a tie
    got.forEach((x, j) => expect(Math.abs(x - w[j]!)).toBeLessThanOrEqual(Math.abs(w[j]!) * 2 ** -10 + 1e-7));
    const mom = opt.moments(p)!;
    expect([mom.m.dtype, mom.v.dtype, mom.step]).toEqual(['float32', 'float32', 4]);
    const mv = await mom.m.toArray();
    const vv = await mom.v.toArray();
    m.forEach((x, j) => expect(Math.abs(mv[j]! - x)).toBeLessThanOrEqual(Math.abs(x) * 1e-6 + 1e-30));
    v.forEach((x, j) => expect(Math.abs(vv[j]! - x)).toBeLessThanOrEqual(Math.abs(x) * 1e-6 + 1e-30));
    // the tiny gradients left a non-zero second moment (float16 would have flushed 1e-10 to 0)
    expect(vv[2]!).toBeGreaterThan(0);
  });

  it('masterWeights: updates below a float16 step accumulate in the float32 master; without it they are rounded away', async () => {
    const lr = 1e-4; // Adam moves each weight by ~lr per step; the float16 spacing at 1 is 2^-10 ≈ 9.8e-4
    const make = () => T.tensor([1, 1, -1, 0.5], [4], { dtype: 'float16', device: cpu, requiresGrad: true });
    const g = [0.3, -0.2, 0.1, 0.05];
    const withM = make();
    const without = make();
    const optM = new AdamW([withM], { lr, weightDecay: 0, masterWeights: true });
    const optN = new AdamW([without], { lr, weightDecay: 0 });
    const ref = [1, 1, -1, 0.5];
    const m = [0, 0, 0, 0];
    const v = [0, 0, 0, 0];
    for (let t = 1; t <= 8; t++) {
      withM.grad = T.tensor(g, [4], { dtype: 'float16', device: cpu });
      without.grad = T.tensor(g, [4], { dtype: 'float16', device: cpu });
      optM.step();
      optN.step();
      for (let j = 0; j < 4; j++) {
        const gj = h(g[j]!);
        m[j] = 0.9 * m[j]! + 0.1 * gj;
        v[j] = 0.999 * v[j]! + 0.001 * gj * gj;
        ref[j] = ref[j]! - (lr / (1 - 0.9 ** t)) * (m[j]! / (Math.sqrt(v[j]!) / Math.sqrt(1 - 0.999 ** t) + 1e-8));
      }
    }
    const master = optM.masterOf(withM)!;
    expect(master.dtype).toBe('float32');
    const mv = Array.from(await master.toArray());
    mv.forEach((x, j) => expect(Math.abs(x - ref[j]!)).toBeLessThan(1e-6));
    expect(Array.from(await withM.toArray())).toEqual(mv.map(h)); // the parameter is the master rounded to float16
    expect(Array.from(await withM.toArray())).not.toEqual([1, 1, -1, 0.5]);
    expect(Array.from(await without.toArray())).toEqual([1, 1, -1, 0.5]); // 8 steps of ~1e-4 each rounded back
    expect(optN.masterOf(without)).toBeNull();
  });

  it('SGD with momentum on float16 parameters keeps a float32 buffer and matches torch.optim.SGD', async () => {
    const p = halfParam([5], 3);
    const w = Array.from(await p.toArray());
    const gv = [0.25, -1e-5, 3, 0, -0.5];
    const opt = new SGD([p], { lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
    let buf: number[] | null = null;
    for (let t = 0; t < 3; t++) {
      p.grad = T.tensor(gv, [5], { dtype: 'float16', device: cpu });
      opt.step();
      const d = gv.map((g, j) => h(g) + 0.01 * w[j]!);
      buf = buf ? buf.map((b, j) => 0.9 * b + d[j]!) : d;
      for (let j = 0; j < 5; j++) w[j] = h(w[j]! - 0.1 * buf[j]!);
    }
    const got = Array.from(await p.toArray());
    got.forEach((x, j) => expect(Math.abs(x - w[j]!)).toBeLessThanOrEqual(Math.abs(w[j]!) * 2 ** -10 + 1e-7));
  });

  it('clipGradNorm of float16 gradients sums squares in float32 (300² overflows float16)', async () => {
    const p = halfParam([4], 9);
    const gv = [300, -400, 120, 0.5];
    p.grad = T.tensor(gv, [4], { dtype: 'float16', device: cpu });
    const norm = Math.sqrt(gv.reduce((a, g) => a + g * g, 0));
    const n = clipGradNorm([p], 1);
    expect(n.dtype).toBe('float32');
    expect(await n.item()).toBeCloseTo(norm, 2);
    const coef = Math.fround(1 / Math.fround(norm + 1e-6));
    const got = Array.from(await p.grad!.toArray());
    got.forEach((x, j) => expect(Math.abs(x - h(gv[j]! * coef))).toBeLessThanOrEqual(Math.abs(gv[j]! * coef) * 2 ** -10 + 1e-7));
    expect(p.grad!.dtype).toBe('float16');
  });

  it('bad input: masterWeights must be a boolean', async () => {
    expect(await code(() => new AdamW([halfParam([2], 1)], { masterWeights: 'yes' as unknown as boolean }))).toEqual(['INVALID_ARGUMENT', 'options.masterWeights']);
  });
});

describe('GradScaler (torch.amp.GradScaler semantics)', () => {
  // loss = Σ p·c in float32 over float16 parameters; |c| in (1, 2): c·2^16 overflows float16, c·2^15 does not
  const c = [1.5, -1.25, 1.75, -1.1];
  function setup(options = {}) {
    const p = T.tensor([0.5, -0.25, 1, 2], [4], { dtype: 'float16', device: cpu, requiresGrad: true });
    const loss = () => T.sum(T.mul(T.cast(p, 'float32'), T.tensor(c, [4], { device: cpu })));
    return { p, loss, scaler: new GradScaler(options) };
  }

  it('an overflowing step is skipped and halves the scale; a good step applies the unscaled float32 gradient; growth after growthInterval', async () => {
    const { p, loss, scaler } = setup({ growthInterval: 3 });
    const opt = new SGD([p], { lr: 0.1 });
    expect(scaler.getScale()).toBe(2 ** 16);
    const w = Array.from(await p.toArray());
    const scales: number[] = [];
    const stepped: boolean[] = [];
    for (let it = 0; it < 5; it++) {
      const s = scaler.getScale();
      scaler.scale(loss()).backward();
      expect(p.grad!.dtype).toBe('float16');
      const ok = await scaler.step(opt);
      stepped.push(ok);
      if (ok) {
        // the gradient the step used: float16(c·s) / s, in float32 (p.grad holds it after unscale)
        expect(p.grad!.dtype).toBe('float32');
        const want = c.map((x) => h(x * s) / s);
        const gg = Array.from(await p.grad!.toArray());
        gg.forEach((x, j) => expect(x).toBeCloseTo(want[j]!, 12));
        for (let j = 0; j < 4; j++) w[j] = h(w[j]! - 0.1 * want[j]!);
      }
      expect(Array.from(await p.toArray())).toEqual(w); // unchanged when skipped
      scaler.update();
      scales.push(scaler.getScale());
      opt.zeroGrad();
    }
    expect(stepped).toEqual([false, true, true, true, false]);
    // 2^16 overflowed → 2^15; three good steps → grows to 2^16, which overflows again → 2^15
    expect(scales).toEqual([2 ** 15, 2 ** 15, 2 ** 15, 2 ** 16, 2 ** 15]);
    expect(scaler.goodSteps).toBe(0);
    expect(opt.stepCount).toBe(3);
  });

  it('a NaN gradient skips the step and backs off; unscale before step lets clipping see true gradients', async () => {
    const { p, scaler } = setup({ initScale: 1024 });
    const opt = new SGD([p], { lr: 1 });
    const before = Array.from(await p.toArray());
    p.grad = T.tensor([1, NaN, 2, 3], [4], { dtype: 'float16', device: cpu });
    expect(await scaler.step(opt)).toBe(false);
    scaler.update();
    expect(scaler.getScale()).toBe(512);
    expect(Array.from(await p.toArray())).toEqual(before);
    p.grad = T.tensor([512, -1024, 256, 0], [4], { dtype: 'float16', device: cpu });
    scaler.unscale(opt);
    expect(Array.from(await p.grad!.toArray())).toEqual([1, -2, 0.5, 0]);
    expect(await code(() => scaler.unscale(opt))).toEqual(['INVALID_ARGUMENT', 'optimizer']);
    expect(await scaler.step(opt)).toBe(true);
    expect(Array.from(await p.toArray())).toEqual(before.map((x, j) => h(x - [1, -2, 0.5, 0][j]!)));
    expect(await code(() => scaler.step(opt))).toEqual(['INVALID_ARGUMENT', 'optimizer']);
    scaler.update();
    expect(await code(() => scaler.update())).toEqual(['INVALID_ARGUMENT', 'scaler']);
  });

  it('scale() multiplies in float32; disabled is a pass-through; bad options are coded', async () => {
    const { loss, scaler } = setup();
    const l = loss();
    const s = scaler.scale(l);
    expect(s.dtype).toBe('float32');
    expect(await s.item()).toBeCloseTo((await l.item()) * 65536, 3);
    const off = new GradScaler({ enabled: false });
    expect(off.scale(l)).toBe(l);
    expect(off.getScale()).toBe(1);
    expect(await code(() => new GradScaler({ growthInterval: 0 }))).toEqual(['INVALID_ARGUMENT', 'options.growthInterval']);
    expect(await code(() => new GradScaler({ backoffFactor: 2 }))).toEqual(['INVALID_ARGUMENT', 'options.backoffFactor']);
    expect(await code(() => new GradScaler({ enabled: 'true' as unknown as boolean }))).toEqual(['INVALID_ARGUMENT', 'options.enabled']);
    expect(await code(() => scaler.scale(T.tensor([1], [1], { dtype: 'int32', device: cpu })))).toEqual(['INVALID_ARGUMENT', 'loss']);
  });

  it('a tiny float16 GPT-2 trains on the CPU with master weights + GradScaler: finite, decreasing loss', async () => {
    const cfg = gpt2Config({ n_layer: 1, n_embd: 16, n_head: 2, vocab_size: 19, n_positions: 16, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 });
    const model = new GPT2LMHeadModel(cfg, { seed: 2, attention: sdpaAttention, device: cpu });
    await model.to('float16');
    const ids = T.tensor([1, 5, 2, 7, 3, 9, 4, 11, 1, 5, 2, 7, 3, 9, 4, 11], [2, 8], { dtype: 'int32', device: cpu });
    const opt = new AdamW(model.parameters(), { lr: 1e-2, masterWeights: true });
    const scaler = new GradScaler();
    const losses: number[] = [];
    for (let i = 0; i < 10; i++) {
      await T.tidyAsync(async () => {
        const { loss } = await model.forward({ inputIds: ids, labels: ids });
        expect(loss!.dtype).toBe('float32'); // float16 logits, float32 loss (autocast semantics)
        losses.push(await loss!.item());
        scaler.scale(loss!).backward();
        await scaler.step(opt);
        scaler.update();
        opt.zeroGrad();
      });
    }
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[9]!).toBeLessThan(losses[0]! * 0.8);
    expect(model.parameters().every((q) => q.dtype === 'float16')).toBe(true);
  });
});

describe('dispose(): Module and Optimizer', () => {
  it('a trained model + optimizer disposed leave the device live storage count where it started', async () => {
    const start = cpu.memoryStats().liveStorages;
    const cfg = gpt2Config({ n_layer: 1, n_embd: 8, n_head: 2, vocab_size: 13, n_positions: 16, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 });
    const model = new GPT2LMHeadModel(cfg, { seed: 3, attention: sdpaAttention, device: cpu });
    const opt = new AdamW(model.parameters(), { lr: 1e-3 });
    const ids = T.tensor([1, 2, 3, 4, 5, 6], [1, 6], { dtype: 'int32', device: cpu });
    for (let i = 0; i < 2; i++) {
      await T.tidyAsync(async () => {
        const { loss } = await model.forward({ inputIds: ids, labels: ids });
        loss!.backward();
        opt.step();
      });
    }
    const withAll = cpu.memoryStats().liveStorages;
    const nParams = model.parameters().length;
    // parameters, their gradients, two moments each, and the ids
    expect(withAll - start).toBe(nParams * 4 + 1);
    opt.dispose();
    expect(cpu.memoryStats().liveStorages - start).toBe(nParams * 2 + 1);
    model.dispose();
    ids.dispose();
    expect(cpu.memoryStats().liveStorages).toBe(start);
    // idempotent
    model.dispose();
    opt.dispose();
    expect(cpu.memoryStats().liveStorages).toBe(start);
  });

  it('a disposed module or optimizer throws TENSOR_DISPOSED naming it; Symbol.dispose is dispose', async () => {
    const lin = new Linear(3, 2, { seed: 1, device: cpu });
    const opt = new SGD(lin.parameters(), { lr: 0.1, momentum: 0.9 });
    const x = T.randn([2, 3], { seed: 2, device: cpu });
    lin.forward(x).sum().backward();
    opt.step();
    lin[Symbol.dispose]();
    opt[Symbol.dispose]();
    expect(lin.disposed && opt.disposed).toBe(true);
    await expect(async () => lin.forward(x)).rejects.toThrowError(/TENSOR_DISPOSED|Linear was released/);
    expect(await code(() => lin.forward(x))).toEqual(['TENSOR_DISPOSED', 'module']);
    expect(await code(() => lin.parameters())).toEqual(['TENSOR_DISPOSED', 'module']);
    expect(await code(() => lin.to('float64'))).toEqual(['TENSOR_DISPOSED', 'module']);
    expect(await code(() => opt.step())).toEqual(['TENSOR_DISPOSED', 'optimizer']);
    let msg = '';
    try {
      lin.forward(x);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toContain('Linear');
  });

  it('to(dtype) frees the replaced parameters at once (tied weights once); an old reference throws TENSOR_DISPOSED', async () => {
    const cfg = gpt2Config({ n_layer: 1, n_embd: 8, n_head: 2, vocab_size: 13, n_positions: 16 });
    const start = cpu.memoryStats().liveStorages;
    const model = new GPT2LMHeadModel(cfg, { seed: 3, attention: sdpaAttention, device: cpu });
    const n = model.parameters().length;
    expect(cpu.memoryStats().liveStorages - start).toBe(n);
    const oldW = model.transformer.wte.param('weight');
    const w32 = Array.from(await oldW.toArray());
    await model.to('float16');
    expect(cpu.memoryStats().liveStorages - start).toBe(n);
    expect(await code(() => oldW.toArray())).toEqual(['TENSOR_DISPOSED', 'tensor']);
    const w16 = model.transformer.wte.param('weight');
    expect(model.lm_head.param('weight')).toBe(w16); // still tied
    expect(Array.from(await w16.toArray())).toEqual(w32.map(h));
    model.dispose();
    expect(cpu.memoryStats().liveStorages).toBe(start);
  });

  it('a disposed GPT-2 names its class when called', async () => {
    const cfg = gpt2Config({ n_layer: 1, n_embd: 8, n_head: 2, vocab_size: 13, n_positions: 16 });
    const model = new GPT2LMHeadModel(cfg, { seed: 3, attention: sdpaAttention, device: cpu });
    model.dispose();
    const ids = T.tensor([1, 2], [1, 2], { dtype: 'int32', device: cpu });
    await expect(model.forward({ inputIds: ids })).rejects.toThrowError(/GPT2\w* was released by dispose\(\)/);
  });
});
