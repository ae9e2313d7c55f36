"""Reference side of the benchmarks (scripts/bench.sh on the CPU, scripts/gpu/bench.sh on a GPU machine;
examples/bench.rs is ours): builds random models with diffusers, saves their weights and inputs so the Rust side
runs the identical work, and times PyTorch on it. Each mode runs in a process of its own, so its peak memory is
its own.

    python scripts/bench_reference.py call --config small|sd15 --out DIR    # one guided U-Net call (batch 2)
    python scripts/bench_reference.py train --config small --out DIR       # a U-Net training step (after `call`)
    python scripts/bench_reference.py trajectory --config small --out DIR  # the paper's 10 images (after `call`)
    python scripts/bench_reference.py train-autoencoder --out DIR          # an autoencoder training step

`call` and `train` take `--device cuda` and `--dtype float16` (call only): the same weights and inputs on the GPU,
timed with the device synchronized, written to `diffusers-cuda-float32.json` etc. (the CPU's f32 run keeps the
plain names). A float32 run writes the inputs and output that the Rust side checks against; others reuse them.
TF32 is off, so float32 means float32.
"""

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file

from swap_reference import PAPER_SWAP_POINTS, sd_scheduler, swap_run

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


def facts(**info):
    """`info` with what every mode reports: peak memory, torch's version and threads."""
    return dict(info, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                torch=torch.__version__, threads=torch.get_num_threads())


def write(path, info):
    path.write_text(json.dumps(info, indent=1))
    print(json.dumps(info))


def synchronized(a):
    """Waits for the device's queued work (a no-op on the CPU)."""
    if a.device == "cuda":
        torch.cuda.synchronize()


# Timed calls go on past `--runs` until they add up to this many seconds (at most MAX_RUNS calls), so that a
# 20 ms call's median is not three samples of scheduler noise; examples/bench.rs does the same.
MIN_SECONDS = 1.0
MAX_RUNS = 50


def timed(fn, runs, a=None):
    """`fn`'s wall times over at least `runs` calls (more for short calls, see MIN_SECONDS), after one warm-up
    call whose result is returned; on a GPU each call is timed to the end of its work."""
    first = fn()
    times = []
    while len(times) < runs or (sum(times) < MIN_SECONDS and len(times) < MAX_RUNS):
        if a:
            synchronized(a)
        t0 = time.perf_counter()
        fn()
        if a:
            synchronized(a)
        times.append(time.perf_counter() - t0)
    return first, times


def result_name(a, stem):
    """`stem.json` for the CPU's float32 run, else `stem-DEVICE-DTYPE.json`."""
    plain = a.device == "cpu" and a.dtype == "float32"
    return f"{stem}.json" if plain else f"{stem}-{a.device}-{a.dtype}.json"


def device_facts(a, **info):
    """`facts` plus the device, dtype and, on a GPU, its name and peak memory."""
    info = facts(device=a.device, dtype=a.dtype, **info)
    if a.device == "cuda":
        info.update(gpu=torch.cuda.get_device_name(), peak_device_mb=torch.cuda.max_memory_allocated() / 2**20)
    return info


def call(a):
    """A random U-Net's guided call (batch 2) at timestep 501; saves weights, inputs and the output."""
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    c = CONFIGS[a.config]
    unet = UNet2DConditionModel(**c["model"]).eval()
    unet.save_pretrained(a.out / "unet", safe_serialization=True, max_shard_size="20GB")
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 4, c["latent"], c["latent"], generator=g)
    ctx = torch.randn(2, 77, c["context"], generator=g)
    t = 501
    dtype = getattr(torch, a.dtype)
    unet = unet.to(a.device, dtype)
    on = lambda x: x.to(a.device, dtype)  # noqa: E731
    out, times = timed(lambda: unet(on(sample), t, encoder_hidden_states=on(ctx)).sample, a.runs, a)
    if a.dtype == "float32":
        save_file({"sample": sample, "context": ctx, "out": out.float().cpu().contiguous()},
                  a.out / "inputs.safetensors")
    params = sum(p.numel() for p in unet.parameters())
    write(a.out / result_name(a, "diffusers"), device_facts(a, config=a.config, timestep=t, params=params,
                                                            runs=times, median_s=statistics.median(times)))


# The U-Net training step timed: the embedded model's recipe (src/train/unet.rs) at batch 8.
TRAIN_BATCH = 8
LEARNING_RATE = 1e-4
WEIGHT_DECAY = 1e-2


