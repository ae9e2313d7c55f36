//! Engine side of the U-Net benchmark (`scripts/bench.sh` runs both sides): loads the U-Net and inputs that
//! `scripts/bench_unet.py` saved, times this engine's forward pass on burn's CPU backend (flex), checks its
//! output against diffusers', and prints a comparison table.
//!
//!     cargo run --release --example bench_unet -- DIR [DIR ...]

use std::time::Instant;

use burn::prelude::*;
use traverse::unet::{NAMES, UNet2DConditionConfig};
use traverse::weights::{WeightFile, load_into};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::flex();
    let runs = 3;
    println!("| config | params | diffusers (s/call) | traverse (s/call) | ratio | max abs diff |");
    println!("|---|---|---|---|---|---|");
    for dir in std::env::args().skip(1).map(std::path::PathBuf::from) {
        let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("diffusers.json"))?)?;
        let config = UNet2DConditionConfig::from_json(&std::fs::read_to_string(dir.join("unet/config.json"))?)?;
        let mut unet = config.init(&device)?;
        load_into(
            &mut unet,
            "unet",
            vec![WeightFile::Path(dir.join("unet/diffusion_pytorch_model.safetensors"))],
            &NAMES,
        )?;
        let bytes = std::fs::read(dir.join("inputs.safetensors"))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)?;
        let get = |name: &str| -> (Vec<f32>, Vec<usize>) {
            let v = st.tensor(name).expect("input tensor");
            (
                v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                v.shape().to_vec(),
            )
        };
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
            "| {} | {:.1}M | {theirs:.3} | {ours:.3} | {:.2}× | {diff:.1e} |",
            info["config"].as_str().unwrap_or("?"),
            info["params"].as_f64().unwrap_or(0.0) / 1e6,
            ours / theirs
        );
    }
    Ok(())
}
