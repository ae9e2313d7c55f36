//! The embedded default model's recipe, trained the paper's way on the phantoms: a byte-level BPE vocabulary
//! and a CLIP-architecture text encoder trained contrastively, an AutoencoderKL, then the U-Net on the frozen
//! latents and text embeddings. Every stage resumes from its checkpoint; the output folder is a diffusers
//! Stable Diffusion folder that [`StableDiffusion::load`](crate::pipeline::StableDiffusion::load) and
//! diffusers both read, with the recipe in `training.json` and each stage's runs in its `train_state.json`.

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::checkpoint::{Deadline, RunRecord, Saves, TrainState};
use super::data::{CaptionedImages, LatentDataset};
use super::{TextEncoderTraining, UnetTraining, VaeTraining, train_text_encoder, train_unet, train_vae};
use crate::clip::ClipTextConfig;
use crate::error::{Error, Result};
use crate::files;
use crate::scheduler::DdimConfig;
use crate::synthetic::Kind;
use crate::tokenizer::{ClipTokenizer, train_clip_bpe};
use crate::unet::{DownBlockType, PerBlock, UNet2DConditionConfig, UpBlockType};
use crate::vae::{AutoencoderKLConfig, DownEncoderBlockType, UpDecoderBlockType};

/// Model sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The browser-sized model: 8× VAE (3.9M parameters), 3-layer 192-wide text encoder, (64, 128, 192) U-Net.
    Mini,
    /// A very small model for tests of the recipe itself.
    Tiny,
}

impl Preset {
    /// The autoencoder for `size`-pixel images.
    pub fn vae(self, size: usize) -> AutoencoderKLConfig {
        let (channels, groups) = match self {
            Preset::Mini => (vec![32, 64, 128, 128], 16),
            Preset::Tiny => (vec![8, 8], 4),
        };
        AutoencoderKLConfig {
            down_block_types: vec![DownEncoderBlockType::DownEncoderBlock2D; channels.len()],
            up_block_types: vec![UpDecoderBlockType::UpDecoderBlock2D; channels.len()],
            block_out_channels: channels,
            norm_num_groups: groups,
            sample_size: size,
            ..Default::default()
        }
    }

    /// Target vocabulary size of the trained tokenizer.
    pub fn vocab_size(self) -> usize {
        match self {
            Preset::Mini => 1024,
            Preset::Tiny => 320,
        }
    }

    /// The text encoder for a vocabulary of `vocab` tokens.
    pub fn text(self, vocab: usize) -> ClipTextConfig {
        let (hidden, layers, heads) = match self {
            Preset::Mini => (192, 3, 4),
            Preset::Tiny => (16, 1, 2),
        };
        ClipTextConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: 4 * hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            ..Default::default()
        }
    }

    /// The U-Net for latents of `latent` pixels and text `context` wide.
    pub fn unet(self, latent: usize, context: usize) -> UNet2DConditionConfig {
        let (channels, groups, heads): (Vec<usize>, usize, usize) = match self {
            Preset::Mini => (vec![64, 128, 192], 32, 4),
            Preset::Tiny => (vec![8, 16], 4, 2),
        };
        let n = channels.len();
        let mut down = vec![DownBlockType::CrossAttnDownBlock2D; n - 1];
        down.push(DownBlockType::DownBlock2D);
        let mut up = vec![UpBlockType::UpBlock2D];
        up.extend(vec![UpBlockType::CrossAttnUpBlock2D; n - 1]);
        UNet2DConditionConfig {
            sample_size: Some(latent),
            block_out_channels: channels,
            down_block_types: down,
            up_block_types: up,
            layers_per_block: PerBlock::All(1),
            norm_num_groups: Some(groups),
            cross_attention_dim: PerBlock::All(context),
            attention_head_dim: PerBlock::All(heads),
            ..Default::default()
        }
    }

    /// Prompt forms the tokenizer must know besides the dataset's captions (the paper's neutral prompts).
    fn extra_prompts() -> Vec<String> {
        [
            "Normal chest x-ray with no significant findings",
            "Chest x-ray showing Pleural Effusion",
            "A dermoscopic image with melanocytic nevus (NV)",
        ]
        .map(String::from)
        .to_vec()
    }
}

