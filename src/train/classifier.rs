//! The attribute classifiers' training (binary cross-entropy per label, AdamW, cosine decay) and their
//! scores on a split: accuracy and F1 per label, and how often two classifiers (e.g. f32 and int8) agree.

use burn::optim::AdamWConfig;
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::data::{LabeledImages, Source};
use crate::classifier::{AttributeClassifier, ClassifierConfig, bce_with_logits};
// burn's `Config` derive expands to bare `Result`/`Error`, so ours are named by path here.
use crate::metrics::positive;
use crate::synthetic::Split;

/// Classifier training settings.
#[derive(Config, Debug)]
pub struct ClassifierTraining {
    /// Optimizer steps.
    pub steps: usize,
    /// Images per step.
    pub batch: usize,
    /// AdamW learning rate (cosine decay to a tenth of it).
    pub learning_rate: f64,
    /// Seed of the batch order and the initial weights.
    pub seed: u64,
    /// The optimizer.
    #[config(default = "AdamWConfig::new().with_weight_decay(1e-4)")]
    pub optimizer: AdamWConfig,
}

/// Trains a classifier on the train split; `log(step, loss)` sees every step. Returns the model on the
/// inference device.
pub fn train_classifier(
    config: &ClassifierConfig,
    data: &LabeledImages,
    settings: &ClassifierTraining,
    device: &Device,
    mut log: impl FnMut(usize, f32),
) -> crate::Result<AttributeClassifier> {
    let train = data.indices(Split::Train, None);
    if train.is_empty() || settings.batch == 0 {
        return Err(crate::Error::arg("the train split is empty, or the batch is"));
    }
    let train_device = device.clone().autodiff();
    train_device.seed(settings.seed);
    let mut model = config.init(&train_device)?;
    let mut optim = settings.optimizer.init();
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    for step in 0..settings.steps {
        let idx: Vec<usize> = (0..settings.batch).map(|_| train[rng.random_range(0..train.len())]).collect();
        let (x, y) = data.batch(&idx, &train_device)?;
        let loss = bce_with_logits(model.forward(x), y);
        let value = loss.clone().into_scalar::<f32>();
        // Cosine decay to a tenth of the initial rate.
        let progress = step as f64 / settings.steps.max(1) as f64;
        let lr = settings.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
        model = super::descend(model, &mut optim, loss, lr);
        log(step, value);
    }
    Ok(model.valid())
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
    /// Fraction correct at the decision threshold.
    pub accuracy: f64,
    /// F1 of the positive class.
    pub f1: f64,
}

