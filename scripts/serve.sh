#!/usr/bin/env bash
# The README's main command: sets up a fresh machine, builds the page with the embedded model
# (public/model, trained on synthetic phantoms; see its MODEL_CARD.md) and serves it at
# http://127.0.0.1:8080 (WebGPU needs a recent Chrome/Edge/Safari, or Firefox with WebGPU on).
# Pass another port as the first argument.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-web.sh
export CARGO_TARGET_DIR="${TRAVERSE_CACHE:-$HOME/.cache/traverse}/target-wasm"
exec trunk serve --release --port "${1:-8080}"
