//! `traverse`: the command-line front end (generate trajectories, invert real images, interpolate).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use burn::prelude::*;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use traverse::bezier;
use traverse::classifier::{AttributeClassifier, ClassifierConfig};
use traverse::image::{contact_sheet, rgb_to_tensor, tensor_to_rgb};
use traverse::invert::{invert, psnr, rms_error};
use traverse::pipeline::StableDiffusion;
use traverse::rng::initial_latents;
use traverse::swap::{SwapResult, SwapSampler, SwapSettings};
use traverse::synthetic::Kind;
use traverse::train::load_classifier;
use traverse::{Error, Result};

#[derive(Parser)]
#[command(name = "traverse", version, about = "Attribute traversals of Stable Diffusion by prompt swapping")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a neutral image and its prompt-swap trajectories from a seed.
    Generate(GenerateArgs),
    /// Invert a real image to noise with the neutral prompt, then prompt-swap from there.
    Invert(InvertArgs),
    /// Decode a Bézier traversal through the latents of a `generate` run.
    Interpolate(InterpolateArgs),
    /// Write a synthetic phantom dataset: PNGs, metadata (attributes, content, caption) and splits.
    Dataset(DatasetArgs),
    /// Train an attribute classifier on phantoms and score it on the held-out test split.
    TrainClassifier(TrainClassifierArgs),
    /// Train (or resume) the embedded mini model on phantoms: tokenizer, text encoder, VAE, U-Net.
    TrainMini(TrainMiniArgs),
    /// Blend a fine-tuned U-Net with the one it started from (weight-space ensembling) into a new model folder.
    Blend(BlendArgs),
    /// Score trajectories as the paper's Table 2 (CFRT) and Fig. 5 (direction cosines) with a classifier.
    Evaluate(EvaluateArgs),
    /// Judge images (e.g. a `generate` run's PNGs) with an attribute classifier: one probability per label.
    Classify(ClassifyArgs),
    /// Write an int8 copy of a model folder and report its size and image fidelity against the original.
    Quantize(QuantizeArgs),
}

#[derive(Args)]
struct BlendArgs {
    /// The model folder the fine-tune started from (e.g. public/model; int8 is dequantized).
    #[arg(long)]
    base: PathBuf,
    /// The fine-tuned model folder (a `train-mini --out` folder); everything but its U-Net is copied as is.
    #[arg(long)]
    tuned: PathBuf,
    /// The fine-tune's share: 0 gives the base U-Net, 1 the tuned one.
    #[arg(long, default_value_t = 0.5)]
    weight: f32,
    /// Output folder (must not exist).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct QuantizeArgs {
    /// The diffusers model folder to quantize.
    #[arg(long)]
    model: PathBuf,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Seeds whose images are compared (f32 vs int8).
    #[arg(long, default_value_t = 4)]
    check_seeds: u64,
    /// DDIM steps of each comparison image.
    #[arg(long, default_value_t = 20)]
    check_steps: usize,
    /// Prompts of the comparison images (repeatable; ignored with --classifiers).
    #[arg(long = "prompt", default_value = "Chest x-ray with no significant findings")]
    prompts: Vec<String>,
    /// Attribute classifiers (a folder with chest/ and derm/): compare the phantom families' prompts and
    /// report how often the classifiers' decisions agree between f32 and int8 images.
    #[arg(long)]
    classifiers: Option<PathBuf>,
}

