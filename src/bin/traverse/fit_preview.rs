//! `traverse fit-preview`: fits the latent → RGB preview the page draws while it denoises
//! ([`traverse::preview`]) to a model's own VAE, from images the model generates, and stores it in the folder.

use std::path::PathBuf;

use burn::prelude::*;
use traverse::pipeline::LoadOptions;
use traverse::preview::{FILE, LatentPreview};
use traverse::readback::values;
use traverse::rng::initial_latents;
use traverse::swap::{SwapSampler, SwapSettings};
use traverse::{Error, Result};

use crate::common::{ModelArgs, bar};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompts to generate from; each runs with every seed (default: the built-in examples' neutral prompts).
    #[arg(long = "prompt")]
    prompts: Vec<String>,
    /// Seeds per prompt.
    #[arg(long, default_value_t = 2)]
    seeds: u64,
    /// DDIM steps per image (the fit needs plausible images, not the best ones).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Where to write the preview (default: the model's `vae/latent_preview.json`).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: Args, device: &Device, load: LoadOptions) -> Result<()> {
    let (sd, _) = a.model.load(device, load)?;
    let prompts = if a.prompts.is_empty() {
        traverse::app::examples::all().into_iter().map(|e| e.setting.neutral).collect()
    } else {
        a.prompts.clone()
    };
    if a.seeds == 0 {
        return Err(Error::arg("--seeds must be at least 1"));
    }
    let size = sd.default_image_size();
    let [h, w] = sd.latent_size(size, size)?;
    let channels = sd.unet_config.in_channels;
    let settings = SwapSettings { steps: a.steps, swap_points: vec![], ..SwapSettings::default() };
    let pb = bar(prompts.len() * a.seeds as usize, "generate");
    let mut samples = Vec::new();
    for prompt in &prompts {
        for seed in 0..a.seeds {
            let init = initial_latents(seed, channels, h, w, device);
            let latent = SwapSampler::new(&sd, init, prompt, &[], "", &settings)?.run()?.neutral;
            let image = sd.vae.decode(latent.clone());
            samples.push((values(latent)?, values(image)?));
            pb.inc(1);
        }
    }
    pb.finish();
    let pairs: Vec<(&[f32], &[f32])> = samples.iter().map(|(z, x)| (z.as_slice(), x.as_slice())).collect();
    let f = sd.vae_config.downsampling();
    let preview = LatentPreview::fit(&pairs, channels, [h, w], f)?;
    let r2 = preview.r_squared(&pairs, [h, w], f)?;
    let false_colour = LatentPreview::channels(channels).r_squared(&pairs, [h, w], f)?;
    let out = a.out.unwrap_or_else(|| a.model.model.join(FILE));
    traverse::files::write_json(&out, &preview)?;
    println!(
        "fitted on {} images ({size}×{size} px): R² {r2:.3} of the decoded colours (false colour: {false_colour:.3}); wrote {}",
        samples.len(),
        out.display()
    );
    Ok(())
}
