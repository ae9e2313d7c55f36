//! Building blocks shared by the U-Net and the VAE, one file each, named as in diffusers
//! (`resnet.py`, `attention_processor.py`, `downsampling.py`/`upsampling.py`).

pub mod attention;
#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
pub mod cpu;
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

/// `silu(norm(x))`, the ResNet blocks' pattern: one fused pass on burn's CPU backend ([`cpu::group_norm_silu`]),
/// burn's two ops elsewhere.
pub fn group_norm_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    #[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
    if let Some(y) = group_norm_silu_on_cpu(norm, &x) {
        return y;
    }
    burn::tensor::activation::silu(norm.forward(x))
}

#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
fn group_norm_silu_on_cpu(norm: &GroupNorm, x: &Tensor<4>) -> Option<Tensor<4>> {
    let device = x.device();
    if device != Device::flex() || device.is_autodiff() || x.dtype() != burn::tensor::DType::F32 {
        return None;
    }
    let [batch, channels, h, w] = x.dims();
    let read = |t: Tensor<1>| t.try_into_data().ok()?.try_into_vec::<f32>().ok();
    let gamma = match &norm.gamma {
        Some(g) => read(g.val())?,
        None => vec![1.0; channels],
    };
    let beta = match &norm.beta {
        Some(b) => read(b.val())?,
        None => vec![0.0; channels],
    };
    let mut data = x.clone().try_into_data().ok()?.try_into_vec::<f32>().ok()?;
    let groups = cpu::Groups { batch, channels, pixels: h * w, groups: norm.num_groups };
    cpu::group_norm_silu(&mut data, groups, &gamma, &beta, norm.epsilon as f32);
    Some(Tensor::from_data(TensorData::new(data, [batch, channels, h, w]), &device))
}

/// diffusers' `GEGLU` after its projection: `[…, value | gate]` → `value · gelu(gate)` (erf GELU); one
/// vectorized pass on burn's CPU backend ([`cpu::geglu`]), burn's ops elsewhere.
pub fn geglu(h: Tensor<3>) -> Tensor<3> {
    #[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
    if let Some(out) = geglu_on_cpu(&h) {
        return out;
    }
    let mut parts = h.chunk(2, 2);
    let gate = parts.pop().expect("two chunks");
    let value = parts.pop().expect("two chunks");
    value * burn::tensor::activation::gelu(gate)
}

#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
fn geglu_on_cpu(h: &Tensor<3>) -> Option<Tensor<3>> {
    let device = h.device();
    let [b, n, width] = h.dims();
    if device != Device::flex() || device.is_autodiff() || h.dtype() != burn::tensor::DType::F32 || width % 2 != 0 {
        return None;
    }
    let data = h.clone().try_into_data().ok()?.try_into_vec::<f32>().ok()?;
    let out = cpu::geglu(&data, width / 2);
    Some(Tensor::from_data(TensorData::new(out, [b, n, width / 2]), &device))
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
