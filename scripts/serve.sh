#!/usr/bin/env bash
# The README's main command: sets up a fresh machine, builds the page with the embedded model
# (public/model, trained on synthetic phantoms; see its MODEL_CARD.md), and only once it is built serves it
# at http://127.0.0.1:8080 (WebGPU needs a recent Chrome/Edge/Safari, or Firefox with WebGPU on). A failed
# build exits non-zero with its error. Pass another port as the first argument.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-8080}"
source scripts/build-web.sh
exec python3 scripts/serve_dist.py dist "$PORT"
