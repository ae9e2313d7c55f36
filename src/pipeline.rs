//! A diffusers Stable Diffusion folder (`model_index.json`, `text_encoder/`, `unet/`, `vae/`, `tokenizer/`,
//! `scheduler/`) loaded into one [`StableDiffusion`], and the guided noise prediction every sampler uses.

use std::collections::BTreeSet;

use burn::prelude::*;
use burn_store::ModuleSnapshot;
use serde::Deserialize;

use crate::clip::{self, ClipTextConfig, ClipTextModel};
use crate::codec::WeightFile;
use crate::error::{Error, Result};
use crate::image::MAX_IMAGE_SIZE;
use crate::scheduler::DdimConfig;
use crate::tokenizer::{ClipTokenizer, TokenizerFiles};
use crate::unet::{self, UNet2DConditionConfig, UNet2DConditionModel};
use crate::vae::{self, AutoencoderKL, AutoencoderKLConfig};
use crate::weights::{NameMap, Precision, Storage};

/// Largest JSON file (config, index) we read.
const MAX_JSON_BYTES: u64 = 16 << 20;

/// The config files every folder has, relative to its root.
pub const CONFIG_FILES: [&str; 4] =
    ["text_encoder/config.json", "unet/config.json", "vae/config.json", "scheduler/scheduler_config.json"];

/// Tokenizer files, of which a folder has `tokenizer.json` or `vocab.json` + `merges.txt`.
pub const TOKENIZER_FILES: [&str; 5] = [
    "tokenizer/tokenizer.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/tokenizer_config.json",
    "tokenizer/special_tokens_map.json",
];

/// Each model's subfolder and the base name of its safetensors file(s), as diffusers names them.
pub const WEIGHTS: [(&str, &str); 3] =
    [("text_encoder", "model"), ("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model")];

/// Whether `path` (relative to the folder root, `/`-separated) holds weights a pipeline loads: one of the
/// [`WEIGHTS`] files in its subfolder, single-file or sharded, any variant.
pub fn is_pipeline_weights(path: &str) -> bool {
    WEIGHTS.iter().any(|(dir, base)| {
        path.strip_prefix(dir)
            .and_then(|p| p.strip_prefix('/'))
            .and_then(|p| p.strip_prefix(base))
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('-'))
    })
}

/// The files of the folder `dir` that a pipeline reads, relative to it and sorted: the [`CONFIG_FILES`], the
/// [`TOKENIZER_FILES`] present and every [`WEIGHTS`] file (each variant, single-file or sharded). What a
/// measurement of the model depends on, and nothing else in the folder (a page preview fit, a model card).
pub fn pipeline_files(dir: &std::path::Path) -> Result<Vec<String>> {
    let mut files: Vec<String> = CONFIG_FILES.iter().chain(&TOKENIZER_FILES).map(|f| f.to_string()).collect();
    for (sub, _) in WEIGHTS {
        let path = dir.join(sub);
        let entries = std::fs::read_dir(&path).and_then(|d| d.collect::<std::io::Result<Vec<_>>>());
        for entry in entries.map_err(Error::io(&path))? {
            files.push(format!("{sub}/{}", entry.file_name().to_string_lossy()));
        }
    }
    let read = |f: &str| CONFIG_FILES.contains(&f) || TOKENIZER_FILES.contains(&f) || is_pipeline_weights(f);
    files.retain(|f| read(f) && dir.join(f).is_file());
    files.sort();
    files.dedup();
    Ok(files)
}

/// Where a model folder's files come from: a directory, or files already fetched into memory (browser).
pub trait ModelSource {
    /// Whether `path` (relative to the folder root, `/`-separated) exists.
    fn exists(&self, path: &str) -> bool;
    /// Reads a small file whole, refusing one over `limit` bytes.
    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>>;
    /// Hands over a weights file for loading.
    fn weights(&self, path: &str) -> Result<WeightFile>;
}

/// A model folder on disk.
#[cfg(not(target_arch = "wasm32"))]
pub struct DirSource(pub std::path::PathBuf);

#[cfg(not(target_arch = "wasm32"))]
impl ModelSource for DirSource {
    fn exists(&self, path: &str) -> bool {
        self.0.join(path).is_file()
    }
    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        let full = self.0.join(path);
        if !full.is_file() {
            return Err(Error::Missing(full.display().to_string()));
        }
        let len = std::fs::metadata(&full).map_err(Error::io(&full))?.len();
        if len > limit {
            return Err(Error::config(path, format!("file is {len} bytes, over the {limit}-byte limit")));
        }
        std::fs::read(&full).map_err(Error::io(&full))
    }
    fn weights(&self, path: &str) -> Result<WeightFile> {
        let full = self.0.join(path);
        if !full.is_file() {
            return Err(Error::Missing(full.display().to_string()));
        }
        Ok(WeightFile::Path(full))
    }
}

