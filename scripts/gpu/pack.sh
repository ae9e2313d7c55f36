#!/usr/bin/env bash
# Packs a kit for a lent GPU machine (x86-64, no network; python3 with torch, not diffusers; no Vulkan
# loader): gpu-kit-bench/ or gpu-kit-train/, both ignored by git, so both can wait here and one lease can run
# one after the other. The device tool sends the working tree and the carried kit together, at most 64 MiB.
#
#   bash scripts/gpu/pack.sh bench   # then, carrying gpu-kit-bench, run `bash scripts/gpu/bench.sh` there (#31)
#   bash scripts/gpu/pack.sh train   # then, carrying gpu-kit-train, run `bash scripts/gpu/train.sh` there (#32)
#
# Both kits hold the Vulkan loader's Debian packages (gl/). bench: the benchmark binary (`examples/bench`,
# release, stripped, xz) and diffusers' wheel. train: the `traverse` binary the same way, and the U-Net run
# to resume from ($TRAVERSE_CACHE/gpu-train/run, which scripts/gpu/fetch_train.sh fills from the last GPU
# run), its weights as int8 (xz): f32 weights (36 MB), or bf16 (12 MB in xz), and the binary do not fit
# beside the tree. Each piece thus resumes from weights rounded as the shipped model's are (as v6 and v7
# resumed from public/model); the f32 weights come back and stay here.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE="${1:-bench}"
case "$MODE" in bench | train) ;; *) echo "usage: $0 bench|train" >&2; exit 2 ;; esac
source scripts/setup.sh
CACHE="${TRAVERSE_CACHE:-$HOME/.cache/traverse}"
KIT="gpu-kit-$MODE"
LIMIT=$((64 << 20))
rm -rf "$KIT" && mkdir -p "$KIT/gl"
export CARGO_TARGET_DIR="$CACHE/target"
# x86 branch filter: about 3 % smaller than plain xz for these binaries. Python's lzma unpacks it there.
pack_binary() { strip -o "$KIT/$2" "$1" && xz -T0 --x86 --lzma2=preset=9e "$KIT/$2"; }
if [ "$MODE" = bench ]; then
  cargo build --locked --release --example bench
  pack_binary "$CARGO_TARGET_DIR/release/examples/bench" bench
  # diffusers is pure Python; the GPU machine's torch, transformers and safetensors serve it.
  mkdir -p "$KIT/whl"
  VENV="$CACHE/venv-pip"
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" download -q --no-deps --only-binary=:all: -d "$KIT/whl" \
    "diffusers==$(sed -n 's/^diffusers==//p' scripts/requirements-parity.txt)"
else
  cargo build --locked --release --bin traverse
  pack_binary "$CARGO_TARGET_DIR/release/traverse" traverse
  RUN="$CACHE/gpu-train/run"
  if [ -f "$RUN/unet/train_state.json" ]; then
    mkdir -p "$KIT/resume/unet" "$KIT/resume/vae"
    "$CARGO_TARGET_DIR/release/traverse" quantize --model "$RUN/unet/diffusion_pytorch_model.safetensors" \
      --out "$KIT/resume/unet/diffusion_pytorch_model.safetensors"
    cp "$RUN"/unet/{config.json,train_state.json,loss.csv} "$KIT/resume/unet/"
    xz -T0 -9 "$KIT/resume/unet/diffusion_pytorch_model.safetensors" "$KIT/resume/unet/loss.csv"
    # The latent scaling factor the U-Net learnt with.
    cp "$RUN/vae/config.json" "$KIT/resume/vae/"
    cp "$RUN/training.json" "$KIT/resume/"
    source scripts/run_step.sh
    echo "resuming from U-Net step $(run_step "$RUN/unet/train_state.json")"
  else
    echo "no run in $RUN: the GPU run starts from the shipped model (public/model)"
  fi
fi
(cd "$KIT/gl" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
# What travels: tracked files and untracked ones git does not ignore, and the kit.
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
kit=$(find "$KIT" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
du -sh "$KIT"/*
echo "tree $((tree >> 10)) KiB + kit $((kit >> 10)) KiB = $(((tree + kit) >> 10)) KiB of $((LIMIT >> 10)) KiB"
if ((tree + kit > LIMIT)); then
  echo "too large for the device tool's 64 MiB: shrink the kit or the tree (the device needs no" >&2
  echo "evaluation/table2 shards: move that folder out of the checkout for the run, and back after)" >&2
  exit 1
fi
