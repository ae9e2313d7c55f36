//! Training data, rendered from the phantoms: labelled images for the classifiers, captioned images for the
//! text encoder and the autoencoder, and frozen-encoder latents for the U-Net. Each is built by a
//! constructor that keeps its images, labels and captions consistent, so a stage cannot index past them.

use burn::prelude::*;
use rand::Rng;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::synthetic::{CLASS_LABEL, Kind, Phantom, Split, split_of};

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

/// One labelled image.
#[derive(Debug, Clone)]
pub struct LabeledImage {
    /// Pixels `[C, S, S]` row-major, in [-1, 1].
    pub pixels: Vec<f32>,
    /// Labels (0/1), one per label name.
    pub labels: Vec<f32>,
    /// Its split.
    pub split: Split,
    /// Its source.
    pub source: Source,
}

/// Rendered phantoms with their labels, as network inputs in [-1, 1].
#[derive(Debug, Clone)]
pub struct LabeledImages {
    images: Vec<LabeledImage>,
    names: Vec<String>,
    channels: usize,
    size: usize,
}

impl LabeledImages {
    /// Renders `n` phantoms of `kind` (dataset `seed`) at `size` pixels; `progress(i)` sees each image.
    pub fn render(kind: Kind, n: usize, seed: u64, size: usize, mut progress: impl FnMut(usize)) -> Self {
        let names = Phantom::sample(kind, seed, 0).labels().iter().map(|(n, _)| n.to_string()).collect();
        let (mut images, mut channels) = (Vec::with_capacity(n), 0);
        for i in 0..n {
            let p = Phantom::sample(kind, seed, i as u64);
            let img = p.render(size);
            channels = img.channels;
            images.push(LabeledImage {
                pixels: img.to_planar(img.channels),
                labels: p.labels().iter().map(|(_, on)| f32::from(u8::from(*on))).collect(),
                split: split_of(i, n),
                source: Source::Phantom,
            });
            progress(i + 1);
        }
        Self { images, names, channels, size }
    }

    /// The images, in order: phantoms, then any reconstructions.
    pub fn images(&self) -> &[LabeledImage] {
        &self.images
    }

    /// Label names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Channels per image.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Side in pixels.
    pub fn size(&self) -> usize {
        self.size
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
        let phantoms: Vec<usize> =
            (0..self.images.len()).filter(|&i| self.images[i].source == Source::Phantom).collect();
        let (c, s) = (self.channels, self.size);
        for chunk in phantoms.chunks(16) {
            let (x, _) = self.batch(chunk, device)?;
            // The autoencoder takes RGB; gray phantoms go in replicated and come back averaged.
            let recon = vae.decode(vae.encode(if c == 1 { x.repeat_dim(1, 3) } else { x }));
            let recon = if c == 1 { recon.mean_dim(1) } else { recon };
            let values = crate::readback::values(recon)?;
            for (pixels, &i) in values.chunks(c * s * s).zip(chunk) {
                let phantom = &self.images[i];
                let image = LabeledImage { pixels: pixels.to_vec(), source: Source::Reconstruction, ..phantom.clone() };
                self.images.push(image);
            }
            progress(chunk.len());
        }
        Ok(())
    }

    /// Images `idx` as a batch `[n, C, S, S]` with their labels `[n, labels]`.
    pub fn batch(&self, idx: &[usize], device: &Device) -> Result<(Tensor<4>, Tensor<2>)> {
        let pick =
            |i: usize| self.images.get(i).ok_or_else(|| Error::arg(format!("no image {i} of {}", self.images.len())));
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for &i in idx {
            let image = pick(i)?;
            x.extend_from_slice(&image.pixels);
            y.extend_from_slice(&image.labels);
        }
        Ok((
            Tensor::from_data(TensorData::new(x, [idx.len(), self.channels, self.size, self.size]), device),
            Tensor::from_data(TensorData::new(y, [idx.len(), self.names.len()]), device),
        ))
    }

    /// Indices of the images of `split`, of one source or (`None`) of both.
    pub fn indices(&self, split: Split, source: Option<Source>) -> Vec<usize> {
        (0..self.images.len())
            .filter(|&i| self.images[i].split == split && source.is_none_or(|s| self.images[i].source == s))
            .collect()
    }
}

