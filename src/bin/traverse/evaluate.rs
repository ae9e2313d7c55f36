//! `traverse evaluate`: the paper's Table 2 (CFRT, LPIPS), Fig. 5 (direction cosines) and Fig. 4 (t-SNE of
//! latents) on a phantom family, and the autoencoder's ceiling.

use std::path::PathBuf;

use burn::prelude::*;
use traverse::Result;
use traverse::bezier;
use traverse::classifier::Classifier;
use traverse::evaluate::report::{CeilingReport, EvaluationReport, ceiling_tables, neighbour_lines, score_tables};
use traverse::evaluate::{Evaluation, autoencoder_ceiling, evaluate};
use traverse::files::{save_png, write_json};
use traverse::image::{contact_sheet, tensor_to_rgb};
use traverse::lpips::Lpips;
use traverse::pipeline::LoadOptions;
use traverse::swap::SwapSettings;
use traverse::synthetic::{Kind, settings};
use traverse::weights::WeightFile;

use crate::common::{KindArg, ModelArgs, bar};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Phantom family: its prompts and classifier.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// Classifier folder (default: public/classifiers/<kind>).
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Neutral images (seeds --seed, --seed + 1, …) per setting.
    #[arg(long, default_value_t = 20)]
    subjects: usize,
    /// First seed.
    #[arg(long, default_value_t = 1000)]
    seed: u64,
    /// DDIM steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 7.5)]
    guidance: f64,
    /// Swap points.
    #[arg(long, value_delimiter = ',', default_values_t = traverse::swap::PAPER_SWAP_POINTS)]
    swap_points: Vec<usize>,
    /// Bézier control points per trajectory.
    #[arg(long, default_value_t = bezier::PAPER_CONTROL_POINTS)]
    controls: usize,
    /// Interpolated images per trajectory (0: skip).
    #[arg(long, default_value_t = bezier::PAPER_SAMPLES)]
    interpolations: usize,
    /// Phantoms (dataset --seed) checked through the autoencoder alone: how often the classifier still sees
    /// each attribute after encode + decode, the ceiling for generated images (0: skip).
    #[arg(long, default_value_t = 32)]
    ceiling_subjects: usize,
    /// PNG of example phantoms beside their reconstructions, one row per attribute.
    #[arg(long)]
    ceiling_sheet: Option<PathBuf>,
    /// LPIPS weights (AlexNet + LPIPS heads with the `lpips` package's names, from
    /// scripts/export_lpips.py): adds Table 2's LPIPS of swap and interpolated images from the neutral one.
    #[arg(long)]
    lpips: Option<PathBuf>,
    /// SVG of each setting's t-SNE map of latents (Fig. 4); the coordinates are in the report either way.
    #[arg(long)]
    tsne_svg: Option<PathBuf>,
    /// Report (JSON).
    #[arg(long, default_value = "evaluation.json")]
    out: PathBuf,
}

pub fn run(a: Args, device: &Device, load: LoadOptions) -> Result<()> {
    let (sd, _) = a.model.load(device, load)?;
    let kind = Kind::from(a.kind);
    let dir = a.classifier.clone().unwrap_or_else(|| PathBuf::from("public/classifiers").join(kind.name()));
    let classifier = Classifier::load_dir(&dir, device)?;
    let swap = SwapSettings { steps: a.steps, guidance: a.guidance, swap_points: a.swap_points.clone(), max_batch: 16 };
    let eval = Evaluation {
        subjects: a.subjects,
        seed: a.seed,
        swap: swap.validated()?,
        controls: a.controls,
        interpolations: a.interpolations,
    };
    let ceiling = if a.ceiling_subjects == 0 {
        None
    } else {
        // Contact sheet rows: for each attribute, up to 4 phantoms, then their reconstructions.
        let mut sheet = Vec::new();
        let attributes = autoencoder_ceiling(&sd, &classifier, kind, a.ceiling_subjects, a.seed, |_, x, r| {
            let n = if a.ceiling_sheet.is_some() { x.dims()[0].min(4) } else { 0 };
            for t in [x, r] {
                for j in 0..n {
                    sheet.push(tensor_to_rgb(t.clone().narrow(0, j, 1))?);
                }
            }
            Ok(())
        })?;
        if let Some(path) = &a.ceiling_sheet {
            save_png(&contact_sheet(&sheet, 2 * a.ceiling_subjects.min(4)), path)?;
        }
        print!("{}", ceiling_tables(&attributes));
        Some(CeilingReport { subjects: a.ceiling_subjects, dataset_seed: a.seed, attributes })
    };
    let lpips = a.lpips.as_ref().map(|p| Lpips::load(WeightFile::Path(p.clone()), device)).transpose()?;
    let (mut scores, mut maps) = (Vec::new(), Vec::new());
    // --subjects 0 measures only the autoencoder ceiling.
    for setting in if a.subjects > 0 { settings(kind)? } else { Vec::new() } {
        let pb = bar(a.subjects, &setting.name);
        let report = evaluate(&sd, &classifier, lpips.as_ref(), &setting, &eval, |_| pb.inc(1))?;
        pb.finish();
        scores.extend(report.scores);
        maps.extend(report.latent_map);
    }
    if !scores.is_empty() {
        print!("{}", score_tables(&scores, &eval.swap.swap_points));
    }
    print!("{}", neighbour_lines(&maps));
    if let Some(path) = &a.tsne_svg {
        traverse::plot::latent_maps(&maps, path)?;
        println!("wrote {}", path.display());
    }
    let report = EvaluationReport {
        command: "evaluate",
        model: a.model.model.display().to_string(),
        classifier: dir.display().to_string(),
        subjects: a.subjects,
        seed: a.seed,
        steps: a.steps,
        guidance: a.guidance,
        swap_points: eval.swap.swap_points.clone(),
        controls: a.controls,
        interpolations: a.interpolations,
        scores,
        latent_maps: maps,
        lpips: a.lpips.as_ref().map(|p| p.display().to_string()),
        autoencoder_ceiling: ceiling,
    };
    write_json(&a.out, &report)?;
    println!("wrote {}", a.out.display());
    Ok(())
}
