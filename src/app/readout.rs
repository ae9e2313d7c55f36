//! What the page reports for one subject's trajectories, from the classifiers' probabilities and the
//! latents: the attribute's probability along each trajectory, whether each swap image counts as a flip in
//! CFRT (Eq. 3, one subject), the cosine similarity of the trajectory's directions (Fig. 5), and a t-SNE
//! map of the latents (Fig. 4, one subject); and, for a closer look at one image, a map of what the style
//! changed against the neutral image.

use crate::app::examples::attribute_of;
use crate::error::{Error, Result};
use crate::metrics::{CfrtSample, cfrt, direction_cosines, tsne};
use crate::synthetic::CLASS_LABEL;

/// Per image: probabilities of the classifier's labels.
pub type Probs = Vec<Vec<f32>>;

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
/// order of `labels` (empty when there is no classifier); `latents[style][swap]` are flattened latents. Rows
/// that do not match the styles and labels are an error.
pub fn readouts(
    labels: &[String],
    neutral_prompt: &str,
    styles: &[String],
    neutral_probs: &[f32],
    edits: &[Probs],
    neutral_latent: &[f32],
    latents: &[Vec<Vec<f32>>],
) -> Result<Vec<StyleReadout>> {
    let swaps = latents.first().map_or(0, Vec::len);
    let rows_fit = |lens: Vec<usize>| lens.len() == styles.len() && lens.iter().all(|&n| n == swaps);
    if !rows_fit(edits.iter().map(Vec::len).collect()) || !rows_fit(latents.iter().map(Vec::len).collect()) {
        return Err(Error::arg(format!(
            "{} styles need as many rows of {swaps} edits and latents, got {} and {}",
            styles.len(),
            edits.len(),
            latents.len()
        )));
    }
    if !neutral_probs.is_empty()
        && (neutral_probs.len() != labels.len() || edits.iter().flatten().any(|p| p.len() != labels.len()))
    {
        return Err(Error::arg(format!("every probability row must have the {} labels", labels.len())));
    }
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
            let (Some(column), Some(at)) = (columns[a], scored.iter().position(|&s| s == a)) else {
                return Ok(StyleReadout {
                    prompt: prompt.clone(),
                    attribute: None,
                    probability: Vec::new(),
                    flips: Vec::new(),
                    cfrt: None,
                    cosines,
                });
            };
            let class = class.filter(|&c| c != column);
            let samples: Vec<_> = (0..edits[a].len())
                .map(|k| CfrtSample::from_probabilities(neutral_probs, &scored_edits, k, at, &scored_columns, class))
                .collect::<Result<_>>()?;
            Ok(StyleReadout {
                prompt: prompt.clone(),
                attribute: Some(labels[column].clone()),
                probability: std::iter::once(neutral_probs[column] as f64)
                    .chain(edits[a].iter().map(|p| p[column] as f64))
                    .collect(),
                flips: samples.iter().map(|s| cfrt(std::slice::from_ref(s)) == 1.0).collect(),
                cfrt: Some(cfrt(&samples)),
                cosines,
            })
        })
        .collect()
}

/// One latent on the page's t-SNE map.
#[derive(Debug, Clone, PartialEq)]
pub struct MapDot {
    /// Index of the style, or `None` for the neutral latent.
    pub style: Option<usize>,
    /// Swap point (0 for the neutral latent).
    pub swap_point: usize,
    /// Map coordinates, scaled into [0, 1].
    pub x: f32,
    /// Map coordinates, scaled into [0, 1].
    pub y: f32,
}

/// The t-SNE map (perplexity 30 or what the count allows, started from `seed`) of the neutral latent and
/// every style's swap latents `latents[style][k]` at `swap_points[k]`, scaled into the unit square with
/// its aspect kept; empty when there are fewer than 4 latents.
pub fn latent_map(
    neutral_latent: &[f32],
    latents: &[Vec<Vec<f32>>],
    swap_points: &[usize],
    seed: u64,
) -> Result<Vec<MapDot>> {
    let mut dots = vec![MapDot { style: None, swap_point: 0, x: 0.0, y: 0.0 }];
    let mut points = vec![neutral_latent.to_vec()];
    for (a, zs) in latents.iter().enumerate() {
        for (z, &t) in zs.iter().zip(swap_points) {
            dots.push(MapDot { style: Some(a), swap_point: t, x: 0.0, y: 0.0 });
            points.push(z.clone());
        }
    }
    if points.len() < 4 {
        return Ok(Vec::new());
    }
    let map = tsne(&points, 30.0, seed)?;
    let (lo, hi) = map.iter().fold(([f32::MAX; 2], [f32::MIN; 2]), |(lo, hi), p| {
        ([lo[0].min(p[0]), lo[1].min(p[1])], [hi[0].max(p[0]), hi[1].max(p[1])])
    });
    let span = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(f32::MIN_POSITIVE);
    for (d, p) in dots.iter_mut().zip(&map) {
        // Centred in the unit square, the longer side filling it.
        d.x = 0.5 + (p[0] - 0.5 * (lo[0] + hi[0])) / span;
        d.y = 0.5 + (p[1] - 0.5 * (lo[1] + hi[1])) / span;
    }
    Ok(dots)
}

