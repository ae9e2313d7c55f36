//! The embedded default model's recipe, trained the paper's way on the phantoms: a byte-level BPE vocabulary
//! and a CLIP-architecture text encoder trained contrastively, an AutoencoderKL, then the U-Net on the frozen
//! latents and text embeddings. Every stage resumes from its checkpoint; the output folder is a diffusers
//! Stable Diffusion folder that [`StableDiffusion::load`](crate::pipeline::StableDiffusion::load) and
//! diffusers both read.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde_json::json;

use crate::clip::ClipTextConfig;
use crate::error::{Error, Result};
use crate::scheduler::DdimConfig;
use crate::synthetic::Kind;
use crate::tokenizer::{ClipTokenizer, train_clip_bpe};
use crate::train::{
    LatentDataset, TextEncoderTraining, UnetTraining, VaeTraining, render_captioned, train_text_encoder, train_unet,
    train_vae,
};
use crate::unet::{PerBlock, UNet2DConditionConfig};
use crate::vae::AutoencoderKLConfig;

/// Model sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            down_block_types: vec!["DownEncoderBlock2D".into(); channels.len()],
            up_block_types: vec!["UpDecoderBlock2D".into(); channels.len()],
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
        let mut down = vec!["CrossAttnDownBlock2D".to_string(); n - 1];
        down.push("DownBlock2D".into());
        let mut up = vec!["UpBlock2D".to_string()];
        up.extend(vec!["CrossAttnUpBlock2D".to_string(); n - 1]);
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

/// Sizes, data and step counts of a training run.
#[derive(Debug, Clone)]
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

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    }
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap_or_default())
        .map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// The error for an I/O failure on `path`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
}

/// Stages of a run: the folder of each, and the checkpoint file that resumes it.
const STAGES: [(&str, &str); 3] = [
    ("text_encoder", "contrastive.safetensors"),
    ("vae", "diffusion_pytorch_model.safetensors"),
    ("unet", "diffusion_pytorch_model.safetensors"),
];

/// Prepares `out` to resume from a shipped model folder (`scripts/ship_model.sh` output, int8 or not) when
/// the training checkpoints are lost: the tokenizer and every stage that `out` lacks are copied (weights
/// dequantized), with the loss log and the step reached, and the autoencoder's config with the latent scaling
/// factor the U-Net was trained with. The contrastive text/image pair is
/// `training/contrastive.safetensors` there. Stages already in `out` are left alone.
pub fn seed_from(shipped: &Path, out: &Path) -> Result<()> {
    let copy = |from: &Path, to: &Path| -> Result<()> {
        let bytes = std::fs::read(from).map_err(io(from))?;
        let bytes = if from.extension().is_some_and(|e| e == "safetensors") {
            crate::quantize::dequantize(&from.display().to_string(), &bytes)?
        } else {
            bytes
        };
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::write(to, bytes).map_err(io(to))
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
        let text = std::fs::read_to_string(&log).map_err(io(&log))?;
        let last = text.lines().filter_map(|l| l.split_once(',')?.0.parse::<usize>().ok()).max();
        let step = last.map_or(0, |s| s + 1);
        let source = if stage == "text_encoder" {
            copy(&shipped.join(stage).join("model.safetensors"), &out.join(stage).join("model.safetensors"))?;
            shipped.join("training").join(weights)
        } else {
            shipped.join(stage).join(weights)
        };
        copy(&source, &out.join(stage).join(weights))?;
        copy(&log, &out.join(stage).join("loss.csv"))?;
        write_json(&out.join(stage).join("train_state.json"), &json!({ "step": step }))?;
    }
    Ok(())
}

