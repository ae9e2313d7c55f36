//! Engine side of the random-config parity sweep (`scripts/config_sweep.py` makes the cases): loads each
//! case's diffusers folder, runs the same guided DDIM from the same noise, and compares the final latents
//! and the decoded image with diffusers'. Prints a line per case; exits 1 if any case fails.
//!
//!     cargo run --release --example config_sweep -- OUT/case*

use std::path::Path;

use burn::prelude::*;
use traverse::codec::Tensors;
use traverse::pipeline::StableDiffusion;
use traverse::swap::{SwapSampler, SwapSettings};

fn reference(path: &Path) -> Result<Tensors, Box<dyn std::error::Error>> {
    Ok(traverse::codec::float_tensors(&path.display().to_string(), &std::fs::read(path)?)?)
}

/// Largest absolute difference, relative to max(1, largest reference value).
fn relative_error(got: Tensor<4>, (want, shape): &(Vec<f32>, Vec<usize>)) -> Result<f32, String> {
    if got.dims().as_slice() != shape.as_slice() {
        return Err(format!("shape {:?}, reference {shape:?}", got.dims()));
    }
    let got = got.into_data().convert::<f32>().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    let err = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    Ok(err / want.iter().fold(1f32, |m, x| m.max(x.abs())))
}

/// Runs one case: the largest relative error of latents and image.
fn run(dir: &Path, device: &Device) -> Result<(f32, f32), Box<dyn std::error::Error>> {
    let case: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("case.json"))?)?;
    let r = reference(&dir.join("ref.safetensors"))?;
    let sd = StableDiffusion::load(dir, None, device)?;
    let steps = case["steps"].as_u64().ok_or("steps")? as usize;
    let guidance = case["guidance"].as_f64().ok_or("guidance")?;
    // Swapping at the last step = the style prompt all the way: diffusers' plain pipeline run.
    let settings = SwapSettings { steps, guidance, swap_points: vec![steps], max_batch: 8 };
    let (init, shape) = &r["init"];
    let init = Tensor::<4>::from_data(TensorData::new(init.clone(), shape.clone()), device);
    let prompt = case["prompt"].as_str().ok_or("prompt")?.to_string();
    let negative = case["negative"].as_str().ok_or("negative")?;
    let res = SwapSampler::new(&sd, init, &prompt, std::slice::from_ref(&prompt), negative, &settings)?.run()?;
    let latent = res.trajectories[0].latents[0].clone();
    let latents = relative_error(latent.clone(), &r["latents"])?;
    let image = relative_error(sd.vae.decode(latent), &r["image"])?;
    Ok((latents, image))
}

fn main() {
    let device = Device::flex();
    let tolerance = 1e-3;
    let mut failed = 0;
    for dir in std::env::args().skip(1) {
        match run(Path::new(&dir), &device) {
            Ok((l, i)) if l <= tolerance && i <= tolerance => {
                println!("ok    {dir}: relative error latents {l:.1e}, image {i:.1e}")
            }
            Ok((l, i)) => {
                failed += 1;
                println!("FAIL  {dir}: relative error latents {l:.1e}, image {i:.1e} (tolerance {tolerance:.0e})");
            }
            Err(e) => {
                failed += 1;
                println!("FAIL  {dir}: {e}");
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} case(s) failed");
        std::process::exit(1);
    }
}
