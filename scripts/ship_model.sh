#!/usr/bin/env bash
# Ships a trained mini model (from `traverse train-mini --out DIR`): int8 copy in public/model with its
# quantization report, the training recipe, each stage's runs and loss curves, the CFRT evaluation and autoencoder ceiling of both phantom families,
# and the README's trajectory, reconstruction and t-SNE images. Every figure in public/model/MODEL_CARD.md comes
# from the files this writes.
#
#   bash scripts/ship_model.sh ~/.cache/traverse/train-mini [subjects]
#
# TRAVERSE_BIN=PATH uses that traverse binary instead of building the release one (e.g. the optimized dev
# build a training run already used: `CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo build --bin traverse`).
# Needs: a `train-mini` output folder; the toolchain is installed here.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAINED="${1:?usage: ship_model.sh TRAINED_DIR [subjects]}"
# 30 subjects per family give CFRT within about ±0.1 (95% bootstrap interval); 6 were too few for dermoscopy.
SUBJECTS="${2:-30}"
# Checked before anything in public/model is replaced.
[ -f "$TRAINED/model_index.json" ] || { echo "$TRAINED is not a trained model folder (no model_index.json)" >&2; exit 1; }
CACHE="${TRAVERSE_CACHE:-$HOME/.cache/traverse}"
BIN="${TRAVERSE_BIN:-}"
if [ -z "$BIN" ]; then
  source scripts/setup.sh
  CARGO_TARGET_DIR="$CACHE/target" cargo build --locked --release --bin traverse
  BIN="$CACHE/target/release/traverse"
fi
[ -x "$BIN" ] || { echo "TRAVERSE_BIN=$BIN is not an executable" >&2; exit 1; }
OUT=public/model

# Everything but the hand-written model card is regenerated.
mkdir -p "$OUT"
find "$OUT" -mindepth 1 -maxdepth 1 ! -name MODEL_CARD.md -exec rm -rf {} +
"$BIN" quantize --model "$TRAINED" --out "$OUT" --check-seeds 4 --check-steps 50 --classifiers public/classifiers
# The page's latent→RGB preview while it denoises, fitted to this model's VAE.
"$BIN" fit-preview --model "$OUT" --seeds 4
mkdir -p "$OUT/training"
# The contrastive text/image pair is for resuming training (`train-mini --resume-from public/model`) only.
mv "$OUT/text_encoder/contrastive.safetensors" "$OUT/training/"
# How it was trained: the recipe, and each stage's runs with their settings (`train-mini --resume-from` reads
# the states back).
[ -f "$TRAINED/training.json" ] && cp "$TRAINED/training.json" "$OUT/training/recipe.json"
# The last run's flags with the reasons for them, where the run kept them (the run's training/vN/recipe.sh).
[ -f "$TRAINED/recipe.sh" ] && cp "$TRAINED/recipe.sh" "$OUT/training/recipe.sh"
for stage in text_encoder vae unet; do
  cp "$TRAINED/$stage/loss.csv" "$OUT/training/$stage-loss.csv"
  cp "$TRAINED/$stage/loss.svg" "$OUT/training/$stage-loss.svg"
  cp "$TRAINED/$stage/train_state.json" "$OUT/training/$stage-state.json"
done

for kind in chest derm; do
  "$BIN" evaluate --model "$OUT" --kind "$kind" --subjects "$SUBJECTS" --out "$OUT/evaluation-$kind.json" \
    --ceiling-sheet "docs/autoencoder-$kind.png" --tsne-svg "docs/tsne-$kind.svg" | tee "$OUT/evaluation-$kind.md"
done

# README images: one trajectory per family (rows: styles; columns: neutral, then swap points 5…45).
"$BIN" generate --model "$OUT" --seed 7 --out "$CACHE/ship/chest" \
  --neutral "Chest x-ray with no significant findings" \
  --style "Chest X-ray of a subject with pleural effusion" --style "Chest x-ray showing Support Devices"
"$BIN" generate --model "$OUT" --seed 7 --out "$CACHE/ship/derm" \
  --neutral "a dermoscopic image with melanocytic nevus (NV)" \
  --style "a dermoscopic image with melanocytic nevus (NV) showing hair" \
  --style "a dermoscopic image with melanocytic nevus (NV) showing gel bubbles" \
  --style "a dermoscopic image with melanocytic nevus (NV) showing ink" \
  --style "a dermoscopic image with melanocytic nevus (NV) showing ruler"
"$BIN" interpolate --model "$OUT" --latents "$CACHE/ship/chest/latents.safetensors" --samples 20 \
  --out "$CACHE/ship/chest-bezier"
cp "$CACHE/ship/chest/sheet.png" docs/trajectory-chest.png
cp "$CACHE/ship/derm/sheet.png" docs/trajectory-derm.png
cp "$CACHE/ship/chest-bezier/sheet.png" docs/bezier-chest.png
echo "shipped $OUT; see $OUT/quantization.json, $OUT/evaluation-*.md and docs/*.png"