/// One image of the captioned training pool.
#[derive(Debug, Clone)]
pub struct CaptionedImage {
    /// Pixels `[3, size, size]` in [-1, 1] (chest X-rays replicated to RGB).
    pub pixels: Vec<f32>,
    /// Index of its caption among [`CaptionedImages::texts`].
    pub caption: usize,
    /// `[size, size]`: 1 where the attributes change the pixel (the image against its counterfactual with every
    /// attribute but the diagnosis off), else 0.
    pub attribute_mask: Vec<f32>,
}

/// Phantoms of both families with their captions: the training pool of the autoencoder and the text encoder,
/// which serve both.
#[derive(Debug, Clone)]
pub struct CaptionedImages {
    images: Vec<CaptionedImage>,
    texts: Vec<(String, Kind)>,
    size: usize,
}

impl CaptionedImages {
    /// Renders `n` phantoms, alternating chest and dermoscopy (dataset `seed`), on every core; the result
    /// does not depend on how many there are.
    pub fn render(n: usize, seed: u64, size: usize) -> Self {
        use rayon::prelude::*;
        let plane = size * size;
        let rendered: Vec<_> = (0..n)
            .into_par_iter()
            .map(|i| {
                let kind = if i % 2 == 0 { Kind::Chest } else { Kind::Derm };
                let phantom = Phantom::sample(kind, seed, (i / 2) as u64);
                let pixels = phantom.render(size).to_planar(3);
                let plain = phantom.with_attributes_off(&[CLASS_LABEL]).render(size).to_planar(3);
                let attribute_mask = (0..plane)
                    .map(|i| {
                        let changed = (0..3).any(|c| (pixels[c * plane + i] - plain[c * plane + i]).abs() > 0.02);
                        f32::from(u8::from(changed))
                    })
                    .collect();
                (pixels, attribute_mask, phantom.caption(), kind)
            })
            .collect();
        // Captions are numbered in the order they first appear.
        let mut texts: Vec<(String, Kind)> = Vec::new();
        let images = rendered
            .into_iter()
            .map(|(pixels, attribute_mask, text, kind)| {
                let caption = texts.iter().position(|(t, _)| *t == text).unwrap_or_else(|| {
                    texts.push((text, kind));
                    texts.len() - 1
                });
                CaptionedImage { pixels, caption, attribute_mask }
            })
            .collect();
        Self { images, texts, size }
    }

    /// The images.
    pub fn images(&self) -> &[CaptionedImage] {
        &self.images
    }

    /// The distinct captions, each with its phantom family (the groups caption balancing keeps).
    pub fn texts(&self) -> &[(String, Kind)] {
        &self.texts
    }

    /// Side in pixels.
    pub fn size(&self) -> usize {
        self.size
    }
}

/// Frozen-encoder training data for the U-Net: scaled VAE latents with the index of their caption, and the
/// text embeddings of every caption plus the empty one.
#[derive(Debug, Clone)]
pub struct LatentDataset {
    samples: Vec<(Vec<f32>, usize)>,
    shape: [usize; 3],
    captions: Vec<Vec<f32>>,
    caption_groups: Vec<usize>,
    uncond: Vec<f32>,
    context_shape: [usize; 2],
}

impl LatentDataset {
    /// Latents of `shape` `[C, h, w]`, each with its caption index; the text embeddings `[L, D]`
    /// (`context_shape`) of every caption and of the empty prompt; and each caption's group (its phantom
    /// family: caption balancing evens out captions within a group and keeps each group's share of the draws).
    /// Any length that does not fit is an error.
    pub fn new(
        samples: Vec<(Vec<f32>, usize)>,
        shape: [usize; 3],
        captions: Vec<Vec<f32>>,
        caption_groups: Vec<usize>,
        uncond: Vec<f32>,
        context_shape: [usize; 2],
    ) -> Result<Self> {
        let latent: usize = shape.iter().product();
        let context = context_shape[0] * context_shape[1];
        if samples.is_empty() || latent == 0 || context == 0 {
            return Err(Error::arg("no training latents, or an empty latent or embedding shape"));
        }
        if let Some((i, (s, c))) =
            samples.iter().enumerate().find(|(_, (s, c))| s.len() != latent || *c >= captions.len())
        {
            return Err(Error::arg(format!(
                "latent {i} has {} values for shape {shape:?} and caption {c} of {}",
                s.len(),
                captions.len()
            )));
        }
        if captions.iter().chain([&uncond]).any(|e| e.len() != context) {
            return Err(Error::arg(format!("every text embedding must have {context} values")));
        }
        if caption_groups.len() != captions.len() {
            return Err(Error::arg(format!("{} caption groups for {} captions", caption_groups.len(), captions.len())));
        }
        Ok(Self { samples, shape, captions, caption_groups, uncond, context_shape })
    }

