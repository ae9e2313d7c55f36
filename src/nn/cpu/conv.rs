//! Stride-1 "same" convolutions and their gradients, by bands of output rows: each band's neighbourhood
//! matrix (im2col) sized to a core's L2 and one product with the weights, the bands of all images in
//! parallel.

use std::ops::Range;

use gemm::Parallelism;
use rayon::prelude::*;

use super::matmul;

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

/// Values of one band's neighbourhood matrix: 256 Ki f32 = 1 MiB, about a core's L2.
const BAND_VALUES: usize = 256 * 1024;

/// A stride-1 convolution of NCHW `x` `[batch, cin, h, w]` with `weight` `[cout, cin, k, k]` (PyTorch's
/// layout), padding `k / 2` with zeros, plus `bias`: `[batch, cout, h, w]`. Each task, a band of one image's
/// output rows or several small images whole (see `Bands`), gathers its `[cin·k², pixels]` neighbourhood
/// matrix (one image's 1×1 convolution reads the input in place) and multiplies it by the weights into the
/// output; the tasks run in parallel.
///
/// # Panics
/// If a buffer's length does not match `c`, or `k` is even.
pub fn conv_same(x: &[f32], weight: &[f32], bias: Option<&[f32]>, c: Conv) -> Vec<f32> {
    conv_banded(x, weight, bias, c, BAND_VALUES)
}

/// [`conv_same`] with neighbourhood matrices of at most `band_values` values (at least one output row).
fn conv_banded(x: &[f32], weight: &[f32], bias: Option<&[f32]>, c: Conv, band_values: usize) -> Vec<f32> {
    let Conv { batch, cin, cout, h, w, k } = c;
    assert!(k % 2 == 1, "odd kernel");
    assert_eq!(x.len(), batch * cin * h * w, "input buffer");
    assert_eq!(weight.len(), cout * cin * k * k, "weight buffer");
    assert!(bias.is_none_or(|b| b.len() == cout), "bias buffer");
    let (hw, depth) = (h * w, cin * k * k);
    let mut out = vec![0.0f32; batch * cout * hw];
    if depth > 0 && !out.is_empty() {
        let bands = Bands::new(c, band_values);
        let dst = Shared(out.as_mut_ptr());
        (0..bands.tasks).into_par_iter().for_each_init(
            || bands.scratch(),
            |(cols, wide), task| {
                let task = bands.task(task);
                let n = task.pixels(w);
                let (cols, cols_rs) = bands.gather(x, &task, cols);
                let one = task.images.len() == 1;
                // One image: straight into its output rows (cout rows of n values, hw apart); several: into
                // `wide`, then each image's planes to its place.
                // SAFETY: the output rows are inside `out` and no other task's (bands and images are disjoint);
                // `wide` holds cout×n; the weights are cout×depth row-major; `cols` depth×n, row stride cols_rs.
                unsafe {
                    let target = if one {
                        (dst.get().add(task.images.start * cout * hw + task.rows.start * w), [hw as isize, 1])
                    } else {
                        (wide.as_mut_ptr(), [n as isize, 1])
                    };
                    let (weight, cols) =
                        ((weight.as_ptr(), [depth as isize, 1]), (cols.as_ptr(), [cols_rs as isize, 1]));
                    matmul([cout, n, depth], target, false, weight, cols, 1.0, bands.parallelism());
                    if !one {
                        for (j, b) in task.images.clone().enumerate() {
                            for o in 0..cout {
                                let src = &wide[o * n + j * hw..][..hw];
                                std::ptr::copy_nonoverlapping(src.as_ptr(), dst.get().add((b * cout + o) * hw), hw);
                            }
                        }
                    }
                }
            },
        );
    }
    if let Some(bias) = bias {
        out.par_chunks_mut((cout * hw).max(1)).for_each(|image| {
            for (plane, b) in image.chunks_exact_mut(hw.max(1)).zip(bias) {
                plane.iter_mut().for_each(|v| *v += b);
            }
        });
    }
    out
}

/// The gradients of [`conv_same`] (without its bias) for the output gradient `dy`: `(dx, dweight)`, each only
/// if asked for in `want`. The input's is the convolution of `dy` with the kernel flipped and the channels
/// swapped (output pixel (y, x) reached input pixel (y + dy - p, x + dx - p) through tap (dy, dx)); the
/// weight's is `dy` times each band's neighbourhood matrix, summed over the bands (per thread, then added).
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
    conv_backward_banded(x, weight, dy, c, want, BAND_VALUES)
}

