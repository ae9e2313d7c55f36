//! # Traverse
//!
//! Attribute traversals of a fine-tuned Stable Diffusion by prompt swapping (see the README and
//! `shared/seed-paper.txt`). Data flows prompt → embedding → latents → trajectory → metrics → view:
//!
//! - [`tokenizer`], [`clip`]: prompt → text embedding.
//! - [`unet`], [`scheduler`], [`rng`]: noise → latents by guided DDIM.
//! - [`swap`]: the paper's prompt-swap trajectories ([`prompt_edit`]: `[from:to:when]` onto them); [`invert`]:
//!   real images in.
//! - [`bezier`]: smooth traversal through a trajectory's latents; [`metrics`]: CFRT, direction cosines, t-SNE
//!   and image distances; [`lpips`]: perceptual distance; [`classifier`]: the attribute classifiers.
//! - [`vae`]: latents ↔ images ([`preview`]: a cheap linear look at a latent); [`pipeline`]: loading a diffusers folder and running it all.
//! - [`synthetic`]: chest X-ray and dermoscopy phantoms with known content and attributes.
//! - [`evaluate`]: the paper's Table 2 and Figs. 4-5 on a model with attribute classifiers; [`output`]: what a
//!   run writes; [`plot`]: its figures; [`train`]: training on the phantoms.
//! - [`app`]: the browser page (links, built-in examples, readouts; the WebGPU engine and the view on wasm32).
//!
//! The layers point one way (`tests/layers.rs` checks it): [`error`], [`files`], [`readback`] and the
//! safetensors [`codec`] at the bottom, then [`quantize`] (int8) and [`weights`] (burn-store), the models, the
//! [`pipeline`] and samplers, then [`evaluate`], [`output`] and [`plot`], and [`app`] and [`train`] on top. One
//! model definition serves the CLI, the tests and the browser (burn's runtime `Device`).

pub mod app;
pub mod bezier;
pub mod classifier;
pub mod clip;
pub mod codec;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod evaluate;
#[cfg(not(target_arch = "wasm32"))]
pub mod files;
pub mod image;
pub mod invert;
pub mod lpips;
pub mod metrics;
pub mod nn;
pub mod output;
pub mod pipeline;
#[cfg(all(feature = "plot", not(target_arch = "wasm32")))]
pub mod plot;
pub mod preview;
pub mod prompt_edit;
pub mod quantize;
pub mod readback;
pub mod rng;
pub mod scheduler;
pub mod swap;
pub mod synthetic;
pub mod tokenizer;
#[cfg(all(feature = "train", not(target_arch = "wasm32")))]
pub mod train;
pub mod unet;
pub mod vae;
pub mod weights;

pub use error::{Error, Result};
