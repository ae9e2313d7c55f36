//! The paper's quantitative evaluation (section 3.2: Table 2, Figs. 4 and 5) of a model on the phantom
//! families: from many seeds, one prompt-swap run per neutral prompt with every style prompt, images
//! classified by the family's attribute classifier, then CFRT (Eq. 3) per style over the swap images and over
//! the Bézier samples, the mean cosine similarity of trajectory directions, and a t-SNE map of every latent.
//! [`ceiling`] measures what the autoencoder alone lets through; [`fidelity`] compares a model with its int8
//! copy; [`report`] holds the reports the CLI writes; [`shard`] splits the subjects over processes or a
//! cluster and merges their records into exactly the report one process writes.
//!
//! Each subject is measured once into a [`SubjectRecord`] (classifier probabilities, LPIPS, direction cosines,
//! latents); every figure of the report is computed from the records alone by [`summarize`], so records made
//! anywhere, in any number of pieces, give the same bytes.
//!
//! Prompts are the phantoms' own captions ([`crate::synthetic::settings`]), so they match what the embedded
//! model was trained on. Labels of generated images come from the classifier's decisions.

pub mod ceiling;
pub mod fidelity;
pub mod report;
pub mod shard;

use burn::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::bezier;
use crate::classifier::{Classifier, ClassifierConfig};
use crate::error::{Error, Result};
use crate::lpips::Lpips;
use crate::metrics::{CfrtSample, cfrt, direction_cosines, positive, same_group_neighbours, tsne, tsne_perplexity};
use crate::pipeline::StableDiffusion;
use crate::rng::initial_latents;
use crate::swap::{SwapSampler, SwapSettings};
use crate::synthetic::Setting;

pub use ceiling::{AutoencoderCeiling, autoencoder_ceiling};

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
    /// The first this many subjects' latents make the t-SNE map (exact t-SNE is quadratic in its points).
    pub map_subjects: usize,
}

/// Resamples behind each 95% bootstrap interval.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

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
    /// Its 95% bootstrap interval over subjects.
    pub cfrt_interval: [f64; 2],
    /// CFRT over the interpolated images, when computed.
    pub cfrt_interpolated: Option<f64>,
    /// Its 95% bootstrap interval over subjects.
    pub cfrt_interpolated_interval: Option<[f64; 2]>,
    /// Mean LPIPS of the swap images from the neutral image, when LPIPS weights were given.
    pub lpips: Option<f64>,
    /// Its 95% bootstrap interval over subjects.
    pub lpips_interval: Option<[f64; 2]>,
    /// Mean LPIPS of the interpolated images from the neutral image, when both were computed.
    pub lpips_interpolated: Option<f64>,
    /// Its 95% bootstrap interval over subjects.
    pub lpips_interpolated_interval: Option<[f64; 2]>,
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

/// The t-SNE map of one setting's latents: every mapped subject's neutral latent and its swap latents of every
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

/// What one subject gives in one setting: the raw measurements every figure is computed from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SubjectRecord {
    /// Subject index (seed − first seed).
    pub subject: usize,
    /// Classifier probabilities of the neutral image.
    pub neutral: Vec<f32>,
    /// Per style, per swap point: probabilities of the swap image.
    pub swap: Vec<Probs>,
    /// Per style, per Bézier frame: probabilities of the interpolated image (empty without interpolations).
    pub interpolated: Vec<Probs>,
    /// Per style, per swap point: LPIPS from the neutral image (empty without LPIPS).
    pub swap_lpips: Vec<Vec<f32>>,
    /// Per style, per Bézier frame: LPIPS from the neutral image (empty without LPIPS or interpolations).
    pub interpolated_lpips: Vec<Vec<f32>>,
    /// Per style: the direction cosine matrix of its trajectory (Fig. 5).
    pub cosines: Vec<Vec<Vec<f64>>>,
    /// The neutral latent, then each style's swap latents, for subjects on the t-SNE map.
    pub latents: Option<Vec<Vec<f32>>>,
    /// Guided U-Net evaluations this subject's swap run took (every style).
    pub unet_evaluations: usize,
}

