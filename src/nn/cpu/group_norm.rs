//! GroupNorm (and the SiLU after it in the ResNet blocks) in one pass per group, both ways.

use rayon::prelude::*;

use super::{exp, lane_dot, lane_sum};

/// Sizes of one GroupNorm over a contiguous `[batch, channels, pixels]` buffer.
#[derive(Debug, Clone, Copy)]
pub struct Groups {
    /// Batch size.
    pub batch: usize,
    /// Channels (a multiple of `groups`).
    pub channels: usize,
    /// Pixels per channel (H × W).
    pub pixels: usize,
    /// Number of groups.
    pub groups: usize,
}

/// `silu(GroupNorm(x))` in place, with per-channel `gamma`/`beta` and PyTorch's biased variance.
///
/// # Panics
/// If the buffers' lengths do not match `g` or the channels do not split into the groups.
pub fn group_norm_silu(x: &mut [f32], g: Groups, gamma: &[f32], beta: &[f32], eps: f32) {
    group_norm(x, g, gamma, beta, eps, true);
}

/// GroupNorm of `x` in place, then SiLU if `silu`, as [`group_norm_silu`]; returns each (image, group)'s
/// mean and `1/σ`, which [`group_norm_backward`] takes.
///
/// # Panics
/// As [`group_norm_silu`].
pub fn group_norm(x: &mut [f32], g: Groups, gamma: &[f32], beta: &[f32], eps: f32, silu: bool) -> Vec<[f32; 2]> {
    let Groups { batch, channels, pixels, groups } = g;
    assert!(groups > 0 && channels.is_multiple_of(groups), "{channels} channels in {groups} groups");
    assert_eq!(x.len(), batch * channels * pixels, "input buffer");
    assert!(gamma.len() == channels && beta.len() == channels, "affine parameters");
    let per_group = channels / groups;
    if x.is_empty() {
        return vec![[0.0, 1.0]; batch * groups];
    }
    x.par_chunks_mut(per_group * pixels)
        .enumerate()
        .map(|(i, group)| {
            let c = (i % groups) * per_group..(i % groups + 1) * per_group;
            norm_group(group, pixels, &gamma[c.clone()], &beta[c], eps, silu)
        })
        .collect()
}

simd_dispatch!(
    /// One group's channels, each `pixels` long: statistics, then normalize, scale, shift (and SiLU).
    fn norm_group(x: &mut [f32], pixels: usize, gamma: &[f32], beta: &[f32], eps: f32, silu: bool) -> [f32; 2] = norm_body
);

#[inline(always)]
fn norm_body(x: &mut [f32], pixels: usize, gamma: &[f32], beta: &[f32], eps: f32, silu: bool) -> [f32; 2] {
    let n = x.len() as f32;
    let mean = lane_sum(x, |v| v) / n;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
    let inv_std = 1.0 / (var + eps).sqrt();
    for ((channel, &gamma), &beta) in x.chunks_exact_mut(pixels).zip(gamma).zip(beta) {
        let scale = gamma * inv_std;
        let shift = beta - mean * scale;
        if silu {
            channel.iter_mut().for_each(|v| {
                let y = *v * scale + shift;
                *v = y / (1.0 + exp(-y));
            });
        } else {
            channel.iter_mut().for_each(|v| *v = *v * scale + shift);
        }
    }
    [mean, inv_std]
}

