#!/usr/bin/env bash
# U-Net step time of this engine vs diffusers on identical weights and inputs, in one run, on this machine's
# CPU: a small config and the full SD 1.5 U-Net (latent 4x64x64, batch 2), then the small U-Net's training
# step vs PyTorch's (batch 8, AdamW). Prints markdown tables, peak memory beside each time.
# Needs: Python 3 with venv and pip, and PyPI (the reference venv is made here from
# scripts/requirements-parity.txt: torch, diffusers, ~6 GB), ~8 GB of disk; the toolchain is installed here.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
CACHE="${TRAVERSE_CACHE:-$HOME/.cache/traverse}"
VENV="${TRAVERSE_VENV:-$CACHE/venv-parity}"
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q -r scripts/requirements-parity.txt; }
WORK="$CACHE/bench"
mkdir -p "$WORK"
CONFIGS="${*:-small sd15}"
for c in $CONFIGS; do "$VENV/bin/python" scripts/bench_unet.py --config "$c" --out "$WORK/$c" >/dev/null; done
# The training step of the small U-Net (the embedded model's size; SD 1.5's would not train on this CPU).
"$VENV/bin/python" scripts/bench_unet.py --config small --out "$WORK/small" --train >/dev/null
export CARGO_TARGET_DIR="$CACHE/target"
cargo run --locked --release --example bench_unet -- $(for c in $CONFIGS; do echo "$WORK/$c"; done)
echo
cargo run --locked --release --example bench_unet -- --train "$WORK/small"
