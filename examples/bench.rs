//! Engine side of the benchmarks (`scripts/bench.sh` runs both sides in one run on the CPU, `scripts/gpu/bench.sh`
//! on a GPU machine): loads the models and inputs that `scripts/bench_reference.py` saved, times the same work
//! on burn's CPU backend (flex) or on the GPU through burn-wgpu (the page's WGSL kernels) and prints a markdown
//! table beside PyTorch's figures, each output checked against PyTorch's and each row with both processes' peak
//! memory (on the GPU: PyTorch's peak allocation beside the memory burn's pools reserve). Modes, each in a
//! process of its own:
//!
//!     cargo run --release --example bench -- call DIR [DIR ...]     # one guided U-Net call per saved config
//!     cargo run --release --example bench -- train DIR              # the U-Net's training step
//!     cargo run --release --example bench -- trajectory DIR         # the paper's trajectory, shared prefix
//!     cargo run --release --example bench -- train-autoencoder DIR  # the autoencoder's training step
//!
//!     cargo run --release --example bench -- ops --device wgpu       # the U-Net's operations on the GPU
//!
//! `ops` times the U-Net's main operations at SD 1.5's sizes on the GPU, with GFLOP/s, as `scripts/op_profile.py
//! --device cuda` does for PyTorch (`examples/op_profile.rs` compares the CPU's). `call` and `train` also take,
//! after the mode: `--device wgpu` (the GPU), `--precision f16` (call),
//! `--max-binding MIB` (attention sliced for that buffer limit, as the CLI's 128 MiB; 0: unsliced), `--batch N`
//! (train: the batch `bench_reference.py train --batch N` saved) and `--reference FILE.json` (the reference run
//! to compare with; on the GPU by default its CUDA run of the same precision, `diffusers-cuda-float32.json`).

use std::path::Path;
use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use traverse::pipeline::Plan;
use traverse::scheduler::DdimConfig;
use traverse::swap::{PAPER_SWAP_POINTS, PromptEmbeddings, SwapSampler, SwapSettings};
use traverse::train::{VaeTraining, autoencoder_loss};
use traverse::unet::{NAMES, UNet2DConditionConfig, UNet2DConditionModel};
use traverse::weights::{Precision, WeightFile, load_into};

type Failure = Box<dyn std::error::Error>;

/// Timed repetitions after the warm-up, at least, as on the reference side (`bench_reference.py --runs`'s
/// default); short calls go on until they add up to `MIN_SECONDS` (at most `MAX_RUNS`), as there.
const RUNS: usize = 3;
const MIN_SECONDS: f64 = 1.0;
const MAX_RUNS: usize = 50;

/// Where and how `call` and `train` run.
struct Options {
    gpu: bool,
    precision: Precision,
    /// Attention's buffer limit in MiB (0: unsliced).
    max_binding_mib: u64,
    /// The training step's batch (`None`: the reference's default file).
    batch: Option<usize>,
    reference: Option<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<(Self, Vec<String>), Failure> {
        let mut o =
            Options { gpu: false, precision: Precision::F32, max_binding_mib: 128, batch: None, reference: None };
        let mut rest = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
            match a.as_str() {
                "--device" => o.gpu = value()? == "wgpu",
                "--precision" => o.precision = value()?.parse()?,
                "--max-binding" => o.max_binding_mib = value()?.parse()?,
                "--batch" => o.batch = Some(value()?.parse()?),
                "--reference" => o.reference = Some(value()?),
                _ => rest.push(a.clone()),
            }
        }
        if !o.gpu && o.precision == Precision::F16 {
            return Err("--precision f16 runs on the GPU (--device wgpu)".into());
        }
        Ok((o, rest))
    }

    /// The device, computing in the chosen precision.
    fn device(&self) -> Result<Device, Failure> {
        if !self.gpu {
            return Ok(Device::flex());
        }
        let mut device = Device::wgpu_options().init().map_err(|e| format!("wgpu: {e}"))?;
        self.precision.configure(&mut device)?;
        Ok(device)
    }

    /// Most attention scores per slice on the GPU (none on the CPU).
    fn max_scores(&self) -> usize {
        if self.gpu && self.max_binding_mib > 0 {
            Plan::max_values(self.max_binding_mib << 20, self.precision)
        } else {
            0
        }
    }

    /// The reference run's result file: `STEM.json` on the CPU, its CUDA run of this precision on the GPU.
    fn reference(&self, stem: &str) -> String {
        let dtype = match self.precision {
            Precision::F32 => "float32",
            Precision::F16 => "float16",
        };
        self.reference
            .clone()
            .unwrap_or_else(|| if self.gpu { format!("{stem}-cuda-{dtype}.json") } else { format!("{stem}.json") })
    }

    fn name(&self) -> String {
        if self.gpu { format!("wgpu, {}", self.precision) } else { "CPU (flex)".into() }
    }
}

