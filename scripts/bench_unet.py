"""Reference side of the U-Net benchmark: builds a random U-Net with diffusers, saves its weights and inputs
(so the Rust side runs the identical model), and times diffusers' forward pass on the CPU. With --train (after
a run without it), times a training step of the saved U-Net instead (diffusion loss, backward, AdamW) on a
saved batch, in a process of its own so its peak memory is the training's.

    python scripts/bench_unet.py --config small|sd15 --out DIR [--runs N] [--train]
"""

import argparse
import json
import resource
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
    p.add_argument("--train", action="store_true")
    a = p.parse_args()
    if a.train:
        return train(a)
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
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                torch=torch.__version__, threads=torch.get_num_threads())
    (a.out / "diffusers.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))


# The training step timed: the embedded model's recipe (src/train/unet.rs) at batch 8.
TRAIN_BATCH = 8
LEARNING_RATE = 1e-4
WEIGHT_DECAY = 1e-2


def train(a):
    """Times `--runs` training steps (after one warm-up step) of the U-Net saved in `a.out`, on a batch saved
    to `a.out/train.safetensors` with the first step's loss, for the Rust side to repeat."""
    c = CONFIGS[a.config]
    unet = UNet2DConditionModel.from_pretrained(a.out / "unet").train()
    g = torch.Generator().manual_seed(2)
    b, n = TRAIN_BATCH, c["latent"]
    noisy = torch.randn(b, 4, n, n, generator=g)
    target = torch.randn(b, 4, n, n, generator=g)
    ctx = torch.randn(b, 77, c["context"], generator=g)
    timesteps = torch.randint(0, 1000, (b,), generator=g)
    opt = torch.optim.AdamW(unet.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)

    def step():
        loss = torch.nn.functional.mse_loss(unet(noisy, timesteps, encoder_hidden_states=ctx).sample, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    first_loss = step()  # warm-up; the fresh model's loss, for the Rust side to match
    times = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    save_file({"noisy": noisy, "target": target, "context": ctx, "timesteps": timesteps.float()},
              a.out / "train.safetensors")
    info = dict(config=a.config, batch=b, learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY,
                first_loss=first_loss, runs=times, median_s=statistics.median(times),
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                torch=torch.__version__, threads=torch.get_num_threads())
    (a.out / "train.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
