"""Reference side of the U-Net benchmark: builds a random U-Net with diffusers, saves its weights and inputs
(so the Rust side runs the identical model), and times diffusers' forward pass on the CPU.

    python scripts/bench_unet.py --config small|sd15 --out DIR [--runs N]
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

CONFIGS = {
    # The size planned for the embedded browser model (~13M parameters), latent 4x16x16.
    "small": dict(
        model=dict(block_out_channels=(64, 128, 256), layers_per_block=1, cross_attention_dim=256,
                   down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                   attention_head_dim=8, sample_size=16),
        latent=16, context=256,
    ),
    # Stable Diffusion 1.5's U-Net (diffusers' defaults with CLIP ViT-L's 768-wide text), latent 4x64x64.
    "sd15": dict(model=dict(cross_attention_dim=768, sample_size=64), latent=64, context=768),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", choices=CONFIGS, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    c = CONFIGS[a.config]
    unet = UNet2DConditionModel(**c["model"]).eval()
    unet.save_pretrained(a.out / "unet", safe_serialization=True, max_shard_size="20GB")
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 4, c["latent"], c["latent"], generator=g)
    ctx = torch.randn(2, 77, c["context"], generator=g)
    t = 501
    out = unet(sample, t, encoder_hidden_states=ctx).sample  # warm-up, and the reference output
    times = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        unet(sample, t, encoder_hidden_states=ctx)
        times.append(time.perf_counter() - t0)
    save_file({"sample": sample, "context": ctx, "out": out.contiguous()}, a.out / "inputs.safetensors")
    params = sum(p.numel() for p in unet.parameters())
    info = dict(config=a.config, timestep=t, params=params, runs=times, median_s=statistics.median(times),
                torch=torch.__version__, threads=torch.get_num_threads())
    (a.out / "diffusers.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
