"""Checks the page's download of a run against the CLI's run of the same link (scripts/test-web.sh).

    python3 scripts/check_download.py PAGE_ZIP CLI_OUT EXTRACT_DIR

Works for `generate` and `invert` runs alike. The zip must hold the CLI's files (every image, sheet.png, latents.safetensors, manifest.json) and the page's
figures; its manifest must have the CLI manifest's fields with the same settings and U-Net cost, and its
latents the CLI's within GPU-vs-CPU rounding. Standard library only.
"""
import json
import struct
import sys
import zipfile
from pathlib import Path


def latents(path):
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        out[name] = (info["shape"], struct.unpack(f"<{(b - a) // 4}f", body[a:b]))
    return out, header.get("__metadata__", {})


def main(zip_path, cli_out, extract):
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        z.extractall(extract)
    cli = json.loads((Path(cli_out) / "manifest.json").read_text())
    page = json.loads((Path(extract) / "manifest.json").read_text())
    failures = []
    wanted = set(cli["images"]) | {"sheet.png", "latents.safetensors", "manifest.json", "timeline.svg", "latent-map.svg"}
    if not wanted <= names:
        failures.append(f"missing files: {sorted(wanted - names)}")
    if set(page) != set(cli):
        failures.append(f"manifest fields differ: {sorted(set(page) ^ set(cli))}")
    same = ["command", "seed", "noise", "inversion_guidance", "height", "width", "neutral", "styles", "negative",
            "steps", "guidance", "eta", "scheduler", "swap_points", "unet_evaluations", "images", "contact_sheet",
            "latents"]
    for key in same:
        if page.get(key) != cli.get(key):
            failures.append(f"{key}: page {page.get(key)!r}, CLI {cli.get(key)!r}")
    ours, meta = latents(Path(extract) / "latents.safetensors")
    theirs, cli_meta = latents(Path(cli_out) / "latents.safetensors")
    if set(ours) != set(theirs):
        failures.append(f"latent names differ: {sorted(set(ours) ^ set(theirs))}")
    if meta != cli_meta:
        failures.append(f"latents metadata: page {meta}, CLI {cli_meta}")
    worst = 0.0
    for name in set(ours) & set(theirs):
        (shape_a, a), (shape_b, b) = ours[name], theirs[name]
        if shape_a != shape_b:
            failures.append(f"{name}: shape {shape_a} vs {shape_b}")
            continue
        worst = max(worst, max(abs(x - y) for x, y in zip(a, b)))
    if worst > 1e-3:
        failures.append(f"latents differ by up to {worst:.2e} (more than 1e-3)")
    for f in failures:
        print(f"FAIL {f}")
    print(f"{'FAIL' if failures else 'ok  '} the page's zip ({len(names)} files) is the CLI's run: "
          f"manifest fields and settings equal, {len(ours)} latents within {worst:.1e} of the CLI's")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