/// Weight-space ensembling of a fine-tuned U-Net with the one it was fine-tuned from (WiSE-FT, Wortsman et al.
/// 2022): writes to `out`, which must not exist yet, a copy of the diffusers folder `tuned` whose U-Net
/// weights are (1 − weight) · base + weight · tuned, tensor by tensor. A fine-tune that gains on some
/// attributes and loses on others can keep much of both. int8 files (a shipped folder) are dequantized first;
/// both U-Nets must hold the same tensors. The text encoder and autoencoder are `tuned`'s, which a U-Net-only
/// fine-tune shares with `base`.
pub fn blend_unet(base: &Path, tuned: &Path, weight: f32, out: &Path) -> Result<()> {
    if !(0.0..=1.0).contains(&weight) {
        return Err(Error::arg(format!("the blend weight must be in 0..=1, got {weight}")));
    }
    if out.exists() {
        return Err(Error::arg(format!("{} exists; blend into a new folder", out.display())));
    }
    let unet = |dir: &Path| dir.join("unet/diffusion_pytorch_model.safetensors");
    let read = |path: PathBuf| -> Result<Vec<u8>> {
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        crate::quantize::dequantize(&path.display().to_string(), &bytes)
    };
    let blended = blend(&unet(tuned).display().to_string(), &read(unet(base))?, &read(unet(tuned))?, weight)?;
    copy_dir(tuned, out)?;
    std::fs::write(unet(out), blended).map_err(io(&unet(out)))
}

/// (1 − weight) · base + weight · tuned for every tensor of two safetensors files with the same tensors.
fn blend(what: &str, base: &[u8], tuned: &[u8], weight: f32) -> Result<Vec<u8>> {
    use safetensors::{Dtype, SafeTensors};
    let bad = |message: String| Error::Safetensors { what: what.to_string(), message };
    let (a, b) = (SafeTensors::deserialize(base), SafeTensors::deserialize(tuned));
    let (a, b) = (a.map_err(|e| bad(e.to_string()))?, b.map_err(|e| bad(e.to_string()))?);
    if a.len() != b.len() {
        return Err(bad(format!("the U-Nets hold {} and {} tensors", a.len(), b.len())));
    }
    let mut out = Vec::with_capacity(b.len());
    for (name, y) in b.tensors() {
        let x = a.tensor(&name).map_err(|_| bad(format!("tensor {name} is not in the base U-Net")))?;
        if x.shape() != y.shape() {
            return Err(bad(format!("tensor {name} has shape {:?} here, {:?} in the base", y.shape(), x.shape())));
        }
        let shape = y.shape().to_vec();
        let (x, y) = (crate::quantize::floats(what, &name, &x)?, crate::quantize::floats(what, &name, &y)?);
        let values = x.iter().zip(&y).flat_map(|(x, y)| ((1.0 - weight) * x + weight * y).to_le_bytes()).collect();
        out.push((name, Dtype::F32, shape, values));
    }
    crate::weights::serialize(what, out, None)
}

/// Copies the folder `from` (files and sub-folders) to `to`.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let path = entry.map_err(io(from))?.path();
        let target = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            std::fs::copy(&path, &target).map_err(io(&path))?;
        }
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
    let text = std::fs::read_to_string(&config).map_err(|source| Error::Io { path: config.clone(), source })?;
    let factor = AutoencoderKLConfig::from_json(&text)?.scaling_factor;
    if factor.is_finite() && factor > 0.0 {
        Ok(Some(factor))
    } else {
        Err(Error::config("vae", format!("{} has scaling_factor {factor}, not a positive number", config.display())))
    }
}

