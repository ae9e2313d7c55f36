//! Engine side of the CPU benchmark (`scripts/bench.sh` runs both sides in one run): loads the models and inputs
//! that `scripts/bench_reference.py` saved, times the same work on burn's CPU backend (flex) and prints a
//! markdown table beside PyTorch's figures, each output checked against PyTorch's and each row with both
//! processes' peak memory. Modes, each in a process of its own:
//!
//!     cargo run --release --example bench -- call DIR [DIR ...]     # one guided U-Net call per saved config
//!     cargo run --release --example bench -- train DIR              # the U-Net's training step
//!     cargo run --release --example bench -- trajectory DIR         # the paper's trajectory, shared prefix
//!     cargo run --release --example bench -- train-autoencoder DIR  # the autoencoder's training step

use std::path::Path;
use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use traverse::scheduler::DdimConfig;
use traverse::swap::{PAPER_SWAP_POINTS, PromptEmbeddings, SwapSampler, SwapSettings};
use traverse::train::{VaeTraining, autoencoder_loss};
use traverse::unet::{NAMES, UNet2DConditionConfig, UNet2DConditionModel};
use traverse::weights::{WeightFile, load_into};

type Failure = Box<dyn std::error::Error>;

/// Timed repetitions after the warm-up, as on the reference side.
const RUNS: usize = 3;

/// A saved U-Net and its config on `device`.
fn load_unet(dir: &Path, device: &Device) -> Result<(UNet2DConditionConfig, UNet2DConditionModel), Failure> {
    let config = UNet2DConditionConfig::from_json(&std::fs::read_to_string(dir.join("unet/config.json"))?)?;
    let mut unet = config.init(device)?;
    load_into(&mut unet, "unet", vec![WeightFile::Path(dir.join("unet/diffusion_pytorch_model.safetensors"))], &NAMES)?;
    Ok((config, unet))
}

/// The f32 tensors of a safetensors file the reference side saved.
struct Saved(traverse::codec::Tensors);

impl Saved {
    fn read(path: &Path) -> Result<Self, Failure> {
        Ok(Self(traverse::codec::float_tensors(&path.display().to_string(), &std::fs::read(path)?)?))
    }

    fn values(&self, name: &str) -> Result<&[f32], Failure> {
        Ok(&self.0.get(name).ok_or_else(|| format!("no tensor {name}"))?.0)
    }

    fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Result<Tensor<D>, Failure> {
        let (v, s) = self.0.get(name).ok_or_else(|| format!("no tensor {name}"))?;
        Ok(Tensor::from_data(TensorData::new(v.clone(), s.clone()), device))
    }
}

