//! The browser side of the engine: WebGPU through burn, model files streamed onto the GPU, and a prompt-swap
//! run that yields to the page between steps and reads results back asynchronously (a browser cannot block
//! on the GPU).

use std::cell::Cell;
use std::collections::HashMap;

use base64::Engine as _;
use burn::prelude::*;
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::app::bench::{self, BenchReport, BenchSettings, TrajectoryTiming};
use crate::app::download::progress_text;
use crate::app::fetch::{self, js_text};
use crate::app::params::Traversal;
use crate::app::readout::{MapDot, StyleReadout, latent_map, readouts};
use crate::classifier::Classifier;
use crate::codec::WeightFile;
use crate::error::{Error, Result};
use crate::invert::Inversion;
use crate::lpips::Lpips;
use crate::output::{self, Reconstruction};
use crate::pipeline::{
    CONFIG_FILES, Configs, MemorySource, Plan, StableDiffusion, TOKENIZER_FILES, WEIGHTS, shard_names,
};
use crate::preview::{self, LatentPreview};
use crate::readback::values_async as read;
use crate::rng::initial_latents;
use crate::swap::{Lane, SwapSampler, SwapSettings};
use crate::weights::{Loading, NameMap, Precision, Storage, Stream};

/// Largest weights file fetched. Files arrive piece by piece ([`Stream`]), so this bounds a download, not
/// the tab's memory: SD 1.5's U-Net is 3.4 GB as f32.
const MAX_FILE_BYTES: u64 = 1 << 33;
/// Largest model, in GPU memory for its weights, that the page will try to load.
const MAX_MODEL_DEVICE_BYTES: u64 = 3 << 29;
/// Largest JSON or tokenizer file.
const MAX_SMALL_BYTES: u64 = 16 << 20;

/// The WebGPU adapter and the burn device on it.
pub struct Gpu {
    /// burn's device; models and tensors live here.
    pub device: Device,
    /// Adapter vendor and architecture, for the status line.
    pub adapter: String,
    /// The adapter's largest storage buffer binding, which bounds the largest weight tensor.
    pub max_binding: u64,
    /// The float type the device computes in.
    pub precision: Precision,
    /// Why it is not the precision the link asked for, if it is not.
    pub precision_note: Option<String>,
}

fn js_err(what: &str, e: JsValue) -> Error {
    Error::Device(format!("{what}: {}", js_text(&e)))
}

fn get(obj: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(obj, &key.into()).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

/// Finds a WebGPU adapter (a clear error when the browser has none) and initialises burn on it, computing in
/// `precision` where the adapter can (f16 needs `shader-f16`; without it the page computes in f32 and says why).
pub async fn webgpu(precision: Precision) -> Result<Gpu> {
    let window = web_sys::window().ok_or_else(|| Error::Device("no window".into()))?;
    let gpu = get(&window.navigator(), "gpu").ok_or_else(|| {
        Error::Device(
            "this browser has no WebGPU (navigator.gpu is missing): use a recent Chrome, Edge or Safari, \
             or Firefox with WebGPU enabled, over https or localhost"
                .into(),
        )
    })?;
    let request: Function = get(&gpu, "requestAdapter")
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| Error::Device("navigator.gpu.requestAdapter is missing".into()))?;
    let promise: Promise = request
        .call0(&gpu)
        .map_err(|e| js_err("requestAdapter", e))?
        .dyn_into()
        .map_err(|e| js_err("requestAdapter", e))?;
    let adapter = JsFuture::from(promise).await.map_err(|e| js_err("requestAdapter", e))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err(Error::Device(
            "WebGPU is present but offers no adapter (blocked GPU, or disabled by the browser's settings)".into(),
        ));
    }
    let info = get(&adapter, "info");
    let field = |k: &str| info.as_ref().and_then(|i| get(i, k)).and_then(|v| v.as_string()).unwrap_or_default();
    let name = [field("vendor"), field("architecture"), field("description")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let max_binding = get(&adapter, "limits")
        .and_then(|l| get(&l, "maxStorageBufferBindingSize"))
        .and_then(|v| v.as_f64())
        .unwrap_or(crate::pipeline::DEFAULT_MAX_BINDING as f64) as u64;
    let mut device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| Error::Device(format!("burn could not start on the WebGPU adapter: {e}")))?;
    let (precision, precision_note) = match precision {
        Precision::F16 if !device.supports_dtype(burn::tensor::DType::F16) => {
            (Precision::F32, Some("f16 was asked for, but this GPU has no shader-f16: computing in f32".to_string()))
        }
        p => (p, None),
    };
    precision.configure(&mut device)?;
    let adapter = if name.is_empty() { "unnamed adapter".into() } else { name };
    Ok(Gpu { device, adapter, max_binding, precision, precision_note })
}

/// Most often the status line shows a download's progress: every this many bytes.
const PROGRESS_STEP: u64 = 1 << 20;

/// A download's progress for the status line, shown every [`PROGRESS_STEP`] bytes and when complete.
fn progress_shown<'a>(file: &'a str, status: &'a mut dyn FnMut(String)) -> impl FnMut(u64, Option<u64>, bool) + 'a {
    let mut shown = None;
    move |loaded: u64, total: Option<u64>, cached: bool| {
        if shown.is_none_or(|s| loaded >= s + PROGRESS_STEP || Some(loaded) == total) {
            shown = Some(loaded);
            status(progress_text(file, loaded, total, cached));
        }
    }
}