/// Sizes, data and step counts of a training run: what `train-mini`'s flags set, saved as `training.json`.
/// The stages' other hyper-parameters are their settings' defaults, recorded with each checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recipe {
    /// Model sizes.
    pub preset: Preset,
    /// Image size in pixels (a multiple of the VAE's downsampling).
    pub size: usize,
    /// Phantoms in the training pool (alternating chest and dermoscopy).
    pub images: usize,
    /// Dataset and training seed.
    pub seed: u64,
    /// Text-encoder steps.
    pub text_steps: usize,
    /// Autoencoder steps.
    pub vae_steps: usize,
    /// U-Net steps.
    pub unet_steps: usize,
    /// U-Net AdamW learning rate (before the last quarter's decay); lower to fine-tune a resumed U-Net.
    pub unet_learning_rate: f64,
    /// Oversampling of rare captions in the U-Net's batches ([`UnetTraining::caption_balance`]).
    pub unet_caption_balance: f64,
    /// Share of the U-Net's draws given to chest phantoms, the rest to dermoscopy; `None` keeps the pool's.
    pub unet_chest_share: Option<f64>,
    /// Side of the random crops the autoencoder trains on (≤ `size`).
    pub vae_crop: usize,
    /// Weight of the autoencoder's edge loss ([`VaeTraining::edge_weight`]).
    pub vae_edge_weight: f64,
    /// Decoder-only steps after the autoencoder's ([`VaeTraining::decoder_steps`]).
    pub vae_decoder_steps: usize,
    /// Extra weight of attribute pixels in those steps ([`VaeTraining::attribute_weight`]).
    pub vae_attribute_weight: f64,
    /// Batch sizes of the three stages.
    pub batches: [usize; 3],
    /// Checkpoint interval.
    pub checkpoint_every: usize,
}

impl Recipe {
    /// Checks every setting before any stage starts (a bad share would otherwise surface hours later).
    pub fn validate(&self) -> Result<()> {
        let f = self.preset.vae(self.size).downsampling();
        let fits = |side: usize| side > 0 && side.is_multiple_of(f);
        if !fits(self.size) || !fits(self.vae_crop) || self.vae_crop > self.size {
            return Err(Error::arg(format!(
                "size {} and vae_crop {} must be multiples of {f} with vae_crop ≤ size",
                self.size, self.vae_crop
            )));
        }
        if self.images == 0 || self.checkpoint_every == 0 || self.batches.contains(&0) {
            return Err(Error::arg("images, checkpoint_every and every batch must be at least 1"));
        }
        if !(self.unet_learning_rate > 0.0 && self.unet_learning_rate.is_finite()) {
            return Err(Error::arg(format!("unet_learning_rate {} must be positive", self.unet_learning_rate)));
        }
        for (name, value) in
            [("unet_caption_balance", Some(self.unet_caption_balance)), ("unet_chest_share", self.unet_chest_share)]
        {
            if value.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                return Err(Error::arg(format!("{name} must lie in 0..=1")));
            }
        }
        Ok(())
    }
}

/// Stages of a run: the folder of each, and the checkpoint file that resumes it.
const STAGES: [(&str, &str); 3] = [
    ("text_encoder", "contrastive.safetensors"),
    ("vae", "diffusion_pytorch_model.safetensors"),
    ("unet", "diffusion_pytorch_model.safetensors"),
];

/// Prepares `out` to resume from a shipped model folder (`scripts/ship_model.sh` output, int8 or not) when
/// the training checkpoints are lost: the tokenizer and every stage that `out` lacks are copied (weights
/// dequantized), with the loss log and the step reached (and the runs behind it, when the shipped folder
/// kept them as `training/{stage}-state.json`), and the autoencoder's config with the latent scaling factor
/// the U-Net was trained with. The contrastive text/image pair is `training/contrastive.safetensors` there.
/// Stages already in `out` are left alone.
pub fn seed_from(shipped: &Path, out: &Path) -> Result<()> {
    let copy = |from: &Path, to: &Path| -> Result<()> {
        let bytes = crate::files::read(from)?;
        let bytes = if from.extension().is_some_and(|e| e == "safetensors") {
            crate::quantize::dequantize(&from.display().to_string(), &bytes)?
        } else {
            bytes
        };
        if let Some(dir) = to.parent() {
            files::create_dir(dir)?;
        }
        files::write(to, &bytes)
    };
    if !out.join("tokenizer/tokenizer.json").is_file() {
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            copy(&shipped.join("tokenizer").join(file), &out.join("tokenizer").join(file))?;
        }
    }
    for (stage, weights) in STAGES {
        if out.join(stage).join("train_state.json").is_file() {
            continue;
        }
        if stage == "unet" {
            // The latent scaling factor the shipped U-Net was trained with (see `trained_scaling_factor`).
            copy(&shipped.join("vae/config.json"), &out.join("vae/config.json"))?;
        }
        let log = shipped.join("training").join(format!("{stage}-loss.csv"));
        let text = files::read_text(&log)?;
        let last = text.lines().filter_map(|l| l.split_once(',')?.0.parse::<usize>().ok()).max();
        let step = last.map_or(0, |s| s + 1);
        let kept = shipped.join("training").join(format!("{stage}-state.json"));
        let runs: Vec<RunRecord> = if kept.is_file() { TrainState::read(&kept)?.runs } else { Vec::new() };
        let source = if stage == "text_encoder" {
            copy(&shipped.join(stage).join("model.safetensors"), &out.join(stage).join("model.safetensors"))?;
            shipped.join("training").join(weights)
        } else {
            shipped.join(stage).join(weights)
        };
        copy(&source, &out.join(stage).join(weights))?;
        copy(&log, &out.join(stage).join("loss.csv"))?;
        files::write_json(&out.join(stage).join("train_state.json"), &TrainState { step, runs, optimizer: None })?;
    }
    Ok(())
}

