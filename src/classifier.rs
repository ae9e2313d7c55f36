//! Attribute classifiers for CFRT (the paper's Eq. 3 uses EfficientNets; a small CNN suffices for the
//! phantoms): conv + GroupNorm + SiLU stages (the first at full resolution so that one-pixel structures such
//! as hair survive, the rest stride 2), global average pooling and one logit per attribute.
//! Saved as `config.json` + `model.safetensors` in a folder.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::MAX_IMAGE_SIZE;
use crate::nn::{group_norm, group_norm_silu};
use crate::weights::{NameMap, WeightFile};

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
        // Images are resized to image_size² before they are judged: bound it as every image size is bounded.
        if self.in_channels == 0 || !(1..=MAX_IMAGE_SIZE).contains(&self.image_size) {
            return Err(Error::config(
                "classifier",
                format!(
                    "image_size {} must be in 1..={}, with at least one input channel",
                    self.image_size, MAX_IMAGE_SIZE
                ),
            ));
        }
        crate::error::check_layers("classifier", "widths", self.widths.len())?;
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
        crate::error::parse_json("classifier config.json", json)
    }

    /// Position of `label` among the classifier's outputs.
    pub fn label_column(&self, label: &str) -> Result<usize> {
        self.labels
            .iter()
            .position(|l| l == label)
            .ok_or_else(|| Error::arg(format!("the classifier has no label {label:?} (it has {:?})", self.labels)))
    }
}

/// A classifier with its config: what CFRT's readouts need.
#[derive(Debug)]
pub struct Classifier {
    /// The network.
    pub model: AttributeClassifier,
    /// Its sizes and labels.
    pub config: ClassifierConfig,
}

/// Weights are saved with our module paths, which are also the PyTorch names.
const NAMES: NameMap = NameMap { remaps: &[], ignore: &[] };

impl Classifier {
    /// Loads a classifier saved as `config.json` + `model.safetensors` from their contents (the CLI reads
    /// them from a folder, the browser fetches them).
    pub fn load(config_json: &str, weights: WeightFile, device: &Device) -> Result<Self> {
        let config = ClassifierConfig::from_json(config_json)?;
        let mut model = config.init(device)?;
        crate::weights::load_into(&mut model, "classifier", vec![weights], &NAMES)?;
        Ok(Self { model, config })
    }

    /// Loads a classifier folder written by [`Classifier::save`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path, device: &Device) -> Result<Self> {
        let json = crate::files::read_text(&dir.join("config.json"))?;
        Self::load(&json, WeightFile::Path(dir.join("model.safetensors")), device)
    }

    /// Saves a classifier folder: `config.json` and `model.safetensors` (PyTorch layout and names, like
    /// every other weights file Traverse reads), in f32 or (`int8`) in the format of [`crate::quantize`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self, dir: &std::path::Path, int8: bool) -> Result<()> {
        crate::files::create_dir(dir)?;
        let json = crate::files::json_text("classifier config", &self.config)?;
        crate::files::write(&dir.join("config.json"), json.as_bytes())?;
        let path = dir.join("model.safetensors");
        crate::weights::save_pytorch(&self.model, &path, &[])?;
        if int8 {
            let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
            crate::files::write(&path, &crate::quantize::quantize(&path.display().to_string(), &bytes)?)?;
        }
        Ok(())
    }

    /// Probabilities `[B, labels]` of images `[B, 3, H, W]` (in [-1, 1]), resized to the classifier's input
    /// and reduced to gray for one-channel classifiers, left on the images' device (the browser reads them
    /// back asynchronously).
    pub fn probabilities(&self, images: Tensor<4>) -> Result<Tensor<2>> {
        let [_, c, h, w] = images.dims();
        let config = &self.config;
        let mut x = images;
        if (h, w) != (config.image_size, config.image_size) {
            let size = [config.image_size, config.image_size];
            x = interpolate(x, InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size(size));
        }
        x = match (c, config.in_channels) {
            (3, 1) => x.mean_dim(1),
            (a, e) if a == e => x,
            (a, e) => return Err(Error::arg(format!("classifier takes {e}-channel images, got {a} channels"))),
        };
        Ok(self.model.predict(x))
    }

    /// [`probabilities`](Self::probabilities) read back: one row of label probabilities per image.
    pub fn classify(&self, images: Tensor<4>) -> Result<Vec<Vec<f32>>> {
        let b = images.dims()[0];
        let p = crate::readback::values(self.probabilities(images)?)?;
        Ok(p.chunks(self.config.labels.len()).take(b).map(<[f32]>::to_vec).collect())
    }
}

impl AttributeClassifier {
    /// Images `[B, C, S, S]` in [-1, 1] → logits `[B, labels]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        for s in &self.stages {
            x = group_norm_silu(&s.norm, crate::nn::conv2d(&s.conv, x));
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
