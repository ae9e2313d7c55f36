//! Where a CPU training step's time goes (burn's CPU backend under autodiff): the autoencoder's and the small
//! U-Net's steps that `scripts/bench.sh` saved, by parts, and single operations forward and backward, burn's
//! against the model code's (`nn::conv2d`, `nn::group_norm_silu`, which take this crate's kernels under
//! autodiff). Best of 4.
//!
//!     cargo run --release --example train_profile -- [--autoencoder DIR] [--unet DIR]
//!     cargo run --release --example train_profile -- --autoencoder ~/.cache/traverse/bench/autoencoder \
//!         --unet ~/.cache/traverse/bench/small

use std::time::Instant;

use burn::nn::conv::Conv2dConfig;
use burn::nn::{GroupNormConfig, PaddingConfig2d};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use traverse::nn::{conv2d, group_norm_silu};
use traverse::train::{VaeTraining, autoencoder_loss};
use traverse::unet::UNet2DConditionConfig;
use traverse::weights::{WeightFile, load_into};

type Failure = Box<dyn std::error::Error>;

/// Milliseconds since `t`.
fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The autoencoder's step by parts, on the model and batch `bench_reference.py train-autoencoder` saved.
fn autoencoder_step(dir: &std::path::Path) -> Result<(), Failure> {
    let device = Device::flex().autodiff();
    let config = traverse::vae::AutoencoderKLConfig::from_json(&std::fs::read_to_string(dir.join("vae/config.json"))?)?;
    let mut vae = config.init(&device)?;
    let weights = WeightFile::Path(dir.join("vae/diffusion_pytorch_model.safetensors"));
    load_into(&mut vae, "vae", vec![weights], &traverse::vae::NAMES)?;
    let saved = traverse::codec::float_tensors("batch", &std::fs::read(dir.join("autoencoder.safetensors"))?)?;
    let tensor = |name: &str| -> Result<Tensor<4>, Failure> {
        let (v, s) = saved.get(name).ok_or_else(|| format!("no tensor {name}"))?;
        Ok(Tensor::from_data(TensorData::new(v.clone(), s.clone()), &device))
    };
    let (images, eps) = (tensor("images")?, tensor("eps")?);
    let [batch, _, crop, _] = images.dims();
    let settings = VaeTraining::new(1, batch, crop, 1.0, 0, 0.0, 0, 1);
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut best = [f64::MAX; 4];
    for _ in 0..4 {
        let t = Instant::now();
        let posterior = vae.encode_distribution(images.clone());
        let _ = posterior.0.clone().sum().into_scalar::<f32>();
        let encode = ms(t);
        let t = Instant::now();
        let (loss, _) = autoencoder_loss(&vae, images.clone(), posterior, eps.clone(), None, &settings);
        let _ = loss.clone().into_scalar::<f32>();
        let decode = ms(t);
        let t = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &vae);
        let backward = ms(t);
        let t = Instant::now();
        vae = optim.step(settings.learning_rate, vae, grads);
        let step = ms(t);
        for (b, v) in best.iter_mut().zip([encode, decode, backward, step]) {
            *b = b.min(v);
        }
    }
    println!("| autoencoder step, batch {batch} of {crop}×{crop} | encode | decode + loss | backward | AdamW |");
    println!("|---|---|---|---|---|");
    println!("| ms | {:.0} | {:.0} | {:.0} | {:.0} |", best[0], best[1], best[2], best[3]);
    Ok(())
}

