//! The paper's measures along a trajectory (section 3.2): CFRT (Eq. 3), the cosine similarity of
//! trajectory directions (Fig. 5) and the t-SNE map of latents (Fig. 4), with how often a latent's nearest
//! neighbour is of the same subject; and image distances (PSNR, RMS). LPIPS, a network, is in
//! the `lpips` module.

use burn::prelude::*;

use crate::error::{Error, Result};

/// A classifier says an attribute is present when its probability is at least this.
pub const DECISION_THRESHOLD: f32 = 0.5;

/// A classifier's decision on one probability.
pub fn positive(probability: f32) -> bool {
    probability >= DECISION_THRESHOLD
}

/// Pairwise cosine similarity of the directions Δz_t = z_t − z_neutral of a trajectory's latents (Fig. 5):
/// entry `[i][j]` compares swap points `i` and `j`. Values well below 1 off the diagonal say the
/// trajectory is not a straight line. A zero direction gives 0.
pub fn direction_cosines(neutral: &[f32], latents: &[Vec<f32>]) -> Vec<Vec<f64>> {
    let dirs: Vec<Vec<f64>> =
        latents.iter().map(|z| z.iter().zip(neutral).map(|(a, b)| *a as f64 - *b as f64).collect()).collect();
    let norms: Vec<f64> = dirs.iter().map(|d| d.iter().map(|x| x * x).sum::<f64>().sqrt()).collect();
    (0..dirs.len())
        .map(|i| {
            (0..dirs.len())
                .map(|j| {
                    let dot: f64 = dirs[i].iter().zip(&dirs[j]).map(|(a, b)| a * b).sum();
                    if norms[i] > 0.0 && norms[j] > 0.0 { dot / (norms[i] * norms[j]) } else { 0.0 }
                })
                .collect()
        })
        .collect()
}

/// What CFRT needs to know about one neutral image `x` and its edits, for the attribute `A` under test.
#[derive(Debug, Clone)]
pub struct CfrtSample {
    /// The `A` classifier's probability on the neutral image, f(x).
    pub f_neutral: f64,
    /// Its probability on the image edited towards `A`, f(x'_A).
    pub f_edited: f64,
    /// Its probability on each image edited towards another attribute j ≠ A, f(x'_j).
    pub f_other_edits: Vec<f64>,
    /// The class label (e.g. MEL vs NV) of x and of x'_A: y(x) = y(x'_A) is required.
    pub class: (bool, bool),
    /// The other attributes' labels on x and on x'_A: all must be equal (∀k ≠ A, x_k = x'_A(k)).
    pub other_attributes: (Vec<bool>, Vec<bool>),
}

impl CfrtSample {
    /// One sample from classifier probabilities: `neutral` of the neutral image, `edits[a][k]` of style `a` at
    /// position `k` (a swap point or a Bézier frame); `styles[a]` is style `a`'s label column and `class` the
    /// diagnosis column that must not change. Every other style's image at the same position is an "other
    /// edit". Indices outside the given rows are an error.
    pub fn from_probabilities(
        neutral: &[f32],
        edits: &[Vec<Vec<f32>>],
        k: usize,
        a: usize,
        styles: &[usize],
        class: Option<usize>,
    ) -> Result<Self> {
        let labels = neutral.len();
        let label = *styles.get(a).ok_or_else(|| Error::arg(format!("style {a} of {}", styles.len())))?;
        if edits.len() != styles.len() {
            return Err(Error::arg(format!("{} rows of edits for {} styles", edits.len(), styles.len())));
        }
        if label >= labels || class.is_some_and(|c| c >= labels) {
            return Err(Error::arg(format!("label column {label} or class {class:?} beyond {labels} labels")));
        }
        let at = |j: usize| -> Result<&[f32]> {
            edits[j]
                .get(k)
                .filter(|p| p.len() == labels)
                .map(Vec::as_slice)
                .ok_or_else(|| Error::arg(format!("style {j} has no {labels}-label edit at position {k}")))
        };
        let edited = at(a)?;
        // Every classifier output except the attribute under test and the class label must keep its decision.
        let others = |p: &[f32]| -> Vec<bool> {
            (0..p.len()).filter(|&i| i != label && Some(i) != class).map(|i| positive(p[i])).collect()
        };
        let f_other_edits =
            (0..edits.len()).filter(|&j| j != a).map(|j| at(j).map(|p| p[label] as f64)).collect::<Result<_>>()?;
        Ok(Self {
            f_neutral: neutral[label] as f64,
            f_edited: edited[label] as f64,
            f_other_edits,
            class: class.map_or((true, true), |c| (positive(neutral[c]), positive(edited[c]))),
            other_attributes: (others(neutral), others(edited)),
        })
    }