/// Fetches `{base}/{path}` (see [`fetch::fetch`]), telling `status` its progress every megabyte or so.
async fn fetch_file(
    base: &str,
    path: &str,
    limit: u64,
    required: bool,
    status: &mut dyn FnMut(String),
) -> Result<Option<Vec<u8>>> {
    let file = format!("{base}/{path}");
    status(format!("Fetching {file} …"));
    let mut progress = progress_shown(&file, status);
    let bytes = fetch::fetch(&file, limit, &mut progress).await?;
    if required && bytes.is_none() {
        return Err(not_found(&file));
    }
    Ok(bytes)
}

/// Loads a diffusers folder served at `base` (single-file or sharded safetensors), checking the model
/// against the tab's and the GPU's limits before its weights are fetched and each weights file's tensors
/// against the buffer limit as soon as its header is in. Weights stream onto the GPU piece by piece, so the
/// tab never holds a whole file; int8 files stay int8 there, and float files too where the model's f32
/// weights would not fit the page's budget (quantized as they arrive, as `traverse quantize` does). `status`
/// sees each download's progress.
pub async fn load_model(base: &str, gpu: &Gpu, mut status: impl FnMut(String)) -> Result<StableDiffusion> {
    let status = &mut status;
    let mut files = HashMap::new();
    for path in CONFIG_FILES {
        let bytes = fetch_file(base, path, MAX_SMALL_BYTES, true, status).await?.unwrap_or_default();
        files.insert(path.to_string(), bytes.into());
    }
    let [tokenizer_json, vocab_json, merges_txt, _, _] = TOKENIZER_FILES;
    for path in TOKENIZER_FILES {
        // A folder has tokenizer.json or vocab.json + merges.txt; asking for both would log 404s.
        if files.contains_key(tokenizer_json) && (path == vocab_json || path == merges_txt) {
            continue;
        }
        if let Some(bytes) = fetch_file(base, path, MAX_SMALL_BYTES, false, status).await? {
            files.insert(path.to_string(), bytes.into());
        }
    }
    // Before any weights are fetched: will the model fit a tab, and one U-Net call and one decode the GPU's
    // buffers? (Counting builds the models lazily, allocating nothing.)
    let small = MemorySource(files);
    let configs = Configs::read(&small)?;
    let tokenizer = configs.tokenizer(&small)?;
    let int8_bytes = configs.device_bytes(&gpu.device, Storage::Int8)?;
    if int8_bytes > MAX_MODEL_DEVICE_BYTES {
        return Err(Error::Device(format!(
            "the model's weights need {} MB of GPU memory even as int8, more than the page asks of a browser tab \
             ({} MB)",
            int8_bytes >> 20,
            MAX_MODEL_DEVICE_BYTES >> 20
        )));
    }
    let size = configs.default_image_size();
    let latent = [size / configs.vae.downsampling(); 2];
    Plan::new(&configs.unet, &configs.vae, latent, true, gpu.max_binding, gpu.precision)?;
    let quantize_floats = configs.device_bytes(&gpu.device, Storage::Float)? > MAX_MODEL_DEVICE_BYTES;
    // No attention's score matrix may outgrow one storage buffer.
    let max_scores = Plan::max_values(gpu.max_binding, gpu.precision);
    let (mut text_encoder, mut unet, mut vae) = configs.networks(&gpu.device, max_scores)?;
    let [text, unet_files, vae_files] = WEIGHTS;
    let load = Load { base, gpu, quantize_floats };
    load.model(&mut text_encoder, text, &crate::clip::NAMES, status).await?;
    load.model(&mut unet, unet_files, &crate::unet::NAMES, status).await?;
    load.model(&mut vae, vae_files, &crate::vae::NAMES, status).await?;
    Ok(StableDiffusion::new(tokenizer, configs, text_encoder, unet, vae, &gpu.device))
}

/// Tensor data per piece of a streamed weights file: big enough that applying a piece (a walk over the model)
/// is rare, small enough to be nothing beside the GPU's copy.
const PIECE_BYTES: usize = 32 << 20;

/// How [`load_model`] streams a folder's weights files.
struct Load<'a> {
    base: &'a str,
    gpu: &'a Gpu,
    /// Whether float files are quantized to int8 as they arrive.
    quantize_floats: bool,
}

