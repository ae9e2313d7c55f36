//! The paper's quantitative evaluation (section 3.2: Table 2, Figs. 4 and 5) of a model on the phantom
//! families: from many seeds, one prompt-swap run per neutral prompt with every style prompt, images
//! classified by the family's attribute classifier, then CFRT (Eq. 3) per style over the swap images and over
//! the Bézier samples, the mean cosine similarity of trajectory directions, and a t-SNE map of every latent.
//!
//! Prompts are the phantoms' own captions ([`Phantom::caption`]), so they match what the embedded model was
//! trained on. Labels of generated images come from the classifier (probability ≥ 0.5).

use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use serde::Serialize;

use crate::bezier;
use crate::classifier::{AttributeClassifier, ClassifierConfig};
use crate::error::{Error, Result};
use crate::lpips::Lpips;
use crate::metrics::{CfrtSample, cfrt, direction_cosines, same_group_neighbours, tsne, tsne_perplexity};
use crate::pipeline::StableDiffusion;
use crate::rng::initial_latents;
use crate::swap::{SwapSampler, SwapSettings};
use crate::synthetic::{Kind, Phantom};

/// One row group of Table 2: a neutral prompt, the class label it keeps (dermoscopy: MEL or NV) and the
/// style prompts, each turning on one attribute.
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    /// Row name, e.g. "chest" or "derm MEL".
    pub name: String,
    /// The neutral prompt.
    pub neutral: String,
    /// Classifier label that must not change (the diagnosis), with its value in the neutral prompt.
    pub class: Option<(String, bool)>,
    /// (classifier label, prompt) per style.
    pub styles: Vec<(String, String)>,
}

/// The dermoscopy label that is a diagnosis, kept by every edit, rather than an attribute to turn on.
pub const CLASS_LABEL: &str = "melanoma";

/// The family's settings: chest X-rays (healthy, no devices → effusion / devices); dermoscopy with MEL and
/// with NV (no artifacts → hair / gel bubbles / ink / ruler).
pub fn settings(kind: Kind) -> Result<Vec<Setting>> {
    let base = Phantom::sample(kind, 0, 0).with_attributes_off(&[]);
    let classes: Vec<(String, Option<bool>)> = match kind {
        Kind::Chest => vec![("chest".into(), None)],
        Kind::Derm => vec![("derm MEL".into(), Some(true)), ("derm NV".into(), Some(false))],
    };
    classes
        .into_iter()
        .map(|(name, class)| {
            let neutral = match class {
                Some(on) => base.with_attribute(CLASS_LABEL, on)?,
                None => base.clone(),
            };
            let styles = neutral
                .labels()
                .into_iter()
                .filter(|(label, _)| class.is_none() || *label != CLASS_LABEL)
                .map(|(label, _)| Ok((label.to_string(), neutral.with_attribute(label, true)?.caption())))
                .collect::<Result<Vec<_>>>()?;
            Ok(Setting {
                name,
                neutral: neutral.caption(),
                class: class.map(|on| (CLASS_LABEL.to_string(), on)),
                styles,
            })
        })
        .collect()
}

/// How many samples, and how they are made.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Neutral images (seeds `seed`, `seed + 1`, …).
    pub subjects: usize,
    /// First seed.
    pub seed: u64,
    /// Sampler settings (the paper's: 50 DDIM steps, swap points 5…45).
    pub swap: SwapSettings,
    /// Bézier control points per trajectory (the paper: 7).
    pub controls: usize,
    /// Interpolated images per trajectory (the paper: 50); 0 skips the interpolation rows.
    pub interpolations: usize,
}

