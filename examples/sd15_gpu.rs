//! The paper's model size on a GPU (#25's proof at full size): writes a Stable Diffusion 1.5 folder with SD 1.5's
//! exact configs and random weights (diffusers layout, once), its int8 copy (`traverse quantize`'s format), then
//! loads the int8 folder on burn's CPU backend (weights dequantized to f32) and on wgpu (weights kept int8,
//! attention sliced under WebGPU's default 128 MiB buffer limit, as the page plans it), runs one guided U-Net
//! call at a small latent on both, and prints load times, planned and measured GPU memory and the largest
//! difference. The CPU's prediction goes to `DIR/cpu-prediction-LATENT.json`, for the page's benchmark of the
//! same folder to be compared with (`tests/web/bench.mjs`). A benchmark, not a test: on lavapipe (software Vulkan) it takes minutes.
//!
//!     cargo run --release --example sd15_gpu -- DIR [LATENT] [f32|f16]
//!
//! DIR gets `f32/` (4.3 GB) and `int8/` (1.1 GB); LATENT is the latent side (default 32, i.e. 256 px); the last
//! argument is the GPU's precision (default f32; f16 needs an adapter with 16-bit storage).

use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use traverse::pipeline::{Configs, DirSource, LoadOptions, Plan, StableDiffusion};
use traverse::weights::{Precision, Storage, save_pytorch};

/// SD 1.5's configs: diffusers' and transformers' defaults where SD 1.5 keeps them, as its repository has them.
const CONFIGS: [(&str, &str); 4] = [
    (
        "text_encoder/config.json",
        r#"{"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
        "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "quick_gelu"}"#,
    ),
    (
        "unet/config.json",
        r#"{"sample_size": 64, "in_channels": 4, "out_channels": 4, "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2, "cross_attention_dim": 768, "attention_head_dim": 8,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]}"#,
    ),
    (
        "vae/config.json",
        r#"{"block_out_channels": [128, 256, 512, 512], "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
        "layers_per_block": 2, "sample_size": 512, "scaling_factor": 0.18215}"#,
    ),
    (
        "scheduler/scheduler_config.json",
        r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": false,
        "set_alpha_to_one": false, "steps_offset": 1}"#,
    ),
];

type Failure = Box<dyn std::error::Error>;

/// Writes the random-weights SD 1.5 folder: configs, the test fixture's CLIP tokenizer, seeded weights.
fn write_random(dir: &Path) -> Result<(), Failure> {
    for (path, json) in CONFIGS {
        std::fs::create_dir_all(dir.join(path).parent().unwrap())?;
        std::fs::write(dir.join(path), json)?;
    }
    let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sd/tokenizer");
    std::fs::create_dir_all(dir.join("tokenizer"))?;
    for entry in std::fs::read_dir(tokenizer)? {
        let entry = entry?;
        std::fs::copy(entry.path(), dir.join("tokenizer").join(entry.file_name()))?;
    }
    let configs = Configs::read(&DirSource(dir.to_path_buf()))?;
    let device = Device::flex();
    device.seed(1);
    // One model at a time, so only one is ever materialized in memory.
    save_pytorch(
        &configs.text.init(&device)?,
        &dir.join("text_encoder/model.safetensors"),
        traverse::clip::EXPORT_NAMES,
    )?;
    save_pytorch(
        &configs.unet.init(&device)?,
        &dir.join("unet/diffusion_pytorch_model.safetensors"),
        traverse::unet::EXPORT_NAMES,
    )?;
    save_pytorch(
        &configs.vae.init(&device)?,
        &dir.join("vae/diffusion_pytorch_model.safetensors"),
        traverse::vae::EXPORT_NAMES,
    )?;
    Ok(())
}

/// What one device did: load seconds, weight bytes on the device, the call's seconds and output.
struct Run {
    load_s: f64,
    weight_bytes: u64,
    call_s: f64,
    reserved: Option<u64>,
    out: Vec<f32>,
}

