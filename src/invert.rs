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
        x = ddim.inverse_step(eps, t, x);
        on_step(i + 1, steps);
    }
    Ok(x)
}

/// Root-mean-square difference of two tensors of the same shape.
pub fn rms_error<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).powf_scalar(2.0).mean().sqrt().into_scalar::<f32>()
}

/// Peak signal-to-noise ratio in dB of two images in [-1, 1].
pub fn psnr(a: Tensor<4>, b: Tensor<4>) -> f32 {
    let mse = (a.clamp(-1.0, 1.0) - b.clamp(-1.0, 1.0)).powf_scalar(2.0).mean().into_scalar::<f32>();
    // Peak-to-peak range is 2 in [-1, 1].
    10.0 * (4.0f32 / mse.max(1e-12)).log10()
}
