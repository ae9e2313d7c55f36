//! What a run leaves behind, so it can be looked at, shared and repeated: one PNG per image, a contact sheet,
//! `latents.safetensors` (`init`, `neutral`, `style{k}.t{t}`: any such file seeds a rerun or a Bézier
//! traversal) and `manifest.json` ([`RunManifest`]: every setting, the seed, the U-Net cost and timings).
//! The CLI writes them into a folder ([`write_run`]); the page puts the same files into one zip ([`zip()`]).

use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

#[cfg(not(target_arch = "wasm32"))]
use burn::prelude::*;
use serde::Serialize;

use crate::codec::serialize;
#[cfg(not(target_arch = "wasm32"))]
use crate::codec::{WeightFile, inspect, parse};
use crate::error::{Error, Result};
#[cfg(not(target_arch = "wasm32"))]
use crate::files;
#[cfg(not(target_arch = "wasm32"))]
use crate::image::{contact_sheet, tensor_to_rgb};
use crate::pipeline::StableDiffusion;
use crate::scheduler::{PredictionType, TimestepSpacing};
#[cfg(not(target_arch = "wasm32"))]
use crate::swap::SwapResult;
use crate::swap::SwapSettings;

/// Where a run's noise came from.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Origin {
    /// `generate`: the seed's portable noise, or the `init` tensor of a latents file.
    Noise {
        /// The seed, unless the noise came from a file.
        seed: Option<u64>,
        /// The latents file, if the noise came from one.
        init_latents: Option<String>,
        /// How the noise is made.
        noise: &'static str,
    },
    /// `invert`: a real image inverted to noise.
    Inverted {
        /// The image.
        image: String,
        /// Guidance while inverting.
        inversion_guidance: f64,
        /// How well inverting and regenerating reproduces it.
        reconstruction: Reconstruction,
    },
}

/// How faithfully an inverted image is regenerated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reconstruction {
    /// RMS error of the regenerated latent.
    pub latent_rms_error: f32,
    /// PSNR of the regenerated image, in dB.
    pub image_psnr_db: f32,
    /// PSNR of the autoencoder alone (the best inversion can do), in dB.
    pub vae_only_psnr_db: f32,
}

/// The scheduler a run sampled with.
#[derive(Debug, Clone, Serialize)]
pub struct SchedulerInfo {
    /// Always "DDIM".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What the U-Net predicts.
    pub prediction_type: PredictionType,
    /// Where the timesteps fall.
    pub timestep_spacing: TimestepSpacing,
}

/// Seconds spent per phase.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timings {
    /// Loading the model.
    pub load: f64,
    /// Sampling.
    pub sample: f64,
    /// Decoding and writing the images.
    pub decode: f64,
}

/// `manifest.json` of a `generate` or `invert` run.
#[derive(Debug, Clone, Serialize)]
pub struct RunManifest {
    /// "generate" or "invert".
    pub command: &'static str,
    /// The model folder.
    pub model: String,
    /// Its weights variant.
    pub variant: Option<String>,
    /// Where the noise came from.
    #[serde(flatten)]
    pub origin: Origin,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// The neutral prompt.
    pub neutral: String,
    /// The style prompts.
    pub styles: Vec<String>,
    /// The unconditional prompt.
    pub negative: String,
    /// DDIM steps.
    pub steps: usize,
    /// Guidance.
    pub guidance: f64,
    /// DDIM's eta (0: deterministic).
    pub eta: f64,
    /// The scheduler.
    pub scheduler: SchedulerInfo,
    /// Swap points, sorted.
    pub swap_points: Vec<usize>,
    /// Most latents per U-Net call.
    pub max_batch: usize,
    /// Guided latent evaluations.
    pub unet_evaluations: usize,
    /// U-Net calls.
    pub unet_batches: usize,
    /// The image files, neutral first.
    pub images: Vec<String>,
    /// The contact sheet's file.
    pub contact_sheet: &'static str,
    /// The latents file.
    pub latents: &'static str,
    /// Seconds per phase.
    pub timings_s: Timings,
    /// This tool's version.
    pub traverse_version: &'static str,
}

/// What [`write_run`] wrote.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone)]
pub struct WrittenRun {
    /// Image files, neutral first.
    pub images: Vec<String>,
    /// Seconds spent decoding and writing.
    pub decode_s: f64,
}

/// The name of style `style`'s latent at swap point `t` in `latents.safetensors`.
pub fn latent_name(style: usize, t: usize) -> String {
    format!("style{style}.t{t}")
}

/// The PNG file of the latent named `name` (`neutral.png`, `style{k}_t{t}.png`).
pub fn image_file(name: &str) -> String {
    format!("{}.png", name.replace('.', "_"))
}

