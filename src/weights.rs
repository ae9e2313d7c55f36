//! Weights into burn modules and back: each file's header checked by [`crate::codec`] (int8 files dequantized
//! by [`crate::quantize`], or kept int8 on a GPU: [`Storage`]), then burn-store loads it with diffusers'
//! (PyTorch) tensor names and layouts, f16/bf16 cast to f32, sharded or single-file; saving is the inverse.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
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

/// How the weights of int8 files are kept on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// Every weight as f32, dequantized as it is loaded: what every backend computes with.
    #[default]
    F32,
    /// The int8 weights of linear, convolution and embedding layers stay int8 on the device (burn's quantized
    /// tensors: a quarter of the f32 memory), dequantized inside burn's matmul, per convolution call or per
    /// looked-up row; norms and biases as f32.
    /// The numbers are the f32 path's on GPU backends (cubecl); burn's CPU backend quantizes the activations
    /// in its quantized matmul, so the CPU keeps [`Storage::F32`].
    Int8,
}

impl Storage {
    /// Device bytes `module`'s parameters will take once loaded from int8 files, from its (lazy) shapes alone:
    /// what [`load_stored`] keeps int8 counts one byte per value plus one f32 scale per block, the rest f32.
    pub fn planned_bytes<M: burn::module::Module>(self, module: &M) -> u64 {
        struct Plan {
            storage: Storage,
            path: Vec<String>,
            containers: Vec<String>,
            bytes: u64,
        }
        impl burn::module::ModuleVisitor for Plan {
            fn enter_module(&mut self, name: &str, container_type: &str) {
                self.path.push(name.to_string());
                self.containers.push(container_type.to_string());
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.path.pop();
                self.containers.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let shape = param.lazy_shape();
                let numel = shape.num_elements() as u64;
                let layer = layer(self.containers.last(), self.path.last(), D);
                // burn's layouts: a linear weight is `[in, out]`, a convolution kernel `[out, in, kh, kw]`.
                let block = match layer {
                    Some(crate::quantize::Layer::Linear) => crate::quantize::device_block(shape[0]),
                    Some(crate::quantize::Layer::Embedding) => crate::quantize::device_block(shape[1]),
                    Some(crate::quantize::Layer::Conv2d) => crate::quantize::device_block(shape[1]),
                    None => None,
                };
                self.bytes += match block {
                    Some(block) if self.storage == Storage::Int8 && numel >= crate::quantize::MIN_ELEMENTS as u64 => {
                        numel + numel / block as u64 * 4
                    }
                    _ => numel * 4,
                };
            }
        }
        let mut plan = Plan { storage: self, path: vec![], containers: vec![], bytes: 0 };
        module.visit(&mut plan);
        plan.bytes
    }
}

/// The layer a float parameter is the weight of, from the container it sits in and its name; `D` its rank.
fn layer(container: Option<&String>, name: Option<&String>, rank: usize) -> Option<crate::quantize::Layer> {
    match (container.map(String::as_str), name.map(String::as_str), rank) {
        (Some("Struct:Linear"), Some("weight"), 2) => Some(crate::quantize::Layer::Linear),
        (Some("Struct:Conv2d"), Some("weight"), 4) => Some(crate::quantize::Layer::Conv2d),
        (Some("Struct:Embedding"), Some("weight"), 2) => Some(crate::quantize::Layer::Embedding),
        _ => None,
    }
}

/// Loads `files` (one file, or the shards of one model) into `module`, converting layouts with
/// burn-store's PyTorch adapter and every float to f32. Fails with one error naming every missing,
/// unexpected or mis-shaped tensor.
pub fn load_into<M: ModuleSnapshot>(
    module: &mut M,
    model: &str,
    files: Vec<WeightFile>,
    names: &NameMap,
) -> Result<()> {
    load_stored(module, model, files, names, Storage::F32)
}

