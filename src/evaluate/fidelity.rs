//! What int8 costs: a model folder quantized ([`crate::quantize::quantize_folder`]), then the same images
//! drawn by the f32 and the int8 model, compared by PSNR and, with the phantom families' classifiers, by how
//! often the classifiers' decisions agree.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::Serialize;

use crate::classifier::Classifier;
use crate::error::{Error, Result};
use crate::metrics::{positive, psnr};
use crate::pipeline::{StableDiffusion, is_pipeline_weights};
use crate::quantize::quantize_folder;
use crate::rng::initial_latents;
use crate::swap::{SwapSampler, SwapSettings};
use crate::synthetic::{Kind, settings};

/// Guidance of the comparison images.
pub const CHECK_GUIDANCE: f64 = 7.5;

/// Which images compare the two models.
#[derive(Debug, Clone)]
pub struct FidelityCheck {
    /// Seeds `0..seeds` per prompt.
    pub seeds: u64,
    /// DDIM steps of each image.
    pub steps: usize,
    /// Prompts, when there are no classifiers.
    pub prompts: Vec<String>,
    /// A folder with the phantom families' classifiers (`chest/`, `derm/`): their settings' prompts are drawn
    /// instead, and each family's classifier judges both models' images.
    pub classifiers: Option<PathBuf>,
}

/// One weights file of the int8 folder.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// Path inside the folder.
    pub path: String,
    /// Size before.
    pub bytes_before: u64,
    /// Size in int8.
    pub bytes_int8: u64,
    /// Whether the pipeline loads it (other files, such as the recipe's contrastive checkpoint, are listed apart).
    pub loaded_by_pipeline: bool,
}

/// The image comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ImageCheck {
    /// Every prompt drawn.
    pub prompts: Vec<String>,
    /// DDIM steps.
    pub steps: usize,
    /// Guidance.
    pub guidance: f64,
    /// Seeds per prompt.
    pub seeds: u64,
    /// PSNR of each int8 image against its f32 twin, in dB.
    pub psnr_db: Vec<f64>,
    /// Their mean.
    pub mean_psnr_db: f64,
    /// Their minimum.
    pub min_psnr_db: f64,
    /// Classifier decisions compared.
    pub classifier_decisions: usize,
    /// Share of them on which the two models' images agree.
    pub classifier_agreement: Option<f64>,
}

/// What `quantization.json` says.
#[derive(Debug, Clone, Serialize)]
pub struct QuantizationReport {
    /// The f32 model folder.
    pub model: String,
    /// Bytes of the weights the pipeline loads, before.
    pub weights_bytes_f32: u64,
    /// And in int8.
    pub weights_bytes_int8: u64,
    /// Every quantized file.
    pub files: Vec<FileReport>,
    /// The int8 format.
    pub format: String,
    /// The image comparison.
    pub check: ImageCheck,
}

/// Writes an int8 copy of the diffusers folder `model` to `out` and compares the two; `progress(done, all)`
/// sees each compared image pair.
pub fn quantize_and_check(
    model: &Path,
    out: &Path,
    check: &FidelityCheck,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> Result<QuantizationReport> {
    if check.steps == 0 {
        return Err(Error::arg("the comparison needs at least one DDIM step"));
    }
    let files: Vec<FileReport> = quantize_folder(model, out)?
        .into_iter()
        .map(|f| FileReport {
            loaded_by_pipeline: is_pipeline_weights(&f.path),
            path: f.path,
            bytes_before: f.bytes_before,
            bytes_int8: f.bytes_int8,
        })
        .collect();
    let loaded = files.iter().filter(|f| f.loaded_by_pipeline);
    let (before, after) = loaded.fold((0, 0), |(b, a), f| (b + f.bytes_before, a + f.bytes_int8));
    let full = StableDiffusion::load(model, None, device)?;
    let int8 = StableDiffusion::load(out, None, device)?;
    // Prompt groups, each with the classifier (if any) that labels its images.
    let mut groups: Vec<(Vec<String>, Option<Classifier>)> = Vec::new();
    match &check.classifiers {
        Some(root) => {
            for kind in [Kind::Chest, Kind::Derm] {
                let prompts =
                    settings(kind)?.iter().flat_map(|s| s.prompts().map(String::from).collect::<Vec<_>>()).collect();
                groups.push((prompts, Some(Classifier::load_dir(&root.join(kind.name()), device)?)));
            }
        }
        None => groups.push((check.prompts.clone(), None)),
    }
    let size = full.default_image_size();
    let [h, w] = full.latent_size(size, size)?;
    let swap = SwapSettings { steps: check.steps, guidance: CHECK_GUIDANCE, swap_points: vec![], max_batch: 1 };
    let all = groups.iter().map(|g| g.0.len()).sum::<usize>() * check.seeds as usize;
    let (mut psnrs, mut agree, mut decisions) = (Vec::new(), 0usize, 0usize);
    for (prompts, classifier) in &groups {
        for prompt in prompts {
            for seed in 0..check.seeds {
                let init = initial_latents(seed, full.unet_config.in_channels, h, w, device);
                let image = |sd: &StableDiffusion| -> Result<Tensor<4>> {
                    let z = SwapSampler::new(sd, init.clone(), prompt, &[], "", &swap)?.run()?.neutral;
                    Ok(sd.vae.decode(z))
                };
                let (x, y) = (image(&full)?, image(&int8)?);
                psnrs.push(psnr(x.clone(), y.clone()) as f64);
                if let Some(classifier) = classifier {
                    let (p, q) = (classifier.classify(x)?, classifier.classify(y)?);
                    decisions += p[0].len();
                    agree += p[0].iter().zip(&q[0]).filter(|(p, q)| positive(**p) == positive(**q)).count();
                }
                progress(psnrs.len(), all);
            }
        }
    }
    let mean_psnr_db = psnrs.iter().sum::<f64>() / psnrs.len().max(1) as f64;
    Ok(QuantizationReport {
        model: model.display().to_string(),
        weights_bytes_f32: before,
        weights_bytes_int8: after,
        files,
        format: "int8-per-channel-symmetric (see src/quantize.rs)".into(),
        check: ImageCheck {
            prompts: groups.into_iter().flat_map(|g| g.0).collect(),
            steps: check.steps,
            guidance: CHECK_GUIDANCE,
            seeds: check.seeds,
            min_psnr_db: psnrs.iter().copied().fold(f64::INFINITY, f64::min),
            mean_psnr_db,
            psnr_db: psnrs,
            classifier_decisions: decisions,
            classifier_agreement: (decisions > 0).then(|| agree as f64 / decisions as f64),
        },
    })
}