    /// Eq. 3's indicator for this sample: `A`'s edit moved f more than every other edit did, and the class and
    /// every other attribute kept their labels. It does not ask f(x'_A) to cross the decision threshold.
    pub fn passes(&self) -> bool {
        let own = (self.f_neutral - self.f_edited).abs();
        let others = self.f_other_edits.iter().map(|f| (self.f_neutral - f).abs()).fold(0.0, f64::max);
        own > others && self.class.0 == self.class.1 && self.other_attributes.0 == self.other_attributes.1
    }
}

/// Classifier Flip Rate along a Trajectory (Eq. 3): the fraction of samples whose `A` classifier moves more
/// when `A` is edited than when any other attribute is, while the class and every other attribute stay.
/// For generated images the labels come from the attribute classifiers; for phantoms they are known.
pub fn cfrt(samples: &[CfrtSample]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.iter().filter(|s| s.passes()).count() as f64 / samples.len() as f64
}

/// The largest perplexity that `n` points allow (t-SNE needs n − 1 ≥ 3 · perplexity): `wanted`, or less.
pub fn tsne_perplexity(n: usize, wanted: f32) -> f32 {
    wanted.min(n.saturating_sub(1) as f32 / 3.0)
}

/// t-SNE (van der Maaten & Hinton 2008) of `points` into 2-D, as the paper's Fig. 4 maps latents: exact
/// gradients on squared Euclidean distances (`bhtsne`), perplexity `perplexity` lowered as far as
/// [`tsne_perplexity`] requires, 1000 epochs, started from a small Gaussian of our portable RNG (`seed`).
/// It runs on one thread, so the same points give the same map on every run (across platforms the
/// layout may differ through the float rounding of `exp`). Needs at least 4 points of one finite length.
pub fn tsne(points: &[Vec<f32>], perplexity: f32, seed: u64) -> Result<Vec<[f32; 2]>> {
    let n = points.len();
    let dim = points.first().map_or(0, Vec::len);
    if n < 4 || dim == 0 {
        return Err(Error::arg(format!("t-SNE needs at least 4 non-empty points, got {n} of length {dim}")));
    }
    if points.iter().any(|p| p.len() != dim || p.iter().any(|x| !x.is_finite())) {
        return Err(Error::arg("t-SNE points must all have the same length and finite values"));
    }
    if !(perplexity.is_finite() && perplexity > 0.0) {
        return Err(Error::arg(format!("t-SNE perplexity must be positive, got {perplexity}")));
    }
    let perplexity = tsne_perplexity(n, perplexity);
    let init: Vec<f32> = crate::rng::PortableNormal::new(seed).samples(2 * n).iter().map(|x| x * 1e-4).collect();
    let run = move || {
        let mut t: bhtsne::tSNE<f32, Vec<f32>> = bhtsne::tSNE::new(points);
        t.perplexity(perplexity).epochs(1000).initial_embedding(init);
        t.exact(|a, b| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum());
        t.embedding()
    };
    // One thread: rayon's float sums then reduce in the same order on every run, as in the browser.
    let flat = match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
        Ok(pool) => pool.install(run),
        Err(_) => run(),
    };
    if flat.len() != 2 * n || flat.iter().any(|x| !x.is_finite()) {
        return Err(Error::Numeric("t-SNE diverged (non-finite coordinates)".into()));
    }
    Ok(flat.chunks(2).map(|c| [c[0], c[1]]).collect())
}