/// Scores of one style in one setting.
#[derive(Debug, Clone, Serialize)]
pub struct StyleScore {
    /// Setting name.
    pub setting: String,
    /// Attribute label of the style.
    pub attribute: String,
    /// The style prompt.
    pub prompt: String,
    /// CFRT over the swap images (one sample per subject and swap point).
    pub cfrt: f64,
    /// CFRT over the interpolated images, when computed.
    pub cfrt_interpolated: Option<f64>,
    /// Mean LPIPS of the swap images from the neutral image, when LPIPS weights were given.
    pub lpips: Option<f64>,
    /// Mean LPIPS of the interpolated images from the neutral image, when both were computed.
    pub lpips_interpolated: Option<f64>,
    /// Samples behind `cfrt`.
    pub samples: usize,
    /// Fraction of neutral images (the trajectories' start) the classifier calls positive for the attribute.
    pub neutral_positive_rate: f64,
    /// Fraction of swap images the classifier calls positive for the attribute, per swap point.
    pub positive_rate: Vec<f64>,
    /// CFRT of the swap images at each swap point (one sample per subject).
    pub cfrt_by_swap_point: Vec<f64>,
    /// Share of the swap images that pass Eq. 3 while the classifier does not call them positive for the
    /// attribute: the edit moved its probability more than the other edits did, but not across 0.5.
    pub passes_below_threshold: f64,
    /// Side effects: for every other classifier label (the diagnosis included), the fraction of swap images
    /// whose decision for it differs from the neutral image's. Any of these fails that image's CFRT.
    pub side_effects: Vec<(String, f64)>,
    /// Mean over subjects of the direction cosine matrix (Fig. 5), swap points in order.
    pub cosines: Vec<Vec<f64>>,
}

/// Classifier probabilities `[labels]` of each image of `images` `[B, 3, H, W]` (in [-1, 1]), resized to the
/// classifier's input and reduced to gray for one-channel classifiers.
pub fn classify(
    classifier: &AttributeClassifier,
    config: &ClassifierConfig,
    images: Tensor<4>,
) -> Result<Vec<Vec<f32>>> {
    let b = images.dims()[0];
    let p = probabilities(classifier, config, images)?.into_data().convert::<f32>();
    let p = p.as_slice::<f32>().map_err(|e| Error::Device(format!("{e:?}")))?;
    Ok(p.chunks(config.labels.len()).take(b).map(<[f32]>::to_vec).collect())
}

/// [`classify`] without reading the result back: `[B, labels]` probabilities on the images' device (the
/// browser reads them asynchronously).
pub fn probabilities(
    classifier: &AttributeClassifier,
    config: &ClassifierConfig,
    images: Tensor<4>,
) -> Result<Tensor<2>> {
    let [_, c, h, w] = images.dims();
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
    Ok(classifier.predict(x))
}

/// Position of `label` among the classifier's outputs.
pub fn label_column(config: &ClassifierConfig, label: &str) -> Result<usize> {
    config
        .labels
        .iter()
        .position(|l| l == label)
        .ok_or_else(|| Error::arg(format!("the classifier has no label {label:?} (it has {:?})", config.labels)))
}

fn flat(t: &Tensor<4>) -> Result<Vec<f32>> {
    flat_values(t.clone())
}

fn flat_values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Device(format!("{e:?}")))
}

/// The mean, or `None` for no values.
fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// One latent of a setting's t-SNE map (Fig. 4).
#[derive(Debug, Clone, Serialize)]
pub struct MapPoint {
    /// Subject index (seed − first seed).
    pub subject: usize,
    /// Attribute label of the style, or `None` for the neutral image.
    pub style: Option<String>,
    /// Swap point (0 for the neutral image).
    pub swap_point: usize,
    /// Map coordinates.
    pub x: f32,
    /// Map coordinates.
    pub y: f32,
}

/// The t-SNE map of one setting's latents: every subject's neutral latent and its swap latents of every
/// style. If the attributes are disentangled from the subject, each subject's latents stay together.
#[derive(Debug, Clone, Serialize)]
pub struct LatentMap {
    /// Setting name.
    pub setting: String,
    /// Perplexity used (30, or less for few latents).
    pub perplexity: f32,
    /// Among the latents at the last swap point (every subject under every style), the share whose nearest
    /// other one (Euclidean, in the latent space) is the same subject's under another style rather than
    /// another subject's: 1 when the subject still dominates the latent at the strongest edit, 0 when the
    /// style does. `None` with fewer than 2 styles.
    pub same_subject_neighbours: Option<f64>,
    /// The same measured on the 2-D map.
    pub same_subject_neighbours_map: Option<f64>,
    /// The points, subject by subject: neutral, then each style's swap points in order.
    pub points: Vec<MapPoint>,
}

/// Everything [`evaluate`] measures for one setting.
#[derive(Debug, Clone, Serialize)]
pub struct SettingReport {
    /// Table 2 and Fig. 5, per style.
    pub scores: Vec<StyleScore>,
    /// Fig. 4; `None` when there are fewer than 4 latents.
    pub latent_map: Option<LatentMap>,
}

