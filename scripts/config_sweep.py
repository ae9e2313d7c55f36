"""Random-config parity sweep: tiny SD pipelines with configs drawn from what diffusers supports, run
through diffusers' own `StableDiffusionPipeline` (DDIM, eta 0); `examples/config_sweep.rs` runs the same
folders through this engine and compares. Catches config options the committed fixtures do not exercise.

    .venv-parity/bin/python scripts/config_sweep.py OUT N [FIRST]
    cargo run --release --example config_sweep -- OUT/case*

Writes OUT/case{k}/ for k = FIRST … FIRST+N-1: a diffusers folder (random weights), `case.json` (prompts,
steps, guidance, the drawn configs) and `ref.safetensors` (init noise, final latents, decoded image).
Each case is a function of k alone.
"""

import json
import math
import random
import shutil
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from make_fixtures import perturb

torch.set_grad_enabled(False)
ROOT = Path(__file__).resolve().parent.parent
PROMPTS = json.loads((ROOT / "tests/fixtures/prompts.json").read_text())


def text_encoder(R, k):
    heads = R.choice([1, 2, 4])
    hidden = heads * R.choice([8, 16])
    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=R.choice([hidden * 2, 37]),
                         num_hidden_layers=R.randint(1, 3), num_attention_heads=heads, max_position_embeddings=77,
                         hidden_act=R.choice(["quick_gelu", "gelu"]), layer_norm_eps=R.choice([1e-5, 1e-6]),
                         projection_dim=R.choice([16, 32]), bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=R.choice([1, 49407]))
    torch.manual_seed(k)
    return perturb(CLIPTextModel(cfg).eval(), 100 + k), cfg.to_dict()


def unet(R, k, context_dim):
    n = R.randint(2, 4)
    groups = R.choice([2, 4, 8])
    heads = [R.choice([1, 2]) for _ in range(n)]
    channels = [groups * R.choice([2, 3, 4]) * h for h in heads]
    cfg = dict(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=tuple(R.choice(["CrossAttnDownBlock2D", "DownBlock2D"]) for _ in range(n)),
        up_block_types=tuple(R.choice(["CrossAttnUpBlock2D", "UpBlock2D"]) for _ in range(n)),
        block_out_channels=tuple(channels),
        layers_per_block=R.choice([1, 2, [R.randint(1, 2) for _ in range(n)]]),
        attention_head_dim=heads[0] if len(set(heads)) == 1 and R.random() < 0.5 else heads,
        transformer_layers_per_block=R.choice([1, [R.randint(1, 2) for _ in range(n)]]),
        cross_attention_dim=context_dim, norm_num_groups=groups, norm_eps=R.choice([1e-5, 1e-6]),
        use_linear_projection=R.random() < 0.5, upcast_attention=R.random() < 0.5,
        only_cross_attention=R.choice([False, False, True, [R.random() < 0.5 for _ in range(n)]]),
        flip_sin_to_cos=R.random() < 0.7, freq_shift=R.choice([0, 1]), downsample_padding=R.choice([0, 1]),
        mid_block_scale_factor=R.choice([1.0, 0.7]), resnet_out_scale_factor=R.choice([1.0, 1.3]),
        center_input_sample=R.random() < 0.1, time_embedding_dim=R.choice([None, 24]),
        conv_in_kernel=R.choice([3, 1]), conv_out_kernel=R.choice([3, 1]),
    )
    torch.manual_seed(k)
    return perturb(UNet2DConditionModel(**cfg).eval(), 200 + k), cfg


def vae(R, k):
    n = R.randint(2, 4)
    groups = R.choice([2, 4])
    cfg = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
               up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(groups * R.choice([2, 4]) for _ in range(n)),
               layers_per_block=R.randint(1, 2), latent_channels=4, norm_num_groups=groups, sample_size=32,
               scaling_factor=R.choice([0.18215, 0.5, 1.3]), mid_block_add_attention=R.random() < 0.7,
               use_quant_conv=R.random() < 0.8, use_post_quant_conv=R.random() < 0.8)
    torch.manual_seed(k)
    return perturb(AutoencoderKL(**cfg).eval(), 300 + k), cfg


def scheduler(R):
    zero_snr = R.random() < 0.2
    return dict(num_train_timesteps=R.choice([1000, 500]), beta_start=R.choice([0.00085, 0.0001]),
                beta_end=R.choice([0.012, 0.02]), beta_schedule=R.choice(["scaled_linear", "linear", "squaredcos_cap_v2"]),
                clip_sample=R.random() < 0.2, set_alpha_to_one=R.random() < 0.5, steps_offset=R.choice([0, 1]),
                prediction_type=R.choice(["epsilon", "v_prediction", "sample"]),
                # diffusers asks for trailing spacing with a zero terminal SNR
                timestep_spacing="trailing" if zero_snr else R.choice(["leading", "trailing", "linspace"]),
                rescale_betas_zero_snr=zero_snr)


def case(out, k):
    R = random.Random(k)
    te, text_cfg = text_encoder(R, k)
    un, unet_cfg = unet(R, k, text_cfg["hidden_size"])
    va, vae_cfg = vae(R, k)
    sched_cfg = scheduler(R)
    # SD 1.x pads with the end token, SD 2.x with "!"
    tok = CLIPTokenizer.from_pretrained(str(ROOT / "public/tokenizer"), pad_token=R.choice(["<|endoftext|>", "!"]))
    pipe = StableDiffusionPipeline(vae=va, text_encoder=te, tokenizer=tok, unet=un, scheduler=DDIMScheduler(**sched_cfg),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    d = out / f"case{k}"
    if d.exists():
        shutil.rmtree(d)
    pipe.save_pretrained(d)
    # Latent sides: a multiple of the U-Net's downsampling that keeps the image side a multiple of 8.
    f_vae = 2 ** (len(vae_cfg["block_out_channels"]) - 1)
    unit = math.lcm(2 ** (len(unet_cfg["block_out_channels"]) - 1), max(1, 8 // f_vae))
    h, w = unit * R.randint(1, 3), unit * R.randint(1, 3)
    steps, guidance = R.randint(2, 8), R.choice([1.0, 3.0, 7.5])
    prompt, negative = R.choice(PROMPTS), R.choice(["", R.choice(PROMPTS)])
    init = torch.randn(1, 4, h, w, generator=torch.Generator().manual_seed(k))
    lat = pipe(prompt, negative_prompt=negative, height=h * f_vae, width=w * f_vae, num_inference_steps=steps,
               guidance_scale=guidance, latents=init.clone(), output_type="latent", eta=0.0).images
    image = va.decode(lat / va.config.scaling_factor).sample
    save_file({"init": init.contiguous(), "latents": lat.contiguous(), "image": image.contiguous()}, str(d / "ref.safetensors"))
    (d / "case.json").write_text(json.dumps(dict(prompt=prompt, negative=negative, steps=steps, guidance=guidance,
                                                 unet=unet_cfg, vae=vae_cfg, scheduler=sched_cfg, text=text_cfg),
                                            default=str, indent=1, ensure_ascii=False))


def main():
    out, n = Path(sys.argv[1]), int(sys.argv[2])
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    for k in range(first, first + n):
        case(out, k)
        print(f"case{k} written", flush=True)


if __name__ == "__main__":
    main()