/// The share of `points` whose nearest other point (Euclidean) has the same `group`: with groups = subjects,
/// how far a map or a latent space is organised by patient rather than by attribute. 0 for < 2 points.
pub fn same_group_neighbours<P: AsRef<[f32]>>(points: &[P], groups: &[usize]) -> f64 {
    let n = points.len().min(groups.len());
    if n < 2 {
        return 0.0;
    }
    let d2 = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>();
    let same = (0..n)
        .filter(|&i| {
            let nearest = (0..n).filter(|&j| j != i).min_by(|&a, &b| {
                d2(points[i].as_ref(), points[a].as_ref()).total_cmp(&d2(points[i].as_ref(), points[b].as_ref()))
            });
            nearest.is_some_and(|j| groups[j] == groups[i])
        })
        .count();
    same as f64 / n as f64
}

/// Root mean square of `a − b`.
pub fn rms_error<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).powf_scalar(2.0).mean().sqrt().into_scalar::<f32>()
}

/// PSNR in dB between two images in [-1, 1] (peak-to-peak 2).
pub fn psnr(a: Tensor<4>, b: Tensor<4>) -> f32 {
    let mse = (a.clamp(-1.0, 1.0) - b.clamp(-1.0, 1.0)).powf_scalar(2.0).mean().into_scalar::<f32>();
    10.0 * (4.0f32 / mse.max(1e-12)).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_compares_the_edit_with_the_other_edits() {
        // Two styles (labels 1 and 2), class label 0; one position.
        let neutral = vec![0.9, 0.1, 0.1];
        let edits = vec![vec![vec![0.9, 0.8, 0.2]], vec![vec![0.2, 0.3, 0.7]]];
        let s = CfrtSample::from_probabilities(&neutral, &edits, 0, 0, &[1, 2], Some(0)).unwrap();
        assert_eq!((s.f_neutral, s.f_edited), (0.1f32 as f64, 0.8f32 as f64));
        assert_eq!(s.f_other_edits, vec![0.3f32 as f64]);
        assert_eq!(s.class, (true, true));
        assert_eq!(s.other_attributes, (vec![false], vec![false]));
        assert_eq!(cfrt(&[s]), 1.0);
        // The second style's edit flipped the class: not counted.
        let s = CfrtSample::from_probabilities(&neutral, &edits, 0, 1, &[1, 2], Some(0)).unwrap();
        assert_eq!(s.class, (true, false));
        assert_eq!(cfrt(&[s]), 0.0);
        // Out-of-range positions, styles, label columns and ragged rows are errors, not panics.
        for (k, a, styles, class) in [(1, 0, &[1, 2][..], Some(0)), (0, 2, &[1, 2], Some(0)), (0, 0, &[3, 2], None)] {
            assert!(CfrtSample::from_probabilities(&neutral, &edits, k, a, styles, class).is_err());
        }
        assert!(CfrtSample::from_probabilities(&neutral, &edits, 0, 0, &[1, 2], Some(7)).is_err());
        assert!(CfrtSample::from_probabilities(&neutral, &edits[..1], 0, 0, &[1, 2], None).is_err());
        let ragged = vec![vec![vec![0.9, 0.8]], vec![vec![0.2, 0.3, 0.7]]];
        assert!(CfrtSample::from_probabilities(&neutral, &ragged, 0, 1, &[1, 2], None).is_err());
    }

    #[test]
    fn cosines_of_straight_and_bent_trajectories() {
        let neutral = vec![0.0, 0.0];
        let straight = direction_cosines(&neutral, &[vec![1.0, 0.0], vec![2.0, 0.0]]);
        assert!((straight[0][1] - 1.0).abs() < 1e-12);
        let bent = direction_cosines(&neutral, &[vec![1.0, 0.0], vec![1.0, 1.0], vec![0.0, 0.0]]);
        assert!((bent[0][1] - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
        assert_eq!(bent[0][2], 0.0);
        assert!((bent[1][1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn cfrt_follows_equation_3() {
        let s = |f_edited: f64, other: f64, class_kept: bool, others_kept: bool| CfrtSample {
            f_neutral: 0.1,
            f_edited,
            f_other_edits: vec![other, 0.15],
            class: (true, class_kept),
            other_attributes: (vec![false, true], vec![false, others_kept]),
        };
        assert_eq!(cfrt(&[s(0.9, 0.2, true, true)]), 1.0);
        assert_eq!(cfrt(&[s(0.3, 0.5, true, true)]), 0.0, "another edit moved f more");
        assert_eq!(cfrt(&[s(0.9, 0.2, false, true)]), 0.0, "the class changed");
        assert_eq!(cfrt(&[s(0.9, 0.2, true, false)]), 0.0, "another attribute changed");
        assert_eq!(cfrt(&[s(0.9, 0.2, true, true), s(0.3, 0.5, true, true)]), 0.5);
        assert_eq!(cfrt(&[]), 0.0);
    }

    /// `k` clusters of `m` points each in 16-D, centres far apart, with small per-point jitter.
    fn clusters(k: usize, m: usize) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut noise = crate::rng::PortableNormal::new(7);
        let mut points = Vec::new();
        let mut groups = Vec::new();
        for c in 0..k {
            for _ in 0..m {
                points.push((0..16).map(|d| if d % k == c { 10.0 } else { 0.0 } + 0.3 * noise.sample()).collect());
                groups.push(c);
            }
        }
        (points, groups)
    }

    #[test]
    fn tsne_keeps_clusters_apart_and_is_deterministic() {
        let (points, groups) = clusters(3, 12);
        let map = tsne(&points, 30.0, 1).unwrap();
        assert_eq!(map.len(), 36);
        assert_eq!(same_group_neighbours(&map, &groups), 1.0, "every point's neighbour is in its cluster");
        // Clusters are compact: mean distance within a cluster well below the mean distance between them.
        let dist = |a: &[f32; 2], b: &[f32; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
        let (mut within, mut between) = ((0.0, 0), (0.0, 0));
        for i in 0..map.len() {
            for j in i + 1..map.len() {
                let t = if groups[i] == groups[j] { &mut within } else { &mut between };
                t.0 += dist(&map[i], &map[j]);
                t.1 += 1;
            }
        }
        assert!(within.0 / (within.1 as f32) * 3.0 < between.0 / (between.1 as f32));
        assert_eq!(tsne(&points, 30.0, 1).unwrap(), map, "same points and seed, same map");
        assert_ne!(tsne(&points, 30.0, 2).unwrap(), map, "the seed sets the start");
    }

    #[test]
    fn tsne_rejects_what_it_cannot_map() {
        assert!(tsne(&vec![vec![0.0; 3]; 3], 5.0, 0).is_err(), "too few points");
        assert!(tsne(&[vec![0.0; 3], vec![0.0; 3], vec![0.0; 3], vec![0.0; 2]], 1.0, 0).is_err(), "ragged");
        assert!(tsne(&vec![vec![f32::NAN; 3]; 5], 1.0, 0).is_err(), "not finite");
        assert!(tsne(&vec![vec![1.0; 3]; 5], 0.0, 0).is_err(), "perplexity 0");
        // Too high a perplexity for 5 points is lowered instead of panicking inside bhtsne.
        let (points, _) = clusters(1, 5);
        assert_eq!(tsne(&points, 30.0, 0).unwrap().len(), 5);
        assert!((tsne_perplexity(5, 30.0) - 4.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn nearest_neighbour_groups() {
        let points = [[0.0f32, 0.0], [0.1, 0.0], [5.0, 0.0], [5.2, 0.0]];
        assert_eq!(same_group_neighbours(&points, &[0, 0, 1, 1]), 1.0);
        assert_eq!(same_group_neighbours(&points, &[0, 1, 0, 1]), 0.0);
        assert_eq!(same_group_neighbours(&points, &[0, 0, 0, 1]), 0.5, "2 and 3 are each other's neighbours");
        assert_eq!(same_group_neighbours(&points[..1], &[0]), 0.0);
    }
}
