"""Build the LPIPS parity fixture (tests/fixtures/lpips_reference.safetensors) with the `lpips` package.

AlexNet's ImageNet weights cannot be downloaded here, and 10 MB of random ones would bloat the repository,
so its weights follow a fixed integer formula that tests/parity.rs rebuilds exactly (`formula_weight`);
LPIPS' own linear heads ship inside the `lpips` package and are stored in the fixture as they are.

    .venv-parity/bin/python scripts/make_lpips_fixture.py
"""

from pathlib import Path

import lpips
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
torch.set_grad_enabled(False)


def formula_weight(shape, layer, bias):
    """Deterministic weights, exact in any language: a stepped ramp of 2001 levels in [-1, 1], scaled as
    He-uniform for the layer's fan-in (biases small)."""
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.int64)
    level = ((i * 7919 + layer * 104729 + (1 if bias else 0) * 15485863) % 2001).to(torch.float64) / 1000.0 - 1.0
    fan_in = 1 if bias else n // shape[0]
    amp = 0.01 if bias else (6.0 / fan_in) ** 0.5
    return (level * amp).to(torch.float32).reshape(shape)


def main():
    model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5
    for k, conv in enumerate(convs):
        conv.weight.copy_(formula_weight(tuple(conv.weight.shape), k, False))
        conv.bias.copy_(formula_weight(tuple(conv.bias.shape), k, True))
    g = torch.Generator().manual_seed(0)
    ref = {f"lin{k}.model.1.weight": getattr(model, f"lin{k}").model[1].weight.clone() for k in range(5)}
    a = torch.rand(3, 3, 64, 64, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(3, 3, 64, 64, generator=g)).clamp(-1, 1)
    b[2] = a[2]  # an identical pair
    ref["a"], ref["b"], ref["d"] = a, b, model(a, b).flatten()
    # A small non-square pair near the minimum size.
    c = torch.rand(2, 3, 40, 52, generator=g) * 2 - 1
    e = torch.rand(2, 3, 40, 52, generator=g) * 2 - 1
    ref["c"], ref["e"], ref["d_small"] = c, e, model(c, e).flatten()
    save_file({k: v.contiguous() for k, v in ref.items()}, ROOT / "tests" / "fixtures" / "lpips_reference.safetensors")
    print("distances", ref["d"].tolist(), ref["d_small"].tolist())


if __name__ == "__main__":
    main()
