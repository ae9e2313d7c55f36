"""What f16 costs diffusers on the parity fixture: the tiny pipeline's prompt swap (10 steps, guidance 7.5, swap
points 2, 4, 6, 8, from the fixture's initial noise) run in float16 and compared with its float32 run, the
reference our f16 path (`--precision f16`, tests/wgpu_f16.rs) is held to. Writes tests/fixtures/f16_reference.json.

    python scripts/f16_reference.py     # in the parity venv (scripts/requirements-parity.txt)

PyTorch runs float16 on the CPU here; on a GPU its matmuls accumulate in float32 as well, so the figures are of the
same kind as a GPU's.
"""

import json
import sys
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from swap_reference import sd_scheduler, swap_run  # noqa: E402

FIX = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
SWAP_POINTS = [2, 4, 6, 8]
STYLE = "Chest X-ray of a subject with pleural effusion"


def run(dtype):
    """The swap's latents and the decoded images at every swap point, as float32."""
    pipe = StableDiffusionPipeline.from_pretrained(FIX / "tiny-sd", safety_checker=None, torch_dtype=torch.float32)
    pipe = pipe.to(dtype)

    def encode(prompt):
        ids = pipe.tokenizer(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        return pipe.text_encoder(ids.input_ids)[0]

    init = load_file(FIX / "tiny_sd_reference.safetensors")["ddim.init"].to(dtype)
    with torch.no_grad():
        neutral, style, uncond = encode("Chest x-ray with no significant findings"), encode(STYLE), encode("")
        latents = swap_run(pipe.unet, sd_scheduler(), init, neutral, style, uncond, 7.5, 10, SWAP_POINTS)
        scale = pipe.vae.config.scaling_factor
        images = {k: pipe.vae.decode(v / scale).sample for k, v in latents.items()}
    return ({k: v.float() for k, v in latents.items()}, {k: v.float() for k, v in images.items()})


def main():
    (lat32, img32), (lat16, img16) = run(torch.float32), run(torch.float16)
    err = lambda a, b: max((a[k] - b[k]).abs().max().item() for k in a)  # noqa: E731
    largest = lambda a: max(v.abs().max().item() for v in a.values())  # noqa: E731
    out = {
        "what": "diffusers float16 vs float32 on tests/fixtures/tiny-sd: prompt swap, 10 DDIM steps, guidance 7.5, "
                "swap points 2,4,6,8, initial noise ddim.init of tiny_sd_reference.safetensors",
        "torch": torch.__version__,
        "latents_max_abs_error": err(lat32, lat16),
        "latents_largest": largest(lat32),
        "images_max_abs_error": err(img32, img16),
        "images_largest": largest(img32),
    }
    (FIX / "f16_reference.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
