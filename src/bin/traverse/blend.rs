//! `traverse blend`: weight-space ensembling of a fine-tuned U-Net with the one it started from.

use std::path::PathBuf;

use traverse::Result;

#[derive(clap::Args)]
pub struct Args {
    /// The model folder the fine-tune started from (e.g. public/model; int8 is dequantized).
    #[arg(long)]
    base: PathBuf,
    /// The fine-tuned model folder (a `train-mini --out` folder); everything but its U-Net is copied as is.
    #[arg(long)]
    tuned: PathBuf,
    /// The fine-tune's share: 0 gives the base U-Net, 1 the tuned one.
    #[arg(long, default_value_t = 0.5)]
    weight: f32,
    /// Output folder (must not exist).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    traverse::train::blend_unet(&a.base, &a.tuned, a.weight, &a.out)?;
    println!("wrote {} (U-Net: {} of the tuned one's weights)", a.out.display(), a.weight);
    Ok(())
}
