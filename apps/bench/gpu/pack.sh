#!/usr/bin/env bash
# Packs what one device call needs into .dev/ (git-ignored, carried by the device tool):
# this machine's Node binary (xz), and a runtime tree with the built webattn packages, the bench,
# acorn and the webgpu package's linux-x64 dawn.node. Run from the repository root after `npm run build`.
set -euo pipefail
rm -rf .dev && mkdir -p .dev/rt/node_modules/@webattn .dev/rt/apps/bench
xz -T2 -6 -c "$(command -v node)" > .dev/node.xz
for p in core-tensor kernels-webgpu flex varlen; do
  mkdir -p .dev/rt/node_modules/@webattn/$p
  cp -r packages/$p/package.json packages/$p/dist .dev/rt/node_modules/@webattn/$p/
done
cp -r node_modules/acorn .dev/rt/node_modules/
mkdir -p .dev/rt/node_modules/webgpu/dist/linux-x64
cp node_modules/webgpu/package.json node_modules/webgpu/index.js .dev/rt/node_modules/webgpu/
cp node_modules/webgpu/dist/linux-x64/dawn.node .dev/rt/node_modules/webgpu/dist/linux-x64/
cp -r apps/bench/package.json apps/bench/dist .dev/rt/apps/bench/
find .dev/rt -name '*.map' -delete
tar -C .dev -cJf .dev/rt.tar.xz rt && rm -rf .dev/rt
du -sh .dev/*
