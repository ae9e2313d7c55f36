#!/usr/bin/env bash
# Packs gpu-kit/ for scripts/gpu/bench.sh, which runs on a lent GPU machine (x86-64, no network; its python3 has
# torch but not diffusers): the benchmark binary (`examples/bench`, release, stripped, xz), diffusers' wheel and
# the Vulkan loader's Debian packages. Then, with the device tool: run `bash scripts/gpu/bench.sh` with
# carry ["gpu-kit"] (the working tree and the kit travel together: at most 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh
CACHE="${TRAVERSE_CACHE:-$HOME/.cache/traverse}"
KIT=gpu-kit
rm -rf "$KIT" && mkdir -p "$KIT/whl" "$KIT/gl"
export CARGO_TARGET_DIR="$CACHE/target"
cargo build --locked --release --example bench
strip -o "$KIT/bench" "$CARGO_TARGET_DIR/release/examples/bench"
xz -9 -T0 "$KIT/bench"
# diffusers is pure Python; the GPU machine's torch, transformers and safetensors serve it.
VENV="$CACHE/venv-pip"
[ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" download -q --no-deps --only-binary=:all: -d "$KIT/whl" "diffusers==$(sed -n 's/^diffusers==//p' scripts/requirements-parity.txt)"
(cd "$KIT/gl" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
du -sh "$KIT" "$KIT"/*
