#!/usr/bin/env bash
# The CLI's counterpart of the page: sets up the toolchain, builds the CLI and runs prompt-swap trajectories and
# a Bézier traversal with the embedded model (public/model, trained on synthetic phantoms; see its
# MODEL_CARD.md). Pass --model DIR to use a real diffusers SD-1.x folder instead.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${TRAVERSE_CACHE:-$HOME/.cache/traverse}"
export CARGO_TARGET_DIR="$CACHE/target"
source scripts/setup.sh
cargo build --locked --release --bin traverse
BIN="$CARGO_TARGET_DIR/release/traverse"
MODEL=public/model
if [ "${1:-}" = "--model" ]; then MODEL="$2"; fi
"$BIN" generate --model "$MODEL" --seed 42 --out out/generate \
  --neutral "Chest x-ray with no significant findings" \
  --style "Chest X-ray of a subject with pleural effusion" --style "Chest x-ray showing Support Devices"
"$BIN" generate --model "$MODEL" --seed 42 --out out/generate-derm \
  --neutral "a dermoscopic image with melanocytic nevus (NV)" \
  --style "a dermoscopic image with melanocytic nevus (NV) showing hair" \
  --style "a dermoscopic image with melanocytic nevus (NV) showing ruler"
"$BIN" interpolate --model "$MODEL" --latents out/generate/latents.safetensors --out out/interpolate
echo "see out/generate/sheet.png, out/generate-derm/sheet.png, out/generate/manifest.json and out/interpolate/sheet.png"
