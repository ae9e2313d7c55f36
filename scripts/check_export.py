"""Checks that diffusers loads and runs a model folder Traverse exported (e.g. `traverse train-mini --out DIR`):

    python scripts/check_export.py DIR
"""

import sys

import torch
from diffusers import StableDiffusionPipeline

torch.set_grad_enabled(False)
pipe = StableDiffusionPipeline.from_pretrained(sys.argv[1], safety_checker=None)
size = pipe.unet.config.sample_size * 2 ** (len(pipe.vae.config.block_out_channels) - 1)
ids = pipe.tokenizer("Chest x-ray with no significant findings").input_ids
image = pipe("Chest X-ray of a subject with pleural effusion", num_inference_steps=3, height=size, width=size,
             output_type="np").images
print(f"diffusers loaded {sys.argv[1]}: tokenizer of {len(pipe.tokenizer)} tokens ({ids}), image {image.shape}")
