//! What the autoencoder lets through: a generated image can show only what the VAE can reconstruct, so how
//! often the classifier still sees each attribute after encode + decode bounds every U-Net trained on its
//! latents.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::classifier::Classifier;
use crate::error::Result;
use crate::metrics::positive;
use crate::pipeline::StableDiffusion;
use crate::synthetic::{Kind, Phantom, counterfactuals, render_batch};

/// What the autoencoder lets through, per attribute: how often the classifier sees the attribute in real
/// phantoms that have it and in their VAE reconstructions (encode to the latent mean, decode). A generated
/// image can show only what the autoencoder can reconstruct, so the second rate bounds what any U-Net
/// trained on these latents can reach.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// Measures [`AutoencoderCeiling`] for every label of `kind` on `subjects` phantoms (dataset `seed`, an
/// unseen one by default), rendered at the model's image size. `examples(label, phantoms, reconstructions)`
/// sees the first batch of each label (up to 8 images).
pub fn autoencoder_ceiling(
    sd: &StableDiffusion,
    classifier: &Classifier,
    kind: Kind,
    subjects: usize,
    seed: u64,
    mut examples: impl FnMut(&str, &Tensor<4>, &Tensor<4>) -> Result<()>,
) -> Result<Vec<AutoencoderCeiling>> {
    let size = sd.default_image_size();
    let labels: Vec<&str> = Phantom::sample(kind, seed, 0).labels().into_iter().map(|(l, _)| l).collect();
    let columns: Vec<usize> = labels.iter().map(|l| classifier.config.label_column(l)).collect::<Result<_>>()?;
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
                psnr[li] += crate::metrics::psnr(pick(&x), pick(&recon)) as f64;
            }
            let (px, pr) = (classifier.classify(x)?, classifier.classify(recon)?);
            for (j, phantom) in phantoms.iter().enumerate() {
                for (k, &(_, on)) in phantom.labels().iter().enumerate() {
                    // Positive rates come from the label's own batch only (that attribute alone turned on).
                    let tally = match (on, k == li) {
                        (true, true) => &mut pos[k],
                        (false, _) => &mut neg[k],
                        (true, false) => continue,
                    };
                    let recon_positive = usize::from(positive(pr[j][columns[k]]));
                    tally[0] += 1;
                    tally[1] += usize::from(positive(px[j][columns[k]]));
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
