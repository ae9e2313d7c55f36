//! A phantom dataset on disk, as `traverse dataset` writes it: one PNG per phantom, `metadata.csv` (caption
//! and 0/1 labels), `metadata.jsonl` (every content and attribute parameter), `dataset.json` (split sizes and
//! positives per split) and `sheet.png` (the first phantoms, the README's figures).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{Kind, Phantom, Split, split_of};
use crate::error::{Error, Result};
use crate::files;

/// Phantoms on `sheet.png` (the first ones, four per row).
pub const SHEET_SAMPLES: usize = 8;

/// Sizes a dataset may be rendered at.
pub const SIZES: std::ops::RangeInclusive<usize> = 16..=1024;

/// What `dataset.json` says of a written dataset.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetSummary {
    /// Phantom family.
    pub kind: Kind,
    /// Images.
    pub n: usize,
    /// Dataset seed.
    pub seed: u64,
    /// Image size in pixels.
    pub size: usize,
    /// Images per split.
    pub splits: SplitSizes,
    /// Per label, its positives in the train, val and test splits.
    pub positives_per_split: BTreeMap<String, [usize; 3]>,
}

/// Images per split.
#[derive(Debug, Clone, Serialize)]
pub struct SplitSizes {
    /// Training images.
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Test images.
    pub test: usize,
}

/// One line of `metadata.jsonl`.
#[derive(Serialize)]
struct Record<'a> {
    id: usize,
    file: &'a str,
    split: Split,
    caption: String,
    phantom: &'a Phantom,
}

/// A CSV field, quoted (with inner quotes doubled) as RFC 4180 asks.
fn quoted(field: &str) -> String {
    format!("\"{}\"", field.replace('"', "\"\""))
}

/// Renders `n` phantoms of `kind` (dataset `seed`) at `size` pixels into `out`; `progress(i)` sees each image.
pub fn write(
    kind: Kind,
    n: usize,
    seed: u64,
    size: usize,
    out: &Path,
    mut progress: impl FnMut(usize),
) -> Result<DatasetSummary> {
    if n == 0 || !SIZES.contains(&size) {
        return Err(Error::arg(format!("need n ≥ 1 and a size in {}..={}", SIZES.start(), SIZES.end())));
    }
    files::create_dir(&out.join("images"))?;
    let mut csv = String::new();
    let mut jsonl = String::new();
    let mut counts = BTreeMap::<String, [usize; 3]>::new();
    let mut preview = Vec::new();
    for i in 0..n {
        let p = Phantom::sample(kind, seed, i as u64);
        let img = p.render(size);
        let file = format!("images/{i:06}.png");
        let path = out.join(&file);
        let (side, bytes) = (size as u32, img.to_u8());
        let png: image::DynamicImage = if img.channels == 1 {
            image::GrayImage::from_raw(side, side, bytes).map(Into::into)
        } else {
            image::RgbImage::from_raw(side, side, bytes).map(Into::into)
        }
        .ok_or_else(|| Error::Image(format!("{}: the phantom's pixels do not fill {side}×{side}", path.display())))?;
        png.save(&path).map_err(|e| Error::Image(format!("{}: {e}", path.display())))?;
        if i < SHEET_SAMPLES {
            preview.push(png.to_rgb8());
        }
        let split = split_of(i, n);
        let labels = p.labels();
        if i == 0 {
            csv.push_str("id,file,split,caption");
            labels.iter().for_each(|(name, _)| csv.push_str(&format!(",{name}")));
            csv.push('\n');
        }
        csv.push_str(&format!("{i},{file},{},{}", split.name(), quoted(&p.caption())));
        for (name, on) in &labels {
            csv.push_str(if *on { ",1" } else { ",0" });
            counts.entry(name.to_string()).or_default()[split as usize] += usize::from(*on);
        }
        csv.push('\n');
        let record = Record { id: i, file: &file, split, caption: p.caption(), phantom: &p };
        let value = serde_json::to_value(&record).map_err(|e| Error::arg(format!("phantom {i}: {e}")))?;
        jsonl.push_str(&value.to_string());
        jsonl.push('\n');
        progress(i + 1);
    }
    files::save_png(&crate::image::contact_sheet(&preview, 4), &out.join("sheet.png"))?;
    files::write(&out.join("metadata.csv"), csv.as_bytes())?;
    files::write(&out.join("metadata.jsonl"), jsonl.as_bytes())?;
    let sizes = [Split::Train, Split::Val, Split::Test].map(|s| (0..n).filter(|&i| split_of(i, n) == s).count());
    let summary = DatasetSummary {
        kind,
        n,
        seed,
        size,
        splits: SplitSizes { train: sizes[0], val: sizes[1], test: sizes[2] },
        positives_per_split: counts,
    };
    files::write_json(&out.join("dataset.json"), &summary)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_are_quoted_as_csv_asks() {
        assert_eq!(quoted("a (NV) showing ink"), "\"a (NV) showing ink\"");
        assert_eq!(quoted("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn bad_sizes_are_refused_before_anything_is_written() {
        let out = std::env::temp_dir().join(format!("traverse-dataset-{}", std::process::id()));
        assert!(write(Kind::Chest, 0, 0, 64, &out, |_| {}).is_err());
        assert!(write(Kind::Chest, 4, 0, 8, &out, |_| {}).is_err());
        assert!(!out.exists());
    }
}
