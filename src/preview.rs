//! A cheap look at a latent without the VAE: each latent pixel mapped to one colour by a linear map fitted to
//! the model's own decoder. The page shows the sampler's predicted clean latents x̂₀ this way while it
//! denoises, so images form on screen step by step for the cost of a few multiply-adds per pixel (a VAE decode
//! costs seconds to minutes on software WebGPU).
//!
//! The map is least squares from latent pixels to the decoded image averaged over the pixel's
//! `downsampling`×`downsampling` patch, fitted on real samples (`traverse fit-preview`) and stored beside the
//! model as [`FILE`]. A model without one gets [`LatentPreview::channels`]: the first three latent channels
//! shown as false colour, said as such on the page.

use ::image::{ImageBuffer, Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where a model folder keeps its fitted preview.
pub const FILE: &str = "vae/latent_preview.json";

/// Latent pixel → RGB in [-1, 1] (the VAE's image range).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentPreview {
    /// One row per colour (R, G, B): a weight per latent channel, then the bias.
    pub rgb: Vec<Vec<f32>>,
    /// Whether the map was fitted to the model's decoder (false: false colour).
    pub fitted: bool,
}

impl LatentPreview {
    /// The fallback for a model with no fitted preview: channels 0, 1, 2 (repeated if fewer) as R, G, B,
    /// halved, since Stable Diffusion's scaled latents have about unit spread.
    pub fn channels(channels: usize) -> Self {
        let rgb = (0..3)
            .map(|k| (0..=channels).map(|c| if channels > 0 && c == k % channels { 0.5 } else { 0.0 }).collect())
            .collect();
        Self { rgb, fitted: false }
    }

    /// Fits the map on pairs of a latent `[C, h, w]` and its decoded image `[3, h·f, w·f]` (values as the
    /// VAE gives them, f the VAE's downsampling), all flattened channel-major.
    pub fn fit(pairs: &[(&[f32], &[f32])], channels: usize, [h, w]: [usize; 2], f: usize) -> Result<Self> {
        let n = channels + 1;
        // Normal equations of the least squares, with the bias as a constant input.
        let mut ata = vec![0.0f64; n * n];
        let mut atb = vec![[0.0f64; 3]; n];
        for_each_pixel(pairs, channels, [h, w], f, |input, colour| {
            for i in 0..n {
                for j in 0..n {
                    ata[i * n + j] += input[i] * input[j];
                }
                for k in 0..3 {
                    atb[i][k] += input[i] * colour[k];
                }
            }
        })?;
        // A small ridge keeps a constant channel from making the system singular.
        let scale = (0..n).map(|i| ata[i * n + i]).fold(0.0, f64::max).max(1.0);
        for i in 0..n {
            ata[i * n + i] += 1e-9 * scale;
        }
        let mut rgb = vec![vec![0.0f32; n]; 3];
        for k in 0..3 {
            let b: Vec<f64> = atb.iter().map(|r| r[k]).collect();
            let x = solve(ata.clone(), b, n).ok_or_else(|| Error::Numeric("preview fit: singular system".into()))?;
            rgb[k] = x.iter().map(|&v| v as f32).collect();
        }
        Ok(Self { rgb, fitted: true })
    }

    /// How much of the decoded images' variation (patch-averaged, as in [`fit`](Self::fit)) the map explains:
    /// R² over all pixels and colours, 1 for a perfect map.
    pub fn r_squared(&self, pairs: &[(&[f32], &[f32])], [h, w]: [usize; 2], f: usize) -> Result<f64> {
        let channels = self.rgb[0].len() - 1;
        let (mut sum, mut sum_sq, mut residual, mut count) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for_each_pixel(pairs, channels, [h, w], f, |input, colour| {
            for (k, row) in self.rgb.iter().enumerate() {
                let predicted: f64 = row.iter().zip(input).map(|(&a, &x)| a as f64 * x).sum();
                residual += (predicted - colour[k]).powi(2);
                sum += colour[k];
                sum_sq += colour[k] * colour[k];
                count += 1.0;
            }
        })?;
        let variance = sum_sq - sum * sum / count.max(1.0);
        Ok(if variance > 0.0 { 1.0 - residual / variance } else { 0.0 })
    }

    /// Reads a stored preview, checking it fits a model with `channels` latent channels.
    pub fn from_json(json: &[u8], channels: usize) -> Result<Self> {
        let p: Self = serde_json::from_slice(json).map_err(|e| Error::config(FILE, e))?;
        let ok = p.rgb.len() == 3 && p.rgb.iter().all(|r| r.len() == channels + 1 && r.iter().all(|v| v.is_finite()));
        if !ok {
            return Err(Error::config(FILE, format!("expected 3 rows of {} finite numbers", channels + 1)));
        }
        Ok(p)
    }