/// Per image: probabilities of the classifier's labels.
pub type Probs = Vec<Vec<f32>>;

/// Runs `eval` for `setting`, with LPIPS from the neutral image when `lpips` is given; `progress(subject)` is
/// called after each subject.
pub fn evaluate(
    sd: &StableDiffusion,
    classifier: &AttributeClassifier,
    config: &ClassifierConfig,
    lpips: Option<&Lpips>,
    setting: &Setting,
    eval: &Evaluation,
    mut progress: impl FnMut(usize),
) -> Result<SettingReport> {
    let index = |label: &str| label_column(config, label);
    let styles: Vec<usize> = setting.styles.iter().map(|(l, _)| index(l)).collect::<Result<_>>()?;
    let class = setting.class.as_ref().map(|(l, _)| index(l)).transpose()?;
    let prompts: Vec<String> = setting.styles.iter().map(|(_, p)| p.clone()).collect();
    let size = sd.default_image_size();
    let [h, w] = sd.latent_size(size, size)?;
    // Decodes latents; their classifier probabilities, and LPIPS from `reference` when there is a model.
    let decode = |latents: &[Tensor<4>], reference: &Tensor<4>| -> Result<(Probs, Vec<f64>)> {
        let (mut probs, mut dists) = (Vec::with_capacity(latents.len()), Vec::new());
        for chunk in latents.chunks(16) {
            let images = sd.vae.decode(Tensor::cat(chunk.to_vec(), 0));
            if let Some(model) = lpips {
                let d = model.distance(images.clone(), reference.clone().repeat_dim(0, chunk.len()))?;
                dists.extend(flat_values(d)?.into_iter().map(f64::from));
            }
            probs.extend(classify(classifier, config, images)?);
        }
        Ok((probs, dists))
    };

    let n_styles = styles.len();
    let mut swap_samples: Vec<Vec<CfrtSample>> = vec![Vec::new(); n_styles];
    let mut interp_samples: Vec<Vec<CfrtSample>> = vec![Vec::new(); n_styles];
    let mut positives: Vec<Vec<usize>> = vec![vec![0; eval.swap.swap_points.len()]; n_styles];
    let mut passes: Vec<Vec<usize>> = vec![vec![0; eval.swap.swap_points.len()]; n_styles];
    let mut passes_below = vec![0usize; n_styles];
    let mut neutral_positives = vec![0usize; n_styles];
    let mut side_effects = vec![vec![0usize; config.labels.len()]; n_styles];
    let mut cosines: Vec<Vec<Vec<Vec<f64>>>> = vec![Vec::new(); n_styles];
    let (mut swap_lpips, mut interp_lpips): (Vec<Vec<f64>>, Vec<Vec<f64>>) =
        (vec![Vec::new(); n_styles], vec![Vec::new(); n_styles]);
    let (mut latents, mut points) = (Vec::new(), Vec::new());
    for subject in 0..eval.subjects {
        let seed = eval.seed.wrapping_add(subject as u64);
        let init = initial_latents(seed, sd.unet_config.in_channels, h, w, sd.device());
        let res = SwapSampler::new(sd, init, &setting.neutral, &prompts, "", &eval.swap)?.run();
        let neutral_image = sd.vae.decode(res.neutral.clone());
        let neutral = classify(classifier, config, neutral_image.clone())?.remove(0);
        let mut swapped: Vec<Probs> = Vec::with_capacity(n_styles);
        for (a, t) in res.trajectories.iter().enumerate() {
            let (probs, dists) = decode(&t.latents, &neutral_image)?;
            swapped.push(probs);
            swap_lpips[a].extend(dists);
        }
        let samples = |edits: &[Probs], k: usize, a: usize| cfrt_sample(&neutral, edits, k, a, &styles, class);
        let z0 = flat(&res.neutral)?;
        latents.push(z0.clone());
        points.push(MapPoint { subject, style: None, swap_point: 0, x: 0.0, y: 0.0 });
        for a in 0..n_styles {
            neutral_positives[a] += usize::from(neutral[styles[a]] >= 0.5);
            for k in 0..res.swap_points.len() {
                let sample = samples(&swapped, k, a);
                let (pass, positive) = (sample.passes(), swapped[a][k][styles[a]] >= 0.5);
                passes[a][k] += usize::from(pass);
                passes_below[a] += usize::from(pass && !positive);
                positives[a][k] += usize::from(positive);
                swap_samples[a].push(sample);
                // Counted for every label; the style's own is left out of the report below.
                for (j, flips) in side_effects[a].iter_mut().enumerate() {
                    *flips += usize::from((neutral[j] >= 0.5) != (swapped[a][k][j] >= 0.5));
                }
            }
            let zs: Vec<Vec<f32>> = res.trajectories[a].latents.iter().map(flat).collect::<Result<_>>()?;
            cosines[a].push(direction_cosines(&z0, &zs));
            let style = Some(setting.styles[a].0.clone());
            points.extend(res.swap_points.iter().map(|&t| MapPoint {
                subject,
                style: style.clone(),
                swap_point: t,
                x: 0.0,
                y: 0.0,
            }));
            latents.extend(zs);
        }
        if eval.interpolations > 0 {
            let mut curves: Vec<Probs> = Vec::with_capacity(n_styles);
            for (a, t) in res.trajectories.iter().enumerate() {
                let all: Vec<Tensor<4>> = std::iter::once(res.neutral.clone()).chain(t.latents.clone()).collect();
                let idx = bezier::control_indices(all.len(), eval.controls)?;
                let controls: Vec<Tensor<4>> = idx.iter().map(|&i| all[i].clone()).collect();
                let (probs, dists) = decode(&bezier::interpolate(&controls, eval.interpolations)?, &neutral_image)?;
                curves.push(probs);
                interp_lpips[a].extend(dists);
            }
            for (a, out) in interp_samples.iter_mut().enumerate() {
                out.extend((0..eval.interpolations).map(|k| samples(&curves, k, a)));
            }
        }
        progress(subject);
    }
    let per_subject = |count: usize| count as f64 / eval.subjects.max(1) as f64;
    let scores = (0..n_styles)
        .map(|a| StyleScore {
            setting: setting.name.clone(),
            attribute: setting.styles[a].0.clone(),
            prompt: setting.styles[a].1.clone(),
            cfrt: cfrt(&swap_samples[a]),
            cfrt_interpolated: (eval.interpolations > 0).then(|| cfrt(&interp_samples[a])),
            lpips: mean(&swap_lpips[a]),
            lpips_interpolated: mean(&interp_lpips[a]),
            samples: swap_samples[a].len(),
            neutral_positive_rate: per_subject(neutral_positives[a]),
            positive_rate: positives[a].iter().copied().map(per_subject).collect(),
            cfrt_by_swap_point: passes[a].iter().copied().map(per_subject).collect(),
            passes_below_threshold: passes_below[a] as f64 / swap_samples[a].len().max(1) as f64,
            side_effects: (config.labels.iter().zip(&side_effects[a]))
                .enumerate()
                .filter(|&(j, _)| j != styles[a])
                .map(|(_, (label, &n))| (label.clone(), n as f64 / swap_samples[a].len().max(1) as f64))
                .collect(),
            cosines: mean_matrix(&cosines[a]),
        })
        .collect();
    let latent_map =
        (latents.len() >= 4).then(|| latent_map(&setting.name, &latents, points, eval.seed)).transpose()?;
    Ok(SettingReport { scores, latent_map })
}

