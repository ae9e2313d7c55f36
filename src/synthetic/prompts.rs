//! The phantom families' prompt settings, made of the phantoms' own captions ([`Phantom::caption`]) so they
//! match what the embedded model was trained on: what the page's built-in examples, the Table 2 harness and
//! the int8 fidelity check run.

use burn::prelude::*;
use serde::Serialize;

use super::{Kind, Phantom};
use crate::error::Result;

/// The dermoscopy label that is a diagnosis, kept by every edit, rather than an attribute to turn on.
pub const CLASS_LABEL: &str = "melanoma";

/// One row group of Table 2: a neutral prompt, the class label it keeps (dermoscopy: MEL or NV) and the
/// style prompts, each turning on one attribute.
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    /// Row name, e.g. "chest" or "derm MEL".
    pub name: String,
    /// The neutral prompt.
    pub neutral: String,
    /// Classifier label that must not change (the diagnosis), with its value in the neutral prompt.
    pub class: Option<(String, bool)>,
    /// (classifier label, prompt) per style.
    pub styles: Vec<(String, String)>,
}

impl Setting {
    /// The neutral prompt, then every style prompt.
    pub fn prompts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.neutral.as_str()).chain(self.styles.iter().map(|(_, p)| p.as_str()))
    }
}

/// The family's settings: chest X-rays (healthy, no devices → effusion / devices); dermoscopy with MEL and
/// with NV (no artifacts → hair / gel bubbles / ink / ruler).
pub fn settings(kind: Kind) -> Result<Vec<Setting>> {
    let base = Phantom::sample(kind, 0, 0).with_attributes_off(&[]);
    let classes: Vec<(String, Option<bool>)> = match kind {
        Kind::Chest => vec![("chest".into(), None)],
        Kind::Derm => vec![("derm MEL".into(), Some(true)), ("derm NV".into(), Some(false))],
    };
    classes
        .into_iter()
        .map(|(name, class)| {
            let neutral = match class {
                Some(on) => base.with_attribute(CLASS_LABEL, on)?,
                None => base.clone(),
            };
            let styles = neutral
                .labels()
                .into_iter()
                .filter(|(label, _)| class.is_none() || *label != CLASS_LABEL)
                .map(|(label, _)| Ok((label.to_string(), neutral.with_attribute(label, true)?.caption())))
                .collect::<Result<Vec<_>>>()?;
            Ok(Setting {
                name,
                neutral: neutral.caption(),
                class: class.map(|on| (CLASS_LABEL.to_string(), on)),
                styles,
            })
        })
        .collect()
}

/// Phantoms `first..first + n` of `kind` (dataset `seed`), each with only attribute `label` turned on (the
/// diagnosis kept as sampled).
pub fn counterfactuals(kind: Kind, label: &str, seed: u64, first: usize, n: usize) -> Result<Vec<Phantom>> {
    (first..first + n)
        .map(|i| {
            Phantom::sample(kind, seed, i as u64).with_attributes_off(&[label, CLASS_LABEL]).with_attribute(label, true)
        })
        .collect()
}

/// `phantoms` rendered at `size` as a `[n, 3, size, size]` batch in [-1, 1].
pub fn render_batch(phantoms: &[Phantom], size: usize, device: &Device) -> Tensor<4> {
    let pixels: Vec<f32> = phantoms.iter().flat_map(|p| p.render(size).to_planar(3)).collect();
    Tensor::from_data(TensorData::new(pixels, [phantoms.len(), 3, size, size]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_use_the_phantom_captions() {
        let chest = settings(Kind::Chest).unwrap();
        assert_eq!(chest.len(), 1);
        assert_eq!(chest[0].neutral, "Chest x-ray with no significant findings");
        let styles: Vec<&str> = chest[0].styles.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(styles, ["Chest X-ray of a subject with pleural effusion", "Chest x-ray showing Support Devices"]);
        let derm = settings(Kind::Derm).unwrap();
        assert_eq!(derm.len(), 2);
        assert_eq!(derm[1].neutral, "a dermoscopic image with melanocytic nevus (NV)");
        assert_eq!(derm[0].class, Some(("melanoma".to_string(), true)));
        let labels: Vec<&str> = derm[0].styles.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["hair", "gel_bubbles", "ink", "ruler"]);
        assert_eq!(derm[0].styles[3].1, "a dermoscopic image with melanoma (MEL) showing ruler");
        assert_eq!(derm[0].prompts().count(), 5);
    }
}