impl Load<'_> {
    /// Streams one model's weights (`{dir}/{name}.safetensors`, or the shards its index lists) into `module`.
    async fn model<M: burn_store::ModuleSnapshot>(
        &self,
        module: &mut M,
        (dir, name): (&str, &str),
        names: &NameMap,
        status: &mut dyn FnMut(String),
    ) -> Result<()> {
        let mut loading = Loading::new(module, dir, names, Storage::Int8);
        if !self.file(&format!("{dir}/{name}.safetensors"), false, &mut loading, status).await? {
            let index = format!("{dir}/{name}.safetensors.index.json");
            let json = fetch_file(self.base, &index, MAX_SMALL_BYTES, true, status).await?.unwrap_or_default();
            for shard in shard_names(&index, &json)? {
                self.file(&format!("{dir}/{shard}"), true, &mut loading, status).await?;
            }
        }
        loading.finish()
    }

    /// Streams the weights file `path` into `loading`; `Ok(false)` when it does not exist and is not `required`.
    async fn file<M: burn_store::ModuleSnapshot>(
        &self,
        path: &str,
        required: bool,
        loading: &mut Loading<'_, M>,
        status: &mut dyn FnMut(String),
    ) -> Result<bool> {
        let mut stream: Option<Stream> = None;
        // Whether the file's pieces are quantized on arrival, once its header has told its dtypes.
        let mut quantize = None;
        let mut sink = |chunk: &[u8], total: Option<u64>| -> Result<()> {
            let s = stream.get_or_insert_with(|| Stream::new(path, total, PIECE_BYTES));
            let pieces = s.push(chunk)?;
            if let (None, Some(table)) = (quantize, s.table()) {
                quantize = Some(self.check(path, table)?);
            }
            pieces.into_iter().try_for_each(|piece| apply(loading, piece, quantize == Some(true)))
        };
        let file = format!("{}/{path}", self.base);
        if !fetch_streamed(&file, &mut sink, status).await? {
            return if required { Err(not_found(&file)) } else { Ok(false) };
        }
        let s = stream.unwrap_or_else(|| Stream::new(path, Some(0), PIECE_BYTES));
        s.finish()?.into_iter().try_for_each(|piece| apply(loading, piece, quantize == Some(true)))?;
        Ok(true)
    }

    /// Checks a weights file's header table before its data is used: every tensor must fit one GPU buffer as it
    /// will be kept. Returns whether its pieces are quantized as they arrive (a float file of a model too big
    /// for the page as f32).
    fn check(&self, path: &str, table: &crate::quantize::Table) -> Result<bool> {
        let int8 = crate::quantize::is_quantized(table);
        let quantize = !int8 && self.quantize_floats;
        for (tensor, info) in table {
            // A linear or embedding weight kept int8 on the GPU where its rows split into blocks; a convolution
            // kernel is dequantized for each call.
            let will_be_int8 =
                if quantize { crate::quantize::quantizes(&info.dtype, &info.shape) } else { info.dtype == "I8" };
            let kept = (int8 || quantize)
                && will_be_int8
                && info.shape.len() == 2
                && crate::quantize::device_block(info.shape[1]).is_some();
            let bytes = info.shape.iter().product::<usize>() as u64 * if kept { 1 } else { 4 };
            if bytes > self.gpu.max_binding {
                return Err(Error::Device(format!(
                    "{path}: tensor {tensor} needs {bytes} bytes on the GPU, over this GPU's {}-byte buffer \
                     limit; use a smaller model",
                    self.gpu.max_binding
                )));
            }
        }
        Ok(quantize)
    }
}

/// Applies one piece of a streamed weights file, quantized first where `quantize` says.
fn apply<M: burn_store::ModuleSnapshot>(loading: &mut Loading<'_, M>, piece: WeightFile, quantize: bool) -> Result<()> {
    match piece {
        WeightFile::Bytes { name, bytes } if quantize => {
            let bytes = crate::quantize::quantize(&name, &bytes)?.into();
            loading.apply(WeightFile::Bytes { name, bytes })
        }
        piece => loading.apply(piece),
    }
}

fn not_found(file: &str) -> Error {
    Error::Fetch { url: file.to_string(), message: "not found (404, or an HTML page in its place)".into() }
}

/// [`fetch::fetch_into`] of a weights file, telling `status` its progress.
async fn fetch_streamed(file: &str, sink: &mut fetch::Sink<'_>, status: &mut dyn FnMut(String)) -> Result<bool> {
    status(format!("Fetching {file} …"));
    let mut progress = progress_shown(file, status);
    fetch::fetch_into(file, MAX_FILE_BYTES, &mut progress, sink).await
}

/// The model's fitted latent preview (`vae/latent_preview.json`, see [`crate::preview`]), or false colour
/// where the folder has none.
pub async fn load_preview(base: &str, channels: usize, mut status: impl FnMut(String)) -> Result<LatentPreview> {
    match fetch_file(base, preview::FILE, MAX_SMALL_BYTES, false, &mut status).await? {
        Some(json) => LatentPreview::from_json(&json, channels),
        None => Ok(LatentPreview::channels(channels)),
    }
}

/// Loads the attribute classifiers of one image family from `{base}/config.json` and `model.safetensors`;
/// `None` when the folder is absent (the page then shows images without readouts).
pub async fn load_classifier(
    base: &str,
    device: &Device,
    mut status: impl FnMut(String),
) -> Result<Option<Classifier>> {
    let status = &mut status;
    let Some(config) = fetch_file(base, "config.json", MAX_SMALL_BYTES, false, status).await? else { return Ok(None) };
    let weights = fetch_file(base, "model.safetensors", MAX_FILE_BYTES, true, status).await?.unwrap_or_default();
    let config = String::from_utf8(config).map_err(|e| Error::config(base, e))?;
    let file = WeightFile::Bytes { name: format!("{base}/model.safetensors"), bytes: weights.into() };
    Classifier::load(&config, file, device).map(Some)
}

/// Loads LPIPS' weights from `path` (the shipped int8 file); `None` when the page is served without them (its
/// images then show no LPIPS).
pub async fn load_lpips(path: &str, device: &Device, mut status: impl FnMut(String)) -> Result<Option<Lpips>> {
    let (dir, name) = path.rsplit_once('/').unwrap_or((".", path));
    let Some(bytes) = fetch_file(dir, name, MAX_SMALL_BYTES, true, &mut status).await? else {
        return Ok(None);
    };
    Lpips::load(WeightFile::Bytes { name: path.to_string(), bytes: bytes.into() }, device).map(Some)
}

