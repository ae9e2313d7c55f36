//! The autoencoder's stage: an AutoencoderKL trained on random crops of the phantoms with an L1 + MSE
//! reconstruction loss, an edge loss and a small KL term, then optionally its decoder alone (the latents stay).

use burn::optim::AdamWConfig;
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::checkpoint::{After, Checkpoint, Saves};
use super::data::CaptionedImages;
// burn's `Config` derive expands to bare `Result`/`Error`, so ours are named by path here.

/// Autoencoder training settings.
#[derive(Config, Debug)]
pub struct VaeTraining {
    /// Total optimizer steps (a resumed run continues up to this).
    pub steps: usize,
    /// Images per step.
    pub batch: usize,
    /// Side of the random square crop each image is trained on (the autoencoder is convolutional, so crops
    /// teach it the same mapping at a fraction of the cost; the image size trains on whole images).
    pub crop: usize,
    /// AdamW learning rate (decaying over the last quarter of each phase).
    #[config(default = 4e-4)]
    pub learning_rate: f64,
    /// Weight of the KL term against the pixel loss, both summed (SD's VAE: 1e-6).
    #[config(default = 1e-6)]
    pub kl_weight: f64,
    /// Weight of an L1 loss on the reconstruction error's horizontal and vertical differences: it penalizes
    /// blurred edges, which plain L1 + MSE barely notices on one- or two-pixel lines (hair, ink, tubes).
    pub edge_weight: f64,
    /// Steps after `steps` that fine-tune the decoder alone, as Stability's ft-MSE decoder was: the encoder
    /// and so the latents stay as they are, and a U-Net trained on them stays valid.
    pub decoder_steps: usize,
    /// In the decoder steps, extra weight of the pixels an attribute changes (thin hair, ink, bubbles and
    /// rulers cover a few percent of an image, so an unweighted loss spends little on them).
    pub attribute_weight: f64,
    /// Seed of batch order, weights and sampling noise.
    pub seed: u64,
    /// Save the model every this many steps.
    pub checkpoint_every: usize,
    /// The optimizer.
    #[config(default = "AdamWConfig::new().with_weight_decay(0.0)")]
    pub optimizer: AdamWConfig,
}