/// The U-Net's step by parts, on the model and batch `bench_reference.py train` saved (the step `bench train`
/// times: the diffusion MSE, AdamW).
fn unet_step(dir: &std::path::Path) -> Result<(), Failure> {
    let device = Device::flex().autodiff();
    let config = UNet2DConditionConfig::from_json(&std::fs::read_to_string(dir.join("unet/config.json"))?)?;
    let mut unet = config.init(&device)?;
    let weights = WeightFile::Path(dir.join("unet/diffusion_pytorch_model.safetensors"));
    load_into(&mut unet, "unet", vec![weights], &traverse::unet::NAMES)?;
    let saved = traverse::codec::float_tensors("batch", &std::fs::read(dir.join("train.safetensors"))?)?;
    let get = |name: &str| saved.get(name).ok_or_else(|| format!("no tensor {name}"));
    let tensor = |name: &str| -> Result<Tensor<4>, Failure> {
        let (v, s) = get(name)?;
        Ok(Tensor::from_data(TensorData::new(v.clone(), s.clone()), &device))
    };
    let (noisy, target) = (tensor("noisy")?, tensor("target")?);
    let (v, s) = get("context")?;
    let context = Tensor::<3>::from_data(TensorData::new(v.clone(), s.clone()), &device);
    let timesteps = get("timesteps")?.0.clone();
    let mut optim = AdamWConfig::new().with_weight_decay(0.01).with_epsilon(1e-8).init();
    let mut best = [f64::MAX; 3];
    for _ in 0..4 {
        let t = Instant::now();
        let loss =
            (unet.forward_timesteps(noisy.clone(), &timesteps, &context) - target.clone()).powf_scalar(2.0).mean();
        let _ = loss.clone().into_scalar::<f32>();
        let forward = ms(t);
        let t = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &unet);
        let backward = ms(t);
        let t = Instant::now();
        unet = optim.step(1e-4, unet, grads);
        let step = ms(t);
        for (b, v) in best.iter_mut().zip([forward, backward, step]) {
            *b = b.min(v);
        }
    }
    println!("| U-Net step, batch {} | forward + loss | backward | AdamW |", noisy.dims()[0]);
    println!("|---|---|---|---|");
    println!("| ms | {:.0} | {:.0} | {:.0} |", best[0], best[1], best[2]);
    Ok(())
}

/// Best time of 4 forward-and-backward passes of `op` on `x` (gradient `g` on its output).
fn forward_backward(x: &Tensor<4>, g: &Tensor<4>, op: &dyn Fn(Tensor<4>) -> Tensor<4>) -> f64 {
    (0..4)
        .map(|_| {
            let t = Instant::now();
            let grads = (op(x.clone()) * g.clone()).sum().backward();
            let _ = x.grad(&grads).map(|d| d.into_data());
            ms(t)
        })
        .fold(f64::MAX, f64::min)
}

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        match pair {
            [flag, dir] if flag == "--autoencoder" => autoencoder_step(std::path::Path::new(dir))?,
            [flag, dir] if flag == "--unet" => unet_step(std::path::Path::new(dir))?,
            _ => return Err("usage: train_profile [--autoencoder DIR] [--unet DIR]".into()),
        }
        println!();
    }
    let d = Device::flex().autodiff();
    println!("| forward + backward under autodiff (ms) | burn | the model code |");
    println!("|---|---|---|");
    for (c, s) in [(32, 64), (64, 32), (64, 16), (256, 4)] {
        let x = Tensor::<4>::random([8, c, s, s], Distribution::Normal(0.0, 1.0), &d).require_grad();
        let g = Tensor::<4>::random([8, c, s, s], Distribution::Normal(0.0, 1.0), &d);
        let conv = Conv2dConfig::new([c, c], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(&d);
        let norm = GroupNormConfig::new(16, c).init(&d);
        let rows = [
            (
                "conv 3×3",
                forward_backward(&x, &g, &|x| conv.forward(x)),
                forward_backward(&x, &g, &|x| conv2d(&conv, x)),
            ),
            (
                "GroupNorm + SiLU",
                forward_backward(&x, &g, &|x| burn::tensor::activation::silu(norm.forward(x))),
                forward_backward(&x, &g, &|x| group_norm_silu(&norm, x)),
            ),
        ];
        for (name, burn, ours) in rows {
            println!("| {name}, [8, {c}, {s}, {s}] | {burn:.1} | {ours:.1} |");
        }
    }
    Ok(())
}
