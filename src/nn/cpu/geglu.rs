//! The transformer's feed-forward gate, GEGLU, both ways.

use rayon::prelude::*;

use super::exp;

/// GEGLU over rows of `[value | gate]` (each half `inner` wide): `value · gelu(gate)`, with GELU's erf form.
///
/// # Panics
/// If `h` is not made of whole rows of `2 · inner`.
pub fn geglu(h: &[f32], inner: usize) -> Vec<f32> {
    assert!(inner > 0 && h.len().is_multiple_of(2 * inner), "rows of 2 × {inner}");
    let mut out = vec![0.0f32; h.len() / 2];
    out.par_chunks_mut(inner).zip(h.par_chunks(2 * inner)).with_min_len(16).for_each(|(o, row)| geglu_row(o, row));
    out
}

simd_dispatch!(
    /// One row: `out[j] = row[j] · gelu(row[inner + j])`.
    fn geglu_row(out: &mut [f32], row: &[f32]) -> () = geglu_body
);

#[inline(always)]
fn geglu_body(out: &mut [f32], row: &[f32]) {
    let (value, gate) = row.split_at(out.len());
    for ((o, &v), &g) in out.iter_mut().zip(value).zip(gate) {
        *o = v * gelu(g);
    }
}

/// `x · Φ(x)`, the erf form of GELU.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    x * normal(x).0
}

/// The standard normal's `(Φ(x), φ(x))`: erf from Abramowitz & Stegun 7.1.26 (absolute error under 1.5e-7),
/// branch-free, its `e^(-x²/2)` shared with the density.
#[inline(always)]
fn normal(x: f32) -> (f32, f32) {
    // 1/√(2π).
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let e = exp(-z * z);
    let erf = (1.0 - poly * e).copysign(x);
    (0.5 * (1.0 + erf), e * FRAC_1_SQRT_2PI)
}

/// The gradient of [`geglu`]'s input rows `[value | gate]` for the output gradient `grad`: `grad · gelu(gate)`
/// for the values, `grad · value · gelu'(gate)` for the gates, where `gelu'(x) = Φ(x) + x·φ(x)`.
///
/// # Panics
/// If `h` is not made of whole rows of `2 · inner`, or `grad` not of rows of `inner`.
pub fn geglu_backward(h: &[f32], grad: &[f32], inner: usize) -> Vec<f32> {
    assert!(inner > 0 && h.len().is_multiple_of(2 * inner), "rows of 2 × {inner}");
    assert_eq!(grad.len(), h.len() / 2, "gradient buffer");
    let mut dh = vec![0.0f32; h.len()];
    dh.par_chunks_mut(2 * inner)
        .zip(h.par_chunks(2 * inner).zip(grad.par_chunks(inner)))
        .with_min_len(16)
        .for_each(|(d, (row, g))| geglu_backward_row(d, row, g));
    dh
}

simd_dispatch!(
    /// One row of [`geglu_backward`].
    fn geglu_backward_row(dh: &mut [f32], row: &[f32], grad: &[f32]) -> () = geglu_backward_body
);

#[inline(always)]
fn geglu_backward_body(dh: &mut [f32], row: &[f32], grad: &[f32]) {
    let (value, gate) = row.split_at(grad.len());
    let (d_value, d_gate) = dh.split_at_mut(grad.len());
    for ((((dv, dg), &v), &x), &g) in d_value.iter_mut().zip(d_gate).zip(value).zip(gate).zip(grad) {
        let (cdf, pdf) = normal(x);
        *dv = g * x * cdf;
        *dg = g * v * (cdf + x * pdf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geglu_equals_the_erf_formula() {
        let inner = 21;
        let h: Vec<f32> = (0..3 * 2 * inner).map(|i| (i as f32 - 60.0) * 0.17).collect();
        let ours = geglu(&h, inner);
        for (r, row) in h.chunks(2 * inner).enumerate() {
            for j in 0..inner {
                let (v, g) = (row[j] as f64, row[inner + j] as f64);
                let want = v * 0.5 * g * (1.0 + libm::erf(g / std::f64::consts::SQRT_2));
                let got = ours[r * inner + j] as f64;
                assert!((got - want).abs() < 1e-6 * (1.0 + v.abs() * g.abs()), "row {r}, {j}: {got} vs {want}");
            }
        }
    }
}
