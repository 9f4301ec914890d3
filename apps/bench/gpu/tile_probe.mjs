// H100 probe (device machine, inside the unpacked tree): flash fwd time per tile list (TILES=auto,hardware,...) at a sustained
// load of back-to-back batches for 3 s each, with the SM clock and power sampled by nvidia-smi after each batch.
import * as T from "@webattn/core-tensor";
import { scaledDotProductAttention, sdpaKernel } from "@webattn/kernels-webgpu";
import { setFlashTiles } from "@webattn/kernels-webgpu/internal";
import { execSync } from "node:child_process";
const dev = await T.getDevice({ kind: "webgpu" });
const clock = () => execSync("nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader").toString().trim();
for (const [B, H, L, E] of [[8, 16, 1024, 64], [128, 16, 196, 64], [8, 16, 4096, 64]]) {
  const q = T.randn([B, H, L, E], { seed: 1, device: dev }), k = T.randn([B, H, L, E], { seed: 2, device: dev }), v = T.randn([B, H, L, E], { seed: 3, device: dev });
  for (const mode of (process.env.TILES ?? "auto,hardware,software,small").split(",")) {
    setFlashTiles(mode);
    const f = () => T.tidy(() => void sdpaKernel(["flash"], () => scaledDotProductAttention(q, k, v)));
    f(); await dev.sync();
    const t1 = performance.now(); f(); await dev.sync(); const one = performance.now() - t1;
    const kk = Math.max(1, Math.min(200, Math.ceil(250 / one)));
    const times = []; let c = "";
    const end = performance.now() + 3000;
    while (performance.now() < end) { const t = performance.now(); for (let i = 0; i < kk; i++) f(); await dev.sync(); times.push((performance.now() - t) / kk); c = clock(); }
    times.sort((a, b) => a - b);
    const fl = 4 * B * H * L * L * E / (times[0] / 1e3) / 1e12;
    console.log(`PROBE B=${B} H=${H} L=${L} E=${E} tiles=${mode} single=${one.toFixed(2)}ms batch=${kk} best=${times[0].toFixed(2)}ms median=${times[times.length >> 1].toFixed(2)}ms ${fl.toFixed(2)} TFLOP/s clock,power=${c}`);
  }
  q.dispose(); k.dispose(); v.dispose();
}