/// [`conv_same_backward`] with neighbourhood matrices of at most `band_values` values.
fn conv_backward_banded(
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    c: Conv,
    want: (bool, bool),
    band_values: usize,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let Conv { batch, cin, cout, h, w, k } = c;
    assert!(k % 2 == 1, "odd kernel");
    assert_eq!(x.len(), batch * cin * h * w, "input buffer");
    assert_eq!(weight.len(), cout * cin * k * k, "weight buffer");
    assert_eq!(dy.len(), batch * cout * h * w, "gradient buffer");
    let kk = k * k;
    let dx = want.0.then(|| {
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
        conv_banded(dy, &flipped, None, Conv { cin: cout, cout: cin, ..c }, band_values)
    });
    let dweight = want.1.then(|| {
        let (hw, depth) = (h * w, cin * kk);
        if depth == 0 || batch * hw == 0 {
            return vec![0.0f32; cout * depth];
        }
        let bands = Bands::new(c, band_values);
        (0..bands.tasks)
            .into_par_iter()
            .fold(
                || (bands.scratch(), vec![0.0f32; cout * depth]),
                |((mut cols, mut wide), mut dw), task| {
                    let task = bands.task(task);
                    let n = task.pixels(w);
                    let (band, cols_rs) = bands.gather(x, &task, &mut cols);
                    // One image: its gradient rows in place (cout rows of n values, hw apart); several: side
                    // by side in `wide`, as the neighbourhood matrix's columns.
                    let (grad, grad_rs) = if task.images.len() == 1 {
                        (&dy[task.images.start * cout * hw + task.rows.start * w..], hw)
                    } else {
                        for (j, b) in task.images.clone().enumerate() {
                            for o in 0..cout {
                                wide[o * n + j * hw..][..hw].copy_from_slice(&dy[(b * cout + o) * hw..][..hw]);
                            }
                        }
                        (&wide[..], n)
                    };
                    // SAFETY: dw is cout×depth row-major; the gradient is cout rows of n values, grad_rs apart,
                    // inside its buffer; `band`ᵀ is n×depth, read from the depth×n matrix with row stride cols_rs.
                    unsafe {
                        matmul(
                            [cout, depth, n],
                            (dw.as_mut_ptr(), [depth as isize, 1]),
                            true,
                            (grad.as_ptr(), [grad_rs as isize, 1]),
                            (band.as_ptr(), [1, cols_rs as isize]),
                            1.0,
                            bands.parallelism(),
                        );
                    }
                    ((cols, wide), dw)
                },
            )
            .map(|(_, dw)| dw)
            .reduce(
                || vec![0.0f32; cout * depth],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    a
                },
            )
    });
    (dx, dweight)
}

/// How [`conv_same`] splits its work into `tasks`: bands of `rows` output rows of one image, or where a whole
/// image's neighbourhood matrix is small, groups of `images` whole images, so that each product stays wide.
#[derive(Debug, Clone, Copy)]
struct Bands {
    c: Conv,
    rows: usize,
    images: usize,
    tasks: usize,
}

/// One task of [`Bands`]: output rows `rows` of images `images`.
#[derive(Debug, Clone)]
struct Task {
    images: Range<usize>,
    rows: Range<usize>,
}

impl Task {
    /// Output pixels of the task (columns of its matrices), image by image.
    fn pixels(&self, w: usize) -> usize {
        self.images.len() * self.rows.len() * w
    }
}

impl Bands {
    /// Tasks whose neighbourhood matrix holds at most `band_values` values (at least one row of one image).
    fn new(c: Conv, band_values: usize) -> Self {
        let per_row = (c.cin * c.k * c.k * c.w).max(1);
        let rows = (band_values / per_row).clamp(1, c.h.max(1));
        let images = if rows < c.h { 1 } else { (band_values / (per_row * c.h.max(1))).clamp(1, c.batch.max(1)) };
        let tasks = if images > 1 { c.batch.div_ceil(images) } else { c.batch * c.h.div_ceil(rows) };
        Self { c, rows, images, tasks }
    }

    /// How each task's product runs: on one thread where the tasks keep every core busy, else split by `gemm`
    /// itself (a small plane's few tasks).
    fn parallelism(&self) -> Parallelism {
        if self.tasks >= 2 * rayon::current_num_threads() { Parallelism::None } else { Parallelism::Rayon(0) }
    }

