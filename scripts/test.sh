#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (Rust via rustup) and runs every test: the README's test command.
# Idempotent: installed tools and the build cache ($TRAVERSE_CACHE) are reused between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${TRAVERSE_CACHE:-$HOME/.cache/traverse}"
mkdir -p "$CACHE"
export CARGO_TERM_COLOR=never

# The toolchain, components and wasm32 target pinned in rust-toolchain.toml (a no-op once installed).
command -v rustup >/dev/null || { echo "rustup is required (https://rustup.rs)"; exit 1; }
TOOLCHAIN=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
rustup toolchain install "$TOOLCHAIN" --profile minimal -c clippy -c rustfmt -t wasm32-unknown-unknown

echo "== formatting and lints"
cargo fmt --check
CARGO_TARGET_DIR="$CACHE/target" cargo clippy --locked --all-targets -- -D warnings 2>&1

echo "== native tests (library, parity with diffusers, error handling, CLI)"
CARGO_TARGET_DIR="$CACHE/target" cargo test --locked 2>&1

echo "== the library builds for the browser (wasm32, WebGPU backend)"
CARGO_TARGET_DIR="$CACHE/target-wasm" cargo check --locked --lib --target wasm32-unknown-unknown --no-default-features 2>&1
echo "wasm32 check passed"
