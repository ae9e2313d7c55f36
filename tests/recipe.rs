//! The embedded-model recipe end to end at toy size: every stage trains and resumes, and the output folder is
//! a Stable Diffusion folder that the pipeline loads and samples from.

mod common;

use common::*;
use traverse::pipeline::StableDiffusion;
use traverse::quantize::quantize;
use traverse::swap::{SwapSampler, SwapSettings};
use traverse::train::{Deadline, Preset, Recipe, Trained, seed_from, train};

/// Every stage at toy size: two steps each, a checkpoint after every step.
fn tiny_recipe() -> Recipe {
    Recipe {
        preset: Preset::Tiny,
        size: 16,
        images: 8,
        seed: 4,
        text_steps: 2,
        vae_steps: 2,
        vae_crop: 8,
        vae_edge_weight: 1.0,
        vae_decoder_steps: 0,
        vae_attribute_weight: 10.0,
        unet_steps: 2,
        unet_learning_rate: 2e-4,
        unet_caption_balance: 0.0,
        unet_chest_share: None,
        batches: [4, 2, 2],
        checkpoint_every: 1,
    }
}

#[test]
fn tiny_recipe_produces_a_loadable_pipeline() {
    let dir = TempDir::new("recipe");
    let mut recipe = tiny_recipe();
    let mut seen = vec![];
    let trained = train(&recipe, &device(), &dir.0, Deadline::NEVER, |stage, step, loss| {
        assert!(loss.is_finite(), "{stage} step {step}");
        seen.push((stage.to_string(), step));
    });
    assert_eq!(trained.unwrap(), Trained::Complete);
    assert_eq!(seen.len(), 6);
    let scaling = |dir: &std::path::Path| -> f64 {
        let text = std::fs::read_to_string(dir.join("vae/config.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["scaling_factor"].as_f64().unwrap()
    };
    let trained_scaling = scaling(&dir.0);
    // A second run with more U-Net steps, on a larger pool, resumes every stage and trains only the new U-Net
    // step (the draw's settings may change on resume); the pool's latents have another spread now, but the U-Net
    // learned the first scaling factor.
    recipe.unet_steps = 3;
    recipe.images = 12;
    // The resumed step draws with caption balance and a chest share: both families are in the pool.
    recipe.unet_caption_balance = 0.5;
    recipe.unet_chest_share = Some(0.7);
    let mut again = vec![];
    train(&recipe, &device(), &dir.0, Deadline::NEVER, |stage, step, _| again.push((stage.to_string(), step))).unwrap();
    assert_eq!(again, vec![("unet".to_string(), 2)]);
    let state = std::fs::read_to_string(dir.0.join("unet/train_state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["optimizer"], "optimizer-3", "each save keeps the optimizer state at its step");
    assert_eq!(state["runs"][1]["optimizer_resumed"], true, "the second run went on with the first one's");
    assert_eq!(scaling(&dir.0), trained_scaling);
    for stage in ["text_encoder", "vae", "unet"] {
        let csv = std::fs::read_to_string(dir.0.join(stage).join("loss.csv")).unwrap();
        assert_eq!(csv.lines().count(), if stage == "unet" { 3 } else { 2 }, "{stage}: {csv}");
        let svg = std::fs::read_to_string(dir.0.join(stage).join("loss.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{stage} plot");
    }

    // Checkpoints lost: a shipped copy (int8 weights, losses and the contrastive pair under training/) seeds a
    // fresh folder, and training resumes where the shipped run stopped instead of starting over.
    let shipped = TempDir::new("shipped");
    std::fs::create_dir_all(shipped.0.join("training")).unwrap();
    for sub in ["tokenizer", "text_encoder", "vae", "unet"] {
        std::fs::create_dir_all(shipped.0.join(sub)).unwrap();
        for entry in std::fs::read_dir(dir.0.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if name.starts_with("optimizer-") {
                // The optimizer state stays with the run: a shipped model has the weights only.
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let (to, bytes) = match name.as_str() {
                "loss.csv" => (shipped.0.join("training").join(format!("{sub}-loss.csv")), bytes),
                "contrastive.safetensors" => (shipped.0.join("training").join(&name), quantize(&name, &bytes).unwrap()),
                n if n.ends_with(".safetensors") => (shipped.0.join(sub).join(&name), quantize(&name, &bytes).unwrap()),
                "train_state.json" | "loss.svg" => continue,
                _ => (shipped.0.join(sub).join(&name), bytes),
            };
            std::fs::write(to, bytes).unwrap();
        }
    }
    let fresh = TempDir::new("fresh");
    seed_from(&shipped.0, &fresh.0).unwrap();
    let mut resumed = vec![];
    recipe.unet_steps = 4;
    train(&recipe, &device(), &fresh.0, Deadline::NEVER, |stage, step, _| resumed.push((stage.to_string(), step)))
        .unwrap();
    assert_eq!(resumed, vec![("unet".to_string(), 3)]);
    // The int8 encoder's latents would give another factor; the shipped U-Net's is kept.
    assert_eq!(scaling(&fresh.0), trained_scaling);

    let sd = StableDiffusion::load(&dir.0, None, &device()).unwrap();
    let [h, w] = sd.latent_size(16, 16).unwrap();
    let init = traverse::rng::initial_latents(1, 4, h, w, sd.device());
    let settings = SwapSettings { steps: 4, guidance: 3.0, swap_points: vec![2], max_batch: 4 };
    let styles = ["Chest X-ray of a subject with pleural effusion".to_string()];
    let res = SwapSampler::new(&sd, init, "Chest x-ray with no significant findings", &styles, "", &settings)
        .unwrap()
        .run()
        .unwrap();
    let img = sd.vae.decode(res.trajectories[0].latents[0].clone());
    assert_eq!(img.dims(), [1, 3, 16, 16]);
}

#[test]
fn a_deadline_stops_at_a_save_and_the_next_run_resumes_there() {
    let dir = TempDir::new("deadline");
    // Saves only at each stage's end, unless a deadline stops it first.
    let recipe = Recipe { checkpoint_every: 100, ..tiny_recipe() };
    let passed = || Deadline::after(std::time::Duration::ZERO);
    let run = |deadline: Deadline| {
        let mut seen = vec![];
        let trained =
            train(&recipe, &device(), &dir.0, deadline, |stage, step, _| seen.push((stage.to_string(), step)));
        (trained.unwrap(), seen)
    };
    let step = |stage: &str| -> u64 {
        let text = std::fs::read_to_string(dir.0.join(stage).join("train_state.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["step"].as_u64().unwrap()
    };
    let at = |pairs: &[(&str, usize)]| pairs.iter().map(|&(s, n)| (s.to_string(), n)).collect::<Vec<_>>();
    // A passed deadline: one step, saved, then the run stops.
    assert_eq!(run(passed()), (Trained::Stopped { stage: "text_encoder" }, at(&[("text_encoder", 0)])));
    assert_eq!(step("text_encoder"), 1);
    // The next run resumes at step 1, the stage's last, so it finishes it and stops in the next stage.
    assert_eq!(run(passed()), (Trained::Stopped { stage: "vae" }, at(&[("text_encoder", 1), ("vae", 0)])));
    assert_eq!((step("text_encoder"), step("vae")), (2, 1));
    assert!(!dir.0.join("unet").exists(), "no later stage was begun");
    // Without a deadline the rest trains, each step once.
    assert_eq!(run(Deadline::NEVER), (Trained::Complete, at(&[("vae", 1), ("unet", 0), ("unet", 1)])));
    assert_eq!(step("unet"), 2);
    let csv = std::fs::read_to_string(dir.0.join("vae/loss.csv")).unwrap();
    assert_eq!(csv.lines().map(|l| l.split(',').next().unwrap()).collect::<Vec<_>>(), ["0", "1"]);
}

#[test]
fn training_refuses_bad_recipes_before_any_stage() {
    let recipe = tiny_recipe();
    assert!(recipe.validate().is_ok());
    let out = TempDir::new("bad-recipe");
    for bad in [
        Recipe { size: 13, ..recipe.clone() },
        Recipe { vae_crop: 24, ..recipe.clone() },
        Recipe { images: 0, ..recipe.clone() },
        Recipe { batches: [4, 0, 2], ..recipe.clone() },
        Recipe { unet_learning_rate: f64::NAN, ..recipe.clone() },
        Recipe { unet_caption_balance: 1.5, ..recipe.clone() },
        Recipe { unet_chest_share: Some(-0.1), ..recipe.clone() },
    ] {
        assert!(train(&bad, &device(), &out.0.join("run"), Deadline::NEVER, |_, _, _| {}).is_err(), "{bad:?}");
        assert!(!out.0.join("run").exists(), "nothing is written for {bad:?}");
    }
}