#[derive(Args)]
struct EvaluateArgs {
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

#[derive(Args)]
struct ClassifyArgs {
    /// Classifier folder (config.json + model.safetensors), e.g. public/classifiers/derm.
    #[arg(long)]
    classifier: PathBuf,
    /// Images to judge (any format the `image` crate reads; resized to the classifier's input).
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

#[derive(Args)]
struct TrainMiniArgs {
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
    /// U-Net steps, batch 16.
    #[arg(long, default_value_t = 20000)]
    unet_steps: usize,
    /// U-Net learning rate, decaying to a tenth over the last quarter of --unet-steps (the schedule is a
    /// function of the step, so a resumed run follows it; lower it to fine-tune a finished U-Net further).
    #[arg(long, default_value_t = 2e-4)]
    unet_lr: f64,
    /// Oversample rare captions in the U-Net's batches: each image is drawn with weight (how many images share
    /// its caption)^-B, from 0 (every image alike) to 1 (every caption of a family alike); each phantom family
    /// keeps its share of the draws (see --unet-chest-share).
    #[arg(long, default_value_t = 0.0)]
    unet_caption_balance: f64,
    /// Share of the U-Net's draws given to chest phantoms (dermoscopy gets the rest), in 0..=1; by default each
    /// family keeps its share of the pool (half each).
    #[arg(long)]
    unet_chest_share: Option<f64>,
    /// Checkpoint interval in steps.
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    /// A shipped model folder (e.g. public/model) to resume from when --out has lost its checkpoints.
    #[arg(long)]
    resume_from: Option<PathBuf>,
}

#[derive(Args)]
struct TrainClassifierArgs {
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

#[derive(Args)]
struct DatasetArgs {
    /// Phantom family.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// Number of images.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Dataset seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image size in pixels.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Chest,
    Derm,
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// A diffusers Stable Diffusion folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/).
    #[arg(long)]
    model: PathBuf,
    /// Weight-file variant, e.g. fp16 (loads `*.fp16.safetensors`).
    #[arg(long)]
    variant: Option<String>,
}

#[derive(Args, Clone)]
struct SwapArgs {
    /// The neutral prompt.
    #[arg(long, default_value = "Chest x-ray with no significant findings")]
    neutral: String,
    /// A style (attribute) prompt; repeat for several trajectories from the same subject.
    #[arg(long = "style", default_value = "Chest X-ray of a subject with pleural effusion")]
    styles: Vec<String>,
    /// Unconditional prompt for classifier-free guidance.
    #[arg(long, default_value = "")]
    negative: String,
    /// DDIM steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 7.5)]
    guidance: f64,
    /// Swap points: how many final steps use the style prompt.
    #[arg(long, value_delimiter = ',', default_values_t = traverse::swap::PAPER_SWAP_POINTS)]
    swap_points: Vec<usize>,
    /// Most latents per U-Net call.
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// Output folder.
    #[arg(long, default_value = "out")]
    out: PathBuf,
}

#[derive(Args)]
struct GenerateArgs {
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

#[derive(Args)]
struct InvertArgs {
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

#[derive(Args)]
struct InterpolateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// `latents.safetensors` written by `generate` or `invert`.
    #[arg(long)]
    latents: PathBuf,
    /// Which style's trajectory (index of --style in that run).
    #[arg(long, default_value_t = 0)]
    style_index: usize,
    /// Control points of the Bézier curve.
    #[arg(long, default_value_t = bezier::PAPER_CONTROL_POINTS)]
    controls: usize,
    /// Interpolated latents to decode.
    #[arg(long, default_value_t = bezier::PAPER_SAMPLES)]
    samples: usize,
    /// Output folder.
    #[arg(long, default_value = "out-interp")]
    out: PathBuf,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let device = Device::flex();
    match cli.command {
        Command::Generate(a) => generate(a, &device),
        Command::Invert(a) => invert_cmd(a, &device),
        Command::Interpolate(a) => interpolate(a, &device),
        Command::Dataset(a) => dataset(a),
        Command::TrainClassifier(a) => train_classifier(a, &device),
        Command::TrainMini(a) => train_mini(a, &device),
        Command::Blend(a) => {
            traverse::recipe::blend_unet(&a.base, &a.tuned, a.weight, &a.out)?;
            println!("wrote {} (U-Net: {} of the tuned one's weights)", a.out.display(), a.weight);
            Ok(())
        }
        Command::Quantize(a) => quantize(a, &device),
        Command::Evaluate(a) => evaluate_cmd(a, &device),
        Command::Classify(a) => classify_cmd(a, &device),
    }
}

fn load_model(m: &ModelArgs, device: &Device) -> Result<(StableDiffusion, f64)> {
    let t = Instant::now();
    let sd = StableDiffusion::load(&m.model, m.variant.as_deref(), device)?;
    Ok((sd, t.elapsed().as_secs_f64()))
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({elapsed}, eta {eta})")
            .expect("valid template"),
    );
    pb.set_message(what.to_string());
    pb
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    img.save(path).map_err(|e| Error::Image(format!("{}: {e}", path.display())))
}

fn tensor_bytes(t: &Tensor<4>) -> Result<(Vec<u8>, Vec<usize>)> {
    let data = t.to_data().convert::<f32>();
    let values = data.as_slice::<f32>().map_err(|e| Error::Device(format!("{e:?}")))?;
    Ok((values.iter().flat_map(|v| v.to_le_bytes()).collect(), t.dims().to_vec()))
}

fn write_safetensors(path: &Path, tensors: &[(String, Tensor<4>)], meta: HashMap<String, String>) -> Result<()> {
    let owned = tensors
        .iter()
        .map(|(k, t)| tensor_bytes(t).map(|(bytes, shape)| (k.clone(), safetensors::Dtype::F32, shape, bytes)))
        .collect::<Result<Vec<_>>>()?;
    write(path, &traverse::weights::serialize(&path.display().to_string(), owned, Some(meta))?)
}

/// Reads 4-D f32 tensors by name from a safetensors file (after checking its header).
fn read_latents(path: &Path, names: &[String], device: &Device) -> Result<Vec<Tensor<4>>> {
    traverse::weights::inspect(&traverse::weights::WeightFile::Path(path.to_path_buf()))?;
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::Safetensors { what: path.display().to_string(), message: e.to_string() })?;
    names
        .iter()
        .map(|name| {
            let view =
                st.tensor(name).map_err(|_| Error::arg(format!("{} has no tensor named {name:?}", path.display())))?;
            if view.dtype() != safetensors::Dtype::F32 || view.shape().len() != 4 {
                return Err(Error::arg(format!("{name} in {} must be a 4-D F32 tensor", path.display())));
            }
            let values: Vec<f32> =
                view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Ok(Tensor::from_data(TensorData::new(values, view.shape().to_vec()), device))
        })
        .collect()
}

/// Runs the sampler with a progress bar, then writes images, contact sheet, latents and manifest.
fn swap_and_save(
    sd: &StableDiffusion,
    init: Tensor<4>,
    s: &SwapArgs,
    mut manifest: serde_json::Value,
    load_s: f64,
) -> Result<()> {
    create_dir(&s.out)?;
    let settings = SwapSettings {
        steps: s.steps,
        guidance: s.guidance,
        swap_points: s.swap_points.clone(),
        max_batch: s.max_batch,
    };
    let t0 = Instant::now();
    let mut sampler = SwapSampler::new(sd, init.clone(), &s.neutral, &s.styles, &s.negative, &settings)?;
    let pb = bar(s.steps, "denoise");
    while !sampler.is_done() {
        sampler.step();
        pb.inc(1);
    }
    let res: SwapResult = sampler.finish();
    // Reading the result back forces the lazy backend to finish, so the timing is real.
    let mut latents = vec![("init".to_string(), init), ("neutral".to_string(), res.neutral.clone())];
    for (si, tr) in res.trajectories.iter().enumerate() {
        for (p, l) in res.swap_points.iter().zip(&tr.latents) {
            latents.push((format!("style{si}.t{p}"), l.clone()));
        }
    }
    let _ = tensor_bytes(&res.neutral)?;
    pb.finish();
    let sample_s = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let pb = bar(latents.len() - 1, "decode");
    let mut rows: Vec<Vec<image::RgbImage>> = vec![Vec::new(); res.trajectories.len().max(1)];
    let mut files = Vec::new();
    for (name, latent) in latents.iter().skip(1) {
        let img = tensor_to_rgb(sd.vae.decode(latent.clone()))?;
        let file = format!("{}.png", name.replace('.', "_"));
        save_png(&img, &s.out.join(&file))?;
        files.push(file);
        if name == "neutral" {
            rows.iter_mut().for_each(|r| r.push(img.clone()));
        } else if let Some(si) =
            name.strip_prefix("style").and_then(|r| r.split('.').next()).and_then(|i| i.parse::<usize>().ok())
        {
            rows[si].push(img);
        }
        pb.inc(1);
    }
    pb.finish();
    let columns = res.swap_points.len() + 1;
    save_png(&contact_sheet(&rows.concat(), columns), &s.out.join("sheet.png"))?;
    let decode_s = t1.elapsed().as_secs_f64();

    let meta = HashMap::from([
        ("neutral".to_string(), s.neutral.clone()),
        ("styles".to_string(), serde_json::to_string(&s.styles).unwrap_or_default()),
        ("swap_points".to_string(), serde_json::to_string(&res.swap_points).unwrap_or_default()),
    ]);
    write_safetensors(&s.out.join("latents.safetensors"), &latents, meta)?;
    let m = manifest.as_object_mut().expect("manifest is an object");
    m.insert("neutral".into(), json!(s.neutral));
    m.insert("styles".into(), json!(s.styles));
    m.insert("negative".into(), json!(s.negative));
    m.insert("steps".into(), json!(s.steps));
    m.insert("guidance".into(), json!(s.guidance));
    m.insert("eta".into(), json!(0.0));
    m.insert("scheduler".into(), json!({"type": "DDIM", "prediction_type": sd.scheduler.prediction_type, "timestep_spacing": sd.scheduler.timestep_spacing}));
    m.insert("swap_points".into(), json!(res.swap_points));
    m.insert("max_batch".into(), json!(s.max_batch));
    m.insert("unet_evaluations".into(), json!(res.unet_evaluations));
    m.insert("unet_batches".into(), json!(res.unet_batches));
    m.insert("images".into(), json!(files));
    m.insert("contact_sheet".into(), json!("sheet.png"));
    m.insert("latents".into(), json!("latents.safetensors"));
    m.insert("timings_s".into(), json!({"load": load_s, "sample": sample_s, "decode": decode_s}));
    m.insert("traverse_version".into(), json!(env!("CARGO_PKG_VERSION")));
    write(&s.out.join("manifest.json"), serde_json::to_string_pretty(&manifest).unwrap_or_default().as_bytes())?;
    println!(
        "wrote {} images, sheet.png, latents.safetensors and manifest.json to {} ({} U-Net evaluations in {} batches, {:.1} s sampling)",
        files.len(),
        s.out.display(),
        res.unet_evaluations,
        res.unet_batches,
        sample_s
    );
    Ok(())
}

fn generate(a: GenerateArgs, device: &Device) -> Result<()> {
    let (sd, load_s) = load_model(&a.model, device)?;
    let size = a.size.unwrap_or_else(|| sd.default_image_size());
    let [h, w] = sd.latent_size(size, size)?;
    let init = match &a.init_latents {
        Some(p) => read_latents(p, &["init".to_string()], device)?.remove(0),
        None => initial_latents(a.seed, sd.unet_config.in_channels, h, w, device),
    };
    let [_, _, ih, iw] = init.dims();
    let f = sd.vae_config.downsampling();
    let manifest = json!({
        "command": "generate",
        "model": a.model.model.display().to_string(),
        "variant": a.model.variant,
        "seed": if a.init_latents.is_some() { serde_json::Value::Null } else { json!(a.seed) },
        "init_latents": a.init_latents.as_ref().map(|p| p.display().to_string()),
        "noise": "traverse::rng ChaCha8 + Box-Muller (portable)",
        "height": ih * f,
        "width": iw * f,
    });
    swap_and_save(&sd, init, &a.swap, manifest, load_s)
}

fn invert_cmd(a: InvertArgs, device: &Device) -> Result<()> {
    let (sd, load_s) = load_model(&a.model, device)?;
    let img = image::open(&a.image).map_err(|e| Error::Image(format!("{}: {e}", a.image.display())))?.to_rgb8();
    let size = sd.default_image_size();
    sd.latent_size(size, size)?;
    let x = rgb_to_tensor(&img, size, size, device);
    let z0 = sd.vae.encode(x.clone());
    let pb = bar(a.swap.steps, "invert");
    let noise =
        invert(&sd, z0.clone(), &a.swap.neutral, &a.swap.negative, a.swap.steps, a.inversion_guidance, |_, _| {
            pb.inc(1)
        })?;
    pb.finish();
    // Reconstruction: regenerate with the same prompt and guidance used for inversion.
    let settings =
        SwapSettings { steps: a.swap.steps, guidance: a.inversion_guidance, swap_points: vec![], max_batch: 1 };
    let regen = SwapSampler::new(&sd, noise.clone(), &a.swap.neutral, &[], &a.swap.negative, &settings)?.run().neutral;
    let latent_rms = rms_error(regen.clone(), z0.clone());
    let image_psnr = psnr(sd.vae.decode(regen), x.clone());
    let vae_psnr = psnr(sd.vae.decode(z0), x);
    println!(
        "reconstruction: latent RMS error {latent_rms:.4}, image PSNR {image_psnr:.2} dB (VAE alone {vae_psnr:.2} dB)"
    );
    let manifest = json!({
        "command": "invert",
        "model": a.model.model.display().to_string(),
        "variant": a.model.variant,
        "image": a.image.display().to_string(),
        "height": size, "width": size,
        "inversion_guidance": a.inversion_guidance,
        "reconstruction": {"latent_rms_error": latent_rms, "image_psnr_db": image_psnr, "vae_only_psnr_db": vae_psnr},
    });
    swap_and_save(&sd, noise, &a.swap, manifest, load_s)
}

fn interpolate(a: InterpolateArgs, device: &Device) -> Result<()> {
    let (sd, _) = load_model(&a.model, device)?;
    let file = traverse::weights::WeightFile::Path(a.latents.clone());
    let table = traverse::weights::inspect(&file)?;
    let prefix = format!("style{}.t", a.style_index);
    let mut points: Vec<usize> = table.keys().filter_map(|k| k.strip_prefix(&prefix)?.parse().ok()).collect();
    points.sort_unstable();
    if points.is_empty() {
        return Err(Error::arg(format!("{} has no trajectory for style index {}", a.latents.display(), a.style_index)));
    }
    let names: Vec<String> =
        std::iter::once("neutral".to_string()).chain(points.iter().map(|p| format!("{prefix}{p}"))).collect();
    let trajectory = read_latents(&a.latents, &names, device)?;
    let idx = bezier::control_indices(trajectory.len(), a.controls)?;
    let controls: Vec<Tensor<4>> = idx.iter().map(|&i| trajectory[i].clone()).collect();
    let curve = bezier::interpolate(&controls, a.samples)?;
    create_dir(&a.out)?;
    let pb = bar(curve.len(), "decode");
    let mut images = Vec::new();
    for (j, z) in curve.iter().enumerate() {
        let img = tensor_to_rgb(sd.vae.decode(z.clone()))?;
        save_png(&img, &a.out.join(format!("bezier_{j:03}.png")))?;
        images.push(img);
        pb.inc(1);
    }
    pb.finish();
    save_png(&contact_sheet(&images, 10), &a.out.join("sheet.png"))?;
    let names: Vec<String> =
        idx.iter().map(|&i| if i == 0 { "neutral".into() } else { format!("t{}", points[i - 1]) }).collect();
    let manifest = json!({
        "command": "interpolate", "latents": a.latents.display().to_string(), "style_index": a.style_index,
        "control_points": names, "samples": a.samples,
    });
    write(&a.out.join("manifest.json"), serde_json::to_string_pretty(&manifest).unwrap_or_default().as_bytes())?;
    println!(
        "wrote {} interpolated images and sheet.png to {} (controls: {})",
        curve.len(),
        a.out.display(),
        names.join(", ")
    );
    Ok(())
}

impl From<KindArg> for traverse::synthetic::Kind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Chest => Self::Chest,
            KindArg::Derm => Self::Derm,
        }
    }
}

