//! `traverse train-mini`: train (or resume) the embedded model on the phantoms, stage by stage.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use burn::prelude::*;
use traverse::train::{Deadline, Preset, Recipe, Trained, seed_from, train};
use traverse::{Error, Result};

use crate::common::{positive, unit_interval};

#[derive(clap::Args)]
pub struct Args {
    /// Output: a diffusers Stable Diffusion folder (every stage resumes from what is there).
    #[arg(long, default_value = "train/mini")]
    out: PathBuf,
    /// Image size in pixels (a multiple of 8).
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Phantoms in the training pool (alternating chest and dermoscopy).
    #[arg(long, default_value_t = 2000)]
    images: usize,
    /// Dataset and training seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Text-encoder (contrastive) steps, batch 32.
    #[arg(long, default_value_t = 1500)]
    text_steps: usize,
    /// Autoencoder steps, batch 8.
    #[arg(long, default_value_t = 3000)]
    vae_steps: usize,
    /// Side of the random crops the autoencoder trains on (a multiple of 8, at most --size).
    #[arg(long, default_value_t = 64)]
    vae_crop: usize,
    /// Weight of the autoencoder's edge loss (L1 on the reconstruction error's pixel differences; 0: off).
    #[arg(long, default_value_t = 1.0)]
    vae_edge_weight: f64,
    /// Decoder-only autoencoder steps after --vae-steps (the encoder, and so every latent, stays fixed).
    #[arg(long, default_value_t = 0)]
    vae_decoder_steps: usize,
    /// In the decoder-only steps, extra loss weight of the pixels an attribute draws (0: unweighted).
    #[arg(long, default_value_t = 10.0)]
    vae_attribute_weight: f64,
    /// U-Net steps, of --unet-batch latents each.
    #[arg(long, default_value_t = 20000)]
    unet_steps: usize,
    /// Latents per U-Net step (a GPU keeps busy with 64 or more; the shipped model trained with 16).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    unet_batch: u64,
    /// U-Net learning rate, decaying to a tenth over the last quarter of --unet-steps (the schedule is a
    /// function of the step, so a resumed run follows it; lower it to fine-tune a finished U-Net further).
    #[arg(long, default_value_t = 2e-4, value_parser = positive)]
    unet_lr: f64,
    /// Oversample rare captions in the U-Net's batches: each image is drawn with weight (how many images share
    /// its caption)^-B, from 0 (every image alike) to 1 (every caption of a family alike); each phantom family
    /// keeps its share of the draws (see --unet-chest-share).
    #[arg(long, default_value_t = 0.0, value_parser = unit_interval)]
    unet_caption_balance: f64,
    /// Share of the U-Net's draws given to chest phantoms (dermoscopy gets the rest), in 0..=1; by default each
    /// family keeps its share of the pool (half each).
    #[arg(long, value_parser = unit_interval)]
    unet_chest_share: Option<f64>,
    /// Checkpoint interval in steps.
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    /// A shipped model folder (e.g. public/model) to resume from when --out has lost its checkpoints.
    #[arg(long)]
    resume_from: Option<PathBuf>,
    /// Stop after this many seconds, at a save of the stage in training: the same command again resumes
    /// there (for a machine lent for a fixed time).
    #[arg(long, value_parser = positive)]
    time_limit: Option<f64>,
}

pub fn run(a: Args, device: &Device) -> Result<()> {
    let recipe = Recipe {
        preset: Preset::Mini,
        size: a.size,
        images: a.images,
        seed: a.seed,
        text_steps: a.text_steps,
        vae_steps: a.vae_steps,
        vae_crop: a.vae_crop,
        vae_edge_weight: a.vae_edge_weight,
        vae_decoder_steps: a.vae_decoder_steps,
        vae_attribute_weight: a.vae_attribute_weight,
        unet_steps: a.unet_steps,
        unet_learning_rate: a.unet_lr,
        unet_caption_balance: a.unet_caption_balance,
        unet_chest_share: a.unet_chest_share,
        batches: [32, 8, a.unet_batch as usize],
        checkpoint_every: a.checkpoint_every,
    };
    if let Some(shipped) = &a.resume_from {
        seed_from(shipped, &a.out)?;
    }
    let deadline = match a.time_limit {
        Some(secs) => {
            Deadline::after(Duration::try_from_secs_f64(secs).map_err(|e| Error::arg(format!("--time-limit: {e}")))?)
        }
        None => Deadline::NEVER,
    };
    // Per stage: when its first step ended, and which step that was (timing starts after the warm-up step).
    let mut first = (String::new(), Instant::now(), 0usize);
    let trained = train(&recipe, device, &a.out, deadline, |stage, step, loss| {
        if first.0 != stage {
            first = (stage.to_string(), Instant::now(), step);
        } else if (step + 1) % 10 == 0 {
            let per = first.1.elapsed().as_secs_f64() / (step - first.2) as f64;
            eprintln!("{stage} step {} loss {loss:.5} ({per:.2} s/step)", step + 1);
        }
    })?;
    match trained {
        Trained::Complete => {
            println!("trained model in {} (load it with --model {})", a.out.display(), a.out.display());
        }
        Trained::Stopped { stage } => println!(
            "stopped by --time-limit in the {stage} stage, saved in {}; the same command again resumes there",
            a.out.join(stage).display()
        ),
    }
    Ok(())
}
