#!/usr/bin/env bash
# One piece of the U-Net run in progress (#32; $TRAINING of scripts/run_step.sh) on this machine's CPU, for when
# no GPU is lent: `traverse train-mini` with the flags of $TRAINING/recipe.sh, seeded from the shipped model and
# resumed from $TRAVERSE_CACHE/gpu-train/run (the run that scripts/gpu/train.sh's pieces resume too), stopped and
# saved at the first step after SECONDS. Then the loss log and plot, the training state (every piece's settings)
# and the recipe go to $TRAINING/, and the piece's log to $TRAINING/logs/: commit them. Kill it at any time; the
# next piece resumes from the last save (every 200 steps, about 6-7 minutes on this project's 2-core CPUs),
# AdamW's state included.
#
#   nohup bash scripts/train_cpu.sh SECONDS > train.log 2>&1 &
set -euo pipefail
# One block, run only once bash has read all of it: these scripts run for hours, and bash reads a script as it
# goes, so an edit to the file meanwhile (a commit, a checkout) would otherwise be read from a shifted offset.
{
[ $# -eq 1 ] || { echo "usage: $0 SECONDS" >&2; exit 2; }
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/run_step.sh
CACHE="${TRAVERSE_CACHE:-$HOME/.cache/traverse}"
RUN="$CACHE/gpu-train/run"
export CARGO_TARGET_DIR="$CACHE/target"
cargo build --locked --release --bin traverse
# The run's own copy of the binary: a build of other code into the shared target dir meanwhile (tests, CI)
# leaves the running piece alone.
BIN="$CACHE/gpu-train/traverse"
mkdir -p "$CACHE/gpu-train" "$TRAINING/logs"
cp "$CARGO_TARGET_DIR/release/traverse" "$BIN"
source "$TRAINING/recipe.sh"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cpu="$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
echo "CPU piece on $cpu ($(nproc) cores), src $(git rev-parse HEAD:src)" | tee "$log"
start=$(date +%s)
set +e
"$BIN" train-mini --out "$RUN" --resume-from public/model "${FLAGS[@]}" --time-limit "$1" 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
set -e
echo "train-mini exited $status after $(($(date +%s) - start)) s" | tee -a "$log"
if [ -f "$RUN/unet/train_state.json" ]; then
  step="$(run_step "$RUN/unet/train_state.json")"
  cp "$log" "$TRAINING/logs/$(date -u +%Y-%m-%dT%H%M)-cpu-step-$step.log"
  keep_piece "$RUN"
fi
exit "$status"
}
