//! A tiny deterministic rasterizer for the phantoms: soft-edged shapes and strokes evaluated per pixel in
//! normalized coordinates (u right, v down, both in [0, 1]), hashed noise, and a separable blur. Only IEEE
//! arithmetic and `libm`, so a seed renders the same pixels natively and in the browser.

use libm::{expf, floorf, sqrtf};

/// A multi-channel f32 image, row-major, channels interleaved.
#[derive(Debug, Clone)]
pub struct Canvas {
    /// Width and height in pixels (square).
    pub size: usize,
    /// Channels per pixel (1 or 3).
    pub channels: usize,
    /// Pixel values, nominally in [0, 1].
    pub data: Vec<f32>,
}

/// Smooth step from 0 (at `edge0`) to 1 (at `edge1`).
pub fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Coverage (0..1) of a signed distance `d` (negative inside) with an edge `soft` wide.
pub fn coverage(d: f32, soft: f32) -> f32 {
    1.0 - smoothstep(-soft, soft, d)
}

/// Distance from `p` to the segment `a`–`b`.
pub fn segment_distance(p: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    let (ab, ap) = ([b[0] - a[0], b[1] - a[1]], [p[0] - a[0], p[1] - a[1]]);
    let len2 = ab[0] * ab[0] + ab[1] * ab[1];
    let t = if len2 > 0.0 { ((ap[0] * ab[0] + ap[1] * ab[1]) / len2).clamp(0.0, 1.0) } else { 0.0 };
    let (dx, dy) = (ap[0] - t * ab[0], ap[1] - t * ab[1]);
    sqrtf(dx * dx + dy * dy)
}

/// Points along a cubic Bézier curve.
pub fn cubic(p0: [f32; 2], p1: [f32; 2], p2: [f32; 2], p3: [f32; 2], n: usize) -> Vec<[f32; 2]> {
    (0..=n)
        .map(|i| {
            let t = i as f32 / n as f32;
            let s = 1.0 - t;
            let w = [s * s * s, 3.0 * s * s * t, 3.0 * s * t * t, t * t * t];
            [
                w[0] * p0[0] + w[1] * p1[0] + w[2] * p2[0] + w[3] * p3[0],
                w[0] * p0[1] + w[1] * p1[1] + w[2] * p2[1] + w[3] * p3[1],
            ]
        })
        .collect()
}

/// Distance from `p` to a polyline.
pub fn polyline_distance(p: [f32; 2], pts: &[[f32; 2]]) -> f32 {
    pts.windows(2).map(|w| segment_distance(p, w[0], w[1])).fold(f32::INFINITY, f32::min)
}

/// Bounding box of a polyline grown by `margin`, to skip far pixels quickly.
fn bbox(pts: &[[f32; 2]], margin: f32) -> [f32; 4] {
    pts.iter().fold([f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY], |b, p| {
        [b[0].min(p[0] - margin), b[1].min(p[1] - margin), b[2].max(p[0] + margin), b[3].max(p[1] + margin)]
    })
}

/// A hash of integer lattice coordinates and a seed to [0, 1).
pub fn hash(x: i32, y: i32, seed: u32) -> f32 {
    let mut h =
        (x as u32).wrapping_mul(0x8da6_b343) ^ (y as u32).wrapping_mul(0xd816_3841) ^ seed.wrapping_mul(0xcb1a_b31f);
    h ^= h >> 13;
    h = h.wrapping_mul(0x5bd1_e995);
    h ^= h >> 15;
    (h >> 8) as f32 / (1u32 << 24) as f32
}

/// Smooth value noise in [0, 1) at `(u, v)` with lattice cell `1/freq`.
pub fn value_noise(u: f32, v: f32, freq: f32, seed: u32) -> f32 {
    let (x, y) = (u * freq, v * freq);
    let (x0, y0) = (floorf(x), floorf(y));
    let (fx, fy) = (x - x0, y - y0);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let (ix, iy) = (x0 as i32, y0 as i32);
    let a = hash(ix, iy, seed) + sx * (hash(ix + 1, iy, seed) - hash(ix, iy, seed));
    let b = hash(ix, iy + 1, seed) + sx * (hash(ix + 1, iy + 1, seed) - hash(ix, iy + 1, seed));
    a + sy * (b - a)
}

/// Closeness (1 on the edges, 0 inside) to the borders of a jittered cell pattern with `freq` cells per unit:
/// a honeycomb-like mesh, regular at small `jitter`, irregular near 1.
pub fn cell_edges(u: f32, v: f32, freq: f32, jitter: f32, width: f32, seed: u32) -> f32 {
    let (x, y) = (u * freq, v * freq);
    let (cx, cy) = (floorf(x) as i32, floorf(y) as i32);
    let (mut f1, mut f2) = (f32::INFINITY, f32::INFINITY);
    for j in -1..=1 {
        for i in -1..=1 {
            let (gx, gy) = (cx + i, cy + j);
            let px = gx as f32 + 0.5 + jitter * (hash(gx, gy, seed) - 0.5);
            let py = gy as f32 + 0.5 + jitter * (hash(gx, gy, seed ^ 0x9e37) - 0.5);
            let d = sqrtf((x - px) * (x - px) + (y - py) * (y - py));
            if d < f1 {
                f2 = f1;
                f1 = d;
            } else if d < f2 {
                f2 = d;
            }
        }
    }
    1.0 - smoothstep(0.0, width, f2 - f1)
}