/// Waits for the browser's next frame, so the page repaints between GPU steps.
pub async fn next_frame() {
    let promise = Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.request_animation_frame(&resolve);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// One decoded image: a PNG data URL and the classifiers' probabilities (empty without classifiers).
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    /// `data:image/png;base64,…`
    pub url: String,
    /// Probability per classifier label.
    pub probs: Vec<f32>,
    /// LPIPS from the neutral image (Table 2's distance), for images other than the neutral one when the
    /// page has LPIPS' weights.
    pub lpips: Option<f32>,
}

/// What a finished run shows: plain data (no tensors), so the page can keep it in a signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The settings it ran with.
    pub traversal: Traversal,
    /// The neutral image.
    pub neutral: Picture,
    /// Per style: the image at each swap point.
    pub swaps: Vec<Vec<Picture>>,
    /// Per style: probabilities, CFRT flips, direction cosines.
    pub readouts: Vec<StyleReadout>,
    /// t-SNE map of the neutral and swap latents (empty for fewer than 4).
    pub map: Vec<MapDot>,
    /// Classifier labels, in the order of [`Picture::probs`].
    pub labels: Vec<String>,
    /// Seconds spent sampling and decoding.
    pub seconds: f64,
    /// Of which sampling.
    pub denoise_seconds: f64,
    /// Guided latent evaluations and U-Net calls.
    pub unet: (usize, usize),
    /// For a run from the visitor's image: its name and how faithfully it inverted.
    pub source: Option<(String, Reconstruction)>,
}

/// A finished run: its [`Outcome`], and the latents the traversal slider decodes on demand.
pub struct Run {
    /// What it shows.
    pub outcome: Outcome,
    /// The sampler's settings (the U-Net batch as planned for this device).
    settings: SwapSettings,
    /// For a run from the visitor's image: its file name, how well it inverts, and the inverted noise.
    origin: Option<(String, Reconstruction, Tensor<4>)>,
    /// Per style: the neutral latent then one per swap point.
    latents: Vec<Vec<Tensor<4>>>,
    /// The decoded neutral image, which LPIPS measures every frame from.
    neutral_image: Tensor<4>,
    /// Per style: the Bézier curve's latents, made when first shown.
    curves: HashMap<usize, Vec<Tensor<4>>>,
    /// Pictures already decoded, by (style, frame).
    frames: HashMap<(usize, usize), Picture>,
}

/// The models a run needs, and the device's buffer limit they run under.
pub struct Models<'a> {
    /// The diffusion model.
    pub sd: &'a StableDiffusion,
    /// The family's attribute classifiers, if shipped.
    pub classifier: Option<&'a Classifier>,
    /// LPIPS, if its weights were served.
    pub lpips: Option<&'a Lpips>,
    /// The adapter's largest storage buffer binding, in bytes.
    pub max_binding: u64,
    /// How a latent is previewed while the run denoises.
    pub preview: &'a LatentPreview,
}

impl Models<'_> {
    /// The image side `t` asks for, or the model's native one.
    fn size(&self, t: &Traversal) -> usize {
        t.size.unwrap_or_else(|| self.sd.default_image_size())
    }

    /// How this model's runs of `size`-pixel images fit the device.
    fn plan(&self, size: usize, guided: bool) -> Result<Plan> {
        self.sd.plan([size, size], guided, self.max_binding)
    }

    /// Decodes, classifies and measures `latents` (LPIPS from `neutral`, the neutral image, when given),
    /// telling `each(index, picture)` as each one is ready.
    async fn pictures(
        &self,
        latents: Vec<Tensor<4>>,
        neutral: Option<&Tensor<4>>,
        each: &mut dyn FnMut(usize, &Picture),
    ) -> Result<Vec<Picture>> {
        let mut out = Vec::with_capacity(latents.len());
        // At most four at a time, so the page repaints in between; fewer where the buffers are small.
        let Some(first) = latents.first() else { return Ok(out) };
        let size = first.dims()[2] * self.sd.vae_config.downsampling();
        let per_decode = self.plan(size, false)?.decode_batch.min(4);
        for chunk in latents.chunks(per_decode) {
            let images = self.sd.vae.decode(Tensor::cat(chunk.to_vec(), 0));
            for picture in self.describe(images, neutral).await? {
                each(out.len(), &picture);
                out.push(picture);
            }
            next_frame().await;
        }
        Ok(out)
    }

    /// Decoded `images`' pictures: PNG, classifier probabilities and LPIPS from `neutral` when given.
    async fn describe(&self, images: Tensor<4>, neutral: Option<&Tensor<4>>) -> Result<Vec<Picture>> {
        let [b, _, h, w] = images.dims();
        let probs = match self.classifier {
            Some(c) => {
                let values = read(c.probabilities(images.clone())?).await?;
                values.chunks(c.config.labels.len()).map(<[f32]>::to_vec).collect()
            }
            None => vec![Vec::new(); b],
        };
        let lpips = match (self.lpips, neutral) {
            // LPIPS needs images of at least its minimum size; smaller ones show none.
            (Some(model), Some(n)) if h.min(w) >= crate::lpips::MIN_SIZE => {
                read(model.distance(images.clone(), n.clone().repeat_dim(0, b))?).await?.into_iter().map(Some).collect()
            }
            _ => vec![None; b],
        };
        let pixels = read(images).await?;
        let plane = 3 * h * w;
        probs
            .into_iter()
            .zip(lpips)
            .enumerate()
            .map(|(i, (probs, lpips))| {
                let rgb = crate::image::to_rgb(&pixels[i * plane..(i + 1) * plane], h, w)?;
                Ok(Picture { url: png_url(&rgb)?, probs, lpips })
            })
            .collect()
    }

    /// The previews of `lanes`' latents `[1, C, h, w]`, read back together.
    async fn previews(&self, lanes: Vec<(Lane, Tensor<4>)>) -> Result<Vec<(Lane, String)>> {
        let Some((_, first)) = lanes.first() else { return Ok(Vec::new()) };
        let [_, c, h, w] = first.dims();
        let (ids, latents): (Vec<Lane>, Vec<Tensor<4>>) = lanes.into_iter().unzip();
        let values = read(Tensor::cat(latents, 0)).await?;
        ids.into_iter()
            .zip(values.chunks(c * h * w))
            .map(|(lane, v)| Ok((lane, png_url(&self.preview.image(v, [h, w])?)?)))
            .collect()
    }
}

