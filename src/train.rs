//! Training on the phantoms with burn's autodiff (the same model code as inference): for now the attribute
//! classifiers, with a loss log, a held-out test evaluation and a saved model folder.

use std::path::Path;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::classifier::{AttributeClassifier, ClassifierConfig, bce_with_logits};
use crate::error::{Error, Result};
use crate::synthetic::{Kind, Phantom, Split, split_of};

/// Rendered phantoms with their labels, as network inputs in [-1, 1].
pub struct LabeledImages {
    /// Pixels of each image, `[C, S, S]` row-major.
    pub pixels: Vec<Vec<f32>>,
    /// Labels of each image (0/1).
    pub labels: Vec<Vec<f32>>,
    /// Split of each image.
    pub splits: Vec<Split>,
    /// Label names.
    pub names: Vec<String>,
    /// Channels.
    pub channels: usize,
    /// Size in pixels.
    pub size: usize,
}

impl LabeledImages {
    /// Renders `n` phantoms of `kind` (dataset `seed`) at `size` pixels.
    pub fn render(kind: Kind, n: usize, seed: u64, size: usize, mut progress: impl FnMut(usize)) -> Self {
        let mut out =
            LabeledImages { pixels: vec![], labels: vec![], splits: vec![], names: vec![], channels: 0, size };
        for i in 0..n {
            let p = Phantom::sample(kind, seed, i as u64);
            let img = p.render(size);
            out.channels = img.channels;
            // Interleaved HWC → planar CHW in [-1, 1].
            let plane = size * size;
            let mut chw = vec![0f32; img.channels * plane];
            for (k, v) in img.data.iter().enumerate() {
                chw[(k % img.channels) * plane + k / img.channels] = v * 2.0 - 1.0;
            }
            out.pixels.push(chw);
            let labels = p.labels();
            out.names = labels.iter().map(|(n, _)| n.to_string()).collect();
            out.labels.push(labels.iter().map(|(_, on)| *on as u8 as f32).collect());
            out.splits.push(split_of(i, n));
            progress(i + 1);
        }
        out
    }

    fn batch(&self, idx: &[usize], device: &Device) -> (Tensor<4>, Tensor<2>) {
        let x: Vec<f32> = idx.iter().flat_map(|&i| self.pixels[i].iter().copied()).collect();
        let y: Vec<f32> = idx.iter().flat_map(|&i| self.labels[i].iter().copied()).collect();
        (
            Tensor::from_data(TensorData::new(x, [idx.len(), self.channels, self.size, self.size]), device),
            Tensor::from_data(TensorData::new(y, [idx.len(), self.names.len()]), device),
        )
    }

    fn indices(&self, split: Split) -> Vec<usize> {
        (0..self.splits.len()).filter(|&i| self.splits[i] == split).collect()
    }
}

/// Accuracy and F1 of one label on a split.
#[derive(Debug, Clone, Serialize)]
pub struct LabelScore {
    /// Label name.
    pub label: String,
    /// Images scored.
    pub n: usize,
    /// Positives among them.
    pub positives: usize,
    /// Fraction correct at threshold 0.5.
    pub accuracy: f64,
    /// F1 of the positive class.
    pub f1: f64,
}

/// Scores `model` on `split` of `data`.
pub fn evaluate(
    model: &AttributeClassifier,
    data: &LabeledImages,
    split: Split,
    device: &Device,
) -> Result<Vec<LabelScore>> {
    let idx = data.indices(split);
    let k = data.names.len();
    let mut counts = vec![[0usize; 4]; k]; // tp, fp, fn, tn
    for chunk in idx.chunks(64) {
        let (x, _) = data.batch(chunk, device);
        let probs = model.predict(x).into_data().convert::<f32>();
        let probs = probs.as_slice::<f32>().map_err(|e| Error::Device(format!("{e:?}")))?;
        for (r, &i) in chunk.iter().enumerate() {
            for (j, c) in counts.iter_mut().enumerate() {
                let (pred, truth) = (probs[r * k + j] >= 0.5, data.labels[i][j] > 0.5);
                c[match (pred, truth) {
                    (true, true) => 0,
                    (true, false) => 1,
                    (false, true) => 2,
                    (false, false) => 3,
                }] += 1;
            }
        }
    }
    Ok(data
        .names
        .iter()
        .zip(counts)
        .map(|(name, [tp, fp, fn_, tn])| {
            let n = tp + fp + fn_ + tn;
            LabelScore {
                label: name.clone(),
                n,
                positives: tp + fn_,
                accuracy: (tp + tn) as f64 / n.max(1) as f64,
                f1: 2.0 * tp as f64 / (2 * tp + fp + fn_).max(1) as f64,
            }
        })
        .collect())
}

