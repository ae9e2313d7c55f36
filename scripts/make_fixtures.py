"""Build the committed parity fixtures from the reference implementation (diffusers/transformers).

Run once (see README, "Parity fixtures"); the Rust tests then need no Python:

    python3 -m venv .venv-parity && .venv-parity/bin/pip install -r scripts/requirements-parity.txt
    .venv-parity/bin/python scripts/make_fixtures.py

Writes:
  public/tokenizer/            the real CLIP BPE tokenizer (49408 tokens) as SD1.5 ships it, plus tokenizer.json
  tests/fixtures/tiny-sd/      a tiny random SD-1.x pipeline in diffusers format (f32, fp16 variant, bf16 VAE)
  tests/fixtures/tiny-unet-v2/ a tiny SD-2.x-style U-Net (linear projections, v-prediction), sharded
  tests/fixtures/tiny-unet-v3/ a tiny U-Net with diffusers options past SD's (only_cross_attention, …);
                               `make_fixtures.py unet-v3` rewrites it alone
  tests/fixtures/*.safetensors inputs and reference outputs
  tests/fixtures/prompts.json  prompts whose token ids are checked against transformers' CLIPTokenizer
"""

import copy
import gzip
import json
import os
import shutil
import sys
from pathlib import Path

import open_clip
import torch
from diffusers import (
    AutoencoderKL,
    DDIMInverseScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from swap_reference import guided_eps, sd_scheduler, swap_run

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
TOK_DIR = ROOT / "public" / "tokenizer"

torch.set_grad_enabled(False)
torch.use_deterministic_algorithms(True)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_clip_tokenizer():
    """vocab.json + merges.txt exactly as OpenAI's CLIP derives them from its BPE file."""
    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    units = bytes_to_unicode()
    vocab = units + [u + "</w>" for u in units] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408
    if TOK_DIR.exists():
        shutil.rmtree(TOK_DIR)
    TOK_DIR.mkdir(parents=True)
    (TOK_DIR / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (TOK_DIR / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(str(TOK_DIR / "vocab.json"), str(TOK_DIR / "merges.txt"), model_max_length=77,
                        pad_token="<|endoftext|>")
    assert len(tok) == 49408, len(tok)
    tok.save_pretrained(TOK_DIR)
    return tok


PROMPTS = [
    # every prompt form in the paper
    "Chest x-ray with no significant findings",
    "Normal chest x-ray with no significant findings",
    "Chest X-ray of a subject with pleural effusion",
    "Chest x-ray showing Support Devices",
    "Chest x-ray showing Pleural Effusion",
    "A dermoscopic image with melanocytic nevus (NV)",
    "a dermoscopic image with melanoma showing hair",
    "a dermoscopic image with melanocytic nevus (NV) showing ink",
    "a dermoscopic image with melanoma (MEL) showing gel bubbles",
    "a dermoscopic image with melanocytic nevus (NV) showing ruler",
    "A dermoscopic image with melanoma (MEL)",
    "a dermoscopic image with melanocytic nevus (NV) showing hair",
    # edge cases
    "",
    " ",
    "   leading and trailing spaces   ",
    "UPPER case Mixed CASE",
    "punctuation!!! ... ??? ;:,",
    "numbers 12345 and 3.14159 and 1,000,000",
    "emoji 🫁 lungs and 🩻 x-ray",
    "accents: café naïve résumé Zürich",
    "中文 胸部X光 日本語 한국어",
    "tabs\tand\nnewlines\r\nmixed",
    "hyphenated-words and under_scores and slash/es",
    "it's don't can't won't they're",
    "<|startoftext|> literal special tokens <|endoftext|>",
    "a" * 300,
    " ".join(["word"] * 100),
    "pleural effusion " * 20,
    "Chest X-ray, PA view, of an elderly subject with bilateral pleural effusion and a pacemaker with leads",
    "dermoscopy: asymmetric lesion, irregular border, blue-white veil, atypical network",
    "$$$ %%% &&& *** ((( ))) [[[ ]]] {{{ }}}",
    "ﬁ ligature and full-width ＡＢＣ",
]


def check_tokenizer(tok):
    ids = tok(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    # Cross-check against OpenAI CLIP's own tokenizer as open_clip implements it (it pads with 0).
    oc = open_clip.tokenize(PROMPTS)
    for prompt, row_hf, row_oc in zip(PROMPTS, ids.tolist(), oc.tolist()):
        if "<|" in prompt or not prompt.isascii():
            # transformers (SD's tokenizer, our reference) treats literal special tokens as special and
            # normalizes with NFC, where open_clip runs ftfy; compare the plain-ASCII prompts only.
            continue
        n = row_oc.index(49407) + 1
        assert row_hf[:n] == row_oc[:n], (row_hf, row_oc)
    (FIX / "prompts.json").write_text(json.dumps(PROMPTS, ensure_ascii=False, indent=1))
    return ids


def perturb(module, seed):
    """Random weights everywhere, norms included, so a swapped or missed tensor changes the output."""
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        if p.dim() == 1:
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        else:
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 / fan_in) ** 0.5)
    return module


def tiny_text_encoder():
    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=16, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                         layer_norm_eps=1e-5, projection_dim=16, bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=1)
    torch.manual_seed(1)
    return perturb(CLIPTextModel(cfg).eval(), 11)


def tiny_unet():
    torch.manual_seed(2)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 24, 32), layers_per_block=2, attention_head_dim=[2, 4, 4],
        cross_attention_dim=16, norm_num_groups=8, norm_eps=1e-5,
    )
    return perturb(unet.eval(), 12)