    /// The preview of one latent `[C, h, w]` (flattened channel-major) as an `h`×`w` RGB image.
    pub fn image(&self, latent: &[f32], [h, w]: [usize; 2]) -> Result<RgbImage> {
        let channels = self.rgb[0].len() - 1;
        let plane = h * w;
        if latent.len() < channels * plane {
            return Err(Error::Image(format!("{} values for a {channels}×{h}×{w} latent", latent.len())));
        }
        let px = |v: f32| ((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
        Ok(ImageBuffer::from_fn(w as u32, h as u32, |x, y| {
            let i = y as usize * w + x as usize;
            let colour =
                |row: &[f32]| row[channels] + (0..channels).map(|c| row[c] * latent[c * plane + i]).sum::<f32>();
            Rgb([px(colour(&self.rgb[0])), px(colour(&self.rgb[1])), px(colour(&self.rgb[2]))])
        }))
    }
}

/// Calls `each(input, colour)` for every latent pixel of every pair: its channels then 1 (for the bias), and
/// the mean colour of the image patch it decodes to.
fn for_each_pixel(
    pairs: &[(&[f32], &[f32])],
    channels: usize,
    [h, w]: [usize; 2],
    f: usize,
    mut each: impl FnMut(&[f64], [f64; 3]),
) -> Result<()> {
    let plane = h * w;
    let mut input = vec![1.0f64; channels + 1];
    for (latent, image) in pairs {
        if latent.len() != channels * plane || image.len() != 3 * plane * f * f {
            return Err(Error::arg(format!(
                "preview fit: a latent of {} values and an image of {} for {channels}×{h}×{w} latents",
                latent.len(),
                image.len()
            )));
        }
        for y in 0..h {
            for x in 0..w {
                for (c, v) in input.iter_mut().take(channels).enumerate() {
                    *v = latent[c * plane + y * w + x] as f64;
                }
                let mut colour = [0.0f64; 3];
                for (k, v) in colour.iter_mut().enumerate() {
                    let base = k * plane * f * f;
                    let mut total = 0.0;
                    for dy in 0..f {
                        let row = base + (y * f + dy) * w * f + x * f;
                        total += image[row..row + f].iter().map(|&p| p as f64).sum::<f64>();
                    }
                    *v = total / (f * f) as f64;
                }
                each(&input, colour);
            }
        }
    }
    Ok(())
}

/// Solves `a x = b` (`a` n×n, row-major) by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))?;
        if a[pivot * n + col].abs() < 1e-300 {
            return None;
        }
        for j in 0..n {
            a.swap(col * n + j, pivot * n + j);
        }
        b.swap(col, pivot);
        for row in col + 1..n {
            let m = a[row * n + col] / a[col * n + col];
            for j in col..n {
                a[row * n + j] -= m * a[col * n + j];
            }
            b[row] -= m * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|j| a[row * n + j] * x[j]).sum();
        x[row] = (b[row] - s) / a[row * n + row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linear_decoder_is_recovered_exactly() {
        // A "decoder" that paints each 2×2 patch with a known linear map of its latent pixel.
        let truth = [[0.3f32, -0.2, 0.1, 0.05, 0.1], [0.0, 0.4, -0.3, 0.2, -0.2], [-0.1, 0.1, 0.2, -0.4, 0.3]];
        let (c, h, w, f) = (4, 3, 5, 2);
        let latent: Vec<f32> = (0..c * h * w).map(|i| ((i * 37 % 23) as f32 / 11.0) - 1.0).collect();
        let mut image = vec![0.0f32; 3 * h * w * f * f];
        for k in 0..3 {
            for y in 0..h * f {
                for x in 0..w * f {
                    let i = (y / f) * w + x / f;
                    image[k * h * w * f * f + y * w * f + x] =
                        truth[k][c] + (0..c).map(|ch| truth[k][ch] * latent[ch * h * w + i]).sum::<f32>();
                }
            }
        }
        let p = LatentPreview::fit(&[(&latent, &image)], c, [h, w], f).unwrap();
        assert!(p.fitted);
        assert!((p.r_squared(&[(&latent, &image)], [h, w], f).unwrap() - 1.0).abs() < 1e-9);
        assert!(LatentPreview::channels(c).r_squared(&[(&latent, &image)], [h, w], f).unwrap() < 0.5);
        for (row, want) in p.rgb.iter().zip(truth) {
            for (got, want) in row.iter().zip(want) {
                assert!((got - want).abs() < 1e-4, "{got} vs {want}");
            }
        }
        let again = LatentPreview::from_json(serde_json::to_string(&p).unwrap().as_bytes(), c).unwrap();
        assert_eq!(again, p);
        let rgb = p.image(&latent, [h, w]).unwrap();
        assert_eq!(rgb.dimensions(), (w as u32, h as u32));
        let want = ((image[0] / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
        assert_eq!(rgb.get_pixel(0, 0)[0], want);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(LatentPreview::fit(&[(&[0.0; 3], &[0.0; 12])], 4, [1, 1], 1).is_err());
        assert!(LatentPreview::from_json(b"{\"rgb\": [[1, 2]], \"fitted\": true}", 4).is_err());
        assert!(LatentPreview::from_json(b"not json", 4).is_err());
        assert!(LatentPreview::channels(4).image(&[0.0; 3], [1, 1]).is_err());
        // The fallback shows channel k as colour k.
        let p = LatentPreview::channels(4);
        assert_eq!(p.rgb[1], [0.0, 0.5, 0.0, 0.0, 0.0]);
        assert!(!p.fitted);
    }
}
