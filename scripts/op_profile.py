"""PyTorch side of examples/op_profile.rs: the same operations at the same sizes, 2 threads."""
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
