#!/usr/bin/env bash
# ONE device call that measures webattn, PyTorch and TF.js-WebGPU 4.22 on the same GPU and writes
# docs/benchmarks.md from the results.
#
# Lead's final call (exact commands):
#   1. here, in the checkout to measure (after `npm run build`; it must pass):
#        bash apps/bench/gpu/pack-full.sh /work/main/.dev-bench
#      (packs Node, the built tree with a trimmed node_modules incl. TF.js 4.22, this script, COMMIT: ~48 MiB,
#      about 5 min on the shared 2-core machine)
#   2. `status` (budget_left_s − 600 must stay ≥ 700), then one `run`:
#        kind nvidia-h100-x1, timeout_s 600, carry [".gl", ".dev-bench"],
#        command "PACK=.dev-bench bash .dev-bench/run-full.sh"
#      It returns $OUT/results.tar (all JSON + logs + clocks), $OUT/benchmarks.md (the report made on the device)
#      and $OUT/run.log. Save them (e.g. /work/wt/gpubench-runs/<date>/).
#   3. here: mkdir -p /tmp/R && tar -xf <files_at>/results.tar -C /tmp/R &&
#        python3 apps/bench/gpu/report.py --dir /tmp/R --doc docs/benchmarks.md --raw docs/benchmarks
#      and commit docs/benchmarks.md + docs/benchmarks/<date>-<gpu>-*.json.
#
# Steps (STEPS, default "kernels tfjs torch models torchmodels"), each with its own timeout and a deadline passed
# to the script (DEADLINE_S) so it stops starting new rows in time; every script rewrites its JSON after each row,
# so a step cut by its timeout keeps what it measured:
#   kernels      webattn_peers.mjs   matmul, attention f32/f16 fwd + fwd+bwd, varlen, flex      (KERNELS_S, 150)
#   tfjs         tfjs_peer.mjs       TF.js matmul, unfused attention fwd + fwd+bwd, flex-like   (TFJS_S, 70)
#   torch        torch_peers.py      PyTorch matmul, SDPA backends, varlen_attn, flex compiled  (TORCH_S, 100)
#   models       webattn_models.mjs  GPT-2 small + ViT-B/16 fwd / train / generate             (MODELS_S, 150)
#   torchmodels  torch_models.py     transformers GPT-2 small + ViT-B/16, same                  (TORCHMODELS_S, 70)
#   modelvit / torchvit, modelvarlen / torchvarlen (optional): the published ViT (L/16 width, batch 128) and GPT-2
#                padded-vs-packed scenarios of issue 13, webattn and PyTorch (--scenario vit | gpt2-varlen; depths
#                VIT_DEPTH, VIT_LONG_DEPTH, VARLEN_DEPTH; see webattn_models.mjs)   (SCEN_S_<step>, else SCEN_S, 150)
#   probe        matmul_probe.mjs    (optional) matmul tilings and subgroup-matrix probes       (PROBE_S, 120)
#   micro        sgmat_micro.mjs     (optional) subgroup-matrix microbenchmarks (MMA, load, store) (MICRO_S, 120)
#   profile      profile_models.mjs  (optional) per-kernel GPU time of model steps (MODELS_ONLY, VIT_ATTN) (PROFILE_S, 120)
#   tests        (optional) vitest --project gpu on TEST_FILES                                  (TEST_S, 200)
# BUDGET (default 575 s; unpacking takes ~2 s there) caps the whole script: a step gets min(its timeout, what is left − 10 s).
# QUICK=1: tiny shapes and toy models end to end (validation: 116 s on the H100 with BUDGET=225). A step's exit code 124 = its timeout.
set -uo pipefail
REPO=$(pwd)
PACK=${PACK:-.dev-bench}
STEPS=${STEPS:-kernels tfjs torch models torchmodels}
BUDGET=${BUDGET:-575}
T0=$(date +%s)
el() { echo "[t+$(( $(date +%s) - T0 ))s] $*"; }
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
# WORKDIR (default /tmp) holds node, the unpacked tree and the results; set it for a local dry run
WD=${WORKDIR:-/tmp}
RES=$WD/results
rm -rf "$RES" && mkdir -p "$RES"