/// The PNG bytes of a data URL made by [`png_url`].
fn png_bytes(url: &str) -> Result<Vec<u8>> {
    let data = url.strip_prefix("data:image/png;base64,").ok_or_else(|| Error::Image("not a PNG data URL".into()))?;
    base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| Error::Image(e.to_string()))
}

/// The difference map of two pictures' PNG data URLs ([`crate::app::readout::difference_map`]) as a data URL,
/// with the mean absolute change.
pub fn difference_url(image: &str, neutral: &str) -> Result<(String, f64)> {
    let decode = |url: &str| -> Result<::image::RgbImage> {
        Ok(::image::load_from_memory(&png_bytes(url)?).map_err(|e| Error::Image(e.to_string()))?.to_rgb8())
    };
    let (map, mean) = crate::app::readout::difference_map(&decode(image)?, &decode(neutral)?)?;
    Ok((png_url(&map)?, mean))
}

/// Offers `bytes` to the visitor as a file download named `name`.
pub fn save_file(name: &str, mime: &str, bytes: &[u8]) -> Result<()> {
    let fail = |e: JsValue| Error::Device(format!("download: {}", js_text(&e)));
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options).map_err(fail)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(fail)?;
    let document = web_sys::window().and_then(|w| w.document()).ok_or_else(|| Error::Device("no document".into()))?;
    let a: web_sys::HtmlAnchorElement = document.create_element("a").map_err(fail)?.unchecked_into();
    a.set_href(&url);
    a.set_download(name);
    a.click();
    // The browser reads the blob after this task; let it go a little later.
    gloo_timers::callback::Timeout::new(60_000, move || {
        let _ = web_sys::Url::revoke_object_url(&url);
    })
    .forget();
    Ok(())
}

/// Encodes an image as a PNG data URL.
pub fn png_url(rgb: &::image::RgbImage) -> Result<String> {
    let mut png = Vec::new();
    rgb.write_to(&mut std::io::Cursor::new(&mut png), ::image::ImageFormat::Png)
        .map_err(|e| Error::Image(e.to_string()))?;
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png)))
}

fn performance_now() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or(0.0)
}

/// Guidance while inverting a visitor's image: none, which inverts most faithfully (the CLI's default).
pub const INVERSION_GUIDANCE: f64 = 1.0;
/// Most memory decoding a visitor's image may take (it is resized to the model's size anyway).
const MAX_UPLOAD_DECODED_BYTES: u64 = 200 << 20;

/// A visitor's image, inverted to the noise that regenerates it (as `traverse invert`).
pub struct Inverted {
    /// The file's name.
    pub name: String,
    /// The noise `[1, C, h, w]` a run starts from.
    pub noise: Tensor<4>,
    /// How faithfully inverting and regenerating reproduces the image.
    pub reconstruction: Reconstruction,
}

/// The mean of a tensor's squared values, read back.
async fn mean_square(t: Tensor<4>) -> Result<f32> {
    Ok(read(t.powf_scalar(2.0).mean().reshape([1, 1, 1, 1])).await?.first().copied().unwrap_or(f32::NAN))
}

