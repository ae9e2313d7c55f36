//! `AutoencoderKL`: the VAE that maps images to SD's latent space and back (diffusers
//! `autoencoder_kl.py`, `vae.py`). Sizes come from `vae/config.json` ([`AutoencoderKLConfig`]).

use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::attention::{Attention, AttentionConfig};
use crate::nn::resnet::{ResnetBlock2D, ResnetBlock2DConfig};
use crate::nn::sampling::{Downsample2D, Upsample2D};
use crate::nn::{ActFn, conv, group_norm};
use crate::weights::NameMap;

/// The encoder's block type (diffusers' `down_block_types`); SD's VAE has only this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum DownEncoderBlockType {
    /// Resnets and a stride-2 downsampler.
    DownEncoderBlock2D,
}

/// The decoder's block type (diffusers' `up_block_types`); SD's VAE has only this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum UpDecoderBlockType {
    /// Resnets and a nearest-neighbour upsampler.
    UpDecoderBlock2D,
}

/// diffusers' `AutoencoderKL` config; defaults are diffusers' defaults.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct AutoencoderKLConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub down_block_types: Vec<DownEncoderBlockType>,
    pub up_block_types: Vec<UpDecoderBlockType>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub act_fn: ActFn,
    pub latent_channels: usize,
    pub norm_num_groups: usize,
    pub sample_size: usize,
    /// Latents are multiplied by this after encoding (0.18215 for SD 1.x).
    pub scaling_factor: f64,
    pub shift_factor: Option<f64>,
    pub use_quant_conv: bool,
    pub use_post_quant_conv: bool,
    pub mid_block_add_attention: bool,
}

impl Default for AutoencoderKLConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            down_block_types: vec![DownEncoderBlockType::DownEncoderBlock2D],
            up_block_types: vec![UpDecoderBlockType::UpDecoderBlock2D],
            block_out_channels: vec![64],
            layers_per_block: 1,
            act_fn: ActFn::Silu,
            latent_channels: 4,
            norm_num_groups: 32,
            sample_size: 32,
            scaling_factor: 0.18215,
            shift_factor: None,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
        }
    }
}

const EPS: f64 = 1e-6;

/// `UNetMidBlock2D` as the VAE uses it: resnet, single-head spatial attention, resnet.
#[derive(Module, Debug)]
pub struct VaeMidBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Attention>,
}

impl VaeMidBlock {
    fn new(c: usize, groups: usize, attention: bool, max_scores: usize, device: &Device) -> Self {
        let resnet = ResnetBlock2DConfig {
            in_channels: c,
            out_channels: c,
            temb_channels: None,
            groups,
            eps: EPS,
            output_scale_factor: 1.0,
        };
        let attn = AttentionConfig {
            query_dim: c,
            context_dim: c,
            heads: 1,
            dim_head: c,
            qkv_bias: true,
            group_norm: Some((groups, EPS)),
            max_scores,
        };
        Self {
            resnets: vec![resnet.init(device), resnet.init(device)],
            attentions: attention.then(|| attn.init(device)).into_iter().collect(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, None);
        if let Some(attn) = self.attentions.first() {
            x = attn.forward_spatial(x);
        }
        self.resnets[1].forward(x, None)
    }
}

/// `DownEncoderBlock2D` / `UpDecoderBlock2D`: resnets plus an optional resampler.
#[derive(Module, Debug)]
pub struct VaeBlock {
    resnets: Vec<ResnetBlock2D>,
    downsamplers: Vec<Downsample2D>,
    upsamplers: Vec<Upsample2D>,
}

impl VaeBlock {
    fn new(cin: usize, cout: usize, layers: usize, groups: usize, down: bool, up: bool, device: &Device) -> Self {
        let resnet = |i| ResnetBlock2DConfig {
            in_channels: if i == 0 { cin } else { cout },
            out_channels: cout,
            temb_channels: None,
            groups,
            eps: EPS,
            output_scale_factor: 1.0,
        };
        Self {
            resnets: (0..layers).map(|i| resnet(i).init(device)).collect(),
            downsamplers: down.then(|| Downsample2D::new(cout, 0, device)).into_iter().collect(),
            upsamplers: up.then(|| Upsample2D::new(cout, device)).into_iter().collect(),
        }
    }

    fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        for r in &self.resnets {
            x = r.forward(x, None);
        }
        for d in &self.downsamplers {
            x = d.forward(x);
        }
        for u in &self.upsamplers {
            x = u.forward(x, None);
        }
        x
    }
}

/// The image → latent-distribution half.
#[derive(Module, Debug)]
pub struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<VaeBlock>,
    mid_block: VaeMidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

/// The latent → image half.
#[derive(Module, Debug)]
pub struct Decoder {
    conv_in: Conv2d,
    mid_block: VaeMidBlock,
    up_blocks: Vec<VaeBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

/// diffusers' `AutoencoderKL`.
#[derive(Module, Debug)]
pub struct AutoencoderKL {
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    latent_channels: usize,
    scaling_factor: f64,
    shift_factor: f64,
}

/// Our module paths → diffusers' tensor names, for exporting.
pub const EXPORT_NAMES: &[(&str, &str)] = &[(r"\.to_out\.", ".to_out.0.")];

/// Old diffusers checkpoints name the VAE attention `query`/`key`/`value`/`proj_attn`.
pub const NAMES: NameMap = NameMap {
    remaps: &[
        (r"\.to_out\.0\.", ".to_out."),
        (r"attentions\.0\.query\.", "attentions.0.to_q."),
        (r"attentions\.0\.key\.", "attentions.0.to_k."),
        (r"attentions\.0\.value\.", "attentions.0.to_v."),
        (r"attentions\.0\.proj_attn\.", "attentions.0.to_out."),
    ],
    ignore: &[],
};

impl AutoencoderKLConfig {
    /// Parses `vae/config.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        crate::error::parse_json("vae/config.json", json)
    }

