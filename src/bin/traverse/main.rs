//! `traverse`: the command-line front end. Each command parses its arguments and calls the library; what it
//! writes and prints comes from the library's typed results.

mod blend;
mod classify;
mod common;
mod dataset;
mod evaluate;
mod fit_preview;
mod generate;
mod interpolate;
mod invert;
mod quantize;
mod train_classifier;
mod train_mini;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use traverse::Result;
use traverse::weights::Precision;

#[derive(Parser)]
#[command(name = "traverse", version, about = "Attribute traversals of Stable Diffusion by prompt swapping")]
struct Cli {
    /// Where models run: burn's pure-Rust CPU backend, or the GPU through wgpu (Vulkan/Metal/DX12; the
    /// default `wgpu` feature).
    #[arg(long, value_enum, default_value_t = common::DeviceArg::Cpu, global = true)]
    device: common::DeviceArg,
    /// The float type models compute in: f32, or f16 where the device supports it (GPUs with 16-bit storage:
    /// half the memory, faster there, at f16's precision). Training always runs in f32.
    #[arg(long, value_enum, default_value_t = common::PrecisionArg::F32, global = true)]
    precision: common::PrecisionArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a neutral image and its prompt-swap trajectories from a seed.
    Generate(generate::Args),
    /// Invert a real image to noise with the neutral prompt, then prompt-swap from there.
    Invert(invert::Args),
    /// Decode a Bézier traversal through the latents of a `generate` run.
    Interpolate(interpolate::Args),
    /// Write a synthetic phantom dataset: PNGs, metadata (attributes, content, caption) and splits.
    Dataset(dataset::Args),
    /// Train an attribute classifier on phantoms and score it on the held-out test split.
    TrainClassifier(train_classifier::Args),
    /// Train (or resume) the embedded mini model on phantoms: tokenizer, text encoder, VAE, U-Net.
    TrainMini(train_mini::Args),
    /// Blend a fine-tuned U-Net with the one it started from (weight-space ensembling) into a new model folder.
    Blend(blend::Args),
    /// Score trajectories as the paper's Table 2 (CFRT, LPIPS) and Figs. 4-5 with a classifier; `merge` combines
    /// the shard files of a run split with --shard K/N.
    #[command(args_conflicts_with_subcommands = true)]
    Evaluate(evaluate::Args),
    /// Judge images (e.g. a `generate` run's PNGs) with an attribute classifier: one probability per label.
    Classify(classify::Args),
    /// Write an int8 copy of a model folder and report its size and image fidelity against the original.
    Quantize(quantize::Args),
    /// Fit the latent-to-RGB preview the page shows while denoising to a model's VAE, into its folder.
    FitPreview(fit_preview::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // burn makes a loaded optimizer state on its default device (the GPU where wgpu is compiled in) before
    // moving it to the parameters' device: on the CPU, make burn's CPU backend the default, so that resuming a
    // run does not start a GPU adapter and upload the state to it first. A BURN_DEVICE the user set stays.
    if matches!(cli.device, common::DeviceArg::Cpu) && std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: no other thread exists yet to read the environment while it changes.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    // Commands that run no model never start a device.
    let precision = cli.precision.into();
    let device = || cli.device.init(precision);
    let load = cli.device.load_options(precision);
    // Training in f16 would need loss scaling; it stays f32.
    let training = || match precision {
        Precision::F32 => cli.device.init(Precision::F32),
        Precision::F16 => Err(traverse::Error::Device("training runs in f32: leave out --precision f16".into())),
    };
    match cli.command {
        Command::Generate(a) => generate::run(a, &device()?, load),
        Command::Invert(a) => invert::run(a, &device()?, load),
        Command::Interpolate(a) => interpolate::run(a, &device()?, load),
        Command::Dataset(a) => dataset::run(a),
        Command::TrainClassifier(a) => train_classifier::run(a, &training()?),
        Command::TrainMini(a) => train_mini::run(a, &training()?),
        Command::Blend(a) => blend::run(a),
        Command::Evaluate(a) => evaluate::run(a, cli.device, precision),
        Command::Classify(a) => classify::run(a, &device()?),
        Command::Quantize(a) => quantize::run(a, &device()?),
        Command::FitPreview(a) => fit_preview::run(a, &device()?, load),
    }
}
