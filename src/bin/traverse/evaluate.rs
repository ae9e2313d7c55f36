//! `traverse evaluate`: the paper's Table 2 (CFRT, LPIPS), Fig. 5 (direction cosines) and Fig. 4 (t-SNE of
//! latents) on a phantom family, and the autoencoder's ceiling; in one process, or as shards
//! (`--shard K/N`, e.g. a Slurm array task each) that `traverse evaluate merge` combines into the same report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use traverse::bezier;
use traverse::classifier::Classifier;
use traverse::evaluate::report::{EvaluationReport, ceiling_tables, neighbour_lines, score_tables};
use traverse::evaluate::shard::{
    RunSettings, SettingRecords, Shard, ShardResult, ShardTiming, inputs_sha256, merge, read_shard,
};
use traverse::evaluate::{autoencoder_ceiling, measure_subject};
use traverse::files::{save_png, write, write_json};
use traverse::image::{contact_sheet, tensor_to_rgb};
use traverse::lpips::Lpips;
use traverse::synthetic::{Kind, settings};
use traverse::weights::Precision;
use traverse::weights::WeightFile;
use traverse::{Error, Result};

use crate::common::{DeviceArg, KindArg, ModelArgs, bar};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    merge: Option<Merge>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand)]
enum Merge {
    /// Combine the shard files of a run (`--shard K/N`, every K) into its report, equal to a one-process run's.
    Merge(MergeArgs),
}

#[derive(clap::Args)]
struct MergeArgs {
    /// Phantom family of the run.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// Folder of the shard files.
    #[arg(long, default_value = "evaluation-shards")]
    shard_dir: PathBuf,
    /// Report only the run's first N subjects (seeds --seed … --seed + N - 1), as a run of N would: to
    /// compare a large run with a smaller one on the same seeds. Only the shards holding them are needed.
    #[arg(long, value_name = "N")]
    first_subjects: Option<usize>,
    #[command(flatten)]
    output: OutputArgs,
}