/// A JSON file the reference side wrote.
fn info(path: &Path) -> Result<serde_json::Value, Failure> {
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

fn number(info: &serde_json::Value, key: &str) -> f64 {
    info[key].as_f64().unwrap_or(f64::NAN)
}

/// This process's peak resident memory in MB (Linux), or NaN.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// "A / B MB": the reference's peak memory beside ours.
fn memory(info: &serde_json::Value) -> String {
    format!("{:.0} / {:.0} MB", number(info, "peak_rss_mb"), peak_rss_mb())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The median time of `RUNS` calls of `step` after a warm-up call, and the warm-up's result. `step` threads
/// `state` (a model that an optimizer step consumes and returns) from call to call.
fn timed<S, T>(mut state: S, mut step: impl FnMut(S) -> Result<(S, T), Failure>) -> Result<(T, f64), Failure> {
    let (next, first) = step(state)?;
    state = next;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t0 = Instant::now();
        state = step(state)?.0;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((first, times[RUNS / 2]))
}

/// One guided U-Net call per saved config, smallest first (each row's peak memory is then its own).
fn call(dirs: &[String]) -> Result<(), Failure> {
    let device = Device::flex();
    println!(
        "| config | params | diffusers (s/call) | traverse (s/call) | ratio | max abs diff | peak memory, diffusers / ours |"
    );
    println!("|---|---|---|---|---|---|---|");
    for dir in dirs.iter().map(Path::new) {
        let info = info(&dir.join("diffusers.json"))?;
        let (_, unet) = load_unet(dir, &device)?;
        let saved = Saved::read(&dir.join("inputs.safetensors"))?;
        let (sample, context) = (saved.tensor::<4>("sample", &device)?, saved.tensor::<3>("context", &device)?);
        let t = info["timestep"].as_f64().unwrap_or(501.0) as f32;
        let (out, ours) =
            timed((), |()| Ok(((), traverse::readback::values(unet.forward(sample.clone(), t, &context))?)))?;
        let theirs = number(&info, "median_s");
        println!(
            "| {} | {:.1}M | {theirs:.3} | {ours:.3} | {:.2}× | {:.1e} | {} |",
            info["config"].as_str().unwrap_or("?"),
            number(&info, "params") / 1e6,
            ours / theirs,
            max_abs_diff(&out, saved.values("out")?),
            memory(&info)
        );
    }
    Ok(())
}

/// The U-Net training step that `bench_reference.py train` timed: same weights, batch, loss and AdamW.
fn train(dir: &Path) -> Result<(), Failure> {
    let info = info(&dir.join("train.json"))?;
    let device = Device::flex().autodiff();
    let (_, unet) = load_unet(dir, &device)?;
    let saved = Saved::read(&dir.join("train.safetensors"))?;
    let (noisy, target) = (saved.tensor::<4>("noisy", &device)?, saved.tensor::<4>("target", &device)?);
    let context = saved.tensor::<3>("context", &device)?;
    let timesteps = saved.values("timesteps")?.to_vec();
    let lr = number(&info, "learning_rate");
    // torch.optim.AdamW's defaults: betas (0.9, 0.999), eps 1e-8.
    let mut optim =
        AdamWConfig::new().with_weight_decay(number(&info, "weight_decay") as f32).with_epsilon(1e-8).init();
    let (first_loss, ours) = timed(unet, |unet| {
        let loss = (unet.forward_timesteps(noisy.clone(), &timesteps, &context) - target.clone()).powf_scalar(2.0);
        let loss = loss.mean();
        let value = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &unet);
        Ok((optim.step(lr, unet, grads), value))
    })?;
    let theirs = number(&info, "median_s");
    println!(
        "| U-Net | batch | PyTorch (s/step) | traverse (s/step) | ratio | first loss, PyTorch / ours | peak memory, PyTorch / ours |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {theirs:.3} | {ours:.3} | {:.2}× | {:.6} / {first_loss:.6} | {} |",
        info["config"].as_str().unwrap_or("?"),
        info["batch"],
        ours / theirs,
        number(&info, "first_loss"),
        memory(&info)
    );
    Ok(())
}

/// The paper's trajectory on the U-Net saved by `call`: our shared-prefix sampler against diffusers running
/// the 10 images one by one, same noise and embeddings, one run each.
fn trajectory(dir: &Path) -> Result<(), Failure> {
    let info = info(&dir.join("trajectory.json"))?;
    let device = Device::flex();
    let (config, unet) = load_unet(dir, &device)?;
    let saved = Saved::read(&dir.join("trajectory.safetensors"))?;
    let prompts = PromptEmbeddings {
        neutral: saved.tensor("neutral", &device)?,
        styles: vec![("style".into(), saved.tensor("style", &device)?)],
        negative: saved.tensor("negative", &device)?,
    };
    let steps = info["steps"].as_u64().unwrap_or(50) as usize;
    let settings = SwapSettings {
        steps,
        guidance: number(&info, "guidance"),
        swap_points: PAPER_SWAP_POINTS.to_vec(),
        ..SwapSettings::default()
    };
    let init = saved.tensor::<4>("init", &device)?;
    let t0 = Instant::now();
    let sampler = SwapSampler::from_embeddings(&unet, &config, &DdimConfig::default(), init, prompts, &settings)?;
    let result = sampler.run()?;
    // Reading the latents back waits for the work (a no-op on the CPU, where it is done already).
    let mut latents = vec![(0, traverse::readback::values(result.neutral)?)];
    for (&p, latent) in result.swap_points.iter().zip(&result.trajectories[0].latents) {
        latents.push((p, traverse::readback::values(latent.clone())?));
    }
    let ours = t0.elapsed().as_secs_f64();
    let mut diff = 0f32;
    for (p, values) in &latents {
        diff = diff.max(max_abs_diff(values, saved.values(&format!("swap.{p}"))?));
    }
    let theirs = number(&info, "seconds");
    println!(
        "| trajectory ({steps} steps, 10 images) | diffusers, one by one (s) | guided evaluations | traverse, shared prefix (s) | guided evaluations (U-Net calls) | ratio | max abs diff | peak memory, diffusers / ours |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {theirs:.1} | {} | {ours:.1} | {} ({}) | {:.2}× | {diff:.1e} | {} |",
        info["config"].as_str().unwrap_or("?"),
        info["evaluations"],
        result.unet_evaluations,
        result.unet_batches,
        ours / theirs,
        memory(&info)
    );
    Ok(())
}

/// The autoencoder training step that `bench_reference.py train-autoencoder` timed: the stage's loss
/// ([`autoencoder_loss`]) and optimizer, same weights, images and posterior noise.
fn train_autoencoder(dir: &Path) -> Result<(), Failure> {
    let info = info(&dir.join("autoencoder.json"))?;
    let device = Device::flex().autodiff();
    let config = traverse::vae::AutoencoderKLConfig::from_json(&std::fs::read_to_string(dir.join("vae/config.json"))?)?;
    let mut vae = config.init(&device)?;
    let weights = WeightFile::Path(dir.join("vae/diffusion_pytorch_model.safetensors"));
    load_into(&mut vae, "vae", vec![weights], &traverse::vae::NAMES)?;
    let saved = Saved::read(&dir.join("autoencoder.safetensors"))?;
    let (images, eps) = (saved.tensor::<4>("images", &device)?, saved.tensor::<4>("eps", &device)?);
    let [batch, _, crop, _] = images.dims();
    let settings = VaeTraining::new(1, batch, crop, number(&info, "edge_weight"), 0, 0.0, 0, 1)
        .with_learning_rate(number(&info, "learning_rate"))
        .with_kl_weight(number(&info, "kl_weight"))
        .with_optimizer(AdamWConfig::new().with_weight_decay(0.0).with_epsilon(number(&info, "epsilon") as f32));
    let mut optim = settings.optimizer.init();
    let (first_loss, ours) = timed(vae, |vae| {
        let posterior = vae.encode_distribution(images.clone());
        let (loss, _) = autoencoder_loss(&vae, images.clone(), posterior, eps.clone(), None, &settings);
        let value = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &vae);
        Ok((optim.step(settings.learning_rate, vae, grads), value))
    })?;
    let theirs = number(&info, "median_s");
    println!(
        "| autoencoder | batch | PyTorch (s/step) | traverse (s/step) | ratio | first loss, PyTorch / ours | peak memory, PyTorch / ours |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {:.1}M params, {crop}×{crop} crops | {batch} | {theirs:.3} | {ours:.3} | {:.2}× | {:.6} / {first_loss:.6} | {} |",
        number(&info, "params") / 1e6,
        ours / theirs,
        number(&info, "first_loss"),
        memory(&info)
    );
    Ok(())
}

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((mode, dirs)) if mode == "call" && !dirs.is_empty() => call(dirs),
        Some((mode, [dir])) if mode == "train" => train(Path::new(dir)),
        Some((mode, [dir])) if mode == "trajectory" => trajectory(Path::new(dir)),
        Some((mode, [dir])) if mode == "train-autoencoder" => train_autoencoder(Path::new(dir)),
        _ => Err("usage: bench call DIR [DIR ...] | train DIR | trajectory DIR | train-autoencoder DIR".into()),
    }
}