fn train_classifier(a: TrainClassifierArgs, device: &Device) -> Result<()> {
    use traverse::classifier::ClassifierConfig;
    use traverse::synthetic::Split;
    use traverse::train::{
        ClassifierTraining, LabelScore, LabeledImages, Source, evaluate, save_classifier, train_classifier,
    };
    if a.n < 20 || !(32..=512).contains(&a.size) || a.steps == 0 || a.batch == 0 {
        return Err(Error::arg("need --n ≥ 20, --size in 32..=512, --steps ≥ 1, --batch ≥ 1"));
    }
    create_dir(&a.out)?;
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
        in_channels: data.channels,
        image_size: a.size,
        widths: vec![8, 24, 48, 64, 96, 96],
        labels: data.names.clone(),
    };
    let settings = ClassifierTraining { steps: a.steps, batch: a.batch, learning_rate: a.lr, seed: a.seed };
    let pb = bar(a.steps, "train");
    let mut log = String::from("step,loss\n");
    let model = train_classifier(&config, &data, &settings, device, |step, loss| {
        log.push_str(&format!("{step},{loss}\n"));
        pb.set_message(format!("loss {loss:.3}"));
        pb.inc(1);
    })?;
    pb.finish();
    save_classifier(&model, &config, &a.out, a.int8)?;
    write(&a.out.join("loss.csv"), log.as_bytes())?;
    // Scores are the saved model's: with --int8, the quantized one.
    let int8 = if a.int8 { Some(load_classifier(&a.out, device)?.0) } else { None };
    let saved = int8.as_ref().unwrap_or(&model);
    let score = |split, source| evaluate(saved, &data, split, source, device);
    let (val, test) = (score(Split::Val, Source::Phantom)?, score(Split::Test, Source::Phantom)?);
    let mut scores = json!({"kind": traverse::synthetic::Kind::from(a.kind), "n": a.n, "seed": a.seed,
        "size": a.size, "training": settings, "seconds": t0.elapsed().as_secs_f64(), "val": val, "test": test});
    if let Some(int8) = &int8 {
        scores["int8_agreement_with_f32"] =
            json!(traverse::train::agreement(&model, int8, &data, Split::Test, device)?);
    }
    let mut tables = vec![("test split", test)];
    if let Some(model) = &a.reconstruct_with {
        let recon = score(Split::Test, Source::Reconstruction)?;
        scores["reconstructed_with"] = json!(model.display().to_string());
        scores["val_reconstructions"] = json!(score(Split::Val, Source::Reconstruction)?);
        scores["test_reconstructions"] = json!(recon);
        tables.push(("test split, reconstructions", recon));
    }
    write(&a.out.join("scores.json"), serde_json::to_string_pretty(&scores).unwrap_or_default().as_bytes())?;
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

