//! The built-in teaching examples: the paper's Table 2 settings (a neutral prompt and one style prompt per
//! attribute) on the embedded phantom model, with what to look for in each.

use crate::synthetic::Kind;
use crate::synthetic::{self, Setting};

/// One built-in example.
#[derive(Debug, Clone)]
pub struct Example {
    /// Identifier used in links (`?example=`).
    pub id: &'static str,
    /// Title shown in the picker.
    pub title: &'static str,
    /// What the example teaches.
    pub blurb: &'static str,
    /// A guided walk through one run, for a class: what to look at, in order.
    pub walkthrough: &'static [&'static str],
    /// Image family (picks the classifiers).
    pub kind: Kind,
    /// Neutral prompt and the style prompt of each attribute, with its classifier label.
    pub setting: Setting,
    /// Classifier-free guidance the example runs at: the paper's 7.5 for chest X-rays; 4 for dermoscopy,
    /// where the embedded model's edits carry fewer side effects at 4 (higher CFRT on every seed set measured,
    /// see the README's *Guidance*).
    pub guidance: f64,
}

/// Guidance of the dermoscopy examples (see [`Example::guidance`]).
pub const DERM_GUIDANCE: f64 = 4.0;

/// Every built-in example, in the picker's order.
pub fn all() -> Vec<Example> {
    const CHEST: &[&str] = &[
        "Watch the neutral image (left) form: the first steps fix the subject's size, ribs and heart; later \
         steps only add detail.",
        "Each swap image shows the neutral image until its swap point (grey in the timeline), then its own \
         branch: the larger t, the earlier the style prompt takes over.",
        "Pleural effusion: the lower lung field grows white and the angle beside the diaphragm blunts as t \
         grows; the ribs and the heart's outline stay where they were.",
        "Support devices: lines and tubes appear at larger t. Compare the classifier readout under each image \
         with the neutral image's: a ✓ marks an image whose attribute flipped.",
        "Slide along the Bézier traversal below: the frames between the swap images change smoothly.",
    ];
    const DERM: &[&str] = &[
        "The neutral lesion forms in the first few steps: its outline and colours are settled early.",
        "Each artifact prompt takes over at its swap point (the timeline): at small t only fine detail can \
         change, at large t the artifact can be drawn boldly.",
        "Rulers and gel bubbles show clearly; hair is the hardest. Check that the diagnosis readout (melanoma \
         or nevus) stays put while the artifact's rises: that is the paper's point about factorized attributes.",
        "Open the cosine table: neighbouring swap points move the latent in similar directions (values near 1).",
    ];
    let texts = [
        (
            "chest",
            "Chest X-ray: pleural effusion, support devices",
            "The same subject as the swap point t grows: the costophrenic angle blunts and a basal opacity with \
             a meniscus rises (effusion), or tubes, lines and electrodes appear (devices), while ribs, heart \
             and habitus stay.",
            CHEST,
        ),
        (
            "derm-mel",
            "Dermoscopy, melanoma: hair, gel bubbles, ink, ruler",
            "An asymmetric, multi-coloured lesion; each style prompt adds one acquisition artifact while the \
             diagnosis should stay melanoma. Watch the classifier readouts for edits that leak into the \
             diagnosis.",
            DERM,
        ),
        (
            "derm-nv",
            "Dermoscopy, nevus: hair, gel bubbles, ink, ruler",
            "A symmetric, uniformly brown nevus with the same four artifacts. The embedded model draws rulers \
             and bubbles cleanly; its hair is a blotchy network, and its ink edits at times bring other \
             artifacts with them (see the model card).",
            DERM,
        ),
    ];
    let mut settings: Vec<(Kind, Setting)> = Vec::new();
    for kind in [Kind::Chest, Kind::Derm] {
        // The settings come from fixed phantoms and always exist; an error here is a programming error
        // caught by the tests, so the picker just shows fewer examples.
        settings.extend(synthetic::settings(kind).unwrap_or_default().into_iter().map(|s| (kind, s)));
    }
    texts
        .into_iter()
        .zip(settings)
        .map(|((id, title, blurb, walkthrough), (kind, setting))| {
            let guidance = match kind {
                Kind::Chest => 7.5,
                Kind::Derm => DERM_GUIDANCE,
            };
            Example { id, title, blurb, walkthrough, kind, setting, guidance }
        })
        .collect()
}

/// The classifier label a style prompt turns on: the one named in the style but not in the neutral prompt
/// (labels are matched as words, `pleural_effusion` as "pleural effusion"). `None` when there is no single one.
pub fn attribute_of<'a>(labels: &'a [String], neutral: &str, style: &str) -> Option<&'a str> {
    // Space-separated lowercase words with a space at each end, so " ink " cannot match inside "pink".
    let words = |s: &str| {
        let w: Vec<String> = s
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect();
        format!(" {} ", w.join(" "))
    };
    let (neutral, style) = (words(neutral), words(style));
    let mut found = labels.iter().filter(|l| {
        let label = words(&l.replace('_', " "));
        style.contains(&label) && !neutral.contains(&label)
    });
    let first = found.next()?;
    found.next().is_none().then_some(first.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_are_the_evaluation_settings() {
        let all = all();
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), ["chest", "derm-mel", "derm-nv"]);
        assert_eq!(all[0].setting.name, "chest");
        assert_eq!(all[1].setting.name, "derm MEL");
        assert_eq!(all[2].setting.name, "derm NV");
        assert_eq!(all[0].setting.styles.len(), 2);
        assert_eq!(all[2].setting.styles.len(), 4);
        assert_eq!(all.iter().map(|e| e.guidance).collect::<Vec<_>>(), [7.5, DERM_GUIDANCE, DERM_GUIDANCE]);
    }

    #[test]
    fn each_style_names_its_own_attribute() {
        for ex in all() {
            let labels: Vec<String> = match ex.kind {
                Kind::Chest => vec!["pleural_effusion".into(), "support_devices".into()],
                Kind::Derm => ["melanoma", "hair", "gel_bubbles", "ink", "ruler"].map(String::from).to_vec(),
            };
            for (label, prompt) in &ex.setting.styles {
                assert_eq!(attribute_of(&labels, &ex.setting.neutral, prompt), Some(label.as_str()), "{prompt}");
            }
        }
        let labels = vec!["hair".to_string(), "ruler".to_string()];
        assert_eq!(attribute_of(&labels, "x", "hair and ruler"), None);
        assert_eq!(attribute_of(&labels, "with hair", "with hair"), None);
        assert_eq!(attribute_of(&["ink".to_string()], "skin", "pink skin"), None);
    }
}