def tiny_unet_v2():
    torch.manual_seed(3)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32), layers_per_block=1, attention_head_dim=[2, 4],
        transformer_layers_per_block=[2, 1], use_linear_projection=True, upcast_attention=True,
        cross_attention_dim=16, norm_num_groups=4, norm_eps=1e-6, flip_sin_to_cos=False, freq_shift=1,
        downsample_padding=1,
    )
    return perturb(unet.eval(), 13)


def tiny_unet_v3():
    """diffusers options past the SD presets: text in the first attention, per-block depths, 1×1 conv_in/out."""
    torch.manual_seed(5)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16, 24), layers_per_block=[1, 2, 1], attention_head_dim=[2, 2, 4],
        only_cross_attention=[False, True, True], cross_attention_dim=16, norm_num_groups=4,
        # diffusers passes resnet_out_scale_factor only to block types outside SD's, so it must change nothing
        mid_block_scale_factor=0.7, resnet_out_scale_factor=1.3, time_embedding_dim=24,
        conv_in_kernel=1, conv_out_kernel=1, downsample_padding=0,
    )
    return perturb(unet.eval(), 15)


def tiny_vae():
    torch.manual_seed(4)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4,
        sample_size=64, scaling_factor=0.18215,
    )
    return perturb(vae.eval(), 14)


