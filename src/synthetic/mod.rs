//! Procedural phantoms with known content and attributes: chest X-rays ([`chest`]) and dermoscopy
//! ([`derm`]). Every sample is a subject (content parameters) plus independently drawn attributes, and any
//! subject can be re-rendered with attributes toggled, giving ground-truth counterfactual pairs.
//! Deterministic from a seed on every platform (ChaCha8 streams, IEEE arithmetic and `libm` only).

pub mod canvas;
pub mod chest;
#[cfg(not(target_arch = "wasm32"))]
pub mod dataset;
pub mod derm;
pub mod prompts;

pub use prompts::{CLASS_LABEL, Setting, counterfactuals, render_batch, settings};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use canvas::Canvas;
use chest::{ChestAttributes, ChestContent};
use derm::{DermAttributes, DermContent, Diagnosis};

/// Which phantom family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Frontal chest X-ray (grayscale).
    Chest,
    /// Dermoscopy (RGB).
    Derm,
}

impl Kind {
    /// Short lowercase name (as serialized): the folder of the family's classifier under public/classifiers.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Chest => "chest",
            Kind::Derm => "derm",
        }
    }
}

/// Train / validation / test, in the proportions of the paper's Table 3 (72.3 % / 12.7 % / 15.0 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training.
    Train,
    /// Validation.
    Val,
    /// Test.
    Test,
}

impl Split {
    /// Lowercase name (as serialized).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// The split of sample `index` of `n`: the first 72.3 % train, the next 12.7 % validation, the rest test.
/// Attributes are drawn independently of the index, so each split has the same attribute distribution.
pub fn split_of(index: usize, n: usize) -> Split {
    let train = (n as f64 * 0.723).round() as usize;
    let val = (n as f64 * 0.127).round() as usize;
    if index < train {
        Split::Train
    } else if index < train + val {
        Split::Val
    } else {
        Split::Test
    }
}

/// Content and attributes of one phantom of either family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Phantom {
    /// A chest X-ray.
    Chest {
        /// Subject.
        content: ChestContent,
        /// Findings and devices.
        attributes: ChestAttributes,
    },
    /// A dermoscopy image.
    Derm {
        /// Subject.
        content: DermContent,
        /// Diagnosis and artifacts.
        attributes: DermAttributes,
    },
}

/// Prevalence of each attribute when sampling a dataset.
pub mod prevalence {
    /// Pleural effusion.
    pub const EFFUSION: f64 = 0.4;
    /// Support devices.
    pub const DEVICES: f64 = 0.4;
    /// Melanoma (vs nevus).
    pub const MELANOMA: f64 = 0.35;
    /// Hair.
    pub const HAIR: f64 = 0.35;
    /// Gel bubbles.
    pub const GEL_BUBBLES: f64 = 0.25;
    /// Ink (rarer, as in ISIC).
    pub const INK: f64 = 0.15;
    /// Ruler.
    pub const RULER: f64 = 0.25;
}

impl Phantom {
    /// Sample `index` of the dataset with seed `seed`: the subject and the attributes come from separate
    /// ChaCha8 streams, so attributes are independent of content.
    pub fn sample(kind: Kind, seed: u64, index: u64) -> Self {
        let mut content_rng = ChaCha8Rng::seed_from_u64(seed);
        content_rng.set_stream(2 * index);
        let mut attr_rng = ChaCha8Rng::seed_from_u64(seed);
        attr_rng.set_stream(2 * index + 1);
        let attr_seed: u64 = attr_rng.random();
        match kind {
            Kind::Chest => Phantom::Chest {
                content: ChestContent::sample(&mut content_rng),
                attributes: ChestAttributes::sample(
                    attr_seed,
                    attr_rng.random_bool(prevalence::EFFUSION),
                    attr_rng.random_bool(prevalence::DEVICES),
                ),
            },
            Kind::Derm => Phantom::Derm {
                content: DermContent::sample(&mut content_rng),
                attributes: DermAttributes {
                    diagnosis: if attr_rng.random_bool(prevalence::MELANOMA) {
                        Diagnosis::Melanoma
                    } else {
                        Diagnosis::Nevus
                    },
                    hair: attr_rng.random_bool(prevalence::HAIR),
                    gel_bubbles: attr_rng.random_bool(prevalence::GEL_BUBBLES),
                    ink: attr_rng.random_bool(prevalence::INK),
                    ruler: attr_rng.random_bool(prevalence::RULER),
                    seed: attr_seed,
                },
            },
        }
    }

    /// Renders at `size`×`size` (1 channel for chest, 3 for dermoscopy).
    pub fn render(&self, size: usize) -> Canvas {
        match self {
            Phantom::Chest { content, attributes } => chest::render(content, attributes, size),
            Phantom::Derm { content, attributes } => derm::render(content, attributes, size),
        }
    }

    /// The caption in the paper's prompt forms.
    pub fn caption(&self) -> String {
        match self {
            Phantom::Chest { attributes: a, .. } => match (a.effusion.is_some(), a.devices.is_some()) {
                (false, false) => "Chest x-ray with no significant findings".into(),
                (true, false) => "Chest X-ray of a subject with pleural effusion".into(),
                (false, true) => "Chest x-ray showing Support Devices".into(),
                (true, true) => "Chest x-ray showing Pleural Effusion and Support Devices".into(),
            },
            Phantom::Derm { attributes: a, .. } => {
                let disease = match a.diagnosis {
                    Diagnosis::Melanoma => "a dermoscopic image with melanoma (MEL)",
                    Diagnosis::Nevus => "a dermoscopic image with melanocytic nevus (NV)",
                };
                let artifacts: Vec<&str> =
                    [(a.hair, "hair"), (a.gel_bubbles, "gel bubbles"), (a.ink, "ink"), (a.ruler, "ruler")]
                        .iter()
                        .filter(|(on, _)| *on)
                        .map(|(_, name)| *name)
                        .collect();
                match artifacts.as_slice() {
                    [] => disease.to_string(),
                    [one] => format!("{disease} showing {one}"),
                    [rest @ .., last] => format!("{disease} showing {} and {last}", rest.join(", ")),
                }
            }
        }
    }

