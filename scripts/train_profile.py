"""PyTorch's side of examples/train_profile.rs: the small U-Net's training step by parts (forward and loss,
backward, AdamW) on the model and batch `bench_reference.py train` saved, and single operations forward and
backward at the same shapes as the Rust side's table (3x3 convolution; GroupNorm(16) then SiLU). Best of 4
(ops: of 6), 2 threads, in the bench's venv:

    python scripts/train_profile.py ~/.cache/traverse/bench/small
"""

import sys
import time

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

torch.set_num_threads(2)


def unet_step(d):
    unet = UNet2DConditionModel.from_pretrained(f"{d}/unet").train()
    s = load_file(f"{d}/train.safetensors")
    # bench_reference.py's optimizer: AdamW, lr 1e-4, weight decay 0.01.
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, weight_decay=0.01)
    best = [float("inf")] * 3
    for _ in range(4):
        t = time.perf_counter()
        out = unet(s["noisy"], s["timesteps"].long(), encoder_hidden_states=s["context"]).sample
        loss = torch.nn.functional.mse_loss(out, s["target"])
        loss.item()
        forward = time.perf_counter() - t
        opt.zero_grad(set_to_none=True)
        t = time.perf_counter()
        loss.backward()
        backward = time.perf_counter() - t
        t = time.perf_counter()
        opt.step()
        step = time.perf_counter() - t
        best = [min(b, v) for b, v in zip(best, (forward, backward, step))]
    print(f"| U-Net step, batch {s['noisy'].shape[0]} | forward + loss | backward | AdamW |")
    print("|---|---|---|---|")
    print("| ms | " + " | ".join(f"{v * 1e3:.0f}" for v in best) + " |")


def ops():
    print("| forward + backward (ms) | PyTorch |")
    print("|---|---|")
    for c, s in [(32, 64), (64, 32), (64, 16), (256, 4)]:
        x = torch.randn(8, c, s, s, requires_grad=True)
        g = torch.randn(8, c, s, s)
        conv = torch.nn.Conv2d(c, c, 3, padding=1)
        norm = torch.nn.GroupNorm(16, c)
        rows = [("conv 3×3", conv), ("GroupNorm + SiLU", lambda x: torch.nn.functional.silu(norm(x)))]
        for name, op in rows:
            best = float("inf")
            for _ in range(6):
                t = time.perf_counter()
                (op(x) * g).sum().backward()
                best = min(best, time.perf_counter() - t)
            print(f"| {name}, [8, {c}, {s}, {s}] | {best * 1e3:.1f} |")


if __name__ == "__main__":
    unet_step(sys.argv[1])
    print()
    ops()
