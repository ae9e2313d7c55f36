//! Times the U-Net's main operations on burn's flex backend at SD 1.5's first-block size, to see where a
//! U-Net call spends its time (compare with `scripts/op_profile.py` for PyTorch).

use std::time::Instant;

use burn::nn::conv::Conv2dConfig;
use burn::nn::{GroupNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::silu;
use traverse::nn::attention::multi_head_attention;
use traverse::nn::{conv2d, geglu, group_norm_silu};

fn time(name: &str, mut f: impl FnMut() -> TensorData) {
    f();
    let runs = 5;
    let t0 = Instant::now();
    for _ in 0..runs {
        f();
    }
    println!("{name:<40} {:8.2} ms", t0.elapsed().as_secs_f64() * 1000.0 / runs as f64);
}

fn main() {
    let d = Device::flex();
    let x = Tensor::<4>::random([2, 320, 64, 64], Distribution::Normal(0.0, 1.0), &d);
    let conv = Conv2dConfig::new([320, 320], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(&d);
    let gn = GroupNormConfig::new(32, 320).init(&d);
    time("conv3x3 320->320 @64x64 b2, burn", || conv.forward(x.clone()).into_data());
    time("conv3x3 320->320 @64x64 b2, traverse's CPU conv", || conv2d(&conv, x.clone()).into_data());
    // The embedded model's VAE decoder (batch 4 at 128 px), and the small U-Net's planes down to 4×4.
    for (b, c, s) in [(4, 32, 128), (4, 64, 128), (4, 128, 32), (2, 64, 32), (2, 64, 16), (2, 192, 4)] {
        let x = Tensor::<4>::random([b, c, s, s], Distribution::Normal(0.0, 1.0), &d);
        let conv = Conv2dConfig::new([c, c], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(&d);
        time(&format!("conv3x3 {c}->{c} @{s}x{s} b{b}, burn"), || conv.forward(x.clone()).into_data());
        time(&format!("conv3x3 {c}->{c} @{s}x{s} b{b}, traverse's CPU conv"), || conv2d(&conv, x.clone()).into_data());
    }
    time("groupnorm 32 @320x64x64 b2", || gn.forward(x.clone()).into_data());
    time("silu", || silu(x.clone()).into_data());
    // The model hands each activation over (no other handle), so the kernel reads it without a copy; here both
    // sides get a fresh tensor (`* 1.0`, timed on both) to time the same.
    time("groupnorm then silu, burn, fresh input", || silu(gn.forward(x.clone() * 1.0)).into_data());
    time("groupnorm + silu, traverse's CPU pass, fresh input", || group_norm_silu(&gn, x.clone() * 1.0).into_data());
    time("add", || (x.clone() + x.clone()).into_data());
    time("to tokens (swap+reshape)", || {
        x.clone().reshape([2, 320, 4096]).swap_dims(1, 2).reshape([2, 4096, 320]).into_data()
    });
    let q = Tensor::<4>::random([2, 8, 4096, 40], Distribution::Normal(0.0, 1.0), &d);
    let opts = burn::tensor::ops::AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
    time("self-attention 8x4096x40 b2 (burn-flex)", || {
        burn::tensor::module::attention(q.clone(), q.clone(), q.clone(), None, None, opts).into_data()
    });
    // The same call as the U-Net makes it, on tokens `[2, 4096, 320]`: this crate's CPU kernel.
    let tokens = Tensor::<3>::random([2, 4096, 320], Distribution::Normal(0.0, 1.0), &d);
    time("self-attention, traverse's CPU kernel", || {
        multi_head_attention(tokens.clone(), tokens.clone(), tokens.clone(), 8, false, 0).into_data()
    });
    let context = Tensor::<3>::random([2, 77, 320], Distribution::Normal(0.0, 1.0), &d);
    time("cross-attention, traverse's CPU kernel", || {
        multi_head_attention(tokens.clone(), context.clone(), context.clone(), 8, false, 0).into_data()
    });
    let k = Tensor::<4>::random([2, 8, 77, 40], Distribution::Normal(0.0, 1.0), &d);
    time("cross-attention 8x4096x77 b2 (burn-flex)", || {
        burn::tensor::module::attention(q.clone(), k.clone(), k.clone(), None, None, opts).into_data()
    });
    let t = Tensor::<3>::random([2, 4096, 320], Distribution::Normal(0.0, 1.0), &d);
    let lin = burn::nn::LinearConfig::new(320, 2560).init(&d);
    time("linear 320->2560 on 8192 tokens", || lin.forward(t.clone()).into_data());
    let h = Tensor::<3>::random([2, 4096, 2560], Distribution::Normal(0.0, 1.0), &d);
    time("GEGLU gate 2x4096x1280, burn, fresh input", || {
        let mut parts = (h.clone() * 1.0).chunk(2, 2);
        let gate = parts.pop().unwrap();
        (parts.pop().unwrap() * burn::tensor::activation::gelu(gate)).into_data()
    });
    time("GEGLU gate, traverse's CPU pass, fresh input", || geglu(h.clone() * 1.0).into_data());
}
