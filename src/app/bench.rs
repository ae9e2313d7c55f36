//! The page's benchmark mode (`?bench=1`): times one guided U-Net call, a few more, and one decode of a model
//! on the visitor's GPU, and reports them with the GPU and wasm memory it took, so anyone can report numbers.
//! What a link says and how a report reads are plain Rust, tested natively; the run is in `engine::bench`.

use crate::error::Result;

use super::params::{bad, model_path, number};

/// Largest image side a benchmark link may ask for.
pub const MAX_SIZE: usize = 1024;
/// Most timed U-Net calls.
pub const MAX_CALLS: usize = 20;
/// Seed of the benchmark's latents, the one `examples/sd15_gpu.rs` uses, so that the first call's prediction
/// can be compared with that program's CPU prediction of the same weights.
pub const SEED: u64 = 42;
/// The benchmark's prompt (and the empty one for guidance), at timestep 981 and guidance 7.5.
pub const PROMPT: &str = "Chest X-ray of a subject with pleural effusion";

/// What a benchmark link asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchSettings {
    /// Model folder, relative to the page.
    pub model: String,
    /// Image side in pixels (`None`: the model's default); the latent is this over the VAE's downsampling.
    pub size: Option<usize>,
    /// Timed U-Net calls after the first (which also compiles the GPU's kernels).
    pub calls: usize,
}

impl BenchSettings {
    /// The settings of a link with `bench=1` (`model`, `size`, `calls` optional); `None` for any other link.
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
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !["bench", "model", "size", "calls"].contains(&k.as_str())) {
            return Err(bad(k, "is not a benchmark parameter (bench, model, size, calls)"));
        }
        Ok(Some(Self {
            model: one("model").map(model_path).transpose()?.unwrap_or_else(|| "model".into()),
            size: one("size").map(|v| number("size", v, 8, MAX_SIZE)).transpose()?,
            calls: one("calls").map(|v| number("calls", v, 0, MAX_CALLS)).transpose()?.unwrap_or(3),
        }))
    }
}

/// What a benchmark measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// GPU adapter, as the page names it.
    pub adapter: String,
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
    /// Weight bytes on the GPU as planned from the configs, and as loaded.
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
            format!(
                "| weights on the GPU, planned / loaded | {} / {} |",
                mb(self.planned_bytes),
                mb(self.weight_bytes)
            ),
        ];
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
        assert_eq!(s, BenchSettings { model: "sd15/int8".into(), size: Some(256), calls: 2 });
        assert_eq!(BenchSettings::from_query("bench=1").unwrap().unwrap().calls, 3);
        for bad in ["bench=2", "bench=1&size=4", "bench=1&calls=99", "bench=1&model=../x", "bench=1&seed=3"] {
            assert!(BenchSettings::from_query(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reports_take_the_median_call() {
        let r = BenchReport {
            adapter: "a".into(),
            size: 256,
            latent: 32,
            load_s: 1.0,
            first_call_s: 9.0,
            calls_s: vec![3.0, 1.0, 2.0],
            call_flops: 5_000_000_000,
            decode_s: 0.5,
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
                && md.contains("| first prediction: values, largest magnitude | 2, 1.5000 |")
        );
        assert!(!md.contains("pools"));
    }
}
