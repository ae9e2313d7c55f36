//! Frontal (PA) chest X-ray phantoms: one subject's anatomy and acquisition (the content), with pleural
//! effusion and support devices as independent attributes. Patient's right is on the image's left.

use libm::{cosf, expf, powf, sinf, sqrtf};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::canvas::{Canvas, coverage, cubic, fbm, hash, smoothstep};

/// One subject's anatomy and acquisition: everything that must stay the same along a trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChestContent {
    /// Torso width as a fraction of the image (body habitus).
    pub body_width: f32,
    /// Top of the lung apices.
    pub lung_top: f32,
    /// Lung height from apex to the lateral costophrenic angle.
    pub lung_height: f32,
    /// Width of each lung.
    pub lung_width: f32,
    /// Half-width of the mediastinum between the lungs.
    pub mediastinum: f32,
    /// Heart width (cardiothoracic ratio ≈ heart_width / (2·lung_width + 2·mediastinum)).
    pub heart_width: f32,
    /// Heart centre offset to the patient's left (image right).
    pub heart_shift: f32,
    /// Height of the diaphragm domes above the costophrenic angles.
    pub dome: f32,
    /// How much lower the left hemidiaphragm sits.
    pub left_diaphragm_drop: f32,
    /// Vertical spacing of the ribs.
    pub rib_spacing: f32,
    /// Clavicle tilt.
    pub clavicle_tilt: f32,
    /// Spine width.
    pub spine_width: f32,
    /// Exposure: overall brightness gain.
    pub exposure: f32,
    /// Contrast gamma.
    pub gamma: f32,
    /// Quantum-noise level.
    pub noise: f32,
    /// In-plane rotation of the patient (radians).
    pub tilt: f32,
    /// Seed of lung markings and noise texture.
    pub texture_seed: u32,
}

/// Laterality of a pleural effusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Patient's left (image right).
    Left,
    /// Patient's right (image left).
    Right,
    /// Both sides.
    Bilateral,
}

/// The devices a "support devices" image may show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Devices {
    /// Endotracheal tube.
    pub endotracheal_tube: bool,
    /// Nasogastric tube.
    pub nasogastric_tube: bool,
    /// Central venous line.
    pub central_line: bool,
    /// Pacemaker with leads.
    pub pacemaker: bool,
    /// ECG electrodes.
    pub ecg_electrodes: bool,
}

/// The attributes of one chest image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChestAttributes {
    /// Pleural effusion: side and severity (fraction of lung height filled, 0.04–0.4: from a blunted
    /// costophrenic angle to a large basal opacity).
    pub effusion: Option<(Side, f32)>,
    /// Support devices present (None: no devices).
    pub devices: Option<Devices>,
}

impl ChestContent {
    /// Draws a subject from `rng`.
    pub fn sample(rng: &mut impl Rng) -> Self {
        Self {
            body_width: rng.random_range(0.80..0.97),
            lung_top: rng.random_range(0.12..0.18),
            lung_height: rng.random_range(0.52..0.64),
            lung_width: rng.random_range(0.25..0.31),
            mediastinum: rng.random_range(0.045..0.07),
            heart_width: rng.random_range(0.24..0.36),
            heart_shift: rng.random_range(0.0..0.06),
            dome: rng.random_range(0.05..0.09),
            left_diaphragm_drop: rng.random_range(0.0..0.035),
            rib_spacing: rng.random_range(0.052..0.066),
            clavicle_tilt: rng.random_range(0.05..0.2),
            spine_width: rng.random_range(0.05..0.07),
            exposure: rng.random_range(0.85..1.12),
            gamma: rng.random_range(0.85..1.2),
            noise: rng.random_range(0.008..0.03),
            tilt: rng.random_range(-0.04..0.04),
            texture_seed: rng.random(),
        }
    }
}