/// Copies a model folder, quantizing every safetensors file; returns (path in the folder, bytes before,
/// bytes after) per quantized file.
fn quantize_folder(from: &Path, to: &Path, prefix: &str) -> Result<Vec<(String, u64, u64)>> {
    create_dir(to)?;
    let mut sizes = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .and_then(|d| d.collect::<std::io::Result<Vec<_>>>())
        .map_err(|source| Error::Io { path: from.to_path_buf(), source })?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let (src, name) = (entry.path(), entry.file_name().to_string_lossy().to_string());
        if src.is_dir() {
            sizes.extend(quantize_folder(&src, &to.join(&name), &format!("{prefix}{name}/"))?);
        } else if name.ends_with(".safetensors") {
            let bytes = std::fs::read(&src).map_err(|source| Error::Io { path: src.clone(), source })?;
            let q = traverse::quantize::quantize(&src.display().to_string(), &bytes)?;
            sizes.push((format!("{prefix}{name}"), bytes.len() as u64, q.len() as u64));
            write(&to.join(&name), &q)?;
        } else if (name.ends_with(".json") && name != "train_state.json") || name.ends_with(".txt") {
            std::fs::copy(&src, to.join(&name)).map_err(|source| Error::Io { path: src.clone(), source })?;
        }
    }
    Ok(sizes)
}

