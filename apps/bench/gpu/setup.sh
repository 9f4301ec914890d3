#!/usr/bin/env bash
# Sourced on the device machine: unpacks the Vulkan loader (.gl), Node and the runtime (.dev) into /tmp/rt.
REPO=$(pwd)
for f in "$REPO"/.gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
mkdir -p /tmp/rt && cd /tmp/rt
xz -dc "$REPO/.dev/node.xz" > node && chmod +x node
tar -xJf "$REPO/.dev/rt.tar.xz" --strip-components=1
export PATH=/tmp/rt:$PATH
export WEBATTN_WEBGPU_BACKEND=vulkan
cd "$REPO"
