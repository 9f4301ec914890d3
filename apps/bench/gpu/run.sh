#!/usr/bin/env bash
# The whole GPU run in one device call: webattn on Dawn/Vulkan, then PyTorch, then the report.
# Carry .gl and .dev (apps/bench/gpu/pack.sh makes .dev). Output under $OUT.
set -uo pipefail
source apps/bench/gpu/setup.sh
REPO=$(pwd)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
(cd /tmp/rt && timeout "${WEBATTN_GPU_SECONDS:-330}" ./node apps/bench/dist/cli.js seed --full --json "$OUT/webattn.json") > "$OUT/webattn.log" 2>&1
grep -E '^(ROW|START|webattn-bench)' "$OUT/webattn.log" | cut -c1-300 | tail -40
[ "${SKIP_TORCH:-0}" = 1 ] || PYTHONUNBUFFERED=1 timeout "${TORCH_SECONDS:-200}" python3 apps/bench/gpu/torch_bench.py --json "$OUT/torch.json" 2>&1 | tail -5
python3 apps/bench/gpu/report.py "$OUT/webattn.log" "$OUT/torch.json" "$OUT/gpu.txt" > "$OUT/benchmarks.md" && cat "$OUT/benchmarks.md"
