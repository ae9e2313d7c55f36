//! The CLI's GPU path (`--device wgpu`: burn's wgpu backend, WGSL on Vulkan/Metal) gives the CPU's numbers on
//! the parity fixture, with attention slicing on as on a small GPU. On machines without a GPU, Vulkan is
//! Mesa's lavapipe (scripts/test.sh installs it). Built only with `--features wgpu`.
#![cfg(feature = "wgpu")]

mod common;

use burn::prelude::*;
use common::*;
use traverse::pipeline::{DirSource, StableDiffusion};
use traverse::swap::{SwapSampler, SwapSettings};

#[test]
fn a_guided_prompt_swap_on_wgpu_matches_the_cpu() {
    let gpu = Device::wgpu_options().init().expect("a wgpu adapter (lavapipe: apt install mesa-vulkan-drivers)");
    let src = DirSource(fixtures().join("tiny-sd"));
    let run = |device: &Device, max_scores: usize| {
        let sd = StableDiffusion::from_source_limited(&src, None, device, max_scores).unwrap();
        let init = traverse::rng::initial_latents(5, 4, 8, 8, device);
        let settings = SwapSettings { steps: 4, guidance: 7.5, swap_points: vec![2], max_batch: 4 };
        let styles = ["Chest x-ray showing Support Devices".to_string()];
        let res = SwapSampler::new(&sd, init, "Chest x-ray with no significant findings", &styles, "", &settings)
            .unwrap()
            .run()
            .unwrap();
        let image = sd.vae.decode(res.trajectories[0].latents[0].clone());
        [res.neutral, res.trajectories[0].latents[0].clone()]
            .map(|t| traverse::readback::values(t).unwrap())
            .into_iter()
            .chain([traverse::readback::values(image).unwrap()])
            .collect::<Vec<_>>()
    };
    let (cpu, wgpu) = (run(&device(), 0), run(&gpu, 64));
    for (what, (a, b)) in ["neutral latent", "swap latent", "decoded image"].iter().zip(cpu.iter().zip(&wgpu)) {
        let err = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        eprintln!("{what}: max abs error {err:.2e}");
        assert!(err < 1e-4, "{what}: {err}");
    }
}
