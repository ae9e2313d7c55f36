"""PyTorch side of the per-operation profiles: the same operations at the same sizes.

    python scripts/op_profile.py                                  # the CPU: examples/op_profile.rs's rows
    python scripts/op_profile.py --device cuda [--dtype float16]  # a GPU: `bench ops --device wgpu`'s rows
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

torch.set_grad_enabled(False)


def t(name, f):
    f()
    t0 = time.perf_counter()
    for _ in range(5):
        f()
    print(f"{name:<40} {(time.perf_counter() - t0) * 200:8.2f} ms")


def cpu():
    x = torch.randn(2, 320, 64, 64)
    conv = torch.nn.Conv2d(320, 320, 3, padding=1)
    gn = torch.nn.GroupNorm(32, 320)
    t("conv3x3 320->320 @64x64 b2", lambda: conv(x))
    t("groupnorm 32 @320x64x64 b2", lambda: gn(x))
    t("silu", lambda: F.silu(x))
    t("add", lambda: x + x)
    t("to tokens (swap+reshape)", lambda: x.reshape(2, 320, 4096).transpose(1, 2).contiguous())
    q = torch.randn(2, 8, 4096, 40)
    t("self-attention 8x4096x40 b2", lambda: F.scaled_dot_product_attention(q, q, q))
    k = torch.randn(2, 8, 77, 40)
    t("cross-attention 8x4096x77 b2", lambda: F.scaled_dot_product_attention(q, k, k))
    tt = torch.randn(2, 4096, 320)
    lin = torch.nn.Linear(320, 2560)
    t("linear 320->2560 on 8192 tokens", lambda: lin(tt))


def gpu(dtype):
    """`examples/bench.rs ops`'s rows: the median of 10 synchronized calls after 2 warm-ups, with GFLOP/s."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = dict(device="cuda", dtype=getattr(torch, dtype))

    def row(name, flops, f):
        f()
        f()
        ms = []
        for _ in range(10):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            f()
            torch.cuda.synchronize()
            ms.append((time.perf_counter() - t0) * 1000)
        m = statistics.median(ms)
        rate = f"{flops / m / 1e6:8.0f}" if flops else f"{'–':>8}"
        print(f"| {name:<52} | {m:9.2f} | {rate} |")

    print(f"| operation (batch 2, {dtype}, PyTorch {torch.__version__}) | ms | GFLOP/s |\n|---|---|---|")
    for c, s in [(320, 64), (640, 32), (1280, 16), (1280, 8)]:
        x = torch.randn(2, c, s, s, **dev)
        conv = torch.nn.Conv2d(c, c, 3, padding=1, **dev)
        row(f"conv3x3 {c}->{c} @{s}x{s}", 2 * 9 * c * c * s * s * 2, lambda: conv(x))
    x = torch.randn(2, 320, 64, 64, **dev)
    gn = torch.nn.GroupNorm(32, 320, **dev)
    row("groupnorm + silu 320 @64x64", 0, lambda: F.silu(gn(x)))
    row("add 320 @64x64", 0, lambda: x + x)
    q = torch.randn(2, 8, 4096, 40, **dev)
    k = torch.randn(2, 8, 77, 40, **dev)
    row("self-attention 8x4096x40 (SDPA)", 2 * 2 * 2 * 4096 * 4096 * 320, lambda: F.scaled_dot_product_attention(q, q, q))
    row("cross-attention 8x4096x77 (SDPA)", 2 * 2 * 2 * 4096 * 77 * 320, lambda: F.scaled_dot_product_attention(q, k, k))
    tt = torch.randn(2, 4096, 320, **dev)
    lin = torch.nn.Linear(320, 2560, **dev)
    row("linear 320->2560 on 8192 tokens", 2 * 8192 * 320 * 2560, lambda: lin(tt))
    h = torch.randn(2, 4096, 2560, **dev)

    def geglu():
        value, gate = h.chunk(2, dim=-1)
        return value * F.gelu(gate)

    row("GEGLU gate 2x4096x1280", 0, geglu)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    a = p.parse_args()
    if a.device == "cuda":
        gpu(a.dtype)
    else:
        cpu()


if __name__ == "__main__":
    main()
