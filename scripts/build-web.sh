#!/usr/bin/env bash
# Sets up the machine (scripts/setup-web.sh) and builds the page with the embedded model into dist/
# (`trunk build --release`, offline). Exits non-zero with the build's own error when it fails. Sourced by
# serve.sh and test-web.sh; arguments are Debian packages for setup-web.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup-web.sh "$@"
echo "== building the page (trunk build --release; the first build compiles burn for wasm32, about 10-20 min)"
CARGO_HOME="$WEB_CARGO_HOME" CARGO_TARGET_DIR="${TRAVERSE_CACHE:-$HOME/.cache/traverse}/target-wasm" \
  trunk build --release
ls -l dist/*.wasm