/// [`load_into`] keeping int8 weights as `storage` says.
pub fn load_stored<M: ModuleSnapshot>(
    module: &mut M,
    model: &str,
    files: Vec<WeightFile>,
    names: &NameMap,
    storage: Storage,
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
                WeightFile::Path(p) => Arc::new(std::fs::read(&p).map_err(Error::io(&p))?),
            };
            crate::quantize::check_scales(&what, &bytes, &table)?;
            let remapper = KeyRemapper::from_patterns(names.remaps.to_vec())
                .map_err(|e| Error::Safetensors { what: what.clone(), message: e.to_string() })?;
            let (tensors, renames) = remapper.remap(int8_tensors(&what, bytes.clone(), &table));
            let kept = match storage {
                Storage::F32 => BTreeSet::new(),
                Storage::Int8 => keep_int8(module, &what, &bytes, &table, renames.into_iter().collect())?,
            };
            let tensors = tensors.into_iter().filter(|t| !kept.contains(&t.name)).collect();
            let mut result = module.apply(tensors, None, Some(Box::new(PyTorchToBurnAdapter)), true);
            result.applied.extend(kept);
            result
        } else {
            let store = match file {
                WeightFile::Bytes { bytes, .. } => {
                    SafetensorsStore::from_bytes(Some(Arc::try_unwrap(bytes).unwrap_or_else(|b| b.to_vec())))
                }
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
fn int8_tensors(what: &str, bytes: Arc<Vec<u8>>, table: &crate::quantize::Table) -> Vec<PackTensor> {
    let table = Arc::new(table.clone());
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

/// Puts the int8 weights of `module`'s linear, convolution and embedding layers on its device as burn quantized tensors,
/// straight from the file's bytes (`paths`: module path → file tensor name); returns the module paths it set.
/// A weight whose shape is not the layer's is left for burn-store, which reports it.
fn keep_int8<M: ModuleSnapshot>(
    module: &mut M,
    what: &str,
    bytes: &[u8],
    table: &crate::quantize::Table,
    paths: HashMap<String, String>,
) -> Result<BTreeSet<String>> {
    let mut mapper =
        KeepInt8 { what, bytes, table, paths, path: vec![], containers: vec![], kept: BTreeSet::new(), error: None };
    // Cloning shares the parameters (burn's lazy ones included) without allocating.
    *module = module.clone().map(&mut mapper);
    match mapper.error {
        Some(e) => Err(e),
        None => Ok(mapper.kept),
    }
}

/// The [`ModuleMapper`] of [`keep_int8`]: follows the module path as burn-store names it (enum variants
/// skipped) and swaps in each int8 layer weight.
struct KeepInt8<'a> {
    what: &'a str,
    bytes: &'a [u8],
    table: &'a crate::quantize::Table,
    paths: HashMap<String, String>,
    path: Vec<String>,
    containers: Vec<String>,
    kept: BTreeSet<String>,
    error: Option<Error>,
}

impl ModuleMapper for KeepInt8<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.path.pop();
        }
        self.containers.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        use crate::quantize::Layer;
        let Some(layer) = layer(self.containers.last(), self.path.last(), D) else { return param };
        let path = self.path.join(".");
        let Some(name) = self.paths.get(&path) else { return param };
        let Some(info) = self.table.get(name) else { return param };
        // burn's layout: a linear weight is the file's matrix transposed.
        let mut file_shape = info.shape.clone();
        if layer == Layer::Linear {
            file_shape.reverse();
        }
        if self.error.is_some() || param.lazy_shape().as_slice() != file_shape.as_slice() {
            return param;
        }
        let data = match crate::quantize::device_data(self.what, self.bytes, self.table, name, layer) {
            Ok(Some(data)) => data,
            Ok(None) => return param,
            Err(e) => {
                self.error = Some(e);
                return param;
            }
        };
        let tensor = Tensor::<D>::from_data(data, &param.lazy_device());
        let tensor = match layer {
            Layer::Linear => tensor.transpose(),
            Layer::Conv2d => tensor.permute(std::array::from_fn(|i| [0, 3, 1, 2][i])),
            Layer::Embedding => tensor,
        };
        self.kept.insert(path);
        Param::initialized(param.id, tensor)
    }
}

/// Bytes `module`'s parameters take on its device: int8 tensors one byte per value plus their f32 block
/// scales, f32 four bytes per value (f16 two). Uninitialized (lazy) parameters count as f32.
pub fn device_bytes<M: burn::module::Module>(module: &M) -> u64 {
    struct Bytes(u64);
    impl burn::module::ModuleVisitor for Bytes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let numel = param.lazy_shape().num_elements() as u64;
            self.0 += match param.is_initialized().then(|| param.val().dtype()) {
                Some(DType::QFloat(scheme)) => {
                    let block = scheme.block_size().map_or(numel, |b| b.num_elements() as u64).max(1);
                    numel + numel.div_ceil(block) * 4
                }
                Some(dtype) => numel * dtype.size() as u64,
                None => numel * 4,
            };
        }
    }
    let mut bytes = Bytes(0);
    module.visit(&mut bytes);
    bytes.0
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
