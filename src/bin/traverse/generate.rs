//! `traverse generate`: a neutral image and its prompt-swap trajectories from a seed (or saved noise).

use std::path::PathBuf;

use burn::prelude::*;
use traverse::Result;
use traverse::output::{Origin, read_latents};
use traverse::pipeline::LoadOptions;
use traverse::rng::initial_latents;

use crate::common::{ModelArgs, SwapArgs, swap_and_save};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    swap: SwapArgs,
    /// Noise seed (portable: the same seed gives the same noise everywhere).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image size in pixels (default: the model's native size).
    #[arg(long)]
    size: Option<usize>,
    /// Start from these initial latents (`init` tensor, [1, C, h, w]) instead of the seed's noise.
    #[arg(long)]
    init_latents: Option<PathBuf>,
}

pub fn run(a: Args, device: &Device, load: LoadOptions) -> Result<()> {
    let (sd, load_s) = a.model.load(device, load)?;
    let size = a.size.unwrap_or_else(|| sd.default_image_size());
    let [h, w] = sd.latent_size(size, size)?;
    let init = match &a.init_latents {
        Some(p) => read_latents(p, &["init".to_string()], device)?.remove(0),
        None => initial_latents(a.seed, sd.unet_config.in_channels, h, w, device),
    };
    let origin = Origin::Noise {
        seed: a.init_latents.is_none().then_some(a.seed),
        init_latents: a.init_latents.as_ref().map(|p| p.display().to_string()),
        noise: traverse::rng::NOISE,
    };
    swap_and_save(&sd, &a.model, init, &a.swap, "generate", origin, load_s)
}
