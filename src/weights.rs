//! Weights into burn modules and back: each file's header checked by [`crate::codec`] (int8 files dequantized
//! by [`crate::quantize`]), then burn-store loads it with diffusers' (PyTorch) tensor names and layouts,
//! f16/bf16 cast to f32, sharded or single-file; saving is the inverse.

use std::collections::BTreeSet;
use std::sync::Arc;

use burn::tensor::{DType, Shape, TensorData};
use burn_store::burn_pack::{Error as PackError, Tensor as PackTensor};
use burn_store::{
    ApplyError, FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
    bridge,
};

pub use crate::codec::WeightFile;
use crate::codec::inspect;
use crate::error::{Error, Result};

/// How a model's diffusers tensor names map onto our module paths.
pub struct NameMap {
    /// Regex renames applied to the file's names (diffusers name → module path).
    pub remaps: &'static [(&'static str, &'static str)],
    /// Regexes of tensors a checkpoint may carry that the model does not use (e.g. `position_ids`).
    pub ignore: &'static [&'static str],
}

/// Lines of a weight-mismatch error beyond which the rest are counted, not listed.
const MAX_REPORTED: usize = 40;

/// Loads `files` (one file, or the shards of one model) into `module`, converting layouts with
/// burn-store's PyTorch adapter and every float to f32. Fails with one error naming every missing,
/// unexpected or mis-shaped tensor.
pub fn load_into<M: ModuleSnapshot>(
    module: &mut M,
    model: &str,
    files: Vec<WeightFile>,
    names: &NameMap,
) -> Result<()> {
    let ignore = names.ignore.iter().map(|p| glob(p)).collect::<Vec<_>>();
    let mut applied = BTreeSet::new();
    let mut missing = BTreeSet::new();
    let mut unused = BTreeSet::new();
    let mut errors = Vec::new();
    for file in files {
        let what = file.name();
        let table = inspect(&file)?;
        let result = if crate::quantize::is_quantized(&table) {
            // int8 files (see `quantize`): each tensor is dequantized only when it is applied, so no f32 copy
            // of the whole file is ever held.
            let bytes = match file {
                WeightFile::Bytes { bytes, .. } => bytes,
                #[cfg(not(target_arch = "wasm32"))]
                WeightFile::Path(p) => std::fs::read(&p).map_err(Error::io(&p))?,
            };
            crate::quantize::check_scales(&what, &bytes, &table)?;
            let remapper = KeyRemapper::from_patterns(names.remaps.to_vec())
                .map_err(|e| Error::Safetensors { what: what.clone(), message: e.to_string() })?;
            let (tensors, _) = remapper.remap(int8_tensors(&what, bytes, table));
            module.apply(tensors, None, Some(Box::new(PyTorchToBurnAdapter)), true)
        } else {
            let store = match file {
                WeightFile::Bytes { bytes, .. } => SafetensorsStore::from_bytes(Some(bytes)),
                #[cfg(not(target_arch = "wasm32"))]
                WeightFile::Path(p) => SafetensorsStore::from_file(p),
            };
            let mut store = names
                .remaps
                .iter()
                .fold(store, |s, (from, to)| s.with_key_remapping(*from, *to))
                .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
                .allow_partial(true)
                .validate(false)
                .skip_enum_variants(true);
            module
                .load_from(&mut store)
                .map_err(|e| Error::Safetensors { what: what.clone(), message: e.to_string() })?
        };
        applied.extend(result.applied);
        missing.extend(result.missing.into_iter().map(|(path, _)| path));
        unused.extend(result.unused.into_iter().filter(|k| !ignore.iter().any(|re| re(k))));
        errors.extend(result.errors);
    }
    let mut lines: Vec<String> = missing.difference(&applied).map(|p| format!("missing tensor: {p}")).collect();
    lines.extend(unused.iter().map(|k| format!("unexpected tensor: {k}")));
    lines.extend(errors.iter().map(|e| match e {
        ApplyError::ShapeMismatch { path, expected, found } => {
            format!("mis-shaped tensor: {path}: config expects {expected:?}, file has {found:?}")
        }
        other => other.to_string(),
    }));
    if lines.is_empty() {
        return Ok(());
    }
    let total = lines.len();
    let mut details: String = lines.iter().take(MAX_REPORTED).map(|l| format!("\n  {l}")).collect();
    if total > MAX_REPORTED {
        details.push_str(&format!("\n  … and {} more", total - MAX_REPORTED));
    }
    Err(Error::WeightMismatch { model: model.to_string(), details })
}

/// Every tensor of a checked int8 file but the scales, each an f32 tensor drawn from `bytes` only when burn
/// applies it.
fn int8_tensors(what: &str, bytes: Vec<u8>, table: crate::quantize::Table) -> Vec<PackTensor> {
    let (bytes, table) = (Arc::new(bytes), Arc::new(table));
    table
        .iter()
        .filter(|(name, _)| !name.ends_with(crate::quantize::SCALE_SUFFIX))
        .map(|(name, info)| {
            let (bytes, table, what, tensor) = (bytes.clone(), table.clone(), what.to_string(), name.clone());
            let shape = info.shape.clone();
            bridge::deferred(name.clone(), DType::F32, Shape::from(shape.clone()), None, move || {
                crate::quantize::tensor_values(&what, &bytes, &table, &tensor)
                    .map(|values| TensorData::new(values, shape.clone()))
                    .map_err(|e| PackError::ValidationError(e.to_string()))
            })
        })
        .collect()
}

/// Saves `module` as a safetensors file with PyTorch layouts and diffusers' names (`renames`: regex
/// replacements from our module paths), the inverse of [`load_into`]. The file is written beside `path` and
/// renamed over it, so a crash mid-write leaves the previous file whole.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_pytorch<M: ModuleSnapshot>(module: &M, path: &std::path::Path, renames: &[(&str, &str)]) -> Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let store = SafetensorsStore::from_file(&partial)
        .with_to_adapter(burn_store::BurnToPyTorchAdapter)
        .skip_enum_variants(true)
        .overwrite(true);
    let mut store = renames.iter().fold(store, |s, (from, to)| s.with_key_remapping(*from, *to));
    module
        .save_into(&mut store)
        .map_err(|e| Error::Safetensors { what: path.display().to_string(), message: e.to_string() })?;
    std::fs::rename(&partial, path).map_err(Error::io(path))
}

/// Minimal matcher for the few ignore patterns we need: `*` matches any run of characters.
fn glob(pattern: &'static str) -> impl Fn(&str) -> bool {
    move |name: &str| glob_match(pattern.as_bytes(), name.as_bytes())
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_match(&p[1..], s) || (!s.is_empty() && glob_match(p, &s[1..])),
        (Some(a), Some(b)) if a == b => glob_match(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        assert!(glob_match(b"*position_ids", b"text_model.embeddings.position_ids"));
        assert!(!glob_match(b"*position_ids", b"text_model.embeddings.position_embedding.weight"));
    }
}
