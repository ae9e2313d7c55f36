//! Stride-1 "same" convolutions: one product per kernel tap over padded planes, or im2col for small planes
//! under training, with their gradients.

use gemm::Parallelism;
use rayon::prelude::*;

use super::matmul;

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
                let weights = taps.as_ptr().add(tap * cout * cin);
                let view = padded.as_ptr().add(offset);
                let (stride, cin_s) = (stride as isize, cin as isize);
                matmul(
                    [cout, span, cin],
                    (acc.as_mut_ptr(), [stride, 1]),
                    tap > 0,
                    (weights, [cin_s, 1]),
                    (view, [stride, 1]),
                    1.0,
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
                    let view = padded.as_ptr().add(offset);
                    let (stride, cin_s) = (stride as isize, cin as isize);
                    matmul(
                        [cout, cin, span],
                        (block.as_mut_ptr(), [cin_s, 1]),
                        g > 0,
                        (wide.as_ptr(), [stride, 1]),
                        (view, [1, stride]),
                        1.0,
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
        unsafe { product(&mut out, (weight, [depth as isize, 1]), (&self.cols, [n as isize, 1]), [cout, n, depth]) };
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
        unsafe { product(&mut dw, (&dy, [n as isize, 1]), (&self.cols, [1, n as isize]), [cout, depth, n]) };
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
    unsafe { product(&mut dcols, (weight, [1, depth as isize]), (&dy, [n as isize, 1]), [depth, n, cout]) };
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

/// `dst = a · b` for `[m, n, k]`, on every core: `dst` m×n row-major, `a` m×k and `b` k×n by their `[row,
/// column]` strides.
///
/// # Safety
/// `a` and `b` must hold every element their strides reach for those sizes.
unsafe fn product(
    dst: &mut [f32],
    (a, a_s): (&[f32], [isize; 2]),
    (b, b_s): (&[f32], [isize; 2]),
    [m, n, k]: [usize; 3],
) {
    assert_eq!(dst.len(), m * n);
    // SAFETY: dst is m×n row-major; a and b as the caller promises.
    unsafe {
        matmul(
            [m, n, k],
            (dst.as_mut_ptr(), [n as isize, 1]),
            false,
            (a.as_ptr(), a_s),
            (b.as_ptr(), b_s),
            1.0,
            Parallelism::Rayon(0),
        )
    };
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
}
