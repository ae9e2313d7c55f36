//! What the page reports for one subject's trajectories, from the classifiers' probabilities and the
//! latents: the attribute's probability along each trajectory, whether each swap image counts as a flip in
//! CFRT (Eq. 3, one subject), and the cosine similarity of the trajectory's directions (Fig. 5).

use crate::app::examples::attribute_of;
use crate::evaluate::{CLASS_LABEL, Probs, cfrt_sample};
use crate::metrics::{cfrt, direction_cosines};

/// Readouts of one style prompt's trajectory.
#[derive(Debug, Clone, PartialEq)]
pub struct StyleReadout {
    /// The style prompt.
    pub prompt: String,
    /// The classifier label the prompt turns on, if one is named in it.
    pub attribute: Option<String>,
    /// That label's probability on the neutral image, then on each swap image.
    pub probability: Vec<f64>,
    /// Per swap image: whether it counts as a flip in CFRT (the attribute moves more than under any other
    /// style, while the diagnosis and every other attribute keep their decisions).
    pub flips: Vec<bool>,
    /// The fraction of flips (CFRT over this trajectory), when there is an attribute.
    pub cfrt: Option<f64>,
    /// Pairwise cosines of the directions z_t − z_neutral, swap points in order.
    pub cosines: Vec<Vec<f64>>,
}

/// Readouts of every style. `neutral_probs` and `edits[style][swap]` are classifier probabilities in the
/// order of `labels` (empty when there is no classifier); `latents[style][swap]` are flattened latents.
pub fn readouts(
    labels: &[String],
    neutral_prompt: &str,
    styles: &[String],
    neutral_probs: &[f32],
    edits: &[Probs],
    neutral_latent: &[f32],
    latents: &[Vec<Vec<f32>>],
) -> Vec<StyleReadout> {
    let columns: Vec<Option<usize>> = styles
        .iter()
        .map(|s| attribute_of(labels, neutral_prompt, s).and_then(|a| labels.iter().position(|l| l == a)))
        .map(|c| c.filter(|_| !neutral_probs.is_empty()))
        .collect();
    // CFRT compares each style with the other styles that edit a known attribute.
    let scored: Vec<usize> = (0..styles.len()).filter(|&a| columns[a].is_some()).collect();
    let scored_columns: Vec<usize> = scored.iter().filter_map(|&a| columns[a]).collect();
    let scored_edits: Vec<Probs> = scored.iter().map(|&a| edits[a].clone()).collect();
    let class = labels.iter().position(|l| l == CLASS_LABEL);
    styles
        .iter()
        .enumerate()
        .map(|(a, prompt)| {
            let cosines = direction_cosines(neutral_latent, &latents[a]);
            let Some(column) = columns[a] else {
                return StyleReadout {
                    prompt: prompt.clone(),
                    attribute: None,
                    probability: Vec::new(),
                    flips: Vec::new(),
                    cfrt: None,
                    cosines,
                };
            };
            let at = scored.iter().position(|&s| s == a).expect("a scored style");
            let class = class.filter(|&c| c != column);
            let samples: Vec<_> = (0..edits[a].len())
                .map(|k| cfrt_sample(neutral_probs, &scored_edits, k, at, &scored_columns, class))
                .collect();
            StyleReadout {
                prompt: prompt.clone(),
                attribute: Some(labels[column].clone()),
                probability: std::iter::once(neutral_probs[column] as f64)
                    .chain(edits[a].iter().map(|p| p[column] as f64))
                    .collect(),
                flips: samples.iter().map(|s| cfrt(std::slice::from_ref(s)) == 1.0).collect(),
                cfrt: Some(cfrt(&samples)),
                cosines,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["melanoma", "hair", "ruler"].map(String::from).to_vec()
    }

    #[test]
    fn flips_follow_equation_3_per_swap_point() {
        let styles = vec!["lesion (MEL) showing hair".to_string(), "lesion (MEL) showing ruler".to_string()];
        // Neutral: melanoma, no hair, no ruler.
        let neutral = vec![0.9, 0.1, 0.1];
        let edits = vec![
            // hair: t1 no change, t2 hair grows, t3 hair grows but the diagnosis flips.
            vec![vec![0.9, 0.1, 0.1], vec![0.9, 0.8, 0.2], vec![0.2, 0.9, 0.1]],
            // ruler: t1 a little, t2 ruler grows and so does hair (leak), t3 ruler.
            vec![vec![0.9, 0.1, 0.2], vec![0.9, 0.7, 0.9], vec![0.9, 0.1, 0.9]],
        ];
        let z0 = vec![0.0, 0.0];
        let zs = vec![vec![vec![1.0, 0.0], vec![2.0, 0.0], vec![0.0, 1.0]]; 2];
        let r = readouts(&labels(), "lesion (MEL)", &styles, &neutral, &edits, &z0, &zs);
        assert_eq!(r[0].attribute.as_deref(), Some("hair"));
        assert_eq!(r[0].probability, vec![0.1f32 as f64, 0.1f32 as f64, 0.8f32 as f64, 0.9f32 as f64]);
        // t1: no move; t2: hair moved 0.7 vs 0.6 under the ruler edit; t3: diagnosis changed.
        assert_eq!(r[0].flips, [false, true, false]);
        assert_eq!(r[0].cfrt, Some(1.0 / 3.0));
        // t1: moved 0.1 vs 0 under hair; t2: hair (another attribute) turned on; t3: clean.
        assert_eq!(r[1].flips, [true, false, true]);
        assert!((r[0].cosines[0][1] - 1.0).abs() < 1e-12 && r[0].cosines[0][2].abs() < 1e-12);
    }

    #[test]
    fn styles_without_a_known_attribute_get_no_scores() {
        let styles = vec!["lesion (MEL) with a sunset".to_string()];
        let r = readouts(
            &labels(),
            "lesion (MEL)",
            &styles,
            &[0.9, 0.1, 0.1],
            &[vec![vec![0.9, 0.1, 0.1]]],
            &[0.0],
            &[vec![vec![1.0]]],
        );
        assert_eq!(r[0].attribute, None);
        assert_eq!(r[0].cfrt, None);
        let r = readouts(
            &labels(),
            "lesion",
            &["lesion with hair".into()],
            &[],
            &[vec![vec![]]],
            &[0.0],
            &[vec![vec![1.0]]],
        );
        assert_eq!(r[0].attribute, None, "no classifier, no attribute scores");
    }
}
