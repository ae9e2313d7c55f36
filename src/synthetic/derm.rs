//! Dermoscopy phantoms: skin and one pigmented lesion seen through a dermatoscope (the content), the
//! diagnosis (melanoma or melanocytic nevus), and four acquisition artifacts (hair, gel bubbles, ink
//! markings, ruler) as independent attributes.

use libm::{atan2f, cosf, powf, sinf, sqrtf};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::canvas::{Canvas, cell_edges, coverage, cubic, fbm, smoothstep};

/// The subject: skin, lesion geometry and the dermatoscope's field of view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DermContent {
    /// Skin colour (linear-ish sRGB in [0, 1]).
    pub skin: [f32; 3],
    /// Amplitude of the skin texture.
    pub texture: f32,
    /// Lesion centre.
    pub center: [f32; 2],
    /// Lesion mean radius.
    pub radius: f32,
    /// Lesion elongation (aspect) and orientation.
    pub aspect: f32,
    /// Orientation of the elongation (radians).
    pub angle: f32,
    /// Low-order border harmonics (amplitude, phase) shared by both diagnoses.
    pub harmonics: [(f32, f32); 3],
    /// Pigment darkness of the lesion.
    pub pigment: f32,
    /// Radius of the dermatoscope's circular field.
    pub vignette: f32,
    /// Direction of the illumination gradient (radians).
    pub light_angle: f32,
    /// Seed of textures.
    pub texture_seed: u32,
}

/// The diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Diagnosis {
    /// Melanoma (MEL): asymmetric, irregular border, several colours, blue-white veil, atypical network.
    Melanoma,
    /// Melanocytic nevus (NV): symmetric, regular border, uniform brown, regular network.
    Nevus,
}

/// Diagnosis and artifacts of one dermoscopy image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DermAttributes {
    /// Melanoma or nevus.
    pub diagnosis: Diagnosis,
    /// Hair strands across the field.
    pub hair: bool,
    /// Air bubbles in the immersion gel.
    pub gel_bubbles: bool,
    /// Surgical ink markings.
    pub ink: bool,
    /// A ruler at the field's edge.
    pub ruler: bool,
    /// Seed of the attributes' own geometry.
    pub seed: u64,
}

impl DermContent {
    /// Draws a subject from `rng`.
    pub fn sample(rng: &mut impl Rng) -> Self {
        // Skin tones from light to dark brown.
        let t: f32 = rng.random_range(0.0..1.0);
        let light = [0.93, 0.76, 0.67];
        let dark = [0.55, 0.38, 0.28];
        let skin = [0, 1, 2].map(|i| light[i] + t * t * (dark[i] - light[i]));
        Self {
            skin,
            texture: rng.random_range(0.02..0.06),
            center: [rng.random_range(0.42..0.58), rng.random_range(0.42..0.58)],
            radius: rng.random_range(0.14..0.24),
            aspect: rng.random_range(1.0..1.3),
            angle: rng.random_range(0.0..std::f32::consts::PI),
            harmonics: [0; 3].map(|_| (rng.random_range(0.0..0.05), rng.random_range(0.0..std::f32::consts::TAU))),
            pigment: rng.random_range(0.45..0.8),
            vignette: rng.random_range(0.46..0.56),
            light_angle: rng.random_range(0.0..std::f32::consts::TAU),
            texture_seed: rng.random(),
        }
    }
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [0, 1, 2].map(|i| a[i] + t.clamp(0.0, 1.0) * (b[i] - a[i]))
}