/// Inverts a visitor's image as `traverse invert` does: resized to the model's size, VAE-encoded, DDIM run
/// backwards with the neutral prompt (unguided) over the link's steps, then regenerated once to measure the
/// reconstruction. `status` sees each step; `None` when `stop` was set.
pub async fn invert_image(
    models: &Models<'_>,
    t: &Traversal,
    name: &str,
    bytes: &[u8],
    stop: &Cell<bool>,
    mut status: impl FnMut(String),
) -> Result<Option<Inverted>> {
    let sd = models.sd;
    let size = models.size(t);
    sd.latent_size(size, size)?;
    let rgb = crate::image::decode_limited(name, bytes, MAX_UPLOAD_DECODED_BYTES)?;
    let x = crate::image::rgb_to_tensor(&rgb, size, size, sd.device());
    let z0 = sd.vae.encode(x.clone());
    let mut inversion = Inversion::new(sd, z0.clone(), &t.neutral, &t.negative, t.steps, INVERSION_GUIDANCE)?;
    while !inversion.is_done() {
        if stop.get() {
            return Ok(None);
        }
        inversion.step()?;
        read(inversion.latent().clone().slice([0..1, 0..1, 0..1, 0..1])).await?;
        let (done, all) = inversion.progress();
        status(format!("Inverting {name}: step {done} of {all}"));
        next_frame().await;
    }
    let noise = inversion.latent().clone();
    let settings = SwapSettings { steps: t.steps, guidance: INVERSION_GUIDANCE, swap_points: vec![], max_batch: 1 };
    let mut regen = SwapSampler::new(sd, noise.clone(), &t.neutral, &[], &t.negative, &settings)?;
    while !regen.is_done() {
        if stop.get() {
            return Ok(None);
        }
        regen.step()?;
        read(regen.trunk().clone().slice([0..1, 0..1, 0..1, 0..1])).await?;
        let (done, all) = regen.progress();
        status(format!("Checking the inversion of {name}: regenerating, step {done} of {all}"));
        next_frame().await;
    }
    let regen = regen.finish().neutral;
    let psnr = |mse: f32| 10.0 * (4.0f32 / mse.max(1e-12)).log10();
    let clamp = |x: Tensor<4>| x.clamp(-1.0, 1.0);
    let reconstruction = Reconstruction {
        latent_rms_error: mean_square(regen.clone() - z0.clone()).await?.sqrt(),
        image_psnr_db: psnr(mean_square(clamp(sd.vae.decode(regen)) - clamp(x.clone())).await?),
        vae_only_psnr_db: psnr(mean_square(clamp(sd.vae.decode(z0)) - clamp(x)).await?),
    };
    Ok(Some(Inverted { name: name.to_string(), noise, reconstruction }))
}

/// What a run tells the page as it goes.
pub enum Progress {
    /// `done` of the DDIM steps have run.
    Step(usize),
    /// A preview of a latent's predicted clean image (a PNG data URL at latent resolution).
    Preview(Lane, String),
    /// The VAE's image of a latent, with its classifier readout.
    Image(Lane, Picture),
}

/// Runs the prompt swap for `t`, telling `progress` each step, each latent's preview after it and each final
/// image as it is decoded. Returns `None` when `stop` was set: the run ends at the next step or image.
/// A run from a visitor's own image starts from the noise `from` holds (see [`invert_image`]) instead of
/// the seed's.
pub async fn run(
    models: &Models<'_>,
    t: &Traversal,
    from: Option<&Inverted>,
    stop: &Cell<bool>,
    mut progress: impl FnMut(Progress),
) -> Result<Option<Run>> {
    let start = performance_now();
    let sd = models.sd;
    let size = models.size(t);
    let [h, w] = sd.latent_size(size, size)?;
    let init = match from {
        Some(inverted) => inverted.noise.clone(),
        None => initial_latents(t.seed, sd.unet_config.in_channels, h, w, sd.device()),
    };
    let plan = models.plan(size, t.guidance > 1.0)?;
    let settings = SwapSettings {
        steps: t.steps,
        guidance: t.guidance,
        swap_points: t.swap_points.clone(),
        max_batch: plan.unet_batch.min(16),
    };
    let mut sampler = SwapSampler::new(sd, init, &t.neutral, &t.styles, &t.negative, &settings)?;
    while !sampler.is_done() {
        if stop.get() {
            return Ok(None);
        }
        sampler.step()?;
        // Reading the previews back paces the queue, so progress is real and the page stays responsive.
        let previews = models.previews(sampler.denoised()).await?;
        progress(Progress::Step(sampler.progress().0));
        for (lane, url) in previews {
            progress(Progress::Preview(lane, url));
        }
        next_frame().await;
    }
    let res = sampler.finish();
    let denoise_seconds = (performance_now() - start) / 1000.0;
    let neutral_image = sd.vae.decode(res.neutral.clone());
    let neutral = models.describe(neutral_image.clone(), None).await?.remove(0);
    progress(Progress::Image(Lane::Trunk, neutral.clone()));
    let mut swaps = Vec::new();
    for (style, tr) in res.trajectories.iter().enumerate() {
        if stop.get() {
            return Ok(None);
        }
        let each = &mut |swap, p: &Picture| progress(Progress::Image(Lane::Branch { style, swap }, p.clone()));
        swaps.push(models.pictures(tr.latents.clone(), Some(&neutral_image), each).await?);
    }
    let z0 = read(res.neutral.clone()).await?;
    let mut flat = Vec::new();
    for tr in &res.trajectories {
        let mut zs = Vec::new();
        for z in &tr.latents {
            zs.push(read(z.clone()).await?);
        }
        flat.push(zs);
    }
    let labels = models.classifier.map(|c| c.config.labels.clone()).unwrap_or_default();
    let edits: Vec<Vec<Vec<f32>>> = swaps.iter().map(|row| row.iter().map(|p| p.probs.clone()).collect()).collect();
    let readouts = readouts(&labels, &t.neutral, &t.styles, &neutral.probs, &edits, &z0, &flat)?;
    let map = latent_map(&z0, &flat, &res.swap_points, t.seed)?;
    let latents = res
        .trajectories
        .iter()
        .map(|tr| std::iter::once(res.neutral.clone()).chain(tr.latents.iter().cloned()).collect())
        .collect();
    let outcome = Outcome {
        traversal: t.clone(),
        neutral,
        swaps,
        readouts,
        map,
        labels,
        seconds: (performance_now() - start) / 1000.0,
        denoise_seconds,
        unet: (res.unet_evaluations, res.unet_batches),
        source: from.map(|i| (i.name.clone(), i.reconstruction)),
    };
    let origin = from.map(|i| (i.name.clone(), i.reconstruction, i.noise.clone()));
    Ok(Some(Run { outcome, settings, origin, latents, neutral_image, curves: HashMap::new(), frames: HashMap::new() }))
}

