//! Kernels for burn's CPU backend where burn-flex leaves speed on the table (README, *Speed*), used by the
//! model code only on that backend, in f32; the GPU keeps burn's kernels. Under autodiff (training) the
//! convolution and SiLU run here too, with the backward passes below (`nn/cpu_autodiff.rs`).
//!
//! - [`attention`]: burn-flex's flash attention walks the keys in tiles of 64 and rescales every query's
//!   accumulator after each tile, with a scalar `exp` per score; at SD 1.5's 4096-token self-attention that
//!   is 2.5× PyTorch's time. Here each block of queries takes its whole score row at once, sized to a core's
//!   L2: `S = Q_b·Kᵀ` and `O_b = softmax(S)·V` are two well-shaped `gemm` calls with the softmax between
//!   them. The scores are exact softmax (no online rescaling), so the result equals burn's within rounding.
//! - [`geglu`]: the transformer's feed-forward gate `value · gelu(gate)` (erf GELU) in one vectorized pass.
//! - [`group_norm_silu`]: GroupNorm then SiLU (every ResNet block's pattern) in one pass over each group
//!   after its statistics, where burn makes several passes and evaluates `exp` one element at a time.
//! - [`conv_same`]: a stride-1 "same" convolution (the ResNet blocks' and the VAE's 3×3) as one `gemm` per
//!   kernel tap over a zero-padded copy of the image, with no im2col buffer: burn-flex's tiled im2col builds
//!   a matrix k² times the input's size, and at the VAE decoder's 128×128 planes that traffic, not the
//!   arithmetic, sets its pace (`examples/op_profile` compares the two at several sizes). Small planes of a
//!   batch are padded side by side and go through one product per tap together. [`conv_same_backward`]
//!   gives its gradients in the same layout; under training, smaller planes go through [`Im2col`] (one
//!   product each for the output and both gradients).
//! - Training's backward passes: [`attention_backward`], [`geglu_backward`], [`group_norm_backward`] (after
//!   [`group_norm`], which also returns the statistics), each in as few passes as the forward kernel.
//!
//! The row loops are written in 16 fixed lanes and compiled three times (AVX-512, AVX2+FMA, baseline), the
//! CPU choosing at run time, so the same binary vectorizes wherever it runs.

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// Score elements one query block holds: 256 Ki f32 = 1 MiB, about a core's L2. Larger blocks pack `Kᵀ` for
/// `gemm` fewer times. `examples/op_profile`'s SD 1.5 self-attention (4096 keys, 2 cores), rebuilt with this
/// constant at each value: 16 Ki took 1.09 s per call, 64 Ki 0.48 s, 256 Ki 0.33 s, and 512 Ki to 4 Mi 0.28-0.40 s.
const BLOCK_SCORES: usize = 256 * 1024;
/// SIMD width the row loops are written for (AVX-512's 16 f32 lanes; narrower CPUs split it).
const LANES: usize = 16;

/// Sizes of one attention call over contiguous row-major buffers.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Batch × heads.
    pub heads: usize,
    /// Query tokens.
    pub queries: usize,
    /// Key/value tokens.
    pub keys: usize,
    /// Width of a query/key head.
    pub dim: usize,
    /// Width of a value head.
    pub value_dim: usize,
}

/// `softmax(q·kᵀ·scale)·v` per head for `q` `[heads, queries, dim]`, `k` `[heads, keys, dim]`,
/// `v` `[heads, keys, value_dim]`, into `[heads, queries, value_dim]`.
///
/// # Panics
/// If a buffer's length does not match `shape` (the caller builds both from one tensor's dims).
pub fn attention(q: &[f32], k: &[f32], v: &[f32], shape: Shape, scale: f32) -> Vec<f32> {
    let Shape { heads, queries, keys, dim, value_dim } = shape;
    assert_eq!(q.len(), heads * queries * dim, "query buffer");
    assert_eq!(k.len(), heads * keys * dim, "key buffer");
    assert_eq!(v.len(), heads * keys * value_dim, "value buffer");
    let mut out = vec![0.0f32; heads * queries * value_dim];
    if out.is_empty() || keys == 0 {
        return out;
    }
    let rows = (BLOCK_SCORES / keys).clamp(1, queries);
    out.par_chunks_mut(queries * value_dim).enumerate().for_each(|(h, out)| {
        let (q, k, v) = (
            &q[h * queries * dim..][..queries * dim],
            &k[h * keys * dim..][..keys * dim],
            &v[h * keys * value_dim..][..keys * value_dim],
        );
        out.par_chunks_mut(rows * value_dim).enumerate().for_each_init(
            || vec![0.0f32; rows * keys],
            |scores, (b, out)| {
                let n = out.len() / value_dim;
                block(&q[b * rows * dim..][..n * dim], k, v, out, &mut scores[..n * keys], shape, scale);
            },
        );
    });
    out
}

