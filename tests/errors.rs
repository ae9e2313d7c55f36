//! Bad input gets a clear error, never a panic: malformed, truncated, mismatched or hostile model files.

mod common;

use std::path::Path;

use common::*;
use safetensors::SafeTensors;
use traverse::Error;
use traverse::pipeline::StableDiffusion;

const UNET: &str = "unet/diffusion_pytorch_model.safetensors";

fn tiny_copy(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    copy_dir(&fixtures().join("tiny-sd"), &dir.0);
    dir
}

fn load(dir: &Path) -> Error {
    match StableDiffusion::load(dir, None, &device()) {
        Ok(_) => panic!("loading should fail"),
        Err(e) => e,
    }
}

/// Rewrites a safetensors file through `edit`, which gets (name, dtype, shape, bytes) entries.
fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>)) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut entries: Vec<_> =
        st.tensors().into_iter().map(|(k, v)| (k, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    edit(&mut entries);
    let views: Vec<_> = entries
        .iter()
        .map(|(k, d, s, b)| (k.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn missing_unexpected_and_misshaped_tensors_are_named() {
    let dir = tiny_copy("mismatch");
    rewrite(&dir.0.join(UNET), |e| {
        e.retain(|t| t.0 != "conv_out.bias");
        e.push(("extra.weight".into(), safetensors::Dtype::F32, vec![2], vec![0; 8]));
        let conv_in = e.iter_mut().find(|t| t.0 == "conv_in.weight").unwrap();
        let n: usize = conv_in.2.iter().product();
        conv_in.2 = vec![n];
    });
    let msg = load(&dir.0).to_string();
    assert!(msg.contains("missing tensor: conv_out.bias"), "{msg}");
    assert!(msg.contains("unexpected tensor: extra.weight"), "{msg}");
    assert!(msg.contains("mis-shaped tensor: conv_in.weight"), "{msg}");
}

#[test]
fn wrong_dtype_is_an_error() {
    let dir = tiny_copy("dtype");
    rewrite(&dir.0.join(UNET), |e| {
        let t = e.iter_mut().find(|t| t.0 == "conv_out.bias").unwrap();
        t.1 = safetensors::Dtype::I32;
    });
    let msg = load(&dir.0).to_string();
    assert!(msg.contains("conv_out.bias"), "{msg}");
}

#[test]
fn truncated_and_hostile_files_are_rejected() {
    let dir = tiny_copy("hostile");
    let path = dir.0.join(UNET);
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 100]).unwrap();
    assert!(load(&dir.0).to_string().contains("truncated"));
    // A header claiming 2^60 bytes must not allocate it.
    let mut hostile = (1u64 << 60).to_le_bytes().to_vec();
    hostile.extend_from_slice(b"{}");
    std::fs::write(&path, hostile).unwrap();
    assert!(load(&dir.0).to_string().contains("exceeds the file"));
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(load(&dir.0), Error::Safetensors { .. }));
}

#[test]
fn malformed_configs_and_tokenizers_are_reported() {
    let dir = tiny_copy("config");
    let cfg = dir.0.join("unet/config.json");
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, "{ not json").unwrap();
    assert!(matches!(load(&dir.0), Error::Config { .. }));
    std::fs::write(&cfg, good.replace("\"norm_num_groups\": 8", "\"norm_num_groups\": 7")).unwrap();
    assert!(load(&dir.0).to_string().contains("groups"));
    std::fs::write(&cfg, good.replace("\"CrossAttnDownBlock2D\"", "\"KDownBlock2D\"")).unwrap();
    assert!(load(&dir.0).to_string().contains("KDownBlock2D"));
    std::fs::write(&cfg, &good).unwrap();
    // Counts that would size allocations without bound, and values that would make every image NaN.
    for (file, field, value) in [
        ("unet/config.json", "transformer_layers_per_block", "1000000000"),
        ("unet/config.json", "layers_per_block", "1000000000"),
        ("unet/config.json", "norm_eps", "-1"),
        // Fields that change the blocks' computation beyond SD 1.x/2.x: refused, never ignored.
        ("unet/config.json", "num_class_embeds", "10"),
        ("unet/config.json", "encoder_hid_dim_type", "\"text_proj\""),
        ("unet/config.json", "time_embedding_act_fn", "\"silu\""),
        ("unet/config.json", "timestep_post_act", "\"silu\""),
        ("unet/config.json", "cross_attention_norm", "\"group_norm\""),
        ("unet/config.json", "reverse_transformer_layers_per_block", "[2, 1, 1]"),
        ("text_encoder/config.json", "num_hidden_layers", "1000000000"),
        ("text_encoder/config.json", "layer_norm_eps", "-1"),
        ("vae/config.json", "layers_per_block", "1000000000"),
        ("vae/config.json", "scaling_factor", "0"),
        ("scheduler/scheduler_config.json", "num_train_timesteps", "1000000000000"),
        ("scheduler/scheduler_config.json", "beta_end", "5.0"),
    ] {
        let path = dir.0.join(file);
        let original = std::fs::read_to_string(&path).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&original).unwrap();
        json[field] = serde_json::from_str(value).unwrap();
        std::fs::write(&path, json.to_string()).unwrap();
        let err = load(&dir.0);
        assert!(
            matches!(err, Error::Config { .. }) && err.to_string().contains(field),
            "{file} {field}={value}: {err}"
        );
        std::fs::write(&path, original).unwrap();
    }
    // Up-block depths stated as the mirror of the down blocks' are what the model builds anyway.
    let (null, mirror) =
        ("\"reverse_transformer_layers_per_block\": null", "\"reverse_transformer_layers_per_block\": [1, 1, 1]");
    assert!(good.contains(null));
    std::fs::write(&cfg, good.replace(null, mirror)).unwrap();
    assert!(StableDiffusion::load(&dir.0, None, &device()).is_ok());
    std::fs::write(&cfg, &good).unwrap();

    let tokenizer_config = dir.0.join("tokenizer/tokenizer_config.json");
    let original = std::fs::read_to_string(&tokenizer_config).unwrap();
    std::fs::write(&tokenizer_config, r#"{"model_max_length": 1}"#).unwrap();
    assert!(matches!(load(&dir.0), Error::Tokenizer(m) if m.contains("model_max_length")));
    std::fs::write(&tokenizer_config, original).unwrap();

    std::fs::write(dir.0.join("tokenizer/merges.txt"), "#version: 0.2\na b c\n").unwrap();
    assert!(matches!(load(&dir.0), Error::Tokenizer(_)));
    std::fs::remove_file(dir.0.join("tokenizer/merges.txt")).unwrap();
    assert!(matches!(load(&dir.0), Error::Tokenizer(_)));
}

#[test]
fn shard_index_cannot_escape_the_folder() {
    let dir = tiny_copy("index");
    std::fs::remove_file(dir.0.join(UNET)).unwrap();
    std::fs::write(
        dir.0.join("unet/diffusion_pytorch_model.safetensors.index.json"),
        r#"{"metadata": {}, "weight_map": {"conv_in.weight": "../../etc/passwd"}}"#,
    )
    .unwrap();
    assert!(load(&dir.0).to_string().contains("plain file name"));
}

#[test]
fn bad_arguments_are_errors() {
    let sd = StableDiffusion::load(&fixtures().join("tiny-sd"), None, &device()).unwrap();
    assert!(sd.latent_size(63, 64).is_err());
    assert!(sd.embed_ids(&[49408]).is_err());
    let bad = traverse::swap::SwapSettings { swap_points: vec![51], ..Default::default() };
    assert!(bad.validated().is_err());
    let nan = traverse::swap::SwapSettings { guidance: f64::NAN, ..Default::default() };
    assert!(nan.validated().is_err());
}