/// Renders a subject with the given attributes as a `size`×`size` RGB image in [0, 1].
pub fn render(c: &DermContent, a: &DermAttributes, size: usize) -> Canvas {
    let mel = a.diagnosis == Diagnosis::Melanoma;
    let seed = c.texture_seed;
    // Melanoma-only border irregularity and asymmetry (fixed per subject, so MEL/NV share the base shape).
    let mut r = ChaCha8Rng::seed_from_u64(seed as u64 ^ 0x3e1);
    let irregular: Vec<(f32, f32, f32)> = (0..5)
        .map(|k| {
            (
                r.random_range(0.04..0.09) / (1.0 + k as f32 * 0.4),
                (5 + 2 * k) as f32,
                r.random_range(0.0..std::f32::consts::TAU),
            )
        })
        .collect();
    let bulge = (r.random_range(0.12..0.22), r.random_range(0.0..std::f32::consts::TAU));
    let blotch =
        [c.center[0] + r.random_range(-0.4..0.4) * c.radius, c.center[1] + r.random_range(-0.4..0.4) * c.radius];
    let veil =
        [c.center[0] + r.random_range(-0.35..0.35) * c.radius, c.center[1] + r.random_range(-0.35..0.35) * c.radius];
    let (ca, sa) = (cosf(c.angle), sinf(c.angle));
    let brown = mix([0.55, 0.33, 0.2], [0.28, 0.15, 0.08], c.pigment);
    let dark = [0.12, 0.07, 0.05];
    let blue_gray = [0.42, 0.48, 0.58];
    let red = [0.7, 0.3, 0.28];

    let mut img = Canvas::new(size, 3, 0.0);
    img.apply(|p, out| {
        let (dx, dy) = (p[0] - c.center[0], p[1] - c.center[1]);
        // Lesion frame: rotate and squash for elongation.
        let (x, y) = (ca * dx + sa * dy, (-sa * dx + ca * dy) * c.aspect);
        let rho = sqrtf(x * x + y * y);
        let theta = atan2f(y, x);
        let mut boundary = c.radius
            * (1.0
                + c.harmonics
                    .iter()
                    .enumerate()
                    .map(|(k, (amp, ph))| amp * cosf((k + 2) as f32 * theta + ph))
                    .sum::<f32>());
        if mel {
            boundary *= 1.0 + bulge.0 * cosf(theta - bulge.1).max(0.0).powi(2);
            boundary *= 1.0 + irregular.iter().map(|(amp, f, ph)| amp * sinf(f * theta + ph)).sum::<f32>();
        }
        let t = rho / boundary; // 0 at centre, 1 at the border
        // Skin: texture, pores, illumination gradient.
        let tex = fbm(p[0], p[1], 24.0, 4, seed) - 0.5;
        let light = 1.0 + 0.08 * (cosf(c.light_angle) * (p[0] - 0.5) + sinf(c.light_angle) * (p[1] - 0.5)) * 2.0;
        let mut col = [0, 1, 2].map(|i| c.skin[i] * (1.0 + c.texture * 2.0 * tex) * light);
        let soft = if mel { 0.06 } else { 0.12 };
        let inside = 1.0 - smoothstep(1.0 - soft, 1.0 + soft * 0.5, t);
        if inside > 0.0 {
            let lesion = if mel {
                // Several colours: brown base, dark blotch, reddish rim areas, blue-white veil; atypical network.
                let mut l =
                    mix(brown, mix(brown, [0.6, 0.42, 0.3], 0.6), fbm(p[0], p[1], 7.0, 3, seed ^ 11) * 1.4 - 0.3);
                let db = sqrtf((p[0] - blotch[0]).powi(2) + (p[1] - blotch[1]).powi(2)) / c.radius;
                l = mix(l, dark, 0.9 * (1.0 - smoothstep(0.15, 0.55, db + 0.25 * fbm(p[0], p[1], 10.0, 2, seed ^ 5))));
                l = mix(l, red, 0.5 * smoothstep(0.55, 0.95, t) * fbm(p[0], p[1], 6.0, 2, seed ^ 9));
                let dv = sqrtf((p[0] - veil[0]).powi(2) + (p[1] - veil[1]).powi(2)) / c.radius;
                l = mix(l, mix(blue_gray, [0.8, 0.84, 0.9], 0.35), 0.75 * (1.0 - smoothstep(0.2, 0.5, dv)));
                let net = network(p, 22.0, seed, true);
                mix(l, dark, 0.55 * net * (1.0 - smoothstep(0.7, 1.0, t)))
            } else {
                // Uniform brown, darker centre fading out; fine regular network.
                let l = mix(brown, mix(brown, c.skin, 0.45), powf(t, 2.0));
                let net = network(p, 30.0, seed, false);
                mix(l, mix(brown, dark, 0.5), 0.35 * net * smoothstep(0.2, 0.6, t) * (1.0 - smoothstep(0.85, 1.0, t)))
            };
            col = mix(col, lesion, inside);
        }
        out.copy_from_slice(&col);
    });
    // Artifacts, each from its own stream so toggling one leaves the others.
    let stream = |tag: u64| ChaCha8Rng::seed_from_u64(a.seed ^ (tag << 48));
    if a.gel_bubbles {
        let mut r = stream(2);
        for _ in 0..r.random_range(3..10) {
            let (cx, cy, rad) = (r.random_range(0.1..0.9), r.random_range(0.1..0.9), r.random_range(0.02..0.07));
            img.disc([cx, cy], rad, &[1.0, 1.0, 1.0], 0.12);
            ring(&mut img, [cx, cy], rad, 0.006, [0.98, 0.98, 1.0], 0.75);
            ring(&mut img, [cx, cy], rad - 0.006, 0.004, [0.3, 0.28, 0.3], 0.3);
            img.disc([cx - rad * 0.4, cy - rad * 0.4], rad * 0.18, &[1.0, 1.0, 1.0], 0.9);
        }
    }
    if a.ink {
        let mut r = stream(3);
        let ink = [0.35, 0.2, 0.55];
        let start = r.random_range(0.0..std::f32::consts::TAU);
        let rad = c.radius * r.random_range(1.45..1.8);
        let n = r.random_range(5..11);
        for k in 0..n {
            let th = start + k as f32 * 0.5;
            let p = [c.center[0] + rad * cosf(th), c.center[1] + rad * sinf(th)];
            if r.random_bool(0.5) {
                img.disc(p, 0.018, &ink, 0.9);
            } else {
                let q = [p[0] + 0.05 * cosf(th + 1.57), p[1] + 0.05 * sinf(th + 1.57)];
                img.stroke(&[p, q], 0.016, &ink, 0.9);
            }
        }
    }
    if a.ruler {
        let mut r = stream(4);
        let edge = r.random_range(0..4);
        let offset = r.random_range(0.06..0.12);
        let along = |s: f32, d: f32| -> [f32; 2] {
            match edge {
                0 => [s, offset + d],
                1 => [s, 1.0 - offset - d],
                2 => [offset + d, s],
                _ => [1.0 - offset - d, s],
            }
        };
        let strip = [along(0.0, 0.0), along(1.0, 0.0)];
        img.stroke(&strip, 0.07, &[0.93, 0.91, 0.82], 0.95);
        let spacing = r.random_range(0.025..0.035);
        let mut s = 0.0;
        let mut k = 0;
        while s < 1.0 {
            let len = if k % 5 == 0 { 0.05 } else { 0.028 };
            img.stroke(&[along(s, -0.035), along(s, -0.035 + len)], 0.004, &[0.1, 0.1, 0.1], 0.9);
            s += spacing;
            k += 1;
        }
    }
    if a.hair {
        let mut r = stream(1);
        let color = if r.random_bool(0.7) { [0.08, 0.06, 0.05] } else { [0.3, 0.2, 0.12] };
        for _ in 0..r.random_range(5..20) {
            let p0 = [r.random_range(-0.1..1.1), r.random_range(-0.1..1.1)];
            let th: f32 = r.random_range(0.0..std::f32::consts::TAU);
            let len = r.random_range(0.3..0.9);
            let p3 = [p0[0] + len * cosf(th), p0[1] + len * sinf(th)];
            let (w1, w2): (f32, f32) = (r.random_range(-0.12..0.12), r.random_range(-0.12..0.12));
            let normal = [-sinf(th), cosf(th)];
            let bend = |t: f32, w: f32| {
                [p0[0] + t * (p3[0] - p0[0]) + w * normal[0], p0[1] + t * (p3[1] - p0[1]) + w * normal[1]]
            };
            let pts = cubic(p0, bend(0.33, w1), bend(0.66, w2), p3, 32);
            img.stroke(&pts, r.random_range(0.006..0.011), &color, 0.92);
        }
    }
    // Dermatoscope field: dark outside a soft circle, slight falloff inside.
    img.apply(|p, out| {
        let d = sqrtf((p[0] - 0.5).powi(2) + (p[1] - 0.5).powi(2));
        let v = coverage(d - c.vignette, 0.02) * (1.0 - 0.25 * smoothstep(c.vignette * 0.6, c.vignette, d));
        for x in out.iter_mut() {
            *x = (*x * v).clamp(0.0, 1.0);
        }
    });
    img.blur(0.4 * size as f32 / 128.0);
    img
}

/// A pigment network: a regular honeycomb mesh (nevus) or thick, irregular, broken lines (melanoma).
fn network(p: [f32; 2], freq: f32, seed: u32, atypical: bool) -> f32 {
    if atypical {
        let broken = smoothstep(0.35, 0.6, fbm(p[0], p[1], 9.0, 2, seed ^ 23));
        cell_edges(p[0], p[1], freq * 0.8, 1.0, 0.35, seed) * broken
    } else {
        cell_edges(p[0], p[1], freq, 0.35, 0.18, seed)
    }
}

fn ring(img: &mut Canvas, c: [f32; 2], r: f32, w: f32, color: [f32; 3], opacity: f32) {
    let m = r + w + 0.01;
    img.blend_in([c[0] - m, c[1] - m, c[0] + m, c[1] + m], &color, |p| {
        let d = sqrtf((p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2));
        opacity * coverage((d - r).abs() - w / 2.0, 0.003)
    });
}
