#!/usr/bin/env bash
# The GPU benchmark (#31) in one run on a lent GPU machine, from the kit `scripts/gpu/pack.sh bench` made here
# (carry gpu-kit-bench): diffusers on CUDA and this engine through burn-wgpu (the page's WGSL kernels, on
# Vulkan) on identical random weights and inputs, for the small U-Net and SD 1.5's (batch 2, latents 16×16 and
# 64×64), in f32 and f16, then the small U-Net's training step at batch 64 and the per-operation table of both
# sides (ours with burn's direct convolution and burn's attention op beside the model's kernels). Prints
# markdown tables and writes them to $OUT/gpu-bench.md. About 5 minutes on an H100/H200.
set -uo pipefail
cd "$(dirname "$0")/../.."
KIT=gpu-kit-bench
source scripts/gpu/device.sh
OUT="${OUT:-/tmp/gpu-bench-out}"
WORK=/tmp/gpu-bench
mkdir -p "$OUT" "$WORK"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$KIT"/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
unpack bench "$WORK"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
ref() { python3 scripts/bench_reference.py "$@" >/dev/null || echo "reference failed: $*"; }
ours() { "$WORK/bench" "$@" 2>&1 | grep -v XDG_RUNTIME_DIR; echo; }
for c in small sd15; do
  ref call --config "$c" --out "$WORK/$c" --device cuda --runs 10
  ref call --config "$c" --out "$WORK/$c" --device cuda --dtype float16 --runs 10
done
ref train --config small --out "$WORK/small" --device cuda --batch 64 --runs 5
{
  echo "## One U-Net call, batch 2: diffusers on CUDA vs burn-wgpu, unsliced attention"
  ours call "$WORK/small" "$WORK/sd15" --device wgpu --max-binding 0
  ours call "$WORK/small" "$WORK/sd15" --device wgpu --precision f16 --max-binding 0
  echo "## The same with attention sliced for WebGPU's default 128 MiB buffers, as the page and CLI plan it"
  ours call "$WORK/small" "$WORK/sd15" --device wgpu
  echo "## Training step of the small U-Net, batch 64, AdamW, f32"
  ours train "$WORK/small" --device wgpu --batch 64 --max-binding 0
  echo "## Operations at SD 1.5's sizes: PyTorch on CUDA, then burn-wgpu"
  python3 scripts/op_profile.py --device cuda
  echo
  ours ops --device wgpu
  python3 scripts/op_profile.py --device cuda --dtype float16
  echo
  ours ops --device wgpu --precision f16
} 2>&1 | tee "$OUT/gpu-bench.md"
