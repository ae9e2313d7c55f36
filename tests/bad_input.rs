//! Every public entry point that takes values from outside (a link, a flag, a file, a caller) answers an
//! out-of-range value with an error that says what is wrong, never a panic.

mod common;

use burn::prelude::*;
use common::*;
use traverse::Error;
use traverse::classifier::{Classifier, ClassifierConfig};
use traverse::pipeline::StableDiffusion;
use traverse::swap::{PromptEmbeddings, SwapSampler, SwapSettings};
use traverse::synthetic::{Kind, Phantom};

/// The error of `result`, which must be one.
fn err<T>(result: traverse::Result<T>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn sampling_refuses_bad_noise_steps_and_timesteps() {
    let sd = StableDiffusion::load(&fixtures().join("tiny-sd"), None, &device()).unwrap();
    let settings = SwapSettings { steps: 2, swap_points: vec![1], ..Default::default() };
    let wrong = Tensor::<4>::zeros([2, 4, 4, 4], &device());
    assert!(err(SwapSampler::new(&sd, wrong, "a", &[], "", &settings)).contains("initial latents"));
    let no_steps = SwapSettings { steps: 0, swap_points: vec![], ..Default::default() };
    let init = Tensor::<4>::zeros([1, 4, 4, 4], &device());
    assert!(SwapSampler::new(&sd, init.clone(), "a", &[], "", &no_steps).is_err());
    assert!(err(sd.scheduler.build(10).unwrap().step(init.clone(), 1000, init.clone())).contains("timestep 1000"));
    assert!(traverse::invert::invert(&sd, init.clone(), "a", "", 0, 1.0, |_, _| {}).is_err());
    assert!(sd.embed_ids(&[]).is_err());

    // Embeddings from a caller: each must be [1, L, the U-Net's cross_attention_dim] with one L.
    let good = sd.embed("a").unwrap();
    let width = good.dims()[2];
    let run = |neutral: Tensor<3>, style: Tensor<3>| {
        let prompts = PromptEmbeddings { neutral, styles: vec![("b".into(), style)], negative: good.clone() };
        SwapSampler::from_embeddings(&sd.unet, &sd.unet_config, &sd.scheduler, init.clone(), prompts, &settings)
    };
    assert!(run(good.clone(), good.clone()).is_ok());
    let narrow = Tensor::<3>::zeros([1, 77, width + 1], &device());
    assert!(err(run(good.clone(), narrow)).contains("cross_attention_dim"));
    assert!(run(Tensor::zeros([2, 77, width], &device()), good.clone()).is_err(), "a batch of two");
    assert!(run(good.clone(), Tensor::zeros([1, 76, width], &device())).is_err(), "another length");
}

#[test]
fn bezier_and_metrics_refuse_what_they_cannot_compute() {
    let z = Tensor::<4>::zeros([1, 1, 2, 2], &device());
    assert!(traverse::bezier::control_indices(5, 7).is_err());
    assert!(traverse::bezier::control_indices(5, 1).is_err());
    assert!(traverse::bezier::interpolate(std::slice::from_ref(&z), 10).is_err());
    assert!(traverse::bezier::interpolate(&[z.clone(), Tensor::zeros([1, 1, 3, 3], &device())], 10).is_err());
    assert!(traverse::bezier::interpolate(&[z.clone(), z], 1).is_err());
    assert!(traverse::metrics::tsne(&vec![vec![0.0]; 3], 30.0, 0).is_err(), "too few points");
    assert!(traverse::metrics::tsne(&[vec![0.0, 1.0], vec![0.0]], 30.0, 0).is_err(), "ragged points");
    assert!(traverse::metrics::tsne(&vec![vec![f32::NAN]; 5], 30.0, 0).is_err(), "not finite");
    assert!(traverse::metrics::tsne(&vec![vec![0.0]; 5], -1.0, 0).is_err(), "bad perplexity");
}

#[test]
fn images_and_classifiers_refuse_wrong_shapes() {
    assert!(traverse::image::to_rgb(&[0.0; 5], 2, 2).is_err());
    assert!(traverse::image::tensor_to_rgb(Tensor::zeros([1, 2, 4, 4], &device())).is_err());
    let config = ClassifierConfig { in_channels: 3, image_size: 8, widths: vec![8], labels: vec!["a".into()] };
    let classifier = Classifier { model: config.init(&device()).unwrap(), config: config.clone() };
    assert!(err(classifier.probabilities(Tensor::zeros([1, 2, 8, 8], &device()))).contains("3-channel"));
    assert!(err(classifier.config.label_column("b")).contains("no label"));
    for bad in [
        ClassifierConfig { widths: vec![], ..config.clone() },
        ClassifierConfig { widths: vec![12], ..config.clone() },
        ClassifierConfig { labels: vec![], ..config.clone() },
        // Images are resized to image_size² before they are judged; stages are built one per width.
        ClassifierConfig { image_size: 1 << 20, ..config.clone() },
        ClassifierConfig { in_channels: 0, ..config.clone() },
        ClassifierConfig { widths: vec![8; 1 << 20], ..config },
    ] {
        assert!(bad.init(&device()).is_err(), "{bad:?}");
    }
    let lpips = traverse::lpips::Lpips::init(&device());
    let small = Tensor::<4>::zeros([1, 3, 8, 8], &device());
    assert!(lpips.distance(small.clone(), small).is_err());
}

#[test]
fn phantoms_and_datasets_refuse_unknown_attributes_and_sizes() {
    let p = Phantom::sample(Kind::Chest, 0, 0);
    assert!(err(p.with_attribute("ruler", true)).contains("ruler"));
    let out = TempDir::new("bad-dataset");
    assert!(traverse::synthetic::dataset::write(Kind::Derm, 3, 0, 4096, &out.0.join("d"), |_| {}).is_err());
}

#[test]
fn run_files_refuse_missing_latents() {
    let tmp = TempDir::new("bad-latents");
    let path = tmp.0.join("latents.safetensors");
    let z = Tensor::<4>::zeros([1, 4, 2, 2], &device());
    traverse::output::write_latents(&path, &[("neutral".into(), z)], Default::default()).unwrap();
    assert!(err(traverse::output::trajectory_points(&path, 0)).contains("no trajectory"));
    assert!(err(traverse::output::read_latents(&path, &["init".into()], &device())).contains("no tensor"));
    assert!(matches!(
        traverse::output::read_latents(&tmp.0.join("none.safetensors"), &[], &device()),
        Err(Error::Io { .. })
    ));
}
