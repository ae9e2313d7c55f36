"""Write LPIPS weights (AlexNet + LPIPS' linear heads) as one safetensors file for `traverse evaluate --lpips`.

Needs torchvision's ImageNet AlexNet weights, which torchvision downloads on first use or finds in
$TORCH_HOME (this project's machines cannot download them, so run it where you can and copy the file):

    pip install lpips==0.1.4 torchvision safetensors
    python scripts/export_lpips.py lpips-alex.safetensors

`--random-alexnet` writes the same layout with an untrained AlexNet, to check the format offline; its
distances mean nothing.
"""

import argparse

import lpips
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--random-alexnet", action="store_true")
    a = ap.parse_args()
    model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=a.random_alexnet, verbose=False).eval()
    # The package registers each head twice (lin{k} and lins.{k}, one tensor); safetensors stores it once.
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if not k.startswith("lins.")}
    save_file(state, a.out, metadata={"format": "pt", "lpips": "0.1 alex", "random_alexnet": str(a.random_alexnet)})
    print(f"wrote {a.out}: {len(state)} tensors")


if __name__ == "__main__":
    main()
