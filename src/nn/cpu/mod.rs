//! Kernels for burn's CPU backend where burn-flex leaves speed on the table (README, *Speed*), used by the
//! model code only on that backend, in f32; the GPU keeps burn's kernels. Under autodiff (training) they run
//! here too, with the backward passes below (`nn/cpu_autodiff.rs`). One file per kernel family.
//!
//! - [`attention`]: burn-flex's flash attention walks the keys in tiles of 64 and rescales every query's
//!   accumulator after each tile, with a scalar `exp` per score; at SD 1.5's 4096-token self-attention that
//!   is 2.5× PyTorch's time. Here each block of queries takes its whole score row at once, sized to a core's
//!   L2: `S = Q_b·Kᵀ` and `O_b = softmax(S)·V` are two well-shaped `gemm` calls with the softmax between
//!   them. The scores are exact softmax (no online rescaling), so the result equals burn's within rounding.
//! - [`geglu`]: the transformer's feed-forward gate `value · gelu(gate)` (erf GELU) in one vectorized pass.
//! - [`group_norm_silu`] ([`group_norm`]): GroupNorm then SiLU (every ResNet block's pattern) in one pass over
//!   each group after its statistics, where burn makes several passes and evaluates `exp` one element at a time.
//! - [`conv_same`]: a stride-1 "same" convolution (the ResNet blocks' and the VAE's 3×3, and the 1×1
//!   projections) by bands of output rows: each band's neighbourhood matrix (im2col) is sized to a core's L2
//!   and multiplied by the weights straight into the output, the bands of all images in parallel. burn-flex
//!   builds the whole batch's matrix, k² times the input, and at the VAE decoder's 128×128 planes that
//!   traffic, not the arithmetic, sets its pace (`examples/op_profile` compares the two at several sizes).
//!   [`conv_same_backward`] gives both gradients by the same bands.
//! - Training's other backward passes: [`attention_backward`], [`geglu_backward`], [`group_norm_backward`]
//!   (after [`group_norm`], which also returns the statistics), each in as few passes as the forward kernel.
//!
//! The row loops are written in 16 fixed lanes and compiled three times (AVX-512, AVX2+FMA, baseline), the
//! CPU choosing at run time, so the same binary vectorizes wherever it runs.

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

use gemm::{Parallelism, gemm};

mod attention;
mod conv;
mod geglu;
mod group_norm;

pub use attention::{Shape, attention, attention_backward};
pub use conv::{Conv, conv_same, conv_same_backward};
pub use geglu::{geglu, geglu_backward};
pub use group_norm::{Groups, group_norm, group_norm_backward, group_norm_silu};

/// SIMD width the row loops are written for (AVX-512's 16 f32 lanes; narrower CPUs split it).
const LANES: usize = 16;

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

/// `dst = scale·a·b`, or `dst += scale·a·b` when `accumulate`, for sizes `[m, n, k]` (`dst` m×n, `a` m×k, `b`
/// k×n), each matrix given by its first element and its `[row, column]` strides in elements: every product of
/// these kernels, a transpose being the same buffer with its strides swapped.
///
/// # Safety
/// Every element the sizes and strides reach must lie inside its matrix's buffer, and `dst` must overlap
/// neither `a` nor `b`.
unsafe fn matmul(
    [m, n, k]: [usize; 3],
    (dst, [d_rs, d_cs]): (*mut f32, [isize; 2]),
    accumulate: bool,
    (a, [a_rs, a_cs]): (*const f32, [isize; 2]),
    (b, [b_rs, b_cs]): (*const f32, [isize; 2]),
    scale: f32,
    parallelism: Parallelism,
) {
    // SAFETY: as the caller promises. gemm computes dst = alpha·dst + beta·a·b, reading dst only if asked.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            d_cs,
            d_rs,
            accumulate,
            a,
            a_cs,
            a_rs,
            b,
            b_cs,
            b_rs,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
