#!/usr/bin/env bash
# One device call (carry .gl and the pack dir; apps/bench/gpu/pack-full.sh makes it): unpacks Node, the
# built checkout and TF.js, then runs what STEPS lists (default: all) with results under $OUT:
#   fixtures  PyTorch fp16 SDPA fixtures (make_fixtures.py --only sdpa16) -> $OUT/fixtures16.tar
#   peers     webattn, PyTorch and TF.js 4.22 (WebGPU, same Dawn/adapter) on the same attention and matmul
#             shapes -> $OUT/webattn_peers.json, torch_peers.json, tfjs.json (report_peers.py merges them)
#   probe     webattn matmul tilings + subgroup-matrix sweep and probes -> $OUT/probe.json, then the
#             subgroup-matrix default again with Dawn's disable_robustness,skip_validation,disable_workgroup_init
#             -> $OUT/probe_toggles.json
#   tests     the f16 / matmul GPU tests with WEBATTN_EXPECT_F16=1 -> $OUT/tests.log
#   bench     webattn-bench seed + kernels -> $OUT/webattn.log
# usage (device): PACK=.dev-gemm bash path/to/run-full.sh
set -uo pipefail
REPO=$(pwd)
PACK=${PACK:-.dev-gemm}
STEPS=${STEPS:-fixtures peers probe tests}
for f in "$REPO"/.gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
mkdir -p /tmp/nbin /tmp/wt /tmp/tfjs
xz -dc "$REPO/$PACK/node.xz" > /tmp/nbin/node && chmod +x /tmp/nbin/node
export PATH=/tmp/nbin:$PATH
tar -xJf "$REPO/$PACK/tree.tar.xz" -C /tmp/wt
[ -f "$REPO/$PACK/tfjs.tar.xz" ] && tar -xJf "$REPO/$PACK/tfjs.tar.xz" -C /tmp/tfjs
cp -r "$REPO/fixtures" /tmp/wt/
export WEBATTN_WEBGPU_BACKEND=vulkan PYTHONUNBUFFERED=1
cd /tmp/wt
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
T0=$(date +%s)
el() { echo "[t+$(( $(date +%s) - T0 ))s] $*"; }
for s in $STEPS; do
  el "step $s"
  case $s in
    fixtures)
      timeout 90 python3 tools/fixtures/make_fixtures.py --out fixtures --only sdpa16 2>&1 | tail -4
      tar -cf "$OUT/fixtures16.tar" fixtures/index.json fixtures/sdpa16-*.safetensors ;;
    peers)
      timeout 150 node apps/bench/gpu/webattn_peers.mjs --json "$OUT/webattn_peers.json" 2>&1 | grep -E '^(ROW|webattn-peers|Error)' | cut -c1-300
      timeout 120 python3 apps/bench/gpu/torch_peers.py --json "$OUT/torch_peers.json" 2>&1 | tail -4 | cut -c1-300
      TFJS_DIR=/tmp/tfjs timeout "${TFJS_SECONDS:-120}" node apps/bench/gpu/tfjs_peer.mjs --json "$OUT/tfjs.json" 2>&1 | grep -E '^(ROW|tfjs|Error)' | cut -c1-300 ;;
    probe)
      PROBE_SECONDS=${PROBE_SECONDS:-200} timeout $(( ${PROBE_SECONDS:-200} + 80 )) node apps/bench/gpu/matmul_probe.mjs --json "$OUT/probe.json" 2>&1 | grep -E '^(ROW|matmul-probe|Error)' | cut -c1-300
      PROBE_PART=sgmm PROBE_TOGGLES=disable_robustness,skip_validation,disable_workgroup_init timeout 90 node apps/bench/gpu/matmul_probe.mjs --json "$OUT/probe_toggles.json" 2>&1 | grep -E '^(ROW|matmul-probe|Error)' | cut -c1-300 ;;
    tests) WEBATTN_EXPECT_F16=1 WEBATTN_EXPECT_SGMM=1 timeout "${TEST_SECONDS:-200}" node node_modules/vitest/vitest.mjs run --project gpu ${TEST_FILES:-packages/kernels-webgpu/src/matmul-f16.gpu.test.ts packages/kernels-webgpu/src/matmul.gpu.test.ts packages/kernels-webgpu/src/sdpa-f16-fixtures.gpu.test.ts packages/kernels-webgpu/src/f16.gpu.test.ts packages/kernels-webgpu/src/ops.gpu.test.ts} > "$OUT/tests.log" 2>&1
      grep -E '✓|×|↓|Test Files|Tests |FAIL|AssertionError|Error:' "$OUT/tests.log" | cut -c1-300 | tail -60 ;;
    bench) timeout "${BENCH_SECONDS:-240}" node apps/bench/dist/cli.js seed kernels --json "$OUT/webattn.json" > "$OUT/webattn.log" 2>&1; grep -E '^(ROW|webattn-bench)' "$OUT/webattn.log" | cut -c1-300 | tail -40 ;;
  esac
done
el done