/// Measures subject `subject` of `setting`: one prompt-swap run from its seed with every style, each image
/// decoded and classified, LPIPS from the neutral image when `lpips` is given.
pub fn measure_subject(
    sd: &StableDiffusion,
    classifier: &Classifier,
    lpips: Option<&Lpips>,
    setting: &Setting,
    eval: &Evaluation,
    subject: usize,
) -> Result<SubjectRecord> {
    let prompts: Vec<String> = setting.styles.iter().map(|(_, p)| p.clone()).collect();
    let size = sd.default_image_size();
    let [h, w] = sd.latent_size(size, size)?;
    // Classifier probabilities of decoded latents, and LPIPS from `reference` when there is a model.
    let decode = |latents: &[Tensor<4>], reference: &Tensor<4>| -> Result<(Probs, Vec<f32>)> {
        let (mut probs, mut dists) = (Vec::with_capacity(latents.len()), Vec::new());
        for chunk in latents.chunks(16) {
            let images = sd.vae.decode(Tensor::cat(chunk.to_vec(), 0));
            if let Some(model) = lpips {
                let d = model.distance(images.clone(), reference.clone().repeat_dim(0, chunk.len()))?;
                dists.extend(crate::readback::values(d)?);
            }
            probs.extend(classifier.classify(images)?);
        }
        Ok((probs, dists))
    };
    let seed = eval.seed.wrapping_add(subject as u64);
    let init = initial_latents(seed, sd.unet_config.in_channels, h, w, sd.device());
    let res = SwapSampler::new(sd, init, &setting.neutral, &prompts, "", &eval.swap)?.run()?;
    let neutral_image = sd.vae.decode(res.neutral.clone());
    let neutral = classifier.classify(neutral_image.clone())?.remove(0);
    let z0 = crate::readback::values(res.neutral.clone())?;
    let mapped = subject < eval.map_subjects;
    let mut record = SubjectRecord {
        subject,
        neutral,
        swap: Vec::new(),
        interpolated: Vec::new(),
        swap_lpips: Vec::new(),
        interpolated_lpips: Vec::new(),
        cosines: Vec::new(),
        latents: mapped.then(|| vec![z0.clone()]),
        unet_evaluations: res.unet_evaluations,
    };
    for t in &res.trajectories {
        let (probs, dists) = decode(&t.latents, &neutral_image)?;
        record.swap.push(probs);
        if lpips.is_some() {
            record.swap_lpips.push(dists);
        }
        let zs: Vec<Vec<f32>> = t.latents.iter().map(|z| crate::readback::values(z.clone())).collect::<Result<_>>()?;
        record.cosines.push(direction_cosines(&z0, &zs));
        if let Some(latents) = &mut record.latents {
            latents.extend(zs);
        }
        if eval.interpolations > 0 {
            let all: Vec<Tensor<4>> = std::iter::once(res.neutral.clone()).chain(t.latents.clone()).collect();
            let idx = bezier::control_indices(all.len(), eval.controls)?;
            let controls: Vec<Tensor<4>> = idx.iter().map(|&i| all[i].clone()).collect();
            let (probs, dists) = decode(&bezier::interpolate(&controls, eval.interpolations)?, &neutral_image)?;
            record.interpolated.push(probs);
            if lpips.is_some() {
                record.interpolated_lpips.push(dists);
            }
        }
    }
    Ok(record)
}

/// Runs `eval` for `setting`, with LPIPS from the neutral image when `lpips` is given; `progress(subject)` is
/// called after each subject.
pub fn evaluate(
    sd: &StableDiffusion,
    classifier: &Classifier,
    lpips: Option<&Lpips>,
    setting: &Setting,
    eval: &Evaluation,
    mut progress: impl FnMut(usize),
) -> Result<SettingReport> {
    let records = (0..eval.subjects)
        .map(|subject| {
            let record = measure_subject(sd, classifier, lpips, setting, eval, subject);
            progress(subject);
            record
        })
        .collect::<Result<Vec<_>>>()?;
    summarize(&classifier.config, setting, eval, &records)
}

