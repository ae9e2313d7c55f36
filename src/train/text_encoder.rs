//! The text encoder's stage: CLIP's contrastive objective on the phantoms' images and captions, as SD's
//! text encoder was trained, exported as a transformers `CLIPTextModel` folder.

use burn::optim::AdamWConfig;
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::checkpoint::{After, Checkpoint, Saves};
use super::data::CaptionedImages;
use crate::classifier::{AttributeClassifier, ClassifierConfig};
// burn's `Config` derive expands to bare `Result`/`Error`, so ours are named by path here.
use crate::weights::NameMap;

/// The contrastive pair is saved under our module paths.
const CONTRASTIVE_NAMES: NameMap = NameMap { remaps: &[], ignore: &[] };

/// CLIP's contrastive objective on phantoms, as SD's text encoder was trained: the text tower is the CLIP text
/// encoder the U-Net will read (pooled at the end-of-text token and projected), the image tower a small CNN.
#[derive(Module, Debug)]
pub struct ContrastiveClip {
    text: crate::clip::ClipTextModel,
    text_projection: burn::nn::Linear,
    image: AttributeClassifier,
    logit_scale: burn::module::Param<Tensor<1>>,
}

/// Text-encoder training settings.
#[derive(Config, Debug)]
pub struct TextEncoderTraining {
    /// Total optimizer steps (a resumed run continues up to this).
    pub steps: usize,
    /// Image–caption pairs per step.
    pub batch: usize,
    /// AdamW learning rate (constant).
    #[config(default = 5e-4)]
    pub learning_rate: f64,
    /// Width of the shared embedding space.
    #[config(default = 64)]
    pub projection_dim: usize,
    /// Channels of the image tower's stages (a [`ClassifierConfig`] network with one output per embedding
    /// dimension).
    #[config(default = "vec![8, 16, 32, 64, 64]")]
    pub image_widths: Vec<usize>,
    /// Seed of batch order and weights.
    pub seed: u64,
    /// Save every this many steps.
    pub checkpoint_every: usize,
    /// The optimizer.
    #[config(default = "AdamWConfig::new().with_weight_decay(1e-2)")]
    pub optimizer: AdamWConfig,
}

impl ContrastiveClip {
    /// L2-normalized text embeddings `[B, P]` of token ids `[B, L]`, pooled at each row's `eos` position.
    fn embed_text(&self, ids: &[Vec<u32>], eos: u32, device: &Device) -> Tensor<2> {
        let (b, l) = (ids.len(), ids[0].len());
        let flat: Vec<i64> = ids.iter().flat_map(|r| r.iter().map(|&i| i as i64)).collect();
        let hidden = self.text.forward(Tensor::from_data(TensorData::new(flat, [b, l]), device));
        let mask: Vec<f32> = ids
            .iter()
            .flat_map(|r| {
                let at = r.iter().position(|&i| i == eos).unwrap_or(l - 1);
                (0..l).map(move |j| (j == at) as u8 as f32)
            })
            .collect();
        let mask = Tensor::<3>::from_data(TensorData::new(mask, [b, l, 1]), device);
        let d = hidden.dims()[2];
        normalize(self.text_projection.forward((hidden * mask).sum_dim(1).reshape([b, d])))
    }
}

fn normalize(x: Tensor<2>) -> Tensor<2> {
    x.clone() / (x.powf_scalar(2.0).sum_dim(1).sqrt() + 1e-6)
}

