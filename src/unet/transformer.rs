//! `Transformer2DModel` and `BasicTransformerBlock` (diffusers `transformer_2d.py`, `attention.py`):
//! where the text embedding enters the U-Net through cross-attention.

use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use crate::nn::attention::{Attention, AttentionConfig};
use crate::nn::{conv, group_norm};

/// GEGLU feed-forward (`FeedForward` with `activation_fn="geglu"`, mult 4): `proj` makes value and gate.
#[derive(Module, Debug)]
pub struct FeedForward {
    geglu: Geglu,
    out: Linear,
}

/// `GEGLU`: one projection to twice the inner width, split into a value and an erf-GELU gate.
#[derive(Module, Debug)]
pub struct Geglu {
    proj: Linear,
}

impl FeedForward {
    fn new(dim: usize, device: &Device) -> Self {
        let inner = dim * 4;
        Self {
            geglu: Geglu { proj: LinearConfig::new(dim, inner * 2).init(device) },
            out: LinearConfig::new(inner, dim).init(device),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.out.forward(crate::nn::geglu(self.geglu.proj.forward(x)))
    }
}

/// Sizes of one `Transformer2DModel`.
#[derive(Debug, Clone, Copy)]
pub struct Transformer2DConfig {
    /// Channels of the feature map (= heads × head width).
    pub channels: usize,
    /// Number of heads.
    pub heads: usize,
    /// Number of `BasicTransformerBlock`s.
    pub layers: usize,
    /// Width of the text embedding.
    pub cross_attention_dim: usize,
    /// GroupNorm groups of the input norm.
    pub groups: usize,
    /// `use_linear_projection`: linear instead of 1×1-conv projections (SD 2.x).
    pub linear_projection: bool,
    /// `only_cross_attention`: the first attention also attends to the text.
    pub only_cross_attention: bool,
    /// Most score elements one attention call materializes (0: no limit).
    pub max_scores: usize,
}

/// `BasicTransformerBlock`: self-attention, cross-attention, GEGLU feed-forward, each pre-LayerNorm and residual.
#[derive(Module, Debug)]
pub struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
    only_cross_attention: bool,
}

impl BasicTransformerBlock {
    fn new(c: &Transformer2DConfig, device: &Device) -> Self {
        let dim = c.channels;
        let attn = |context_dim| {
            AttentionConfig {
                query_dim: dim,
                context_dim,
                heads: c.heads,
                dim_head: dim / c.heads,
                qkv_bias: false,
                group_norm: None,
                max_scores: c.max_scores,
            }
            .init(device)
        };
        let ln = || LayerNormConfig::new(dim).init(device);
        Self {
            norm1: ln(),
            attn1: attn(if c.only_cross_attention { c.cross_attention_dim } else { dim }),
            norm2: ln(),
            attn2: attn(c.cross_attention_dim),
            norm3: ln(),
            ff: FeedForward::new(dim, device),
            only_cross_attention: c.only_cross_attention,
        }
    }

    fn forward(&self, x: Tensor<3>, context: &Tensor<3>) -> Tensor<3> {
        let first_context = self.only_cross_attention.then_some(context);
        let x = self.attn1.forward(self.norm1.forward(x.clone()), first_context) + x;
        let x = self.attn2.forward(self.norm2.forward(x.clone()), Some(context)) + x;
        self.ff.forward(self.norm3.forward(x.clone())) + x
    }
}

/// `proj_in`/`proj_out`: a 1×1 convolution (SD 1.x) or a linear layer (SD 2.x `use_linear_projection`).
#[derive(Module, Debug)]
pub enum Projection {
    /// 1×1 convolution on the feature map.
    Conv(Conv2d),
    /// Linear layer on the tokens.
    Linear(Linear),
}

/// `Transformer2DModel` for continuous (latent feature map) input.
#[derive(Module, Debug)]
pub struct Transformer2DModel {
    norm: GroupNorm,
    proj_in: Projection,
    transformer_blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

impl Transformer2DConfig {
    /// Creates the model with uninitialized weights.
    pub fn init(&self, device: &Device) -> Transformer2DModel {
        let c = self.channels;
        let proj = || {
            if self.linear_projection {
                Projection::Linear(LinearConfig::new(c, c).init(device))
            } else {
                Projection::Conv(conv(c, c, 1, device))
            }
        };
        Transformer2DModel {
            // diffusers fixes this norm's epsilon at 1e-6, whatever the U-Net's norm_eps.
            norm: group_norm(self.groups, c, 1e-6, device),
            proj_in: proj(),
            transformer_blocks: (0..self.layers).map(|_| BasicTransformerBlock::new(self, device)).collect(),
            proj_out: proj(),
        }
    }
}

impl Transformer2DModel {
    /// `x`: `[B, C, H, W]`, `context`: `[B, 77, D]`.
    pub fn forward(&self, x: Tensor<4>, context: &Tensor<3>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let to_tokens = |t: Tensor<4>| t.reshape([b, c, h * w]).swap_dims(1, 2);
        let to_map = |t: Tensor<3>| t.swap_dims(1, 2).reshape([b, c, h, w]);
        let normed = crate::nn::group_norm_forward(&self.norm, x.clone());
        let mut tokens = match &self.proj_in {
            Projection::Conv(p) => to_tokens(crate::nn::conv2d(p, normed)),
            Projection::Linear(p) => p.forward(to_tokens(normed)),
        };
        for block in &self.transformer_blocks {
            tokens = block.forward(tokens, context);
        }
        let out = match &self.proj_out {
            Projection::Conv(p) => crate::nn::conv2d(p, to_map(tokens)),
            Projection::Linear(p) => to_map(p.forward(tokens)),
        };
        out + x
    }
}
