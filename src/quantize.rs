//! int8 weights: per-output-channel symmetric quantization of every weight matrix and convolution kernel,
//! stored as safetensors (documented format below); loaded as f32, or kept int8 on a GPU ([`device_data`]).
//!
//! Format: a quantized tensor `NAME` has dtype I8 and its original shape; beside it, `NAME.qscale` (F32, one
//! value per output channel, i.e. per index of dimension 0) holds the scales, and the weight is
//! `NAME[c, …] · NAME.qscale[c]`. Tensors of one dimension (norms, biases) and small tensors stay as they
//! were. The header's `__metadata__` says `"quantization": "int8-per-channel-symmetric"`.
//!
//! Why a file format of our own rather than burn's quantized records: any safetensors reader (and every
//! backend) can read it, dequantizing on load. On a GPU, [`device_data`] turns each layer weight into burn's
//! quantized tensor (Q8S, blocks of one row's scale) with exactly the file's values, so it stays a quarter of
//! its f32 size there and burn's kernels dequantize it as they compute.

use std::collections::HashMap;

use safetensors::Dtype;
use serde::Serialize;

use crate::codec::{TensorInfo, float_values, floats, parse, serialize};
use crate::error::{Error, Result};

/// Suffix of the scale tensor stored beside each int8 tensor.
pub const SCALE_SUFFIX: &str = ".qscale";
/// Tensors with fewer elements stay in full precision (their scales would cost more than they save).
pub const MIN_ELEMENTS: usize = 1024;

fn bad(what: &str, message: impl Into<String>) -> Error {
    Error::Safetensors { what: what.to_string(), message: message.into() }
}

/// Quantizes a safetensors file (f32/f16/bf16) to the int8 format.
pub fn quantize(what: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let st = parse(what, bytes)?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let numel: usize = shape.iter().product();
        if !quantizes(&format!("{:?}", view.dtype()), &shape) {
            out.push((name, view.dtype(), shape, view.data().to_vec()));
            continue;
        }
        let w = floats(what, &name, &view)?;
        let per = numel / shape[0];
        let mut q = Vec::with_capacity(numel);
        let mut scales = Vec::with_capacity(shape[0]);
        for row in w.chunks(per) {
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            q.extend(row.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8 as u8));
            scales.push(scale);
        }
        out.push((
            format!("{name}{SCALE_SUFFIX}"),
            Dtype::F32,
            vec![shape[0]],
            scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
        ));
        out.push((name, Dtype::I8, shape, q));
    }
    let meta = HashMap::from([("quantization".to_string(), "int8-per-channel-symmetric".to_string())]);
    serialize(what, out, Some(meta))
}

/// Whether [`quantize`] makes a tensor of this dtype and shape int8: float weights of two or more dimensions
/// and at least [`MIN_ELEMENTS`] values.
pub fn quantizes(dtype: &str, shape: &[usize]) -> bool {
    matches!(dtype, "F32" | "F16" | "BF16") && shape.len() >= 2 && shape.iter().product::<usize>() >= MIN_ELEMENTS
}

/// Whether a header table (from [`crate::codec::inspect`]) holds int8 tensors.
pub fn is_quantized(table: &std::collections::BTreeMap<String, TensorInfo>) -> bool {
    table.values().any(|t| t.dtype == "I8")
}

/// A checked header table (from [`crate::codec::inspect`]).
pub type Table = std::collections::BTreeMap<String, TensorInfo>;

/// Checks from a header table alone that every int8 tensor has a scale tensor of one F32 per output channel,
/// and every scale an int8 tensor: what a streamed file is checked against before its data arrives.
pub fn check_pairs(what: &str, table: &Table) -> Result<()> {
    for (name, info) in table {
        if let Some(base) = name.strip_suffix(SCALE_SUFFIX) {
            if table.get(base).is_none_or(|t| t.dtype != "I8") {
                return Err(bad(what, format!("scale {name} has no int8 tensor {base}")));
            }
        } else if info.dtype == "I8" {
            let scale_name = format!("{name}{SCALE_SUFFIX}");
            let scale =
                table.get(&scale_name).ok_or_else(|| bad(what, format!("int8 tensor {name} has no {scale_name}")))?;
            let rows = info.shape.first().copied().unwrap_or(0);
            if scale.dtype != "F32" || scale.shape != [rows] {
                return Err(bad(what, format!("{scale_name} must hold {rows} finite F32 scales")));
            }
        }
    }
    Ok(())
}