/// Fractal (multi-octave) value noise in roughly [0, 1).
pub fn fbm(u: f32, v: f32, freq: f32, octaves: u32, seed: u32) -> f32 {
    let (mut sum, mut amp, mut norm, mut f) = (0.0, 1.0, 0.0, freq);
    for o in 0..octaves {
        sum += amp * value_noise(u, v, f, seed.wrapping_add(o * 7919));
        norm += amp;
        amp *= 0.5;
        f *= 2.0;
    }
    sum / norm
}

impl Canvas {
    /// A canvas filled with `value`.
    pub fn new(size: usize, channels: usize, value: f32) -> Self {
        Self { size, channels, data: vec![value; size * size * channels] }
    }

    /// Normalized coordinates of pixel centre `(x, y)`.
    pub fn uv(&self, x: usize, y: usize) -> [f32; 2] {
        [(x as f32 + 0.5) / self.size as f32, (y as f32 + 0.5) / self.size as f32]
    }

    /// Width of one pixel in normalized units.
    pub fn pixel(&self) -> f32 {
        1.0 / self.size as f32
    }

    /// For every pixel, `f(uv, pixel)` edits the pixel's channels in place.
    pub fn apply(&mut self, mut f: impl FnMut([f32; 2], &mut [f32])) {
        let (size, ch) = (self.size, self.channels);
        for y in 0..size {
            for x in 0..size {
                let uv = [(x as f32 + 0.5) / size as f32, (y as f32 + 0.5) / size as f32];
                let i = (y * size + x) * ch;
                f(uv, &mut self.data[i..i + ch]);
            }
        }
    }

    /// Blends `color` over the pixels with alpha `alpha(uv)`, visiting only the box `[u0, v0, u1, v1]`.
    pub fn blend_in(&mut self, bounds: [f32; 4], color: &[f32], mut alpha: impl FnMut([f32; 2]) -> f32) {
        let s = self.size as f32;
        let lo = |t: f32| (t * s).floor().clamp(0.0, s) as usize;
        let hi = |t: f32| (t * s).ceil().clamp(0.0, s) as usize;
        let ch = self.channels;
        for y in lo(bounds[1])..hi(bounds[3]) {
            for x in lo(bounds[0])..hi(bounds[2]) {
                let uv = self.uv(x, y);
                let a = alpha(uv).clamp(0.0, 1.0);
                if a > 0.0 {
                    let i = (y * self.size + x) * ch;
                    for c in 0..ch {
                        self.data[i + c] += a * (color[c % color.len()] - self.data[i + c]);
                    }
                }
            }
        }
    }

    /// Draws a stroke along `pts`, `width` wide (normalized), blended with `color` at `opacity`.
    pub fn stroke(&mut self, pts: &[[f32; 2]], width: f32, color: &[f32], opacity: f32) {
        let soft = self.pixel() * 0.75;
        let b = bbox(pts, width + 2.0 * soft);
        self.blend_in(b, color, |p| opacity * coverage(polyline_distance(p, pts) - width / 2.0, soft));
    }

    /// A filled disc.
    pub fn disc(&mut self, c: [f32; 2], r: f32, color: &[f32], opacity: f32) {
        let soft = self.pixel() * 0.75;
        let m = r + 2.0 * soft;
        self.blend_in([c[0] - m, c[1] - m, c[0] + m, c[1] + m], color, |p| {
            let (dx, dy) = (p[0] - c[0], p[1] - c[1]);
            opacity * coverage(sqrtf(dx * dx + dy * dy) - r, soft)
        });
    }

    /// Separable Gaussian blur with standard deviation `sigma` pixels (edges clamped).
    pub fn blur(&mut self, sigma: f32) {
        if sigma <= 0.0 {
            return;
        }
        let r = (3.0 * sigma).ceil() as isize;
        let k: Vec<f32> = (-r..=r).map(|i| expf(-((i * i) as f32) / (2.0 * sigma * sigma))).collect();
        let norm: f32 = k.iter().sum();
        let (n, ch) = (self.size as isize, self.channels);
        for horizontal in [true, false] {
            let src = self.data.clone();
            for y in 0..n {
                for x in 0..n {
                    for c in 0..ch {
                        let mut acc = 0.0;
                        for (j, w) in k.iter().enumerate() {
                            let o = j as isize - r;
                            let (sx, sy) =
                                if horizontal { ((x + o).clamp(0, n - 1), y) } else { (x, (y + o).clamp(0, n - 1)) };
                            acc += w * src[((sy * n + sx) as usize) * ch + c];
                        }
                        self.data[((y * n + x) as usize) * ch + c] = acc / norm;
                    }
                }
            }
        }
    }

    /// Network input: planar `[channels, size, size]` values in [-1, 1]. A grayscale canvas asked for more
    /// channels repeats its one channel (chest X-rays as RGB).
    pub fn to_planar(&self, channels: usize) -> Vec<f32> {
        let plane = self.size * self.size;
        let mut chw = vec![0f32; channels * plane];
        for p in 0..plane {
            for c in 0..channels {
                chw[c * plane + p] = self.data[p * self.channels + c % self.channels] * 2.0 - 1.0;
            }
        }
        chw
    }

    /// 8-bit pixels (clamped), channels interleaved.
    pub fn to_u8(&self) -> Vec<u8> {
        self.data.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect()
    }
}
