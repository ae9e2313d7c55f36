//! The CLIP text encoder (transformers `CLIPTextModel`): token + position embeddings, a causal pre-LayerNorm
//! transformer, and a final LayerNorm whose output (`last_hidden_state`) conditions the U-Net.

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, sigmoid};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::attention::multi_head_attention;
use crate::weights::NameMap;

/// The MLP's activation (transformers' `hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// x · σ(1.702 x) (SD 1.x's OpenAI CLIP).
    QuickGelu,
    /// The exact GELU (SD 2.x's OpenCLIP).
    Gelu,
}

/// transformers' `CLIPTextConfig` (the fields the encoder uses), with its defaults.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: HiddenAct,
    pub layer_norm_eps: f64,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: HiddenAct::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

#[derive(Module, Debug)]
struct ClipAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

#[derive(Module, Debug)]
struct ClipMlp {
    fc1: Linear,
    fc2: Linear,
    /// quick_gelu rather than gelu ([`HiddenAct`]).
    quick_gelu: bool,
}

#[derive(Module, Debug)]
struct ClipEncoderLayer {
    self_attn: ClipAttention,
    layer_norm1: LayerNorm,
    mlp: ClipMlp,
    layer_norm2: LayerNorm,
}

#[derive(Module, Debug)]
struct ClipEncoder {
    layers: Vec<ClipEncoderLayer>,
}

#[derive(Module, Debug)]
struct ClipEmbeddings {
    token_embedding: Embedding,
    position_embedding: Embedding,
}

/// `CLIPTextModel`'s `text_model`; tensor paths match transformers' below that prefix
/// (`encoder.layers.0.self_attn.q_proj.weight`, ...).
#[derive(Module, Debug)]
pub struct ClipTextModel {
    embeddings: ClipEmbeddings,
    encoder: ClipEncoder,
    final_layer_norm: LayerNorm,
}

/// Our module paths → transformers' `CLIPTextModel` names, for exporting.
pub const EXPORT_NAMES: &[(&str, &str)] = &[(r"^(.+)$", "text_model.$1")];

/// transformers ≤ 4 saves names under `text_model.`, transformers 5 without it; checkpoints may also carry
/// the `position_ids` buffer and, for `CLIPTextModelWithProjection`, a projection we don't use.
pub const NAMES: NameMap =
    NameMap { remaps: &[(r"^text_model\.", "")], ignore: &["*position_ids", "text_projection.weight"] };

impl ClipTextConfig {
    /// Parses `text_encoder/config.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        crate::error::parse_json("text_encoder/config.json", json)
    }

    /// Builds the model (weights uninitialized until loaded or trained); fails on unsupported configs.
    pub fn init(&self, device: &Device) -> Result<ClipTextModel> {
        let c = self;
        if c.hidden_size == 0 || c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(Error::config(
                "text_encoder/config.json",
                format!("hidden_size {} does not split into {} heads", c.hidden_size, c.num_attention_heads),
            ));
        }
        crate::error::check_layers("text_encoder/config.json", "num_hidden_layers", c.num_hidden_layers)?;
        crate::error::check_eps("text_encoder/config.json", "layer_norm_eps", c.layer_norm_eps)?;
        let quick_gelu = c.hidden_act == HiddenAct::QuickGelu;
        let d = c.hidden_size;
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        let ln = || LayerNormConfig::new(d).with_epsilon(c.layer_norm_eps).init(device);
        let layers = (0..c.num_hidden_layers)
            .map(|_| ClipEncoderLayer {
                self_attn: ClipAttention {
                    q_proj: lin(d, d),
                    k_proj: lin(d, d),
                    v_proj: lin(d, d),
                    out_proj: lin(d, d),
                    heads: c.num_attention_heads,
                },
                layer_norm1: ln(),
                mlp: ClipMlp { fc1: lin(d, c.intermediate_size), fc2: lin(c.intermediate_size, d), quick_gelu },
                layer_norm2: ln(),
            })
            .collect();
        Ok(ClipTextModel {
            embeddings: ClipEmbeddings {
                token_embedding: EmbeddingConfig::new(c.vocab_size, d).init(device),
                position_embedding: EmbeddingConfig::new(c.max_position_embeddings, d).init(device),
            },
            encoder: ClipEncoder { layers },
            final_layer_norm: ln(),
        })
    }
}

impl ClipEmbeddings {
    /// Token ids `[B, L]` → token plus position embeddings `[B, L, hidden]`.
    fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, l] = ids.dims();
        let positions = Tensor::<1, Int>::arange(0..l as i64, &ids.device()).unsqueeze::<2>().expand([b, l]);
        lookup(&self.token_embedding, ids) + lookup(&self.position_embedding, positions)
    }
}

/// Rows `ids` of an embedding table. A table kept int8 on a GPU ([`crate::weights::Storage::Int8`]) is read
/// through a one-hot matmul, which burn's quantized matmul computes from the packed values: its lookup would
/// dequantize the whole table first, and SD 1.5's (49408 tokens, 152 MB as f32) is over WebGPU's default
/// buffer limit. The one-hot rows pick each row exactly.
fn lookup(table: &Embedding, ids: Tensor<2, Int>) -> Tensor<3> {
    let weight = table.weight.val();
    if !matches!(weight.dtype(), burn::tensor::DType::QFloat(_)) {
        return table.forward(ids);
    }
    // Built by comparison, not burn's `one_hot`, which reads the ids back to check them (a browser cannot
    // block on the GPU); ids are checked against the vocabulary before they reach the model.
    let ([b, l], rows) = (ids.dims(), weight.dims()[0]);
    let classes = Tensor::<1, Int>::arange(0..rows as i64, &ids.device()).reshape([1, 1, rows]).expand([b, l, rows]);
    let one_hot = ids.unsqueeze_dim::<3>(2).expand([b, l, rows]).equal(classes).float();
    one_hot.matmul(weight.unsqueeze())
}

impl ClipAttention {
    /// Causal multi-head self-attention over `[B, L, hidden]`.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let (q, k, v) = (self.q_proj.forward(x.clone()), self.k_proj.forward(x.clone()), self.v_proj.forward(x));
        // 77 tokens: the scores are small, never sliced.
        self.out_proj.forward(multi_head_attention(q, k, v, self.heads, true, 0))
    }
}

impl ClipMlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.fc1.forward(x);
        let h = if self.quick_gelu { h.clone() * sigmoid(h * 1.702) } else { gelu(h) };
        self.fc2.forward(h)
    }
}

impl ClipEncoderLayer {
    /// Pre-LayerNorm residual attention, then the pre-LayerNorm residual MLP.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

impl ClipEncoder {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.layers.iter().fold(x, |x, layer| layer.forward(x))
    }
}

impl ClipTextModel {
    /// Token ids `[B, L]` (L ≤ max_position_embeddings, ids < vocab_size) → `last_hidden_state` `[B, L, hidden]`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.final_layer_norm.forward(self.encoder.forward(self.embeddings.forward(ids)))
    }

    /// Vocabulary size (ids at or above it are rejected before [`forward`](Self::forward)).
    pub fn vocab_size(&self) -> usize {
        self.embeddings.token_embedding.weight.dims()[0]
    }

    /// Longest token sequence the model accepts.
    pub fn max_positions(&self) -> usize {
        self.embeddings.position_embedding.weight.dims()[0]
    }
}