/// Trains an AutoencoderKL on `pool` (`[3, size, size]` images) with an L1 + MSE reconstruction loss and a
/// small KL term, checkpointing to (and resuming from) the diffusers folder `saves.dir`; stops at a save once
/// `saves.deadline` has passed.
pub fn train_vae(
    config: &crate::vae::AutoencoderKLConfig,
    pool: &CaptionedImages,
    settings: &VaeTraining,
    device: &Device,
    saves: Saves<'_>,
    mut log: impl FnMut(usize, f32),
) -> crate::Result<crate::vae::AutoencoderKL> {
    let (size, images) = (pool.size(), pool.images());
    if images.is_empty() || settings.batch == 0 || settings.crop == 0 || settings.crop > size {
        return Err(crate::Error::arg(format!(
            "the autoencoder needs images, a batch ≥ 1 and a crop in 1..={size} (got {} images, batch {}, crop {})",
            images.len(),
            settings.batch,
            settings.crop
        )));
    }
    let train_device = device.clone().autodiff();
    train_device.seed(settings.seed);
    let mut model = config.init(&train_device)?;
    let mut optim = settings.optimizer.init();
    let (mut ckpt, start) = Checkpoint::diffusers(
        saves.dir,
        "AutoencoderKL",
        config,
        &mut model,
        &mut optim,
        &crate::vae::NAMES,
        crate::vae::EXPORT_NAMES,
        settings,
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ start as u64);
    let crop = settings.crop;
    let plane = 3 * crop * crop;
    let total = settings.steps + settings.decoder_steps;
    for step in start..total {
        let decoder_only = step >= settings.steps;
        let mut x = Vec::with_capacity(settings.batch * plane);
        let mut mask = Vec::with_capacity(settings.batch * crop * crop);
        for _ in 0..settings.batch {
            let i = rng.random_range(0..images.len());
            let (image, m) = (&images[i].pixels, &images[i].attribute_mask);
            let (top, left) = (rng.random_range(0..=size - crop), rng.random_range(0..=size - crop));
            for c in 0..3 {
                for y in top..top + crop {
                    let row = (c * size + y) * size + left;
                    x.extend_from_slice(&image[row..row + crop]);
                }
            }
            for y in top..top + crop {
                mask.extend_from_slice(&m[y * size + left..y * size + left + crop]);
            }
        }
        let x = Tensor::<4>::from_data(TensorData::new(x, [settings.batch, 3, crop, crop]), &train_device);
        // Decoder steps encode outside autodiff (an unused encoder graph would be kept, step after step),
        // so no gradient reaches the encoder and it, and every latent, stays as trained.
        let encoder = if decoder_only { Some(model.clone().valid()) } else { None };
        let (mean, logvar) = match &encoder {
            Some(e) => {
                let (m, l) = e.encode_distribution(x.clone().without_autodiff());
                (m.autodiff(), l.autodiff())
            }
            None => model.encode_distribution(x.clone()),
        };
        let eps = mean.random_like(burn::tensor::Distribution::Normal(0.0, 1.0));
        let weights = decoder_only.then(|| {
            let m = Tensor::<4>::from_data(TensorData::new(mask, [settings.batch, 1, crop, crop]), &train_device);
            m * settings.attribute_weight + 1.0
        });
        let (loss, rec) = autoencoder_loss(&model, x, (mean, logvar), eps, weights, settings);
        // The logged loss stays the unweighted L1 + MSE, comparable across runs and stages.
        let value = rec.into_scalar::<f32>();
        let lr = if decoder_only {
            super::decayed(settings.learning_rate, step - settings.steps, settings.decoder_steps)
        } else {
            super::decayed(settings.learning_rate, step, settings.steps)
        };
        model = super::descend(model, &mut optim, loss, lr);
        log(step, value);
        if ckpt.after_step(&model, &optim, step, value, total, settings.checkpoint_every, saves.deadline)?
            == After::Stop
        {
            break;
        }
    }
    Ok(model.valid())
}