/// A model folder whose files were fetched into memory, keyed by relative path. Weights files are shared with
/// the loader, not copied: a browser tab holds each file once.
pub struct MemorySource(pub std::collections::HashMap<String, std::sync::Arc<Vec<u8>>>);

impl ModelSource for MemorySource {
    fn exists(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }
    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        let b = self.0.get(path).ok_or_else(|| Error::Missing(path.to_string()))?;
        if b.len() as u64 > limit {
            return Err(Error::config(path, format!("file is {} bytes, over the {limit}-byte limit", b.len())));
        }
        Ok(b.to_vec())
    }
    fn weights(&self, path: &str) -> Result<WeightFile> {
        let bytes = self.0.get(path).ok_or_else(|| Error::Missing(path.to_string()))?.clone();
        Ok(WeightFile::Bytes { name: path.to_string(), bytes })
    }
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: std::collections::BTreeMap<String, String>,
}

/// The distinct shard file names of a sharded-weights index (`index` names it in errors), each checked to be a
/// plain file name so an index cannot point outside its folder.
pub fn shard_names(index: &str, json: &[u8]) -> Result<Vec<String>> {
    let text = std::str::from_utf8(json).map_err(|e| Error::config(index, e))?;
    let idx: ShardIndex = crate::error::parse_json(index, text)?;
    let shards: BTreeSet<String> = idx.weight_map.into_values().collect();
    if shards.is_empty() {
        return Err(Error::config(index, "weight_map is empty"));
    }
    if let Some(s) = shards.iter().find(|s| s.contains('/') || s.contains('\\') || s.starts_with('.')) {
        return Err(Error::config(index, format!("shard name {s:?} must be a plain file name")));
    }
    Ok(shards.into_iter().collect())
}

/// The safetensors files holding one model's weights, as diffusers names them: `{base}[.{variant}].safetensors`
/// or the shards listed in `{base}.safetensors.index[.{variant}].json`.
pub fn weight_files(src: &dyn ModelSource, dir: &str, base: &str, variant: Option<&str>) -> Result<Vec<String>> {
    let v = variant.map(|v| format!(".{v}")).unwrap_or_default();
    let single = format!("{dir}/{base}{v}.safetensors");
    if src.exists(&single) {
        return Ok(vec![single]);
    }
    for index in [format!("{dir}/{base}.safetensors.index{v}.json"), format!("{dir}/{base}{v}.safetensors.index.json")]
    {
        if !src.exists(&index) {
            continue;
        }
        let shards = shard_names(&index, &src.read(&index, MAX_JSON_BYTES)?)?;
        return Ok(shards.into_iter().map(|s| format!("{dir}/{s}")).collect());
    }
    Err(Error::config(
        dir,
        format!("no safetensors weights: expected {single} or a sharded index (.bin files are not supported)"),
    ))
}

fn load<M: ModuleSnapshot>(
    src: &dyn ModelSource,
    module: &mut M,
    (dir, base): (&str, &str),
    options: &LoadOptions,
    names: &NameMap,
) -> Result<()> {
    let files = weight_files(src, dir, base, options.variant.as_deref())?
        .iter()
        .map(|f| src.weights(f))
        .collect::<Result<Vec<_>>>()?;
    crate::weights::load_stored(module, dir, files, names, options.storage)
}

/// How a folder is loaded onto a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Weight-file variant, e.g. `fp16` (loads `*.fp16.safetensors`).
    pub variant: Option<String>,
    /// Most f32 values in one attention score matrix (0: no limit): the U-Net's and the VAE's attentions slice
    /// their queries to stay under it, as a GPU's buffer limit requires.
    pub max_scores: usize,
    /// How the weights of int8 files are kept on the device.
    pub storage: Storage,
}

fn read_json(src: &dyn ModelSource, path: &str) -> Result<String> {
    String::from_utf8(src.read(path, MAX_JSON_BYTES)?).map_err(|e| Error::config(path, e))
}

