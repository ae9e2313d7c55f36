//! What several commands share: the device, the model and prompt-swap arguments, progress bars.

use std::path::PathBuf;
use std::time::Instant;

use burn::prelude::*;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use traverse::output::{Origin, RunManifest, RunRecord, Timings, write_run};
use traverse::pipeline::{DEFAULT_MAX_BINDING, DirSource, LoadOptions, Plan, StableDiffusion};
use traverse::prompt_edit::PromptEdit;
use traverse::swap::{SwapSampler, SwapSettings};
use traverse::synthetic::Kind;
use traverse::weights::{Precision, Storage};
use traverse::{Error, Result};

/// Where models run.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum DeviceArg {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    /// The GPU through wgpu.
    Wgpu,
}

impl DeviceArg {
    /// Starts the device, computing in `precision`.
    pub fn init(self, precision: Precision) -> Result<Device> {
        let mut device = match self {
            DeviceArg::Cpu => Device::flex(),
            #[cfg(feature = "wgpu")]
            DeviceArg::Wgpu => {
                Device::wgpu_options().init().map_err(|e| Error::Device(format!("wgpu could not start: {e}")))?
            }
            #[cfg(not(feature = "wgpu"))]
            DeviceArg::Wgpu => {
                return Err(Error::Device(
                    "this build has no wgpu backend; build with the default features (or --features wgpu)".into(),
                ));
            }
        };
        precision.configure(&mut device)?;
        Ok(device)
    }

    /// How models are loaded on the device: on the GPU, int8 folders stay int8 (burn's kernels compute with
    /// them exactly) and attention is sliced for WebGPU's default buffer limit, as the page plans it; on the
    /// CPU, weights are f32 (its quantized matmul would quantize the activations too) and nothing is sliced.
    pub fn load_options(self, precision: Precision) -> LoadOptions {
        match self {
            DeviceArg::Cpu => LoadOptions::default(),
            DeviceArg::Wgpu => LoadOptions {
                max_scores: Plan::max_values(DEFAULT_MAX_BINDING, precision),
                storage: Storage::Int8,
                ..LoadOptions::default()
            },
        }
    }
}

/// The float type models compute in ([`Precision`]).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PrecisionArg {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (GPUs with 16-bit storage).
    F16,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => Self::F32,
            PrecisionArg::F16 => Self::F16,
        }
    }
}

/// Phantom family.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    /// Chest X-rays.
    Chest,
    /// Dermoscopy.
    Derm,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Chest => Self::Chest,
            KindArg::Derm => Self::Derm,
        }
    }
}

/// A model folder.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// A diffusers Stable Diffusion folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/).
    #[arg(long)]
    pub model: PathBuf,
    /// Weight-file variant, e.g. fp16 (loads `*.fp16.safetensors`).
    #[arg(long)]
    pub variant: Option<String>,
}

impl ModelArgs {
    /// Loads the model as `options` say (its `variant` is this argument's); returns it with the seconds it took.
    pub fn load(&self, device: &Device, options: LoadOptions) -> Result<(StableDiffusion, f64)> {
        let t = Instant::now();
        if !self.model.is_dir() {
            return Err(Error::Missing(self.model.display().to_string()));
        }
        let options = LoadOptions { variant: self.variant.clone(), ..options };
        let sd = StableDiffusion::from_source(&DirSource(self.model.clone()), device, &options)?;
        Ok((sd, t.elapsed().as_secs_f64()))
    }
}

/// Prompts and sampler settings of a prompt-swap run.
#[derive(Args, Clone)]
pub struct SwapArgs {
    /// The neutral prompt.
    #[arg(long, default_value = "Chest x-ray with no significant findings")]
    pub neutral: String,
    /// A style (attribute) prompt; repeat for several trajectories from the same subject.
    #[arg(long = "style", default_value = "Chest X-ray of a subject with pleural effusion")]
    pub styles: Vec<String>,
    /// Unconditional prompt for classifier-free guidance.
    #[arg(long, default_value = "")]
    pub negative: String,
    /// A prompt edit as AUTOMATIC1111 writes it, e.g. "Chest X-ray [with no findings:with pleural
    /// effusion:0.6]": its two prompts replace --neutral and --style, and its swap point (here the last 40%
    /// of the steps) joins --swap-points. `when` with a decimal point is a fraction of the steps, else a
    /// step count.
    #[arg(long, conflicts_with_all = ["neutral", "styles"])]
    pub edit: Option<String>,
    /// DDIM steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// Swap points: how many final steps use the style prompt.
    #[arg(long, value_delimiter = ',', default_values_t = traverse::swap::PAPER_SWAP_POINTS)]
    pub swap_points: Vec<usize>,
    /// Most latents per U-Net call.
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Output folder.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
}