/// The gradients `(dx, dgamma, dbeta)` of [`group_norm`] (with SiLU if `silu`) at input `x` with its
/// statistics `stats`, for the output gradient `grad`. Per (image, group), in parallel: the gradient before
/// the affine step and the SiLU, `da`, then per channel `Σ da` and `Σ da·x̂` (the parameters' gradients),
/// then `dx = (γ·da − mean(γ·da) − x̂·mean(γ·da·x̂)) / σ`.
///
/// # Panics
/// If the buffers' lengths do not match `g`.
pub fn group_norm_backward(
    x: &[f32],
    grad: &[f32],
    stats: &[[f32; 2]],
    g: Groups,
    (gamma, beta): (&[f32], &[f32]),
    silu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Groups { batch, channels, pixels, groups } = g;
    assert!(groups > 0 && channels.is_multiple_of(groups), "{channels} channels in {groups} groups");
    assert!(x.len() == batch * channels * pixels && grad.len() == x.len(), "input and gradient buffers");
    assert!(gamma.len() == channels && beta.len() == channels && stats.len() == batch * groups, "parameters");
    let per_group = channels / groups;
    let mut dx = vec![0.0f32; x.len()];
    let (mut dgamma, mut dbeta) = (vec![0.0f32; channels], vec![0.0f32; channels]);
    if x.is_empty() {
        return (dx, dgamma, dbeta);
    }
    let len = per_group * pixels;
    let sums: Vec<Vec<[f32; 2]>> = dx
        .par_chunks_mut(len)
        .zip(x.par_chunks(len).zip(grad.par_chunks(len)))
        .enumerate()
        .map(|(i, (dx, (x, grad)))| {
            let c = (i % groups) * per_group..(i % groups + 1) * per_group;
            let group = NormGroup { pixels, gamma: &gamma[c.clone()], beta: &beta[c], stats: stats[i], silu };
            norm_backward_group(dx, x, grad, group)
        })
        .collect();
    for (i, sums) in sums.iter().enumerate() {
        let c0 = (i % groups) * per_group;
        for (j, [da, da_xhat]) in sums.iter().enumerate() {
            dbeta[c0 + j] += da;
            dgamma[c0 + j] += da_xhat;
        }
    }
    (dx, dgamma, dbeta)
}

/// One (image, group) of [`group_norm_backward`]: its channels' parameters and its statistics.
#[derive(Clone, Copy)]
struct NormGroup<'a> {
    pixels: usize,
    gamma: &'a [f32],
    beta: &'a [f32],
    stats: [f32; 2],
    silu: bool,
}

