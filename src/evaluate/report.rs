//! The evaluation's report: what `evaluation.json` holds, and the markdown tables `traverse evaluate` prints
//! (Table 2 with its side effects and per-swap-point CFRT, the autoencoder's ceiling, Fig. 4's neighbours).

use serde::Serialize;

use super::shard::RunSettings;
use super::{AutoencoderCeiling, LatentMap, StyleScore};

/// `evaluation.json`.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationReport {
    /// Always "evaluate".
    pub command: &'static str,
    /// How the run was made.
    #[serde(flatten)]
    pub run: RunSettings,
    /// Table 2 and Fig. 5, per style of every setting.
    pub scores: Vec<StyleScore>,
    /// Fig. 4, per setting.
    pub latent_maps: Vec<LatentMap>,
    /// The autoencoder's ceiling, when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoencoder_ceiling: Option<CeilingReport>,
    /// What the run cost on the machines that made it.
    pub cost: Cost,
}

/// What a run cost: the only part of the report that differs between two runs of the same settings.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// Shards the run was split into.
    pub shards: usize,
    /// Wall time of the subjects, summed over shards, in seconds.
    pub seconds: f64,
    /// Wall time of the autoencoder ceiling, in seconds.
    pub ceiling_seconds: f64,
    /// Guided U-Net evaluations per trajectory (one subject, one style; the shared prefix counted once per
    /// subject and spread over its styles).
    pub unet_evaluations_per_trajectory: f64,
    /// Seconds per subject of one setting: its swap run with every style, every image decoded, classified
    /// and measured.
    pub seconds_per_subject: f64,
    /// The same per swap image (the samples of Table 2's CFRT).
    pub seconds_per_swap_image: f64,
}

/// The ceiling part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct CeilingReport {
    /// Phantoms per attribute.
    pub subjects: usize,
    /// Their dataset seed.
    pub dataset_seed: u64,
    /// Per attribute.
    pub attributes: Vec<AutoencoderCeiling>,
}

fn join<T>(items: &[T], f: impl Fn(&T) -> String, sep: &str) -> String {
    items.iter().map(f).collect::<Vec<_>>().join(sep)
}

/// The autoencoder's ceiling as a markdown table, then the false positives on reconstructions by source.
pub fn ceiling_tables(ceiling: &[AutoencoderCeiling]) -> String {
    let mut out = String::from(
        "| attribute | phantoms positive | VAE reconstructions positive | reconstruction PSNR (dB) | \
         false positives: phantoms | false positives: reconstructions |\n|---|---|---|---|---|---|\n",
    );
    for c in ceiling {
        out.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} |\n",
            c.attribute,
            c.phantom_positive,
            c.reconstruction_positive,
            c.psnr_db,
            c.phantom_false_positive,
            c.reconstruction_false_positive
        ));
    }
    out.push_str("\nFalse positives on reconstructions, by the attribute that was on:\n");
    for c in ceiling {
        let by = join(&c.reconstruction_false_positive_by_attribute, |(l, r)| format!("{l} {r:.2}"), ", ");
        out.push_str(&format!("- {}: {by}\n", c.attribute));
    }
    out
}

/// Table 2 (CFRT and LPIPS of swap and interpolated images with 95% bootstrap intervals over subjects,
/// positive rates along the trajectory), the side effects of each edit, and CFRT per swap point.
pub fn score_tables(scores: &[StyleScore], swap_points: &[usize]) -> String {
    // A value with its 95% interval.
    let cell = |v: Option<f64>, ci: Option<[f64; 2]>, digits: usize| match (v, ci) {
        (Some(v), Some([lo, hi])) => format!("{v:.digits$} [{lo:.digits$}, {hi:.digits$}]"),
        (Some(v), None) => format!("{v:.digits$}"),
        _ => "–".into(),
    };
    let mut out = format!(
        "| setting | style | CFRT (swap images) | CFRT (interpolations) | LPIPS (swap images) | \
         LPIPS (interpolations) | samples | positive: neutral, then t = {swap_points:?} |\n|---|---|---|---|---|---|---|---|\n"
    );
    for s in scores {
        let rates: Vec<String> =
            std::iter::once(&s.neutral_positive_rate).chain(&s.positive_rate).map(|r| format!("{r:.2}")).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            s.setting,
            s.attribute,
            cell(Some(s.cfrt), Some(s.cfrt_interval), 2),
            cell(s.cfrt_interpolated, s.cfrt_interpolated_interval, 2),
            cell(s.lpips, s.lpips_interval, 3),
            cell(s.lpips_interpolated, s.lpips_interpolated_interval, 3),
            s.samples,
            rates.join(" ")
        ));
    }
    out.push_str(
        "\nside effects: share of swap images in which another label's decision differs from the neutral image's\n",
    );
    for s in scores {
        let effects = join(&s.side_effects, |(l, r)| format!("{l} {r:.2}"), ", ");
        out.push_str(&format!("- {} {}: {effects}\n", s.setting, s.attribute));
    }
    out.push_str(&format!(
        "\nCFRT per swap point t = {swap_points:?}, and the share of swap images passing Eq. 3 below the \
         classifier's threshold\n"
    ));
    for s in scores {
        let per_point = join(&s.cfrt_by_swap_point, |r| format!("{r:.2}"), " ");
        out.push_str(&format!(
            "- {} {}: {per_point} (below threshold {:.2})\n",
            s.setting, s.attribute, s.passes_below_threshold
        ));
    }
    out
}

/// For each map, how often a latent's nearest neighbour at the last swap point is the same subject's.
pub fn neighbour_lines(maps: &[LatentMap]) -> String {
    let mut out = String::new();
    for m in maps {
        if let (Some(latent), Some(map)) = (m.same_subject_neighbours, m.same_subject_neighbours_map) {
            out.push_str(&format!(
                "{}: at the last swap point, a latent's nearest is the same subject's (another style) for {latent:.2} \
                 of them ({map:.2} on the t-SNE map)\n",
                m.setting
            ));
        }
    }
    out
}