def train(a):
    """Training steps (diffusion MSE, backward, AdamW) of the U-Net saved by `call`, on a batch saved to
    `train.safetensors`, with the first step's loss for the Rust side to match."""
    c = CONFIGS[a.config]
    unet = UNet2DConditionModel.from_pretrained(a.out / "unet").train().to(a.device)
    g = torch.Generator().manual_seed(2)
    b, n = a.batch, c["latent"]
    noisy = torch.randn(b, 4, n, n, generator=g)
    target = torch.randn(b, 4, n, n, generator=g)
    ctx = torch.randn(b, 77, c["context"], generator=g)
    timesteps = torch.randint(0, 1000, (b,), generator=g)
    saved = {"noisy": noisy, "target": target, "context": ctx, "timesteps": timesteps.float()}
    noisy, target, ctx, timesteps = (x.to(a.device) for x in (noisy, target, ctx, timesteps))
    opt = torch.optim.AdamW(unet.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)

    def step():
        loss = torch.nn.functional.mse_loss(unet(noisy, timesteps, encoder_hidden_states=ctx).sample, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    first_loss, times = timed(step, a.runs, a)
    stem = "train" if b == TRAIN_BATCH else f"train-batch{b}"
    save_file(saved, a.out / f"{stem}.safetensors")
    write(a.out / result_name(a, stem), device_facts(a, config=a.config, batch=b, learning_rate=LEARNING_RATE,
                                                     weight_decay=WEIGHT_DECAY, first_loss=first_loss, runs=times,
                                                     median_s=statistics.median(times)))


# The paper's run: 50 DDIM steps, guidance 7.5, swap points 5..45.
STEPS = 50
GUIDANCE = 7.5


def trajectory(a):
    """The paper's trajectory as a diffusers user runs it: the neutral image and each swap image on its own
    (10 × 50 guided evaluations), with the U-Net saved by `call`. Saves the noise, the three prompt embeddings
    (random, the U-Net's width) and the 10 final latents; one run, since it is long."""
    torch.set_grad_enabled(False)
    c = CONFIGS[a.config]
    unet = UNet2DConditionModel.from_pretrained(a.out / "unet").eval()
    g = torch.Generator().manual_seed(3)
    init = torch.randn(1, 4, c["latent"], c["latent"], generator=g)
    neutral, style, negative = (torch.randn(1, 77, c["context"], generator=g) for _ in range(3))
    t0 = time.perf_counter()
    out = swap_run(unet, sd_scheduler(), init, neutral, style, negative, GUIDANCE, STEPS, PAPER_SWAP_POINTS)
    seconds = time.perf_counter() - t0
    save_file({"init": init, "neutral": neutral, "style": style, "negative": negative,
               **{k: v.contiguous() for k, v in out.items()}}, a.out / "trajectory.safetensors")
    write(a.out / "trajectory.json", facts(config=a.config, steps=STEPS, guidance=GUIDANCE,
                                           swap_points=PAPER_SWAP_POINTS, evaluations=len(out) * STEPS,
                                           seconds=seconds))


# The autoencoder's stage of the embedded model (src/train/vae.rs; train-mini's defaults): its architecture,
# batch 8 of 64×64 crops, AdamW at 4e-4 without weight decay (burn's epsilon, 1e-5), KL weight 1e-6 on sums,
# edge weight 1.
AUTOENCODER = dict(block_out_channels=(32, 64, 128, 128), down_block_types=("DownEncoderBlock2D",) * 4,
                   up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, latent_channels=4,
                   norm_num_groups=16, sample_size=128)
AE_BATCH, AE_CROP, AE_LR, AE_EPS, KL_WEIGHT, EDGE_WEIGHT = 8, 64, 4e-4, 1e-5, 1e-6, 1.0


def train_autoencoder(a):
    """Training steps of a random autoencoder with the stage's loss (L1 + MSE, KL, edge loss) on a batch of
    random images, posterior noise saved with them (`autoencoder.safetensors`) so the Rust side's first loss
    matches."""
    torch.manual_seed(4)
    vae = AutoencoderKL(**AUTOENCODER).train()
    vae.save_pretrained(a.out / "vae", safe_serialization=True)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(AE_BATCH, 3, AE_CROP, AE_CROP, generator=g) * 2 - 1
    f = 2 ** (len(AUTOENCODER["block_out_channels"]) - 1)
    eps = torch.randn(AE_BATCH, AUTOENCODER["latent_channels"], AE_CROP // f, AE_CROP // f, generator=g)
    opt = torch.optim.AdamW(vae.parameters(), lr=AE_LR, weight_decay=0.0, eps=AE_EPS)

    def step():
        posterior = vae.encode(x).latent_dist
        mean, logvar = posterior.mean, posterior.logvar
        diff = vae.decode(mean + torch.exp(0.5 * logvar) * eps).sample - x
        rec = (diff.abs() + diff ** 2).mean()
        kl = 0.5 * (mean ** 2 + logvar.exp() - logvar - 1).mean()
        edges = (diff[:, :, 1:] - diff[:, :, :-1]).abs().mean() + (diff[..., 1:] - diff[..., :-1]).abs().mean()
        loss = rec + kl * KL_WEIGHT * mean[0].numel() / x[0].numel() + EDGE_WEIGHT * edges
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    first_loss, times = timed(step, a.runs)
    save_file({"images": x, "eps": eps}, a.out / "autoencoder.safetensors")
    params = sum(p.numel() for p in vae.parameters())
    write(a.out / "autoencoder.json", facts(batch=AE_BATCH, crop=AE_CROP, learning_rate=AE_LR, epsilon=AE_EPS,
                                            kl_weight=KL_WEIGHT, edge_weight=EDGE_WEIGHT, params=params,
                                            first_loss=first_loss, runs=times, median_s=statistics.median(times)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["call", "train", "trajectory", "train-autoencoder"])
    p.add_argument("--config", choices=CONFIGS, default="small")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--batch", type=int, default=TRAIN_BATCH, help="the training step's batch (train)")
    a = p.parse_args()
    if a.dtype != "float32" and a.mode != "call":
        p.error("--dtype float16 is for `call` (training runs in float32)")
    if a.device != "cpu" and a.mode in ("trajectory", "train-autoencoder"):
        p.error(f"{a.mode} runs on the CPU")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    a.out.mkdir(parents=True, exist_ok=True)
    {"call": call, "train": train, "trajectory": trajectory, "train-autoencoder": train_autoencoder}[a.mode](a)


if __name__ == "__main__":
    main()