    /// Binary labels in a fixed order: chest (pleural effusion, support devices); dermoscopy (melanoma,
    /// hair, gel bubbles, ink, ruler).
    pub fn labels(&self) -> Vec<(&'static str, bool)> {
        match self {
            Phantom::Chest { attributes: a, .. } => {
                vec![("pleural_effusion", a.effusion.is_some()), ("support_devices", a.devices.is_some())]
            }
            Phantom::Derm { attributes: a, .. } => vec![
                ("melanoma", a.diagnosis == Diagnosis::Melanoma),
                ("hair", a.hair),
                ("gel_bubbles", a.gel_bubbles),
                ("ink", a.ink),
                ("ruler", a.ruler),
            ],
        }
    }

    /// The same subject with every attribute off except those named in `keep`, which stay as they are.
    pub fn with_attributes_off(&self, keep: &[&str]) -> Self {
        let mut p = self.clone();
        for (name, _) in self.labels() {
            if !keep.contains(&name) {
                // `name` is one of this phantom's own labels, which `with_attribute` always knows.
                p = p.with_attribute(name, false).unwrap_or(p);
            }
        }
        p
    }

    /// The same subject with one attribute set to `on` (a ground-truth counterfactual). Unknown names are
    /// an error.
    pub fn with_attribute(&self, name: &str, on: bool) -> crate::Result<Self> {
        let mut p = self.clone();
        match &mut p {
            Phantom::Chest { attributes: a, .. } => {
                let fresh = |e, d| ChestAttributes::sample(a_seed(self), e, d);
                match name {
                    "pleural_effusion" => {
                        a.effusion = if on { a.effusion.or(fresh(true, false).effusion) } else { None }
                    }
                    "support_devices" => {
                        a.devices = if on { a.devices.clone().or(fresh(false, true).devices) } else { None }
                    }
                    _ => return Err(crate::Error::arg(format!("unknown chest attribute {name}"))),
                }
            }
            Phantom::Derm { attributes: a, .. } => match name {
                "melanoma" => a.diagnosis = if on { Diagnosis::Melanoma } else { Diagnosis::Nevus },
                "hair" => a.hair = on,
                "gel_bubbles" => a.gel_bubbles = on,
                "ink" => a.ink = on,
                "ruler" => a.ruler = on,
                _ => return Err(crate::Error::arg(format!("unknown dermoscopy attribute {name}"))),
            },
        }
        Ok(p)
    }
}

/// A stable per-subject seed for attribute details added by [`Phantom::with_attribute`].
fn a_seed(p: &Phantom) -> u64 {
    match p {
        Phantom::Chest { content, .. } => content.texture_seed as u64 ^ 0xa77b,
        Phantom::Derm { attributes, .. } => attributes.seed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_counterfactual() {
        for kind in [Kind::Chest, Kind::Derm] {
            let a = Phantom::sample(kind, 9, 3);
            assert_eq!(a, Phantom::sample(kind, 9, 3));
            assert_ne!(a, Phantom::sample(kind, 9, 4));
            let img = a.render(64);
            assert_eq!(img.data, a.render(64).data, "rendering is deterministic");
            let name = a.labels()[0].0;
            let on = a.with_attribute(name, true).unwrap();
            let off = a.with_attribute(name, false).unwrap();
            let diff: f32 = on.render(64).data.iter().zip(&off.render(64).data).map(|(x, y)| (x - y).abs()).sum();
            assert!(diff > 1.0, "{kind:?} {name} must change the image");
            assert!(a.with_attribute("nonsense", true).is_err());
        }
    }

    #[test]
    fn attributes_go_off_except_the_kept_ones() {
        for seed in 0..6 {
            let mut p = Phantom::sample(Kind::Derm, seed, 0).with_attributes_off(&[]);
            for name in ["melanoma", "hair", "ruler"] {
                p = p.with_attribute(name, true).unwrap();
            }
            let off = p.with_attributes_off(&["melanoma"]);
            let on: Vec<&str> = off.labels().into_iter().filter(|(_, on)| *on).map(|(l, _)| l).collect();
            assert_eq!(on, ["melanoma"]);
            assert_eq!(
                off.with_attribute("hair", true).unwrap().with_attribute("ruler", true).unwrap().caption(),
                p.caption()
            );
        }
    }

    #[test]
    fn captions_follow_the_paper() {
        let p = Phantom::sample(Kind::Chest, 1, 0).with_attribute("pleural_effusion", true).unwrap();
        let p = p.with_attribute("support_devices", false).unwrap();
        assert_eq!(p.caption(), "Chest X-ray of a subject with pleural effusion");
        let mut d = Phantom::sample(Kind::Derm, 1, 0);
        for (n, on) in [("melanoma", false), ("hair", false), ("gel_bubbles", false), ("ink", true), ("ruler", false)] {
            d = d.with_attribute(n, on).unwrap();
        }
        assert_eq!(d.caption(), "a dermoscopic image with melanocytic nevus (NV) showing ink");
    }

    #[test]
    fn splits_follow_table_3() {
        let n = 1000;
        let count = |s| (0..n).filter(|&i| split_of(i, n) == s).count();
        assert_eq!((count(Split::Train), count(Split::Val), count(Split::Test)), (723, 127, 150));
    }
}
