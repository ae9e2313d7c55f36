//! The paper's measures along a trajectory (section 3.2): CFRT (Eq. 3) and the cosine similarity of
//! trajectory directions (Fig. 5). LPIPS needs AlexNet weights and lands separately.

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

/// Classifier Flip Rate along a Trajectory (Eq. 3): the fraction of samples whose `A` classifier moves more
/// when `A` is edited than when any other attribute is, while the class and every other attribute stay.
/// For generated images the labels come from the attribute classifiers; for phantoms they are known.
pub fn cfrt(samples: &[CfrtSample]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let flips = samples
        .iter()
        .filter(|s| {
            let own = (s.f_neutral - s.f_edited).abs();
            let others = s.f_other_edits.iter().map(|f| (s.f_neutral - f).abs()).fold(0.0, f64::max);
            own > others && s.class.0 == s.class.1 && s.other_attributes.0 == s.other_attributes.1
        })
        .count();
    flips as f64 / samples.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