/// What a style changed: per pixel, how far `image` is from `neutral` (the mean over colours, amplified
/// fourfold so faint edits show), as a heat map from black through red to yellow; and the mean absolute
/// difference in 0..=1. The images must have the same size.
pub fn difference_map(image: &::image::RgbImage, neutral: &::image::RgbImage) -> Result<(::image::RgbImage, f64)> {
    if image.dimensions() != neutral.dimensions() {
        return Err(Error::arg(format!(
            "difference of a {:?} image and a {:?} one",
            image.dimensions(),
            neutral.dimensions()
        )));
    }
    let mut total = 0.0f64;
    let map = ::image::ImageBuffer::from_fn(image.width(), image.height(), |x, y| {
        let (a, b) = (image.get_pixel(x, y).0, neutral.get_pixel(x, y).0);
        let d = (0..3).map(|c| (a[c] as f64 - b[c] as f64).abs()).sum::<f64>() / (3.0 * 255.0);
        total += d;
        let v = (4.0 * d).min(1.0);
        // Black → red over the first half, red → yellow over the second.
        let red = (2.0 * v).min(1.0);
        let green = (2.0 * v - 1.0).max(0.0);
        ::image::Rgb([(255.0 * red).round() as u8, (255.0 * green).round() as u8, 0])
    });
    let n = (image.width() as f64 * image.height() as f64).max(1.0);
    Ok((map, total / n))
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
        let r = readouts(&labels(), "lesion (MEL)", &styles, &neutral, &edits, &z0, &zs).unwrap();
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
        )
        .unwrap();
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
        )
        .unwrap();
        assert_eq!(r[0].attribute, None, "no classifier, no attribute scores");
    }

    #[test]
    fn rows_that_do_not_match_the_styles_are_errors() {
        let styles = vec!["lesion (MEL) showing hair".to_string(), "lesion (MEL) showing ruler".to_string()];
        let row = vec![vec![0.9, 0.1, 0.1]];
        let (z0, zs) = (vec![0.0], vec![vec![vec![1.0]]; 2]);
        let run = |edits: &[Probs], zs: &[Vec<Vec<f32>>], neutral: &[f32]| {
            readouts(&labels(), "lesion (MEL)", &styles, neutral, edits, &z0, zs)
        };
        assert!(run(&[row.clone(), row.clone()], &zs, &[0.9, 0.1, 0.1]).is_ok());
        assert!(run(std::slice::from_ref(&row), &zs, &[0.9, 0.1, 0.1]).is_err(), "a style without edits");
        assert!(run(&[row.clone(), vec![]], &zs, &[0.9, 0.1, 0.1]).is_err(), "a style with fewer swap images");
        assert!(run(&[row.clone(), row.clone()], &zs[..1], &[0.9, 0.1, 0.1]).is_err(), "a style without latents");
        assert!(run(&[row.clone(), vec![vec![0.9]]], &zs, &[0.9, 0.1, 0.1]).is_err(), "a short probability row");
        assert!(run(&[row.clone(), row], &zs, &[0.9]).is_err(), "a short neutral row");
    }

    #[test]
    fn the_map_places_every_latent_in_the_unit_square() {
        // Two styles moving away from the neutral latent in different directions.
        let z0 = vec![0.0f32; 8];
        let away =
            |axis: usize| (1..=4).map(|k| (0..8).map(|d| if d == axis { k as f32 } else { 0.0 }).collect()).collect();
        let dots = latent_map(&z0, &[away(0), away(5)], &[5, 10, 15, 20], 3).unwrap();
        assert_eq!(dots.len(), 9);
        assert_eq!((dots[0].style, dots[0].swap_point), (None, 0));
        assert_eq!((dots[8].style, dots[8].swap_point), (Some(1), 20));
        assert!(dots.iter().all(|d| (0.0..=1.0).contains(&d.x) && (0.0..=1.0).contains(&d.y)));
        let spread = |f: fn(&MapDot) -> f32| {
            dots.iter().map(f).fold(f32::MIN, f32::max) - dots.iter().map(f).fold(f32::MAX, f32::min)
        };
        assert!((spread(|d| d.x).max(spread(|d| d.y)) - 1.0).abs() < 1e-5, "the longer side fills the square");
        assert_eq!(
            latent_map(&z0, &[away(0)], &[5, 10, 15, 20], 3).unwrap(),
            latent_map(&z0, &[away(0)], &[5, 10, 15, 20], 3).unwrap()
        );
        assert!(latent_map(&z0, &[vec![vec![1.0; 8]; 2]], &[5, 10], 0).unwrap().is_empty(), "3 latents: no map");
    }

    #[test]
    fn the_difference_map_shows_only_what_changed() {
        let neutral = ::image::RgbImage::from_pixel(4, 2, ::image::Rgb([100, 100, 100]));
        let mut image = neutral.clone();
        image.put_pixel(1, 1, ::image::Rgb([100 + 51, 100 + 51, 100 + 51]));
        let (map, mean) = difference_map(&image, &neutral).unwrap();
        assert_eq!(map.get_pixel(0, 0).0, [0, 0, 0], "unchanged pixels are black");
        // 0.2 of the range, amplified to 0.8: past red, on the way to yellow.
        assert_eq!(map.get_pixel(1, 1).0, [255, 153, 0]);
        assert!((mean - 0.2 / 8.0).abs() < 1e-12, "{mean}");
        assert!(difference_map(&image, &::image::RgbImage::new(2, 2)).is_err());
    }
}