/// An attribute classifier with its config.
type Classifier = (AttributeClassifier, ClassifierConfig);

fn quantize(a: QuantizeArgs, device: &Device) -> Result<()> {
    use traverse::evaluate::{classify, settings};
    let files = quantize_folder(&a.model, &a.out, "")?;
    // Sizes count what a pipeline loads (diffusers' weight names); other files, such as the recipe's
    // contrastive checkpoint, are quantized too but listed apart.
    let loaded = traverse::pipeline::is_pipeline_weights;
    let (before, after) = files.iter().filter(|f| loaded(&f.0)).fold((0, 0), |(b, a), f| (b + f.1, a + f.2));
    let full = StableDiffusion::load(&a.model, None, device)?;
    let int8 = StableDiffusion::load(&a.out, None, device)?;
    // Prompt groups, each with the classifier (if any) that labels its images.
    let mut groups: Vec<(Vec<String>, Option<Classifier>)> = Vec::new();
    match &a.classifiers {
        Some(root) => {
            for (dir, kind) in [("chest", Kind::Chest), ("derm", Kind::Derm)] {
                let prompts = settings(kind)?
                    .into_iter()
                    .flat_map(|s| std::iter::once(s.neutral).chain(s.styles.into_iter().map(|(_, p)| p)))
                    .collect();
                groups.push((prompts, Some(load_classifier(&root.join(dir), device)?)));
            }
        }
        None => groups.push((a.prompts.clone(), None)),
    }
    let size = full.default_image_size();
    let [h, w] = full.latent_size(size, size)?;
    let settings = SwapSettings { steps: a.check_steps, guidance: 7.5, swap_points: vec![], max_batch: 1 };
    let (mut psnrs, mut agree, mut decisions) = (Vec::new(), 0usize, 0usize);
    let pb = bar(groups.iter().map(|g| g.0.len()).sum::<usize>() * a.check_seeds as usize, "compare");
    for (prompts, classifier) in &groups {
        for prompt in prompts {
            for seed in 0..a.check_seeds {
                let init = initial_latents(seed, full.unet_config.in_channels, h, w, device);
                let image = |sd: &StableDiffusion| -> Result<Tensor<4>> {
                    let z = SwapSampler::new(sd, init.clone(), prompt, &[], "", &settings)?.run().neutral;
                    Ok(sd.vae.decode(z))
                };
                let (x, y) = (image(&full)?, image(&int8)?);
                psnrs.push(psnr(x.clone(), y.clone()) as f64);
                if let Some((model, config)) = classifier {
                    let (p, q) = (classify(model, config, x)?, classify(model, config, y)?);
                    decisions += p[0].len();
                    agree += p[0].iter().zip(&q[0]).filter(|(p, q)| (**p >= 0.5) == (**q >= 0.5)).count();
                }
                pb.inc(1);
            }
        }
    }
    pb.finish();
    let mean = psnrs.iter().sum::<f64>() / psnrs.len().max(1) as f64;
    let agreement = (decisions > 0).then(|| agree as f64 / decisions as f64);
    let prompts: Vec<&String> = groups.iter().flat_map(|g| &g.0).collect();
    let report = json!({"model": a.model.display().to_string(), "weights_bytes_f32": before, "weights_bytes_int8": after,
        "files": files.iter().map(|(p, b, a)| json!({"path": p, "bytes_before": b, "bytes_int8": a,
            "loaded_by_pipeline": loaded(p)})).collect::<Vec<_>>(),
        "format": "int8-per-channel-symmetric (see src/quantize.rs)", "check": {"prompts": prompts, "steps": a.check_steps,
        "guidance": 7.5, "seeds": a.check_seeds, "psnr_db": psnrs, "mean_psnr_db": mean,
        "min_psnr_db": psnrs.iter().copied().fold(f64::INFINITY, f64::min),
        "classifier_decisions": decisions, "classifier_agreement": agreement}});
    write(&a.out.join("quantization.json"), serde_json::to_string_pretty(&report).unwrap_or_default().as_bytes())?;
    println!(
        "int8 weights the pipeline loads: {:.2} MB (from {:.2} MB); {} decoded images vs f32: mean PSNR {mean:.2} dB{}",
        after as f64 / 1e6,
        before as f64 / 1e6,
        psnrs.len(),
        agreement
            .map(|g| format!(", classifier agreement {:.1} % of {decisions} decisions", 100.0 * g))
            .unwrap_or_default()
    );
    Ok(())
}

