#!/usr/bin/env bash
# One device call for the subgroup-matrix attention (issue #12): unpack through run-full.sh (no steps), then
# sgmat_diag.mjs, the gpu tests of TEST_FILES, sgmat_attn.mjs (speed vs the tile forward) and
# sgmat_micro.mjs, each with a timeout inside BUDGET; logs and JSON under $OUT. Step `ab`: sgmat_attn.mjs --ab
# (the default tiling vs each SgmatConfig option; AB_S seconds, default 90).
#   run: command "PACK=.dev-x BUDGET=400 SG_STEPS='diag tests attn micro' bash .dev-x/sgmat_run.sh", carry [".gl", ".dev-x"]
set -uo pipefail
REPO=$(pwd)
PACK=${PACK:-.dev-sgmat2}
BUDGET=${BUDGET:-400}
SG_STEPS=${SG_STEPS:-diag tests attn micro}
T0=$(date +%s)
OUT=${OUT:-/tmp/out}
SG=/tmp/sg
mkdir -p "$OUT" "$SG"
# at most 8 files come back: everything goes to $SG and is tarred into $OUT/sgmat.tar after each step
OUT=/tmp/rf-out STEPS="" BUDGET=60 bash "$REPO/$PACK/run-full.sh" > "$SG/unpack.log" 2>&1
cd /tmp/wt || exit 1
export PATH=/tmp/nbin:$PATH WEBATTN_WEBGPU_BACKEND=vulkan
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
G=apps/bench/gpu
el() { echo "[t+$(( $(date +%s) - T0 ))s] $*"; }
step() { # name default_seconds cmd...
  local name=$1 dflt=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - T0) - 8 ))
  local t=$(( dflt < left ? dflt : left ))
  if [ "$t" -lt 15 ]; then el "skip $name (${left}s left)"; return; fi
  el "step $name (timeout ${t}s)"
  DEADLINE_S=$(( t - 10 )) timeout -k 5 "$t" "$@" > "$SG/$name.log" 2>&1
  el "end $name rc=$?"
  tar -cf "$OUT/sgmat.tar" -C "$SG" .
  grep -E '^(ROW|sgmat|Error|AB)|Tests |Test Files|FAIL|✓|×' "$SG/$name.log" | grep -v '^ROW.*"part":"primitive".*"tile0_bad":0,"tile1_bad":0' | cut -c1-330 | tail -${TAIL:-60}
}
el "node $(node --version); $(nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader)"
for s in $SG_STEPS; do
  case $s in
    diag) step diag "${DIAG_S:-80}" node $G/sgmat_diag.mjs --json "$SG/diag.json" ;;
    tests) WEBATTN_EXPECT_F16=1 WEBATTN_EXPECT_SGMM=1 step tests "${TEST_S:-130}" node node_modules/vitest/vitest.mjs run --project gpu ${TEST_FILES:-packages/kernels-webgpu/src/attention} ;;
    attn) step attn "${ATTN_S:-90}" node $G/sgmat_attn.mjs --json "$SG/attn.json" ;;
    ab) step ab "${AB_S:-90}" node $G/sgmat_attn.mjs --ab --json "$SG/ab.json" ;;
    micro) step micro "${MICRO_S:-110}" node $G/sgmat_micro.mjs --json "$SG/micro.json" ;;
    *) el "unknown step $s" ;;
  esac
done
el done
