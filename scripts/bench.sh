#!/usr/bin/env bash
# This engine against PyTorch/diffusers on identical weights and inputs, in one run, on this machine's CPU
# (scripts/bench_reference.py times the reference, examples/bench.rs ours). Prints four markdown tables, peak
# memory beside each time:
#   1. one guided U-Net call (batch 2): a small config and the full SD 1.5 U-Net (latent 4x64x64);
#   2. the paper's trajectory on the small U-Net: our shared-prefix sampler vs diffusers running the 10 images
#      one by one (50 DDIM steps, guidance 7.5; 500 guided evaluations there, 275 here);
#   3. the small U-Net's training step (batch 8, AdamW);
#   4. the autoencoder's training step (the embedded model's stage: batch 8 of 64x64 crops).
# Usage: bash scripts/bench.sh [CONFIG ...]   (U-Net configs for table 1; default: small sd15)
# Needs: Python 3 with venv and pip, and PyPI (the reference venv is made here from
# scripts/requirements-parity.txt: torch, diffusers, ~6 GB), ~8 GB of disk; the toolchain is installed here.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
CACHE="${TRAVERSE_CACHE:-$HOME/.cache/traverse}"
VENV="${TRAVERSE_VENV:-$CACHE/venv-parity}"
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q -r scripts/requirements-parity.txt; }
WORK="$CACHE/bench"
CONFIGS="${*:-small sd15}"
reference() { "$VENV/bin/python" scripts/bench_reference.py "$@" >/dev/null; }
for c in $CONFIGS; do reference call --config "$c" --out "$WORK/$c"; done
# Tables 2 and 3 run on the small U-Net that `call` saves.
[[ " $CONFIGS " == *" small "* ]] || reference call --config small --out "$WORK/small"
reference trajectory --config small --out "$WORK/small"
# The training steps run at the embedded model's size; SD 1.5's would not train on this CPU.
reference train --config small --out "$WORK/small"
reference train-autoencoder --out "$WORK/autoencoder"
export CARGO_TARGET_DIR="$CACHE/target"
cargo build --locked --release --example bench
ours() { "$CARGO_TARGET_DIR/release/examples/bench" "$@"; echo; }
ours call $(for c in $CONFIGS; do echo "$WORK/$c"; done)
ours trajectory "$WORK/small"
ours train "$WORK/small"
ours train-autoencoder "$WORK/autoencoder"