/// The metadata `latents.safetensors` carries: the prompts and swap points.
pub fn latents_metadata(neutral: &str, styles: &[String], swap_points: &[usize]) -> Result<HashMap<String, String>> {
    let json = |e: serde_json::Error| Error::arg(format!("latents metadata: {e}"));
    Ok(HashMap::from([
        ("neutral".to_string(), neutral.to_string()),
        ("styles".to_string(), serde_json::to_string(styles).map_err(json)?),
        ("swap_points".to_string(), serde_json::to_string(swap_points).map_err(json)?),
    ]))
}

/// A latents file: f32 tensors by name, `(name, shape, values)`, with `meta` in its header.
pub fn latents_bytes(tensors: Vec<(String, Vec<usize>, Vec<f32>)>, meta: HashMap<String, String>) -> Result<Vec<u8>> {
    let owned = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, safetensors::Dtype::F32, shape, bytes)
        })
        .collect();
    serialize("latents.safetensors", owned, Some(meta))
}

/// Files as one zip archive (stored: the PNGs are compressed already), in the order given.
pub fn zip(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    use std::io::Write;
    let bad = |e: &dyn std::fmt::Display| Error::Image(format!("zip: {e}"));
    let mut out = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = ::zip::write::SimpleFileOptions::default().compression_method(::zip::CompressionMethod::Stored);
    for (name, bytes) in files {
        out.start_file(name.as_str(), options).map_err(|e| bad(&e))?;
        out.write_all(bytes).map_err(|e| bad(&e))?;
    }
    Ok(out.finish().map_err(|e| bad(&e))?.into_inner())
}

/// The name of each latent of a run in `latents.safetensors`: `init`, `neutral`, then `style{k}.t{t}`.
#[cfg(not(target_arch = "wasm32"))]
fn named_latents(init: &Tensor<4>, res: &SwapResult) -> Vec<(String, Tensor<4>)> {
    let mut latents = vec![("init".to_string(), init.clone()), ("neutral".to_string(), res.neutral.clone())];
    for (si, tr) in res.trajectories.iter().enumerate() {
        for (p, l) in res.swap_points.iter().zip(&tr.latents) {
            latents.push((latent_name(si, *p), l.clone()));
        }
    }
    latents
}

/// Decodes a finished run into `dir`: a PNG per image (`neutral.png`, `style{k}_t{t}.png`), `sheet.png` (one
/// row per style, neutral first) and `latents.safetensors` (with the prompts in its metadata);
/// `progress(done, all)` sees each decoded image.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_run(
    sd: &StableDiffusion,
    init: &Tensor<4>,
    res: &SwapResult,
    neutral: &str,
    styles: &[String],
    dir: &Path,
    mut progress: impl FnMut(usize, usize),
) -> Result<WrittenRun> {
    files::create_dir(dir)?;
    let t0 = std::time::Instant::now();
    let latents = named_latents(init, res);
    let mut rows: Vec<Vec<image::RgbImage>> = vec![Vec::new(); res.trajectories.len().max(1)];
    let mut images = Vec::new();
    for (name, latent) in latents.iter().skip(1) {
        let img = tensor_to_rgb(sd.vae.decode(latent.clone()))?;
        let file = image_file(name);
        files::save_png(&img, &dir.join(&file))?;
        images.push(file);
        if name == "neutral" {
            rows.iter_mut().for_each(|r| r.push(img.clone()));
        } else if let Some(si) =
            name.strip_prefix("style").and_then(|r| r.split('.').next()).and_then(|i| i.parse::<usize>().ok())
        {
            rows[si].push(img);
        }
        progress(images.len(), latents.len() - 1);
    }
    let columns = res.swap_points.len() + 1;
    files::save_png(&contact_sheet(&rows.concat(), columns), &dir.join("sheet.png"))?;
    let decode_s = t0.elapsed().as_secs_f64();
    let meta = latents_metadata(neutral, styles, &res.swap_points)?;
    write_latents(&dir.join("latents.safetensors"), &latents, meta)?;
    Ok(WrittenRun { images, decode_s })
}

/// What a run cost and produced, for its manifest.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// Swap points, sorted.
    pub swap_points: Vec<usize>,
    /// Guided latent evaluations.
    pub unet_evaluations: usize,
    /// U-Net calls.
    pub unet_batches: usize,
    /// The image files, neutral first.
    pub images: Vec<String>,
}