/// One block of `n` query rows: scores, softmax, then the weighted sum of values.
fn block(q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], scores: &mut [f32], shape: Shape, scale: f32) {
    let Shape { keys, dim, value_dim, .. } = shape;
    let n = q.len() / dim;
    // SAFETY: every pointer covers its matrix: scores n×keys (row stride keys), q n×dim (row stride dim),
    // kᵀ dim×keys read from k keys×dim (element (i, j) at j·dim + i), v keys×value_dim, out n×value_dim.
    unsafe {
        gemm(
            n,
            keys,
            dim,
            scores.as_mut_ptr(),
            1,
            keys as isize,
            false,
            q.as_ptr(),
            1,
            dim as isize,
            k.as_ptr(),
            dim as isize,
            1,
            0.0,
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
    let sums: Vec<f32> = scores.chunks_exact_mut(keys).map(softmax_numerator).collect();
    unsafe {
        gemm(
            n,
            value_dim,
            keys,
            out.as_mut_ptr(),
            1,
            value_dim as isize,
            false,
            scores.as_ptr(),
            1,
            keys as isize,
            v.as_ptr(),
            1,
            value_dim as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
    for (row, sum) in out.chunks_exact_mut(value_dim).zip(sums) {
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

/// The gradients of [`attention`] for the output gradient `dout`, given the forward pass's inputs and output
/// `out`: `(dq, dk, dv)` in the inputs' layouts. Per head (heads in parallel) and per block of query rows,
/// as the forward pass: the block's probabilities `P` are recomputed from `q` and `k` rather than kept, then
/// `dv += Pᵀ·dO`, `dS = P ⊙ (dO·vᵀ − rowsum(dO ⊙ out))`, `dq = scale·dS·k` and `dk += scale·dSᵀ·q`, five
/// `gemm` calls per block.
///
/// # Panics
/// If a buffer's length does not match `shape`, or `shape.dim` is 0 (no keys to attend by).
pub fn attention_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    dout: &[f32],
    shape: Shape,
    scale: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Shape { heads, queries, keys, dim, value_dim } = shape;
    assert_eq!(q.len(), heads * queries * dim, "query buffer");
    assert_eq!(k.len(), heads * keys * dim, "key buffer");
    assert_eq!(v.len(), heads * keys * value_dim, "value buffer");
    assert_eq!(out.len(), heads * queries * value_dim, "output buffer");
    assert_eq!(dout.len(), out.len(), "gradient buffer");
    assert!(dim > 0, "query width 0");
    let (mut dq, mut dk, mut dv) = (vec![0.0f32; q.len()], vec![0.0f32; k.len()], vec![0.0f32; v.len()]);
    if queries == 0 || keys == 0 {
        return (dq, dk, dv);
    }
    let rows = (BLOCK_SCORES / keys).clamp(1, queries);
    let per_head = |h: usize, len: usize| h * len..(h + 1) * len;
    dq.par_chunks_mut(queries * dim.max(1))
        .zip(dk.par_chunks_mut(keys * dim.max(1)))
        .zip(dv.par_chunks_mut(keys * value_dim.max(1)))
        .enumerate()
        .for_each(|(h, ((dq, dk), dv))| {
            let head = HeadGrads {
                q: &q[per_head(h, queries * dim)],
                k: &k[per_head(h, keys * dim)],
                v: &v[per_head(h, keys * value_dim)],
                out: &out[per_head(h, queries * value_dim)],
                dout: &dout[per_head(h, queries * value_dim)],
            };
            let mut p = vec![0.0f32; rows * keys];
            let mut ds = vec![0.0f32; rows * keys];
            for (b, start) in (0..queries).step_by(rows).enumerate() {
                let n = rows.min(queries - start);
                head.block(start, n, b > 0, (&mut p[..n * keys], &mut ds[..n * keys]), (dq, dk, dv), shape, scale);
            }
        });
    (dq, dk, dv)
}

/// One head's buffers in [`attention_backward`].
struct HeadGrads<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    out: &'a [f32],
    dout: &'a [f32],
}

impl HeadGrads<'_> {
    /// The query rows `start..start + n`: their part of `dq`, added to `dk` and `dv` (overwritten when
    /// `accumulate` is false, for the first block), with `p` and `ds` as n×keys scratch.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        start: usize,
        n: usize,
        accumulate: bool,
        (p, ds): (&mut [f32], &mut [f32]),
        (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
        shape: Shape,
        scale: f32,
    ) {
        let Shape { keys, dim, value_dim, .. } = shape;
        let (ki, di, vi) = (keys as isize, dim as isize, value_dim as isize);
        let q = &self.q[start * dim..][..n * dim];
        let (out, dout) =
            (&self.out[start * value_dim..][..n * value_dim], &self.dout[start * value_dim..][..n * value_dim]);
        let dq = &mut dq[start * dim..][..n * dim];
        // SAFETY (every call below): each pointer covers its matrix for the sizes and strides given: p and ds
        // n×keys, q and dq n×dim, out and dout n×value_dim, k and dk keys×dim, v and dv keys×value_dim, all
        // row-major (a transpose reads the same buffer with its strides swapped).
        unsafe {
            // P = softmax(scale · q·kᵀ), row by row.
            mul(p, (ki, 1), false, q, (di, 1), self.k, (1, di), [n, keys, dim], scale);
        }
        for row in p.chunks_exact_mut(keys) {
            let inv = 1.0 / softmax_numerator(row);
            row.iter_mut().for_each(|x| *x *= inv);
        }
        unsafe {
            // dv (+)= Pᵀ·dO;  dP = dO·vᵀ (into ds).
            mul(dv, (vi, 1), accumulate, p, (1, ki), dout, (vi, 1), [keys, value_dim, n], 1.0);
            mul(ds, (ki, 1), false, dout, (vi, 1), self.v, (1, vi), [n, keys, value_dim], 1.0);
        }
        for (((ds, p), o), d_o) in ds
            .chunks_exact_mut(keys)
            .zip(p.chunks_exact(keys))
            .zip(out.chunks_exact(value_dim))
            .zip(dout.chunks_exact(value_dim))
        {
            let centre: f32 = o.iter().zip(d_o).map(|(a, b)| a * b).sum();
            ds.iter_mut().zip(p).for_each(|(s, &p)| *s = p * (*s - centre));
        }
        unsafe {
            // dq = scale · dS·k;  dk (+)= scale · dSᵀ·q.
            mul(dq, (di, 1), false, ds, (ki, 1), self.k, (di, 1), [n, dim, keys], scale);
            mul(dk, (di, 1), accumulate, ds, (1, ki), q, (di, 1), [keys, dim, n], scale);
        }
    }
}

/// `dst = scale · a·b`, or `dst += scale · a·b` when `accumulate`, for `[m, n, k]`, one thread; each matrix
/// given by its (row, column) strides.
///
/// # Safety
/// Every pointer must cover its matrix for those sizes and strides.
#[allow(clippy::too_many_arguments)]
unsafe fn mul(
    dst: &mut [f32],
    (d_rs, d_cs): (isize, isize),
    accumulate: bool,
    a: &[f32],
    (a_rs, a_cs): (isize, isize),
    b: &[f32],
    (b_rs, b_cs): (isize, isize),
    [m, n, k]: [usize; 3],
    scale: f32,
) {
    // SAFETY: as the caller promises.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            d_cs,
            d_rs,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// Defines `fn $name` that runs `$body` compiled for the best instruction set the CPU has.
macro_rules! simd_dispatch {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $body:ident) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn v4($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn v3($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `v4` is compiled for.
                    return unsafe { v4($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for `v3`.
                    return unsafe { v3($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

simd_dispatch!(
    /// Replaces a score row by `exp(s - max)` and returns its sum (softmax's numerator and denominator).
    fn softmax_numerator(row: &mut [f32]) -> f32 = softmax_body
);

#[inline(always)]
fn softmax_body(row: &mut [f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = m.max(x);
        }
    }
    let max = chunks.remainder().iter().fold(lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)), |a, &b| a.max(b));
    let mut sums = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (s, x) in sums.iter_mut().zip(c.iter_mut()) {
            *x = exp(*x - max);
            *s += *x;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp(*x - max);
        sum += *x;
    }
    sum
}

/// `e^x` within about 2 ulp, branch-free so it vectorizes: Cody–Waite reduction to `r ∈ [-ln2/2, ln2/2]`,
/// Cephes' degree-6 polynomial, and the power of two built in the exponent bits. `x` is clamped to
/// [-87.3, 88.3], f32's normal range (so `e^-100` reads 1.2e-38 and `e^100` 2.1e38).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2²³: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_2e-4;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n ∈ [-126, 127]: its two's complement sits in t's low mantissa bits.
    let n = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    e * f32::from_bits(((n + 127) as u32) << 23)
}

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

/// `Σ f(x)` in 16 partial sums (vectorizable, and more accurate than one running sum).
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (s, &v) in lanes.iter_mut().zip(c) {
            *s += f(v);
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

/// `Σ a·b` in 16 partial sums, as [`lane_sum`].
#[inline(always)]
fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((s, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    lanes.iter().sum::<f32>() + ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum::<f32>()
}

/// Smallest plane (pixels) [`conv_same`] is used for: below it the per-tap `gemm` calls cost more than
/// burn-flex's im2col saves (`examples/op_profile`'s 16×16 and 4×4 rows).
pub const CONV_MIN_PIXELS: usize = 32 * 32;

/// Sizes of one [`conv_same`] call.
#[derive(Debug, Clone, Copy)]
pub struct Conv {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Plane height (the output's too).
    pub h: usize,
    /// Plane width.
    pub w: usize,
    /// Kernel side, odd; the padding is `k / 2` on every side.
    pub k: usize,
}

/// Values the padded copies of [`conv_same`] and [`conv_same_backward`] may take (64 MB each): images are
/// padded and multiplied in groups up to this size, so small planes go through one product per tap for the
/// whole batch while large ones keep one image at a time.
const PADDED_VALUES: usize = 16 << 20;

/// The padded layout of [`conv_same`]: a group of `images` images per buffer, each channel's planes side by
/// side, `plane` values apart, each plane's rows `wp = w + 2p` wide.
#[derive(Debug, Clone, Copy)]
struct Padded {
    p: usize,
    wp: usize,
    /// Values per padded plane: the last tap of the last row's dropped columns reads 2p values past it.
    plane: usize,
    /// Columns of one image's output, rows `wp` wide.
    n: usize,
    /// Images per group.
    images: usize,
}

impl Padded {
    /// The layout for `c`, with groups of at most `max_values` values per buffer (at least one image).
    fn new(c: Conv, max_values: usize) -> Self {
        let p = c.k / 2;
        let wp = c.w + 2 * p;
        let plane = (c.h + 2 * p) * wp + 2 * p;
        let images = (max_values / (c.cin.max(c.cout) * plane).max(1)).clamp(1, c.batch.max(1));
        Self { p, wp, plane, n: c.h * wp, images }
    }

    /// Values between one channel's rows of a group buffer.
    fn stride(&self) -> usize {
        self.images * self.plane
    }

    /// Columns a tap's product covers for a group of `images`: up to the last image's last output value.
    fn span(&self, images: usize) -> usize {
        (images - 1) * self.plane + self.n
    }

    /// Where tap `tap` of a `k`×`k` kernel reads, from the output value's index.
    fn offset(&self, tap: usize, k: usize) -> usize {
        (tap / k) * self.wp + tap % k
    }

    /// Copies NCHW `images` (`channels` planes of `h`×`w` each) into `buffer`'s planes, row `r` at
    /// `(r + border)·wp + border`: the padded input's interior (`border` = p) or the output's own layout
    /// (`border` = 0). The values around them keep the zeros they were made with.
    fn fill(&self, images: &[f32], channels: usize, [h, w]: [usize; 2], border: usize, buffer: &mut [f32]) {
        for (b, image) in images.chunks_exact(channels * h * w).enumerate() {
            for (ch, src) in image.chunks_exact(h * w).enumerate() {
                let dst = &mut buffer[ch * self.stride() + b * self.plane..];
                for (row, line) in src.chunks_exact(w).enumerate() {
                    dst[(row + border) * self.wp + border..][..w].copy_from_slice(line);
                }
            }
        }
    }
}

/// A `k`×`k` convolution, stride 1, one group, zero padding `k / 2` ("same"), of NCHW `x` `[batch, cin, h, w]`
/// with PyTorch-layout `weight` `[cout, cin, k, k]` and optional `bias`, into `[batch, cout, h, w]`.
///
/// The images are copied once into zero-padded planes, rows `w + 2p` wide, a group of images side by side per
/// channel. In those coordinates output pixel `(y, x)` at flat index `y·wp + x` reads input pixel
/// `(y + dy, x + dx)` at flat index `y·wp + x + dy·wp + dx`: every kernel tap `(dy, dx)` is one matrix product
/// per group, the tap's `cout × cin` weights times the padded planes read at a constant offset, accumulated
/// into an output of the same layout whose extra columns (and the rows between images) are dropped at the end.
///
/// # Panics
/// If a buffer's length does not match `c`, or `k` is even.
pub fn conv_same(x: &[f32], weight: &[f32], bias: Option<&[f32]>, c: Conv) -> Vec<f32> {
    conv_same_grouped(x, weight, bias, c, PADDED_VALUES)
}

/// [`conv_same`] with padded buffers of at most `max_values` values.
fn conv_same_grouped(x: &[f32], weight: &[f32], bias: Option<&[f32]>, c: Conv, max_values: usize) -> Vec<f32> {
    let Conv { batch, cin, cout, h, w, k } = c;
    assert!(k % 2 == 1, "odd kernel");
    assert_eq!(x.len(), batch * cin * h * w, "input buffer");
    assert_eq!(weight.len(), cout * cin * k * k, "weight buffer");
    assert!(bias.is_none_or(|b| b.len() == cout), "bias buffer");
    let mut y = vec![0.0f32; batch * cout * h * w];
    if y.is_empty() || cin == 0 {
        // No input channels: the bias alone.
        for (j, v) in y.iter_mut().enumerate() {
            *v = bias.map_or(0.0, |b| b[j / (h * w) % cout]);
        }
        return y;
    }
    let layout = Padded::new(c, max_values);
    let stride = layout.stride();
    // Tap-major weights `[k², cout, cin]`: gemm packs contiguous rows faster than rows strided by k².
    let taps: Vec<f32> = (0..k * k).flat_map(|t| weight.iter().skip(t).step_by(k * k).copied()).collect();
    let mut padded = vec![0.0f32; cin * stride];
    let mut acc = vec![0.0f32; cout * stride];
    let group = layout.images;
    for (input, out) in x.chunks(group * cin * h * w).zip(y.chunks_mut(group * cout * h * w)) {
        let images = input.len() / (cin * h * w);
        layout.fill(input, cin, [h, w], layout.p, &mut padded);
        let span = layout.span(images);
        for tap in 0..k * k {
            let offset = layout.offset(tap, k);
            // SAFETY: acc is cout rows of `stride` values; the tap's weights are cout×cin, element (o, i) at
            // tap·cout·cin + o·cin + i < taps.len(); the padded view is cin×span with element (i, j) at
            // offset + i·stride + j ≤ offset + (cin - 1)·stride + (images - 1)·plane + n - 1 < cin·stride,
            // as offset + n ≤ plane and images ≤ the group's size.
            unsafe {
                gemm(
                    cout,
                    span,
                    cin,
                    acc.as_mut_ptr(),
                    1,
                    stride as isize,
                    tap > 0,
                    taps.as_ptr().add(tap * cout * cin),
                    1,
                    cin as isize,
                    padded.as_ptr().add(offset),
                    1,
                    stride as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::Rayon(0),
                );
            }
        }
        for (b, image) in out.chunks_exact_mut(cout * h * w).enumerate() {
            for (o, dst) in image.chunks_exact_mut(h * w).enumerate() {
                let src = &acc[o * stride + b * layout.plane..][..layout.n];
                let bias = bias.map_or(0.0, |b| b[o]);
                for (line, wide) in dst.chunks_exact_mut(w).zip(src.chunks_exact(layout.wp)) {
                    for (d, s) in line.iter_mut().zip(wide) {
                        *d = s + bias;
                    }
                }
            }
        }
    }
    y
}

/// Gradients of [`conv_same`] for the output gradient `dy` `[batch, cout, h, w]`: of the input `x` (a "same"
/// convolution of `dy` with the kernel flipped and its channels swapped) and of the weight, as
/// `(dx, dweight)`, each `None` unless asked for. The weight's is one matrix product per kernel tap and image,
/// `dy` (rows `w + 2p` wide, the extra columns zero) times the padded planes read at the tap's offset, summed
/// over the batch: the same layout as the forward pass, where burn computes it as a convolution whose output
/// is the k×k kernel (a product a few columns wide).
///
/// # Panics
/// If a buffer's length does not match `c`, or `k` is even.
pub fn conv_same_backward(
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    c: Conv,
    want: (bool, bool),
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    conv_same_backward_grouped(x, weight, dy, c, want, PADDED_VALUES)
}

/// [`conv_same_backward`] with padded buffers of at most `max_values` values.
fn conv_same_backward_grouped(
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    c: Conv,
    want: (bool, bool),
    max_values: usize,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let Conv { batch, cin, cout, h, w, k } = c;
    assert!(k % 2 == 1, "odd kernel");
    assert_eq!(x.len(), batch * cin * h * w, "input buffer");
    assert_eq!(weight.len(), cout * cin * k * k, "weight buffer");
    assert_eq!(dy.len(), batch * cout * h * w, "gradient buffer");
    let dx = want.0.then(|| {
        // Output pixel (y, x) reached input pixel (y + dy - p, x + dx - p) through tap (dy, dx): the adjoint is
        // the convolution with tap (k-1-dy, k-1-dx) and input and output channels swapped.
        let kk = k * k;
        let mut flipped = vec![0.0f32; weight.len()];
        for o in 0..cout {
            for i in 0..cin {
                let src = &weight[(o * cin + i) * kk..][..kk];
                let dst = &mut flipped[(i * cout + o) * kk..][..kk];
                for (t, v) in src.iter().enumerate() {
                    dst[kk - 1 - t] = *v;
                }
            }
        }
        conv_same_grouped(dy, &flipped, None, Conv { cin: cout, cout: cin, ..c }, max_values)
    });
    let dweight = want.1.then(|| {
        let layout = Padded::new(c, max_values);
        let stride = layout.stride();
        let mut padded = vec![0.0f32; cin * stride];
        // The output gradient in the output's padded layout, its extra columns zero.
        let mut wide = vec![0.0f32; cout * stride];
        // Tap-major `[k², cout, cin]`, accumulated over the groups.
        let mut taps = vec![0.0f32; k * k * cout * cin];
        let group = layout.images;
        let (chunk_x, chunk_dy) = ((group * cin * h * w).max(1), (group * cout * h * w).max(1));
        for (g, (input, grad)) in x.chunks(chunk_x).zip(dy.chunks(chunk_dy)).enumerate() {
            let images = input.len() / (cin * h * w);
            layout.fill(input, cin, [h, w], layout.p, &mut padded);
            layout.fill(grad, cout, [h, w], 0, &mut wide);
            let span = layout.span(images);
            // One task per tap: each product is only cout×cin, too small for gemm to split.
            taps.par_chunks_mut(cout * cin).enumerate().for_each(|(tap, block)| {
                let offset = layout.offset(tap, k);
                // SAFETY: the tap's block is cout×cin (row stride cin); `wide` is cout rows of `stride` values,
                // read span wide; the padded view is span×cin with element (j, i) at offset + i·stride + j <
                // cin·stride, as in `conv_same`.
                unsafe {
                    gemm(
                        cout,
                        cin,
                        span,
                        block.as_mut_ptr(),
                        1,
                        cin as isize,
                        g > 0,
                        wide.as_ptr(),
                        1,
                        stride as isize,
                        padded.as_ptr().add(offset),
                        stride as isize,
                        1,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
            });
        }
        // `[k², cout, cin]` → PyTorch's `[cout, cin, k, k]`.
        let (kk, mut out) = (k * k, vec![0.0f32; taps.len()]);
        for (t, block) in taps.chunks_exact(cout * cin).enumerate() {
            for (oi, v) in block.iter().enumerate() {
                out[oi * kk + t] = *v;
            }
        }
        out
    });
    (dx, dweight)
}

/// A "same" convolution of small planes under training, as [`conv_same`]'s sizes: the images' `k`×`k`
/// neighbourhoods as one matrix `[cin·k², batch·h·w]` (im2col, small at these sizes), so that the output and
/// both gradients are one matrix product each, where [`conv_same`] would make `k²` products a few columns wide.
#[derive(Debug)]
pub struct Im2col {
    cols: Vec<f32>,
    c: Conv,
}

impl Im2col {
    /// The neighbourhoods of NCHW `x` `[batch, cin, h, w]`, zero past the borders.
    ///
    /// # Panics
    /// If `x`'s length does not match `c`, or `k` is even.
    pub fn new(x: &[f32], c: Conv) -> Self {
        let Conv { batch, cin, h, w, k, .. } = c;
        assert!(k % 2 == 1, "odd kernel");
        assert_eq!(x.len(), batch * cin * h * w, "input buffer");
        let (kk, planes) = (k * k, batch * h * w);
        let mut cols = vec![0.0f32; cin * kk * planes];
        cols.par_chunks_mut(planes.max(1)).enumerate().for_each(|(row, cols)| {
            let (i, t) = (row / kk, row % kk);
            tap_runs(c, t, |b, col, pixel, len| {
                cols[b * h * w + col..][..len].copy_from_slice(&x[(b * cin + i) * h * w + pixel..][..len]);
            });
        });
        Self { cols, c }
    }

    /// The convolution with `weight` `[cout, cin, k, k]`, without bias: `[batch, cout, h, w]`.
    pub fn forward(&self, weight: &[f32]) -> Vec<f32> {
        let Conv { batch, cin, cout, h, w, k } = self.c;
        assert_eq!(weight.len(), cout * cin * k * k, "weight buffer");
        let (n, depth) = (batch * h * w, cin * k * k);
        let mut out = vec![0.0f32; cout * n];
        // SAFETY: out is cout×n, weight cout×depth and cols depth×n, each row-major and of that length.
        unsafe { product(&mut out, weight, (depth as isize, 1), &self.cols, (n as isize, 1), [cout, n, depth]) };
        swap_outer(&out, [cout, batch], h * w)
    }

    /// The gradient of `weight` for the output gradient `dy` `[batch, cout, h, w]`.
    pub fn weight_grad(&self, dy: &[f32]) -> Vec<f32> {
        let Conv { batch, cin, cout, h, w, k } = self.c;
        assert_eq!(dy.len(), batch * cout * h * w, "gradient buffer");
        let (n, depth) = (batch * h * w, cin * k * k);
        let dy = swap_outer(dy, [batch, cout], h * w);
        let mut dw = vec![0.0f32; cout * depth];
        // SAFETY: dw is cout×depth; dy is cout×n row-major; colsᵀ is n×depth read from the depth×n cols.
        unsafe { product(&mut dw, &dy, (n as isize, 1), &self.cols, (1, n as isize), [cout, depth, n]) };
        dw
    }
}

/// The input's gradient of [`Im2col::forward`] for the output gradient `dy`: `weightᵀ · dy`, each column
/// added back to the pixels its neighbourhood came from.
pub fn im2col_input_grad(weight: &[f32], dy: &[f32], c: Conv) -> Vec<f32> {
    let Conv { batch, cin, cout, h, w, k } = c;
    assert!(k % 2 == 1, "odd kernel");
    assert_eq!(weight.len(), cout * cin * k * k, "weight buffer");
    assert_eq!(dy.len(), batch * cout * h * w, "gradient buffer");
    let (hw, depth) = (h * w, cin * k * k);
    let n = batch * hw;
    let dy = swap_outer(dy, [batch, cout], hw);
    let mut dcols = vec![0.0f32; depth * n];
    // SAFETY: dcols is depth×n; weightᵀ is depth×cout read from the cout×depth weight; dy is cout×n.
    unsafe { product(&mut dcols, weight, (1, depth as isize), &dy, (n as isize, 1), [depth, n, cout]) };
    // Channel-major, so that each channel's planes take its k² rows in a task of their own.
    let mut dx = vec![0.0f32; cin * n];
    dx.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, planes)| {
        for t in 0..k * k {
            let row = &dcols[(i * k * k + t) * n..][..n];
            tap_runs(c, t, |b, col, pixel, len| {
                let (dst, src) = (&mut planes[b * hw + pixel..][..len], &row[b * hw + col..][..len]);
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            });
        }
    });
    swap_outer(&dx, [cin, batch], hw)
}

/// Calls `f(b, col, pixel, len)` for every run of kernel tap `t` (of k², row-major) in [`Im2col`]'s matrix
/// that falls inside the image: for image `b`, the `len` output pixels from `col` on take the input plane's
/// `len` values from `pixel` on (one output row's columns whose tap lies inside the plane; the others stay
/// zero).
fn tap_runs(c: Conv, t: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
    let Conv { batch, h, w, k, .. } = c;
    let p = k / 2;
    let (dy, dx) = (t / k, t % k);
    // Output columns xo whose source column xo + dx - p lies in 0..w.
    let (first, last) = (p.saturating_sub(dx), (w + p).saturating_sub(dx).min(w));
    if first >= last {
        return;
    }
    for b in 0..batch {
        for yo in 0..h {
            if let Some(y) = (yo + dy).checked_sub(p).filter(|&y| y < h) {
                f(b, yo * w + first, y * w + first + dx - p, last - first);
            }
        }
    }
}

/// `dst = a · b` for `[m, n, k]`: `dst` m×n row-major, `a` m×k and `b` k×n with (row, column) strides given.
///
/// # Safety
/// `a` and `b` must hold every element their strides reach for those sizes; `dst` must be m·n long.
unsafe fn product(
    dst: &mut [f32],
    a: &[f32],
    (a_rs, a_cs): (isize, isize),
    b: &[f32],
    (b_rs, b_cs): (isize, isize),
    [m, n, k]: [usize; 3],
) {
    assert_eq!(dst.len(), m * n);
    // SAFETY: as the caller promises.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::Rayon(0),
        );
    }
}

/// `x` `[a, b, pixels]` → `[b, a, pixels]`: between the batch-major layout of tensors and
/// the channel-major one of [`Im2col`]'s products.
fn swap_outer(x: &[f32], [a, b]: [usize; 2], pixels: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut((a * pixels).max(1)).enumerate().for_each(|(j, rows)| {
        for (i, dst) in rows.chunks_exact_mut(pixels.max(1)).enumerate() {
            dst.copy_from_slice(&x[(i * b + j) * pixels..][..pixels]);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_convolutions_equal_the_textbook_sum() {
        let mut rng = crate::rng::PortableNormal::new(9);
        for c in [
            Conv { batch: 2, cin: 3, cout: 5, h: 7, w: 9, k: 3 },
            Conv { batch: 1, cin: 4, cout: 2, h: 6, w: 5, k: 5 },
            Conv { batch: 1, cin: 2, cout: 3, h: 4, w: 4, k: 1 },
        ] {
            let Conv { batch, cin, cout, h, w, k } = c;
            let mut buf = |n: usize| (0..n).map(|_| rng.sample()).collect::<Vec<f32>>();
            let (x, weight, bias) = (buf(batch * cin * h * w), buf(cout * cin * k * k), buf(cout));
            let p = (k / 2) as isize;
            let mut want = Vec::new();
            for b in 0..batch {
                for o in 0..cout {
                    for yy in 0..h as isize {
                        for xx in 0..w as isize {
                            let mut sum = bias[o] as f64;
                            for i in 0..cin {
                                for (dy, dx) in (0..k * k).map(|t| ((t / k) as isize, (t % k) as isize)) {
                                    let (sy, sx) = (yy + dy - p, xx + dx - p);
                                    if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                                        let v = x[((b * cin + i) * h + sy as usize) * w + sx as usize] as f64;
                                        sum += v * weight[((o * cin + i) * k + dy as usize) * k + dx as usize] as f64;
                                    }
                                }
                            }
                            want.push(sum as f32);
                        }
                    }
                }
            }
            let got = conv_same(&x, &weight, Some(&bias), c);
            let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(got.len() == want.len() && err < 1e-5, "{c:?}: {err}");
            // One image per padded buffer, as for large planes: the same numbers.
            let one = conv_same_grouped(&x, &weight, Some(&bias), c, 1);
            assert!(one.len() == want.len() && one.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5), "{c:?}");
            let unbiased = conv_same(&x, &weight, None, c);
            assert!(
                unbiased
                    .iter()
                    .zip(&got)
                    .enumerate()
                    .all(|(j, (u, g))| (g - u - bias[j / (h * w) % cout]).abs() < 1e-5)
            );
        }
    }

    #[test]
    fn same_convolution_gradients_equal_the_textbook_sums() {
        let mut rng = crate::rng::PortableNormal::new(10);
        for c in
            [Conv { batch: 2, cin: 3, cout: 5, h: 7, w: 9, k: 3 }, Conv { batch: 1, cin: 2, cout: 3, h: 6, w: 5, k: 5 }]
        {
            let Conv { batch, cin, cout, h, w, k } = c;
            let mut buf = |n: usize| (0..n).map(|_| rng.sample()).collect::<Vec<f32>>();
            let (x, weight, dy) = (buf(batch * cin * h * w), buf(cout * cin * k * k), buf(batch * cout * h * w));
            // y[b,o,yy,xx] = Σ x[b,i,yy+ty-p,xx+tx-p]·w[o,i,ty,tx]: each term adds dy·w to dx and dy·x to dw.
            let (mut dx, mut dw) = (vec![0f64; x.len()], vec![0f64; weight.len()]);
            let p = (k / 2) as isize;
            for b in 0..batch {
                for o in 0..cout {
                    for (yy, xx) in (0..h * w).map(|j| ((j / w) as isize, (j % w) as isize)) {
                        let g = dy[((b * cout + o) * h + yy as usize) * w + xx as usize] as f64;
                        for i in 0..cin {
                            for (ty, tx) in (0..k * k).map(|t| ((t / k) as isize, (t % k) as isize)) {
                                let (sy, sx) = (yy + ty - p, xx + tx - p);
                                if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                                    let xi = ((b * cin + i) * h + sy as usize) * w + sx as usize;
                                    let wi = ((o * cin + i) * k + ty as usize) * k + tx as usize;
                                    dx[xi] += g * weight[wi] as f64;
                                    dw[wi] += g * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
            let err = |got: &[f32], want: &[f64]| {
                assert_eq!(got.len(), want.len());
                got.iter().zip(want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max)
            };
            let (got_dx, got_dw) = conv_same_backward(&x, &weight, &dy, c, (true, true));
            let (got_dx, got_dw) = (got_dx.unwrap(), got_dw.unwrap());
            assert!(err(&got_dx, &dx) < 1e-5 && err(&got_dw, &dw) < 1e-5, "{c:?}");
            // One image per padded buffer, as for large planes: the same numbers.
            let (one_dx, one_dw) = conv_same_backward_grouped(&x, &weight, &dy, c, (true, true), 1);
            assert!(err(&one_dx.unwrap(), &dx) < 1e-5 && err(&one_dw.unwrap(), &dw) < 1e-5, "{c:?}");
            // The im2col path of small planes: its output equals conv_same's, its gradients the sums.
            let cols = Im2col::new(&x, c);
            let forward = conv_same(&x, &weight, None, c);
            let y: Vec<f64> = forward.iter().map(|&v| v as f64).collect();
            assert!(err(&cols.forward(&weight), &y) < 1e-5, "{c:?}");
            assert!(err(&cols.weight_grad(&dy), &dw) < 1e-5, "{c:?}");
            assert!(err(&im2col_input_grad(&weight, &dy, c), &dx) < 1e-5, "{c:?}");
            assert_eq!(conv_same_backward(&x, &weight, &dy, c, (false, true)), (None, Some(got_dw)));
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

    #[test]
    fn exp_is_within_two_ulp_of_the_standard_library() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = 87.0 * i as f32 / 200_000.0;
            let (ours, std) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max((ours - std).abs() / std);
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
        assert!(exp(-1000.0) < 1e-37 && exp(1000.0) > 1e38 && exp(1000.0).is_finite());
        assert_eq!(exp(0.0), 1.0);
    }

    /// The textbook computation in f64.
    fn reference(q: &[f32], k: &[f32], v: &[f32], s: Shape, scale: f32) -> Vec<f32> {
        let mut out = Vec::new();
        for h in 0..s.heads {
            for i in 0..s.queries {
                let scores: Vec<f64> = (0..s.keys)
                    .map(|j| {
                        (0..s.dim)
                            .map(|d| q[(h * s.queries + i) * s.dim + d] as f64 * k[(h * s.keys + j) * s.dim + d] as f64)
                            .sum::<f64>()
                            * scale as f64
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..s.value_dim {
                    let x: f64 = (0..s.keys).map(|j| e[j] * v[(h * s.keys + j) * s.value_dim + d] as f64).sum();
                    out.push((x / sum) as f32);
                }
            }
        }
        out
    }

    #[test]
    fn equals_the_textbook_softmax_attention() {
        let mut rng = crate::rng::PortableNormal::new(5);
        // Keys past a block's budget (several blocks, a short last one), a row count under the lane width,
        // and a head whose keys are fewer than the lanes.
        for s in [
            Shape { heads: 3, queries: 37, keys: 5000, dim: 8, value_dim: 6 },
            Shape { heads: 2, queries: 5, keys: 3, dim: 4, value_dim: 7 },
        ] {
            let mut buf = |n: usize| (0..n).map(|_| rng.sample() * 2.0).collect::<Vec<f32>>();
            let (q, k, v) =
                (buf(s.heads * s.queries * s.dim), buf(s.heads * s.keys * s.dim), buf(s.heads * s.keys * s.value_dim));
            let ours = attention(&q, &k, &v, s, 0.35);
            let want = reference(&q, &k, &v, s, 0.35);
            let err = ours.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(err < 1e-5, "{s:?}: {err}");
        }
    }

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