/// The stage's loss on images `x` `[B, 3, H, W]` given their posterior (`mean`, `logvar`) and its noise `eps`:
/// the reconstruction's L1 + MSE, the KL term as SD weights it (on sums), and the edge loss. With
/// `pixel_weights` `[B, 1, H, W]` (the decoder steps) the pixel loss is weighted by them and the KL term left
/// out, since the encoder is fixed. Returns the loss and the unweighted L1 + MSE, which the log shows
/// (comparable across runs and stages).
pub fn autoencoder_loss(
    model: &crate::vae::AutoencoderKL,
    x: Tensor<4>,
    (mean, logvar): (Tensor<4>, Tensor<4>),
    eps: Tensor<4>,
    pixel_weights: Option<Tensor<4>>,
    settings: &VaeTraining,
) -> (Tensor<1>, Tensor<1>) {
    let [b, c, h, w] = x.dims();
    let latent_share = mean.dims()[1..].iter().product::<usize>() as f64 / (c * h * w) as f64;
    let z = mean.clone() + (logvar.clone() * 0.5).exp() * eps;
    let diff = model.decode_raw(z) - x;
    let per_pixel = diff.clone().abs() + diff.clone().powf_scalar(2.0);
    let rec = per_pixel.clone().mean();
    let mut loss = match pixel_weights {
        Some(w) => (per_pixel * w.clone()).mean() / w.mean(),
        None => {
            let kl = (mean.powf_scalar(2.0) + logvar.clone().exp() - logvar - 1.0).mean() * 0.5;
            // SD's weighting is on sums (pixel loss summed + kl_weight × KL summed over latent elements); with
            // both terms as means that is kl_weight × latent elements / pixel values, not a larger weight that
            // would push the posterior to the prior and erase fine detail from the latents.
            rec.clone() + kl * settings.kl_weight * latent_share
        }
    };
    if settings.edge_weight > 0.0 && h > 1 && w > 1 {
        let along = |dim: usize| {
            let (mut lo, mut hi) = ([0..b, 0..c, 0..h, 0..w], [0..b, 0..c, 0..h, 0..w]);
            let n = [b, c, h, w][dim];
            (lo[dim], hi[dim]) = (0..n - 1, 1..n);
            (diff.clone().slice(hi) - diff.clone().slice(lo)).abs().mean()
        };
        loss = loss + (along(2) + along(3)) * settings.edge_weight;
    }
    (loss, rec)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A two-block autoencoder small enough for unit tests.
    pub(crate) fn tiny_vae() -> crate::vae::AutoencoderKLConfig {
        use crate::vae::{DownEncoderBlockType, UpDecoderBlockType};
        crate::vae::AutoencoderKLConfig {
            block_out_channels: vec![8, 8],
            down_block_types: vec![DownEncoderBlockType::DownEncoderBlock2D; 2],
            up_block_types: vec![UpDecoderBlockType::UpDecoderBlock2D; 2],
            norm_num_groups: 4,
            ..Default::default()
        }
    }

    #[test]
    fn vae_checkpoints_are_diffusers_folders_and_resume() {
        let device = Device::flex();
        let config = tiny_vae();
        let pool = CaptionedImages::render(4, 3, 16);
        let dir = std::env::temp_dir().join(format!("traverse-vae-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut settings = VaeTraining::new(2, 2, 8, 1.0, 0, 10.0, 1, 1).with_learning_rate(1e-3);
        train_vae(&config, &pool, &settings, &device, Saves::to(&dir), |_, _| {}).unwrap();
        settings.steps = 3;
        let mut steps = vec![];
        let model = train_vae(&config, &pool, &settings, &device, Saves::to(&dir), |s, _| steps.push(s)).unwrap();
        assert_eq!(steps, vec![2], "the second run resumes at step 2");
        // The checkpoint loads through the diffusers-folder loader and decodes like the returned model.
        let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let mut loaded = crate::vae::AutoencoderKLConfig::from_json(&json).unwrap().init(&device).unwrap();
        let file = crate::weights::WeightFile::Path(dir.join("diffusion_pytorch_model.safetensors"));
        crate::weights::load_into(&mut loaded, "vae", vec![file], &crate::vae::NAMES).unwrap();
        let z = Tensor::<4>::ones([1, 4, 4, 4], &device);
        let a = model.decode_raw(z.clone()).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let b = loaded.decode_raw(z).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(a, b);

        // Decoder steps change the decoder only: the latents of an image stay bit-identical.
        let x = Tensor::<4>::from_data(TensorData::new(pool.images()[1].pixels.clone(), [1, 3, 16, 16]), &device);
        let latents = |m: &crate::vae::AutoencoderKL| {
            m.encode_distribution(x.clone()).0.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
        };
        settings.decoder_steps = 2;
        let mut steps = vec![];
        let tuned = train_vae(&config, &pool, &settings, &device, Saves::to(&dir), |s, _| steps.push(s)).unwrap();
        assert_eq!(steps, vec![3, 4]);
        assert_eq!(latents(&tuned), latents(&model));
        let c = tuned.decode_raw(Tensor::<4>::ones([1, 4, 4, 4], &device));
        assert_ne!(c.into_data().convert::<f32>().try_to_vec::<f32>().unwrap(), a, "the decoder learned");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_empty_pool_or_a_crop_past_the_images_is_an_error() {
        let device = Device::flex();
        let dir = std::env::temp_dir().join(format!("traverse-vae-bad-{}", std::process::id()));
        let pool = CaptionedImages::render(0, 3, 16);
        let settings = VaeTraining::new(2, 2, 8, 1.0, 0, 10.0, 1, 1);
        assert!(train_vae(&tiny_vae(), &pool, &settings, &device, Saves::to(&dir), |_, _| {}).is_err());
        let pool = CaptionedImages::render(2, 3, 16);
        let wide = VaeTraining { crop: 24, ..settings };
        assert!(train_vae(&tiny_vae(), &pool, &wide, &device, Saves::to(&dir), |_, _| {}).is_err());
        assert!(!dir.exists(), "nothing is written before the settings are checked");
    }
}
