//! The U-Net's stage, the paper's: the U-Net learns the diffusion loss on the frozen autoencoder's latents
//! and the frozen text encoder's embeddings.

use burn::optim::AdamWConfig;
use burn::prelude::*;
use rand::distr::Distribution as _;
use rand::distr::weighted::WeightedIndex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::checkpoint::{After, Checkpoint, Saves};
use super::data::LatentDataset;
// burn's `Config` derive expands to bare `Result`/`Error`, so ours are named by path here.

/// U-Net training settings (the paper's stage: the U-Net learns while the VAE and text encoder are frozen).
#[derive(Config, Debug)]
pub struct UnetTraining {
    /// Total optimizer steps (a resumed run continues up to this).
    pub steps: usize,
    /// Latents per step.
    pub batch: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Probability of training a sample with the empty caption, so classifier-free guidance works.
    #[config(default = 0.1)]
    pub uncond_probability: f64,
    /// How strongly rare captions are oversampled: each latent is drawn with weight (its caption's count)^-b,
    /// so 0 draws every latent alike and 1 every caption of a group alike, each caption group keeping its share
    /// ([`LatentDataset::caption_balanced_weights`]).
    #[config(default = 0.0)]
    pub caption_balance: f64,
    /// Share of the draws given to each caption group (phantom family), summing to 1: a family whose attribute
    /// is learnt slowly can be shown more often. `None` keeps each group's share of the data.
    pub group_shares: Option<Vec<f64>>,
    /// Seed of batch order, timesteps, noise and weights.
    pub seed: u64,
    /// Save the model every this many steps.
    pub checkpoint_every: usize,
    /// The optimizer.
    #[config(default = "AdamWConfig::new().with_weight_decay(1e-2)")]
    pub optimizer: AdamWConfig,
}

