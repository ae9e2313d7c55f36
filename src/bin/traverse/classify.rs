//! `traverse classify`: each image's attribute probabilities, as a markdown table.

use std::path::PathBuf;

use burn::prelude::*;
use traverse::classifier::Classifier;
use traverse::image::rgb_to_tensor;
use traverse::{Error, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Classifier folder (config.json + model.safetensors), e.g. public/classifiers/derm.
    #[arg(long)]
    classifier: PathBuf,
    /// Images to judge (any format the `image` crate reads; resized to the classifier's input).
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

pub fn run(a: Args, device: &Device) -> Result<()> {
    let classifier = Classifier::load_dir(&a.classifier, device)?;
    let (size, labels) = (classifier.config.image_size, &classifier.config.labels);
    println!("| image | {} |", labels.join(" | "));
    println!("|---|{}", "---|".repeat(labels.len()));
    for path in &a.images {
        let img = image::open(path).map_err(|e| Error::Image(format!("{}: {e}", path.display())))?.to_rgb8();
        let p = classifier.classify(rgb_to_tensor(&img, size, size, device))?;
        let cells: Vec<String> = p[0].iter().map(|v| format!("{v:.2}")).collect();
        println!("| {} | {} |", path.display(), cells.join(" | "));
    }
    Ok(())
}