impl ChestAttributes {
    /// Draws the details of the requested attributes from `seed` (one stream per attribute, so toggling one
    /// never changes another).
    pub fn sample(seed: u64, effusion: bool, devices: bool) -> Self {
        let mut e = ChaCha8Rng::seed_from_u64(seed ^ 0x0e ^ (1 << 40));
        let mut d = ChaCha8Rng::seed_from_u64(seed ^ 0xde ^ (2 << 40));
        let side = match e.random_range(0..3) {
            0 => Side::Left,
            1 => Side::Right,
            _ => Side::Bilateral,
        };
        let severity = e.random_range(0.04..0.4);
        let mut set = Devices {
            endotracheal_tube: d.random_bool(0.5),
            nasogastric_tube: d.random_bool(0.45),
            central_line: d.random_bool(0.5),
            pacemaker: d.random_bool(0.3),
            ecg_electrodes: d.random_bool(0.5),
        };
        if !(set.endotracheal_tube || set.nasogastric_tube || set.central_line || set.pacemaker || set.ecg_electrodes) {
            set.central_line = true;
        }
        Self { effusion: effusion.then_some((side, severity)), devices: devices.then_some(set) }
    }
}

struct Geometry {
    c: ChestContent,
}

impl Geometry {
    /// Centre x of the lung on image side `s` (-1 image left = patient right, +1 image right).
    fn lung_center(&self, s: f32) -> f32 {
        0.5 + s * (self.c.mediastinum + self.c.lung_width / 2.0)
    }
    /// Lateral costophrenic-angle height of the lung on side `s`.
    fn base(&self, s: f32) -> f32 {
        self.c.lung_top + self.c.lung_height + if s > 0.0 { self.c.left_diaphragm_drop } else { 0.0 }
    }
    /// Diaphragm height under the lung on side `s` at `u`: a dome highest mid-lung, lowest laterally.
    fn diaphragm(&self, s: f32, u: f32) -> f32 {
        let x = ((u - self.lung_center(s)) / (self.c.lung_width / 2.0)).clamp(-1.2, 1.2);
        // Peak sits slightly medial; the lateral end dives into a sharp costophrenic angle.
        let xl = x * s; // +1 lateral
        self.base(s) - self.c.dome * (1.0 - powf(((xl + 0.25) / 1.25).abs().min(1.0), 2.2))
    }
    /// Coverage of the cardiac shadow.
    fn heart(&self, p: [f32; 2]) -> f32 {
        let c = &self.c;
        let (hx, hy) = (
            (p[0] - 0.5 - c.heart_shift) / (c.heart_width / 2.0),
            (p[1] - c.lung_top - c.lung_height * 0.72) / (c.lung_height * 0.22),
        );
        coverage(sqrtf(hx * hx + hy * hy) - 1.0, 0.04)
    }
    /// Signed distance-like value (negative inside) of the lung on side `s`.
    fn lung(&self, s: f32, p: [f32; 2]) -> f32 {
        let c = &self.c;
        let (u, v) = (p[0], p[1]);
        let hw = c.lung_width / 2.0;
        let x = (u - self.lung_center(s)) / hw;
        let xl = x * s;
        let t = ((v - c.lung_top) / c.lung_height).max(0.0);
        // Width profile: rounded apex widening to full width by a third of the height; the medial
        // border bulges out where the heart is.
        let apex = sqrtf((t / 0.3).min(1.0));
        let lateral = apex * (1.0 + 0.06 * sinf(t * 2.5));
        let medial =
            apex * (1.0 - 0.55 * smoothstep(0.45, 0.9, t) * (c.heart_width / 0.3) * if s > 0.0 { 1.0 } else { 0.6 });
        let side = if xl >= 0.0 { xl - lateral } else { -xl - medial };
        let top = c.lung_top - v;
        let bottom = v - self.diaphragm(s, u);
        (side * hw).max(top).max(bottom)
    }
}

