//! Training on the phantoms with burn's autodiff, the same model code as inference: the attribute classifiers
//! ([`classifier`]), and the embedded model's stages, each resumable from its [`checkpoint`] and exported as
//! a diffusers folder: the contrastive text encoder ([`text_encoder`]), the autoencoder ([`vae`]) and the
//! U-Net ([`unet`]), run in order by the [`recipe`]. [`data`] renders what they learn from; [`blend`] mixes
//! two trained U-Nets. Every stage's settings are a burn `Config`, saved with each checkpoint.

pub mod blend;
pub mod checkpoint;
pub mod classifier;
pub mod data;
pub mod recipe;
pub mod text_encoder;
pub mod unet;
pub mod vae;

use burn::optim::GradientsParams;
use burn::prelude::*;

pub use blend::blend_unet;
pub use checkpoint::{Deadline, Saves};
pub use classifier::{ClassifierTraining, LabelScore, agreement, score, train_classifier};
pub use data::{CaptionedImages, LabeledImages, LatentDataset, Source};
pub use recipe::{Preset, Recipe, Trained, seed_from, train};
pub use text_encoder::{TextEncoderTraining, train_text_encoder};
pub use unet::{UnetTraining, train_unet};
pub use vae::{VaeTraining, autoencoder_loss, train_vae};

/// One optimizer step: backpropagates `loss` and updates `model` at learning rate `lr`.
fn descend<M: burn::module::Module>(model: M, optim: &mut burn::optim::ModuleOptimizer, loss: Tensor<1>, lr: f64) -> M {
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    optim.step(lr, model, grads)
}

/// Learning rate at `step` of a `steps`-step run: `lr`, then a linear decay to a tenth of it over the last
/// quarter (a function of the step alone, so a resumed run follows the same schedule).
fn decayed(lr: f64, step: usize, steps: usize) -> f64 {
    let tail = (steps as f64 * 0.25).max(1.0);
    let left = (steps.saturating_sub(step)) as f64 / tail;
    lr * (0.1 + 0.9 * left.min(1.0))
}

/// The JSON config of a diffusers model (`_class_name` added), as its `config.json` holds it.
fn diffusers_config(class_name: &str, config: &impl serde::Serialize) -> crate::Result<serde_json::Value> {
    let mut json = serde_json::to_value(config).map_err(|e| crate::Error::config(class_name, e))?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("_class_name".into(), class_name.into());
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rate_decays_over_the_last_quarter() {
        assert_eq!(decayed(1.0, 0, 100), 1.0);
        assert_eq!(decayed(1.0, 75, 100), 1.0);
        assert!((decayed(1.0, 90, 100) - 0.46).abs() < 1e-12);
        assert!((decayed(1.0, 100, 100) - 0.1).abs() < 1e-12);
        // Resuming to a longer run moves the decay to that run's end.
        assert_eq!(decayed(1.0, 90, 200), 1.0);
    }
}