def encode(pipe, prompt):
    ids = pipe.tokenizer(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    return pipe.text_encoder(ids)[0]


def write_unet_v3():
    unet3 = tiny_unet_v3()
    u3_dir = FIX / "tiny-unet-v3"
    if u3_dir.exists():
        shutil.rmtree(u3_dir)
    unet3.save_pretrained(u3_dir / "unet", safe_serialization=True)
    g = torch.Generator().manual_seed(4321)
    ref = {"unet.sample": torch.randn(2, 4, 8, 12, generator=g), "unet.encoder_hidden_states": torch.randn(2, 77, 16, generator=g)}
    ref["unet.timestep"] = torch.tensor([333], dtype=torch.int64)
    ref["unet.out"] = unet3(ref["unet.sample"], 333, encoder_hidden_states=ref["unet.encoder_hidden_states"]).sample
    save_file({k: v.contiguous() for k, v in ref.items()}, FIX / "tiny_unet_v3_reference.safetensors")


def main():
    FIX.mkdir(parents=True, exist_ok=True)
    if sys.argv[1:] == ["unet-v3"]:  # this fixture alone, leaving the others' bytes as they are
        write_unet_v3()
        return
    tok = build_clip_tokenizer()
    ids = check_tokenizer(tok)
    save_file({"input_ids": ids.to(torch.int64).contiguous()}, FIX / "prompt_ids.safetensors")

    # --- tiny SD-1.x pipeline in diffusers format ---
    pipe = StableDiffusionPipeline(vae=tiny_vae(), text_encoder=tiny_text_encoder(), tokenizer=tok, unet=tiny_unet(),
                                   scheduler=sd_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    sd_dir = FIX / "tiny-sd"
    if sd_dir.exists():
        shutil.rmtree(sd_dir)
    # diffusers-style fp16 variant of every model (from a copy: the f32 weights must stay unrounded), then
    # the f32 files, written last so that the configs say float32; and a bf16 copy of the VAE.
    copy.deepcopy(pipe).to(torch.float16).save_pretrained(sd_dir, safe_serialization=True, variant="fp16")
    pipe.save_pretrained(sd_dir, safe_serialization=True)
    vae_bf16 = {k: v.to(torch.bfloat16).contiguous() for k, v in pipe.vae.state_dict().items()}
    save_file(vae_bf16, sd_dir / "vae" / "diffusion_pytorch_model.bf16.safetensors")
    # The tokenizer folder of a diffusers SD checkpoint holds vocab.json/merges.txt, not tokenizer.json.
    (sd_dir / "tokenizer" / "tokenizer.json").unlink(missing_ok=True)
    for name in ["vocab.json", "merges.txt"]:
        shutil.copy(TOK_DIR / name, sd_dir / "tokenizer" / name)

    g = torch.Generator().manual_seed(1234)
    ref = {}
    # text encoder
    text_ids = ids[:6]
    ref["text.input_ids"] = text_ids.to(torch.int64)
    ref["text.hidden"] = pipe.text_encoder(text_ids)[0]
    # one U-Net call, batch 2, with guidance-style inputs
    sample = torch.randn(2, 4, 8, 8, generator=g)
    ehs = torch.randn(2, 77, 16, generator=g)
    ref["unet.sample"], ref["unet.encoder_hidden_states"] = sample, ehs
    ref["unet.timestep"] = torch.tensor([981], dtype=torch.int64)
    ref["unet.out"] = pipe.unet(sample, 981, encoder_hidden_states=ehs).sample
    # VAE encode (distribution parameters) and decode
    image = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    ref["vae.image"] = image
    dist = pipe.vae.encode(image).latent_dist
    ref["vae.mean"], ref["vae.logvar"] = dist.mean, dist.logvar
    latent = torch.randn(1, 4, 8, 8, generator=g)
    ref["vae.latent"] = latent
    ref["vae.decoded"] = pipe.vae.decode(latent).sample

    # a 10-step guided DDIM run through diffusers' own pipeline
    init = torch.randn(1, 4, 8, 8, generator=g)
    ref["ddim.init"] = init
    prompt = "Chest X-ray of a subject with pleural effusion"
    lat = pipe(prompt, negative_prompt="", num_inference_steps=10, guidance_scale=7.5, eta=0.0, latents=init.clone(),
               output_type="latent", height=64, width=64).images
    ref["ddim.latents"] = lat
    ref["ddim.image"] = pipe.vae.decode(lat / pipe.vae.config.scaling_factor).sample

    # prompt swap: 10 steps, swap points {2,4,6,8}
    neutral = encode(pipe, "Chest x-ray with no significant findings")
    style = encode(pipe, "Chest X-ray of a subject with pleural effusion")
    style2 = encode(pipe, "Chest x-ray showing Support Devices")
    uncond = encode(pipe, "")
    for k, v in swap_run(pipe.unet, sd_scheduler(), init, neutral, style, uncond, 7.5, 10, [2, 4, 6, 8]).items():
        ref[f"swap.style0.{k.split('.')[1]}"] = v
    for k, v in swap_run(pipe.unet, sd_scheduler(), init, neutral, style2, uncond, 7.5, 10, [2, 4, 6, 8]).items():
        ref[f"swap.style1.{k.split('.')[1]}"] = v

    # DDIM inversion of an encoded image with the neutral prompt (guidance 1), then regeneration
    z0 = dist.mean * pipe.vae.config.scaling_factor
    inv = DDIMInverseScheduler.from_config(pipe.scheduler.config)
    inv.set_timesteps(10)
    x = z0.clone()
    for t in inv.timesteps:
        x = inv.step(guided_eps(pipe.unet, x, t, neutral, uncond, 1.0), t, x).prev_sample
    ref["invert.z0"], ref["invert.noise"] = z0, x
    regen = swap_run(pipe.unet, sd_scheduler(), x, neutral, neutral, uncond, 1.0, 10, [])["swap.0"]
    ref["invert.regenerated"] = regen

    save_file({k: v.contiguous().float() if v.is_floating_point() else v.contiguous() for k, v in ref.items()},
              FIX / "tiny_sd_reference.safetensors")

    # --- SD-2.x-style U-Net: linear projections, per-block transformer depth, v-prediction, odd latent size ---
    unet2 = tiny_unet_v2()
    u2_dir = FIX / "tiny-unet-v2"
    if u2_dir.exists():
        shutil.rmtree(u2_dir)
    unet2.save_pretrained(u2_dir / "unet", safe_serialization=True, max_shard_size="150KB")
    sched2 = sd_scheduler("v_prediction")
    sched2.save_pretrained(u2_dir / "scheduler")
    ref2 = {}
    s2 = torch.randn(1, 4, 10, 6, generator=g)
    e2 = torch.randn(1, 77, 16, generator=g)
    ref2["unet.sample"], ref2["unet.encoder_hidden_states"] = s2, e2
    ref2["unet.timestep"] = torch.tensor([501], dtype=torch.int64)
    ref2["unet.out"] = unet2(s2, 501, encoder_hidden_states=e2).sample
    e2u = torch.randn(1, 77, 16, generator=g)
    ref2["ddim.uncond"] = e2u
    sched2.set_timesteps(10)
    x = s2.clone()
    for t in sched2.timesteps:
        x = sched2.step(guided_eps(unet2, x, t, e2, e2u, 5.0), t, x).prev_sample
    ref2["ddim.latents"] = x
    save_file({k: v.contiguous() for k, v in ref2.items()}, FIX / "tiny_unet_v2_reference.safetensors")
    write_unet_v3()
    print("fixtures written")


if __name__ == "__main__":
    main()