/// [`check_pairs`], and every scale finite: what [`tensor_values`] then relies on.
pub fn check_scales(what: &str, bytes: &[u8], table: &Table) -> Result<()> {
    check_pairs(what, table)?;
    for (name, info) in table.iter().filter(|(name, _)| name.ends_with(SCALE_SUFFIX)) {
        if float_values(what, name, &info.dtype, &bytes[info.bytes.clone()])?.iter().any(|s| !s.is_finite()) {
            let rows = info.shape.first().copied().unwrap_or(0);
            return Err(bad(what, format!("{name} must hold {rows} finite F32 scales")));
        }
    }
    Ok(())
}

/// Tensor `name` of a checked int8 file (`bytes`, its `table`, scales checked by [`check_scales`]) as f32
/// values: int8 weights times their channel's scale, float tensors as they are. One tensor at a time, so
/// loading never holds an f32 copy of the whole file.
pub fn tensor_values(what: &str, bytes: &[u8], table: &Table, name: &str) -> Result<Vec<f32>> {
    let info = table.get(name).ok_or_else(|| bad(what, format!("no tensor {name}")))?;
    let data = &bytes[info.bytes.clone()];
    if info.dtype != "I8" {
        return float_values(what, name, &info.dtype, data);
    }
    let scale_name = format!("{name}{SCALE_SUFFIX}");
    let scale = table.get(&scale_name).ok_or_else(|| bad(what, format!("int8 tensor {name} has no {scale_name}")))?;
    let scales = float_values(what, &scale_name, &scale.dtype, &bytes[scale.bytes.clone()])?;
    let per = data.len() / scales.len().max(1);
    Ok(data.chunks(per.max(1)).zip(&scales).flat_map(|(row, s)| row.iter().map(move |&q| q as i8 as f32 * s)).collect())
}

/// The layer an int8 weight feeds, which fixes the layout it is kept in on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// A linear layer's `[out, in]` matrix.
    Linear,
    /// A convolution's `[out, in, kh, kw]` kernel.
    Conv2d,
    /// An embedding's `[entries, dim]` table (one scale per entry).
    Embedding,
}

/// Values per scale block of an int8 weight kept on the device whose rows are split into blocks along `inner`
/// input values: the largest multiple of 4 (the values one packed u32 holds) that divides `inner` and fits
/// burn's block size (at most 255); `None` when there is none.
pub fn device_block(inner: usize) -> Option<usize> {
    if inner == 0 {
        return None;
    }
    (1..=63).rev().map(|k| 4 * k).find(|b| inner.is_multiple_of(*b))
}