fn classify_cmd(a: ClassifyArgs, device: &Device) -> Result<()> {
    let (classifier, config) = load_classifier(&a.classifier, device)?;
    let size = config.image_size;
    println!("| image | {} |", config.labels.join(" | "));
    println!("|---|{}", "---|".repeat(config.labels.len()));
    for path in &a.images {
        let img = image::open(path).map_err(|e| Error::Image(format!("{}: {e}", path.display())))?.to_rgb8();
        let x = rgb_to_tensor(&img, size, size, device);
        let p = traverse::evaluate::classify(&classifier, &config, x)?;
        let cells: Vec<String> = p[0].iter().map(|v| format!("{v:.2}")).collect();
        println!("| {} | {} |", path.display(), cells.join(" | "));
    }
    Ok(())
}

fn evaluate_cmd(a: EvaluateArgs, device: &Device) -> Result<()> {
    use traverse::evaluate::{Evaluation, autoencoder_ceiling, evaluate, settings};
    let (sd, _) = load_model(&a.model, device)?;
    let dir =
        a.classifier.clone().unwrap_or_else(|| PathBuf::from("public/classifiers").join(Kind::from(a.kind).name()));
    let (classifier, config) = load_classifier(&dir, device)?;
    let eval = Evaluation {
        subjects: a.subjects,
        seed: a.seed,
        swap: SwapSettings::validated(&SwapSettings {
            steps: a.steps,
            guidance: a.guidance,
            swap_points: a.swap_points.clone(),
            max_batch: 16,
        })?,
        controls: a.controls,
        interpolations: a.interpolations,
    };
    // Contact sheet rows: for each attribute, up to 4 phantoms, then their reconstructions.
    let mut sheet = Vec::new();
    let ceiling = if a.ceiling_subjects == 0 {
        Vec::new()
    } else {
        autoencoder_ceiling(&sd, &classifier, &config, a.kind.into(), a.ceiling_subjects, a.seed, |_, x, r| {
            let n = if a.ceiling_sheet.is_some() { x.dims()[0].min(4) } else { 0 };
            for t in [x, r] {
                for j in 0..n {
                    sheet.push(tensor_to_rgb(t.clone().narrow(0, j, 1))?);
                }
            }
            Ok(())
        })?
    };
    if let Some(path) = a.ceiling_sheet.as_ref().filter(|_| a.ceiling_subjects > 0) {
        let columns = (2 * a.ceiling_subjects.min(4)).max(1);
        save_png(&contact_sheet(&sheet, columns), path)?;
    }
    if a.ceiling_subjects > 0 {
        println!(
            "| attribute | phantoms positive | VAE reconstructions positive | reconstruction PSNR (dB) | \
             false positives: phantoms | false positives: reconstructions |"
        );
        println!("|---|---|---|---|---|---|");
        for c in &ceiling {
            println!(
                "| {} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} |",
                c.attribute,
                c.phantom_positive,
                c.reconstruction_positive,
                c.psnr_db,
                c.phantom_false_positive,
                c.reconstruction_false_positive
            );
        }
        println!("\nFalse positives on reconstructions, by the attribute that was on:");
        for c in &ceiling {
            let by: Vec<String> =
                c.reconstruction_false_positive_by_attribute.iter().map(|(l, r)| format!("{l} {r:.2}")).collect();
            println!("- {}: {}", c.attribute, by.join(", "));
        }
    }
    let lpips = a
        .lpips
        .as_ref()
        .map(|p| traverse::lpips::Lpips::load(traverse::weights::WeightFile::Path(p.clone()), device))
        .transpose()?;
    let (mut scores, mut maps) = (Vec::new(), Vec::new());
    // --subjects 0 measures only the autoencoder ceiling.
    let settings = if a.subjects > 0 { settings(a.kind.into())? } else { Vec::new() };
    for setting in settings {
        let pb = bar(a.subjects, &setting.name);
        let report = evaluate(&sd, &classifier, &config, lpips.as_ref(), &setting, &eval, |_| pb.inc(1))?;
        pb.finish();
        scores.extend(report.scores);
        maps.extend(report.latent_map);
    }
    if !scores.is_empty() {
        println!(
            "| setting | style | CFRT (swap images) | CFRT (interpolations) | LPIPS (swap images) | \
             LPIPS (interpolations) | samples | positive: neutral, then t = {:?} |",
            eval.swap.swap_points
        );
        println!("|---|---|---|---|---|---|---|---|");
        let cell = |v: Option<f64>, digits: usize| v.map(|c| format!("{c:.digits$}")).unwrap_or_else(|| "–".into());
        for s in &scores {
            let rates: Vec<String> =
                std::iter::once(&s.neutral_positive_rate).chain(&s.positive_rate).map(|r| format!("{r:.2}")).collect();
            println!(
                "| {} | {} | {:.2} | {} | {} | {} | {} | {} |",
                s.setting,
                s.attribute,
                s.cfrt,
                cell(s.cfrt_interpolated, 2),
                cell(s.lpips, 3),
                cell(s.lpips_interpolated, 3),
                s.samples,
                rates.join(" ")
            );
        }
    }
    if !scores.is_empty() {
        println!(
            "\nside effects: share of swap images in which another label's decision differs from the neutral image's"
        );
        for s in &scores {
            let effects: Vec<String> = s.side_effects.iter().map(|(l, r)| format!("{l} {r:.2}")).collect();
            println!("- {} {}: {}", s.setting, s.attribute, effects.join(", "));
        }
        println!(
            "\nCFRT per swap point t = {:?}, and the share of swap images passing Eq. 3 below the classifier's \
             threshold",
            eval.swap.swap_points
        );
        for s in &scores {
            let per_point: Vec<String> = s.cfrt_by_swap_point.iter().map(|r| format!("{r:.2}")).collect();
            println!(
                "- {} {}: {} (below threshold {:.2})",
                s.setting,
                s.attribute,
                per_point.join(" "),
                s.passes_below_threshold
            );
        }
    }
    for m in &maps {
        if let (Some(latent), Some(map)) = (m.same_subject_neighbours, m.same_subject_neighbours_map) {
            println!(
                "{}: at the last swap point, a latent's nearest is the same subject's (another style) for {latent:.2} \
                 of them ({map:.2} on the t-SNE map)",
                m.setting
            );
        }
    }
    if let Some(path) = &a.tsne_svg {
        plot_latent_maps(&maps, path)?;
        println!("wrote {}", path.display());
    }
    let mut report = json!({"command": "evaluate", "model": a.model.model.display().to_string(), "classifier": dir.display().to_string(),
        "subjects": a.subjects, "seed": a.seed, "steps": a.steps, "guidance": a.guidance, "swap_points": eval.swap.swap_points,
        "controls": a.controls, "interpolations": a.interpolations, "scores": scores, "latent_maps": maps,
        "lpips": a.lpips.as_ref().map(|p| p.display().to_string())});
    // --ceiling-subjects 0 skips the ceiling, so the report has no empty rows for it.
    if a.ceiling_subjects > 0 {
        report["autoencoder_ceiling"] =
            json!({"subjects": a.ceiling_subjects, "dataset_seed": a.seed, "attributes": ceiling});
    }
    write(&a.out, serde_json::to_string_pretty(&report).unwrap_or_default().as_bytes())?;
    println!("wrote {}", a.out.display());
    Ok(())
}