    /// Scratch of one task: its neighbourhood matrix and a `[cout, pixels]` matrix for grouped images.
    fn scratch(&self) -> (Vec<f32>, Vec<f32>) {
        let Conv { cin, cout, w, k, .. } = self.c;
        let pixels = self.images * self.rows * w;
        let cols = if k == 1 && self.images == 1 { 0 } else { cin * k * k * pixels };
        let wide = if self.images > 1 { cout * pixels } else { 0 };
        (vec![0.0f32; cols], vec![0.0f32; wide])
    }

    /// The images and output rows of task `task`.
    fn task(&self, task: usize) -> Task {
        let Conv { batch, h, .. } = self.c;
        if self.images > 1 {
            return Task { images: task * self.images..((task + 1) * self.images).min(batch), rows: 0..h };
        }
        let per_image = h.div_ceil(self.rows);
        let (b, band) = (task / per_image, task % per_image);
        Task { images: b..b + 1, rows: band * self.rows..((band + 1) * self.rows).min(h) }
    }

    /// The task's neighbourhood matrix `[cin·k², pixels]` (images side by side), zero past the borders, and its
    /// row stride: gathered into `cols`, or for one image's 1×1 kernel the input itself (planes `h·w` apart).
    fn gather<'a>(&self, x: &'a [f32], task: &Task, cols: &'a mut [f32]) -> (&'a [f32], usize) {
        let Conv { cin, h, w, k, .. } = self.c;
        let (hw, kk) = (h * w, k * k);
        if k == 1 && task.images.len() == 1 {
            return (&x[task.images.start * cin * hw + task.rows.start * w..], hw);
        }
        let (n, per_image) = (task.pixels(w), task.rows.len() * w);
        let cols = &mut cols[..cin * kk * n];
        cols.fill(0.0);
        for (r, row) in cols.chunks_exact_mut(n).enumerate() {
            for (j, b) in task.images.clone().enumerate() {
                let plane = &x[(b * cin + r / kk) * hw..][..hw];
                let row = &mut row[j * per_image..][..per_image];
                tap_runs(self.c, r % kk, task.rows.clone(), |col, pixel, len| {
                    row[col..][..len].copy_from_slice(&plane[pixel..][..len]);
                });
            }
        }
        (cols, n)
    }
}

/// Calls `f(col, pixel, len)` for every run of kernel tap `t` (of k², row-major) that falls inside the plane,
/// for the output rows `rows`: the `len` output pixels from `col` on (counted from the first of `rows`) take
/// the input plane's `len` values from `pixel` on (one output row's columns whose tap lies inside the plane;
/// the others stay zero).
fn tap_runs(c: Conv, t: usize, rows: Range<usize>, mut f: impl FnMut(usize, usize, usize)) {
    let Conv { h, w, k, .. } = c;
    let p = k / 2;
    let (dy, dx) = (t / k, t % k);
    // Output columns xo whose source column xo + dx - p lies in 0..w.
    let (first, last) = (p.saturating_sub(dx), (w + p).saturating_sub(dx).min(w));
    if first >= last {
        return;
    }
    for yo in rows.clone() {
        if let Some(y) = (yo + dy).checked_sub(p).filter(|&y| y < h) {
            f((yo - rows.start) * w + first, y * w + first + dx - p, last - first);
        }
    }
}

/// The output buffer of [`conv_banded`], written by its parallel tasks at disjoint places.
struct Shared(*mut f32);

// SAFETY: the tasks write disjoint parts of the buffer, which outlives them.
unsafe impl Sync for Shared {}

impl Shared {
    /// The buffer's start (a method, so that closures capture the `Sync` wrapper rather than the pointer).
    fn get(&self) -> *mut f32 {
        self.0
    }
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
            // Bands of one output row (the tasks of a large plane): the same numbers.
            let one = conv_banded(&x, &weight, Some(&bias), c, 1);
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
            // Bands of one output row: the same numbers, also on one thread, where one sum takes every band.
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a thread pool");
            for (one_dx, one_dw) in [
                conv_backward_banded(&x, &weight, &dy, c, (true, true), 1),
                pool.install(|| conv_backward_banded(&x, &weight, &dy, c, (true, true), 1)),
            ] {
                assert!(err(&one_dx.unwrap(), &dx) < 1e-5 && err(&one_dw.unwrap(), &dw) < 1e-5, "{c:?}");
            }
            assert_eq!(conv_same_backward(&x, &weight, &dy, c, (false, true)), (None, Some(got_dw)));
        }
    }
}