/// The t-SNE map of `latents` (described by `points`, same order), started from `seed`.
fn latent_map(setting: &str, latents: &[Vec<f32>], mut points: Vec<MapPoint>, seed: u64) -> Result<LatentMap> {
    const PERPLEXITY: f32 = 30.0;
    let map = tsne(latents, PERPLEXITY, seed)?;
    for (p, xy) in points.iter_mut().zip(&map) {
        (p.x, p.y) = (xy[0], xy[1]);
    }
    let last = points.iter().map(|p| p.swap_point).max().unwrap_or(0);
    let strongest: Vec<usize> =
        (0..points.len()).filter(|&i| points[i].style.is_some() && points[i].swap_point == last).collect();
    let styles = points.iter().filter_map(|p| p.style.as_ref()).collect::<std::collections::BTreeSet<_>>().len();
    let subjects: Vec<usize> = strongest.iter().map(|&i| points[i].subject).collect();
    let rate = |coords: Vec<&[f32]>| (styles >= 2).then(|| same_group_neighbours(&coords, &subjects));
    Ok(LatentMap {
        setting: setting.to_string(),
        perplexity: tsne_perplexity(latents.len(), PERPLEXITY),
        same_subject_neighbours: rate(strongest.iter().map(|&i| latents[i].as_slice()).collect()),
        same_subject_neighbours_map: rate(strongest.iter().map(|&i| map[i].as_slice()).collect()),
        points,
    })
}

