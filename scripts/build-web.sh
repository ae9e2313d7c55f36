#!/usr/bin/env bash
# Sets up the machine (scripts/setup-web.sh) and builds the page with the embedded model into dist/
# (`trunk build --release`, offline). Exits non-zero with the build's own error when it fails. Sourced by
# serve.sh and test-web.sh; arguments are Debian packages for setup-web.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup-web.sh "$@"
echo "== building the page (trunk build --release; the first build compiles burn for wasm32, about 10-20 min)"
# LINT_PAGE=1 (test-web.sh) also runs clippy on this crate in the same build, warnings denied.
CARGO_HOME="$WEB_CARGO_HOME" CARGO_TARGET_DIR="${TRAVERSE_CACHE:-$HOME/.cache/traverse}/target-wasm" \
  RUSTC_WORKSPACE_WRAPPER="${LINT_PAGE:+$PWD/scripts/clippy-deny.sh}" trunk build --release
ls -l dist/*.wasm