/// Classifier training settings.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifierTraining {
    /// Optimizer steps.
    pub steps: usize,
    /// Images per step.
    pub batch: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Seed of the batch order and the initial weights.
    pub seed: u64,
}

/// Trains a classifier on the train split; `log(step, loss)` sees every step. Returns the model on the
/// inference device.
pub fn train_classifier(
    config: &ClassifierConfig,
    data: &LabeledImages,
    settings: &ClassifierTraining,
    device: &Device,
    mut log: impl FnMut(usize, f32),
) -> Result<AttributeClassifier> {
    let train_device = device.clone().autodiff();
    train_device.seed(settings.seed);
    let mut model = config.init(&train_device)?;
    let mut optim = AdamWConfig::new().with_weight_decay(1e-4).init();
    let train = data.indices(Split::Train);
    if train.is_empty() {
        return Err(Error::arg("the train split is empty"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    for step in 0..settings.steps {
        let idx: Vec<usize> = (0..settings.batch).map(|_| train[rng.random_range(0..train.len())]).collect();
        let (x, y) = data.batch(&idx, &train_device);
        let loss = bce_with_logits(model.forward(x), y);
        let value = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        // Cosine decay to a tenth of the initial rate.
        let progress = step as f64 / settings.steps.max(1) as f64;
        let lr = settings.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
        model = optim.step(lr, model, grads);
        log(step, value);
    }
    Ok(model.valid())
}

/// Saves a classifier folder: `config.json` and `model.safetensors`.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_classifier(model: &AttributeClassifier, config: &ClassifierConfig, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    let json = serde_json::to_string_pretty(config).map_err(|e| Error::config("classifier", e))?;
    std::fs::write(dir.join("config.json"), json)
        .map_err(|source| Error::Io { path: dir.join("config.json"), source })?;
    // PyTorch layout and names, like every other weights file Traverse reads.
    let mut store = SafetensorsStore::from_file(dir.join("model.safetensors"))
        .with_to_adapter(BurnToPyTorchAdapter)
        .overwrite(true);
    model.save_into(&mut store).map_err(|e| Error::Safetensors { what: "classifier".into(), message: e.to_string() })
}

/// Loads a classifier folder written by [`save_classifier`].
#[cfg(not(target_arch = "wasm32"))]
pub fn load_classifier(dir: &Path, device: &Device) -> Result<(AttributeClassifier, ClassifierConfig)> {
    let path = dir.join("config.json");
    let json = std::fs::read_to_string(&path).map_err(|source| Error::Io { path, source })?;
    let config = ClassifierConfig::from_json(&json)?;
    let mut model = config.init(device)?;
    let names = crate::weights::NameMap { remaps: &[], ignore: &[] };
    let file = crate::weights::WeightFile::Path(dir.join("model.safetensors"));
    crate::weights::load_into(&mut model, "classifier", vec![file], &names)?;
    Ok((model, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier_trains_saves_and_reloads() {
        let device = Device::flex();
        let data = LabeledImages::render(Kind::Derm, 40, 5, 32, |_| {});
        assert_eq!(data.names, ["melanoma", "hair", "gel_bubbles", "ink", "ruler"]);
        let config =
            ClassifierConfig { in_channels: 3, image_size: 32, widths: vec![8, 16], labels: data.names.clone() };
        let settings = ClassifierTraining { steps: 20, batch: 8, learning_rate: 1e-2, seed: 1 };
        let mut losses = vec![];
        let model = train_classifier(&config, &data, &settings, &device, |_, l| losses.push(l)).unwrap();
        assert_eq!(losses.len(), 20);
        let first = losses[..5].iter().sum::<f32>();
        let last = losses[15..].iter().sum::<f32>();
        assert!(last < first, "loss should fall: {losses:?}");
        let dir = std::env::temp_dir().join(format!("traverse-clf-{}", std::process::id()));
        save_classifier(&model, &config, &dir).unwrap();
        let (loaded, loaded_config) = load_classifier(&dir, &device).unwrap();
        assert_eq!(loaded_config, config);
        let (x, _) = data.batch(&[0, 1, 2], &device);
        let a = model.predict(x.clone()).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let b = loaded.predict(x).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(a, b, "reloaded classifier predicts identically");
        let _ = std::fs::remove_dir_all(dir);
    }
}
