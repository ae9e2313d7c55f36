//! `ResnetBlock2D` (diffusers `resnet.py`): two GroupNorm-SiLU-conv stages with an optional time
//! embedding added in between, and a 1×1 shortcut when the channel count changes.

use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;

use super::{conv, conv2d, group_norm, group_norm_silu};

/// Sizes of one residual block.
#[derive(Debug, Clone, Copy)]
pub struct ResnetBlock2DConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Width of the time embedding, or `None` in the VAE.
    pub temb_channels: Option<usize>,
    /// GroupNorm groups.
    pub groups: usize,
    /// GroupNorm epsilon.
    pub eps: f64,
    /// The output is divided by this (diffusers' `output_scale_factor`).
    pub output_scale_factor: f64,
}

/// diffusers' `ResnetBlock2D` with `time_embedding_norm="default"`.
#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    output_scale_factor: f64,
}

impl ResnetBlock2DConfig {
    /// Creates the block with uninitialized weights, to be loaded or trained.
    pub fn init(&self, device: &Device) -> ResnetBlock2D {
        let c = self;
        ResnetBlock2D {
            norm1: group_norm(c.groups, c.in_channels, c.eps, device),
            conv1: conv(c.in_channels, c.out_channels, 3, device),
            time_emb_proj: c.temb_channels.map(|t| LinearConfig::new(t, c.out_channels).init(device)),
            norm2: group_norm(c.groups, c.out_channels, c.eps, device),
            conv2: conv(c.out_channels, c.out_channels, 3, device),
            conv_shortcut: (c.in_channels != c.out_channels).then(|| conv(c.in_channels, c.out_channels, 1, device)),
            output_scale_factor: c.output_scale_factor,
        }
    }
}

impl ResnetBlock2D {
    /// `x`: `[B, C, H, W]`; `temb`: `[B, T]` (ignored when the block has no time projection).
    pub fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let mut h = conv2d(&self.conv1, group_norm_silu(&self.norm1, x.clone()));
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            h = h + proj.forward(silu(temb.clone())).unsqueeze_dims(&[2, 3]);
        }
        let h = conv2d(&self.conv2, group_norm_silu(&self.norm2, h));
        let x = match &self.conv_shortcut {
            Some(sc) => conv2d(sc, x),
            None => x,
        };
        let out = x + h;
        if self.output_scale_factor == 1.0 { out } else { out / self.output_scale_factor }
    }
}