/// Scores `model` on the images of `split` of `data` from `source`.
pub fn score(
    model: &AttributeClassifier,
    data: &LabeledImages,
    split: Split,
    source: Source,
    device: &Device,
) -> crate::Result<Vec<LabelScore>> {
    let idx = data.indices(split, Some(source));
    let k = data.names().len();
    let mut counts = vec![[0usize; 4]; k]; // tp, fp, fn, tn
    let decisions = decisions(model, data, &idx, device)?;
    for (&i, row) in idx.iter().zip(decisions.chunks(k)) {
        for (j, c) in counts.iter_mut().enumerate() {
            c[match (row[j], data.images()[i].labels[j] > 0.5) {
                (true, true) => 0,
                (true, false) => 1,
                (false, true) => 2,
                (false, false) => 3,
            }] += 1;
        }
    }
    Ok(data
        .names()
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

/// Decisions of `model` on images `idx` of `data`, `[idx.len() × labels]` row-major.
fn decisions(
    model: &AttributeClassifier,
    data: &LabeledImages,
    idx: &[usize],
    device: &Device,
) -> crate::Result<Vec<bool>> {
    let mut out = Vec::with_capacity(idx.len() * data.names().len());
    for chunk in idx.chunks(64) {
        let probs = crate::readback::values(model.predict(data.batch(chunk, device)?.0))?;
        out.extend(probs.into_iter().map(positive));
    }
    Ok(out)
}

/// Share of the label decisions on `split` (every source) in which models `a` and `b` agree, e.g. a
/// classifier and its int8 copy.
pub fn agreement(
    a: &AttributeClassifier,
    b: &AttributeClassifier,
    data: &LabeledImages,
    split: Split,
    device: &Device,
) -> crate::Result<f64> {
    let idx = data.indices(split, None);
    let (x, y) = (decisions(a, data, &idx, device)?, decisions(b, data, &idx, device)?);
    Ok(x.iter().zip(&y).filter(|(x, y)| x == y).count() as f64 / x.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::Classifier;
    use crate::synthetic::Kind;

    #[test]
    fn classifier_trains_saves_and_reloads() {
        let device = Device::flex();
        let data = LabeledImages::render(Kind::Derm, 40, 5, 32, |_| {});
        assert_eq!(data.names(), ["melanoma", "hair", "gel_bubbles", "ink", "ruler"]);
        let config =
            ClassifierConfig { in_channels: 3, image_size: 32, widths: vec![8, 16], labels: data.names().to_vec() };
        let settings = ClassifierTraining::new(20, 8, 1e-2, 1);
        let mut losses = vec![];
        let model = train_classifier(&config, &data, &settings, &device, |_, l| losses.push(l)).unwrap();
        assert_eq!(losses.len(), 20);
        let first = losses[..5].iter().sum::<f32>();
        let last = losses[15..].iter().sum::<f32>();
        assert!(last < first, "loss should fall: {losses:?}");
        let dir = std::env::temp_dir().join(format!("traverse-clf-{}", std::process::id()));
        let trained = Classifier { model, config: config.clone() };
        trained.save(&dir, false).unwrap();
        let loaded = Classifier::load_dir(&dir, &device).unwrap();
        assert_eq!(loaded.config, config);
        let (x, _) = data.batch(&[0, 1, 2], &device).unwrap();
        let predict = |m: &AttributeClassifier| crate::readback::values(m.predict(x.clone()));
        let a = predict(&trained.model).unwrap();
        assert_eq!(a, predict(&loaded.model).unwrap(), "reloaded classifier predicts identically");
        // The int8 file is smaller (here only the 8→16 convolution is big enough to quantize) and predicts
        // nearly the same.
        let f32_bytes = std::fs::metadata(dir.join("model.safetensors")).unwrap().len();
        trained.save(&dir, true).unwrap();
        let int8_bytes = std::fs::metadata(dir.join("model.safetensors")).unwrap().len();
        assert!(int8_bytes * 3 < f32_bytes * 2, "{int8_bytes} vs {f32_bytes} bytes");
        let int8 = Classifier::load_dir(&dir, &device).unwrap().model;
        let c = predict(&int8).unwrap();
        assert_ne!(a, c, "int8 weights are not the f32 ones");
        assert!(a.iter().zip(&c).all(|(a, c)| (a - c).abs() < 0.05), "{a:?} vs {c:?}");
        assert_eq!(agreement(&trained.model, &trained.model, &data, Split::Train, &device).unwrap(), 1.0);
        assert!(agreement(&trained.model, &int8, &data, Split::Train, &device).unwrap() > 0.9);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn reconstructions_keep_their_phantoms_labels_and_splits() {
        let device = Device::flex();
        let vae = super::super::vae::tests::tiny_vae().init(&device).unwrap();
        // Gray chest phantoms pass through the RGB autoencoder and come back with one channel.
        let mut data = LabeledImages::render(Kind::Chest, 20, 2, 16, |_| {});
        let mut seen = 0;
        data.add_reconstructions(&vae, &device, |n| seen += n).unwrap();
        let images = data.images();
        assert_eq!((seen, images.len()), (20, 40));
        assert!(images[..20].iter().all(|i| i.source == Source::Phantom));
        assert!(images[20..].iter().all(|i| i.source == Source::Reconstruction));
        for (p, r) in images[..20].iter().zip(&images[20..]) {
            assert_eq!((&p.labels, p.split), (&r.labels, r.split));
        }
        let x = Tensor::<4>::from_data(TensorData::new(images[3].pixels.clone(), [1, 1, 16, 16]), &device);
        let expected = crate::readback::values(vae.decode(vae.encode(x.repeat_dim(1, 3))).mean_dim(1)).unwrap();
        assert_eq!(images[23].pixels, expected);
        assert_ne!(images[23].pixels, images[3].pixels);
        // Each source is scored on its own images.
        let test = data.indices(Split::Test, None);
        assert_eq!(data.indices(Split::Test, Some(Source::Reconstruction)).len() * 2, test.len());
        let classifier =
            ClassifierConfig { in_channels: 1, image_size: 16, widths: vec![8], labels: data.names().to_vec() };
        let model = classifier.init(&device).unwrap();
        let scores = score(&model, &data, Split::Test, Source::Reconstruction, &device).unwrap();
        assert_eq!(scores[0].n * 2, test.len());
    }
}
