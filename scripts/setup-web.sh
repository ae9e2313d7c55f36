#!/usr/bin/env bash
# Installs what building and testing the page needs, each only when missing or at the wrong version: the
# pinned toolchain with the wasm32 target, trunk, the wasm-bindgen CLI matching Cargo.lock, binaryen's
# wasm-opt from npm (web/package.json; put first on PATH) and any Debian packages named as arguments
# (test.sh: chromium). Sourced by serve.sh and test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TRUNK_VERSION=0.21.14   # the newest trunk that builds with the pinned Rust 1.95
WASM_BINDGEN_VERSION=$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"/\1/p}' Cargo.lock)
TOOLCHAIN=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
rustup toolchain install "$TOOLCHAIN" --profile minimal -c clippy -c rustfmt -t wasm32-unknown-unknown

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}
if [ $# -gt 0 ]; then apt_install "$@"; fi

(cd web && npm ci --no-audit --no-fund --silent)
export PATH="$PWD/web/tools:$PATH"

# Built into the shared cache, so a clean clone does not rebuild them.
export CARGO_TARGET_DIR="${TRAVERSE_CACHE:-$HOME/.cache/traverse}/target-tools"
if ! trunk --version 2>/dev/null | grep -qx "trunk $TRUNK_VERSION"; then
  cargo install trunk --version "$TRUNK_VERSION" --locked
fi
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $WASM_BINDGEN_VERSION"; then
  # Not --locked: its lockfile pins a crate version the registry mirror lacks.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi
unset CARGO_TARGET_DIR