/// What the autoencoder lets through, per attribute: how often the classifier sees the attribute in real
/// phantoms that have it and in their VAE reconstructions (encode to the latent mean, decode). A generated
/// image can show only what the autoencoder can reconstruct, so the second rate bounds what any U-Net
/// trained on these latents can reach.
#[derive(Debug, Clone, Serialize)]
pub struct AutoencoderCeiling {
    /// Classifier label.
    pub attribute: String,
    /// Phantoms checked (each subject with only this attribute turned on).
    pub samples: usize,
    /// Fraction of the phantoms the classifier calls positive.
    pub phantom_positive: f64,
    /// Fraction of their reconstructions the classifier calls positive.
    pub reconstruction_positive: f64,
    /// Mean PSNR of the reconstructions against the phantoms, in dB.
    pub psnr_db: f64,
    /// Of the checked phantoms (every label's batch) that lack this attribute, how many the classifier calls
    /// positive: the classifier's false-positive rate on phantoms.
    pub phantom_false_positive: f64,
    /// The same on their reconstructions: how often the autoencoder's look alone makes this classifier fire.
    pub reconstruction_false_positive: f64,
    /// That rate split by the attribute that was on: for each other label, the share of the reconstructions
    /// of its batch (that attribute alone, without this one) this classifier calls positive. Tells which
    /// attribute a classifier mistakes for its own (e.g. ink strokes for hair).
    pub reconstruction_false_positive_by_attribute: Vec<(String, f64)>,
}

/// Phantom `index` of `kind` (dataset `seed`) with only attribute `label` turned on (the diagnosis kept).
fn counterfactual(kind: Kind, label: &str, seed: u64, index: usize) -> Result<Phantom> {
    Phantom::sample(kind, seed, index as u64).with_attributes_off(&[label, CLASS_LABEL]).with_attribute(label, true)
}

/// Phantoms `first..first + n` of `kind` (dataset `seed`), each with only attribute `label` turned on (the
/// diagnosis kept as sampled).
pub fn counterfactuals(kind: Kind, label: &str, seed: u64, first: usize, n: usize) -> Result<Vec<Phantom>> {
    (first..first + n).map(|i| counterfactual(kind, label, seed, i)).collect()
}

/// `phantoms` rendered at `size` as a `[n, 3, size, size]` batch in [-1, 1].
pub fn render_batch(phantoms: &[Phantom], size: usize, device: &Device) -> Tensor<4> {
    let pixels: Vec<f32> = phantoms.iter().flat_map(|p| p.render(size).to_planar(3)).collect();
    Tensor::from_data(TensorData::new(pixels, [phantoms.len(), 3, size, size]), device)
}