/// The styles of a latent map's points, in order of first appearance.
fn map_styles(m: &traverse::evaluate::LatentMap) -> Vec<&str> {
    let mut seen: Vec<&str> = Vec::new();
    for s in m.points.iter().filter_map(|p| p.style.as_deref()) {
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    seen
}

/// Fig. 4 as an SVG: per setting, every latent's t-SNE position, neutral latents black, each style's swap
/// latents in its colour (larger for later swap points), joined per subject in swap order.
fn plot_latent_maps(maps: &[traverse::evaluate::LatentMap], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let fail = |e: &dyn std::fmt::Display| Error::Image(format!("{}: {e}", path.display()));
    let panel = 420u32;
    let root = SVGBackend::new(path, (panel * maps.len().max(1) as u32, panel + 40)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    for (m, area) in maps.iter().zip(root.split_evenly((1, maps.len().max(1)))) {
        let range = |f: fn(&traverse::evaluate::MapPoint) -> f32| {
            let (lo, hi) = m.points.iter().map(f).fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(v), h.max(v)));
            let pad = 0.05 * (hi - lo).max(1e-6);
            lo - pad..hi + pad
        };
        let styles = map_styles(m);
        let mut chart = ChartBuilder::on(&area)
            .caption(format!("t-SNE of latents: {}", m.setting), ("sans-serif", 15))
            .margin(10)
            .margin_bottom(16 * styles.len() as i32 + 10)
            .build_cartesian_2d(range(|p| p.x), range(|p| p.y))
            .map_err(|e| fail(&e))?;
        let style_colour = |s: &str| Palette99::pick(styles.iter().position(|x| *x == s).unwrap_or(0));
        let color = |p: &traverse::evaluate::MapPoint| {
            p.style.as_deref().map_or(BLACK.to_rgba(), |s| style_colour(s).to_rgba())
        };
        // Each subject's trajectory per style: its neutral latent, then the swap points in order.
        for (i, p) in m.points.iter().enumerate().filter(|(_, p)| p.style.is_none()) {
            for style in &styles {
                let line = std::iter::once((p.x, p.y)).chain(
                    m.points[i + 1..]
                        .iter()
                        .take_while(|q| q.subject == p.subject)
                        .filter(|q| q.style.as_deref() == Some(*style))
                        .map(|q| (q.x, q.y)),
                );
                chart.draw_series(LineSeries::new(line, style_colour(style).mix(0.35))).map_err(|e| fail(&e))?;
            }
        }
        let last = m.points.iter().map(|p| p.swap_point).max().unwrap_or(1).max(1) as f32;
        chart
            .draw_series(m.points.iter().map(|p| {
                let r = if p.style.is_none() { 5 } else { 2 + (3.0 * p.swap_point as f32 / last).round() as i32 };
                Circle::new((p.x, p.y), r, color(p).filled())
            }))
            .map_err(|e| fail(&e))?;
        // The legend under the map, in the margin the chart leaves.
        for (k, s) in styles.iter().enumerate() {
            let y = panel as i32 + 20 - 16 * (styles.len() - k) as i32;
            area.draw(&Text::new(
                s.to_string(),
                (14, y + 20),
                ("sans-serif", 13).into_font().color(&Palette99::pick(k)),
            ))
            .map_err(|e| fail(&e))?;
        }
    }
    root.present().map_err(|e| fail(&e))
}

