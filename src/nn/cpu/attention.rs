//! Attention by blocks of query rows (see the module above): forward, and the backward pass of training.

use gemm::Parallelism;
use rayon::prelude::*;

use super::{LANES, exp, matmul};

/// Score elements one query block holds: 256 Ki f32 = 1 MiB, about a core's L2. Larger blocks pack `Kᵀ` for
/// `gemm` fewer times. `examples/op_profile`'s SD 1.5 self-attention (4096 keys, 2 cores), rebuilt with this
/// constant at each value: 16 Ki took 1.09 s per call, 64 Ki 0.48 s, 256 Ki 0.33 s, and 512 Ki to 4 Mi 0.28-0.40 s.
const BLOCK_SCORES: usize = 256 * 1024;
/// Each product runs on one thread: the heads (and blocks) are the parallel tasks.
const ONE: Parallelism = Parallelism::None;
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
    let (ki, di, vi) = (keys as isize, dim as isize, value_dim as isize);
    let n = q.len() / dim;
    // SAFETY: every pointer covers its matrix: scores n×keys (row stride keys), q n×dim (row stride dim),
    // kᵀ dim×keys read from k keys×dim (element (i, j) at j·dim + i), v keys×value_dim, out n×value_dim.
    unsafe {
        matmul(
            [n, keys, dim],
            (scores.as_mut_ptr(), [ki, 1]),
            false,
            (q.as_ptr(), [di, 1]),
            (k.as_ptr(), [1, di]),
            scale,
            ONE,
        );
    }
    let sums: Vec<f32> = scores.chunks_exact_mut(keys).map(softmax_numerator).collect();
    unsafe {
        matmul(
            [n, value_dim, keys],
            (out.as_mut_ptr(), [vi, 1]),
            false,
            (scores.as_ptr(), [ki, 1]),
            (v.as_ptr(), [vi, 1]),
            1.0,
            ONE,
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
            matmul(
                [n, keys, dim],
                (p.as_mut_ptr(), [ki, 1]),
                false,
                (q.as_ptr(), [di, 1]),
                (self.k.as_ptr(), [1, di]),
                scale,
                ONE,
            );
        }
        for row in p.chunks_exact_mut(keys) {
            let inv = 1.0 / softmax_numerator(row);
            row.iter_mut().for_each(|x| *x *= inv);
        }
        unsafe {
            // dv (+)= Pᵀ·dO;  dP = dO·vᵀ (into ds).
            matmul(
                [keys, value_dim, n],
                (dv.as_mut_ptr(), [vi, 1]),
                accumulate,
                (p.as_ptr(), [1, ki]),
                (dout.as_ptr(), [vi, 1]),
                1.0,
                ONE,
            );
            matmul(
                [n, keys, value_dim],
                (ds.as_mut_ptr(), [ki, 1]),
                false,
                (dout.as_ptr(), [vi, 1]),
                (self.v.as_ptr(), [1, vi]),
                1.0,
                ONE,
            );
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
            matmul(
                [n, dim, keys],
                (dq.as_mut_ptr(), [di, 1]),
                false,
                (ds.as_ptr(), [ki, 1]),
                (self.k.as_ptr(), [di, 1]),
                scale,
                ONE,
            );
            matmul(
                [keys, dim, n],
                (dk.as_mut_ptr(), [di, 1]),
                accumulate,
                (ds.as_ptr(), [1, ki]),
                (q.as_ptr(), [di, 1]),
                scale,
                ONE,
            );
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