/// Measures [`AutoencoderCeiling`] for every label of `kind` on `subjects` phantoms (dataset `seed`, an
/// unseen one by default), rendered at the model's image size. `examples(label, phantoms, reconstructions)`
/// sees the first batch of each label (up to 8 images).
pub fn autoencoder_ceiling(
    sd: &StableDiffusion,
    classifier: &AttributeClassifier,
    config: &ClassifierConfig,
    kind: Kind,
    subjects: usize,
    seed: u64,
    mut examples: impl FnMut(&str, &Tensor<4>, &Tensor<4>) -> Result<()>,
) -> Result<Vec<AutoencoderCeiling>> {
    let size = sd.default_image_size();
    let labels: Vec<&str> = Phantom::sample(kind, seed, 0).labels().into_iter().map(|(l, _)| l).collect();
    let columns: Vec<usize> = labels.iter().map(|l| label_column(config, l)).collect::<Result<_>>()?;
    // Per label: positives among phantoms and reconstructions that have it, and those that lack it.
    let (mut pos, mut neg) = (vec![[0usize; 3]; labels.len()], vec![[0usize; 3]; labels.len()]);
    // by_batch[k][li]: reconstructions of label li's batch that lack label k, and those k's classifier fires on.
    let mut by_batch = vec![vec![[0usize; 2]; labels.len()]; labels.len()];
    let mut psnr = vec![0f64; labels.len()];
    for (li, &label) in labels.iter().enumerate() {
        for first in (0..subjects).step_by(8) {
            let n = (subjects - first).min(8);
            let phantoms = counterfactuals(kind, label, seed, first, n)?;
            let x = render_batch(&phantoms, size, sd.device());
            let recon = sd.vae.decode(sd.vae.encode(x.clone()));
            if first == 0 {
                examples(label, &x, &recon)?;
            }
            for j in 0..n {
                let pick = |t: &Tensor<4>| t.clone().narrow(0, j, 1);
                psnr[li] += crate::invert::psnr(pick(&x), pick(&recon)) as f64;
            }
            let (px, pr) = (classify(classifier, config, x)?, classify(classifier, config, recon)?);
            for (j, phantom) in phantoms.iter().enumerate() {
                for (k, &(_, on)) in phantom.labels().iter().enumerate() {
                    // Positive rates come from the label's own batch only (that attribute alone turned on).
                    let tally = match (on, k == li) {
                        (true, true) => &mut pos[k],
                        (false, _) => &mut neg[k],
                        (true, false) => continue,
                    };
                    let recon_positive = usize::from(pr[j][columns[k]] >= 0.5);
                    tally[0] += 1;
                    tally[1] += usize::from(px[j][columns[k]] >= 0.5);
                    tally[2] += recon_positive;
                    if !on {
                        by_batch[k][li][0] += 1;
                        by_batch[k][li][1] += recon_positive;
                    }
                }
            }
        }
    }
    let rate = |k: usize, of: usize| if of == 0 { 0.0 } else { k as f64 / of as f64 };
    Ok(labels
        .iter()
        .enumerate()
        .map(|(k, label)| AutoencoderCeiling {
            attribute: label.to_string(),
            samples: subjects,
            phantom_positive: rate(pos[k][1], pos[k][0]),
            reconstruction_positive: rate(pos[k][2], pos[k][0]),
            psnr_db: psnr[k] / subjects.max(1) as f64,
            phantom_false_positive: rate(neg[k][1], neg[k][0]),
            reconstruction_false_positive: rate(neg[k][2], neg[k][0]),
            reconstruction_false_positive_by_attribute: (labels.iter().zip(&by_batch[k]))
                .filter(|(_, [n, _])| *n > 0)
                .map(|(source, &[n, fired])| (source.to_string(), rate(fired, n)))
                .collect(),
        })
        .collect())
}

/// The CFRT sample of style `a` at position `k` of every style's edits.
/// One CFRT sample (Eq. 3) from classifier probabilities: `neutral` of the neutral image, `edits[a][k]` of
/// style `a` at swap point `k`; `styles[a]` is style `a`'s label column and `class` the diagnosis column that
/// must not change. Every other style's image at the same swap point is an "other edit".
pub fn cfrt_sample(
    neutral: &[f32],
    edits: &[Probs],
    k: usize,
    a: usize,
    styles: &[usize],
    class: Option<usize>,
) -> CfrtSample {
    let label = styles[a];
    let edited = &edits[a][k];
    // Every classifier output except the attribute under test and the class label must keep its decision.
    let others = |p: &[f32]| -> Vec<bool> {
        (0..p.len()).filter(|&i| i != label && Some(i) != class).map(|i| p[i] >= 0.5).collect()
    };
    CfrtSample {
        f_neutral: neutral[label] as f64,
        f_edited: edited[label] as f64,
        f_other_edits: (0..edits.len()).filter(|&j| j != a).map(|j| edits[j][k][label] as f64).collect(),
        class: class.map_or((true, true), |c| (neutral[c] >= 0.5, edited[c] >= 0.5)),
        other_attributes: (others(neutral), others(edited)),
    }
}

