//! Bézier traversal (the paper's appendix B): a Bernstein-polynomial curve through control latents of a
//! trajectory, sampled at new latents that are decoded on demand.
//!
//! Which control points: a trajectory is the neutral latent followed by one latent per swap point, ordered
//! by growing attribute strength (10 latents for the paper's 9 swap points). A Bézier curve passes through
//! only its first and last control points, so we always keep both ends — the neutral image and the
//! strongest swap — and spread the rest evenly by index: control `i` of `k` is trajectory latent
//! `round(i·(n−1)/(k−1))`. For the paper's setting (n = 10, k = 7) that is the neutral latent and the swap
//! points 10, 15, 25, 30, 40 and 45 (indices 0, 2, 3, 5, 6, 8, 9).

use burn::prelude::*;

use crate::error::{Error, Result};

/// The paper's count of control points.
pub const PAPER_CONTROL_POINTS: usize = 7;
/// The paper's count of interpolated latents.
pub const PAPER_SAMPLES: usize = 50;

/// Indices into a trajectory of `len` latents of `count` evenly spread control points, both ends included.
pub fn control_indices(len: usize, count: usize) -> Result<Vec<usize>> {
    if count < 2 || count > len {
        return Err(Error::arg(format!("need 2..={len} control points, got {count}")));
    }
    Ok((0..count).map(|i| ((i * (len - 1)) as f64 / (count - 1) as f64).round() as usize).collect())
}

/// Bernstein weights C(n,i)·(1−s)^(n−i)·s^i of a degree-n curve at parameter `s` ∈ [0, 1].
pub fn bernstein(n: usize, s: f64) -> Vec<f64> {
    let mut binom = 1.0f64;
    (0..=n)
        .map(|i| {
            if i > 0 {
                binom = binom * (n - i + 1) as f64 / i as f64;
            }
            binom * (1.0 - s).powi((n - i) as i32) * s.powi(i as i32)
        })
        .collect()
}

/// `samples` latents evenly spaced in the curve parameter from the first to the last control point.
pub fn interpolate(controls: &[Tensor<4>], samples: usize) -> Result<Vec<Tensor<4>>> {
    if controls.len() < 2 || samples < 2 {
        return Err(Error::arg("need at least 2 control points and 2 samples"));
    }
    let shape = controls[0].dims();
    if controls.iter().any(|c| c.dims() != shape) {
        return Err(Error::arg("control latents differ in shape"));
    }
    let n = controls.len() - 1;
    Ok((0..samples)
        .map(|j| {
            let s = j as f64 / (samples - 1) as f64;
            bernstein(n, s)
                .into_iter()
                .zip(controls)
                .map(|(w, p)| p.clone() * w)
                .reduce(|a, b| a + b)
                .expect("at least two control points")
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_control_points() {
        assert_eq!(control_indices(10, 7).unwrap(), vec![0, 2, 3, 5, 6, 8, 9]);
        assert!(control_indices(5, 7).is_err());
    }

    #[test]
    fn bernstein_weights_partition_unity() {
        for s in [0.0, 0.3, 0.77, 1.0] {
            let w = bernstein(6, s);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        assert_eq!(bernstein(6, 0.0)[0], 1.0);
        assert_eq!(bernstein(6, 1.0)[6], 1.0);
    }
}
