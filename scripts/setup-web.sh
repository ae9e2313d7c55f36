#!/usr/bin/env bash
# Installs what building and testing the page needs, each only when missing or at the wrong version: the
# pinned toolchain with the wasm32 target, trunk, the wasm-bindgen CLI matching Cargo.lock, binaryen's
# wasm-opt from npm (web/package.json; put first on PATH) and any Debian packages named as arguments
# (test.sh: chromium). Then downloads every crate the builds need into the page's cargo home (trunk runs
# cargo with --offline, see Trunk.toml). Sourced by build-web.sh and test.sh.
#
# The page is built with its own CARGO_HOME, $WEB_CARGO_HOME (in the build cache): the test command empties
# its registry to prove that this set-up works from nothing, and a fixed path keeps cargo's fingerprints (which
# hash each crate's source path) valid across runs, so the page is not recompiled after the download.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TRUNK_VERSION=0.21.14   # the newest trunk that builds with the pinned Rust 1.95
WASM_BINDGEN_VERSION=$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"/\1/p}' Cargo.lock)
source scripts/setup.sh
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

# Every crate of Cargo.lock, for every target (cargo fetch without --target), so the offline page build
# finds them; a no-op once they are there.
export WEB_CARGO_HOME="${TRAVERSE_CACHE:-$HOME/.cache/traverse}/cargo-web"
CARGO_HOME="$WEB_CARGO_HOME" cargo fetch --locked
