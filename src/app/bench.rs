//! The page's benchmark mode (`?bench=1`): times one guided U-Net call, a few more, one decode and one
//! prompt-swap trajectory with its images of a model on the visitor's GPU, and reports them with the GPU and
//! wasm memory it took, so anyone can report numbers.
//! What a link says and how a report reads are plain Rust, tested natively; the run is in `engine::bench`.

use crate::error::Result;

use super::params::{bad, model_path, number, precision};
use crate::weights::Precision;

/// Largest image side a benchmark link may ask for.
pub const MAX_SIZE: usize = 1024;
/// Most timed U-Net calls.
pub const MAX_CALLS: usize = 20;
/// Seed of the benchmark's latents, the one `examples/sd15_gpu.rs` uses, so that the first call's prediction
/// can be compared with that program's CPU prediction of the same weights.
pub const SEED: u64 = 42;
/// The benchmark's prompt (and the empty one for guidance), at timestep 981 and guidance 7.5; the
/// trajectory's style prompt.
pub const PROMPT: &str = "Chest X-ray of a subject with pleural effusion";
/// The trajectory's neutral prompt.
pub const NEUTRAL_PROMPT: &str = "Chest X-ray of a subject";
/// Most DDIM steps of the timed trajectory (the paper's 50).
pub const MAX_TRAJECTORY_STEPS: usize = 50;

/// The swap points of a `steps`-step trajectory: the paper's nine (5, 10, …, 45 of 50) scaled to `steps`
/// (a multiple of 10), so that a 50-step benchmark is the paper's trajectory.
pub fn swap_points(steps: usize) -> Vec<usize> {
    (1..10).map(|k| k * steps / 10).collect()
}

/// What a benchmark link asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchSettings {
    /// Model folder, relative to the page.
    pub model: String,
    /// Image side in pixels (`None`: the model's default); the latent is this over the VAE's downsampling.
    pub size: Option<usize>,
    /// Timed U-Net calls after the first (which also compiles the GPU's kernels).
    pub calls: usize,
    /// DDIM steps of the timed prompt-swap trajectory (a multiple of 10; 0: none).
    pub trajectory: usize,
    /// The float type the GPU computes in.
    pub precision: Precision,
}

impl BenchSettings {
    /// The settings of a link with `bench=1` (`model`, `size`, `calls`, `trajectory`, `precision` optional);
    /// `None` for any other link.
    pub fn from_query(query: &str) -> Result<Option<Self>> {
        let query = query.strip_prefix('?').unwrap_or(query);
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let one = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        match one("bench") {
            None => return Ok(None),
            Some("1") => {}
            Some(v) => return Err(bad("bench", format!("{v:?} is not 1"))),
        }
        const NAMES: [&str; 6] = ["bench", "model", "size", "calls", "trajectory", "precision"];
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !NAMES.contains(&k.as_str())) {
            return Err(bad(k, "is not a benchmark parameter (bench, model, size, calls, trajectory, precision)"));
        }
        let trajectory = one("trajectory").map(|v| number("trajectory", v, 0, MAX_TRAJECTORY_STEPS)).transpose()?;
        if let Some(steps) = trajectory.filter(|s| s % 10 != 0) {
            return Err(bad("trajectory", format!("{steps} steps: must be a multiple of 10 (0: no trajectory)")));
        }
        Ok(Some(Self {
            model: one("model").map(model_path).transpose()?.unwrap_or_else(|| "model".into()),
            size: one("size").map(|v| number("size", v, 8, MAX_SIZE)).transpose()?,
            calls: one("calls").map(|v| number("calls", v, 0, MAX_CALLS)).transpose()?.unwrap_or(3),
            trajectory: trajectory.unwrap_or(10),
            precision: one("precision").map(precision).transpose()?.unwrap_or_default(),
        }))
    }
}