fn mean_matrix(ms: &[Vec<Vec<f64>>]) -> Vec<Vec<f64>> {
    let Some(first) = ms.first() else { return Vec::new() };
    let mut sum = first.clone();
    for m in &ms[1..] {
        for (row, r) in sum.iter_mut().zip(m) {
            row.iter_mut().zip(r).for_each(|(s, v)| *s += v);
        }
    }
    sum.iter_mut().flatten().for_each(|s| *s /= ms.len() as f64);
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3 subjects × (neutral + 2 styles × swap points 1, 2): latent = subject axis × `content` + style axis ×
    /// `style` × swap point.
    fn trajectories(content: f32, style: f32) -> (Vec<Vec<f32>>, Vec<MapPoint>) {
        let (mut latents, mut points) = (Vec::new(), Vec::new());
        let point = |subject, style: Option<&str>, swap_point| MapPoint {
            subject,
            style: style.map(String::from),
            swap_point,
            x: 0.0,
            y: 0.0,
        };
        for subject in 0..3 {
            let base: Vec<f32> = (0..8).map(|d| if d == subject { content } else { 0.0 }).collect();
            latents.push(base.clone());
            points.push(point(subject, None, 0));
            for (a, name) in ["hair", "ruler"].iter().enumerate() {
                for t in [1, 2] {
                    latents.push(
                        base.iter()
                            .enumerate()
                            .map(|(d, x)| x + if d == 4 + a { style * t as f32 } else { 0.0 })
                            .collect(),
                    );
                    points.push(point(subject, Some(name), t));
                }
            }
        }
        (latents, points)
    }

    #[test]
    fn same_subject_neighbours_tell_content_from_style() {
        let (latents, points) = trajectories(10.0, 1.0);
        let m = latent_map("test", &latents, points, 0).unwrap();
        assert_eq!(m.points.len(), 15);
        assert_eq!(m.same_subject_neighbours, Some(1.0), "the subject dominates");
        let (latents, points) = trajectories(1.0, 10.0);
        let m = latent_map("test", &latents, points, 0).unwrap();
        assert_eq!(m.same_subject_neighbours, Some(0.0), "the style dominates");
        let (latents, points) = trajectories(10.0, 1.0);
        let one_style: Vec<usize> = (0..15).filter(|&i| points[i].style.as_deref() != Some("ruler")).collect();
        let m = latent_map(
            "test",
            &one_style.iter().map(|&i| latents[i].clone()).collect::<Vec<_>>(),
            one_style.iter().map(|&i| points[i].clone()).collect(),
            0,
        )
        .unwrap();
        assert_eq!(m.same_subject_neighbours, None, "one style: no other style to compare with");
    }

    #[test]
    fn settings_use_the_phantom_captions() {
        let chest = settings(Kind::Chest).unwrap();
        assert_eq!(chest.len(), 1);
        assert_eq!(chest[0].neutral, "Chest x-ray with no significant findings");
        let styles: Vec<&str> = chest[0].styles.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(styles, ["Chest X-ray of a subject with pleural effusion", "Chest x-ray showing Support Devices"]);
        let derm = settings(Kind::Derm).unwrap();
        assert_eq!(derm.len(), 2);
        assert_eq!(derm[1].neutral, "a dermoscopic image with melanocytic nevus (NV)");
        assert_eq!(derm[0].class, Some(("melanoma".to_string(), true)));
        let labels: Vec<&str> = derm[0].styles.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["hair", "gel_bubbles", "ink", "ruler"]);
        assert_eq!(derm[0].styles[3].1, "a dermoscopic image with melanoma (MEL) showing ruler");
    }

    #[test]
    fn a_sample_compares_the_edit_with_the_other_edits() {
        // Two styles (labels 1 and 2), class label 0; one position.
        let neutral = vec![0.9, 0.1, 0.1];
        let edits = vec![vec![vec![0.9, 0.8, 0.2]], vec![vec![0.2, 0.3, 0.7]]];
        let s = cfrt_sample(&neutral, &edits, 0, 0, &[1, 2], Some(0));
        assert_eq!((s.f_neutral, s.f_edited), (0.1f32 as f64, 0.8f32 as f64));
        assert_eq!(s.f_other_edits, vec![0.3f32 as f64]);
        assert_eq!(s.class, (true, true));
        assert_eq!(s.other_attributes, (vec![false], vec![false]));
        assert_eq!(cfrt(&[s]), 1.0);
        // The second style's edit flipped the class: not counted.
        let s = cfrt_sample(&neutral, &edits, 0, 1, &[1, 2], Some(0));
        assert_eq!(s.class, (true, false));
        assert_eq!(cfrt(&[s]), 0.0);
    }

    #[test]
    fn mean_of_matrices() {
        let m = mean_matrix(&[vec![vec![1.0, 0.0]], vec![vec![0.0, 1.0]]]);
        assert_eq!(m, vec![vec![0.5, 0.5]]);
        assert!(mean_matrix(&[]).is_empty());
    }
}