fn train_mini(a: TrainMiniArgs, device: &Device) -> Result<()> {
    use traverse::recipe::{Preset, Recipe, seed_from, train};
    if !a.size.is_multiple_of(8) || !a.vae_crop.is_multiple_of(8) || a.vae_crop == 0 || a.vae_crop > a.size {
        return Err(Error::arg("need --size and --vae-crop multiples of 8 with 8 ≤ --vae-crop ≤ --size"));
    }
    if a.images == 0 || a.checkpoint_every == 0 || !(a.unet_lr > 0.0 && a.unet_lr.is_finite()) {
        return Err(Error::arg("need --images ≥ 1, --checkpoint-every ≥ 1 and a positive --unet-lr"));
    }
    // Shares are checked again where the draw is built, but only after the earlier stages; refuse them now.
    for (flag, value) in
        [("--unet-caption-balance", Some(a.unet_caption_balance)), ("--unet-chest-share", a.unet_chest_share)]
    {
        if value.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
            return Err(Error::arg(format!("{flag} must lie in 0..=1")));
        }
    }
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
        batches: [32, 8, 16],
        checkpoint_every: a.checkpoint_every,
    };
    if let Some(shipped) = &a.resume_from {
        seed_from(shipped, &a.out)?;
    }
    // Per stage: when its first step ended, and which step that was (timing starts after the warm-up step).
    let mut first = (String::new(), Instant::now(), 0usize);
    train(&recipe, device, &a.out, |stage, step, loss| {
        if first.0 != stage {
            first = (stage.to_string(), Instant::now(), step);
        } else if (step + 1) % 10 == 0 {
            let per = first.1.elapsed().as_secs_f64() / (step - first.2) as f64;
            eprintln!("{stage} step {} loss {loss:.5} ({per:.2} s/step)", step + 1);
        }
    })?;
    println!("trained model in {} (load it with --model {})", a.out.display(), a.out.display());
    Ok(())
}

/// Phantoms on a dataset's `sheet.png` (the first ones, four per row): the README's phantom figures.
const SHEET_SAMPLES: usize = 8;

fn dataset(a: DatasetArgs) -> Result<()> {
    use traverse::synthetic::{Kind, Phantom, split_of};
    if a.n == 0 || !(16..=1024).contains(&a.size) {
        return Err(Error::arg("need --n ≥ 1 and --size in 16..=1024"));
    }
    let kind: Kind = a.kind.into();
    create_dir(&a.out.join("images"))?;
    let pb = bar(a.n, "render");
    let mut csv = String::new();
    let mut jsonl = String::new();
    let mut counts = std::collections::BTreeMap::<String, [usize; 3]>::new();
    let mut preview = Vec::new();
    for i in 0..a.n {
        let p = Phantom::sample(kind, a.seed, i as u64);
        let img = p.render(a.size);
        let file = format!("images/{i:06}.png");
        let path = a.out.join(&file);
        let (side, bytes) = (a.size as u32, img.to_u8());
        let png: image::DynamicImage = if img.channels == 1 {
            image::GrayImage::from_raw(side, side, bytes).map(Into::into)
        } else {
            image::RgbImage::from_raw(side, side, bytes).map(Into::into)
        }
        .ok_or_else(|| Error::Image("buffer size".into()))?;
        png.save(&path).map_err(|e| Error::Image(format!("{}: {e}", path.display())))?;
        if i < SHEET_SAMPLES {
            preview.push(png.to_rgb8());
        }
        let split = split_of(i, a.n);
        let labels = p.labels();
        if i == 0 {
            csv.push_str("id,file,split,caption");
            labels.iter().for_each(|(n, _)| csv.push_str(&format!(",{n}")));
            csv.push('\n');
        }
        let split_name =
            serde_json::to_value(split).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        csv.push_str(&format!("{i},{file},{split_name},\"{}\"", p.caption()));
        for (name, on) in &labels {
            csv.push_str(if *on { ",1" } else { ",0" });
            let c = counts.entry(name.to_string()).or_default();
            c[split as usize] += *on as usize;
        }
        csv.push('\n');
        jsonl.push_str(
            &serde_json::to_string(
                &json!({"id": i, "file": file, "split": split, "caption": p.caption(), "phantom": p}),
            )
            .unwrap_or_default(),
        );
        jsonl.push('\n');
        pb.inc(1);
    }
    pb.finish();
    save_png(&contact_sheet(&preview, 4), &a.out.join("sheet.png"))?;
    write(&a.out.join("metadata.csv"), csv.as_bytes())?;
    write(&a.out.join("metadata.jsonl"), jsonl.as_bytes())?;
    let sizes = [0, 1, 2].map(|s| (0..a.n).filter(|&i| split_of(i, a.n) as usize == s).count());
    let summary = json!({"kind": kind, "n": a.n, "seed": a.seed, "size": a.size,
        "splits": {"train": sizes[0], "val": sizes[1], "test": sizes[2]},
        "positives_per_split": counts});
    write(&a.out.join("dataset.json"), serde_json::to_string_pretty(&summary).unwrap_or_default().as_bytes())?;
    println!(
        "wrote {} {kind:?} phantoms, metadata and sheet.png to {} (train/val/test {}/{}/{})",
        a.n,
        a.out.display(),
        sizes[0],
        sizes[1],
        sizes[2]
    );
    Ok(())
}