/// What a benchmark measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// GPU adapter, as the page names it.
    pub adapter: String,
    /// The float type the GPU computed in.
    pub precision: Precision,
    /// Why it is not the one the link asked for, if it is not.
    pub precision_note: Option<String>,
    /// Image side and latent side.
    pub size: usize,
    /// Latent side.
    pub latent: usize,
    /// Seconds from the first request to the model on the GPU.
    pub load_s: f64,
    /// Seconds of the first guided U-Net call (kernel compilation included).
    pub first_call_s: f64,
    /// Seconds of each later guided U-Net call.
    pub calls_s: Vec<f64>,
    /// Floating-point operations of one guided U-Net call (two batch rows).
    pub call_flops: u64,
    /// Seconds of one image's VAE decode.
    pub decode_s: f64,
    /// The timed prompt-swap trajectory, if one was asked for.
    pub trajectory: Option<TrajectoryTiming>,
    /// Weight bytes on the GPU as planned from the configs.
    pub planned_bytes: u64,
    /// Weight bytes on the GPU as loaded.
    pub weight_bytes: u64,
    /// Bytes burn's GPU memory pools held at the end (`None` where the backend does not say).
    pub reserved_bytes: Option<u64>,
    /// The wasm module's memory at the end: it only grows, so this is its peak.
    pub wasm_bytes: u64,
    /// The first call's guided prediction, for comparison with another device's.
    pub output: Vec<f32>,
}

/// One prompt-swap trajectory as the page runs it: a neutral trunk and one style prompt's branches.
#[derive(Debug, Clone, PartialEq)]
pub struct TrajectoryTiming {
    /// DDIM steps.
    pub steps: usize,
    /// Swap points.
    pub swap_points: Vec<usize>,
    /// Guided latent evaluations (the sampler shares the trunk: 275 for the paper's 50-step trajectory).
    pub evaluations: usize,
    /// U-Net calls they took (batches of up to the plan's batch).
    pub batches: usize,
    /// Seconds of the sampling, every step read back as the page's previews do.
    pub sample_s: f64,
    /// Images decoded: the neutral one and one per swap point.
    pub images: usize,
    /// Seconds to decode them.
    pub decode_s: f64,
}

impl BenchReport {
    /// The median of the later calls, or the first call when there were none.
    pub fn call_s(&self) -> f64 {
        let mut c = self.calls_s.clone();
        c.sort_by(f64::total_cmp);
        c.get(c.len() / 2).copied().unwrap_or(self.first_call_s)
    }