/// "A / B MB": the reference's peak memory beside ours; on the GPU, its peak allocation beside what burn's pools
/// reserve on `device`.
fn memory(info: &serde_json::Value, device: &Device, gpu: bool) -> String {
    if gpu {
        let ours = device.memory_pool_usage().map_or(f64::NAN, |u| u.bytes_reserved as f64 / 1048576.0);
        format!("{:.0} / {ours:.0} MB (GPU)", number(info, "peak_device_mb"))
    } else {
        format!("{:.0} / {:.0} MB", number(info, "peak_rss_mb"), peak_rss_mb())
    }
}

/// A saved U-Net and its config on `device`, attention sliced to `max_scores` (0: unsliced).
fn load_unet(
    dir: &Path,
    device: &Device,
    max_scores: usize,
) -> Result<(UNet2DConditionConfig, UNet2DConditionModel), Failure> {
    let config = UNet2DConditionConfig::from_json(&std::fs::read_to_string(dir.join("unet/config.json"))?)?;
    let mut unet = config.init_limited(device, max_scores)?;
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

/// "A / B MB": the reference's peak memory beside ours (CPU runs).
fn cpu_memory(info: &serde_json::Value) -> String {
    format!("{:.0} / {:.0} MB", number(info, "peak_rss_mb"), peak_rss_mb())
}

/// The median, as Python's `statistics.median` (the middle two's mean for an even count).
fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n % 2 == 1 { times[n / 2] } else { (times[n / 2 - 1] + times[n / 2]) / 2.0 }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The median time of at least `RUNS` calls of `step` (see `MIN_SECONDS`) after a warm-up call, and the
/// warm-up's result. `step` threads
/// `state` (a model that an optimizer step consumes and returns) from call to call.
fn timed<S, T>(mut state: S, mut step: impl FnMut(S) -> Result<(S, T), Failure>) -> Result<(T, f64), Failure> {
    let (next, first) = step(state)?;
    state = next;
    let mut times: Vec<f64> = Vec::with_capacity(RUNS);
    while times.len() < RUNS || (times.iter().sum::<f64>() < MIN_SECONDS && times.len() < MAX_RUNS) {
        let t0 = Instant::now();
        state = step(state)?.0;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok((first, median(times)))
}

/// One guided U-Net call per saved config, smallest first (each row's peak memory is then its own). Reading the
/// output back ends each timed call, so a GPU's call is timed to the end of its work.
fn call(dirs: &[String], o: &Options) -> Result<(), Failure> {
    let device = o.device()?;
    println!(
        "| config | params | reference | diffusers (s/call) | traverse, {} (s/call) | ratio | GFLOP/s, diffusers / ours | max abs diff | peak memory, diffusers / ours |",
        o.name()
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for dir in dirs.iter().map(Path::new) {
        let reference = o.reference("diffusers");
        let info = info(&dir.join(&reference))?;
        let (config, unet) = load_unet(dir, &device, o.max_scores())?;
        let saved = Saved::read(&dir.join("inputs.safetensors"))?;
        let (sample, context) = (saved.tensor::<4>("sample", &device)?, saved.tensor::<3>("context", &device)?);
        let [batch, _, h, w] = sample.dims();
        let flops = batch as f64 * config.flops([h, w], context.dims()[1])? as f64;
        let t = info["timestep"].as_f64().unwrap_or(501.0) as f32;
        let (out, ours) =
            timed((), |()| Ok(((), traverse::readback::values(unet.forward(sample.clone(), t, &context))?)))?;
        let theirs = number(&info, "median_s");
        println!(
            "| {} | {:.1}M | {} | {theirs:.3} | {ours:.3} | {:.2}× | {:.0} / {:.0} | {:.1e} | {} |",
            info["config"].as_str().unwrap_or("?"),
            number(&info, "params") / 1e6,
            reference.trim_end_matches(".json"),
            ours / theirs,
            flops / theirs / 1e9,
            flops / ours / 1e9,
            max_abs_diff(&out, saved.values("out")?),
            memory(&info, &device, o.gpu)
        );
    }
    Ok(())
}

/// The U-Net training step that `bench_reference.py train` timed: same weights, batch, loss and AdamW.
fn train(dir: &Path, o: &Options) -> Result<(), Failure> {
    if o.precision != Precision::F32 {
        return Err("training runs in f32".into());
    }
    let stem = o.batch.map_or("train".to_string(), |b| format!("train-batch{b}"));
    let info = info(&dir.join(o.reference(&stem)))?;
    let device = o.device()?.autodiff();
    let (_, unet) = load_unet(dir, &device, o.max_scores())?;
    let saved = Saved::read(&dir.join(format!("{stem}.safetensors")))?;
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
        "| U-Net | batch | PyTorch, {} (s/step) | traverse, {} (s/step) | ratio | first loss, PyTorch / ours | peak memory, PyTorch / ours |",
        info["device"].as_str().unwrap_or("cpu"),
        o.name()
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {theirs:.3} | {ours:.3} | {:.2}× | {:.6} / {first_loss:.6} | {} |",
        info["config"].as_str().unwrap_or("?"),
        info["batch"],
        ours / theirs,
        number(&info, "first_loss"),
        memory(&info, &device, o.gpu)
    );
    Ok(())
}

/// The paper's trajectory on the U-Net saved by `call`: our shared-prefix sampler against diffusers running
/// the 10 images one by one, same noise and embeddings, one run each.
fn trajectory(dir: &Path) -> Result<(), Failure> {
    let info = info(&dir.join("trajectory.json"))?;
    let device = Device::flex();
    let (config, unet) = load_unet(dir, &device, 0)?;
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
        cpu_memory(&info)
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
        cpu_memory(&info)
    );
    Ok(())
}

/// The median milliseconds of 10 calls after 2 warm-ups (kernel compilation), each read back to end its work,
/// printed with the rate of `flops` floating-point operations; a failure (say, a buffer over the device's limit)
/// is printed in its row.
fn time_op(name: &str, flops: f64, mut f: impl FnMut() -> Result<Vec<f32>, Failure>) -> Result<(), Failure> {
    let mut run = || -> Result<f64, Failure> {
        f()?;
        f()?;
        let mut ms = Vec::with_capacity(10);
        for _ in 0..10 {
            let t0 = Instant::now();
            f()?;
            ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        Ok(ms[5])
    };
    match run() {
        Ok(ms) => {
            let rate = if flops > 0.0 { format!("{:8.0}", flops / ms / 1e6) } else { format!("{:>8}", "–") };
            println!("| {name:<52} | {ms:9.2} | {rate} |");
        }
        Err(e) => {
            let why = e.to_string().lines().filter(|l| l.contains("allocate")).collect::<Vec<_>>().join(" ");
            println!("| {name:<52} | failed: {} | – |", if why.is_empty() { "see the error" } else { why.trim() });
        }
    }
    Ok(())
}

/// The U-Net's operations at SD 1.5's sizes (batch 2, latent 64×64) on the GPU, as the model calls them: the rows
/// of `scripts/op_profile.py --device cuda`, and on the GPU the kernels this crate's choices replaced or may adopt.
fn ops(o: &Options) -> Result<(), Failure> {
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::{GroupNormConfig, LinearConfig, PaddingConfig2d};
    use burn::tensor::Distribution;
    use traverse::nn::attention::{burn_attention, multi_head_attention};
    use traverse::nn::{conv2d, geglu, group_norm_silu};
    use traverse::readback::values;

    let d = o.device()?;
    let normal = Distribution::Normal(0.0, 1.0);
    println!("| operation (batch 2, {}) | ms | GFLOP/s |\n|---|---|---|", o.name());
    for (c, s) in [(320, 64), (640, 32), (1280, 16), (1280, 8)] {
        let x = Tensor::<4>::random([2, c, s, s], normal, &d);
        let conv = Conv2dConfig::new([c, c], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(&d);
        let flops = 2.0 * 9.0 * (c * c * s * s * 2) as f64;
        time_op(&format!("conv3x3 {c}->{c} @{s}x{s}"), flops, || Ok(values(conv2d(&conv, x.clone()))?))?;
        if o.gpu {
            // What `conv2d` replaced on native GPUs (the page keeps it): burn's direct convolution kernel.
            time_op(&format!("conv3x3 {c}->{c} @{s}x{s}, burn's direct kernel"), flops, || {
                Ok(values(conv.forward(x.clone()))?)
            })?;
        }
    }
    let x = Tensor::<4>::random([2, 320, 64, 64], normal, &d);
    let gn = GroupNormConfig::new(32, 320).init(&d);
    time_op("groupnorm + silu 320 @64x64", 0.0, || Ok(values(group_norm_silu(&gn, x.clone()))?))?;
    time_op("add 320 @64x64", 0.0, || Ok(values(x.clone() + x.clone())?))?;
    let tokens = Tensor::<3>::random([2, 4096, 320], normal, &d);
    let context = Tensor::<3>::random([2, 77, 320], normal, &d);
    let attention_flops = |keys: usize| 2.0 * 2.0 * (2 * 4096 * keys * 320) as f64;
    let sliced = Plan::max_values(128 << 20, o.precision);
    for (name, kv) in [("self-attention 8x4096x40", &tokens), ("cross-attention 8x4096x77", &context)] {
        let flops = attention_flops(kv.dims()[1]);
        // The model's attention (on a native GPU the flash kernel), checked against burn's op as the model ran
        // it before (sliced for 128 MiB, as the CLI plans it), then burn's op unsliced and sliced.
        let model = || Ok(values(multi_head_attention(tokens.clone(), kv.clone(), kv.clone(), 8, false, sliced))?);
        let burn = |max: usize| Ok(values(burn_attention(tokens.clone(), kv.clone(), kv.clone(), 8, max))?);
        let diff = match (model(), burn(sliced)) {
            (Ok(a), Ok(b)) => {
                format!("{:.0e}", a.iter().zip(&b).map(|(x, y): (&f32, &f32)| (x - y).abs()).fold(0f32, f32::max))
            }
            _ => "–".into(),
        };
        time_op(&format!("{name}, the model's (max diff {diff})"), flops, model)?;
        time_op(&format!("{name}, burn's op unsliced"), flops, || burn(0))?;
        time_op(&format!("{name}, burn's op sliced for 128 MiB"), flops, || burn(sliced))?;
    }
    let lin = LinearConfig::new(320, 2560).init(&d);
    time_op("linear 320->2560 on 8192 tokens", 2.0 * (8192 * 320 * 2560usize) as f64, || {
        Ok(values(lin.forward(tokens.clone()))?)
    })?;
    let h = Tensor::<3>::random([2, 4096, 2560], normal, &d);
    time_op("GEGLU gate 2x4096x1280", 0.0, || Ok(values(geglu(h.clone()))?))
}

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (options, args) = Options::parse(&args)?;
    match args.split_first() {
        Some((mode, dirs)) if mode == "call" && !dirs.is_empty() => call(dirs, &options),
        Some((mode, [dir])) if mode == "train" => train(Path::new(dir), &options),
        Some((mode, [])) if mode == "ops" => ops(&options),
        Some((mode, _)) if options.gpu && mode != "call" && mode != "train" => {
            Err(format!("{mode} runs on the CPU").into())
        }
        Some((mode, [dir])) if mode == "trajectory" => trajectory(Path::new(dir)),
        Some((mode, [dir])) if mode == "train-autoencoder" => train_autoencoder(Path::new(dir)),
        _ => Err("usage: bench call DIR [DIR ...] | train DIR | trajectory DIR | train-autoencoder DIR | ops".into()),
    }
}
