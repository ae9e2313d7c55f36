//! Attribute classifiers for CFRT (the paper's Eq. 3 uses EfficientNets; a small CNN suffices for the
//! phantoms): conv + GroupNorm + SiLU stages (the first at full resolution so that one-pixel structures such
//! as hair survive, the rest stride 2), global average pooling and one logit per attribute.
//! Saved as `config.json` + `model.safetensors` in a folder.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, silu};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::group_norm;

/// Sizes and label names of a classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// Input channels (1 for chest X-rays, 3 for dermoscopy).
    pub in_channels: usize,
    /// Input size in pixels (square).
    pub image_size: usize,
    /// Channels of each stage (the first at stride 1, the others stride 2).
    pub widths: Vec<usize>,
    /// One output per label, in this order.
    pub labels: Vec<String>,
}

#[derive(Module, Debug)]
struct Stage {
    conv: Conv2d,
    norm: GroupNorm,
}

/// The classifier network.
#[derive(Module, Debug)]
pub struct AttributeClassifier {
    stages: Vec<Stage>,
    head: Linear,
}

impl ClassifierConfig {
    /// Builds the network with fresh weights.
    pub fn init(&self, device: &Device) -> Result<AttributeClassifier> {
        if self.widths.is_empty() || self.labels.is_empty() || self.widths.iter().any(|w| *w == 0 || w % 8 != 0) {
            return Err(Error::config("classifier", "need stage widths (multiples of 8) and at least one label"));
        }
        let mut cin = self.in_channels;
        let stages = self
            .widths
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let stride = if i == 0 { 1 } else { 2 };
                let conv = Conv2dConfig::new([cin, w], [3, 3])
                    .with_stride([stride, stride])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device);
                cin = w;
                Stage { conv, norm: group_norm(8, w, 1e-5, device) }
            })
            .collect();
        Ok(AttributeClassifier { stages, head: LinearConfig::new(cin, self.labels.len()).init(device) })
    }

    /// Reads `config.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::config("classifier config.json", e))
    }
}

/// Loads a classifier saved as `config.json` + `model.safetensors` from their contents (the CLI reads them
/// from a folder, the browser fetches them).
pub fn load(
    config_json: &str,
    weights: crate::weights::WeightFile,
    device: &Device,
) -> Result<(AttributeClassifier, ClassifierConfig)> {
    let config = ClassifierConfig::from_json(config_json)?;
    let mut model = config.init(device)?;
    let names = crate::weights::NameMap { remaps: &[], ignore: &[] };
    crate::weights::load_into(&mut model, "classifier", vec![weights], &names)?;
    Ok((model, config))
}

impl AttributeClassifier {
    /// Images `[B, C, S, S]` in [-1, 1] → logits `[B, labels]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        for s in &self.stages {
            x = silu(s.norm.forward(s.conv.forward(x)));
        }
        let [b, c, _, _] = x.dims();
        self.head.forward(x.mean_dim(3).mean_dim(2).reshape([b, c]))
    }

    /// Probabilities `[B, labels]`.
    pub fn predict(&self, x: Tensor<4>) -> Tensor<2> {
        sigmoid(self.forward(x))
    }
}

/// Numerically stable binary cross-entropy on logits, averaged over all entries.
pub fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let relu = logits.clone().clamp_min(0.0);
    let log1p = (logits.clone().abs().neg().exp() + 1.0).log();
    (relu - logits * targets + log1p).mean()
}
