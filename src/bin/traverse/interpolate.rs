//! `traverse interpolate`: a Bézier traversal through the latents of a `generate` or `invert` run, decoded.

use std::path::PathBuf;

use burn::prelude::*;
use traverse::Result;
use traverse::bezier;
use traverse::files::{create_dir, save_png, write_json};
use traverse::image::{contact_sheet, tensor_to_rgb};
use traverse::output::{InterpolationManifest, read_latents, trajectory_points};
use traverse::pipeline::LoadOptions;

use crate::common::{ModelArgs, bar};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// `latents.safetensors` written by `generate` or `invert`.
    #[arg(long)]
    latents: PathBuf,
    /// Which style's trajectory (index of --style in that run).
    #[arg(long, default_value_t = 0)]
    style_index: usize,
    /// Control points of the Bézier curve.
    #[arg(long, default_value_t = bezier::PAPER_CONTROL_POINTS)]
    controls: usize,
    /// Interpolated latents to decode.
    #[arg(long, default_value_t = bezier::PAPER_SAMPLES)]
    samples: usize,
    /// Output folder.
    #[arg(long, default_value = "out-interp")]
    out: PathBuf,
}

pub fn run(a: Args, device: &Device, load: LoadOptions) -> Result<()> {
    let (sd, _) = a.model.load(device, load)?;
    let points = trajectory_points(&a.latents, a.style_index)?;
    let prefix = format!("style{}.t", a.style_index);
    let names: Vec<String> =
        std::iter::once("neutral".to_string()).chain(points.iter().map(|p| format!("{prefix}{p}"))).collect();
    let trajectory = read_latents(&a.latents, &names, device)?;
    let idx = bezier::control_indices(trajectory.len(), a.controls)?;
    let controls: Vec<Tensor<4>> = idx.iter().map(|&i| trajectory[i].clone()).collect();
    let curve = bezier::interpolate(&controls, a.samples)?;
    create_dir(&a.out)?;
    let pb = bar(curve.len(), "decode");
    let mut images = Vec::new();
    for (j, z) in curve.iter().enumerate() {
        let img = tensor_to_rgb(sd.vae.decode(z.clone()))?;
        save_png(&img, &a.out.join(format!("bezier_{j:03}.png")))?;
        images.push(img);
        pb.inc(1);
    }
    pb.finish();
    save_png(&contact_sheet(&images, 10), &a.out.join("sheet.png"))?;
    let control_points: Vec<String> =
        idx.iter().map(|&i| if i == 0 { "neutral".into() } else { format!("t{}", points[i - 1]) }).collect();
    let manifest = InterpolationManifest {
        command: "interpolate",
        latents: a.latents.display().to_string(),
        style_index: a.style_index,
        control_points,
        samples: a.samples,
    };
    write_json(&a.out.join("manifest.json"), &manifest)?;
    println!(
        "wrote {} interpolated images and sheet.png to {} (controls: {})",
        curve.len(),
        a.out.display(),
        manifest.control_points.join(", ")
    );
    Ok(())
}
