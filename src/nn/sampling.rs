//! `Downsample2D` and `Upsample2D` (diffusers `downsampling.py`, `upsampling.py`).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::conv;

/// Stride-2 3×3 convolution. The U-Net pads 1 on every side (`downsample_padding=1`); the VAE pads
/// only bottom and right (`padding=0` plus diffusers' explicit `(0, 1, 0, 1)` pad).
#[derive(Module, Debug)]
pub struct Downsample2D {
    conv: Conv2d,
}

impl Downsample2D {
    /// `padding`: diffusers' `downsample_padding` (1 in the U-Net, 0 in the VAE).
    pub fn new(channels: usize, padding: usize, device: &Device) -> Self {
        let pad = if padding == 0 {
            PaddingConfig2d::Explicit(0, 0, 1, 1)
        } else {
            PaddingConfig2d::Explicit(padding, padding, padding, padding)
        };
        let conv = Conv2dConfig::new([channels, channels], [3, 3]).with_stride([2, 2]).with_padding(pad).init(device);
        Self { conv }
    }

    /// Halves height and width.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        super::conv2d(&self.conv, x)
    }
}

/// Nearest-neighbour 2× (or to a given size) upsampling followed by a 3×3 convolution.
#[derive(Module, Debug)]
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    /// Keeps the channel count.
    pub fn new(channels: usize, device: &Device) -> Self {
        Self { conv: conv(channels, channels, 3, device) }
    }

    /// Upsamples to `size` when given (odd skip sizes in the U-Net), else doubles height and width.
    pub fn forward(&self, x: Tensor<4>, size: Option<[usize; 2]>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let mut options = InterpolateOptions::new(InterpolateMode::Nearest);
        options.align_corners = false;
        options.output_size = Some(size.unwrap_or([2 * h, 2 * w]));
        super::conv2d(&self.conv, interpolate(x, options))
    }
}
