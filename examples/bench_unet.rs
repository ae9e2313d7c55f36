//! Engine side of the U-Net benchmark (`scripts/bench.sh` runs both sides): loads the U-Net and inputs that
//! `scripts/bench_unet.py` saved, times this engine's forward pass on burn's CPU backend (flex), checks its
//! output against diffusers', and prints a comparison table. With `--train DIR` it times the training step that
//! `bench_unet.py --train` timed (same weights, batch, loss and AdamW; burn's autodiff), checks the first loss
//! against PyTorch's and prints one table row with both processes' peak memory.
//!
//!     cargo run --release --example bench_unet -- DIR [DIR ...]
//!     cargo run --release --example bench_unet -- --train DIR

use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use traverse::unet::{NAMES, UNet2DConditionConfig, UNet2DConditionModel};
use traverse::weights::{WeightFile, load_into};

type Failure = Box<dyn std::error::Error>;

/// A saved U-Net on `device`.
fn load_unet(dir: &std::path::Path, device: &Device) -> Result<UNet2DConditionModel, Failure> {
    let config = UNet2DConditionConfig::from_json(&std::fs::read_to_string(dir.join("unet/config.json"))?)?;
    let mut unet = config.init(device)?;
    load_into(&mut unet, "unet", vec![WeightFile::Path(dir.join("unet/diffusion_pytorch_model.safetensors"))], &NAMES)?;
    Ok(unet)
}

/// The f32 tensors of a safetensors file saved by the Python side.
fn tensors(path: &std::path::Path) -> Result<traverse::codec::Tensors, Failure> {
    Ok(traverse::codec::float_tensors(&path.display().to_string(), &std::fs::read(path)?)?)
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

/// Times the training step of `bench_unet.py --train` on the same weights and batch.
fn train(dir: &std::path::Path, runs: usize) -> Result<(), Failure> {
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("train.json"))?)?;
    let device = Device::flex().autodiff();
    let mut unet = load_unet(dir, &device)?;
    let t = tensors(&dir.join("train.safetensors"))?;
    let tensor = |name: &str| -> Tensor<4> {
        let (v, s) = t[name].clone();
        Tensor::from_data(TensorData::new(v, s), &device)
    };
    let (noisy, target) = (tensor("noisy"), tensor("target"));
    let (c, cs) = t["context"].clone();
    let context = Tensor::<3>::from_data(TensorData::new(c, cs), &device);
    let timesteps = t["timesteps"].0.clone();
    let lr = info["learning_rate"].as_f64().unwrap_or(1e-4);
    let decay = info["weight_decay"].as_f64().unwrap_or(1e-2) as f32;
    // torch.optim.AdamW's defaults: betas (0.9, 0.999), eps 1e-8.
    let mut optim = AdamWConfig::new().with_weight_decay(decay).with_epsilon(1e-8).init();
    let mut step = |unet: UNet2DConditionModel| {
        let loss =
            (unet.forward_timesteps(noisy.clone(), &timesteps, &context) - target.clone()).powf_scalar(2.0).mean();
        let value = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &unet);
        (optim.step(lr, unet, grads), value)
    };
    let (next, first_loss) = step(unet);
    unet = next;
    let mut times = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let (next, _) = step(unet);
        unet = next;
        times.push(t0.elapsed().as_secs_f64());
    }
    let _ = unet.valid();
    times.sort_by(f64::total_cmp);
    let ours = times[runs / 2];
    let theirs = info["median_s"].as_f64().unwrap_or(f64::NAN);
    let their_loss = info["first_loss"].as_f64().unwrap_or(f64::NAN);
    println!(
        "| config | batch | PyTorch (s/step) | traverse (s/step) | ratio | first loss, PyTorch / ours | peak memory, PyTorch / ours |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {theirs:.3} | {ours:.3} | {:.2}× | {their_loss:.6} / {first_loss:.6} | {:.0} / {:.0} MB |",
        info["config"].as_str().unwrap_or("?"),
        info["batch"],
        ours / theirs,
        info["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
        peak_rss_mb()
    );
    Ok(())
}

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, dir] = args.as_slice()
        && flag == "--train"
    {
        return train(std::path::Path::new(dir), 3);
    }
    let device = Device::flex();
    let runs = 3;
    println!(
        "| config | params | diffusers (s/call) | traverse (s/call) | ratio | max abs diff | peak memory, diffusers / ours |"
    );
    println!("|---|---|---|---|---|---|---|");
    for dir in args.iter().map(std::path::PathBuf::from) {
        let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("diffusers.json"))?)?;
        let unet = load_unet(&dir, &device)?;
        let inputs = tensors(&dir.join("inputs.safetensors"))?;
        let get = |name: &str| inputs[name].clone();
        let (s, ss) = get("sample");
        let (c, cs) = get("context");
        let (want, _) = get("out");
        let sample = Tensor::<4>::from_data(TensorData::new(s, ss), &device);
        let context = Tensor::<3>::from_data(TensorData::new(c, cs), &device);
        let t = info["timestep"].as_f64().unwrap_or(501.0) as f32;
        let call = || unet.forward(sample.clone(), t, &context).into_data();
        let out = call(); // warm-up, and the output to compare
        let mut times = Vec::new();
        for _ in 0..runs {
            let t0 = Instant::now();
            let _ = call();
            times.push(t0.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let ours = times[runs / 2];
        let theirs = info["median_s"].as_f64().unwrap_or(f64::NAN);
        let diff = out
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!(
            "| {} | {:.1}M | {theirs:.3} | {ours:.3} | {:.2}× | {diff:.1e} | {:.0} / {:.0} MB |",
            info["config"].as_str().unwrap_or("?"),
            info["params"].as_f64().unwrap_or(0.0) / 1e6,
            ours / theirs,
            info["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
            // The process's peak so far: configs run smallest first, so each row's peak is its own.
            peak_rss_mb()
        );
    }
    Ok(())
}
