//! `traverse dataset`: a synthetic phantom dataset on disk.

use std::path::PathBuf;

use traverse::Result;
use traverse::synthetic::{Kind, dataset};

use crate::common::{KindArg, bar};

#[derive(clap::Args)]
pub struct Args {
    /// Phantom family.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// Number of images.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Dataset seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image size in pixels.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let kind: Kind = a.kind.into();
    let pb = bar(a.n, "render");
    let summary = dataset::write(kind, a.n, a.seed, a.size, &a.out, |_| pb.inc(1))?;
    pb.finish();
    let s = &summary.splits;
    println!(
        "wrote {} {kind:?} phantoms, metadata and sheet.png to {} (train/val/test {}/{}/{})",
        a.n,
        a.out.display(),
        s.train,
        s.val,
        s.test
    );
    Ok(())
}
