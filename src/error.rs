//! One error type for the whole library: every failure at the library boundary is a value, never a panic.

use std::path::PathBuf;

/// Everything that can go wrong while loading models or running the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A file a model folder must have is not there (on disk or among the files a page fetched).
    #[error("cannot read {0}: no such file")]
    Missing(String),
    /// A `config.json` (or other JSON file) is malformed or describes an unsupported model.
    #[error("invalid config {what}: {message}")]
    Config {
        /// Which file or model the config belongs to.
        what: String,
        /// What is wrong with it, naming the field.
        message: String,
    },
    /// A safetensors file is malformed, truncated or hostile.
    #[error("invalid safetensors file {what}: {message}")]
    Safetensors {
        /// The file.
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// The weights do not fit the model that the config describes.
    #[error("weights of {model} do not match its config:{details}")]
    WeightMismatch {
        /// The model (text_encoder, unet, vae).
        model: String,
        /// One line per missing, unexpected or mis-shaped tensor.
        details: String,
    },
    /// The tokenizer files are missing or malformed.
    #[error("invalid tokenizer: {0}")]
    Tokenizer(String),
    /// An argument (prompt, step count, swap point, image size, ...) is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A computation gave no usable numbers (e.g. a t-SNE map that diverged).
    #[error("numerical failure: {0}")]
    Numeric(String),
    /// A tensor could not be read back from the device as f32 values.
    #[error("cannot read a tensor back: {0}")]
    Tensor(String),
    /// An image could not be decoded, encoded or written.
    #[error("image error: {0}")]
    Image(String),
    /// A plot could not be drawn or written.
    #[error("plot error: {0}")]
    Plot(String),
    /// A training checkpoint is inconsistent or corrupt; the message says how to resume.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A file could not be fetched over the network (browser).
    #[error("cannot fetch {url}: {message}")]
    Fetch {
        /// What was asked for.
        url: String,
        /// Why it failed.
        message: String,
    },
    /// The compute device failed or is unsuitable (no WebGPU, a lost device, a buffer over its limits).
    #[error("device error: {0}")]
    Device(String),
}

impl Error {
    pub(crate) fn config(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Config { what: what.into(), message: message.to_string() }
    }
    /// An [`Error::InvalidArgument`].
    pub fn arg(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }
    /// An [`Error::Io`] on `path`, for `map_err`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// The most layers a model config may ask for, counted as its `init` builds them (resnets, transformer
/// layers, encoder layers). Far above any Stable Diffusion model (SD 1.5's U-Net counts under a hundred, CLIP
/// ViT-bigG has 32 layers), and low enough that a hostile config cannot make the lazy model's bookkeeping
/// allocate without bound before its weights are even read.
pub(crate) const MAX_LAYERS: usize = 4096;

/// Refuses a config that asks for more than [`MAX_LAYERS`] layers (`count` computed saturating).
pub(crate) fn check_layers(what: &str, field: &str, count: usize) -> Result<()> {
    if count > MAX_LAYERS {
        return Err(Error::config(
            what,
            format!("{field} asks for {count} layers, more than the {MAX_LAYERS} supported"),
        ));
    }
    Ok(())
}

/// Refuses a normalization epsilon that is negative or not finite (it would turn every image into NaN).
pub(crate) fn check_eps(what: &str, field: &str, eps: f64) -> Result<()> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::config(what, format!("{field} {eps} must be a finite number ≥ 0")));
    }
    Ok(())
}

/// Parses a JSON config, naming the field that is wrong (`down_block_types[2]: unknown variant …`).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." { Error::config(what, inner) } else { Error::config(what, format!("{path}: {inner}")) }
    })
}
