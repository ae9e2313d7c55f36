//! diffusers' `Attention` (`attention_processor.py`) in the two forms SD uses: token attention inside the
//! U-Net's transformer blocks (self or cross), and the VAE's single-head spatial attention with its own
//! GroupNorm and residual.

use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::group_norm;

/// Scaled dot-product attention over `[B, N, heads*d]` inputs, split into heads, with an optional causal
/// mask (CLIP). Runs in the backend's fused attention kernel where it has one.
pub fn multi_head_attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize, causal: bool) -> Tensor<3> {
    let [b, n, c] = q.dims();
    let m = k.dims()[1];
    let d = c / heads;
    let split = |t: Tensor<3>, len: usize| t.reshape([b, len, heads, d]).swap_dims(1, 2);
    let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
    let out = attention(split(q, n), split(k, m), split(v, m), None, None, options);
    out.swap_dims(1, 2).reshape([b, n, c])
}

/// Sizes of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttentionConfig {
    /// Width of the queries (and of the output).
    pub query_dim: usize,
    /// Width of the keys/values' source: the text embedding for cross-attention, else `query_dim`.
    pub context_dim: usize,
    /// Number of heads.
    pub heads: usize,
    /// Width of one head.
    pub dim_head: usize,
    /// Whether q/k/v have biases (false in the U-Net, true in the VAE).
    pub qkv_bias: bool,
    /// `Some((groups, eps))` for the VAE's spatial attention, which normalizes its own input.
    pub group_norm: Option<(usize, f64)>,
}

/// diffusers' `Attention` with `to_q`, `to_k`, `to_v`, `to_out.0` (and `group_norm` in the VAE).
#[derive(Module, Debug)]
pub struct Attention {
    group_norm: Option<GroupNorm>,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
}

impl AttentionConfig {
    /// Creates the layer with uninitialized weights.
    pub fn init(&self, device: &Device) -> Attention {
        let inner = self.heads * self.dim_head;
        let lin = |i, o, bias| LinearConfig::new(i, o).with_bias(bias).init(device);
        Attention {
            group_norm: self.group_norm.map(|(g, eps)| group_norm(g, self.query_dim, eps, device)),
            to_q: lin(self.query_dim, inner, self.qkv_bias),
            to_k: lin(self.context_dim, inner, self.qkv_bias),
            to_v: lin(self.context_dim, inner, self.qkv_bias),
            to_out: lin(inner, self.query_dim, true),
            heads: self.heads,
        }
    }
}

impl Attention {
    /// Token attention: `x` `[B, N, C]` attends to `context` `[B, M, D]` (or to itself).
    pub fn forward(&self, x: Tensor<3>, context: Option<&Tensor<3>>) -> Tensor<3> {
        let ctx = context.cloned().unwrap_or_else(|| x.clone());
        let q = self.to_q.forward(x);
        let k = self.to_k.forward(ctx.clone());
        let v = self.to_v.forward(ctx);
        self.to_out.forward(multi_head_attention(q, k, v, self.heads, false))
    }

    /// The VAE's spatial self-attention over `[B, C, H, W]`, with its GroupNorm and residual.
    pub fn forward_spatial(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let normed = match &self.group_norm {
            Some(norm) => norm.forward(x.clone()),
            None => x.clone(),
        };
        let tokens = normed.reshape([b, c, h * w]).swap_dims(1, 2);
        let out = self.forward(tokens, None).swap_dims(1, 2).reshape([b, c, h, w]);
        out + x
    }
}