/// Renders a subject with the given attributes as a `size`×`size` grayscale image in [0, 1].
pub fn render(content: &ChestContent, attrs: &ChestAttributes, size: usize) -> Canvas {
    let g = Geometry { c: content.clone() };
    let c = &g.c;
    let px = 1.0 / size as f32;
    // Anatomy is defined upright; pixels are mapped into that frame, and strokes out of it.
    let rotate = rotation(c.tilt);
    let mut img = Canvas::new(size, 1, 0.0);
    let seed = c.texture_seed;
    img.apply(|p0, out| {
        let p = rotate(p0);
        let (u, v) = (p[0], p[1]);
        // Attenuation model: soft tissue and bone add, aerated lung subtracts.
        let mut a = 0.04;
        // Torso with shoulders and a neck.
        let half = c.body_width / 2.0 * (1.0 - 0.18 * smoothstep(0.16, 0.0, v));
        let torso = coverage((u - 0.5).abs() - half, 0.02) * smoothstep(0.02, 0.1, v);
        let neck = coverage((u - 0.5).abs() - 0.08, 0.015) * smoothstep(0.12, 0.0, v);
        a += 0.5 * torso.max(neck) * (0.9 + 0.1 * (1.0 - (u - 0.5).abs() * 2.0));
        // Heart: a soft-tissue shadow that hides the medial lungs.
        let heart = g.heart(p);
        // Lungs, with vascular markings fanning from the hila.
        for s in [-1.0f32, 1.0] {
            let inside = coverage(g.lung(s, p), 0.006) * (1.0 - heart);
            if inside > 0.0 {
                let hilum = [g.lung_center(s) - s * c.lung_width * 0.3, c.lung_top + c.lung_height * 0.45];
                let r = sqrtf((u - hilum[0]).powi(2) + (v - hilum[1]).powi(2));
                let markings = 0.07 * expf(-r * 7.0) + 0.05 * (fbm(u, v, 18.0, 3, seed) - 0.5);
                a -= inside * (0.36 - markings);
            }
        }
        // Mediastinum and heart are slightly denser than the chest wall.
        let med =
            coverage((u - 0.5).abs() - c.mediastinum * 0.9, 0.01) * smoothstep(c.lung_top - 0.05, c.lung_top + 0.05, v);
        a += 0.05 * med.max(heart);
        // Spine with vertebral bodies, fading behind the heart.
        let sp = coverage((u - 0.5).abs() - c.spine_width / 2.0, 0.008);
        let vert = 0.5 + 0.5 * cosf((v / (c.rib_spacing * 0.95)) * std::f32::consts::TAU);
        a += sp * (0.1 + 0.05 * vert) * smoothstep(0.0, 0.1, v);
        // Abdomen below the diaphragm is dense; a gastric bubble under the left hemidiaphragm.
        let gb = [g.lung_center(1.0) + 0.02, g.base(1.0) + 0.05];
        let (bx, by) = ((u - gb[0]) / 0.06, (v - gb[1]) / 0.03);
        a -= 0.18 * coverage(sqrtf(bx * bx + by * by) - 1.0, 0.3) * smoothstep(gb[1] - 0.03, gb[1], v);
        out[0] = a;
    });
    // Ribs: posterior arcs from the spine, and the clavicles.
    for s in [-1.0f32, 1.0] {
        for i in 0..10 {
            let y0 = c.lung_top - 0.04 + i as f32 * c.rib_spacing;
            let reach = c.mediastinum + c.lung_width * 1.08;
            let pts: Vec<[f32; 2]> = cubic(
                [0.5 + s * 0.03, y0],
                [0.5 + s * reach * 0.45, y0 - 0.05],
                [0.5 + s * reach * 0.95, y0 + 0.0],
                [0.5 + s * reach * 1.02, y0 + 0.08 + 0.01 * i as f32],
                24,
            )
            .into_iter()
            .map(rotation(-c.tilt))
            .collect();
            let width = 0.011 + 0.002 * (i as f32 / 10.0);
            add_stroke(&mut img, &pts, width, 0.14);
        }
        let clav: Vec<[f32; 2]> = cubic(
            [0.5 + s * 0.05, c.lung_top + 0.02],
            [0.5 + s * 0.15, c.lung_top - 0.0],
            [0.5 + s * 0.26, c.lung_top - c.clavicle_tilt * 0.15],
            [0.5 + s * 0.36, c.lung_top - c.clavicle_tilt * 0.3 - 0.01],
            20,
        )
        .into_iter()
        .map(rotation(-c.tilt))
        .collect();
        add_stroke(&mut img, &clav, 0.02, 0.18);
    }
    if let Some((side, severity)) = attrs.effusion {
        effusion(&mut img, &g, side, severity, &rotate);
    }
    if let Some(devices) = &attrs.devices {
        draw_devices(&mut img, &g, devices, rotation(-c.tilt));
    }
    // Acquisition: slight unsharpness, exposure and gamma, then quantum noise.
    img.blur(0.6 * size as f32 / 128.0);
    img.apply(|p, out| {
        let x = (out[0] * c.exposure).clamp(0.0, 1.0);
        let n = hash((p[0] / px) as i32, (p[1] / px) as i32, seed ^ 0x5eed) - 0.5;
        out[0] = (powf(x, c.gamma) + c.noise * 2.0 * n).clamp(0.0, 1.0);
    });
    img
}

