"""Print the small reference values that unit tests hold inline (src/scheduler.rs, src/tokenizer.rs).

They are too small for a fixture file; this script is how they were obtained, so each can be re-checked
against the pinned diffusers/transformers (scripts/requirements-parity.txt):

    .venv-parity/bin/python scripts/reference_values.py
"""

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler
from transformers import CLIPTokenizer

ROOT = Path(__file__).resolve().parent.parent
SD15 = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


def show(name, value):
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    print(f"{name}: {json.dumps(value)}")


def scheduler_values():
    # sd15_schedule_matches_diffusers
    s = DDIMScheduler(**SD15, set_alpha_to_one=False, steps_offset=1)
    s.set_timesteps(50)
    show("sd15 timesteps[0], [49]", [int(s.timesteps[0]), int(s.timesteps[-1])])
    show("sd15 alphas_cumprod[0, 500, 999]", s.alphas_cumprod[[0, 500, 999]])
    # other_beta_schedules_match_diffusers
    cos = DDIMScheduler(beta_schedule="squaredcos_cap_v2")
    show("squaredcos_cap_v2 alphas_cumprod[0, 1, 500, 998]", cos.alphas_cumprod[[0, 1, 500, 998]])
    trained = DDIMScheduler(trained_betas=np.full(1000, 0.01))
    show("trained_betas 0.01 alphas_cumprod[0, 999]", trained.alphas_cumprod[[0, 999]].double())
    # zero_terminal_snr_matches_diffusers
    zsnr = dict(rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction")
    z = DDIMScheduler(**SD15, **zsnr)
    show("zero-snr alphas_cumprod[0, 1, 500, 998, 999]", z.alphas_cumprod[[0, 1, 500, 998, 999]].double())
    lin = DDIMScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02, **zsnr)
    show("zero-snr linear alphas_cumprod[0, 500]", lin.alphas_cumprod[[0, 500]])
    z.set_timesteps(10)
    show("zero-snr trailing 10 timesteps", z.timesteps)
    torch.manual_seed(0)
    x, v = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    show("step x", x.flatten())
    show("step v", v.flatten())
    show("step(v, 999, x).prev_sample", z.step(v, 999, x).prev_sample.flatten())
    # trailing_and_linspace_timesteps_round_as_numpy
    for spacing, n, steps in [("trailing", 1000, 16), ("trailing", 10, 4), ("linspace", 1000, 7),
                              ("linspace", 10, 5), ("linspace", 1000, 1)]:
        s = DDIMScheduler(num_train_timesteps=n, timestep_spacing=spacing)
        s.set_timesteps(steps)
        show(f"{spacing} n={n} steps={steps}", s.timesteps)


def tokenizer_values():
    # special_tokens_map_overrides_a_legacy_config_as_transformers_does
    src = ROOT / "tests" / "fixtures" / "tiny-sd" / "tokenizer"
    legacy = {"pad_token": "<|endoftext|>", "model_max_length": 77}
    special = {"pad_token": "!", "eos_token": {"content": "<|endoftext|>", "lstrip": False}}
    modern = {"pad_token": "<|endoftext|>", "added_tokens_decoder": {}}
    for name, config, smap in [("legacy", legacy, None), ("legacy + map", legacy, special),
                               ("modern + map", modern, special)]:
        with tempfile.TemporaryDirectory() as d:
            for f in ["vocab.json", "merges.txt"]:
                (Path(d) / f).write_bytes((src / f).read_bytes())
            (Path(d) / "tokenizer_config.json").write_text(json.dumps(config))
            if smap is not None:
                (Path(d) / "special_tokens_map.json").write_text(json.dumps(smap))
            tok = CLIPTokenizer.from_pretrained(d)
            ids = tok("a", padding="max_length", max_length=77).input_ids
            show(f"tokenizer {name}: last id (eos {tok.eos_token_id}, '!' {tok.convert_tokens_to_ids('!')})",
                 ids[-1])


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    scheduler_values()
    tokenizer_values()
