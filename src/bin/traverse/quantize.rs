//! `traverse quantize`: an int8 copy of a model folder, with its size and image fidelity against the original;
//! or of one safetensors file (e.g. LPIPS' weights).

use std::path::PathBuf;

use burn::prelude::*;
use traverse::Result;
use traverse::evaluate::fidelity::{FidelityCheck, quantize_and_check};

use crate::common::bar;

#[derive(clap::Args)]
pub struct Args {
    /// The diffusers model folder to quantize, or one safetensors file.
    #[arg(long)]
    model: PathBuf,
    /// Output folder (a file for a file).
    #[arg(long)]
    out: PathBuf,
    /// Seeds whose images are compared (f32 vs int8).
    #[arg(long, default_value_t = 4)]
    check_seeds: u64,
    /// DDIM steps of each comparison image.
    #[arg(long, default_value_t = 20)]
    check_steps: usize,
    /// Prompts of the comparison images (repeatable; ignored with --classifiers).
    #[arg(long = "prompt", default_value = "Chest x-ray with no significant findings")]
    prompts: Vec<String>,
    /// Attribute classifiers (a folder with chest/ and derm/): compare the phantom families' prompts and
    /// report how often the classifiers' decisions agree between f32 and int8 images.
    #[arg(long)]
    classifiers: Option<PathBuf>,
}

pub fn run(a: Args, device: &Device) -> Result<()> {
    if a.model.is_file() {
        let what = a.model.display().to_string();
        let bytes = traverse::files::read(&a.model)?;
        let int8 = traverse::quantize::quantize(&what, &bytes)?;
        traverse::files::write(&a.out, &int8)?;
        println!(
            "wrote {}: {:.2} MB (from {:.2} MB)",
            a.out.display(),
            int8.len() as f64 / 1e6,
            bytes.len() as f64 / 1e6
        );
        return Ok(());
    }
    let check =
        FidelityCheck { seeds: a.check_seeds, steps: a.check_steps, prompts: a.prompts, classifiers: a.classifiers };
    let pb = bar(0, "compare");
    let report = quantize_and_check(&a.model, &a.out, &check, device, |done, all| {
        pb.set_length(all as u64);
        pb.set_position(done as u64);
    })?;
    pb.finish();
    traverse::files::write_json(&a.out.join("quantization.json"), &report)?;
    let c = &report.check;
    let agreement = c
        .classifier_agreement
        .map(|g| format!(", classifier agreement {:.1} % of {} decisions", 100.0 * g, c.classifier_decisions))
        .unwrap_or_default();
    println!(
        "int8 weights the pipeline loads: {:.2} MB (from {:.2} MB); {} decoded images vs f32: mean PSNR {:.2} dB{agreement}",
        report.weights_bytes_int8 as f64 / 1e6,
        report.weights_bytes_f32 as f64 / 1e6,
        c.psnr_db.len(),
        c.mean_psnr_db,
    );
    Ok(())
}