/// Rotation by `angle` about the image centre.
fn rotation(angle: f32) -> impl Fn([f32; 2]) -> [f32; 2] {
    let (ct, st) = (cosf(angle), sinf(angle));
    move |p| {
        let (x, y) = (p[0] - 0.5, p[1] - 0.5);
        [0.5 + ct * x - st * y, 0.5 + st * x + ct * y]
    }
}

/// Adds `amount` of density along a stroke (bone, radio-opaque material) rather than painting over.
fn add_stroke(img: &mut Canvas, pts: &[[f32; 2]], width: f32, amount: f32) {
    let mut layer = Canvas::new(img.size, 1, 0.0);
    layer.stroke(pts, width, &[1.0], 1.0);
    for (d, l) in img.data.iter_mut().zip(&layer.data) {
        *d += amount * l;
    }
}

/// Fluid in the dependent pleural space: a basal opacity whose upper edge is a meniscus rising laterally,
/// filling (blunting) the costophrenic angle and hiding the diaphragm.
fn effusion(img: &mut Canvas, g: &Geometry, side: Side, severity: f32, rotate: &impl Fn([f32; 2]) -> [f32; 2]) {
    let c = &g.c;
    let sides: &[f32] = match side {
        Side::Right => &[-1.0],
        Side::Left => &[1.0],
        Side::Bilateral => &[-1.0, 1.0],
    };
    for &s in sides {
        let level = g.base(s) - severity * c.lung_height;
        let lc = g.lung_center(s);
        let hw = c.lung_width / 2.0;
        img.apply(|p0, out| {
            let p = rotate(p0);
            let v = p[1];
            let xl = ((p[0] - lc) / hw * s).clamp(-1.3, 1.3);
            let meniscus = level - 0.07 * powf(((xl + 1.0) / 2.0).max(0.0), 2.0) * (0.6 + severity);
            // Fluid replaces aerated lung below the meniscus, whitening the costophrenic angle.
            let envelope = coverage(g.lung(s, p), 0.008) * (1.0 - g.heart(p));
            let fluid = smoothstep(meniscus - 0.012, meniscus + 0.03, v) * envelope;
            out[0] += 0.34 * fluid;
        });
    }
}

