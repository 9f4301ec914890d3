// Prints the adapter, its features and a small check of matmul + flash attention against the CPU.
import * as T from '@webattn/core-tensor';
import * as K from '@webattn/kernels-webgpu';
const dev = await T.getDevice({ kind: 'webgpu' });
console.log(JSON.stringify({ info: dev.info, maxBuf: dev.limits.maxStorageBufferBindingSize, loop: dev.maxLoopIterations }));
const q = T.randn([2, 4, 300, 64], { seed: 1, device: dev });
const o = await K.scaledDotProductAttention(q, q, q, { isCausal: true }).toArray();
const qc = T.randn([2, 4, 300, 64], { seed: 1, device: T.cpu() });
const r = await K.scaledDotProductAttention(qc, qc, qc, { isCausal: true }).toArray();
let md = 0;
o.forEach((v, i) => (md = Math.max(md, Math.abs(v - r[i]))));
console.log('flash vs cpu max diff', md, K.lastSdpaBackend());
dev.destroy();