/// Trains the U-Net with the standard diffusion loss (noise a latent to a random training timestep with the
/// scheduler's ᾱ, predict the noise, or v, from the caption's embedding, mean squared error),
/// checkpointing to (and resuming from) the diffusers folder `saves.dir`; stops at a save once
/// `saves.deadline` has passed.
pub fn train_unet(
    config: &crate::unet::UNet2DConditionConfig,
    scheduler: &crate::scheduler::DdimConfig,
    data: &LatentDataset,
    settings: &UnetTraining,
    device: &Device,
    saves: Saves<'_>,
    mut log: impl FnMut(usize, f32),
) -> crate::Result<crate::unet::UNet2DConditionModel> {
    use crate::scheduler::PredictionType;
    if settings.batch == 0 || !(0.0..=1.0).contains(&settings.uncond_probability) {
        return Err(crate::Error::arg("the U-Net needs a batch ≥ 1 and an uncond_probability in 0..=1"));
    }
    // Unbalanced runs keep the plain uniform draw, so they repeat the batches of runs made before the options.
    let balanced = if settings.caption_balance == 0.0 && settings.group_shares.is_none() {
        None
    } else {
        let weights = data.caption_balanced_weights(settings.caption_balance, settings.group_shares.as_deref())?;
        Some(WeightedIndex::new(weights).map_err(|e| crate::Error::arg(format!("caption weights: {e}")))?)
    };
    let alphas = scheduler.alphas_cumprod()?;
    let train_device = device.clone().autodiff();
    train_device.seed(settings.seed);
    let mut model = config.init(&train_device)?;
    let mut optim = settings.optimizer.init();
    let (mut ckpt, start) = Checkpoint::diffusers(
        saves.dir,
        "UNet2DConditionModel",
        config,
        &mut model,
        &mut optim,
        &crate::unet::NAMES,
        crate::unet::EXPORT_NAMES,
        settings,
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ start as u64);
    let b = settings.batch;
    for step in start..settings.steps {
        let picks: Vec<usize> = (0..b)
            .map(|_| match &balanced {
                Some(weights) => weights.sample(&mut rng),
                None => rng.random_range(0..data.len()),
            })
            .collect();
        let ts: Vec<usize> = (0..b).map(|_| rng.random_range(0..alphas.len())).collect();
        let (x0, ctx) = data.batch(&picks, settings.uncond_probability, &mut rng, &train_device);
        let coef = |f: fn(f64) -> f64| {
            let v: Vec<f32> = ts.iter().map(|&t| f(alphas[t]) as f32).collect();
            Tensor::<4>::from_data(TensorData::new(v, [b, 1, 1, 1]), &train_device)
        };
        let (a, s) = (coef(|x| x.sqrt()), coef(|x| (1.0 - x).sqrt()));
        let eps = x0.random_like(burn::tensor::Distribution::Normal(0.0, 1.0));
        let noisy = x0.clone() * a.clone() + eps.clone() * s.clone();
        let target = match scheduler.prediction_type {
            PredictionType::Epsilon => eps,
            PredictionType::VPrediction => eps * a - x0 * s,
            PredictionType::Sample => x0,
        };
        let t: Vec<f32> = ts.iter().map(|&t| t as f32).collect();
        let loss = (model.forward_timesteps(noisy, &t, &ctx) - target).powf_scalar(2.0).mean();
        let value = loss.clone().into_scalar::<f32>();
        model = super::descend(model, &mut optim, loss, super::decayed(settings.learning_rate, step, settings.steps));
        log(step, value);
        if ckpt.after_step(&model, &optim, step, value, settings.steps, settings.checkpoint_every, saves.deadline)?
            == After::Stop
        {
            break;
        }
    }
    Ok(model.valid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unet_trains_and_checkpoints_as_a_diffusers_folder() {
        let device = Device::flex();
        let json = r#"{"block_out_channels": [8, 16], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "layers_per_block": 1, "norm_num_groups": 4,
            "cross_attention_dim": 8, "attention_head_dim": 2, "sample_size": 4}"#;
        let config = crate::unet::UNet2DConditionConfig::from_json(json).unwrap();
        let mut r = ChaCha8Rng::seed_from_u64(3);
        let mut noise = |n: usize| (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect::<Vec<_>>();
        let samples = (0..4).map(|i| (noise(64), i % 2)).collect();
        let (captions, uncond) = (vec![noise(77 * 8), noise(77 * 8)], noise(77 * 8));
        let data = LatentDataset::new(samples, [4, 4, 4], captions, vec![0, 0], uncond, [77, 8]).unwrap();
        let dir = std::env::temp_dir().join(format!("traverse-unet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let scheduler = crate::scheduler::DdimConfig::default();
        let mut settings = UnetTraining::new(2, 2, 1e-3, 1, 1);
        train_unet(&config, &scheduler, &data, &settings, &device, Saves::to(&dir), |_, _| {}).unwrap();
        settings.steps = 3;
        let mut steps = vec![];
        settings.caption_balance = 0.5;
        let model =
            train_unet(&config, &scheduler, &data, &settings, &device, Saves::to(&dir), |s, _| steps.push(s)).unwrap();
        assert_eq!(steps, vec![2], "the second run resumes at step 2, and may change the caption balance");
        let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let mut loaded = crate::unet::UNet2DConditionConfig::from_json(&json).unwrap().init(&device).unwrap();
        let file = crate::weights::WeightFile::Path(dir.join("diffusion_pytorch_model.safetensors"));
        crate::weights::load_into(&mut loaded, "unet", vec![file], &crate::unet::NAMES).unwrap();
        let x = Tensor::<4>::ones([1, 4, 4, 4], &device);
        let ctx = Tensor::<3>::ones([1, 77, 8], &device);
        let a = model.forward(x.clone(), 500.0, &ctx).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let b = loaded.forward(x, 500.0, &ctx).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(a, b);
        let _ = std::fs::remove_dir_all(dir);
    }
}