/// Where the report goes.
#[derive(clap::Args)]
struct OutputArgs {
    /// Report (JSON); its tables go beside it as markdown (same name, `.md`).
    #[arg(long, default_value = "evaluation.json")]
    out: PathBuf,
    /// SVG of each setting's t-SNE map of latents (Fig. 4); the coordinates are in the report either way.
    #[arg(long)]
    tsne_svg: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    // Required, but checked here rather than by clap, so that `evaluate merge` needs neither.
    /// A diffusers Stable Diffusion folder (required).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Weight-file variant, e.g. fp16 (loads `*.fp16.safetensors`).
    #[arg(long)]
    variant: Option<String>,
    /// Phantom family: its prompts and classifier (required).
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
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
    /// Subjects whose latents make each setting's t-SNE map (the first ones; exact t-SNE is quadratic).
    #[arg(long, default_value_t = 30)]
    map_subjects: usize,
    /// Phantoms (dataset --seed) checked through the autoencoder alone: how often the classifier still sees
    /// each attribute after encode + decode, the ceiling for generated images (0: skip). Shard 0 measures it.
    #[arg(long, default_value_t = 32)]
    ceiling_subjects: usize,
    /// PNG of example phantoms beside their reconstructions, one row per attribute.
    #[arg(long)]
    ceiling_sheet: Option<PathBuf>,
    /// LPIPS weights (AlexNet + LPIPS heads with the `lpips` package's names, as scripts/export_lpips.py
    /// writes them) for Table 2's LPIPS of swap and interpolated images from the neutral one.
    #[arg(long, default_value = traverse::lpips::SHIPPED)]
    lpips: PathBuf,
    /// Leave LPIPS out.
    #[arg(long)]
    no_lpips: bool,
    /// Measure only this shard's subjects, K/N (0 ≤ K < N), into --shard-dir; `evaluate merge` makes the
    /// report. A shard whose file is already there is skipped.
    #[arg(long)]
    shard: Option<Shard>,
    /// Folder of the shard files.
    #[arg(long, default_value = "evaluation-shards")]
    shard_dir: PathBuf,
    /// Only print the SHA-256 of the files the figures depend on (the model files a pipeline reads, the
    /// classifier, LPIPS), which each shard records: the identity of a run's inputs, e.g. to key a cache.
    #[arg(long)]
    print_inputs_sha256: bool,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(a: Args, device: DeviceArg, precision: Precision) -> Result<()> {
    match a.merge {
        Some(Merge::Merge(m)) => merge_dir(m),
        None => measure(a.run, device, precision),
    }
}

fn measure(a: RunArgs, device_arg: DeviceArg, precision: Precision) -> Result<()> {
    let (Some(model), Some(kind)) = (a.model.clone(), a.kind) else {
        return Err(Error::arg("evaluate needs --model and --kind (or `evaluate merge`); see --help"));
    };
    let model = ModelArgs { model, variant: a.variant.clone() };
    let kind = Kind::from(kind);
    let classifier_dir = a.classifier.clone().unwrap_or_else(|| PathBuf::from("public/classifiers").join(kind.name()));
    // What the figures depend on besides the settings: the model's parts, the classifier and LPIPS.
    let parts: Vec<PathBuf> =
        traverse::pipeline::pipeline_files(&model.model)?.iter().map(|f| model.model.join(f)).collect();
    let mut inputs: Vec<&Path> = parts.iter().map(PathBuf::as_path).collect();
    inputs.push(&classifier_dir);
    if !a.no_lpips {
        inputs.push(&a.lpips);
    }
    let inputs_sha256 = inputs_sha256(&inputs)?;
    if a.print_inputs_sha256 {
        println!("{inputs_sha256}");
        return Ok(());
    }
    let run = RunSettings {
        kind,
        model: model.model.display().to_string(),
        classifier: classifier_dir.display().to_string(),
        lpips: (!a.no_lpips).then(|| a.lpips.display().to_string()),
        subjects: a.subjects,
        seed: a.seed,
        steps: a.steps,
        guidance: a.guidance,
        swap_points: a.swap_points.clone(),
        controls: a.controls,
        interpolations: a.interpolations,
        map_subjects: a.map_subjects,
        ceiling_subjects: a.ceiling_subjects,
        precision,
        inputs_sha256,
    };
    let eval = run.evaluation()?;
    let shard = a.shard.unwrap_or(Shard::ALL);
    let shard_file = a.shard_dir.join(shard.file_name(kind));
    if a.shard.is_some() && traverse::evaluate::shard::already_done(&shard_file, shard, &run)? {
        println!("{} is already done: skipped", shard_file.display());
        return Ok(());
    }

    let device = device_arg.init(precision)?;
    let (sd, _) = model.load(&device, device_arg.load_options(precision))?;
    let classifier = Classifier::load_dir(&classifier_dir, &device)?;
    let lpips = (!a.no_lpips).then(|| Lpips::load(WeightFile::Path(a.lpips.clone()), &device)).transpose()?;
    let started = Instant::now();
    let ceiling = if a.ceiling_subjects == 0 || shard.index != 0 {
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
        Some(attributes)
    };
    let ceiling_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let subjects = shard.subjects(a.subjects);
    let mut parts = Vec::new();
    for setting in settings(kind)? {
        let pb = bar(subjects.len(), &setting.name);
        let records = subjects
            .clone()
            .map(|subject| {
                let record = measure_subject(&sd, &classifier, lpips.as_ref(), &setting, &eval, subject);
                pb.inc(1);
                record
            })
            .collect::<Result<Vec<_>>>()?;
        pb.finish();
        parts.push(SettingRecords { setting: setting.name.clone(), records });
    }
    let result = ShardResult {
        shard,
        run,
        classifier_config: classifier.config.clone(),
        settings: parts,
        ceiling,
        timing: ShardTiming { seconds: started.elapsed().as_secs_f64(), ceiling_seconds, subjects: subjects.len() },
    };
    if a.shard.is_some() {
        write_json(&shard_file, &result)?;
        println!("wrote {} (subjects {subjects:?})", shard_file.display());
        return Ok(());
    }
    report(merge(vec![result.as_stored()?], None)?, &a.output)
}

fn merge_dir(m: MergeArgs) -> Result<()> {
    let kind = Kind::from(m.kind);
    let prefix = format!("{}-", kind.name());
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&m.shard_dir)
        .map_err(Error::io(&m.shard_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(&prefix) && name.ends_with(".json") && name.contains("-of-")
        })
        .collect();
    paths.sort();
    let shards = paths.iter().map(|p| read_shard(p)).collect::<Result<Vec<_>>>()?;
    println!("merging {} shard files from {}", shards.len(), m.shard_dir.display());
    report(merge(shards, m.first_subjects)?, &m.output)
}

/// Prints the tables, writes the report, its markdown and the t-SNE plot.
fn report(report: EvaluationReport, out: &OutputArgs) -> Result<()> {
    let mut tables = String::new();
    if let Some(c) = &report.autoencoder_ceiling {
        tables.push_str(&ceiling_tables(&c.attributes));
    }
    if !report.scores.is_empty() {
        tables.push_str(&score_tables(&report.scores, &report.run.swap_points));
    }
    tables.push_str(&neighbour_lines(&report.latent_maps));
    print!("{tables}");
    let c = &report.cost;
    println!(
        "cost: {:.1} guided U-Net evaluations per trajectory, {:.2} s per subject of a setting, {:.3} s per swap \
         image ({:.0} s in {} shard(s))",
        c.unet_evaluations_per_trajectory, c.seconds_per_subject, c.seconds_per_swap_image, c.seconds, c.shards
    );
    if let Some(path) = &out.tsne_svg {
        traverse::plot::latent_maps(&report.latent_maps, path)?;
        println!("wrote {}", path.display());
    }
    write_json(&out.out, &report)?;
    let md = markdown_path(&out.out);
    write(&md, tables.as_bytes())?;
    println!("wrote {} and {}", out.out.display(), md.display());
    Ok(())
}

fn markdown_path(json: &Path) -> PathBuf {
    json.with_extension("md")
}
