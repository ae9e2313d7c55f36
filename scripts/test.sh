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

# Each source version leaves its own test binaries (about 1 GB each with debug info) and incremental state in the
# reused target dir, and on a long-lived machine they fill the disk (a run failed so here once). Below 30 GB free
# they go; the compiled dependencies stay, so this costs only compiling this crate's tests again.
free_kb=$(df -Pk "$CACHE" | awk 'NR == 2 {print $4}')
if ((free_kb < 30 << 20)); then
  echo "== $((free_kb >> 20)) GB free: pruning old test binaries and incremental state from $CACHE/target/debug"
  rm -rf "$CACHE/target/debug/incremental" "$CACHE/target/debug/examples"
  find "$CACHE/target/debug/deps" -maxdepth 1 -type f -executable ! -name '*.so' -delete 2>/dev/null || true
fi

# Every native step uses the default features (the CLI with both backends), so a fresh machine compiles burn
# once for the lints and once for the tests, not once per feature set.
echo "== formatting, lints and doc links"
cargo fmt --check
CARGO_TARGET_DIR="$CACHE/target" cargo clippy --locked --all-targets -- -D warnings 2>&1
# The API docs' links resolve (public docs naming private items, ambiguous names).
RUSTDOCFLAGS="-D warnings" CARGO_TARGET_DIR="$CACHE/target" cargo doc --locked --no-deps 2>&1

echo "== native tests (library, parity with diffusers, error handling, CLI; tests/wgpu.rs: the GPU backend gives"
echo "   the CPU's numbers, on Vulkan, which is lavapipe without a GPU)"
CARGO_TARGET_DIR="$CACHE/target" cargo test --locked 2>&1

echo "== the page: set-up and build from an empty registry, wasm32 lints, end to end in headless Chromium"
bash scripts/test-web.sh 2>&1