/// The latent scaling factor in `out/vae/config.json` when the U-Net in `out` has begun training on it, read
/// by the loader's own parser, so it is the factor the pipeline samples with (SD's 0.18215 when the config
/// names none, as in diffusers).
fn trained_scaling_factor(out: &Path) -> Result<Option<f64>> {
    let config = out.join("vae/config.json");
    if !out.join("unet/train_state.json").is_file() || !config.is_file() {
        return Ok(None);
    }
    let factor = AutoencoderKLConfig::from_json(&files::read_text(&config)?)?.scaling_factor;
    if factor.is_finite() && factor > 0.0 {
        Ok(Some(factor))
    } else {
        Err(Error::config("vae", format!("{} has scaling_factor {factor}, not a positive number", config.display())))
    }
}

/// How a [`train`] run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trained {
    /// Every stage reached its last step.
    Complete,
    /// The deadline passed: `stage` saved where it was, and the same call again resumes there.
    Stopped {
        /// The stage that was training.
        stage: &'static str,
    },
}

/// Whether the stage folder `dir` has saved `steps` steps (a stage of no steps has nothing to save).
fn finished(dir: &Path, steps: usize) -> Result<bool> {
    let state = dir.join("train_state.json");
    Ok(steps == 0 || (state.is_file() && TrainState::read(&state)?.step >= steps))
}