fn draw_devices(img: &mut Canvas, g: &Geometry, d: &Devices, rot: impl Fn([f32; 2]) -> [f32; 2]) {
    let c = &g.c;
    let opaque = 0.55;
    let carina = c.lung_top + c.lung_height * 0.32;
    // Geometry jitter comes from the devices' own stream (re-seeded from the attribute layout).
    let j = |k: u32| hash(k as i32, 17, c.texture_seed ^ 0xd1ce) - 0.5;
    let line = |pts: Vec<[f32; 2]>| -> Vec<[f32; 2]> { pts.into_iter().map(&rot).collect() };
    if d.endotracheal_tube {
        let tip = carina - 0.05 - 0.03 * j(1);
        let pts = line(cubic(
            [0.5 + 0.01 * j(2), -0.02],
            [0.5, 0.05],
            [0.5 + 0.01 * j(3), tip - 0.05],
            [0.5 + 0.005, tip],
            16,
        ));
        add_stroke(img, &pts, 0.016, opaque * 0.8);
        add_stroke(img, &pts, 0.007, -opaque * 0.35);
    }
    if d.nasogastric_tube {
        let stomach = [g.lung_center(1.0) + 0.03 * j(4), g.base(1.0) + 0.08];
        let mut pts = cubic(
            [0.47, -0.02],
            [0.47, 0.3],
            [0.485 + 0.01 * j(5), g.base(1.0) - 0.05],
            [0.52, g.base(1.0) + 0.02],
            24,
        );
        pts.extend(cubic(
            [0.52, g.base(1.0) + 0.02],
            [0.56, g.base(1.0) + 0.07],
            [stomach[0] - 0.05, stomach[1] + 0.03],
            stomach,
            16,
        ));
        add_stroke(img, &line(pts), 0.006, opaque);
    }
    if d.central_line {
        let svc = [0.5 - c.mediastinum * 0.6, carina + 0.06 + 0.03 * j(6)];
        let start = [0.5 - c.body_width * 0.38, c.lung_top - 0.03 + 0.02 * j(7)];
        let pts = cubic(start, [start[0] + 0.1, start[1] + 0.02], [svc[0] - 0.02, svc[1] - 0.12], svc, 24);
        add_stroke(img, &line(pts), 0.006, opaque);
    }
    if d.pacemaker {
        let gen_c = [0.5 + c.body_width * 0.3, c.lung_top + 0.04 + 0.02 * j(8)];
        let mut layer = Canvas::new(img.size, 1, 0.0);
        let (w, h) = (0.07, 0.05);
        layer.blend_in([gen_c[0] - w, gen_c[1] - h, gen_c[0] + w, gen_c[1] + h], &[1.0], |p| {
            // The generator is small: drawn in the image frame, unrotated.
            let dx = ((p[0] - gen_c[0]).abs() - w / 2.0).max(0.0);
            let dy = ((p[1] - gen_c[1]).abs() - h / 2.0).max(0.0);
            coverage(sqrtf(dx * dx + dy * dy) - 0.012, 0.004)
        });
        for (a, b) in img.data.iter_mut().zip(&layer.data) {
            *a += 0.75 * b;
        }
        let heart = [0.5 + c.heart_shift - 0.02, c.lung_top + c.lung_height * 0.78];
        for k in 0..2 {
            let end = [heart[0] - 0.04 * k as f32, heart[1] - 0.06 * k as f32];
            let pts = cubic(gen_c, [gen_c[0] - 0.12, gen_c[1] - 0.02], [0.5 - 0.02, carina], end, 28);
            add_stroke(img, &line(pts), 0.007, opaque);
        }
    }
    if d.ecg_electrodes {
        let spots = [
            [0.5 - c.body_width * 0.36, 0.2],
            [0.5 + c.body_width * 0.36, 0.22],
            [0.5 + c.body_width * 0.3, 0.85],
            [0.5 - 0.02, 0.5],
        ];
        for (k, s) in spots.iter().enumerate() {
            let p = rot([s[0] + 0.03 * j(10 + k as u32), s[1] + 0.03 * j(20 + k as u32)]);
            let mut layer = Canvas::new(img.size, 1, 0.0);
            layer.disc(p, 0.022, &[1.0], 0.5);
            layer.disc(p, 0.007, &[1.0], 1.0);
            for (a, b) in img.data.iter_mut().zip(&layer.data) {
                *a += 0.6 * b;
            }
        }
    }
}