fn run(dir: &Path, device: &Device, options: &LoadOptions, latent: usize) -> Result<Run, Failure> {
    let t = Instant::now();
    let sd = StableDiffusion::from_source(&DirSource(dir.to_path_buf()), device, options)?;
    let weight_bytes = sd.device_bytes();
    let cond = sd.embed(traverse::app::bench::PROMPT)?;
    let uncond = sd.embed("")?;
    let latents = traverse::rng::initial_latents(traverse::app::bench::SEED, 4, latent, latent, device);
    traverse::readback::values(cond.clone().sum())?;
    let load_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out = traverse::readback::values(sd.unet.guided(latents, cond, &uncond, 981, 7.5))?;
    let call_s = t.elapsed().as_secs_f64();
    let reserved = device.memory_pool_usage().map(|u| u.bytes_reserved);
    Ok(Run { load_s, weight_bytes, call_s, reserved, out })
}

fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let root = std::path::PathBuf::from(args.next().ok_or("usage: sd15_gpu DIR [LATENT]")?);
    let latent: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(32);
    let precision: Precision = args.next().map(|s| s.parse()).transpose()?.unwrap_or_default();
    let (f32_dir, int8_dir) = (root.join("f32"), root.join("int8"));
    if !f32_dir.join("vae/diffusion_pytorch_model.safetensors").is_file() {
        let t = Instant::now();
        write_random(&f32_dir)?;
        eprintln!("wrote {} in {:.0} s", f32_dir.display(), t.elapsed().as_secs_f64());
    }
    if !int8_dir.join("vae/diffusion_pytorch_model.safetensors").is_file() {
        traverse::quantize::quantize_folder(&f32_dir, &int8_dir)?;
    }
    let configs = Configs::read(&DirSource(int8_dir.clone()))?;
    let mut gpu = Device::wgpu_options().init().map_err(|e| format!("wgpu: {e}"))?;
    precision.configure(&mut gpu)?;
    let planned = configs.device_bytes(&gpu, Storage::Int8)?;
    let max_binding = traverse::pipeline::DEFAULT_MAX_BINDING;
    let plan = Plan::new(&configs.unet, &configs.vae, [latent; 2], true, max_binding, precision)?;
    eprintln!("CPU: loading and one guided U-Net call at {latent}×{latent} …");
    let on_cpu = run(&int8_dir, &Device::flex(), &LoadOptions::default(), latent)?;
    eprintln!("wgpu: the same in {precision}, int8 weights, attention slices of at most {} scores …", plan.max_scores);
    let options = LoadOptions { max_scores: plan.max_scores, storage: Storage::Int8, ..LoadOptions::default() };
    let on_gpu = run(&int8_dir, &gpu, &options, latent)?;
    let err = on_cpu.out.iter().zip(&on_gpu.out).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let scale = on_cpu.out.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mb = |b: u64| format!("{:.0} MB", b as f64 / 1e6);
    println!("SD 1.5 (random weights, int8 files), one guided U-Net call at {latent}×{latent} (batch 2)\n");
    println!("| device | weights on the device | planned | device memory reserved | load | U-Net call |");
    println!("|---|---|---|---|---|---|");
    let gpu_name = format!("wgpu (int8, {precision})");
    for (name, r, plan) in [("CPU (flex, f32)", &on_cpu, "–".to_string()), (gpu_name.as_str(), &on_gpu, mb(planned))]
    {
        let reserved = r.reserved.map_or("–".to_string(), mb);
        println!("| {name} | {} | {plan} | {reserved} | {:.1} s | {:.1} s |", mb(r.weight_bytes), r.load_s, r.call_s);
    }
    println!("\nmax abs difference wgpu vs CPU: {err:.2e} (largest |output| {scale:.2})");
    // The page's benchmark (`?bench=1&size=…`, same seed and prompt) is compared with this by tests/web/bench.mjs.
    let reference = root.join(format!("cpu-prediction-{latent}.json"));
    std::fs::write(&reference, serde_json::to_string(&on_cpu.out)?)?;
    println!("CPU prediction written to {}", reference.display());
    Ok(())
}