    /// The report as Markdown table rows, as the page shows and a visitor pastes it.
    pub fn markdown(&self) -> String {
        let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
        let mut rows = vec![
            "| measure | value |".to_string(),
            "|---|---|".to_string(),
            format!("| adapter | {} |", self.adapter),
            format!(
                "| precision | {}{} |",
                self.precision,
                self.precision_note.as_ref().map_or(String::new(), |n| format!(" ({n})"))
            ),
            format!("| image (latent) | {0}×{0} px ({1}×{1}) |", self.size, self.latent),
            format!("| load | {:.1} s |", self.load_s),
            format!("| first guided U-Net call (batch 2, kernels compiled) | {:.2} s |", self.first_call_s),
            format!(
                "| guided U-Net call, median of {} | {:.2} s ({:.1} GFLOP, {:.2} GFLOP/s) |",
                self.calls_s.len(),
                self.call_s(),
                self.call_flops as f64 / 1e9,
                self.call_flops as f64 / 1e9 / self.call_s()
            ),
            format!("| VAE decode, one image | {:.2} s |", self.decode_s),
        ];
        if let Some(t) = &self.trajectory {
            let points = t.swap_points.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
            rows.push(format!(
                "| prompt-swap trajectory, {} steps, swap at t = {points} | {:.2} s ({} guided evaluations in {} U-Net \
                 calls, {:.2} GFLOP/s) |",
                t.steps,
                t.sample_s,
                t.evaluations,
                t.batches,
                (t.evaluations as u64 * self.call_flops) as f64 / 1e9 / t.sample_s
            ));
            rows.push(format!("| its {} images decoded | {:.2} s |", t.images, t.decode_s));
        }
        rows.push(format!(
            "| weights on the GPU, planned / loaded | {} / {} |",
            mb(self.planned_bytes),
            mb(self.weight_bytes)
        ));
        if let Some(r) = self.reserved_bytes {
            rows.push(format!("| GPU memory held by burn's pools | {} |", mb(r)));
        }
        rows.push(format!("| wasm memory (peak) | {} |", mb(self.wasm_bytes)));
        let largest = self.output.iter().fold(0f32, |m, v| m.max(v.abs()));
        rows.push(format!("| first prediction: values, largest magnitude | {}, {largest:.4} |", self.output.len()));
        rows.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_links() {
        assert_eq!(BenchSettings::from_query("?example=chest").unwrap(), None);
        let s = BenchSettings::from_query("?bench=1&model=sd15/int8&size=256&calls=2").unwrap().unwrap();
        let expected = BenchSettings {
            model: "sd15/int8".into(),
            size: Some(256),
            calls: 2,
            trajectory: 10,
            precision: Precision::F32,
        };
        assert_eq!(s, expected);
        let s = BenchSettings::from_query("bench=1&precision=f16").unwrap().unwrap();
        assert_eq!(s.precision, Precision::F16);
        let s = BenchSettings::from_query("bench=1").unwrap().unwrap();
        assert_eq!((s.calls, s.trajectory), (3, 10));
        assert_eq!(BenchSettings::from_query("bench=1&trajectory=0").unwrap().unwrap().trajectory, 0);
        assert_eq!(BenchSettings::from_query("bench=1&trajectory=50").unwrap().unwrap().trajectory, 50);
        for bad in [
            "bench=2",
            "bench=1&size=4",
            "bench=1&calls=99",
            "bench=1&model=../x",
            "bench=1&seed=3",
            "bench=1&trajectory=15",
            "bench=1&trajectory=60",
            "bench=1&precision=f64",
        ] {
            assert!(BenchSettings::from_query(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reports_take_the_median_call() {
        let r = BenchReport {
            adapter: "a".into(),
            precision: Precision::F16,
            precision_note: None,
            size: 256,
            latent: 32,
            load_s: 1.0,
            first_call_s: 9.0,
            calls_s: vec![3.0, 1.0, 2.0],
            call_flops: 5_000_000_000,
            decode_s: 0.5,
            trajectory: None,
            planned_bytes: 2_000_000,
            weight_bytes: 2_000_000,
            reserved_bytes: None,
            wasm_bytes: 5_000_000,
            output: vec![0.5, -1.5],
        };
        assert_eq!(r.call_s(), 2.0);
        let md = r.markdown();
        assert!(
            md.contains("| guided U-Net call, median of 3 | 2.00 s (5.0 GFLOP, 2.50 GFLOP/s) |")
                && md.contains("| wasm memory (peak) | 5.0 MB |")
                && md.contains("| precision | f16 |")
                && md.contains("| first prediction: values, largest magnitude | 2, 1.5000 |")
        );
        assert!(!md.contains("pools") && !md.contains("trajectory"));
        let timed = TrajectoryTiming {
            steps: 10,
            swap_points: swap_points(10),
            evaluations: 55,
            batches: 10,
            sample_s: 11.0,
            images: 10,
            decode_s: 2.5,
        };
        let md = BenchReport { trajectory: Some(timed), ..r }.markdown();
        assert!(md.contains(
            "| prompt-swap trajectory, 10 steps, swap at t = 1, 2, 3, 4, 5, 6, 7, 8, 9 | 11.00 s (55 guided \
             evaluations in 10 U-Net calls, 25.00 GFLOP/s) |"
        ));
        assert!(md.contains("| its 10 images decoded | 2.50 s |"), "{md}");
    }

    #[test]
    fn a_50_step_trajectory_is_the_papers() {
        assert_eq!(swap_points(50), crate::swap::PAPER_SWAP_POINTS);
    }
}
