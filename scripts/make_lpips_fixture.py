"""Build the LPIPS parity fixtures with the `lpips` package.

1. tests/fixtures/lpips_reference.safetensors: random image pairs through an AlexNet whose weights follow a
   fixed integer formula that tests/parity.rs rebuilds exactly (`formula_weight`), with LPIPS' own heads.

       .venv-parity/bin/python scripts/make_lpips_fixture.py

2. tests/fixtures/lpips-real/: real image pairs (phantoms, generated images) as PNGs, and the `lpips`
   package's distances with the shipped weights (public/lpips/alex.safetensors, int8, dequantized exactly as
   the Rust loader does), beside its distances with the f32 weights they were quantized from
   (scripts/export_lpips.py), so the fixture also records what int8 costs:

       .venv-parity/bin/python scripts/make_lpips_fixture.py --f32 lpips-alex.safetensors \
           --pair phantom-a.png phantom-b.png --pair neutral.png edited.png ...
"""

import argparse
import importlib.metadata
import json
import shutil
from pathlib import Path

import lpips
import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

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


def formula_fixture():
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


def dequantized(path):
    """A safetensors file in the int8 format (src/quantize.rs) as f32 tensors: NAME · NAME.qscale per row."""
    raw = load_file(path)
    out = {}
    for name, t in raw.items():
        if name.endswith(".qscale"):
            continue
        if t.dtype == torch.int8:
            scale = raw[name + ".qscale"]
            t = t.to(torch.float32) * scale.reshape(-1, *([1] * (t.dim() - 1)))
        out[name] = t
    return out


def lpips_with(state):
    model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    # The heads are registered twice (lin{k}, lins.{k}: one tensor); the scaling constants are buffers.
    assert not unexpected and all(k.startswith(("lins.", "scaling_layer.")) for k in missing), (missing, unexpected)
    return model


def image(path):
    """[1, 3, H, W] in [-1, 1], as src/image.rs's rgb_to_tensor reads a PNG."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(rgb / 127.5 - 1.0).permute(2, 0, 1)[None]


def real_fixture(f32_path, pairs):
    out = ROOT / "tests" / "fixtures" / "lpips-real"
    out.mkdir(parents=True, exist_ok=True)
    shipped = lpips_with(dequantized(ROOT / "public" / "lpips" / "alex.safetensors"))
    full = lpips_with(load_file(f32_path))
    rows = []
    for k, (a, b) in enumerate(pairs):
        names = [f"pair{k}-a.png", f"pair{k}-b.png"]
        for src, name in zip((a, b), names):
            shutil.copyfile(src, out / name)
        x, y = image(out / names[0]), image(out / names[1])
        rows.append({
            "a": names[0],
            "b": names[1],
            "source": [Path(a).name, Path(b).name],
            "distance": float(shipped(x, y).flatten()[0]),
            "distance_f32_weights": float(full(x, y).flatten()[0]),
        })
    int8 = max(abs(r["distance"] - r["distance_f32_weights"]) for r in rows)
    reference = {
        "weights": "public/lpips/alex.safetensors (int8), dequantized",
        "lpips": importlib.metadata.version("lpips"),
        "torch": torch.__version__,
        "int8_vs_f32_max_abs": int8,
        "pairs": rows,
    }
    (out / "reference.json").write_text(json.dumps(reference, indent=2) + "\n")
    for r in rows:
        print(f"{r['a']} {r['b']}: {r['distance']:.6f} (f32 weights {r['distance_f32_weights']:.6f})")
    print(f"int8 vs f32 weights: max abs difference {int8:.2e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--f32", help="LPIPS-alex f32 weights from scripts/export_lpips.py: build fixture 2")
    ap.add_argument("--pair", nargs=2, action="append", default=[], metavar=("A", "B"))
    a = ap.parse_args()
    if a.f32:
        real_fixture(a.f32, a.pair)
    else:
        formula_fixture()


if __name__ == "__main__":
    main()