/// Runs (or resumes) every stage into the diffusers folder `out`, stopping at a save once `deadline` has
/// passed. `progress(stage, step, loss)` sees each step.
pub fn train(
    recipe: &Recipe,
    device: &Device,
    out: &Path,
    deadline: Deadline,
    mut progress: impl FnMut(&str, usize, f32),
) -> Result<Trained> {
    let r = recipe;
    r.validate()?;
    let f = r.preset.vae(r.size).downsampling();
    // Read before the autoencoder stage rewrites its config.
    let kept_scaling = trained_scaling_factor(out)?;
    files::write_json(&out.join("training.json"), recipe)?;
    let pool = CaptionedImages::render(r.images, r.seed, r.size);
    let texts: Vec<String> = pool.texts().iter().map(|(t, _)| t.clone()).collect();

    // Tokenizer: trained once, then reused.
    let tok_path = out.join("tokenizer/tokenizer.json");
    if !tok_path.is_file() {
        let corpus: Vec<String> = texts.iter().cloned().chain(Preset::extra_prompts()).collect();
        let json = train_clip_bpe(&corpus, r.preset.vocab_size())?;
        files::create_dir(&out.join("tokenizer"))?;
        files::write(&tok_path, json.as_bytes())?;
        files::write_json(
            &out.join("tokenizer/tokenizer_config.json"),
            &json!({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
                    "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}),
        )?;
    }
    let tokenizer = ClipTokenizer::from_dir(&out.join("tokenizer"))?;

    let text_config = r.preset.text(tokenizer.vocab_size());
    let text_settings = TextEncoderTraining::new(r.text_steps, r.batches[0], r.seed, r.checkpoint_every);
    let text = train_text_encoder(
        &text_config,
        &tokenizer,
        &pool,
        &text_settings,
        device,
        Saves::to(&out.join("text_encoder")).until(deadline),
        |s, l| progress("text_encoder", s, l),
    )?;
    if !finished(&out.join("text_encoder"), r.text_steps)? {
        return Ok(Trained::Stopped { stage: "text_encoder" });
    }

    let mut vae_config = r.preset.vae(r.size);
    let vae_settings = VaeTraining::new(
        r.vae_steps,
        r.batches[1],
        r.vae_crop,
        r.vae_edge_weight,
        r.vae_decoder_steps,
        r.vae_attribute_weight,
        r.seed,
        r.checkpoint_every,
    );
    let vae_dir = out.join("vae");
    let vae = train_vae(&vae_config, &pool, &vae_settings, device, Saves::to(&vae_dir).until(deadline), |s, l| {
        progress("vae", s, l)
    })?;
    if !finished(&vae_dir, r.vae_steps + r.vae_decoder_steps)? {
        return Ok(Trained::Stopped { stage: "vae" });
    }

    // Latents of the pool, and the scaling factor that gives them unit variance (as SD's 0.18215 does).
    let (h, c) = (r.size / f, vae_config.latent_channels);
    let mut means = Vec::with_capacity(pool.images().len());
    for chunk in pool.images().chunks(16) {
        let x: Vec<f32> = chunk.iter().flat_map(|image| image.pixels.iter().copied()).collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [chunk.len(), 3, r.size, r.size]), device);
        let m = crate::readback::values(vae.encode_distribution(x).0)?;
        means.extend(m.chunks(c * h * h).map(|s| s.to_vec()));
    }
    // Once the U-Net has trained on scaled latents, their scale is part of it: a resumed run (a larger pool, a
    // dequantized encoder, a decoder-only continuation) keeps the factor instead of recomputing it.
    vae_config.scaling_factor = match kept_scaling {
        Some(kept) => kept,
        None => {
            let all: Vec<f64> = means.iter().flatten().map(|&v| v as f64).collect();
            let mean = all.iter().sum::<f64>() / all.len() as f64;
            let std = (all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64).sqrt();
            1.0 / std.max(1e-6)
        }
    };
    files::write_json(&out.join("vae/config.json"), &super::diffusers_config("AutoencoderKL", &vae_config)?)?;

    let embed = |prompt: &str| -> Result<Vec<f32>> {
        let ids: Vec<i64> = tokenizer.encode(prompt)?.iter().map(|&i| i as i64).collect();
        let n = ids.len();
        crate::readback::values(text.forward(Tensor::from_data(TensorData::new(ids, [1, n]), device)))
    };
    let scale = vae_config.scaling_factor as f32;
    let samples = means
        .into_iter()
        .map(|m| m.into_iter().map(|v| v * scale).collect())
        .zip(pool.images().iter().map(|image| image.caption))
        .collect();
    let captions = texts.iter().map(|t| embed(t)).collect::<Result<_>>()?;
    let groups = pool.texts().iter().map(|&(_, kind)| kind as usize).collect();
    let context = [tokenizer.max_length(), text_config.hidden_size];
    let data = LatentDataset::new(samples, [c, h, h], captions, groups, embed("")?, context)?;
    let scheduler = DdimConfig::default();
    let unet_config = r.preset.unet(h, text_config.hidden_size);
    // Caption groups are the families' `Kind` indices.
    let group_shares = r.unet_chest_share.map(|chest| {
        let mut shares = vec![0.0; 2];
        shares[Kind::Chest as usize] = chest;
        shares[Kind::Derm as usize] = 1.0 - chest;
        shares
    });
    let unet_settings = UnetTraining::new(r.unet_steps, r.batches[2], r.unet_learning_rate, r.seed, r.checkpoint_every)
        .with_caption_balance(r.unet_caption_balance)
        .with_group_shares(group_shares);
    let unet_dir = out.join("unet");
    train_unet(
        &unet_config,
        &scheduler,
        &data,
        &unet_settings,
        device,
        Saves::to(&unet_dir).until(deadline),
        |s, l| progress("unet", s, l),
    )?;

    files::write_json(
        &out.join("scheduler/scheduler_config.json"),
        &super::diffusers_config("DDIMScheduler", &scheduler)?,
    )?;
    files::write_json(
        &out.join("model_index.json"),
        &json!({"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
                "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"], "safety_checker": [null, null],
                "feature_extractor": [null, null], "requires_safety_checker": false}),
    )?;
    // A stopped U-Net leaves a loadable folder too, so a run can be sampled mid-way.
    Ok(if finished(&unet_dir, r.unet_steps)? { Trained::Complete } else { Trained::Stopped { stage: "unet" } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_scaling_factor_is_the_one_the_loader_samples_with() {
        let dir = std::env::temp_dir().join(format!("traverse-scaling-{}", std::process::id()));
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("vae/config.json", r#"{"scaling_factor": 0.3}"#);
        // No U-Net training yet: nothing to keep.
        assert_eq!(trained_scaling_factor(&dir).unwrap(), None);
        write("unet/train_state.json", "{}");
        assert_eq!(trained_scaling_factor(&dir).unwrap(), Some(0.3));
        // A config naming none samples with SD's default, as diffusers does.
        write("vae/config.json", "{}");
        assert_eq!(trained_scaling_factor(&dir).unwrap(), Some(0.18215));
        for bad in [r#"{"scaling_factor": -1.0}"#, r#"{"scaling_factor": 0}"#, r#"{"scaling_factor": "x"}"#] {
            write("vae/config.json", bad);
            assert!(trained_scaling_factor(&dir).is_err(), "{bad}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