impl SwapArgs {
    /// These arguments with `--edit` applied (see [`traverse::prompt_edit`]).
    pub fn resolved(&self) -> Result<Self> {
        let Some(text) = &self.edit else { return Ok(self.clone()) };
        let edit = PromptEdit::parse(text)?;
        let t = edit.swap_point(self.steps)?;
        let mut s = self.clone();
        (s.neutral, s.styles, s.edit) = (edit.neutral, vec![edit.style], None);
        if !s.swap_points.contains(&t) {
            s.swap_points.push(t);
        }
        Ok(s)
    }

    /// The sampler's settings.
    pub fn settings(&self) -> SwapSettings {
        SwapSettings {
            steps: self.steps,
            guidance: self.guidance,
            swap_points: self.swap_points.clone(),
            max_batch: self.max_batch,
        }
    }
}

/// A progress bar of `len` steps labelled `what`.
pub fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({elapsed}, eta {eta})") {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb
}

/// Runs the prompt swap from `init` with a progress bar, writes its images, latents and manifest (`command`,
/// `origin`) into `s.out`, and says what it wrote.
pub fn swap_and_save(
    sd: &StableDiffusion,
    model: &ModelArgs,
    init: Tensor<4>,
    s: &SwapArgs,
    command: &'static str,
    origin: Origin,
    load_s: f64,
) -> Result<()> {
    let s = &s.resolved()?;
    traverse::files::create_dir(&s.out)?;
    let settings = s.settings();
    let t0 = Instant::now();
    let mut sampler = SwapSampler::new(sd, init.clone(), &s.neutral, &s.styles, &s.negative, &settings)?;
    let pb = bar(s.steps, "denoise");
    while !sampler.is_done() {
        sampler.step()?;
        pb.inc(1);
    }
    let res = sampler.finish();
    // Reading a result back forces the lazy backend to finish, so the timing is real.
    traverse::readback::values(res.neutral.clone())?;
    pb.finish();
    let sample_s = t0.elapsed().as_secs_f64();
    let pb = bar(1 + res.trajectories.len() * res.swap_points.len(), "decode");
    let written = write_run(sd, &init, &res, &s.neutral, &s.styles, &s.out, |done, _| pb.set_position(done as u64))?;
    pb.finish();
    let [_, _, h, w] = init.dims();
    let f = sd.vae_config.downsampling();
    let record = RunRecord {
        swap_points: res.swap_points.clone(),
        unet_evaluations: res.unet_evaluations,
        unet_batches: res.unet_batches,
        images: written.images.clone(),
    };
    let manifest = RunManifest::new(
        command,
        &model.model.display().to_string(),
        model.variant.clone(),
        origin,
        [h * f, w * f],
        sd,
        &settings,
        (&s.neutral, &s.styles, &s.negative),
        record,
        Timings { load: load_s, sample: sample_s, decode: written.decode_s },
    );
    traverse::files::write_json(&s.out.join("manifest.json"), &manifest)?;
    println!(
        "wrote {} images, sheet.png, latents.safetensors and manifest.json to {} ({} U-Net evaluations in {} batches, {:.1} s sampling)",
        written.images.len(),
        s.out.display(),
        res.unet_evaluations,
        res.unet_batches,
        sample_s
    );
    Ok(())
}

/// A flag's value in 0..=1.
pub fn unit_interval(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) { Ok(v) } else { Err(format!("{v} must lie in 0..=1")) }
}

/// A flag's finite, positive value.
pub fn positive(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v > 0.0 && v.is_finite() { Ok(v) } else { Err(format!("{v} must be a positive number")) }
}