/// WebGPU's default `maxStorageBufferBindingSize`: what an adapter grants when asked for nothing more, and the
/// buffer limit the CLI's GPU runs plan for, so they slice attention as the page does.
pub const DEFAULT_MAX_BINDING: u64 = 128 << 20;

/// How runs of a model fit a device whose buffers hold at most a given number of bytes: the most latents
/// per U-Net call and images per decode, so that no tensor outgrows one buffer, and the attention slicing
/// that keeps score matrices under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Most latents per U-Net call (each is two batch rows when guided).
    pub unet_batch: usize,
    /// Most images per VAE decode.
    pub decode_batch: usize,
    /// Most score elements per attention call.
    pub max_scores: usize,
}

impl Plan {
    /// The plan for `unet` and `vae` at latent size `latent` under a `max_binding`-byte buffer limit, with
    /// guidance (two U-Net rows per latent) or without, computing in `precision`; an error that says why when not
    /// even one latent or image fits.
    pub fn new(
        unet: &UNet2DConditionConfig,
        vae: &AutoencoderKLConfig,
        latent: [usize; 2],
        guided: bool,
        max_binding: u64,
        precision: Precision,
    ) -> Result<Self> {
        // Convolutions compute in f32 whatever the precision (`nn::conv2d`), so activations are sized as f32;
        // attention's scores take the device's precision.
        let values = Self::max_values(max_binding, Precision::F32);
        let row = unet.largest_activation(latent)?.max(1);
        let rows_per_latent = if guided { 2 } else { 1 };
        let image = vae.largest_decode_activation(latent).max(1);
        let mb = |elements: usize| (elements as f64 * 4.0 / 1048576.0).ceil();
        if values / row < rows_per_latent {
            return Err(Error::Device(format!(
                "one U-Net call of this model at a {}×{} latent makes a {} MB tensor, over this GPU's {} MB buffer \
                 limit",
                latent[0],
                latent[1],
                mb(row * rows_per_latent),
                max_binding >> 20
            )));
        }
        if values < image {
            return Err(Error::Device(format!(
                "decoding one image of this model at a {}×{} latent makes a {} MB tensor, over this GPU's {} MB \
                 buffer limit",
                latent[0],
                latent[1],
                mb(image),
                max_binding >> 20
            )));
        }
        Ok(Self {
            unet_batch: values / row / rows_per_latent,
            decode_batch: values / image,
            max_scores: Self::max_values(max_binding, precision),
        })
    }

    /// Most values of `precision` one buffer of `max_binding` bytes holds: the attention slicing's score limit.
    pub fn max_values(max_binding: u64, precision: Precision) -> usize {
        usize::try_from(max_binding / precision.bytes()).unwrap_or(usize::MAX)
    }
}

/// The configs of a diffusers folder, read and checked against each other.
#[derive(Debug, Clone)]
pub struct Configs {
    /// `text_encoder/config.json`.
    pub text: ClipTextConfig,
    /// `unet/config.json`.
    pub unet: UNet2DConditionConfig,
    /// `vae/config.json`.
    pub vae: AutoencoderKLConfig,
    /// `scheduler/scheduler_config.json`.
    pub scheduler: DdimConfig,
}

impl Configs {
    /// Reads [`CONFIG_FILES`] from `src`; a U-Net that does not fit its text encoder or VAE is an error.
    pub fn read(src: &dyn ModelSource) -> Result<Self> {
        let [text, unet, vae, scheduler] = CONFIG_FILES;
        let text = ClipTextConfig::from_json(&read_json(src, text)?)?;
        let unet = UNet2DConditionConfig::from_json(&read_json(src, unet)?)?;
        let vae = AutoencoderKLConfig::from_json(&read_json(src, vae)?)?;
        let scheduler = DdimConfig::from_json(&read_json(src, scheduler)?)?;
        if unet.context_dim() != text.hidden_size {
            return Err(Error::config(
                "unet/config.json",
                format!(
                    "cross_attention_dim {} differs from the text encoder's hidden_size {}",
                    unet.context_dim(),
                    text.hidden_size
                ),
            ));
        }
        if unet.in_channels != vae.latent_channels {
            return Err(Error::config("unet/config.json", "in_channels differs from the VAE's latent_channels"));
        }
        // A schedule that cannot be built fails here, at load, rather than at the first sampling.
        scheduler.alphas_cumprod()?;
        Ok(Self { text, unet, vae, scheduler })
    }

