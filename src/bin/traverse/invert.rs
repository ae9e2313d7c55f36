//! `traverse invert`: a real image (the paper's Fig. 1) inverted to noise with the neutral prompt, then
//! prompt-swapped from there, with how faithfully the inversion regenerates it.

use std::path::PathBuf;

use burn::prelude::*;
use traverse::image::rgb_to_tensor;
use traverse::invert::invert;
use traverse::metrics::{psnr, rms_error};
use traverse::output::{Origin, Reconstruction};
use traverse::pipeline::LoadOptions;
use traverse::swap::{SwapSampler, SwapSettings};
use traverse::{Error, Result};

use crate::common::{ModelArgs, SwapArgs, bar, swap_and_save};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    swap: SwapArgs,
    /// The image to invert (resized to the model's size).
    #[arg(long)]
    image: PathBuf,
    /// Guidance used while inverting (1 = none, most faithful).
    #[arg(long, default_value_t = 1.0)]
    inversion_guidance: f64,
}

pub fn run(a: Args, device: &Device, load: LoadOptions) -> Result<()> {
    let (sd, load_s) = a.model.load(device, load)?;
    let img = image::open(&a.image).map_err(|e| Error::Image(format!("{}: {e}", a.image.display())))?.to_rgb8();
    let size = sd.default_image_size();
    sd.latent_size(size, size)?;
    let x = rgb_to_tensor(&img, size, size, device);
    let z0 = sd.vae.encode(x.clone());
    let s = &a.swap.resolved()?;
    let pb = bar(s.steps, "invert");
    let noise = invert(&sd, z0.clone(), &s.neutral, &s.negative, s.steps, a.inversion_guidance, |_, _| pb.inc(1))?;
    pb.finish();
    // Reconstruction: regenerate with the same prompt and guidance used for inversion.
    let settings = SwapSettings { steps: s.steps, guidance: a.inversion_guidance, swap_points: vec![], max_batch: 1 };
    let regen = SwapSampler::new(&sd, noise.clone(), &s.neutral, &[], &s.negative, &settings)?.run()?.neutral;
    let reconstruction = Reconstruction {
        latent_rms_error: rms_error(regen.clone(), z0.clone()),
        image_psnr_db: psnr(sd.vae.decode(regen), x.clone()),
        vae_only_psnr_db: psnr(sd.vae.decode(z0), x),
    };
    println!(
        "reconstruction: latent RMS error {:.4}, image PSNR {:.2} dB (VAE alone {:.2} dB)",
        reconstruction.latent_rms_error, reconstruction.image_psnr_db, reconstruction.vae_only_psnr_db
    );
    let origin = Origin::Inverted {
        image: a.image.display().to_string(),
        inversion_guidance: a.inversion_guidance,
        reconstruction,
    };
    swap_and_save(&sd, &a.model, noise, s, "invert", origin, load_s)
}