    /// Spatial downsampling factor between image and latent (8 for SD).
    pub fn downsampling(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    /// Elements of the largest tensor the decoder makes for one latent of `h × w`: a resnet's input or output
    /// at the resolution its up block runs at (the mid attention's scores are sliced to fit). What a GPU's
    /// buffer limit has to hold, per image, to decode.
    pub fn largest_decode_activation(&self, [h, w]: [usize; 2]) -> usize {
        let ch = &self.block_out_channels;
        let n = ch.len();
        let mut prev = ch.last().copied().unwrap_or(0);
        let mut largest = prev * h * w;
        for i in 0..n {
            let out = ch[n - 1 - i];
            // Block i runs at the latent size times 2^i; its first resnet takes the previous block's channels.
            largest = largest.max(prev.max(out) * (h << i) * (w << i));
            prev = out;
        }
        largest
    }

    /// Builds the model (weights uninitialized until loaded or trained); fails on unsupported configs.
    pub fn init(&self, device: &Device) -> Result<AutoencoderKL> {
        self.init_limited(device, 0)
    }

    /// [`init`](Self::init) with a mid-block attention that materializes at most `max_scores` score
    /// elements per call (0: no limit), slicing its queries beyond that.
    pub fn init_limited(&self, device: &Device, max_scores: usize) -> Result<AutoencoderKL> {
        let bad = |m: String| Err(Error::config("vae/config.json", m));
        let ch = &self.block_out_channels;
        let n = ch.len();
        let g = self.norm_num_groups;
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad(format!(
                "{n} block_out_channels but {}/{} block types",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        if g == 0 || ch.iter().any(|&c| c == 0 || c % g != 0) || self.layers_per_block == 0 || self.latent_channels == 0
        {
            return bad(format!("channels {ch:?} do not split into {g} groups, or zero layers/latent channels"));
        }
        // The encoder builds `layers_per_block` resnets a block, the decoder one more.
        let layers = n.saturating_mul(self.layers_per_block.saturating_mul(2).saturating_add(1));
        crate::error::check_layers("vae/config.json", "layers_per_block × block_out_channels", layers)?;
        let shift = self.shift_factor.unwrap_or(0.0);
        if !(self.scaling_factor.is_finite() && self.scaling_factor != 0.0 && shift.is_finite()) {
            return bad(format!(
                "scaling_factor {} and shift_factor {:?} must be finite, the scale non-zero",
                self.scaling_factor, self.shift_factor
            ));
        }
        let lc = self.latent_channels;
        let mut out = ch[0];
        let down_blocks = (0..n)
            .map(|i| {
                let input = out;
                out = ch[i];
                VaeBlock::new(input, out, self.layers_per_block, g, i + 1 < n, false, device)
            })
            .collect();
        let encoder = Encoder {
            conv_in: conv(self.in_channels, ch[0], 3, device),
            down_blocks,
            mid_block: VaeMidBlock::new(ch[n - 1], g, self.mid_block_add_attention, max_scores, device),
            conv_norm_out: group_norm(g, ch[n - 1], EPS, device),
            conv_out: conv(ch[n - 1], 2 * lc, 3, device),
        };
        let mut out = ch[n - 1];
        let up_blocks = (0..n)
            .map(|i| {
                let prev = out;
                out = ch[n - 1 - i];
                VaeBlock::new(prev, out, self.layers_per_block + 1, g, false, i + 1 < n, device)
            })
            .collect();
        let decoder = Decoder {
            conv_in: conv(lc, ch[n - 1], 3, device),
            mid_block: VaeMidBlock::new(ch[n - 1], g, self.mid_block_add_attention, max_scores, device),
            up_blocks,
            conv_norm_out: group_norm(g, ch[0], EPS, device),
            conv_out: conv(ch[0], self.out_channels, 3, device),
        };
        Ok(AutoencoderKL {
            encoder,
            decoder,
            quant_conv: self.use_quant_conv.then(|| conv(2 * lc, 2 * lc, 1, device)),
            post_quant_conv: self.use_post_quant_conv.then(|| conv(lc, lc, 1, device)),
            latent_channels: lc,
            scaling_factor: self.scaling_factor,
            shift_factor: shift,
        })
    }
}

impl Encoder {
    /// Image `[B, 3, H, W]` → the latent distribution's moments, stacked `[B, 2C, H/8, W/8]`.
    fn forward(&self, image: Tensor<4>) -> Tensor<4> {
        let x = self.down_blocks.iter().fold(crate::nn::conv2d(&self.conv_in, image), |x, b| b.forward(x));
        let x = self.mid_block.forward(x);
        crate::nn::conv2d(&self.conv_out, crate::nn::group_norm_silu(&self.conv_norm_out, x))
    }
}

impl Decoder {
    /// Unscaled latent `[B, C, h, w]` → image `[B, 3, 8h, 8w]`.
    fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let x = self.mid_block.forward(crate::nn::conv2d(&self.conv_in, z));
        let x = self.up_blocks.iter().fold(x, |x, b| b.forward(x));
        crate::nn::conv2d(&self.conv_out, crate::nn::group_norm_silu(&self.conv_norm_out, x))
    }
}

impl AutoencoderKL {
    /// Image `[B, 3, H, W]` in [-1, 1] → (mean, logvar) of the latent distribution, each `[B, C, H/8, W/8]`.
    pub fn encode_distribution(&self, image: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let mut x = self.encoder.forward(image);
        if let Some(q) = &self.quant_conv {
            x = crate::nn::conv2d(q, x);
        }
        let c = self.latent_channels;
        (x.clone().narrow(1, 0, c), x.narrow(1, c, c).clamp(-30.0, 20.0))
    }

    /// Image → scaled latent (the distribution's mean, so encoding is deterministic).
    pub fn encode(&self, image: Tensor<4>) -> Tensor<4> {
        (self.encode_distribution(image).0 - self.shift_factor) * self.scaling_factor
    }

    /// Unscaled latent `[B, C, h, w]` → image `[B, 3, 8h, 8w]`, roughly in [-1, 1].
    pub fn decode_raw(&self, z: Tensor<4>) -> Tensor<4> {
        let z = match &self.post_quant_conv {
            Some(p) => crate::nn::conv2d(p, z),
            None => z,
        };
        self.decoder.forward(z)
    }

    /// Scaled latent (as the sampler produces it) → image in [-1, 1].
    pub fn decode(&self, latent: Tensor<4>) -> Tensor<4> {
        self.decode_raw(latent / self.scaling_factor + self.shift_factor)
    }

    /// Number of latent channels.
    pub fn latent_channels(&self) -> usize {
        self.latent_channels
    }
}
