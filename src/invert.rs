//! Real images in (the paper's Fig. 1): VAE-encode an image, run DDIM backwards with the neutral prompt to
//! the noise that regenerates it, then prompt-swap from that noise.

use burn::prelude::*;

use crate::error::Result;
use crate::pipeline::StableDiffusion;
use crate::scheduler::Ddim;

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
    let mut inversion = Inversion::new(sd, z0, prompt, negative, steps, guidance)?;
    while !inversion.is_done() {
        inversion.step()?;
        let (done, all) = inversion.progress();
        on_step(done, all);
    }
    Ok(inversion.latent().clone())
}

/// [`invert`] one step at a time, so a page can show progress and yield to the browser in between.
pub struct Inversion<'a> {
    sd: &'a StableDiffusion,
    ddim: Ddim,
    timesteps: Vec<usize>,
    cond: Tensor<3>,
    uncond: Tensor<3>,
    guidance: f64,
    latent: Tensor<4>,
    step: usize,
}

impl<'a> Inversion<'a> {
    /// Prepares the inversion of `z0` (see [`invert`]).
    pub fn new(
        sd: &'a StableDiffusion,
        z0: Tensor<4>,
        prompt: &str,
        negative: &str,
        steps: usize,
        guidance: f64,
    ) -> Result<Self> {
        let ddim = sd.scheduler.build(steps)?;
        Ok(Self {
            timesteps: ddim.inverse_timesteps(),
            ddim,
            cond: sd.embed(prompt)?,
            uncond: sd.embed(negative)?,
            sd,
            guidance,
            latent: z0,
            step: 0,
        })
    }

    /// Steps done, and in all.
    pub fn progress(&self) -> (usize, usize) {
        (self.step, self.timesteps.len())
    }

    /// Whether every step has run.
    pub fn is_done(&self) -> bool {
        self.step >= self.timesteps.len()
    }

    /// The latent so far: the noise once done.
    pub fn latent(&self) -> &Tensor<4> {
        &self.latent
    }

    /// Runs one inversion step (nothing once done).
    pub fn step(&mut self) -> Result<()> {
        let Some(&t) = self.timesteps.get(self.step) else { return Ok(()) };
        let x = self.latent.clone();
        let eps = self.sd.unet.guided(x.clone(), self.cond.clone(), &self.uncond, t, self.guidance);
        self.latent = self.ddim.inverse_step(eps, t, x)?;
        self.step += 1;
        Ok(())
    }
}
