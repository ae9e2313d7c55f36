#!/usr/bin/env bash
# Takes in what scripts/gpu/train.sh returned from a GPU machine (the device tool's files_at folder here):
# the run goes to $TRAVERSE_CACHE/gpu-train/run, which `scripts/gpu/pack.sh train` resumes from next, and its
# loss log and plot, training state (every piece's settings), recipe and the device's log to
# $TRAINING/ (scripts/run_step.sh).
#
#   bash scripts/gpu/fetch_train.sh FILES_AT
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 FILES_AT" >&2; exit 2; }
FILES_AT="$(cd "$1" && pwd)"
cd "$(dirname "$0")/../.."
CACHE="${TRAVERSE_CACHE:-$HOME/.cache/traverse}"
RUN="$CACHE/gpu-train/run"
source scripts/run_step.sh
new="$(mktemp -d)"
trap 'rm -rf "$new"' EXIT
cat "$FILES_AT"/run.tar.* | tar -x -C "$new"
got="$(run_step "$new/unet/train_state.json")"
mkdir -p "$RUN/vae" "$TRAINING/logs"
cp "$FILES_AT/train.log" "$TRAINING/logs/$(date -u +%Y-%m-%dT%H%M)-step-$got.log"
# A run that trained no step returns the int8 weights it was sent: the f32 ones here stay.
if [ -f "$RUN/unet/train_state.json" ] && (( got <= $(run_step "$RUN/unet/train_state.json") )); then
  echo "the returned run is at U-Net step $got, not past $RUN's $(run_step "$RUN/unet/train_state.json"): kept the latter" >&2
  exit 1
fi
rm -rf "$RUN/unet"
mv "$new/unet" "$RUN/unet"
mv "$new/vae/config.json" "$RUN/vae/config.json"
mv "$new/training.json" "$RUN/training.json"
keep_piece "$RUN"
echo "U-Net at step $got in $RUN; logs in $TRAINING"
