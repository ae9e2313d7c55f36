//! Real images in (the paper's Fig. 1): VAE-encode an image, run DDIM backwards with the neutral prompt to
//! the noise that regenerates it, then prompt-swap from that noise.

use burn::prelude::*;

use crate::error::Result;
use crate::pipeline::StableDiffusion;

/// DDIM inversion (diffusers' `DDIMInverseScheduler`) of a scaled latent `z0` `[1, C, h, w]` with `prompt`,
/// over `steps` steps, guided by `guidance` (1.0 — no guidance — inverts most faithfully).
pub fn invert(
    sd: &StableDiffusion,
    z0: Tensor<4>,
    prompt: &str,
    negative: &str,
    steps: usize,
    guidance: f64,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Tensor<4>> {
    let ddim = sd.scheduler.build(steps)?;
    let cond = sd.embed(prompt)?;
    let uncond = sd.embed(negative)?;
    let mut x = z0;
    for (i, t) in ddim.inverse_timesteps().into_iter().enumerate() {
        let eps = sd.guided_prediction(x.clone(), cond.clone(), &uncond, t, guidance);
        x = ddim.inverse_step(eps, t, x)?;
        on_step(i + 1, steps);
    }
    Ok(x)
}
