//! # Traverse
//!
//! Attribute traversals of a fine-tuned Stable Diffusion by prompt swapping (see the README and
//! `shared/seed-paper.txt`). Data flows prompt → embedding → latents → trajectory → metrics → view:
//!
//! - [`tokenizer`], [`clip`]: prompt → text embedding.
//! - [`unet`], [`scheduler`], [`rng`]: noise → latents by guided DDIM.
//! - [`swap`]: the paper's prompt-swap trajectories; [`invert`]: real images in.
//! - [`bezier`]: smooth traversal through a trajectory's latents; [`metrics`]: CFRT, direction cosines and
//!   t-SNE; [`lpips`]: perceptual distance; [`evaluate`]: the paper's Table 2 and Figs. 4-5 on a model with
//!   attribute classifiers.
//! - [`vae`]: latents ↔ images; [`pipeline`]: loading a diffusers folder and running it all.
//! - [`synthetic`]: chest X-ray and dermoscopy phantoms with known content and attributes.
//! - [`app`]: the browser page (links, built-in examples, readouts; the WebGPU engine and the view on wasm32).
//!
//! One model definition serves the CLI, the tests and the browser (burn's runtime `Device`).

pub mod app;
pub mod bezier;
pub mod classifier;
pub mod clip;
pub mod error;
pub mod evaluate;
pub mod image;
pub mod invert;
pub mod lpips;
pub mod metrics;
pub mod nn;
pub mod pipeline;
pub mod quantize;
#[cfg(all(feature = "train", not(target_arch = "wasm32")))]
pub mod recipe;
pub mod rng;
pub mod scheduler;
pub mod swap;
pub mod synthetic;
pub mod tokenizer;
#[cfg(feature = "train")]
pub mod train;
pub mod unet;
pub mod vae;
pub mod weights;

pub use error::{Error, Result};