if [ -d "$REPO/.gl" ]; then for f in "$REPO"/.gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
# a warm machine keeps the last call's /tmp/wt: start from an empty tree (stale test files of another pack ran before)
rm -rf "$WD/wt"
mkdir -p "$WD/nbin" "$WD/wt"
xz -T0 -dc "$REPO/$PACK/node.xz" > "$WD/nbin/node" && chmod +x "$WD/nbin/node"
export PATH=$WD/nbin:$PATH
xz -T0 -dc "$REPO/$PACK/tree.tar.xz" | tar -xf - -C "$WD/wt"
[ -d "$WD/wt/fixtures" ] || cp -r "$REPO/fixtures" "$WD/wt/" 2>/dev/null
export WEBATTN_WEBGPU_BACKEND=${WEBATTN_WEBGPU_BACKEND:-vulkan} PYTHONUNBUFFERED=1
cd "$WD/wt"
G=apps/bench/gpu
el "unpacked; node $(node --version); steps: $STEPS; QUICK=${QUICK:-0}"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader | tee "$RES/gpu.txt"
python3 - "$RES/env.json" "$REPO/$PACK/COMMIT" <<'EOF'
import json, os, subprocess, sys
commit = open(sys.argv[2]).read().strip() if os.path.exists(sys.argv[2]) else '?'
node = subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()
json.dump(dict(commit=commit, node=node, quick=os.environ.get('QUICK') == '1', steps=os.environ.get('STEPS', '')), open(sys.argv[1], 'w'), indent=1)
EOF
# SM clock and power every 0.5 s for the whole call (the report gives each step's median)
( while :; do echo "$(date +%s.%N),$(nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader,nounits | head -1 | tr -d ' ')"; sleep 0.5; done > "$RES/clocks.csv" 2>/dev/null ) &
CLOCKS=$!
echo '{"steps": []}' > "$RES/steps.json"
save() { tar -cf "$OUT/results.tar" -C "$RES" . 2>/dev/null; }
record() { # name rc start end
  python3 - "$RES/steps.json" "$@" <<'EOF'
import json, sys
p, name, rc, s, e = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
d = json.load(open(p)); d['steps'].append(dict(name=name, rc=rc, start=s, end=e, seconds=round(e - s, 1))); json.dump(d, open(p, 'w'), indent=1)
EOF
}
# run NAME DEFAULT_SECONDS CMD...: timeout = min(default, budget left − 10); DEADLINE_S = timeout − 12
run() {
  local name=$1 dflt=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - T0) - 10 ))
  local t=$(( dflt < left ? dflt : left ))
  if [ "$t" -lt 15 ]; then el "skip $name: ${left}s left"; record "$name" 125 "$(date +%s)" "$(date +%s)"; return; fi
  el "step $name (timeout ${t}s)"
  local s; s=$(date +%s.%N)
  DEADLINE_S=$(( t - 12 )) timeout -k 5 "$t" "$@" > "$RES/$name.log" 2>&1
  local rc=$?
  record "$name" "$rc" "$s" "$(date +%s.%N)"
  grep -E '^(ROW|webattn|tfjs|torch|model|Error|Traceback)|Error:' "$RES/$name.log" | cut -c1-240 | tail -"${TAIL:-40}"
  el "end $name rc=$rc"
  save
}
for s in $STEPS; do
  case $s in
    kernels) run kernels "${KERNELS_S:-150}" node $G/webattn_peers.mjs --json "$RES/webattn_peers.json" ;;
    tfjs) run tfjs "${TFJS_S:-70}" node $G/tfjs_peer.mjs --json "$RES/tfjs.json" ;;
    torch) run torch "${TORCH_S:-100}" python3 $G/torch_peers.py --json "$RES/torch_peers.json" ;;
    models) run models "${MODELS_S:-150}" node $G/webattn_models.mjs --json "$RES/webattn_models.json" ;;
    torchmodels) run torchmodels "${TORCHMODELS_S:-70}" python3 $G/torch_models.py --json "$RES/torch_models.json" ;;
    modelvit|modelvarlen|torchvit|torchvarlen) sc=gpt2-varlen; case $s in *vit) sc=vit ;; esac; ts=SCEN_S_$s; ts=${!ts:-${SCEN_S:-150}}
      case $s in model*) run "$s" "$ts" node $G/webattn_models.mjs --scenario "$sc" --json "$RES/webattn_$sc.json" ;;
        *) run "$s" "$ts" python3 $G/torch_models.py --scenario "$sc" --json "$RES/torch_$sc.json" ;; esac ;;
    probe) PROBE_SECONDS=$(( ${PROBE_S:-120} - 20 )) run probe "${PROBE_S:-120}" node $G/matmul_probe.mjs --json "$RES/probe.json" ;;
    micro) run micro "${MICRO_S:-120}" node $G/sgmat_micro.mjs --json "$RES/micro.json" ;;
    profile) run profile "${PROFILE_S:-120}" node $G/profile_models.mjs --json "$RES/profile.json" ;;
    bwd) run bwd "${BWD_S:-110}" node $G/bwd_probe.mjs --json "$RES/bwd_probe.json" ;;
    tests) WEBATTN_EXPECT_F16=1 run tests "${TEST_S:-200}" node node_modules/vitest/vitest.mjs run --project gpu ${TEST_FILES:-packages/kernels-webgpu} ;;
    *) el "unknown step $s" ;;
  esac
done
kill "$CLOCKS" 2>/dev/null
save
el "report"
python3 $G/report.py --dir "$RES" --doc "$OUT/benchmarks.md" 2>&1 | tail -3
save
el done
