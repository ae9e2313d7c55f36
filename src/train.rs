//! Training on the phantoms with burn's autodiff (the same model code as inference): the attribute
//! classifiers, the contrastive text encoder, the autoencoder and the U-Net, each with a loss log, resumable
//! checkpoints and an exported model folder.

use std::path::Path;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn_store::ModuleSnapshot;
use rand::distr::Distribution as _;
use rand::distr::weighted::WeightedIndex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::classifier::{AttributeClassifier, ClassifierConfig, bce_with_logits};
use crate::error::{Error, Result};
use crate::synthetic::{Kind, Phantom, Split, split_of};

/// Where a labelled image comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A rendered phantom.
    Phantom,
    /// A phantom after the model's autoencoder (encode, decode), still labelled with the phantom's ground
    /// truth.
    Reconstruction,
}

/// Rendered phantoms with their labels, as network inputs in [-1, 1].
pub struct LabeledImages {
    /// Pixels of each image, `[C, S, S]` row-major.
    pub pixels: Vec<Vec<f32>>,
    /// Labels of each image (0/1).
    pub labels: Vec<Vec<f32>>,
    /// Split of each image.
    pub splits: Vec<Split>,
    /// Source of each image.
    pub sources: Vec<Source>,
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
        let mut out = LabeledImages {
            pixels: vec![],
            labels: vec![],
            splits: vec![],
            sources: vec![],
            names: vec![],
            channels: 0,
            size,
        };
        for i in 0..n {
            let p = Phantom::sample(kind, seed, i as u64);
            let img = p.render(size);
            out.channels = img.channels;
            out.pixels.push(img.to_planar(img.channels));
            let labels = p.labels();
            out.names = labels.iter().map(|(n, _)| n.to_string()).collect();
            out.labels.push(labels.iter().map(|(_, on)| *on as u8 as f32).collect());
            out.splits.push(split_of(i, n));
            out.sources.push(Source::Phantom);
            progress(i + 1);
        }
        out
    }

    /// Appends every phantom's reconstruction by `vae` (encode to the latent mean, decode, as the ceiling
    /// check does), labelled and split as its phantom; `progress(n)` sees each batch of `n`. A classifier
    /// that judges generated images must know how this decoder draws each attribute: one trained on phantoms
    /// alone takes the decoder's soft blobs for gel bubbles on a fifth of clean reconstructions.
    pub fn add_reconstructions(
        &mut self,
        vae: &crate::vae::AutoencoderKL,
        device: &Device,
        mut progress: impl FnMut(usize),
    ) -> Result<()> {
        let phantoms: Vec<usize> = (0..self.pixels.len()).filter(|&i| self.sources[i] == Source::Phantom).collect();
        let (c, s) = (self.channels, self.size);
        for chunk in phantoms.chunks(16) {
            let (x, _) = self.batch(chunk, device);
            // The autoencoder takes RGB; gray phantoms go in replicated and come back averaged.
            let recon = vae.decode(vae.encode(if c == 1 { x.repeat_dim(1, 3) } else { x }));
            let recon = if c == 1 { recon.mean_dim(1) } else { recon };
            let values = recon
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| Error::Device(format!("{e:?}")))?;
            for (pixels, &i) in values.chunks(c * s * s).zip(chunk) {
                self.pixels.push(pixels.to_vec());
                self.labels.push(self.labels[i].clone());
                self.splits.push(self.splits[i]);
                self.sources.push(Source::Reconstruction);
            }
            progress(chunk.len());
        }
        Ok(())
    }

    fn batch(&self, idx: &[usize], device: &Device) -> (Tensor<4>, Tensor<2>) {
        let x: Vec<f32> = idx.iter().flat_map(|&i| self.pixels[i].iter().copied()).collect();
        let y: Vec<f32> = idx.iter().flat_map(|&i| self.labels[i].iter().copied()).collect();
        (
            Tensor::from_data(TensorData::new(x, [idx.len(), self.channels, self.size, self.size]), device),
            Tensor::from_data(TensorData::new(y, [idx.len(), self.names.len()]), device),
        )
    }

    /// Images of `split`, of one source or (`None`) of both.
    fn indices(&self, split: Split, source: Option<Source>) -> Vec<usize> {
        (0..self.splits.len())
            .filter(|&i| self.splits[i] == split && source.is_none_or(|s| self.sources[i] == s))
            .collect()
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

/// Scores `model` on the images of `split` of `data` from `source`.
pub fn evaluate(
    model: &AttributeClassifier,
    data: &LabeledImages,
    split: Split,
    source: Source,
    device: &Device,
) -> Result<Vec<LabelScore>> {
    let idx = data.indices(split, Some(source));
    let k = data.names.len();
    let mut counts = vec![[0usize; 4]; k]; // tp, fp, fn, tn
    let decisions = decisions(model, data, &idx, device)?;
    for (&i, row) in idx.iter().zip(decisions.chunks(k)) {
        for (j, c) in counts.iter_mut().enumerate() {
            c[match (row[j], data.labels[i][j] > 0.5) {
                (true, true) => 0,
                (true, false) => 1,
                (false, true) => 2,
                (false, false) => 3,
            }] += 1;
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

/// Decisions (probability ≥ 0.5) of `model` on images `idx` of `data`, `[idx.len() × labels]` row-major.
fn decisions(model: &AttributeClassifier, data: &LabeledImages, idx: &[usize], device: &Device) -> Result<Vec<bool>> {
    let mut out = Vec::with_capacity(idx.len() * data.names.len());
    for chunk in idx.chunks(64) {
        let probs = model.predict(data.batch(chunk, device).0).into_data().convert::<f32>();
        let probs = probs.as_slice::<f32>().map_err(|e| Error::Device(format!("{e:?}")))?;
        out.extend(probs.iter().map(|&p| p >= 0.5));
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
) -> Result<f64> {
    let idx = data.indices(split, None);
    let (x, y) = (decisions(a, data, &idx, device)?, decisions(b, data, &idx, device)?);
    Ok(x.iter().zip(&y).filter(|(x, y)| x == y).count() as f64 / x.len().max(1) as f64)
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

/// One optimizer step: backpropagates `loss` and updates `model` at learning rate `lr`.
fn descend<M: burn::module::Module>(model: M, optim: &mut burn::optim::ModuleOptimizer, loss: Tensor<1>, lr: f64) -> M {
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    optim.step(lr, model, grads)
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
    let train = data.indices(Split::Train, None);
    if train.is_empty() {
        return Err(Error::arg("the train split is empty"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    for step in 0..settings.steps {
        let idx: Vec<usize> = (0..settings.batch).map(|_| train[rng.random_range(0..train.len())]).collect();
        let (x, y) = data.batch(&idx, &train_device);
        let loss = bce_with_logits(model.forward(x), y);
        let value = loss.clone().into_scalar::<f32>();
        // Cosine decay to a tenth of the initial rate.
        let progress = step as f64 / settings.steps.max(1) as f64;
        let lr = settings.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
        model = descend(model, &mut optim, loss, lr);
        log(step, value);
    }
    Ok(model.valid())
}

/// Saves a classifier folder: `config.json` and `model.safetensors`, in f32 or (`int8`) in the format of
/// [`crate::quantize`], which [`load_classifier`] reads as well.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_classifier(model: &AttributeClassifier, config: &ClassifierConfig, dir: &Path, int8: bool) -> Result<()> {
    let io = |path: std::path::PathBuf| move |source| Error::Io { path, source };
    std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
    let json = serde_json::to_string_pretty(config).map_err(|e| Error::config("classifier", e))?;
    std::fs::write(dir.join("config.json"), json).map_err(io(dir.join("config.json")))?;
    // PyTorch layout and names, like every other weights file Traverse reads.
    let path = dir.join("model.safetensors");
    crate::weights::save_pytorch(model, &path, &[])?;
    if int8 {
        let bytes = std::fs::read(&path).map_err(io(path.clone()))?;
        let q = crate::quantize::quantize(&path.display().to_string(), &bytes)?;
        std::fs::write(&path, q).map_err(io(path.clone()))?;
    }
    Ok(())
}

/// Loads a classifier folder written by [`save_classifier`].
#[cfg(not(target_arch = "wasm32"))]
pub fn load_classifier(dir: &Path, device: &Device) -> Result<(AttributeClassifier, ClassifierConfig)> {
    let path = dir.join("config.json");
    let json = std::fs::read_to_string(&path).map_err(|source| Error::Io { path, source })?;
    crate::classifier::load(&json, crate::weights::WeightFile::Path(dir.join("model.safetensors")), device)
}

/// Phantoms of both families as 3-channel `[3, size, size]` images in [-1, 1] (chest X-rays replicated to
/// RGB) with their captions: the training pool of the autoencoder and the text encoder, which serve both.
pub struct CaptionedImages {
    /// Pixels of each image.
    pub pixels: Vec<Vec<f32>>,
    /// Index into `texts` of each image's caption.
    pub captions: Vec<usize>,
    /// The distinct captions.
    pub texts: Vec<String>,
    /// The phantom family of each of `texts`: the groups caption balancing keeps.
    pub text_kinds: Vec<Kind>,
    /// Size in pixels.
    pub size: usize,
    /// Per image, `[size, size]`: 1 where the attributes change the pixel (the image against its
    /// counterfactual with every attribute but the diagnosis off), else 0.
    pub attribute_masks: Vec<Vec<f32>>,
}

/// Renders `n` phantoms, alternating chest and dermoscopy (dataset `seed`).
pub fn render_captioned(n: usize, seed: u64, size: usize, mut progress: impl FnMut(usize)) -> CaptionedImages {
    let mut out = CaptionedImages {
        pixels: Vec::with_capacity(n),
        captions: Vec::with_capacity(n),
        texts: vec![],
        text_kinds: vec![],
        size,
        attribute_masks: Vec::with_capacity(n),
    };
    for i in 0..n {
        let kind = if i % 2 == 0 { Kind::Chest } else { Kind::Derm };
        let phantom = Phantom::sample(kind, seed, (i / 2) as u64);
        let pixels = phantom.render(size).to_planar(3);
        let plain = phantom.with_attributes_off(&[crate::evaluate::CLASS_LABEL]).render(size).to_planar(3);
        let plane = size * size;
        out.attribute_masks.push(
            (0..plane)
                .map(|i| {
                    let changed = (0..3).any(|c| (pixels[c * plane + i] - plain[c * plane + i]).abs() > 0.02);
                    f32::from(u8::from(changed))
                })
                .collect(),
        );
        out.pixels.push(pixels);
        let caption = phantom.caption();
        let idx = out.texts.iter().position(|t| *t == caption).unwrap_or_else(|| {
            out.texts.push(caption);
            out.text_kinds.push(kind);
            out.texts.len() - 1
        });
        out.captions.push(idx);
        progress(i + 1);
    }
    out
}

/// Autoencoder training settings.
#[derive(Debug, Clone, Serialize)]
pub struct VaeTraining {
    /// Total optimizer steps (a resumed run continues up to this).
    pub steps: usize,
    /// Images per step.
    pub batch: usize,
    /// Side of the random square crop each image is trained on (the autoencoder is convolutional, so crops
    /// teach it the same mapping at a fraction of the cost; the image size trains on whole images).
    pub crop: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Weight of the KL term against the pixel loss, both summed (SD's VAE: 1e-6).
    pub kl_weight: f64,
    /// Weight of an L1 loss on the reconstruction error's horizontal and vertical differences: it penalizes
    /// blurred edges, which plain L1 + MSE barely notices on one- or two-pixel lines (hair, ink, tubes).
    pub edge_weight: f64,
    /// Steps after `steps` that fine-tune the decoder alone, as Stability's ft-MSE decoder was: the encoder
    /// and so the latents stay as they are, and a U-Net trained on them stays valid.
    pub decoder_steps: usize,
    /// In the decoder steps, extra weight of the pixels an attribute changes (thin hair, ink, bubbles and
    /// rulers cover a few percent of an image, so an unweighted loss spends little on them).
    pub attribute_weight: f64,
    /// Seed of batch order, weights and sampling noise.
    pub seed: u64,
    /// Save the model every this many steps.
    pub checkpoint_every: usize,
}

/// A diffusers model folder under training: `config.json`, the weights (diffusers' names), `train_state.json`
/// (the step reached) and `loss.csv` (appended at each save) with its plot `loss.svg`. Opening it resumes from a previous save.
#[cfg(not(target_arch = "wasm32"))]
struct Checkpoint<'a> {
    dir: &'a Path,
    weights: &'a str,
    export: &'a [(&'a str, &'a str)],
    losses: String,
}

#[cfg(not(target_arch = "wasm32"))]
impl<'a> Checkpoint<'a> {
    /// A diffusers model folder: `diffusion_pytorch_model.safetensors`, and a config with `_class_name`.
    fn diffusers<M: ModuleSnapshot>(
        dir: &'a Path,
        class_name: &str,
        config: &impl Serialize,
        model: &mut M,
        names: &crate::weights::NameMap,
        export: &'a [(&'a str, &'a str)],
    ) -> Result<(Self, usize)> {
        let mut json = serde_json::to_value(config).map_err(|e| Error::config(class_name, e))?;
        if let Some(obj) = json.as_object_mut() {
            obj.insert("_class_name".into(), class_name.into());
        }
        Self::open(dir, "diffusion_pytorch_model.safetensors", json, model, names, export)
    }

    /// Writes `config.json` and loads the saved weights (`weights`, a file in `dir`) into `model` if there
    /// are any; returns the checkpoint and the step to start from.
    fn open<M: ModuleSnapshot>(
        dir: &'a Path,
        weights: &'a str,
        config: serde_json::Value,
        model: &mut M,
        names: &crate::weights::NameMap,
        export: &'a [(&'a str, &'a str)],
    ) -> Result<(Self, usize)> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        let state = dir.join("train_state.json");
        let weights_path = dir.join(weights);
        let mut start = 0;
        if state.is_file() && weights_path.is_file() {
            let text = std::fs::read_to_string(&state).map_err(|source| Error::Io { path: state.clone(), source })?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::config("train_state.json", e))?;
            start = json["step"].as_u64().unwrap_or(0) as usize;
            crate::weights::load_into(model, weights, vec![crate::weights::WeightFile::Path(weights_path)], names)?;
        }
        let path = dir.join("config.json");
        std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap_or_default())
            .map_err(|source| Error::Io { path, source })?;
        if dir.join("loss.csv").is_file() {
            plot_loss(&dir.join("loss.csv"), &dir.join("loss.svg"))?;
        }
        Ok((Self { dir, weights, export, losses: String::new() }, start))
    }

    /// Logs step `step`'s loss and saves when `every` steps have passed or training is done; says whether it saved.
    fn after_step<M: ModuleSnapshot>(
        &mut self,
        model: &M,
        step: usize,
        loss: f32,
        steps: usize,
        every: usize,
    ) -> Result<bool> {
        self.losses.push_str(&format!("{step},{loss}\n"));
        let due = (step + 1).is_multiple_of(every) || step + 1 == steps;
        if due {
            self.save(model, step + 1)?;
        }
        Ok(due)
    }

    fn save<M: ModuleSnapshot>(&mut self, model: &M, step: usize) -> Result<()> {
        use std::io::Write;
        crate::weights::save_pytorch(model, &self.dir.join(self.weights), self.export)?;
        let state = self.dir.join("train_state.json");
        std::fs::write(&state, format!("{{\"step\": {step}}}")).map_err(|source| Error::Io { path: state, source })?;
        let log = self.dir.join("loss.csv");
        let io = |source| Error::Io { path: log.clone(), source };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(io)?;
        f.write_all(self.losses.as_bytes()).map_err(io)?;
        self.losses.clear();
        plot_loss(&log, &self.dir.join("loss.svg"))
    }
}

/// Plots a `step,loss` CSV as an SVG: every step faintly, and a 1 %-of-the-run moving average on a log scale.
#[cfg(not(target_arch = "wasm32"))]
pub fn plot_loss(csv: &Path, svg: &Path) -> Result<()> {
    use plotters::prelude::*;
    let text = std::fs::read_to_string(csv).map_err(|source| Error::Io { path: csv.to_path_buf(), source })?;
    let points: Vec<(f32, f32)> = text
        .lines()
        .filter_map(|l| {
            let (s, v) = l.split_once(',')?;
            Some((s.trim().parse().ok()?, v.trim().parse().ok()?))
        })
        .filter(|(_, v): &(f32, f32)| v.is_finite() && *v > 0.0)
        .collect();
    if points.is_empty() {
        return Ok(());
    }
    let window = (points.len() / 100).max(1);
    let smooth: Vec<(f32, f32)> = points
        .windows(window)
        .map(|w| (w[w.len() - 1].0, w.iter().map(|p| p.1).sum::<f32>() / w.len() as f32))
        .collect();
    let (lo, hi) = points.iter().fold((f32::MAX, f32::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let last = points.iter().map(|p| p.0).fold(1.0, f32::max);
    let title = csv.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let fail = |e: &dyn std::fmt::Display| Error::Image(format!("{}: {e}", svg.display()));
    let root = SVGBackend::new(svg, (720, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title} training loss"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f32..last, (lo * 0.9..hi * 1.1).log_scale())
        .map_err(|e| fail(&e))?;
    chart.configure_mesh().x_desc("step").y_desc("loss").draw().map_err(|e| fail(&e))?;
    chart.draw_series(LineSeries::new(points, BLUE.mix(0.25))).map_err(|e| fail(&e))?;
    chart.draw_series(LineSeries::new(smooth, BLUE.stroke_width(2))).map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

/// Trains an AutoencoderKL on `pool` (`[3, size, size]` images) with an L1 + MSE reconstruction loss and a
/// small KL term, checkpointing to (and resuming from) the diffusers folder `dir`.
#[cfg(not(target_arch = "wasm32"))]
pub fn train_vae(
    config: &crate::vae::AutoencoderKLConfig,
    pool: &CaptionedImages,
    settings: &VaeTraining,
    device: &Device,
    dir: &Path,
    mut log: impl FnMut(usize, f32),
) -> Result<crate::vae::AutoencoderKL> {
    let size = pool.size;
    let train_device = device.clone().autodiff();
    train_device.seed(settings.seed);
    let mut model = config.init(&train_device)?;
    let (mut ckpt, start) =
        Checkpoint::diffusers(dir, "AutoencoderKL", config, &mut model, &crate::vae::NAMES, crate::vae::EXPORT_NAMES)?;
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ start as u64);
    let crop = settings.crop.clamp(1, size);
    let plane = 3 * crop * crop;
    let total = settings.steps + settings.decoder_steps;
    for step in start..total {
        let decoder_only = step >= settings.steps;
        let mut x = Vec::with_capacity(settings.batch * plane);
        let mut mask = Vec::with_capacity(settings.batch * crop * crop);
        for _ in 0..settings.batch {
            let i = rng.random_range(0..pool.pixels.len());
            let (image, m) = (&pool.pixels[i], &pool.attribute_masks[i]);
            let (top, left) = (rng.random_range(0..=size - crop), rng.random_range(0..=size - crop));
            for c in 0..3 {
                for y in top..top + crop {
                    let row = (c * size + y) * size + left;
                    x.extend_from_slice(&image[row..row + crop]);
                }
            }
            for y in top..top + crop {
                mask.extend_from_slice(&m[y * size + left..y * size + left + crop]);
            }
        }
        let x = Tensor::<4>::from_data(TensorData::new(x, [settings.batch, 3, crop, crop]), &train_device);
        // Decoder steps encode outside autodiff (an unused encoder graph would be kept, step after step),
        // so no gradient reaches the encoder and it, and every latent, stays as trained.
        let encoder = if decoder_only { Some(model.clone().valid()) } else { None };
        let (mean, logvar) = match &encoder {
            Some(e) => {
                let (m, l) = e.encode_distribution(x.clone().without_autodiff());
                (m.autodiff(), l.autodiff())
            }
            None => model.encode_distribution(x.clone()),
        };
        let latent_share = mean.dims()[1..].iter().product::<usize>() as f64 / plane as f64;
        let eps = mean.random_like(burn::tensor::Distribution::Normal(0.0, 1.0));
        let z = mean.clone() + (logvar.clone() * 0.5).exp() * eps;
        let recon = model.decode_raw(z);
        let diff = recon - x;
        let per_pixel = diff.clone().abs() + diff.clone().powf_scalar(2.0);
        let rec = per_pixel.clone().mean();
        let mut loss = if decoder_only {
            let m = Tensor::<4>::from_data(TensorData::new(mask, [settings.batch, 1, crop, crop]), &train_device);
            let w = m * settings.attribute_weight + 1.0;
            (per_pixel * w.clone()).mean() / w.mean()
        } else {
            let kl = (mean.powf_scalar(2.0) + logvar.clone().exp() - logvar - 1.0).mean() * 0.5;
            // SD's weighting is on sums (pixel loss summed + kl_weight × KL summed over latent elements); with
            // both terms as means that is kl_weight × latent elements / pixel values, not a larger weight that
            // would push the posterior to the prior and erase fine detail from the latents.
            rec.clone() + kl * settings.kl_weight * latent_share
        };
        if settings.edge_weight > 0.0 && crop > 1 {
            let b = settings.batch;
            let along = |dim: usize| {
                let (mut lo, mut hi) = ([0..b, 0..3, 0..crop, 0..crop], [0..b, 0..3, 0..crop, 0..crop]);
                (lo[dim], hi[dim]) = (0..crop - 1, 1..crop);
                (diff.clone().slice(hi) - diff.clone().slice(lo)).abs().mean()
            };
            loss = loss + (along(2) + along(3)) * settings.edge_weight;
        }
        // The logged loss stays the unweighted L1 + MSE, comparable across runs and stages.
        let value = rec.into_scalar::<f32>();
        let lr = if decoder_only {
            decayed(settings.learning_rate, step - settings.steps, settings.decoder_steps)
        } else {
            decayed(settings.learning_rate, step, settings.steps)
        };
        model = descend(model, &mut optim, loss, lr);
        log(step, value);
        ckpt.after_step(&model, step, value, total, settings.checkpoint_every)?;
    }
    Ok(model.valid())
}

/// U-Net training settings (the paper's stage: the U-Net learns while the VAE and text encoder are frozen).
#[derive(Debug, Clone, Serialize)]
pub struct UnetTraining {
    /// Total optimizer steps (a resumed run continues up to this).
    pub steps: usize,
    /// Latents per step.
    pub batch: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Probability of training a sample with the empty caption, so classifier-free guidance works.
    pub uncond_probability: f64,
    /// How strongly rare captions are oversampled: each latent is drawn with weight (its caption's count)^-b,
    /// so 0 draws every latent alike and 1 every caption of a group alike, each caption group keeping its share
    /// ([`caption_balanced_weights`]).
    pub caption_balance: f64,
    /// Share of the draws given to each caption group (phantom family), summing to 1: a family whose attribute
    /// is learnt slowly can be shown more often. `None` keeps each group's share of the data.
    pub group_shares: Option<Vec<f64>>,
    /// Seed of batch order, timesteps, noise and weights.
    pub seed: u64,
    /// Save the model every this many steps.
    pub checkpoint_every: usize,
}

/// Frozen-encoder training data for the U-Net: scaled VAE latents with the index of their caption, and
/// the text embeddings of every caption plus the empty one.
#[derive(Clone)]
pub struct LatentDataset {
    /// Latent `[C, h, w]` values and caption index per sample.
    pub samples: Vec<(Vec<f32>, usize)>,
    /// Latent shape `[C, h, w]`.
    pub shape: [usize; 3],
    /// Text embedding `[77, D]` values of each caption.
    pub captions: Vec<Vec<f32>>,
    /// Group of each caption (the phantom family): caption balancing evens out captions within a group and
    /// keeps each group's share of the draws.
    pub caption_groups: Vec<usize>,
    /// Text embedding of the empty prompt.
    pub uncond: Vec<f32>,
    /// Embedding shape `[77, D]`.
    pub context_shape: [usize; 2],
}

/// Trains the U-Net with the standard diffusion loss (noise a latent to a random training timestep with the
/// scheduler's ᾱ, predict the noise, or v, from the caption's embedding, mean squared error),
/// checkpointing to (and resuming from) the diffusers folder `dir`.
#[cfg(not(target_arch = "wasm32"))]
pub fn train_unet(
    config: &crate::unet::UNet2DConditionConfig,
    scheduler: &crate::scheduler::DdimConfig,
    data: &LatentDataset,
    settings: &UnetTraining,
    device: &Device,
    dir: &Path,
    mut log: impl FnMut(usize, f32),
) -> Result<crate::unet::UNet2DConditionModel> {
    use crate::scheduler::PredictionType;
    if data.samples.is_empty() {
        return Err(Error::arg("no training latents"));
    }
    let alphas = scheduler.alphas_cumprod()?;
    let train_device = device.clone().autodiff();
    train_device.seed(settings.seed);
    let mut model = config.init(&train_device)?;
    let (mut ckpt, start) = Checkpoint::diffusers(
        dir,
        "UNet2DConditionModel",
        config,
        &mut model,
        &crate::unet::NAMES,
        crate::unet::EXPORT_NAMES,
    )?;
    let mut optim = AdamWConfig::new().with_weight_decay(1e-2).init();
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ start as u64);
    let [c, h, w] = data.shape;
    let [l, d] = data.context_shape;
    let b = settings.batch;
    // Unbalanced runs keep the plain uniform draw, so they repeat the batches of runs made before the options.
    let balanced = if settings.caption_balance == 0.0 && settings.group_shares.is_none() {
        None
    } else {
        let weights = caption_balanced_weights(data, settings.caption_balance, settings.group_shares.as_deref())?;
        Some(WeightedIndex::new(weights).map_err(|e| Error::arg(format!("caption weights: {e}")))?)
    };
    for step in start..settings.steps {
        let picks: Vec<usize> = (0..b)
            .map(|_| match &balanced {
                Some(weights) => weights.sample(&mut rng),
                None => rng.random_range(0..data.samples.len()),
            })
            .collect();
        let ts: Vec<usize> = (0..b).map(|_| rng.random_range(0..alphas.len())).collect();
        let x0: Vec<f32> = picks.iter().flat_map(|&i| data.samples[i].0.iter().copied()).collect();
        let mut ctx = Vec::with_capacity(b * l * d);
        for &i in &picks {
            let uncond = rng.random_bool(settings.uncond_probability);
            ctx.extend_from_slice(if uncond { &data.uncond } else { &data.captions[data.samples[i].1] });
        }
        let coef = |f: fn(f64) -> f64| {
            let v: Vec<f32> = ts.iter().map(|&t| f(alphas[t]) as f32).collect();
            Tensor::<4>::from_data(TensorData::new(v, [b, 1, 1, 1]), &train_device)
        };
        let (a, s) = (coef(|x| x.sqrt()), coef(|x| (1.0 - x).sqrt()));
        let x0 = Tensor::<4>::from_data(TensorData::new(x0, [b, c, h, w]), &train_device);
        let ctx = Tensor::<3>::from_data(TensorData::new(ctx, [b, l, d]), &train_device);
        let eps = x0.random_like(burn::tensor::Distribution::Normal(0.0, 1.0));
        let noisy = x0.clone() * a.clone() + eps.clone() * s.clone();
        let target = match scheduler.prediction_type {
            PredictionType::Epsilon => eps,
            PredictionType::VPrediction => eps * a - x0 * s,
            PredictionType::Sample => x0,
        };
        let t: Vec<f32> = ts.iter().map(|&t| t as f32).collect();
        let loss = (model.forward_timesteps(noisy, &t, &ctx) - target).powf_scalar(2.0).mean();
        let value = loss.clone().into_scalar::<f32>();
        model = descend(model, &mut optim, loss, decayed(settings.learning_rate, step, settings.steps));
        log(step, value);
        ckpt.after_step(&model, step, value, settings.steps, settings.checkpoint_every)?;
    }
    Ok(model.valid())
}

/// Sampling weight of each latent in `data`: the count of its caption to the power `-balance` (in 0..=1),
/// scaled so that each caption group (phantom family) gets `shares[group]` of the draws, or, without `shares`,
/// keeps the share it has in the data. At 1 every caption of a group is drawn equally often, whatever its
/// prevalence; in between, rare attribute combinations (melanoma with ink alone, say) are seen more often
/// without repeating a handful of images too much. Without the group scaling, a family with many rare captions (dermoscopy's 32 against chest's 4) would
/// take most of the batches (0.71 of them at 0.5 on the mini model's pool).
pub fn caption_balanced_weights(data: &LatentDataset, balance: f64, shares: Option<&[f64]>) -> Result<Vec<f64>> {
    if !(0.0..=1.0).contains(&balance) {
        return Err(Error::arg(format!("caption balance must lie in 0..=1, got {balance}")));
    }
    if data.caption_groups.len() != data.captions.len() {
        return Err(Error::arg(format!(
            "{} caption groups for {} captions",
            data.caption_groups.len(),
            data.captions.len()
        )));
    }
    let mut counts = vec![0usize; data.captions.len()];
    for &(_, caption) in &data.samples {
        *counts
            .get_mut(caption)
            .ok_or_else(|| Error::arg(format!("caption index {caption} beyond {} captions", data.captions.len())))? +=
            1;
    }
    let raw: Vec<f64> = data.samples.iter().map(|&(_, caption)| (counts[caption] as f64).powf(-balance)).collect();
    let groups = data.caption_groups.iter().max().map_or(0, |g| g + 1);
    let (mut latents, mut mass) = (vec![0usize; groups], vec![0f64; groups]);
    for (&(_, caption), w) in data.samples.iter().zip(&raw) {
        latents[data.caption_groups[caption]] += 1;
        mass[data.caption_groups[caption]] += w;
    }
    let share: Vec<f64> = match shares {
        None => latents.iter().map(|&n| n as f64).collect(),
        Some(s) => {
            let sum: f64 = s.iter().sum();
            if s.len() != groups || s.iter().any(|v| !(0.0..=1.0).contains(v)) || (sum - 1.0).abs() > 1e-9 {
                return Err(Error::arg(format!("{groups} group shares in 0..=1 summing to 1 expected, got {s:?}")));
            }
            if let Some(g) = (0..groups).find(|&g| s[g] > 0.0 && latents[g] == 0) {
                return Err(Error::arg(format!("group {g} is given a share of the draws but has no latents")));
            }
            s.to_vec()
        }
    };
    Ok(data
        .samples
        .iter()
        .zip(raw)
        .map(|(&(_, caption), w)| {
            let g = data.caption_groups[caption];
            w * share[g] / mass[g]
        })
        .collect())
}

/// Learning rate at `step` of a `steps`-step run: `lr`, then a linear decay to a tenth of it over the last
/// quarter (a function of the step alone, so a resumed run follows the same schedule).
fn decayed(lr: f64, step: usize, steps: usize) -> f64 {
    let tail = (steps as f64 * 0.25).max(1.0);
    let left = (steps.saturating_sub(step)) as f64 / tail;
    lr * (0.1 + 0.9 * left.min(1.0))
}

/// CLIP's contrastive objective on phantoms, as SD's text encoder was trained: the text tower is the CLIP text
/// encoder the U-Net will read (pooled at the end-of-text token and projected), the image tower a small CNN.
#[derive(Module, Debug)]
pub struct ContrastiveClip {
    text: crate::clip::ClipTextModel,
    text_projection: burn::nn::Linear,
    image: AttributeClassifier,
    logit_scale: burn::module::Param<Tensor<1>>,
}

/// Text-encoder training settings.
#[derive(Debug, Clone, Serialize)]
pub struct TextEncoderTraining {
    /// Total optimizer steps (a resumed run continues up to this).
    pub steps: usize,
    /// Image–caption pairs per step.
    pub batch: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Width of the shared embedding space.
    pub projection_dim: usize,
    /// Seed of batch order and weights.
    pub seed: u64,
    /// Save every this many steps.
    pub checkpoint_every: usize,
}

impl ContrastiveClip {
    /// L2-normalized text embeddings `[B, P]` of token ids `[B, L]`, pooled at each row's `eos` position.
    fn embed_text(&self, ids: &[Vec<u32>], eos: u32, device: &Device) -> Tensor<2> {
        let (b, l) = (ids.len(), ids[0].len());
        let flat: Vec<i64> = ids.iter().flat_map(|r| r.iter().map(|&i| i as i64)).collect();
        let hidden = self.text.forward(Tensor::from_data(TensorData::new(flat, [b, l]), device));
        let mask: Vec<f32> = ids
            .iter()
            .flat_map(|r| {
                let at = r.iter().position(|&i| i == eos).unwrap_or(l - 1);
                (0..l).map(move |j| (j == at) as u8 as f32)
            })
            .collect();
        let mask = Tensor::<3>::from_data(TensorData::new(mask, [b, l, 1]), device);
        let d = hidden.dims()[2];
        normalize(self.text_projection.forward((hidden * mask).sum_dim(1).reshape([b, d])))
    }
}

fn normalize(x: Tensor<2>) -> Tensor<2> {
    x.clone() / (x.powf_scalar(2.0).sum_dim(1).sqrt() + 1e-6)
}

/// Trains the text encoder contrastively against an image tower on `data`, checkpointing the whole
/// contrastive model (`contrastive.safetensors`, for resuming) and exporting the text encoder as a
/// transformers `text_encoder/` folder (`config.json`, `model.safetensors`) in `dir`.
#[cfg(not(target_arch = "wasm32"))]
pub fn train_text_encoder(
    config: &crate::clip::ClipTextConfig,
    tokenizer: &crate::tokenizer::ClipTokenizer,
    data: &CaptionedImages,
    settings: &TextEncoderTraining,
    device: &Device,
    dir: &Path,
    mut log: impl FnMut(usize, f32),
) -> Result<crate::clip::ClipTextModel> {
    let token = |t: &str| tokenizer.token_id(t).ok_or_else(|| Error::Tokenizer(format!("no {t} token")));
    let (bos, eos) = (token("<|startoftext|>")?, token("<|endoftext|>")?);
    let ids: Vec<Vec<u32>> = data.texts.iter().map(|t| tokenizer.encode(t)).collect::<Result<_>>()?;
    if data.pixels.is_empty() || settings.batch < 2 {
        return Err(Error::arg("need images and a batch of at least 2"));
    }
    let train_device = device.clone().autodiff();
    train_device.seed(settings.seed);
    let p = settings.projection_dim;
    let tower = ClassifierConfig {
        in_channels: 3,
        image_size: data.size,
        widths: vec![8, 16, 32, 64, 64],
        labels: (0..p).map(|i| format!("embedding_{i}")).collect(),
    };
    let mut model = ContrastiveClip {
        text: config.init(&train_device)?,
        text_projection: burn::nn::LinearConfig::new(config.hidden_size, p).with_bias(false).init(&train_device),
        image: tower.init(&train_device)?,
        logit_scale: burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![(1.0f32 / 0.07).ln()], [1]),
            &train_device,
        )),
    };
    let mut json = serde_json::to_value(config).map_err(|e| Error::config("text_encoder", e))?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("architectures".into(), serde_json::json!(["CLIPTextModel"]));
        obj.insert("model_type".into(), "clip_text_model".into());
        // transformers checks these against the vocabulary (its defaults are CLIP's 49406/49407).
        obj.insert("bos_token_id".into(), bos.into());
        obj.insert("eos_token_id".into(), eos.into());
        obj.insert("pad_token_id".into(), eos.into());
    }
    let names = crate::weights::NameMap { remaps: &[], ignore: &[] };
    let (mut ckpt, start) = Checkpoint::open(dir, "contrastive.safetensors", json, &mut model, &names, &[])?;
    let mut optim = AdamWConfig::new().with_weight_decay(1e-2).init();
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ start as u64);
    let (b, size) = (settings.batch, data.size);
    for step in start..settings.steps {
        let picks: Vec<usize> = (0..b).map(|_| rng.random_range(0..data.pixels.len())).collect();
        let x: Vec<f32> = picks.iter().flat_map(|&i| data.pixels[i].iter().copied()).collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [b, 3, size, size]), &train_device);
        let caps: Vec<usize> = picks.iter().map(|&i| data.captions[i]).collect();
        let batch_ids: Vec<Vec<u32>> = caps.iter().map(|&c| ids[c].clone()).collect();
        // Several images share a caption: the target spreads over every matching pair.
        let targets: Vec<f32> = caps
            .iter()
            .flat_map(|&ci| {
                let n = caps.iter().filter(|&&cj| cj == ci).count() as f32;
                caps.iter().map(move |&cj| if cj == ci { 1.0 / n } else { 0.0 })
            })
            .collect();
        let targets = Tensor::<2>::from_data(TensorData::new(targets, [b, b]), &train_device);
        let image = normalize(model.image.forward(x));
        let text = model.embed_text(&batch_ids, eos, &train_device);
        let scale = model.logit_scale.val().clamp_max(100f32.ln()).exp().unsqueeze::<2>();
        let logits = image.matmul(text.transpose()) * scale;
        let ce = |l: Tensor<2>| (targets.clone() * burn::tensor::activation::log_softmax(l, 1)).sum_dim(1).mean().neg();
        let loss = (ce(logits.clone()) + ce(logits.transpose())) / 2.0;
        let value = loss.clone().into_scalar::<f32>();
        model = descend(model, &mut optim, loss, settings.learning_rate);
        log(step, value);
        if ckpt.after_step(&model, step, value, settings.steps, settings.checkpoint_every)? {
            crate::weights::save_pytorch(&model.text, &dir.join("model.safetensors"), crate::clip::EXPORT_NAMES)?;
        }
    }
    Ok(model.valid().text)
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
        save_classifier(&model, &config, &dir, false).unwrap();
        let (loaded, loaded_config) = load_classifier(&dir, &device).unwrap();
        assert_eq!(loaded_config, config);
        let (x, _) = data.batch(&[0, 1, 2], &device);
        let predict = |m: &AttributeClassifier| m.predict(x.clone()).into_data().convert::<f32>().try_to_vec::<f32>();
        let a = predict(&model).unwrap();
        assert_eq!(a, predict(&loaded).unwrap(), "reloaded classifier predicts identically");
        // The int8 file is smaller (here only the 8→16 convolution is big enough to quantize) and predicts
        // nearly the same.
        let f32_bytes = std::fs::metadata(dir.join("model.safetensors")).unwrap().len();
        save_classifier(&model, &config, &dir, true).unwrap();
        let int8_bytes = std::fs::metadata(dir.join("model.safetensors")).unwrap().len();
        assert!(int8_bytes * 3 < f32_bytes * 2, "{int8_bytes} vs {f32_bytes} bytes");
        let int8 = load_classifier(&dir, &device).unwrap().0;
        let c = predict(&int8).unwrap();
        assert_ne!(a, c, "int8 weights are not the f32 ones");
        assert!(a.iter().zip(&c).all(|(a, c)| (a - c).abs() < 0.05), "{a:?} vs {c:?}");
        assert_eq!(agreement(&model, &model, &data, Split::Train, &device).unwrap(), 1.0);
        assert!(agreement(&model, &int8, &data, Split::Train, &device).unwrap() > 0.9);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A two-block autoencoder small enough for unit tests.
    fn tiny_vae() -> crate::vae::AutoencoderKLConfig {
        crate::vae::AutoencoderKLConfig {
            block_out_channels: vec![8, 8],
            down_block_types: vec!["DownEncoderBlock2D".into(); 2],
            up_block_types: vec!["UpDecoderBlock2D".into(); 2],
            norm_num_groups: 4,
            ..Default::default()
        }
    }

    #[test]
    fn reconstructions_keep_their_phantoms_labels_and_splits() {
        let device = Device::flex();
        let config = tiny_vae();
        let vae = config.init(&device).unwrap();
        // Gray chest phantoms pass through the RGB autoencoder and come back with one channel.
        let mut data = LabeledImages::render(Kind::Chest, 20, 2, 16, |_| {});
        let mut seen = 0;
        data.add_reconstructions(&vae, &device, |n| seen += n).unwrap();
        assert_eq!((seen, data.pixels.len()), (20, 40));
        assert_eq!(data.sources[..20], [Source::Phantom; 20]);
        assert_eq!(data.sources[20..], [Source::Reconstruction; 20]);
        assert_eq!(data.labels[..20], data.labels[20..]);
        assert_eq!(data.splits[..20], data.splits[20..]);
        let x = Tensor::<4>::from_data(TensorData::new(data.pixels[3].clone(), [1, 1, 16, 16]), &device);
        let expected = vae.decode(vae.encode(x.repeat_dim(1, 3))).mean_dim(1);
        let expected = expected.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(data.pixels[23], expected);
        assert_ne!(data.pixels[23], data.pixels[3]);
        // Each source is scored on its own images.
        let test = data.indices(Split::Test, None);
        assert_eq!(data.indices(Split::Test, Some(Source::Reconstruction)).len() * 2, test.len());
        let classifier =
            ClassifierConfig { in_channels: 1, image_size: 16, widths: vec![8], labels: data.names.clone() };
        let model = classifier.init(&device).unwrap();
        let scores = evaluate(&model, &data, Split::Test, Source::Reconstruction, &device).unwrap();
        assert_eq!(scores[0].n * 2, test.len());
    }

    #[test]
    fn learning_rate_decays_over_the_last_quarter() {
        assert_eq!(decayed(1.0, 0, 100), 1.0);
        assert_eq!(decayed(1.0, 75, 100), 1.0);
        assert!((decayed(1.0, 90, 100) - 0.46).abs() < 1e-12);
        assert!((decayed(1.0, 100, 100) - 0.1).abs() < 1e-12);
        // Resuming to a longer run moves the decay to that run's end.
        assert_eq!(decayed(1.0, 90, 200), 1.0);
    }

    #[test]
    fn vae_checkpoints_are_diffusers_folders_and_resume() {
        let device = Device::flex();
        let config = tiny_vae();
        let pool = render_captioned(4, 3, 16, |_| {});
        let dir = std::env::temp_dir().join(format!("traverse-vae-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut settings = VaeTraining {
            steps: 2,
            batch: 2,
            crop: 8,
            learning_rate: 1e-3,
            kl_weight: 1e-6,
            edge_weight: 1.0,
            decoder_steps: 0,
            attribute_weight: 10.0,
            seed: 1,
            checkpoint_every: 1,
        };
        train_vae(&config, &pool, &settings, &device, &dir, |_, _| {}).unwrap();
        settings.steps = 3;
        let mut steps = vec![];
        let model = train_vae(&config, &pool, &settings, &device, &dir, |s, _| steps.push(s)).unwrap();
        assert_eq!(steps, vec![2], "the second run resumes at step 2");
        // The checkpoint loads through the diffusers-folder loader and decodes like the returned model.
        let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let mut loaded = crate::vae::AutoencoderKLConfig::from_json(&json).unwrap().init(&device).unwrap();
        let file = crate::weights::WeightFile::Path(dir.join("diffusion_pytorch_model.safetensors"));
        crate::weights::load_into(&mut loaded, "vae", vec![file], &crate::vae::NAMES).unwrap();
        let z = Tensor::<4>::ones([1, 4, 4, 4], &device);
        let a = model.decode_raw(z.clone()).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let b = loaded.decode_raw(z).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(a, b);

        // Decoder steps change the decoder only: the latents of an image stay bit-identical.
        let x = Tensor::<4>::from_data(TensorData::new(pool.pixels[1].clone(), [1, 3, 16, 16]), &device);
        let latents = |m: &crate::vae::AutoencoderKL| {
            m.encode_distribution(x.clone()).0.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
        };
        settings.decoder_steps = 2;
        let mut steps = vec![];
        let tuned = train_vae(&config, &pool, &settings, &device, &dir, |s, _| steps.push(s)).unwrap();
        assert_eq!(steps, vec![3, 4]);
        assert_eq!(latents(&tuned), latents(&model));
        let c = tuned.decode_raw(Tensor::<4>::ones([1, 4, 4, 4], &device));
        assert_ne!(c.into_data().convert::<f32>().try_to_vec::<f32>().unwrap(), a, "the decoder learned");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn attribute_masks_cover_what_the_attributes_draw() {
        let pool = render_captioned(8, 5, 64, |_| {});
        for (i, m) in pool.attribute_masks.iter().enumerate() {
            let kind = if i % 2 == 0 { Kind::Chest } else { Kind::Derm };
            let phantom = Phantom::sample(kind, 5, (i / 2) as u64);
            let any = phantom.labels().iter().any(|(l, on)| *on && *l != crate::evaluate::CLASS_LABEL);
            let covered = m.iter().sum::<f32>();
            assert_eq!(covered > 0.0, any, "image {i}: mask covers {covered} pixels, attributes on: {any}");
            assert!(covered < m.len() as f32, "image {i}: an attribute never changes every pixel");
        }
    }

    #[test]
    fn unet_trains_and_checkpoints_as_a_diffusers_folder() {
        let device = Device::flex();
        let json = r#"{"block_out_channels": [8, 16], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "layers_per_block": 1, "norm_num_groups": 4,
            "cross_attention_dim": 8, "attention_head_dim": 2, "sample_size": 4}"#;
        let config = crate::unet::UNet2DConditionConfig::from_json(json).unwrap();
        let mut r = ChaCha8Rng::seed_from_u64(3);
        let mut noise = |n: usize| (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect::<Vec<_>>();
        let data = LatentDataset {
            samples: (0..4).map(|i| (noise(64), i % 2)).collect(),
            shape: [4, 4, 4],
            captions: vec![noise(77 * 8), noise(77 * 8)],
            caption_groups: vec![0, 0],
            uncond: noise(77 * 8),
            context_shape: [77, 8],
        };
        let dir = std::env::temp_dir().join(format!("traverse-unet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let scheduler = crate::scheduler::DdimConfig::default();
        let mut settings = UnetTraining {
            steps: 2,
            batch: 2,
            learning_rate: 1e-3,
            uncond_probability: 0.1,
            caption_balance: 0.0,
            group_shares: None,
            seed: 1,
            checkpoint_every: 1,
        };
        train_unet(&config, &scheduler, &data, &settings, &device, &dir, |_, _| {}).unwrap();
        settings.steps = 3;
        let mut steps = vec![];
        settings.caption_balance = 0.5;
        let model = train_unet(&config, &scheduler, &data, &settings, &device, &dir, |s, _| steps.push(s)).unwrap();
        assert_eq!(steps, vec![2], "the second run resumes at step 2, and may change the caption balance");
        let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let mut loaded = crate::unet::UNet2DConditionConfig::from_json(&json).unwrap().init(&device).unwrap();
        let file = crate::weights::WeightFile::Path(dir.join("diffusion_pytorch_model.safetensors"));
        crate::weights::load_into(&mut loaded, "unet", vec![file], &crate::unet::NAMES).unwrap();
        let x = Tensor::<4>::ones([1, 4, 4, 4], &device);
        let ctx = Tensor::<3>::ones([1, 77, 8], &device);
        let a = model.forward(x.clone(), 500.0, &ctx).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let b = loaded.forward(x, 500.0, &ctx).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(a, b);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn caption_balance_evens_out_rare_captions() {
        let data = LatentDataset {
            // Group 0: caption 0 on six latents, caption 1 on two, caption 2 on none. Group 1: caption 3 on two.
            samples: [0, 0, 1, 3, 0, 0, 1, 0, 0, 3].map(|c| (vec![0.0], c)).to_vec(),
            shape: [1, 1, 1],
            captions: vec![vec![0.0]; 4],
            caption_groups: vec![0, 0, 0, 1],
            uncond: vec![0.0],
            context_shape: [1, 1],
        };
        let mass = |balance| {
            let w = caption_balanced_weights(&data, balance, None).unwrap();
            let of = |c| data.samples.iter().zip(&w).filter(|((_, k), _)| *k == c).map(|(_, w)| w).sum::<f64>();
            // Group 1 keeps its share (2 of 10 latents) at every balance.
            assert!((of(3) / w.iter().sum::<f64>() - 0.2).abs() < 1e-12, "balance {balance}");
            of(0) / of(1)
        };
        assert_eq!(mass(0.0), 3.0, "unbalanced: as often as in the data");
        assert!((mass(1.0) - 1.0).abs() < 1e-12, "fully balanced: every caption alike");
        assert!((mass(0.5) - 3f64.sqrt()).abs() < 1e-12);
        assert!(caption_balanced_weights(&data, 1.5, None).is_err());
        // Given shares override the data's: group 1 now takes 0.7 of the draws, and group 0's captions keep
        // their balanced ratio.
        let w = caption_balanced_weights(&data, 0.5, Some(&[0.3, 0.7])).unwrap();
        let of = |c| data.samples.iter().zip(&w).filter(|((_, k), _)| *k == c).map(|(_, w)| w).sum::<f64>();
        assert!((of(3) / w.iter().sum::<f64>() - 0.7).abs() < 1e-12);
        assert!((of(0) / of(1) - 3f64.sqrt()).abs() < 1e-12);
        for bad_shares in [&[0.5, 0.6][..], &[1.0][..], &[1.2, -0.2][..]] {
            assert!(caption_balanced_weights(&data, 0.5, Some(bad_shares)).is_err(), "{bad_shares:?}");
        }
        let mut ungrouped = data.clone();
        ungrouped.caption_groups.pop();
        assert!(caption_balanced_weights(&ungrouped, 0.5, None).is_err(), "a caption without a group");
        let mut empty_group = data.clone();
        empty_group.samples.retain(|&(_, c)| c != 3);
        assert!(caption_balanced_weights(&empty_group, 0.5, Some(&[0.5, 0.5])).is_err(), "a share for no latents");
        let mut bad = data;
        bad.samples.push((vec![0.0], 4));
        assert!(caption_balanced_weights(&bad, 0.5, None).is_err(), "a caption index without an embedding");
    }

    #[test]
    fn text_encoder_trains_contrastively_and_exports_for_transformers() {
        let device = Device::flex();
        let data = render_captioned(12, 2, 32, |_| {});
        let tok_json = crate::tokenizer::train_clip_bpe(&data.texts, 300).unwrap();
        let tokenizer = crate::tokenizer::ClipTokenizer::from_files(&crate::tokenizer::TokenizerFiles {
            tokenizer_json: Some(tok_json.into_bytes()),
            ..Default::default()
        })
        .unwrap();
        let config = crate::clip::ClipTextConfig {
            vocab_size: tokenizer.vocab_size(),
            hidden_size: 16,
            intermediate_size: 32,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            ..Default::default()
        };
        let dir = std::env::temp_dir().join(format!("traverse-text-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = TextEncoderTraining {
            steps: 3,
            batch: 4,
            learning_rate: 1e-3,
            projection_dim: 8,
            seed: 1,
            checkpoint_every: 2,
        };
        let mut losses = vec![];
        let text =
            train_text_encoder(&config, &tokenizer, &data, &settings, &device, &dir, |_, l| losses.push(l)).unwrap();
        assert_eq!(losses.len(), 3);
        assert!(losses.iter().all(|l| l.is_finite()));
        // The exported text encoder loads through the diffusers-folder loader and matches.
        let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let mut loaded = crate::clip::ClipTextConfig::from_json(&json).unwrap().init(&device).unwrap();
        let file = crate::weights::WeightFile::Path(dir.join("model.safetensors"));
        crate::weights::load_into(&mut loaded, "text_encoder", vec![file], &crate::clip::NAMES).unwrap();
        let ids: Vec<i64> = tokenizer.encode(&data.texts[0]).unwrap().iter().map(|&i| i as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, 77]), &device);
        let a = text.forward(ids.clone()).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let b = loaded.forward(ids).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(a, b);
        let _ = std::fs::remove_dir_all(dir);
    }
}