/// Runs (or resumes) every stage into the diffusers folder `out`. `progress(stage, step, loss)` sees each step.
pub fn train(recipe: &Recipe, device: &Device, out: &Path, mut progress: impl FnMut(&str, usize, f32)) -> Result<()> {
    let r = recipe;
    // Read before the autoencoder stage rewrites its config.
    let kept_scaling = trained_scaling_factor(out)?;
    let pool = render_captioned(r.images, r.seed, r.size, |_| {});

    // Tokenizer: trained once, then reused.
    let tok_path = out.join("tokenizer/tokenizer.json");
    if !tok_path.is_file() {
        let corpus: Vec<String> = pool.texts.iter().cloned().chain(Preset::extra_prompts()).collect();
        let json = train_clip_bpe(&corpus, r.preset.vocab_size())?;
        std::fs::create_dir_all(out.join("tokenizer"))
            .map_err(|source| Error::Io { path: out.join("tokenizer"), source })?;
        std::fs::write(&tok_path, json).map_err(|source| Error::Io { path: tok_path.clone(), source })?;
        write_json(
            &out.join("tokenizer/tokenizer_config.json"),
            &json!({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
                    "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}),
        )?;
    }
    let tokenizer = ClipTokenizer::from_dir(&out.join("tokenizer"))?;

    let text_config = r.preset.text(tokenizer.vocab_size());
    let text_settings = TextEncoderTraining {
        steps: r.text_steps,
        batch: r.batches[0],
        learning_rate: 5e-4,
        projection_dim: 64,
        seed: r.seed,
        checkpoint_every: r.checkpoint_every,
    };
    let text = train_text_encoder(
        &text_config,
        &tokenizer,
        &pool,
        &text_settings,
        device,
        &out.join("text_encoder"),
        |s, l| progress("text_encoder", s, l),
    )?;

    let mut vae_config = r.preset.vae(r.size);
    let vae_settings = VaeTraining {
        steps: r.vae_steps,
        batch: r.batches[1],
        crop: r.vae_crop,
        learning_rate: 4e-4,
        kl_weight: 1e-6,
        edge_weight: r.vae_edge_weight,
        decoder_steps: r.vae_decoder_steps,
        attribute_weight: r.vae_attribute_weight,
        seed: r.seed,
        checkpoint_every: r.checkpoint_every,
    };
    let vae = train_vae(&vae_config, &pool, &vae_settings, device, &out.join("vae"), |s, l| progress("vae", s, l))?;

    // Latents of the pool, and the scaling factor that gives them unit variance (as SD's 0.18215 does).
    let f = vae_config.downsampling();
    let (h, c) = (r.size / f, vae_config.latent_channels);
    let mut means = Vec::with_capacity(pool.pixels.len());
    for chunk in pool.pixels.chunks(16) {
        let x: Vec<f32> = chunk.iter().flatten().copied().collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [chunk.len(), 3, r.size, r.size]), device);
        let m = vae.encode_distribution(x).0.into_data().convert::<f32>();
        let m = m.as_slice::<f32>().map_err(|e| Error::Device(format!("{e:?}")))?;
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
    let mut vae_json = serde_json::to_value(&vae_config).map_err(|e| Error::config("vae", e))?;
    vae_json["_class_name"] = "AutoencoderKL".into();
    write_json(&out.join("vae/config.json"), &vae_json)?;

    let embed = |prompt: &str| -> Result<Vec<f32>> {
        let ids: Vec<i64> = tokenizer.encode(prompt)?.iter().map(|&i| i as i64).collect();
        let n = ids.len();
        let e = text.forward(Tensor::from_data(TensorData::new(ids, [1, n]), device)).into_data().convert::<f32>();
        e.as_slice::<f32>().map(|s| s.to_vec()).map_err(|e| Error::Device(format!("{e:?}")))
    };
    let scale = vae_config.scaling_factor as f32;
    let data = LatentDataset {
        samples: means
            .into_iter()
            .map(|m| m.into_iter().map(|v| v * scale).collect())
            .zip(pool.captions.iter().copied())
            .collect(),
        shape: [c, h, h],
        captions: pool.texts.iter().map(|t| embed(t)).collect::<Result<_>>()?,
        caption_groups: pool.text_kinds.iter().map(|&kind| kind as usize).collect(),
        uncond: embed("")?,
        context_shape: [tokenizer.max_length(), text_config.hidden_size],
    };
    let scheduler = DdimConfig::default();
    let unet_config = r.preset.unet(h, text_config.hidden_size);
    let unet_settings = UnetTraining {
        steps: r.unet_steps,
        batch: r.batches[2],
        learning_rate: r.unet_learning_rate,
        uncond_probability: 0.1,
        caption_balance: r.unet_caption_balance,
        // Caption groups are the families' `Kind` indices.
        group_shares: r.unet_chest_share.map(|chest| {
            let mut shares = vec![0.0; 2];
            shares[Kind::Chest as usize] = chest;
            shares[Kind::Derm as usize] = 1.0 - chest;
            shares
        }),
        seed: r.seed,
        checkpoint_every: r.checkpoint_every,
    };
    train_unet(&unet_config, &scheduler, &data, &unet_settings, device, &out.join("unet"), |s, l| {
        progress("unet", s, l)
    })?;

    let mut sched_json = serde_json::to_value(&scheduler).map_err(|e| Error::config("scheduler", e))?;
    sched_json["_class_name"] = "DDIMScheduler".into();
    write_json(&out.join("scheduler/scheduler_config.json"), &sched_json)?;
    write_json(
        &out.join("model_index.json"),
        &json!({"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
                "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"], "safety_checker": [null, null],
                "feature_extractor": [null, null], "requires_safety_checker": false}),
    )
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

    #[test]
    fn blend_unet_mixes_the_weights_and_copies_the_rest() {
        use safetensors::{Dtype, SafeTensors};
        let dir = std::env::temp_dir().join(format!("traverse-blend-{}", std::process::id()));
        let unet_file = |model: &str, values: &[f32], shape: Vec<usize>| {
            let path = dir.join(model).join("unet/diffusion_pytorch_model.safetensors");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let file = crate::weights::serialize("t", vec![("w".into(), Dtype::F32, shape, bytes)], None).unwrap();
            std::fs::write(path, file).unwrap();
        };
        let base: Vec<f32> = (0..2048).map(|i| (i % 7) as f32).collect();
        let tuned: Vec<f32> = (0..2048).map(|i| (i % 5) as f32 - 2.0).collect();
        unet_file("base", &base, vec![32, 64]);
        unet_file("tuned", &tuned, vec![32, 64]);
        std::fs::write(dir.join("tuned/model_index.json"), "{}").unwrap();
        blend_unet(&dir.join("base"), &dir.join("tuned"), 0.25, &dir.join("out")).unwrap();
        let bytes = std::fs::read(dir.join("out/unet/diffusion_pytorch_model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let w = crate::quantize::floats("t", "w", &st.tensor("w").unwrap()).unwrap();
        assert!(w.iter().zip(base.iter().zip(&tuned)).all(|(w, (x, y))| (w - (0.75 * x + 0.25 * y)).abs() < 1e-6));
        assert_eq!(std::fs::read_to_string(dir.join("out/model_index.json")).unwrap(), "{}");

        // An int8 base (a shipped folder) is dequantized first: within its rounding of the base.
        let path = dir.join("base/unet/diffusion_pytorch_model.safetensors");
        std::fs::write(&path, crate::quantize::quantize("t", &std::fs::read(&path).unwrap()).unwrap()).unwrap();
        blend_unet(&dir.join("base"), &dir.join("tuned"), 0.5, &dir.join("int8")).unwrap();
        let bytes = std::fs::read(dir.join("int8/unet/diffusion_pytorch_model.safetensors")).unwrap();
        let w =
            crate::quantize::floats("t", "w", &SafeTensors::deserialize(&bytes).unwrap().tensor("w").unwrap()).unwrap();
        assert!(w.iter().zip(base.iter().zip(&tuned)).all(|(w, (x, y))| (w - 0.5 * (x + y)).abs() < 0.05));

        // Refused, with nothing written: an existing output, a weight outside 0..=1, other tensors.
        assert!(blend_unet(&dir.join("base"), &dir.join("tuned"), 0.5, &dir.join("out")).is_err());
        assert!(blend_unet(&dir.join("base"), &dir.join("tuned"), 1.5, &dir.join("new")).is_err());
        unet_file("base", &base, vec![64, 32]);
        assert!(blend_unet(&dir.join("base"), &dir.join("tuned"), 0.5, &dir.join("new")).is_err());
        assert!(!dir.join("new").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