impl Run {
    /// The run as the CLI's `generate` (or, from the visitor's image, `invert`) would write it, in one zip: `neutral.png`, `style{k}_t{t}.png`,
    /// `sheet.png`, `latents.safetensors` and `manifest.json` (so `traverse interpolate` reads its latents),
    /// plus `figures` (name, contents), e.g. the page's SVG figures. `load_s` is the model's load time.
    pub async fn archive(&self, models: &Models<'_>, load_s: f64, figures: Vec<(String, Vec<u8>)>) -> Result<Vec<u8>> {
        let (o, sd) = (&self.outcome, models.sd);
        let t = &o.traversal;
        let size = models.size(t);
        let [h, w] = sd.latent_size(size, size)?;
        let init = match &self.origin {
            Some((_, _, noise)) => noise.clone(),
            None => initial_latents(t.seed, sd.unet_config.in_channels, h, w, sd.device()),
        };
        let mut named = vec![("init".to_string(), init)];
        named.extend(self.latents.first().map(|row| ("neutral".to_string(), row[0].clone())));
        for (k, row) in self.latents.iter().enumerate() {
            named.extend(t.swap_points.iter().zip(&row[1..]).map(|(&p, z)| (output::latent_name(k, p), z.clone())));
        }
        let mut tensors = Vec::with_capacity(named.len());
        for (name, z) in named {
            let dims = z.dims().to_vec();
            tensors.push((name, dims, read(z).await?));
        }
        let meta = output::latents_metadata(&t.neutral, &t.styles, &t.swap_points)?;
        let latents = output::latents_bytes(tensors, meta)?;

        let mut files = Vec::new();
        let mut rows = Vec::new();
        let pictures =
            std::iter::once(("neutral".to_string(), &o.neutral)).chain(o.swaps.iter().enumerate().flat_map(
                |(k, row)| t.swap_points.iter().zip(row).map(move |(&p, pic)| (output::latent_name(k, p), pic)),
            ));
        for (name, picture) in pictures {
            files.push((output::image_file(&name), png_bytes(&picture.url)?));
        }
        let decoded = files
            .iter()
            .map(|(_, png)| {
                ::image::load_from_memory(png).map(|i| i.to_rgb8()).map_err(|e| Error::Image(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        // One row per style, the neutral image first, as the CLI's sheet.
        for k in 0..t.styles.len() {
            rows.push(decoded[0].clone());
            rows.extend(decoded[1 + k * t.swap_points.len()..1 + (k + 1) * t.swap_points.len()].iter().cloned());
        }
        let sheet = crate::image::contact_sheet(&rows, t.swap_points.len() + 1);
        let mut sheet_png = Vec::new();
        sheet
            .write_to(&mut std::io::Cursor::new(&mut sheet_png), ::image::ImageFormat::Png)
            .map_err(|e| Error::Image(e.to_string()))?;
        let record = output::RunRecord {
            swap_points: t.swap_points.clone(),
            unet_evaluations: o.unet.0,
            unet_batches: o.unet.1,
            images: files.iter().map(|(f, _)| f.clone()).collect(),
        };
        let (command, origin) = match &self.origin {
            Some((name, reconstruction, _)) => (
                "invert",
                output::Origin::Inverted {
                    image: name.clone(),
                    inversion_guidance: INVERSION_GUIDANCE,
                    reconstruction: *reconstruction,
                },
            ),
            None => {
                ("generate", output::Origin::Noise { seed: Some(t.seed), init_latents: None, noise: crate::rng::NOISE })
            }
        };
        let manifest = output::RunManifest::new(
            command,
            &t.model,
            None,
            origin,
            [size, size],
            sd,
            &self.settings,
            (&t.neutral, &t.styles, &t.negative),
            record,
            output::Timings { load: load_s, sample: o.denoise_seconds, decode: o.seconds - o.denoise_seconds },
        );
        let manifest = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::arg(format!("manifest: {e}")))?;
        files.push(("sheet.png".into(), sheet_png));
        files.push(("latents.safetensors".into(), latents));
        files.push(("manifest.json".into(), manifest));
        files.extend(figures);
        output::zip(&files)
    }

    /// Frame `frame` of style `style`'s Bézier traversal (control points as the paper: both ends kept, the
    /// rest spread by index), decoded on first request.
    pub async fn frame(&mut self, models: &Models<'_>, style: usize, frame: usize) -> Result<Picture> {
        if let Some(p) = self.frames.get(&(style, frame)) {
            return Ok(p.clone());
        }
        let all = self.latents.get(style).ok_or_else(|| Error::arg(format!("no style {style}")))?;
        if !self.curves.contains_key(&style) {
            let idx = crate::bezier::control_indices(all.len(), self.outcome.traversal.controls)?;
            let controls: Vec<Tensor<4>> = idx.iter().map(|&i| all[i].clone()).collect();
            self.curves.insert(style, crate::bezier::interpolate(&controls, self.outcome.traversal.samples)?);
        }
        let latent = self.curves[&style].get(frame).cloned().ok_or_else(|| {
            Error::arg(format!("frame {frame} is past the {} samples", self.outcome.traversal.samples))
        })?;
        let p = models.pictures(vec![latent], Some(&self.neutral_image), &mut |_, _| ()).await?.remove(0);
        self.frames.insert((style, frame), p.clone());
        Ok(p)
    }
}

/// Runs the page's benchmark ([`crate::app::bench`]): loads `settings.model`, then times guided U-Net calls
/// and one decode at the asked size, each read back so the GPU has finished it. `status` sees the progress.
pub async fn bench(gpu: &Gpu, settings: &BenchSettings, mut status: impl FnMut(String)) -> Result<BenchReport> {
    let start = performance_now();
    let seconds = |since: f64| (performance_now() - since) / 1000.0;
    let sd = load_model(&settings.model, gpu, &mut status).await?;
    let planned_bytes = [
        Storage::Int8.planned_bytes(&sd.text_encoder),
        Storage::Int8.planned_bytes(&sd.unet),
        Storage::Int8.planned_bytes(&sd.vae),
    ]
    .iter()
    .sum();
    let size = settings.size.unwrap_or(sd.default_image_size());
    let [h, w] = sd.latent_size(size, size)?;
    let cond = sd.embed(bench::PROMPT)?;
    let uncond = sd.embed("")?;
    read(cond.clone()).await?;
    let load_s = seconds(start);
    let latents = initial_latents(bench::SEED, sd.unet_config.in_channels, h, w, &gpu.device);
    let mut times = Vec::new();
    let mut output = Vec::new();
    for call in 0..=settings.calls {
        status(format!("Guided U-Net call {} of {} at {size}×{size} px …", call + 1, settings.calls + 1));
        next_frame().await;
        let t = performance_now();
        let prediction = read(sd.unet.guided(latents.clone(), cond.clone(), &uncond, 981, 7.5)).await?;
        times.push(seconds(t));
        if call == 0 {
            output = prediction;
        }
    }
    status("Decoding one image …".into());
    next_frame().await;
    let t = performance_now();
    read(sd.vae.decode(latents.clone())).await?;
    let decode_s = seconds(t);
    let trajectory = match settings.trajectory {
        0 => None,
        steps => Some(bench_trajectory(&sd, gpu, latents, size, steps, &mut status).await?),
    };
    let wasm_bytes = wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .map(|m| m.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as u64)
        .unwrap_or(0);
    Ok(BenchReport {
        adapter: gpu.adapter.clone(),
        precision: gpu.precision,
        precision_note: gpu.precision_note.clone(),
        size,
        latent: h,
        load_s,
        first_call_s: times[0],
        call_flops: 2 * sd.unet_config.flops([h, w], sd.tokenizer.max_length())?,
        calls_s: times[1..].to_vec(),
        decode_s,
        trajectory,
        planned_bytes,
        weight_bytes: sd.device_bytes(),
        reserved_bytes: gpu.device.memory_pool_usage().map(|u| u.bytes_reserved),
        wasm_bytes,
        output,
    })
}

/// Times one prompt-swap trajectory from `init` as the page runs it (every step read back, as its previews
/// are), then the decoding of its images in the plan's batches.
async fn bench_trajectory(
    sd: &StableDiffusion,
    gpu: &Gpu,
    init: Tensor<4>,
    size: usize,
    steps: usize,
    status: &mut impl FnMut(String),
) -> Result<TrajectoryTiming> {
    let plan = sd.plan([size, size], true, gpu.max_binding)?;
    let settings = SwapSettings {
        steps,
        guidance: 7.5,
        swap_points: bench::swap_points(steps),
        max_batch: plan.unet_batch.min(16),
    };
    let start = performance_now();
    let mut sampler = SwapSampler::new(sd, init, bench::NEUTRAL_PROMPT, &[bench::PROMPT.to_string()], "", &settings)?;
    while !sampler.is_done() {
        sampler.step()?;
        read(sampler.trunk().clone()).await?;
        status(format!("Prompt-swap trajectory: step {} of {steps} …", sampler.progress().0));
        next_frame().await;
    }
    let run = sampler.finish();
    let sample_s = (performance_now() - start) / 1000.0;
    status("Decoding the trajectory's images …".into());
    next_frame().await;
    let start = performance_now();
    let latents: Vec<Tensor<4>> =
        std::iter::once(run.neutral).chain(run.trajectories.into_iter().flat_map(|t| t.latents)).collect();
    let per_decode = sd.plan([size, size], false, gpu.max_binding)?.decode_batch.max(1);
    for chunk in latents.chunks(per_decode) {
        read(sd.vae.decode(Tensor::cat(chunk.to_vec(), 0))).await?;
    }
    Ok(TrajectoryTiming {
        steps,
        swap_points: run.swap_points,
        evaluations: run.unet_evaluations,
        batches: run.unet_batches,
        sample_s,
        images: latents.len(),
        decode_s: (performance_now() - start) / 1000.0,
    })
}