/// Per subject, a statistic's numerator and denominator: the pooled value over subjects is Σ num / Σ den.
struct Pooled(Vec<(f64, f64)>);

impl Pooled {
    fn value(&self) -> Option<f64> {
        let (num, den) = self.0.iter().fold((0.0, 0.0), |(n, d), (a, b)| (n + a, d + b));
        (den > 0.0).then(|| num / den)
    }

    /// The 95% percentile interval of the pooled value over subjects drawn with replacement: samples of one
    /// subject are correlated (one seed, one trajectory), so subjects are the unit resampled.
    fn interval(&self, seed: u64) -> Option<[f64; 2]> {
        self.value()?;
        let n = self.0.len();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut values: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
            .filter_map(|_| Pooled((0..n).map(|_| self.0[rng.random_range(0..n)]).collect()).value())
            .collect();
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((q * (values.len() - 1) as f64).round() as usize).min(values.len() - 1)];
        Some([at(0.025), at(0.975)])
    }
}

/// Every figure of `setting`'s report, from its subjects' records (in subject order).
pub fn summarize(
    config: &ClassifierConfig,
    setting: &Setting,
    eval: &Evaluation,
    records: &[SubjectRecord],
) -> Result<SettingReport> {
    let index = |label: &str| config.label_column(label);
    let styles: Vec<usize> = setting.styles.iter().map(|(l, _)| index(l)).collect::<Result<_>>()?;
    let class = setting.class.as_ref().map(|(l, _)| index(l)).transpose()?;
    let n_styles = styles.len();
    let points_per = eval.swap.swap_points.len();
    for r in records {
        let frames = if eval.interpolations > 0 { n_styles } else { 0 };
        if r.swap.len() != n_styles || r.interpolated.len() != frames || r.cosines.len() != n_styles {
            return Err(Error::arg(format!(
                "subject {}'s record has {} styles of swap images, {} of interpolations and {} cosine matrices; \
                 {} has {n_styles} styles",
                r.subject,
                r.swap.len(),
                r.interpolated.len(),
                r.cosines.len(),
                setting.name
            )));
        }
    }
    let subjects = records.len();
    let per_subject = |count: usize| count as f64 / subjects.max(1) as f64;
    let samples = |neutral: &[f32], edits: &[Probs], k: usize, a: usize| {
        CfrtSample::from_probabilities(neutral, edits, k, a, &styles, class)
    };
    let seed = eval.seed;
    let mut scores = Vec::with_capacity(n_styles);
    for (a, &column) in styles.iter().enumerate() {
        let mut swap_samples = Vec::new();
        let mut positives = vec![0usize; points_per];
        let mut passes = vec![0usize; points_per];
        let (mut passes_below, mut neutral_positives) = (0usize, 0usize);
        let mut side_effects = vec![0usize; config.labels.len()];
        let (mut swap_pooled, mut interp_pooled) = (Vec::new(), Vec::new());
        let (mut swap_lpips, mut interp_lpips) = (Vec::new(), Vec::new());
        let mut interp_count = 0usize;
        for r in records {
            neutral_positives += usize::from(positive(r.neutral[column]));
            let mut subject_passes = 0usize;
            for k in 0..points_per {
                let sample = samples(&r.neutral, &r.swap, k, a)?;
                let (pass, on) = (sample.passes(), positive(r.swap[a][k][column]));
                passes[k] += usize::from(pass);
                subject_passes += usize::from(pass);
                passes_below += usize::from(pass && !on);
                positives[k] += usize::from(on);
                swap_samples.push(sample);
                // Counted for every label; the style's own is left out of the report below.
                for (j, flips) in side_effects.iter_mut().enumerate() {
                    *flips += usize::from(positive(r.neutral[j]) != positive(r.swap[a][k][j]));
                }
            }
            swap_pooled.push((subject_passes as f64, points_per as f64));
            if eval.interpolations > 0 {
                let frames = r.interpolated[a].len();
                let mut subject_passes = 0usize;
                for k in 0..frames {
                    subject_passes += usize::from(samples(&r.neutral, &r.interpolated, k, a)?.passes());
                }
                interp_count += frames;
                interp_pooled.push((subject_passes as f64, frames as f64));
            }
            let sum = |v: &[f32]| v.iter().map(|&d| f64::from(d)).sum::<f64>();
            if let Some(d) = r.swap_lpips.get(a) {
                swap_lpips.push((sum(d), d.len() as f64));
            }
            if let Some(d) = r.interpolated_lpips.get(a) {
                interp_lpips.push((sum(d), d.len() as f64));
            }
        }
        let interpolated = (eval.interpolations > 0).then_some(interp_count);
        let (swap_pooled, interp_pooled) = (Pooled(swap_pooled), Pooled(interp_pooled));
        let (swap_lpips, interp_lpips) = (Pooled(swap_lpips), Pooled(interp_lpips));
        // Each row's intervals draw their own resamples, reproducibly.
        let row_seed = |k: u64| seed.wrapping_add((a as u64) << 8 | k);
        let total = swap_samples.len().max(1) as f64;
        scores.push(StyleScore {
            setting: setting.name.clone(),
            attribute: setting.styles[a].0.clone(),
            prompt: setting.styles[a].1.clone(),
            cfrt: cfrt(&swap_samples),
            cfrt_interval: swap_pooled.interval(row_seed(0)).unwrap_or([0.0, 0.0]),
            cfrt_interpolated: interpolated.map(|_| interp_pooled.value().unwrap_or(0.0)),
            cfrt_interpolated_interval: interpolated.and_then(|_| interp_pooled.interval(row_seed(1))),
            lpips: swap_lpips.value(),
            lpips_interval: swap_lpips.interval(row_seed(2)),
            lpips_interpolated: interp_lpips.value(),
            lpips_interpolated_interval: interp_lpips.interval(row_seed(3)),
            samples: swap_samples.len(),
            neutral_positive_rate: per_subject(neutral_positives),
            positive_rate: positives.into_iter().map(per_subject).collect(),
            cfrt_by_swap_point: passes.into_iter().map(per_subject).collect(),
            passes_below_threshold: passes_below as f64 / total,
            side_effects: (config.labels.iter().zip(&side_effects))
                .enumerate()
                .filter(|&(j, _)| j != column)
                .map(|(_, (label, &n))| (label.clone(), n as f64 / total))
                .collect(),
            cosines: mean_matrix(&records.iter().map(|r| r.cosines[a].clone()).collect::<Vec<_>>()),
        });
    }
    let (mut latents, mut points) = (Vec::new(), Vec::new());
    for r in records {
        let Some(zs) = &r.latents else { continue };
        let point =
            |style: Option<String>, swap_point| MapPoint { subject: r.subject, style, swap_point, x: 0.0, y: 0.0 };
        points.push(point(None, 0));
        for (label, _) in &setting.styles {
            points.extend(eval.swap.swap_points.iter().map(|&t| point(Some(label.clone()), t)));
        }
        if zs.len() != 1 + n_styles * points_per {
            return Err(Error::arg(format!("subject {}'s record has {} latents", r.subject, zs.len())));
        }
        latents.extend(zs.iter().cloned());
    }
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
    fn mean_of_matrices() {
        let m = mean_matrix(&[vec![vec![1.0, 0.0]], vec![vec![0.0, 1.0]]]);
        assert_eq!(m, vec![vec![0.5, 0.5]]);
        assert!(mean_matrix(&[]).is_empty());
    }
}
