//! One error type for the whole library: every failure at the library boundary is a value, never a panic.

use std::path::PathBuf;

/// Everything that can go wrong while loading models or running the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A `config.json` (or other JSON file) is malformed or describes an unsupported model.
    #[error("invalid config {what}: {message}")]
    Config {
        /// Which file or model the config belongs to.
        what: String,
        /// What is wrong with it.
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
    /// An image could not be read or written.
    #[error("image error: {0}")]
    Image(String),
    /// A file could not be fetched over the network (browser).
    #[error("cannot fetch {url}: {message}")]
    Fetch {
        /// What was asked for.
        url: String,
        /// Why it failed.
        message: String,
    },
    /// The compute device failed (e.g. a lost GPU device).
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
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;
