#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (Rust via rustup) and runs every test: the README's test command.
# Idempotent: installed tools and the build cache ($TRAVERSE_CACHE) are reused between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${TRAVERSE_CACHE:-$HOME/.cache/traverse}"
mkdir -p "$CACHE"
export CARGO_TERM_COLOR=never

# The toolchain pinned in rust-toolchain.toml with its wasm32 target, trunk, wasm-bindgen, wasm-opt,
# and chromium (each a no-op once installed).
command -v rustup >/dev/null || { echo "rustup is required (https://rustup.rs)"; exit 1; }

source scripts/setup-web.sh chromium

echo "== formatting and lints"
cargo fmt --check
CARGO_TARGET_DIR="$CACHE/target" cargo clippy --locked --all-targets -- -D warnings 2>&1

echo "== native tests (library, parity with diffusers, error handling, CLI)"
CARGO_TARGET_DIR="$CACHE/target" cargo test --locked 2>&1

echo "== the browser build lints clean (wasm32, WebGPU backend, the page)"
CARGO_TARGET_DIR="$CACHE/target-wasm" cargo clippy --locked --lib --target wasm32-unknown-unknown \
  --no-default-features --features web -- -D warnings 2>&1

echo "== the page, end to end in headless Chromium (software WebGPU)"
bash scripts/test-web.sh 2>&1
