#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (Rust via rustup) and runs every test: the README's test command.
# Idempotent: installed tools and the build cache ($TRAVERSE_CACHE) are reused between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${TRAVERSE_CACHE:-$HOME/.cache/traverse}"
mkdir -p "$CACHE"
export CARGO_TERM_COLOR=never

# The pinned toolchain, libclang for the native GPU build's bindgen and Mesa's Vulkan (lavapipe) to run it on
# the CPU; the page's tools (trunk, wasm-bindgen, wasm-opt, chromium) come in test-web.sh.
source scripts/setup.sh
apt_install libclang-dev mesa-vulkan-drivers

# Every native step uses the default features (the CLI with both backends), so a fresh machine compiles burn
# once for the lints and once for the tests, not once per feature set.
echo "== formatting and lints"
cargo fmt --check
CARGO_TARGET_DIR="$CACHE/target" cargo clippy --locked --all-targets -- -D warnings 2>&1

echo "== native tests (library, parity with diffusers, error handling, CLI; tests/wgpu.rs: the GPU backend gives"
echo "   the CPU's numbers, on Vulkan, which is lavapipe without a GPU)"
CARGO_TARGET_DIR="$CACHE/target" cargo test --locked 2>&1

echo "== the page: set-up and build from an empty registry, wasm32 lints, end to end in headless Chromium"
bash scripts/test-web.sh 2>&1