    /// Bytes the three models' weights take on a device once loaded from int8 files with `storage` (float
    /// files take [`Storage::Float`]'s: four bytes per parameter in f32, two in f16), from the configs alone:
    /// burn builds parameters lazily, so the models are built only to be measured and nothing is allocated.
    pub fn device_bytes(&self, device: &Device, storage: Storage) -> Result<u64> {
        Ok(storage.planned_bytes(&self.text.init(device)?)
            + storage.planned_bytes(&self.unet.init(device)?)
            + storage.planned_bytes(&self.vae.init(device)?))
    }

    /// The default image size: the U-Net's `sample_size` × the VAE's downsampling.
    pub fn default_image_size(&self) -> usize {
        self.unet.sample_size.unwrap_or(64) * self.vae.downsampling()
    }

    /// The folder's tokenizer ([`TOKENIZER_FILES`]), checked against the text encoder's positions.
    pub fn tokenizer(&self, src: &dyn ModelSource) -> Result<ClipTokenizer> {
        let opt = |path: &str| -> Result<Option<Vec<u8>>> {
            if src.exists(path) {
                src.read(path, crate::tokenizer::MAX_TOKENIZER_BYTES as u64).map(Some)
            } else {
                Ok(None)
            }
        };
        let [tokenizer_json, vocab_json, merges_txt, config_json, special_tokens_map] = TOKENIZER_FILES;
        let tokenizer = ClipTokenizer::from_files(&TokenizerFiles {
            tokenizer_json: opt(tokenizer_json)?,
            vocab_json: opt(vocab_json)?,
            merges_txt: opt(merges_txt)?,
            config_json: opt(config_json)?,
            special_tokens_map_json: opt(special_tokens_map)?,
        })?;
        if tokenizer.max_length() > self.text.max_position_embeddings {
            return Err(Error::config(
                "tokenizer",
                "model_max_length exceeds the text encoder's max_position_embeddings",
            ));
        }
        Ok(tokenizer)
    }

    /// The text encoder, U-Net and VAE as the configs describe them, their parameters not yet allocated (burn
    /// builds them lazily; loading sets them); attention sliced to at most `max_scores` scores (0: no limit).
    pub fn networks(
        &self,
        device: &Device,
        max_scores: usize,
    ) -> Result<(ClipTextModel, UNet2DConditionModel, AutoencoderKL)> {
        Ok((
            self.text.init(device)?,
            self.unet.init_limited(device, max_scores)?,
            self.vae.init_limited(device, max_scores)?,
        ))
    }
}

/// A loaded Stable Diffusion model: tokenizer, text encoder, U-Net, VAE and the scheduler's config.
pub struct StableDiffusion {
    /// Prompt tokenizer.
    pub tokenizer: ClipTokenizer,
    /// CLIP text encoder.
    pub text_encoder: ClipTextModel,
    /// Noise predictor.
    pub unet: UNet2DConditionModel,
    /// Image ↔ latent autoencoder.
    pub vae: AutoencoderKL,
    /// The U-Net's config (sizes, default sample size).
    pub unet_config: UNet2DConditionConfig,
    /// The VAE's config (scaling factor, downsampling).
    pub vae_config: AutoencoderKLConfig,
    /// DDIM settings from `scheduler/scheduler_config.json`.
    pub scheduler: DdimConfig,
    device: Device,
}

