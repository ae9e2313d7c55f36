"""The paper's prompt swap written plainly with diffusers' parts, the reference our sampler is held to: the
parity fixtures (make_fixtures.py) and the trajectory benchmark (bench_reference.py) both run it."""

import torch
from diffusers import DDIMScheduler

# Where the paper swaps, of 50 DDIM steps (src/swap.rs: PAPER_SWAP_POINTS).
PAPER_SWAP_POINTS = [5, 10, 15, 20, 25, 30, 35, 40, 45]


def sd_scheduler(prediction_type="epsilon"):
    """DDIM with Stable Diffusion 1.5's scheduler settings."""
    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)


def guided_eps(unet, z, t, cond, uncond, scale):
    """Classifier-free guidance as StableDiffusionPipeline does it: both halves in one batch."""
    if scale == 1.0:
        return unet(z, t, encoder_hidden_states=cond).sample
    out = unet(torch.cat([z, z]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
    u, c = out.chunk(2)
    return u + scale * (c - u)


def swap_run(unet, sched, z, neutral, style, uncond, scale, steps, swap_points):
    """Each image on its own: neutral prompt for the first steps-t steps, style for the last t. Swap point 0
    is the neutral image."""
    sched.set_timesteps(steps)
    out = {}
    for t_swap in [0] + swap_points:
        x = z.clone()
        for i, t in enumerate(sched.timesteps):
            cond = neutral if i < steps - t_swap else style
            x = sched.step(guided_eps(unet, x, t, cond, uncond, scale), t, x).prev_sample
        out[f"swap.{t_swap}"] = x
    return out
