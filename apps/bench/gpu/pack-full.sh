#!/usr/bin/env bash
# Packs a whole built checkout for one device call into DEST (default /work/main/.dev-bench; /.dev-*/ is
# git-ignored there): Node (xz), the tracked + untracked sources with their dist builds, a node_modules trimmed
# to what the bench, vitest and Dawn (linux-x64) need — TF.js 4.22 included (apps/bench devDependencies: the
# Node bundles, and tfjs-core's per-file modules that hold its gradients) — plus run-full.sh and COMMIT.
# Run from the repository root after `npm run build`. The device side and the exact run command:
# apps/bench/gpu/run-full.sh (top of the file).
set -euo pipefail
DEST=${1:-/work/main/.dev-bench}
[ -f packages/core-tensor/dist/index.js ] && [ -f apps/bench/dist/peers/tfjs.js ] || { echo "run npm run build first" >&2; exit 1; }
[ -f node_modules/@tensorflow/tfjs-core/dist/tf-core.node.js ] || { echo "node_modules lacks @tensorflow/tfjs-core (npm ci)" >&2; exit 1; }
rm -rf "$DEST" && mkdir -p "$DEST"
# private temp files: several engineers may pack at once
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
xz -T2 -6 -c "$(readlink -f "$(command -v node)")" > "$DEST/node.xz"
# fixtures travel with the repository itself (run-full.sh copies them in); the generated wasm module does not
{ git ls-files; git ls-files --others --exclude-standard; echo packages/kernels-wasm/src/wasm-bytes.ts; find packages apps -path '*/node_modules' -prune -o -type d -name dist -print; } |
  grep -v '^fixtures/' | grep -v '^docs/benchmarks/' > "$TMP/files.txt"
TF=node_modules/@tensorflow
tar -cf "$TMP/tree.tar" -T "$TMP/files.txt" \
  --exclude='*.map' --exclude='node_modules/webgpu/dist/win32-*' --exclude='node_modules/webgpu/dist/darwin-*' \
  --exclude='node_modules/webgpu/dist/linux-arm64' --exclude=node_modules/@turbo --exclude='node_modules/turbo*' \
  --exclude=node_modules/typescript --exclude=node_modules/playwright-core --exclude=node_modules/prettier \
  --exclude=node_modules/@shikijs --exclude=node_modules/typedoc --exclude=node_modules/@changesets \
  --exclude=node_modules/onnxruntime-web --exclude=node_modules/binaryen --exclude=node_modules/assemblyscript \
  --exclude=node_modules/vitepress --exclude=node_modules/@algolia --exclude=node_modules/shiki --exclude=node_modules/@vue \
  --exclude=node_modules/@iconify-json --exclude=node_modules/eslint --exclude=node_modules/@typescript-eslint \
  --exclude=$TF/tfjs-backend-cpu --exclude=$TF/tfjs-core/src --exclude=$TF/tfjs-backend-webgpu/src --exclude="$TF/*/dist/*.min.js" --exclude="$TF/*/dist/*.es2017.js" \
  --exclude="$TF/*/dist/*.fesm.js" --exclude="$TF/*/dist/*.esm.js" --exclude="$TF/*/dist/*_test.js" --exclude="$TF/*/dist/*.d.ts" \
  --exclude="$TF/tfjs-core/dist/tf-core.js" --exclude="$TF/tfjs-backend-webgpu/dist/tf-backend-webgpu.js" \
  --exclude="$TF/tfjs-backend-webgpu/dist/*_webgpu.js" --exclude="$TF/tfjs-backend-webgpu/dist/kernels" \
  node_modules
xz -T2 -3 -c "$TMP/tree.tar" > "$DEST/tree.tar.xz" && rm "$TMP/tree.tar"
cp apps/bench/gpu/run-full.sh "$DEST/run-full.sh"
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- packages apps || echo '+dirty')" > "$DEST/COMMIT"
du -sh "$DEST"/* "$DEST"
