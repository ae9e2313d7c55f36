"""Checks that diffusers loads and runs a model folder Traverse exported (e.g. `traverse train-mini --out DIR`),
and, given a `traverse generate` output folder made with that model, that diffusers' StableDiffusionPipeline
reproduces its neutral latent from the same initial noise:

    python scripts/check_export.py DIR [GENERATE_OUT]

Exits non-zero when the largest absolute latent difference exceeds 1e-3 (the tolerance of the multi-step
parity tests).
"""

import json
import sys
from pathlib import Path

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from safetensors.torch import load_file

torch.set_grad_enabled(False)
model = sys.argv[1]
pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None)
pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
size = pipe.unet.config.sample_size * 2 ** (len(pipe.vae.config.block_out_channels) - 1)
ids = pipe.tokenizer("Chest x-ray with no significant findings").input_ids
print(f"diffusers loaded {model}: tokenizer of {len(pipe.tokenizer)} tokens ({ids}), image size {size}")

if len(sys.argv) > 2:
    run = Path(sys.argv[2])
    manifest = json.loads((run / "manifest.json").read_text())
    latents = load_file(str(run / "latents.safetensors"))
    ours = latents["neutral"]
    theirs = pipe(
        manifest["neutral"],
        negative_prompt=manifest["negative"] or None,
        num_inference_steps=manifest["steps"],
        guidance_scale=manifest["guidance"],
        eta=0.0,
        latents=latents["init"],
        height=size,
        width=size,
        output_type="latent",
    ).images
    diff = (ours - theirs).abs().max().item()
    print(f"neutral latent after {manifest['steps']} steps: max abs difference {diff:.2e} "
          f"(latent range ±{ours.abs().max().item():.2f})")
    sys.exit(0 if diff <= 1e-3 else 1)
