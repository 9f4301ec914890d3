#!/usr/bin/env bash
# Packs a whole built checkout for one device call into DEST (default /work/main/.dev-gemm, git-ignored
# there): Node (xz), the tracked + untracked sources with their dist builds and a node_modules trimmed to
# what vitest, the bench and Dawn (linux-x64) need, and TF.js 4.22 from TFJS_DIR (optional) for the peer.
# Run from the repository root after `npm run build`. The device side is apps/bench/gpu/run-full.sh.
set -euo pipefail
DEST=${1:-/work/main/.dev-gemm}
rm -rf "$DEST" && mkdir -p "$DEST"
xz -T2 -6 -c "$(readlink -f "$(command -v node)")" > "$DEST/node.xz"
# fixtures travel with the repository itself (run-full.sh copies them in); the generated wasm module does not
{ git ls-files; git ls-files --others --exclude-standard; echo packages/kernels-wasm/src/wasm-bytes.ts; find packages apps -path '*/node_modules' -prune -o -type d -name dist -print; } |
  grep -v '^fixtures/' > /tmp/pack-files.txt
tar -cf /tmp/pack-tree.tar -T /tmp/pack-files.txt \
  --exclude='*.map' --exclude='node_modules/webgpu/dist/win32-*' --exclude='node_modules/webgpu/dist/darwin-*' \
  --exclude='node_modules/webgpu/dist/linux-arm64' --exclude=node_modules/@turbo --exclude=node_modules/turbo* \
  --exclude=node_modules/typescript --exclude=node_modules/playwright-core --exclude=node_modules/prettier \
  --exclude=node_modules/@shikijs --exclude=node_modules/typedoc --exclude=node_modules/@changesets \
  --exclude=node_modules/onnxruntime-web --exclude=node_modules/binaryen --exclude=node_modules/assemblyscript \
  --exclude=node_modules/vitepress --exclude=node_modules/@algolia --exclude=node_modules/shiki --exclude=node_modules/@vue \
  --exclude=node_modules/@iconify-json --exclude=node_modules/eslint --exclude=node_modules/@typescript-eslint \
  --exclude='node_modules/@tensorflow/*/dist/*.min.js' --exclude='node_modules/@tensorflow/*/dist/*.es2017.js' \
  --exclude='node_modules/@tensorflow/*/dist/*.esm.js' \
  node_modules
xz -T2 -6 -c /tmp/pack-tree.tar > "$DEST/tree.tar.xz" && rm /tmp/pack-tree.tar
if [ -n "${TFJS_DIR:-}" ]; then
  (cd "$TFJS_DIR" && tar -cJf "$DEST/tfjs.tar.xz" --exclude='*.map' --exclude='*.min.js' --exclude='*.es2017.js' --exclude='*.esm.js' \
     --exclude='*/dist/*.d.ts' --exclude='*/src' node_modules)
fi
du -sh "$DEST"/*