/// Trains the text encoder contrastively against an image tower on `data`, checkpointing the whole
/// contrastive model (`contrastive.safetensors`, for resuming) and exporting the text encoder as a
/// transformers `text_encoder/` folder (`config.json`, `model.safetensors`) in `saves.dir`; stops at a save once
/// `saves.deadline` has passed.
pub fn train_text_encoder(
    config: &crate::clip::ClipTextConfig,
    tokenizer: &crate::tokenizer::ClipTokenizer,
    data: &CaptionedImages,
    settings: &TextEncoderTraining,
    device: &Device,
    saves: Saves<'_>,
    mut log: impl FnMut(usize, f32),
) -> crate::Result<crate::clip::ClipTextModel> {
    let token = |t: &str| tokenizer.token_id(t).ok_or_else(|| crate::Error::Tokenizer(format!("no {t} token")));
    let (bos, eos) = (token("<|startoftext|>")?, token("<|endoftext|>")?);
    let ids: Vec<Vec<u32>> = data.texts().iter().map(|(t, _)| tokenizer.encode(t)).collect::<crate::Result<_>>()?;
    if data.images().is_empty() || settings.batch < 2 {
        return Err(crate::Error::arg("need images and a batch of at least 2"));
    }
    let train_device = device.clone().autodiff();
    train_device.seed(settings.seed);
    let p = settings.projection_dim;
    let tower = ClassifierConfig {
        in_channels: 3,
        image_size: data.size(),
        widths: settings.image_widths.clone(),
        labels: (0..p).map(|i| format!("embedding_{i}")).collect(),
    };
    let mut model = ContrastiveClip {
        text: config.init(&train_device)?,
        text_projection: burn::nn::LinearConfig::new(config.hidden_size, p).with_bias(false).init(&train_device),
        image: tower.init(&train_device)?,
        logit_scale: burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![(1.0f32 / 0.07).ln()], [1]),
            &train_device,
        )),
    };
    let mut json = serde_json::to_value(config).map_err(|e| crate::Error::config("text_encoder", e))?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("architectures".into(), serde_json::json!(["CLIPTextModel"]));
        obj.insert("model_type".into(), "clip_text_model".into());
        // transformers checks these against the vocabulary (its defaults are CLIP's 49406/49407).
        obj.insert("bos_token_id".into(), bos.into());
        obj.insert("eos_token_id".into(), eos.into());
        obj.insert("pad_token_id".into(), eos.into());
    }
    let mut optim = settings.optimizer.init();
    let (mut ckpt, start) = Checkpoint::open(
        saves.dir,
        "contrastive.safetensors",
        &json,
        &mut model,
        &mut optim,
        &CONTRASTIVE_NAMES,
        &[],
        settings,
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ start as u64);
    let (b, size, images) = (settings.batch, data.size(), data.images());
    for step in start..settings.steps {
        let picks: Vec<usize> = (0..b).map(|_| rng.random_range(0..images.len())).collect();
        let x: Vec<f32> = picks.iter().flat_map(|&i| images[i].pixels.iter().copied()).collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [b, 3, size, size]), &train_device);
        let caps: Vec<usize> = picks.iter().map(|&i| images[i].caption).collect();
        let batch_ids: Vec<Vec<u32>> = caps.iter().map(|&c| ids[c].clone()).collect();
        // Several images share a caption: the target spreads over every matching pair.
        let targets: Vec<f32> = caps
            .iter()
            .flat_map(|&ci| {
                let n = caps.iter().filter(|&&cj| cj == ci).count() as f32;
                caps.iter().map(move |&cj| if cj == ci { 1.0 / n } else { 0.0 })
            })
            .collect();
        let targets = Tensor::<2>::from_data(TensorData::new(targets, [b, b]), &train_device);
        let image = normalize(model.image.forward(x));
        let text = model.embed_text(&batch_ids, eos, &train_device);
        let scale = model.logit_scale.val().clamp_max(100f32.ln()).exp().unsqueeze::<2>();
        let logits = image.matmul(text.transpose()) * scale;
        let ce = |l: Tensor<2>| (targets.clone() * burn::tensor::activation::log_softmax(l, 1)).sum_dim(1).mean().neg();
        let loss = (ce(logits.clone()) + ce(logits.transpose())) / 2.0;
        let value = loss.clone().into_scalar::<f32>();
        model = super::descend(model, &mut optim, loss, settings.learning_rate);
        log(step, value);
        let after =
            ckpt.after_step(&model, &optim, step, value, settings.steps, settings.checkpoint_every, saves.deadline)?;
        if after != After::Next {
            crate::weights::save_pytorch(&model.text, &saves.dir.join("model.safetensors"), crate::clip::EXPORT_NAMES)?;
        }
        if after == After::Stop {
            break;
        }
    }
    Ok(model.valid().text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_encoder_trains_contrastively_and_exports_for_transformers() {
        let device = Device::flex();
        let data = CaptionedImages::render(12, 2, 32);
        let texts: Vec<String> = data.texts().iter().map(|(t, _)| t.clone()).collect();
        let tok_json = crate::tokenizer::train_clip_bpe(&texts, 300).unwrap();
        let tokenizer = crate::tokenizer::ClipTokenizer::from_files(&crate::tokenizer::TokenizerFiles {
            tokenizer_json: Some(tok_json.into_bytes()),
            ..Default::default()
        })
        .unwrap();
        let config = crate::clip::ClipTextConfig {
            vocab_size: tokenizer.vocab_size(),
            hidden_size: 16,
            intermediate_size: 32,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            ..Default::default()
        };
        let dir = std::env::temp_dir().join(format!("traverse-text-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = TextEncoderTraining::new(3, 4, 1, 2).with_learning_rate(1e-3).with_projection_dim(8);
        let mut losses = vec![];
        let text =
            train_text_encoder(&config, &tokenizer, &data, &settings, &device, Saves::to(&dir), |_, l| losses.push(l))
                .unwrap();
        assert_eq!(losses.len(), 3);
        assert!(losses.iter().all(|l| l.is_finite()));
        // The exported text encoder loads through the diffusers-folder loader and matches.
        let json = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let mut loaded = crate::clip::ClipTextConfig::from_json(&json).unwrap().init(&device).unwrap();
        let file = crate::weights::WeightFile::Path(dir.join("model.safetensors"));
        crate::weights::load_into(&mut loaded, "text_encoder", vec![file], &crate::clip::NAMES).unwrap();
        let ids: Vec<i64> = tokenizer.encode(&texts[0]).unwrap().iter().map(|&i| i as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, 77]), &device);
        let a = text.forward(ids.clone()).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let b = loaded.forward(ids).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(a, b);
        let _ = std::fs::remove_dir_all(dir);
    }
}
