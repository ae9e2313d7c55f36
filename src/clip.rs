//! The CLIP text encoder (transformers `CLIPTextModel`): token + position embeddings, a causal pre-LayerNorm
//! transformer, and a final LayerNorm whose output (`last_hidden_state`) conditions the U-Net.

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, sigmoid};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::attention::multi_head_attention;
use crate::weights::NameMap;

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
    /// `quick_gelu` (SD 1.x) or `gelu` (SD 2.x's OpenCLIP).
    pub hidden_act: String,
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
            hidden_act: "quick_gelu".into(),
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
        serde_json::from_str(json).map_err(|e| Error::config("text_encoder/config.json", e))
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
        let quick_gelu = match c.hidden_act.as_str() {
            "quick_gelu" => true,
            "gelu" => false,
            other => {
                return Err(Error::config("text_encoder/config.json", format!("hidden_act {other} is not supported")));
            }
        };
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

impl ClipMlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.fc1.forward(x);
        let h = if self.quick_gelu { h.clone() * sigmoid(h * 1.702) } else { gelu(h) };
        self.fc2.forward(h)
    }
}

impl ClipTextModel {
    /// Token ids `[B, L]` (L ≤ max_position_embeddings, ids < vocab_size) → `last_hidden_state` `[B, L, hidden]`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let m = self;
        let [b, l] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..l as i64, &device).unsqueeze::<2>().expand([b, l]);
        let mut x = m.embeddings.token_embedding.forward(ids) + m.embeddings.position_embedding.forward(positions);
        for layer in &m.encoder.layers {
            let a = &layer.self_attn;
            let h = layer.layer_norm1.forward(x.clone());
            let attn = multi_head_attention(
                a.q_proj.forward(h.clone()),
                a.k_proj.forward(h.clone()),
                a.v_proj.forward(h),
                a.heads,
                true,
            );
            x = x + a.out_proj.forward(attn);
            x = x.clone() + layer.mlp.forward(layer.layer_norm2.forward(x));
        }
        m.final_layer_norm.forward(x)
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