impl StableDiffusion {
    /// Loads a diffusers folder from disk. `variant` picks e.g. `fp16` weight files.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(dir: &std::path::Path, variant: Option<&str>, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Missing(dir.display().to_string()));
        }
        let options = LoadOptions { variant: variant.map(str::to_string), ..LoadOptions::default() };
        Self::from_source(&DirSource(dir.to_path_buf()), device, &options)
    }

    /// Loads a diffusers folder from any [`ModelSource`] as `options` say.
    pub fn from_source(src: &dyn ModelSource, device: &Device, options: &LoadOptions) -> Result<Self> {
        let configs = Configs::read(src)?;
        let tokenizer = configs.tokenizer(src)?;
        let (mut text_encoder, mut unet, mut vae) = configs.networks(device, options.max_scores)?;
        let [text, unet_files, vae_files] = WEIGHTS;
        load(src, &mut text_encoder, text, options, &clip::NAMES)?;
        load(src, &mut unet, unet_files, options, &unet::NAMES)?;
        load(src, &mut vae, vae_files, options, &vae::NAMES)?;
        Ok(Self::new(tokenizer, configs, text_encoder, unet, vae, device))
    }

    /// A model from its parts, once their weights are loaded (see [`Configs::networks`]).
    pub fn new(
        tokenizer: ClipTokenizer,
        configs: Configs,
        text_encoder: ClipTextModel,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        device: &Device,
    ) -> Self {
        let Configs { unet: unet_config, vae: vae_config, scheduler, .. } = configs;
        Self { tokenizer, text_encoder, unet, vae, unet_config, vae_config, scheduler, device: device.clone() }
    }

    /// Bytes the text encoder's, U-Net's and VAE's weights take on the device ([`crate::weights::device_bytes`]).
    pub fn device_bytes(&self) -> u64 {
        use crate::weights::device_bytes;
        device_bytes(&self.text_encoder) + device_bytes(&self.unet) + device_bytes(&self.vae)
    }

    /// The device the models live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Token ids → text embedding `[1, 77, D]`, after checking every id against the vocabulary.
    pub fn embed_ids(&self, ids: &[u32]) -> Result<Tensor<3>> {
        let vocab = self.text_encoder.vocab_size();
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(Error::Tokenizer(format!(
                "token id {bad} is outside the text encoder's vocabulary of {vocab}"
            )));
        }
        if ids.is_empty() || ids.len() > self.text_encoder.max_positions() {
            return Err(Error::arg(format!(
                "{} tokens; the text encoder takes 1..={}",
                ids.len(),
                self.text_encoder.max_positions()
            )));
        }
        let data = TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, ids.len()]);
        Ok(self.text_encoder.forward(Tensor::from_data(data, &self.device)))
    }

    /// Prompt → text embedding `[1, 77, D]`.
    pub fn embed(&self, prompt: &str) -> Result<Tensor<3>> {
        self.embed_ids(&self.tokenizer.encode(prompt)?)
    }

    /// Latent size for an image size, which must be a positive multiple of the VAE's downsampling.
    pub fn latent_size(&self, height: usize, width: usize) -> Result<[usize; 2]> {
        let f = self.vae_config.downsampling();
        if height == 0
            || width == 0
            || !height.is_multiple_of(f)
            || !width.is_multiple_of(f)
            || height > MAX_IMAGE_SIZE
            || width > MAX_IMAGE_SIZE
        {
            return Err(Error::arg(format!(
                "image size {width}×{height} must be a multiple of {f}, at most {MAX_IMAGE_SIZE}"
            )));
        }
        Ok([height / f, width / f])
    }

    /// The [`Plan`] of runs at `image` pixels (height, width) under a `max_binding`-byte buffer limit, in the
    /// precision of the model's device.
    pub fn plan(&self, [height, width]: [usize; 2], guided: bool, max_binding: u64) -> Result<Plan> {
        let precision = Precision::of(&self.device);
        Plan::new(&self.unet_config, &self.vae_config, self.latent_size(height, width)?, guided, max_binding, precision)
    }

    /// The default image size: the U-Net's `sample_size` × the VAE's downsampling.
    pub fn default_image_size(&self) -> usize {
        self.unet_config.sample_size.unwrap_or(64) * self.vae_config.downsampling()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;

    /// SD 1.5's configs (diffusers' and transformers' defaults where SD 1.5 keeps them).
    fn sd15() -> Configs {
        let files = [
            (
                "text_encoder/config.json",
                r#"{"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                "num_attention_heads": 12}"#,
            ),
            ("unet/config.json", r#"{"cross_attention_dim": 768, "sample_size": 64}"#),
            (
                "vae/config.json",
                r#"{"block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D",
                "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"], "up_block_types": ["UpDecoderBlock2D",
                "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"], "layers_per_block": 2, "sample_size": 512}"#,
            ),
            ("scheduler/scheduler_config.json", "{}"),
        ];
        Configs::read(&MemorySource(files.map(|(k, v)| (k.to_string(), v.as_bytes().to_vec().into())).into())).unwrap()
    }

    #[test]
    fn pipeline_files_are_what_loading_reads() {
        let dir = std::env::temp_dir().join(format!("traverse-pipeline-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = [
            "model_index.json",
            "text_encoder/config.json",
            "text_encoder/model.fp16.safetensors",
            "text_encoder/model.safetensors",
            "tokenizer/merges.txt",
            "tokenizer/vocab.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
            "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
            "unet/diffusion_pytorch_model.safetensors.index.json",
            "unet/loss.csv",
            "vae/config.json",
            "vae/diffusion_pytorch_model.safetensors",
            "vae/latent_preview.json",
            "scheduler/scheduler_config.json",
            "MODEL_CARD.md",
        ];
        for f in files {
            let path = dir.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, f).unwrap();
        }
        let mut read: Vec<&str> = files.into_iter().filter(|f| !f.ends_with(".md") && !f.ends_with(".csv")).collect();
        read.retain(|f| *f != "model_index.json" && *f != "vae/latent_preview.json");
        read.sort();
        assert_eq!(pipeline_files(&dir).unwrap(), read);
        std::fs::remove_dir_all(dir.join("unet")).unwrap();
        assert!(pipeline_files(&dir).is_err(), "a folder without a U-Net is not a pipeline");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sd15_counts_its_parameters_without_allocating_them() {
        // burn initializes parameters lazily: building SD 1.5 (4.3 GB of f32) only to count it is free.
        let configs = sd15();
        assert_eq!(configs.unet.init(&Device::flex()).unwrap().num_params(), 859_520_964, "diffusers' U-Net count");
        assert_eq!(configs.text.init(&Device::flex()).unwrap().num_params(), 123_060_480, "CLIP ViT-L/14's text model");
        assert_eq!(configs.vae.init(&Device::flex()).unwrap().num_params(), 83_653_863, "diffusers' VAE count");
        assert_eq!(configs.default_image_size(), 512);
        let f32_bytes = configs.device_bytes(&Device::flex(), Storage::Float).unwrap();
        assert_eq!(f32_bytes, (859_520_964 + 123_060_480 + 83_653_863) * 4);
        // int8 linear, convolution and embedding weights (one byte each, plus an f32 scale per block of at most
        // 252): all but norms and biases, a little over a quarter of the f32 bytes.
        let int8_bytes = configs.device_bytes(&Device::flex(), Storage::Int8).unwrap();
        eprintln!("SD 1.5 weights on a GPU: {f32_bytes} bytes as f32, {int8_bytes} with int8 weights");
        assert!(int8_bytes > f32_bytes / 4 && int8_bytes < f32_bytes / 4 * 105 / 100, "{int8_bytes}");
    }

    #[test]
    fn sd15_unet_call_flops() {
        // ../shared/NOTES.md: a guided SD 1.5 call (batch 2) at a 64×64 latent is 1607 GFLOP.
        let flops = sd15().unet.flops([64, 64], 77).unwrap();
        assert_eq!(flops, 803_273_441_280);
        assert_eq!(((2 * flops) as f64 / 1e9).round(), 1607.0);
        // Self-attention grows with the square of the tokens: four times the latent area, more than 4× the work.
        assert!(sd15().unet.flops([128, 128], 77).unwrap() > 4 * flops);
    }

    #[test]
    fn sd15_plans_follow_the_buffer_limit() {
        // SD 1.5's U-Net and VAE (diffusers' defaults but for the VAE's four blocks) at 512 px: the largest
        // U-Net tensor per row is the first transformer's GEGLU projection, 8 × 320 × 4096 values (42 MB); the
        // decoder's is its last block's first resnet input, 256 channels at 512 × 512 (268 MB).
        let Configs { unet, vae, .. } = sd15();
        assert_eq!(unet.largest_activation([64, 64]).unwrap(), 8 * 320 * 4096);
        assert_eq!(vae.largest_decode_activation([64, 64]), 256 * 512 * 512);
        let plan = |mib: u64, guided| Plan::new(&unet, &vae, [64, 64], guided, mib << 20, Precision::F32);
        let gib = plan(1024, true).unwrap();
        assert_eq!((gib.unet_batch, gib.decode_batch, gib.max_scores), (12, 4, 1 << 28));
        assert_eq!(plan(1024, false).unwrap().unet_batch, 25);
        // WebGPU's default 128 MiB binding holds one guided latent per U-Net call, but no decode; 64 MiB not
        // even the U-Net call.
        let err = plan(128, true).unwrap_err().to_string();
        assert!(err.contains("decoding one image") && err.contains("128 MB"), "{err}");
        let err = plan(64, true).unwrap_err().to_string();
        assert!(err.contains("one U-Net call") && err.contains("64 MB"), "{err}");
        assert_eq!(plan(256, true).unwrap().unet_batch, 3);
        // In f16 a score is half the bytes, so twice as many fit a slice; activations stay sized as f32, since
        // convolutions take f32 operands.
        let half = Plan::new(&unet, &vae, [64, 64], true, 1 << 30, Precision::F16).unwrap();
        assert_eq!((half.unet_batch, half.decode_batch, half.max_scores), (12, 4, 1 << 29));
    }
}