    /// Number of latents.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no latents (never, once built).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// A batch of latents `picks` `[b, C, h, w]` with their contexts `[b, L, D]`, each caption replaced by the
    /// empty prompt with probability `uncond_probability` (drawn from `rng`).
    pub fn batch(
        &self,
        picks: &[usize],
        uncond_probability: f64,
        rng: &mut impl Rng,
        device: &Device,
    ) -> (Tensor<4>, Tensor<3>) {
        let [c, h, w] = self.shape;
        let [l, d] = self.context_shape;
        let x0: Vec<f32> = picks.iter().flat_map(|&i| self.samples[i].0.iter().copied()).collect();
        let mut ctx = Vec::with_capacity(picks.len() * l * d);
        for &i in picks {
            let uncond = rng.random_bool(uncond_probability);
            ctx.extend_from_slice(if uncond { &self.uncond } else { &self.captions[self.samples[i].1] });
        }
        (
            Tensor::from_data(TensorData::new(x0, [picks.len(), c, h, w]), device),
            Tensor::from_data(TensorData::new(ctx, [picks.len(), l, d]), device),
        )
    }

    /// Sampling weight of each latent: the count of its caption to the power `-balance` (in 0..=1), scaled so
    /// that each caption group (phantom family) gets `shares[group]` of the draws, or, without `shares`, keeps
    /// the share it has in the data. At 1 every caption of a group is drawn equally often, whatever its
    /// prevalence; in between, rare attribute combinations (melanoma with ink alone, say) are seen more often
    /// without repeating a handful of images too much. Without the group scaling, a family with many rare
    /// captions (dermoscopy's 32 against chest's 4) would take most of the batches (0.71 of them at 0.5 on the
    /// mini model's pool).
    pub fn caption_balanced_weights(&self, balance: f64, shares: Option<&[f64]>) -> Result<Vec<f64>> {
        if !(0.0..=1.0).contains(&balance) {
            return Err(Error::arg(format!("caption balance must lie in 0..=1, got {balance}")));
        }
        let mut counts = vec![0usize; self.captions.len()];
        for &(_, caption) in &self.samples {
            counts[caption] += 1;
        }
        let raw: Vec<f64> = self.samples.iter().map(|&(_, caption)| (counts[caption] as f64).powf(-balance)).collect();
        let groups = self.caption_groups.iter().max().map_or(0, |g| g + 1);
        let (mut latents, mut mass) = (vec![0usize; groups], vec![0f64; groups]);
        for (&(_, caption), w) in self.samples.iter().zip(&raw) {
            latents[self.caption_groups[caption]] += 1;
            mass[self.caption_groups[caption]] += w;
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
        Ok(self
            .samples
            .iter()
            .zip(raw)
            .map(|(&(_, caption), w)| {
                let g = self.caption_groups[caption];
                w * share[g] / mass[g]
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Group 0: caption 0 on six latents, caption 1 on two, caption 2 on none. Group 1: caption 3 on two.
    fn four_captions(samples: &[usize], groups: Vec<usize>) -> Result<LatentDataset> {
        let n = groups.len();
        LatentDataset::new(
            samples.iter().map(|&c| (vec![0.0], c)).collect(),
            [1, 1, 1],
            vec![vec![0.0]; n],
            groups,
            vec![0.0],
            [1, 1],
        )
    }

    #[test]
    fn caption_balance_evens_out_rare_captions() {
        let data = four_captions(&[0, 0, 1, 3, 0, 0, 1, 0, 0, 3], vec![0, 0, 0, 1]).unwrap();
        let of = |w: &[f64], c| data.samples.iter().zip(w).filter(|((_, k), _)| *k == c).map(|(_, w)| w).sum::<f64>();
        let mass = |balance| {
            let w = data.caption_balanced_weights(balance, None).unwrap();
            // Group 1 keeps its share (2 of 10 latents) at every balance.
            assert!((of(&w, 3) / w.iter().sum::<f64>() - 0.2).abs() < 1e-12, "balance {balance}");
            of(&w, 0) / of(&w, 1)
        };
        assert_eq!(mass(0.0), 3.0, "unbalanced: as often as in the data");
        assert!((mass(1.0) - 1.0).abs() < 1e-12, "fully balanced: every caption alike");
        assert!((mass(0.5) - 3f64.sqrt()).abs() < 1e-12);
        assert!(data.caption_balanced_weights(1.5, None).is_err());
        // Given shares override the data's: group 1 now takes 0.7 of the draws, and group 0's captions keep
        // their balanced ratio.
        let w = data.caption_balanced_weights(0.5, Some(&[0.3, 0.7])).unwrap();
        assert!((of(&w, 3) / w.iter().sum::<f64>() - 0.7).abs() < 1e-12);
        assert!((of(&w, 0) / of(&w, 1) - 3f64.sqrt()).abs() < 1e-12);
        for bad_shares in [&[0.5, 0.6][..], &[1.0][..], &[1.2, -0.2][..]] {
            assert!(data.caption_balanced_weights(0.5, Some(bad_shares)).is_err(), "{bad_shares:?}");
        }
        let no_group_1 = four_captions(&[0, 0, 1], vec![0, 0, 0, 1]).unwrap();
        assert!(no_group_1.caption_balanced_weights(0.5, Some(&[0.5, 0.5])).is_err(), "a share for no latents");
    }

    #[test]
    fn inconsistent_latent_datasets_are_refused() {
        let ungrouped =
            LatentDataset::new(vec![(vec![0.0], 0)], [1, 1, 1], vec![vec![0.0]; 2], vec![0], vec![0.0], [1, 1]);
        assert!(ungrouped.is_err(), "a caption without a group");
        assert!(four_captions(&[0, 4], vec![0, 0, 0, 1]).is_err(), "a caption index without an embedding");
        assert!(four_captions(&[], vec![0, 0, 0, 1]).is_err(), "no latents");
        let wrong_latent =
            LatentDataset::new(vec![(vec![0.0; 2], 0)], [1, 1, 1], vec![vec![0.0]], vec![0], vec![0.0], [1, 1]);
        assert!(wrong_latent.is_err());
        let wrong_embedding =
            LatentDataset::new(vec![(vec![0.0], 0)], [1, 1, 1], vec![vec![0.0]], vec![0], vec![], [1, 1]);
        assert!(wrong_embedding.is_err());
    }

    #[test]
    fn attribute_masks_cover_what_the_attributes_draw() {
        let pool = CaptionedImages::render(8, 5, 64);
        for (i, image) in pool.images().iter().enumerate() {
            let kind = if i % 2 == 0 { Kind::Chest } else { Kind::Derm };
            let phantom = Phantom::sample(kind, 5, (i / 2) as u64);
            let any = phantom.labels().iter().any(|(l, on)| *on && *l != CLASS_LABEL);
            let m = &image.attribute_mask;
            let covered = m.iter().sum::<f32>();
            assert_eq!(covered > 0.0, any, "image {i}: mask covers {covered} pixels, attributes on: {any}");
            assert!(covered < m.len() as f32, "image {i}: an attribute never changes every pixel");
        }
    }

    #[test]
    fn the_pool_is_the_same_on_one_thread() {
        let all = CaptionedImages::render(12, 9, 32);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let one = pool.install(|| CaptionedImages::render(12, 9, 32));
        assert_eq!(all.texts(), one.texts());
        for (a, b) in all.images().iter().zip(one.images()) {
            assert_eq!((&a.pixels, a.caption, &a.attribute_mask), (&b.pixels, b.caption, &b.attribute_mask));
        }
    }

    #[test]
    fn batches_refuse_indices_past_the_images() {
        let data = LabeledImages::render(Kind::Derm, 4, 1, 16, |_| {});
        assert!(data.batch(&[0, 3], &Device::flex()).is_ok());
        assert!(data.batch(&[4], &Device::flex()).is_err());
    }
}
