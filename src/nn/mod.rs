//! Building blocks shared by the U-Net and the VAE, one file each, named as in diffusers
//! (`resnet.py`, `attention_processor.py`, `downsampling.py`/`upsampling.py`).

pub mod attention;
#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
pub mod cpu_attention;
pub mod resnet;
pub mod sampling;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// A `k`×`k` convolution with "same" padding for odd `k`, as diffusers builds them.
pub(crate) fn conv(cin: usize, cout: usize, k: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .init(device)
}

/// GroupNorm with affine parameters (PyTorch's `nn.GroupNorm`).
pub(crate) fn group_norm(groups: usize, channels: usize, eps: f64, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels).with_epsilon(eps).init(device)
}

/// diffusers' `act_fn` of the U-Net and the VAE: SiLU, under either of its names (the only one SD uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActFn {
    /// x · σ(x).
    Silu,
    /// The same function under its other name.
    Swish,
}