/// Int8 tensor `name` of a checked file (`bytes`, its `table`, scales checked by [`check_scales`]) as burn
/// quantized data (Q8S packed in u32, one f32 scale per block of [`device_block`] input values, every block of a
/// row carrying the row's scale, so the values are exactly the file's), packed along the input dimension as
/// burn's kernels read it: a linear weight as `[out, in]` (the caller transposes it to burn's `[in, out]`), a
/// convolution kernel as `[out, kh, kw, in]` (the caller permutes it to `[out, in, kh, kw]`), an embedding table
/// as it is. `None` when the
/// tensor is not int8, has the wrong rank for `layer`, or its input size has no block.
pub fn device_data(
    what: &str,
    bytes: &[u8],
    table: &Table,
    name: &str,
    layer: Layer,
) -> Result<Option<burn::tensor::TensorData>> {
    use burn::tensor::quantization::{QuantScheme, QuantValue, ScaleDtype};
    let info = table.get(name).ok_or_else(|| bad(what, format!("no tensor {name}")))?;
    let rank = match layer {
        Layer::Linear | Layer::Embedding => 2,
        Layer::Conv2d => 4,
    };
    if info.dtype != "I8" || info.shape.len() != rank {
        return Ok(None);
    }
    let (out, input) = (info.shape[0], info.shape[1]);
    let Some(block) = device_block(input).filter(|_| out > 0 && info.shape.iter().all(|&d| d > 0)) else {
        return Ok(None);
    };
    let scale = &table[&format!("{name}{SCALE_SUFFIX}")];
    let scales = float_values(what, name, &scale.dtype, &bytes[scale.bytes.clone()])?;
    let data = &bytes[info.bytes.clone()];
    let (values, shape, block_shape): (Vec<i8>, Vec<usize>, Vec<u8>) = match layer {
        Layer::Linear | Layer::Embedding => {
            (data.iter().map(|&q| q as i8).collect(), info.shape.clone(), vec![1, block as u8])
        }
        Layer::Conv2d => {
            // OIHW → OHWI: each output channel's values, input channels innermost.
            let (kh, kw) = (info.shape[2], info.shape[3]);
            let mut values = vec![0i8; data.len()];
            for (i, &q) in data.iter().enumerate() {
                let (o, rest) = (i / (input * kh * kw), i % (input * kh * kw));
                let (c, yx) = (rest / (kh * kw), rest % (kh * kw));
                values[(o * kh * kw + yx) * input + c] = q as i8;
            }
            (values, vec![out, kh, kw, input], vec![1, 1, 1, block as u8])
        }
    };
    let blocks_per_row = values.len() / out / block;
    let block_scales: Vec<f32> = scales.iter().flat_map(|&s| std::iter::repeat_n(s, blocks_per_row)).collect();
    let scheme = QuantScheme::default().with_value(QuantValue::Q8S).per_block(block_shape, ScaleDtype::F32);
    Ok(Some(burn::tensor::TensorData::quantized(values, shape, scheme, &block_scales, None)))
}

/// Turns an int8 file back into an f32 safetensors file (other tensors are kept as they are). Every int8
/// tensor needs a finite scale per output channel; anything else is an error.
pub fn dequantize(what: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let st = parse(what, bytes)?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        if name.ends_with(SCALE_SUFFIX) {
            let base = &name[..name.len() - SCALE_SUFFIX.len()];
            if st.tensor(base).map(|t| t.dtype() != Dtype::I8).unwrap_or(true) {
                return Err(bad(what, format!("scale {name} has no int8 tensor {base}")));
            }
            continue;
        }
        if view.dtype() != Dtype::I8 {
            out.push((name, view.dtype(), view.shape().to_vec(), view.data().to_vec()));
            continue;
        }
        let shape = view.shape().to_vec();
        let scale_name = format!("{name}{SCALE_SUFFIX}");
        let scale = st.tensor(&scale_name).map_err(|_| bad(what, format!("int8 tensor {name} has no {scale_name}")))?;
        let scales = floats(what, &scale_name, &scale)?;
        if shape.is_empty() || scale.shape() != [shape[0]] || scales.iter().any(|s| !s.is_finite()) {
            return Err(bad(what, format!("{scale_name} must hold {} finite scales", shape.first().unwrap_or(&0))));
        }
        let per = view.data().len() / shape[0].max(1);
        let values: Vec<u8> = view
            .data()
            .chunks(per.max(1))
            .zip(&scales)
            .flat_map(|(row, s)| row.iter().map(move |&q| (q as i8 as f32 * s).to_le_bytes()))
            .flatten()
            .collect();
        out.push((name, Dtype::F32, shape, values));
    }
    serialize(what, out, None)
}

/// One weights file of a folder written by [`quantize_folder`].
#[derive(Debug, Clone, Serialize)]
pub struct QuantizedFile {
    /// Path inside the folder, `/`-separated.
    pub path: String,
    /// Size before quantization.
    pub bytes_before: u64,
    /// Size of the int8 file.
    pub bytes_int8: u64,
}

