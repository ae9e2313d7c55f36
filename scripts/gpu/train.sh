#!/usr/bin/env bash
# One piece of a U-Net training run (#32) on a lent GPU machine, from the kit `scripts/gpu/pack.sh train` made
# here (carry gpu-kit-train): `traverse train-mini --device wgpu` with the flags of $TRAINING/recipe.sh
# (scripts/run_step.sh), seeded from the shipped model and resumed from the kit's last run, stopped at a save
# after TIME_LIMIT seconds (default 480, so that one device call of 10 minutes holds it, with unpacking and
# packing). The run comes back in $OUT as run.tar.* pieces of 15 MiB (the f32 U-Net, its state, loss log and plot, the VAE config with the
# latent scaling factor, training.json) with the log; scripts/gpu/fetch_train.sh takes them in here.
set -euo pipefail
cd "$(dirname "$0")/../.."
KIT=gpu-kit-train
source scripts/gpu/device.sh
OUT="${OUT:-/tmp/gpu-train-out}"
WORK=/tmp/gpu-train
RUN="$WORK/run"
source scripts/run_step.sh
RECIPE="${RECIPE:-$TRAINING/recipe.sh}"
mkdir -p "$OUT" "$RUN"
unpack traverse "$WORK"
source "$RECIPE"
if [ -d "$KIT/resume" ]; then
  cp -r "$KIT/resume/." "$RUN/"
  for f in "$RUN"/unet/*.xz; do py_unxz "$f"; done
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
start=$(date +%s)
set +e
"$WORK/traverse" --device wgpu train-mini --out "$RUN" --resume-from public/model "${FLAGS[@]}" \
  --time-limit "${TIME_LIMIT:-480}" 2>&1 | grep --line-buffered -v XDG_RUNTIME_DIR | tee "$OUT/train.log"
status=${PIPESTATUS[0]}
set -e
echo "train-mini exited $status after $(($(date +%s) - start)) s" | tee -a "$OUT/train.log"
# The optimizer state (three times the weights) stays here: the next piece restarts AdamW from the weights.
tar -C "$RUN" --exclude='unet/optimizer-*' -cf - unet vae/config.json training.json | split -b 15M -d - "$OUT/run.tar."
ls -la "$OUT"
exit "$status"
