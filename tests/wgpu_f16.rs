//! The GPU path in f16 (`--precision f16`, the page's `precision=f16`): the fixture's prompt swap and its decoded
//! images against the CPU's f32, held to what f16 costs diffusers on the same run
//! (`tests/fixtures/f16_reference.json`, written by `scripts/f16_reference.py`). Its own test binary: a process
//! configures its wgpu device's precision once, before any tensor (tests/wgpu.rs keeps f32). On machines without a
//! GPU, Vulkan is Mesa's lavapipe, which offers 16-bit storage.
#![cfg(feature = "wgpu")]

mod common;

use burn::prelude::*;
use common::*;
use traverse::pipeline::{DirSource, LoadOptions, StableDiffusion};
use traverse::swap::{SwapSampler, SwapSettings};
use traverse::weights::{Precision, Storage};

/// The swap's latents (neutral first, then each swap point's) and their decoded images.
fn swap(device: &Device, options: &LoadOptions, dir: &std::path::Path) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let r = load_reference("tiny_sd_reference.safetensors");
    let sd = StableDiffusion::from_source(&DirSource(dir.to_path_buf()), device, options).unwrap();
    let settings = SwapSettings { steps: 10, guidance: 7.5, swap_points: vec![2, 4, 6, 8], max_batch: 16 };
    let styles = ["Chest X-ray of a subject with pleural effusion".to_string()];
    let init = r["ddim.init"].tensor(device);
    let res = SwapSampler::new(&sd, init, "Chest x-ray with no significant findings", &styles, "", &settings)
        .unwrap()
        .run()
        .unwrap();
    let latents: Vec<Tensor<4>> = std::iter::once(res.neutral).chain(res.trajectories[0].latents.clone()).collect();
    let images = latents.iter().map(|z| traverse::readback::values(sd.vae.decode(z.clone())).unwrap()).collect();
    (latents.into_iter().map(|z| traverse::readback::values(z).unwrap()).collect(), images)
}

fn max_err(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().zip(b).map(|(x, y)| max_diff(x, y)).fold(0.0, f32::max)
}

#[test]
fn f16_on_wgpu_stays_within_twice_diffusers_f16_error() {
    let mut gpu = Device::wgpu_options().init().expect("a wgpu adapter (lavapipe: apt install mesa-vulkan-drivers)");
    Precision::F16.configure(&mut gpu).expect("an adapter with 16-bit storage (lavapipe has it)");
    assert_eq!(Precision::of(&gpu), Precision::F16);
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("f16_reference.json")).unwrap()).unwrap();
    let theirs = |k: &str| reference[k].as_f64().unwrap() as f32;

    let dir = fixtures().join("tiny-sd");
    let (latents, images) = swap(&device(), &LoadOptions::default(), &dir);
    let gpu_options = LoadOptions { max_scores: 64, ..LoadOptions::default() };
    let (latents16, images16) = swap(&gpu, &gpu_options, &dir);
    let (lat_err, img_err) = (max_err(&latents, &latents16), max_err(&images, &images16));
    let (lat_theirs, img_theirs) = (theirs("latents_max_abs_error"), theirs("images_max_abs_error"));
    eprintln!(
        "f16 vs f32, max abs error: latents {lat_err:.3e} (diffusers {lat_theirs:.3e}), images {img_err:.3e} (diffusers {img_theirs:.3e})"
    );
    assert!(latents16.iter().flatten().chain(images16.iter().flatten()).all(|v| v.is_finite()));
    assert!(lat_err > 0.0, "the run was not in f16");
    assert!(lat_err <= 2.0 * lat_theirs && img_err <= 2.0 * img_theirs);

    // int8 weights kept int8 with f16 activations, against the same weights dequantized on the CPU in f32.
    let int8 = TempDir::new("int8-f16");
    traverse::quantize::quantize_folder(&dir, &int8.0).unwrap();
    let (want, _) = swap(&device(), &LoadOptions::default(), &int8.0);
    let (kept, _) = swap(&gpu, &LoadOptions { storage: Storage::Int8, ..gpu_options }, &int8.0);
    let err = max_err(&want, &kept);
    eprintln!("int8 weights kept int8, f16 vs f32: latents' max abs error {err:.3e}");
    assert!(err <= 2.0 * lat_theirs);
}
