//! The U-Net's down, mid and up blocks (diffusers `unet_2d_blocks.py`). One struct per role serves both
//! the plain (`DownBlock2D`, `UpBlock2D`) and cross-attention (`CrossAttn*`) variants: the plain ones
//! simply have no `attentions`. Field names match diffusers' so weights load by name.

use burn::prelude::*;

use super::transformer::{Transformer2DConfig, Transformer2DModel};
use crate::nn::resnet::{ResnetBlock2D, ResnetBlock2DConfig};
use crate::nn::sampling::{Downsample2D, Upsample2D};

/// `DownBlock2D` / `CrossAttnDownBlock2D`.
#[derive(Module, Debug)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    downsamplers: Vec<Downsample2D>,
}

/// `UNetMidBlock2DCrossAttn`: resnet, then (attention, resnet) pairs.
#[derive(Module, Debug)]
pub struct MidBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
}

/// `UpBlock2D` / `CrossAttnUpBlock2D`: each resnet also eats one skip connection from the down path.
#[derive(Module, Debug)]
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    upsamplers: Vec<Upsample2D>,
}

impl DownBlock {
    /// `resnets[i]` maps `in_channels` (first) or `out` (others) to `out`; `attention` is `Some` for the
    /// cross-attention variant.
    pub fn new(
        resnets: Vec<ResnetBlock2DConfig>,
        attention: Option<Transformer2DConfig>,
        downsample_padding: Option<usize>,
        device: &Device,
    ) -> Self {
        let out = resnets.last().map(|r| r.out_channels).unwrap_or(0);
        Self {
            attentions: attention.map(|a| resnets.iter().map(|_| a.init(device)).collect()).unwrap_or_default(),
            resnets: resnets.iter().map(|r| r.init(device)).collect(),
            downsamplers: downsample_padding.map(|p| Downsample2D::new(out, p, device)).into_iter().collect(),
        }
    }

    /// Returns the block's output and every intermediate state kept for the skip connections.
    pub fn forward(&self, mut x: Tensor<4>, temb: &Tensor<2>, context: &Tensor<3>) -> (Tensor<4>, Vec<Tensor<4>>) {
        let mut states = Vec::with_capacity(self.resnets.len() + 1);
        for (i, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, Some(temb));
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x, context);
            }
            states.push(x.clone());
        }
        for down in &self.downsamplers {
            x = down.forward(x);
            states.push(x.clone());
        }
        (x, states)
    }
}

impl MidBlock {
    /// Two resnets around `layers` attention layers (one in SD).
    pub fn new(resnet: ResnetBlock2DConfig, attention: Transformer2DConfig, layers: usize, device: &Device) -> Self {
        Self {
            resnets: (0..=layers).map(|_| resnet.init(device)).collect(),
            attentions: (0..layers).map(|_| attention.init(device)).collect(),
        }
    }

    /// `[B, C, H, W]` → same shape.
    pub fn forward(&self, x: Tensor<4>, temb: &Tensor<2>, context: &Tensor<3>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, Some(temb));
        for (attn, resnet) in self.attentions.iter().zip(&self.resnets[1..]) {
            x = resnet.forward(attn.forward(x, context), Some(temb));
        }
        x
    }
}

impl UpBlock {
    /// Like [`DownBlock::new`]; `upsample` adds the trailing `Upsample2D`.
    pub fn new(
        resnets: Vec<ResnetBlock2DConfig>,
        attention: Option<Transformer2DConfig>,
        upsample: bool,
        device: &Device,
    ) -> Self {
        let out = resnets.last().map(|r| r.out_channels).unwrap_or(0);
        Self {
            attentions: attention.map(|a| resnets.iter().map(|_| a.init(device)).collect()).unwrap_or_default(),
            resnets: resnets.iter().map(|r| r.init(device)).collect(),
            upsamplers: upsample.then(|| Upsample2D::new(out, device)).into_iter().collect(),
        }
    }

    /// Number of skip connections this block consumes.
    pub fn num_skips(&self) -> usize {
        self.resnets.len()
    }

    /// Consumes skips from the end of `skips`; `upsample_size` is the size of the next block's skips.
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        skips: &mut Vec<Tensor<4>>,
        temb: &Tensor<2>,
        context: &Tensor<3>,
        upsample_size: Option<[usize; 2]>,
    ) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("the U-Net hands each up block enough skips");
            x = resnet.forward(Tensor::cat(vec![x, skip], 1), Some(temb));
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x, context);
            }
        }
        for up in &self.upsamplers {
            x = up.forward(x, upsample_size);
        }
        x
    }
}
