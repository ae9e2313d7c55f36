//! The paper's quantitative evaluation (section 3.2: Table 2, Figs. 4 and 5) of a model on the phantom
//! families: from many seeds, one prompt-swap run per neutral prompt with every style prompt, images
//! classified by the family's attribute classifier, then CFRT (Eq. 3) per style over the swap images and over
//! the Bézier samples, the mean cosine similarity of trajectory directions, and a t-SNE map of every latent.
//! [`ceiling`] measures what the autoencoder alone lets through; [`fidelity`] compares a model with its int8
//! copy; [`report`] holds the reports the CLI writes.
//!
//! Prompts are the phantoms' own captions ([`crate::synthetic::settings`]), so they match what the embedded
//! model was trained on. Labels of generated images come from the classifier's decisions.

pub mod ceiling;
pub mod fidelity;
pub mod report;

use burn::prelude::*;
use serde::Serialize;

use crate::bezier;
use crate::classifier::Classifier;
use crate::error::Result;
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
    classifier: &Classifier,
    lpips: Option<&Lpips>,
    setting: &Setting,
    eval: &Evaluation,
    mut progress: impl FnMut(usize),
) -> Result<SettingReport> {
    let config = &classifier.config;
    let index = |label: &str| config.label_column(label);
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
                dists.extend(crate::readback::values(d)?.into_iter().map(f64::from));
            }
            probs.extend(classifier.classify(images)?);
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
        let res = SwapSampler::new(sd, init, &setting.neutral, &prompts, "", &eval.swap)?.run()?;
        let neutral_image = sd.vae.decode(res.neutral.clone());
        let neutral = classifier.classify(neutral_image.clone())?.remove(0);
        let mut swapped: Vec<Probs> = Vec::with_capacity(n_styles);
        for (a, t) in res.trajectories.iter().enumerate() {
            let (probs, dists) = decode(&t.latents, &neutral_image)?;
            swapped.push(probs);
            swap_lpips[a].extend(dists);
        }
        let samples =
            |edits: &[Probs], k: usize, a: usize| CfrtSample::from_probabilities(&neutral, edits, k, a, &styles, class);
        let z0 = crate::readback::values(res.neutral.clone())?;
        latents.push(z0.clone());
        points.push(MapPoint { subject, style: None, swap_point: 0, x: 0.0, y: 0.0 });
        for a in 0..n_styles {
            neutral_positives[a] += usize::from(positive(neutral[styles[a]]));
            for k in 0..res.swap_points.len() {
                let sample = samples(&swapped, k, a)?;
                let (pass, on) = (sample.passes(), positive(swapped[a][k][styles[a]]));
                passes[a][k] += usize::from(pass);
                passes_below[a] += usize::from(pass && !on);
                positives[a][k] += usize::from(on);
                swap_samples[a].push(sample);
                // Counted for every label; the style's own is left out of the report below.
                for (j, flips) in side_effects[a].iter_mut().enumerate() {
                    *flips += usize::from(positive(neutral[j]) != positive(swapped[a][k][j]));
                }
            }
            let zs: Vec<Vec<f32>> = res.trajectories[a]
                .latents
                .iter()
                .map(|z| crate::readback::values(z.clone()))
                .collect::<Result<_>>()?;
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
                for k in 0..eval.interpolations {
                    out.push(samples(&curves, k, a)?);
                }
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