/// Copies the model folder `from` to `to`, quantizing every safetensors file and copying the JSON and text
/// files (not a training run's records, its stages' `train_state.json` and its `training.json`, nor its
/// optimizer state: a folder with nothing to copy is left out); returns every quantized file, in path order.
#[cfg(not(target_arch = "wasm32"))]
pub fn quantize_folder(from: &std::path::Path, to: &std::path::Path) -> Result<Vec<QuantizedFile>> {
    fn walk(from: &std::path::Path, to: &std::path::Path, prefix: &str, out: &mut Vec<QuantizedFile>) -> Result<()> {
        let mut entries: Vec<_> =
            std::fs::read_dir(from).and_then(|d| d.collect::<std::io::Result<Vec<_>>>()).map_err(Error::io(from))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let (src, name) = (entry.path(), entry.file_name().to_string_lossy().to_string());
            if src.is_dir() {
                walk(&src, &to.join(&name), &format!("{prefix}{name}/"), out)?;
            } else if name.ends_with(".safetensors") {
                std::fs::create_dir_all(to).map_err(Error::io(to))?;
                let bytes = std::fs::read(&src).map_err(Error::io(&src))?;
                let q = quantize(&src.display().to_string(), &bytes)?;
                let path = to.join(&name);
                std::fs::write(&path, &q).map_err(Error::io(&path))?;
                out.push(QuantizedFile {
                    path: format!("{prefix}{name}"),
                    bytes_before: bytes.len() as u64,
                    bytes_int8: q.len() as u64,
                });
            } else if (name.ends_with(".json") && !is_training_record(prefix, &name)) || name.ends_with(".txt") {
                std::fs::create_dir_all(to).map_err(Error::io(to))?;
                std::fs::copy(&src, to.join(&name)).map_err(Error::io(&src))?;
            }
        }
        Ok(())
    }
    // A training run's records: each stage's state and `train-mini`'s recipe at the top.
    fn is_training_record(prefix: &str, name: &str) -> bool {
        name == "train_state.json" || (prefix.is_empty() && name == "training.json")
    }
    let mut out = Vec::new();
    walk(from, to, "", &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::SafeTensors;

    fn file(tensors: Vec<(&str, Vec<usize>, Vec<f32>)>) -> Vec<u8> {
        let t = tensors
            .into_iter()
            .map(|(n, s, v)| (n.to_string(), Dtype::F32, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect();
        serialize("t", t, None).unwrap()
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let w: Vec<f32> = (0..4096).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
        let bias: Vec<f32> = (0..16).map(|i| i as f32 * 0.1).collect();
        let bytes = file(vec![("w", vec![16, 256], w.clone()), ("b", vec![16], bias.clone())]);
        let q = quantize("t", &bytes).unwrap();
        assert!(q.len() < bytes.len() / 3, "{} vs {}", q.len(), bytes.len());
        let back = dequantize("t", &q).unwrap();
        let st = SafeTensors::deserialize(&back).unwrap();
        let w2 = floats("t", "w", &st.tensor("w").unwrap()).unwrap();
        for (row, row2) in w.chunks(256).zip(w2.chunks(256)) {
            let step = row.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            assert!(row.iter().zip(row2).all(|(a, b)| (a - b).abs() <= step / 2.0 + 1e-6));
        }
        assert_eq!(floats("t", "b", &st.tensor("b").unwrap()).unwrap(), bias, "biases stay exact");
    }

    #[test]
    fn malformed_int8_files_are_errors() {
        let q = quantize("t", &file(vec![("w", vec![4, 512], vec![1.0; 2048])])).unwrap();
        let st = SafeTensors::deserialize(&q).unwrap();
        let w = st.tensor("w").unwrap();
        let no_scale =
            serialize("t", vec![("w".into(), Dtype::I8, w.shape().to_vec(), w.data().to_vec())], None).unwrap();
        assert!(dequantize("t", &no_scale).unwrap_err().to_string().contains("no w.qscale"));
        let bad_scale = serialize(
            "t",
            vec![
                ("w".into(), Dtype::I8, w.shape().to_vec(), w.data().to_vec()),
                ("w.qscale".into(), Dtype::F32, vec![3], vec![0; 12]),
            ],
            None,
        )
        .unwrap();
        assert!(dequantize("t", &bad_scale).is_err());
    }

    #[test]
    fn device_data_holds_exactly_the_files_values() {
        use burn::prelude::*;
        let linear: Vec<f32> = (0..32 * 40).map(|i| ((i * 13 % 29) as f32 - 14.0) / (1.0 + (i / 40) as f32)).collect();
        let conv: Vec<f32> = (0..16 * 8 * 9).map(|i| ((i * 7 % 23) as f32 - 11.0) / (1.0 + (i / 72) as f32)).collect();
        let q = quantize("t", &file(vec![("l", vec![32, 40], linear), ("c", vec![16, 8, 3, 3], conv)])).unwrap();
        let table = crate::codec::inspect_bytes("t", &q).unwrap();
        check_scales("t", &q, &table).unwrap();
        let device = Device::flex();
        let on_device = |name: &str, layer: Layer| {
            let data = device_data("t", &q, &table, name, layer).unwrap().expect("kept int8");
            assert!(matches!(data.dtype(), burn::tensor::DType::QFloat(_)));
            data
        };
        let l = Tensor::<2>::from_data(on_device("l", Layer::Linear), &device).dequantize();
        // (Dequantized before the permutation: burn's CPU backend requantizes a permuted quantized tensor; the GPU
        // path, which permutes it as a view, is tested in tests/wgpu.rs.)
        let c = Tensor::<4>::from_data(on_device("c", Layer::Conv2d), &device).dequantize().permute([0, 3, 1, 2]);
        for (name, got) in [("l", crate::readback::values(l).unwrap()), ("c", crate::readback::values(c).unwrap())] {
            let want = tensor_values("t", &q, &table, name).unwrap();
            assert!(got.len() == want.len() && got.iter().zip(&want).all(|(a, b)| a == b), "{name} differs");
        }
        // Whole rows up to 252 values; SD's 320, 1280 and 5120 inputs in blocks of 160, 160 and 256 → 160; none
        // where the input size is not a multiple of 4.
        assert_eq!(
            [40, 320, 1280, 5120, 768, 6, 0].map(device_block),
            [Some(40), Some(160), Some(160), Some(160), Some(192), None, None]
        );
        assert!(device_data("t", &q, &table, "l", Layer::Conv2d).unwrap().is_none(), "wrong rank");
    }

    #[test]
    fn a_quantized_folder_keeps_the_model_and_leaves_the_training_state() {
        let root = std::env::temp_dir().join(format!("traverse-qfolder-{}", std::process::id()));
        let (from, to) = (root.join("run"), root.join("shipped"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(from.join("unet/optimizer-4")).unwrap();
        let w: Vec<f32> = (0..64).map(|i| i as f32 / 7.0).collect();
        std::fs::write(from.join("unet/diffusion_pytorch_model.safetensors"), file(vec![("w", vec![4, 16], w)]))
            .unwrap();
        std::fs::write(from.join("unet/config.json"), "{}").unwrap();
        std::fs::write(from.join("unet/train_state.json"), r#"{"step": 4}"#).unwrap();
        std::fs::write(from.join("unet/optimizer-4/state.bpk"), b"moments").unwrap();
        std::fs::write(from.join("training.json"), r#"{"unet_steps": 4}"#).unwrap();
        std::fs::write(from.join("model_index.json"), "{}").unwrap();
        let files = quantize_folder(&from, &to).unwrap();
        assert_eq!(
            files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["unet/diffusion_pytorch_model.safetensors"]
        );
        let mut shipped: Vec<_> = std::fs::read_dir(to.join("unet"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        shipped.sort();
        assert_eq!(shipped, ["config.json", "diffusion_pytorch_model.safetensors"]);
        assert!(to.join("model_index.json").exists() && !to.join("training.json").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