impl RunManifest {
    /// The manifest of a run of `sd` (from folder `model`) with `settings` and prompts, from `origin`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        command: &'static str,
        model: &str,
        variant: Option<String>,
        origin: Origin,
        [height, width]: [usize; 2],
        sd: &StableDiffusion,
        settings: &SwapSettings,
        prompts: (&str, &[String], &str),
        record: RunRecord,
        timings: Timings,
    ) -> Self {
        let (neutral, styles, negative) = prompts;
        Self {
            command,
            model: model.to_string(),
            variant,
            origin,
            height,
            width,
            neutral: neutral.to_string(),
            styles: styles.to_vec(),
            negative: negative.to_string(),
            steps: settings.steps,
            guidance: settings.guidance,
            eta: 0.0,
            scheduler: SchedulerInfo {
                kind: "DDIM",
                prediction_type: sd.scheduler.prediction_type,
                timestep_spacing: sd.scheduler.timestep_spacing,
            },
            swap_points: record.swap_points,
            max_batch: settings.max_batch,
            unet_evaluations: record.unet_evaluations,
            unet_batches: record.unet_batches,
            images: record.images,
            contact_sheet: "sheet.png",
            latents: "latents.safetensors",
            timings_s: timings,
            traverse_version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// Writes 4-D tensors by name as an f32 safetensors file with `meta` in its header.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_latents(path: &Path, tensors: &[(String, Tensor<4>)], meta: HashMap<String, String>) -> Result<()> {
    let owned = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.dims().to_vec(), crate::readback::values(t.clone())?)))
        .collect::<Result<Vec<_>>>()?;
    files::write(path, &latents_bytes(owned, meta)?)
}

/// Reads 4-D f32 tensors by name from a latents file (after checking its header).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_latents(path: &Path, names: &[String], device: &Device) -> Result<Vec<Tensor<4>>> {
    inspect(&WeightFile::Path(path.to_path_buf()))?;
    let bytes = crate::files::read(path)?;
    let st = parse(&path.display().to_string(), &bytes)?;
    names
        .iter()
        .map(|name| {
            let view =
                st.tensor(name).map_err(|_| Error::arg(format!("{} has no tensor named {name:?}", path.display())))?;
            if view.dtype() != safetensors::Dtype::F32 || view.shape().len() != 4 {
                return Err(Error::arg(format!("{name} in {} must be a 4-D F32 tensor", path.display())));
            }
            let values: Vec<f32> =
                view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Ok(Tensor::from_data(TensorData::new(values, view.shape().to_vec()), device))
        })
        .collect()
}

/// The swap points of style `style`'s trajectory in a latents file, sorted.
#[cfg(not(target_arch = "wasm32"))]
pub fn trajectory_points(path: &Path, style: usize) -> Result<Vec<usize>> {
    let table = inspect(&WeightFile::Path(path.to_path_buf()))?;
    let prefix = format!("style{style}.t");
    let mut points: Vec<usize> = table.keys().filter_map(|k| k.strip_prefix(&prefix)?.parse().ok()).collect();
    points.sort_unstable();
    if points.is_empty() {
        return Err(Error::arg(format!("{} has no trajectory for style index {style}", path.display())));
    }
    Ok(points)
}

/// `manifest.json` of an `interpolate` run.
#[derive(Debug, Clone, Serialize)]
pub struct InterpolationManifest {
    /// Always "interpolate".
    pub command: &'static str,
    /// The latents file.
    pub latents: String,
    /// Which style's trajectory.
    pub style_index: usize,
    /// The control points' names (`neutral`, `t{t}`).
    pub control_points: Vec<String>,
    /// Interpolated images.
    pub samples: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zip_holds_the_files_as_given() {
        let files =
            vec![("manifest.json".to_string(), b"{}".to_vec()), ("neutral.png".to_string(), vec![0u8, 1, 2, 255])];
        let bytes = zip(&files).unwrap();
        let mut archive = ::zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 2);
        for (name, want) in &files {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut archive.by_name(name).unwrap(), &mut got).unwrap();
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn a_latents_file_carries_names_shapes_values_and_prompts() {
        let meta = latents_metadata("neutral", &["a".into(), "b".into()], &[5, 10]).unwrap();
        let bytes = latents_bytes(vec![(latent_name(1, 10), vec![1, 1, 1, 2], vec![0.5, -2.0])], meta).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let t = st.tensor("style1.t10").unwrap();
        assert_eq!(t.shape(), [1, 1, 1, 2]);
        assert_eq!(t.data(), [0.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat());
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().as_ref().unwrap();
        assert_eq!((meta["styles"].as_str(), meta["swap_points"].as_str()), ("[\"a\",\"b\"]", "[5,10]"));
        assert_eq!(image_file("style1.t10"), "style1_t10.png");
    }
}
