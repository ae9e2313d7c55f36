//! Building blocks shared by the U-Net and the VAE, one file each, named as in diffusers
//! (`resnet.py`, `attention_processor.py`, `downsampling.py`/`upsampling.py`), and `cpu.rs`: faster kernels
//! for burn's CPU backend behind the same functions (attention, GroupNorm + SiLU, GEGLU).

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
    if on_cpu_backend(&x) {
        let [batch, channels, h, w] = x.dims();
        let affine = |p: &Option<burn::module::Param<Tensor<1>>>, default: f32| match p {
            Some(p) => cpu_values(p.val()),
            None => vec![default; channels],
        };
        let (gamma, beta) = (affine(&norm.gamma, 1.0), affine(&norm.beta, 0.0));
        let mut data = cpu_values(x);
        let groups = cpu::Groups { batch, channels, pixels: h * w, groups: norm.num_groups };
        cpu::group_norm_silu(&mut data, groups, &gamma, &beta, norm.epsilon as f32);
        return Tensor::from_data(TensorData::new(data, [batch, channels, h, w]), &Device::flex());
    }
    burn::tensor::activation::silu(norm.forward(x))
}

/// diffusers' `GEGLU` after its projection: `[…, value | gate]` → `value · gelu(gate)` (erf GELU); one
/// vectorized pass on burn's CPU backend ([`cpu::geglu`]), burn's ops elsewhere.
pub fn geglu(h: Tensor<3>) -> Tensor<3> {
    #[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
    if on_cpu_backend(&h) && h.dims()[2].is_multiple_of(2) {
        let [b, n, width] = h.dims();
        let out = cpu::geglu(&cpu_values(h), width / 2);
        return Tensor::from_data(TensorData::new(out, [b, n, width / 2]), &Device::flex());
    }
    let mut parts = h.chunk(2, 2);
    let gate = parts.pop().expect("two chunks");
    let value = parts.pop().expect("two chunks");
    value * burn::tensor::activation::gelu(gate)
}

/// Whether [`cpu`]'s kernels apply to `t`: burn's CPU backend, f32, outside autodiff (the GPU and training
/// keep burn's kernels).
#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
pub(crate) fn on_cpu_backend<const D: usize>(t: &Tensor<D>) -> bool {
    let device = t.device();
    device == Device::flex() && !device.is_autodiff() && t.dtype() == burn::tensor::DType::F32
}

/// The values of a tensor for which [`on_cpu_backend`] holds. Taking the tensor by value matters: when this
/// is its only handle and its data are contiguous, burn hands the buffer over instead of copying it, and a
/// copy into fresh memory of an activation as large as SD 1.5's GEGLU input costs more than the kernel.
///
/// # Panics
/// Never for such a tensor: burn's CPU backend reads its f32 data synchronously and infallibly.
#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
pub(crate) fn cpu_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_data()
        .ok()
        .and_then(|d| d.try_into_vec::<f32>().ok())
        .expect("burn's CPU backend reads back its own f32 tensors")
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
