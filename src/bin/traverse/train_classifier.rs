//! `traverse train-classifier`: an attribute classifier trained on phantoms (and, optionally, their
//! reconstructions by a model's autoencoder), scored on the held-out splits.

use std::path::PathBuf;
use std::time::Instant;

use burn::prelude::*;
use serde::Serialize;
use traverse::classifier::{Classifier, ClassifierConfig};
use traverse::pipeline::StableDiffusion;
use traverse::synthetic::{Kind, Split};
use traverse::train::{ClassifierTraining, LabelScore, LabeledImages, Source, agreement, score, train_classifier};
use traverse::{Error, Result};

use crate::common::{KindArg, bar};

#[derive(clap::Args)]
pub struct Args {
    /// Phantom family.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// Phantoms rendered (split 72.3 / 12.7 / 15.0 % as the paper's Table 3).
    #[arg(long, default_value_t = 3000)]
    n: usize,
    /// Dataset seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image size in pixels.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// A diffusers folder whose autoencoder also reconstructs every phantom: the classifier then trains
    /// (and is tested) on those reconstructions too, under the phantoms' ground-truth labels, so that it
    /// judges this decoder's images as well as phantoms.
    #[arg(long)]
    reconstruct_with: Option<PathBuf>,
    /// Write int8 weights (as `traverse quantize` does; what public/classifiers ships) and score those.
    #[arg(long)]
    int8: bool,
    /// Output folder (config.json, model.safetensors, loss.csv, scores.json).
    #[arg(long)]
    out: PathBuf,
}

/// `scores.json`.
#[derive(Serialize)]
struct Scores {
    kind: Kind,
    n: usize,
    seed: u64,
    size: usize,
    training: ClassifierTraining,
    seconds: f64,
    val: Vec<LabelScore>,
    test: Vec<LabelScore>,
    #[serde(skip_serializing_if = "Option::is_none")]
    int8_agreement_with_f32: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reconstructed_with: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    val_reconstructions: Option<Vec<LabelScore>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    test_reconstructions: Option<Vec<LabelScore>>,
}

pub fn run(a: Args, device: &Device) -> Result<()> {
    if a.n < 20 || !(32..=512).contains(&a.size) || a.steps == 0 || a.batch == 0 {
        return Err(Error::arg("need --n ≥ 20, --size in 32..=512, --steps ≥ 1, --batch ≥ 1"));
    }
    traverse::files::create_dir(&a.out)?;
    let t0 = Instant::now();
    let pb = bar(a.n, "render");
    let mut data = LabeledImages::render(a.kind.into(), a.n, a.seed, a.size, |_| pb.inc(1));
    pb.finish();
    if let Some(model) = &a.reconstruct_with {
        let sd = StableDiffusion::load(model, None, device)?;
        let pb = bar(a.n, "reconstruct");
        data.add_reconstructions(&sd.vae, device, |n| pb.inc(n as u64))?;
        pb.finish();
    }
    let config = ClassifierConfig {
        in_channels: data.channels(),
        image_size: a.size,
        widths: vec![8, 24, 48, 64, 96, 96],
        labels: data.names().to_vec(),
    };
    let settings = ClassifierTraining::new(a.steps, a.batch, a.lr, a.seed);
    let pb = bar(a.steps, "train");
    let mut log = String::from("step,loss\n");
    let model = train_classifier(&config, &data, &settings, device, |step, loss| {
        log.push_str(&format!("{step},{loss}\n"));
        pb.set_message(format!("loss {loss:.3}"));
        pb.inc(1);
    })?;
    pb.finish();
    let trained = Classifier { model, config };
    trained.save(&a.out, a.int8)?;
    traverse::files::write(&a.out.join("loss.csv"), log.as_bytes())?;
    // Scores are the saved model's: with --int8, the quantized one.
    let int8 = if a.int8 { Some(Classifier::load_dir(&a.out, device)?.model) } else { None };
    let saved = int8.as_ref().unwrap_or(&trained.model);
    let scored = |split, source| score(saved, &data, split, source, device);
    let recon = a.reconstruct_with.is_some();
    let (val, test) = (scored(Split::Val, Source::Phantom)?, scored(Split::Test, Source::Phantom)?);
    let scores = Scores {
        kind: a.kind.into(),
        n: a.n,
        seed: a.seed,
        size: a.size,
        seconds: t0.elapsed().as_secs_f64(),
        val,
        test,
        int8_agreement_with_f32: int8
            .as_ref()
            .map(|q| agreement(&trained.model, q, &data, Split::Test, device))
            .transpose()?,
        reconstructed_with: a.reconstruct_with.as_ref().map(|m| m.display().to_string()),
        val_reconstructions: recon.then(|| scored(Split::Val, Source::Reconstruction)).transpose()?,
        test_reconstructions: recon.then(|| scored(Split::Test, Source::Reconstruction)).transpose()?,
        training: settings,
    };
    traverse::files::write_json(&a.out.join("scores.json"), &scores)?;
    let mut tables = vec![("test split", &scores.test)];
    if let Some(recon) = &scores.test_reconstructions {
        tables.push(("test split, reconstructions", recon));
    }
    for (title, test) in tables {
        let row = |f: &dyn Fn(&LabelScore) -> String| test.iter().map(f).collect::<Vec<_>>().join(" | ");
        println!("| {title} | {} |", row(&|s| s.label.clone()));
        println!("|---|{}", "---|".repeat(test.len()));
        println!("| Accuracy | {} |", row(&|s| format!("{:.3}", s.accuracy)));
        println!("| F1-score | {} |", row(&|s| format!("{:.3}", s.f1)));
        println!("({} images)\n", test.first().map(|s| s.n).unwrap_or(0));
    }
    println!("model in {}", a.out.display());
    Ok(())
}