simd_dispatch!(
    /// One (image, group): writes its `dx`, returns each channel's `[Σ da, Σ da·x̂]`.
    fn norm_backward_group(dx: &mut [f32], x: &[f32], grad: &[f32], group: NormGroup<'_>) -> Vec<[f32; 2]> = norm_backward_body
);

#[inline(always)]
fn norm_backward_body(dx: &mut [f32], x: &[f32], grad: &[f32], group: NormGroup<'_>) -> Vec<[f32; 2]> {
    let NormGroup { pixels, gamma, beta, stats: [mean, inv_std], silu } = group;
    let n = x.len() as f32;
    let channels = dx.chunks_exact_mut(pixels).zip(x.chunks_exact(pixels)).zip(grad.chunks_exact(pixels));
    // da (into dx), then its sums: Σ da·x̂ = (Σ da·x − mean·Σ da) / σ.
    let sums: Vec<[f32; 2]> = channels
        .zip(gamma.iter().zip(beta))
        .map(|(((da, x), grad), (&gamma, &beta))| {
            if silu {
                let (scale, shift) = (gamma * inv_std, beta - mean * gamma * inv_std);
                for ((d, &v), &g) in da.iter_mut().zip(x).zip(grad) {
                    let a = v * scale + shift;
                    let e = exp(-a);
                    let s = 1.0 / (1.0 + e);
                    *d = g * s * (1.0 + a * e * s);
                }
            } else {
                da.copy_from_slice(grad);
            }
            let (sum, dot) = (lane_sum(da, |v| v), lane_dot(da, x));
            [sum, (dot - mean * sum) * inv_std]
        })
        .collect();
    let (mut m1, mut m2) = (0.0f32, 0.0f32);
    for (&gamma, [sum, sum_xhat]) in gamma.iter().zip(&sums) {
        m1 += gamma * sum;
        m2 += gamma * sum_xhat;
    }
    let (m1, m2) = (m1 / n, m2 / n);
    // dx = (γ·da − m1 − x̂·m2) / σ, with x̂ = (x − mean) / σ: a·da + b·x + c per channel.
    for ((d, x), &gamma) in dx.chunks_exact_mut(pixels).zip(x.chunks_exact(pixels)).zip(gamma) {
        let (a, b) = (gamma * inv_std, -m2 * inv_std * inv_std);
        let c = -m1 * inv_std - b * mean;
        d.iter_mut().zip(x).for_each(|(d, &x)| *d = a * *d + b * x + c);
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_norm_silu_equals_the_textbook_formula() {
        let mut rng = crate::rng::PortableNormal::new(9);
        let g = Groups { batch: 2, channels: 6, pixels: 37, groups: 3 };
        let x: Vec<f32> = (0..2 * 6 * 37).map(|i| rng.sample() * 3.0 + (i % 5) as f32).collect();
        let gamma: Vec<f32> = (0..6).map(|c| 0.5 + c as f32 * 0.3).collect();
        let beta: Vec<f32> = (0..6).map(|c| c as f32 * 0.2 - 0.4).collect();
        let mut ours = x.clone();
        group_norm_silu(&mut ours, g, &gamma, &beta, 1e-5);
        let per_group = 2 * 37;
        for (i, (group, out)) in x.chunks(per_group).zip(ours.chunks(per_group)).enumerate() {
            let n = per_group as f64;
            let mean = group.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = group.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            for (j, (&v, &o)) in group.iter().zip(out).enumerate() {
                let c = (i % 3) * 2 + j / 37;
                let y = (v as f64 - mean) / (var + 1e-5).sqrt() * gamma[c] as f64 + beta[c] as f64;
                let want = y / (1.0 + (-y).exp());
                assert!((o as f64 - want).abs() < 2e-6, "group {i}, element {j}: {o} vs {want}");
            }
        }
    }

    #[test]
    fn group_norm_gradients_equal_the_textbook_formulas_derivatives() {
        let g = Groups { batch: 2, channels: 6, pixels: 5, groups: 3 };
        let mut rng = crate::rng::PortableNormal::new(12);
        let mut buf =
            |n: usize, scale: f32, shift: f32| (0..n).map(|_| shift + scale * rng.sample()).collect::<Vec<_>>();
        // Wide affine parameters push the SiLU into σ's flat tails.
        let (x, gamma, beta) = (buf(60, 2.0, 0.5), buf(6, 3.0, 1.0), buf(6, 2.0, 0.0));
        let dy = buf(60, 1.0, 0.0);
        // The textbook in f64: loss = Σ dy · silu?(γ·(x − μ)/σ + β).
        let loss = |x: &[f64], gamma: &[f64], beta: &[f64], silu: bool| -> f64 {
            let mut total = 0.0;
            for (i, group) in x.chunks(10).enumerate() {
                let mean = group.iter().sum::<f64>() / 10.0;
                let var = group.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 10.0;
                for (j, &v) in group.iter().enumerate() {
                    let c = (i % 3) * 2 + j / 5;
                    let a = gamma[c] * (v - mean) / (var + 1e-5).sqrt() + beta[c];
                    let y = if silu { a / (1.0 + (-a).exp()) } else { a };
                    total += dy[i * 10 + j] as f64 * y;
                }
            }
            total
        };
        let wide = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        for silu in [true, false] {
            let mut y = x.clone();
            let stats = group_norm(&mut y, g, &gamma, &beta, 1e-5, silu);
            let (dx, dgamma, dbeta) = group_norm_backward(&x, &dy, &stats, g, (&gamma, &beta), silu);
            let (x, gamma, beta) = (wide(&x), wide(&gamma), wide(&beta));
            // Central differences of the f64 loss, input by input.
            let derivative = |which: usize, i: usize| {
                let mut p = [x.clone(), gamma.clone(), beta.clone()];
                let h = 1e-6;
                p[which][i] += h;
                let up = loss(&p[0], &p[1], &p[2], silu);
                p[which][i] -= 2.0 * h;
                (up - loss(&p[0], &p[1], &p[2], silu)) / (2.0 * h)
            };
            for (which, got) in [dx, dgamma, dbeta].iter().enumerate() {
                for (i, &v) in got.iter().enumerate() {
                    let want = derivative(which, i);
                    assert!((v as f64 - want).abs() < 1e-4 * want.abs().max(1.0), "{silu} {which} {i}: {v} vs {want}");
                }
            }
        }
    }
}
