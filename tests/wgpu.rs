//! The CLI's GPU path (`--device wgpu`: burn's wgpu backend, WGSL on Vulkan/Metal) gives the CPU's numbers on
//! the parity fixture, planned as on a small GPU (its heads are narrow enough for the flash kernel, so nothing is
//! sliced; `nn::attention`'s unit test slices burn's op on the GPU). On machines without a GPU, Vulkan is
//! Mesa's lavapipe (scripts/test.sh installs it). Built with the `wgpu` feature (a default one).
#![cfg(feature = "wgpu")]

mod common;

use burn::prelude::*;
use common::*;
use traverse::pipeline::{DirSource, LoadOptions, StableDiffusion};
use traverse::swap::{SwapSampler, SwapSettings};
use traverse::weights::{Storage, device_bytes};

/// The wgpu device, started once per process (burn's wgpu runtime starts only once).
fn gpu() -> Device {
    static GPU: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    GPU.get_or_init(|| {
        Device::wgpu_options().init().expect("a wgpu adapter (lavapipe: apt install mesa-vulkan-drivers)")
    })
    .clone()
}

/// One guided prompt swap on the parity fixture (4 steps, swap at step 2): the neutral latent, the swap's
/// latent and its decoded image, read back.
fn swap_once(sd: &StableDiffusion, device: &Device) -> [Vec<f32>; 3] {
    let init = traverse::rng::initial_latents(5, 4, 8, 8, device);
    let settings = SwapSettings { steps: 4, guidance: 7.5, swap_points: vec![2], max_batch: 4 };
    let styles = ["Chest x-ray showing Support Devices".to_string()];
    let res = SwapSampler::new(sd, init, "Chest x-ray with no significant findings", &styles, "", &settings)
        .unwrap()
        .run()
        .unwrap();
    let swap = res.trajectories[0].latents[0].clone();
    let image = sd.vae.decode(swap.clone());
    [res.neutral, swap, image].map(|t| traverse::readback::values(t).unwrap())
}

#[test]
fn a_guided_prompt_swap_on_wgpu_matches_the_cpu() {
    let gpu = gpu();
    let src = DirSource(fixtures().join("tiny-sd"));
    let run = |device: &Device, max_scores: usize| {
        let sd =
            StableDiffusion::from_source(&src, device, &LoadOptions { max_scores, ..LoadOptions::default() }).unwrap();
        swap_once(&sd, device)
    };
    let (cpu, wgpu) = (run(&device(), 0), run(&gpu, 64));
    for (what, (a, b)) in ["neutral latent", "swap latent", "decoded image"].iter().zip(cpu.iter().zip(&wgpu)) {
        let err = max_diff(a, b);
        eprintln!("{what}: max abs error {err:.2e}");
        assert!(err < 1e-4, "{what}: {err}");
    }
}

#[test]
fn int8_weights_kept_int8_on_wgpu_give_the_dequantized_numbers() {
    let gpu = gpu();
    let dir = TempDir::new("int8-on-gpu");
    traverse::quantize::quantize_folder(&fixtures().join("tiny-sd"), &dir.0).unwrap();
    let src = DirSource(dir.0.clone());
    let run = |storage: Storage| {
        let options = LoadOptions { max_scores: 64, storage, ..LoadOptions::default() };
        let sd = StableDiffusion::from_source(&src, &gpu, &options).unwrap();
        let bytes = [device_bytes(&sd.text_encoder), device_bytes(&sd.unet), device_bytes(&sd.vae)];
        let [_, swap, image] = swap_once(&sd, &gpu);
        ([swap, image], bytes)
    };
    let ((f32_values, f32_bytes), (int8_values, int8_bytes)) = (run(Storage::Float), run(Storage::Int8));
    for (what, (a, b)) in ["swap latent", "decoded image"].iter().zip(f32_values.iter().zip(&int8_values)) {
        let err = max_diff(a, b);
        eprintln!("{what}: int8 on the GPU vs dequantized f32, max abs error {err:.2e}");
        assert!(err < 1e-4, "{what}: {err}");
    }
    for (what, (f, q)) in ["text encoder", "U-Net", "VAE"].iter().zip(f32_bytes.iter().zip(&int8_bytes)) {
        eprintln!("{what}: {f} bytes as f32, {q} with int8 weights ({:.2}×)", *q as f64 / *f as f64);
    }
    // All three are almost all convolution, linear and embedding weights (the tiny text encoder's layers are too
    // small to be quantized, but not its token embedding): well under half of their f32 size.
    assert!(int8_bytes.iter().zip(&f32_bytes).all(|(q, f)| q * 2 < *f), "{int8_bytes:?} vs {f32_bytes:?}");
}
