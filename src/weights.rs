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
use crate::quantize::Table;

/// How a model's diffusers tensor names map onto our module paths.
pub struct NameMap {
    /// Regex renames applied to the file's names (diffusers name → module path).
    pub remaps: &'static [(&'static str, &'static str)],
    /// Regexes of tensors a checkpoint may carry that the model does not use (e.g. `position_ids`).
    pub ignore: &'static [&'static str],
}

/// Lines of a weight-mismatch error beyond which the rest are counted, not listed.
const MAX_REPORTED: usize = 40;

/// The float type a device computes in: f32 everywhere, or f16 (weights, activations and latents; int8 weights
/// stay int8) where the device supports it, as GPUs with WebGPU's `shader-f16` or Vulkan's 16-bit storage do.
/// f16 halves the memory of every float and runs faster on such GPUs, at f16's precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats: the reference numbers.
    #[default]
    F32,
    /// 16-bit floats.
    F16,
}

impl Precision {
    /// The precision `device` computes in (f32 unless [`Precision::configure`] set f16).
    pub fn of(device: &Device) -> Self {
        match DType::from(device.settings().float_dtype) {
            DType::F16 => Self::F16,
            _ => Self::F32,
        }
    }

    /// Bytes per value.
    pub fn bytes(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }

    /// Makes `device` compute in this precision: what every float tensor and loaded weight on it will be. Must
    /// come before any tensor is made on the device; an error when the device cannot compute in f16.
    pub fn configure(self, device: &mut Device) -> Result<()> {
        if Self::of(device) == self {
            return Ok(());
        }
        if self == Self::F16 && !device.supports_dtype(DType::F16) {
            return Err(Error::Device(
                "this GPU cannot compute in f16 (its adapter lacks shader-f16 / 16-bit storage); use f32".into(),
            ));
        }
        let dtype = match self {
            Self::F32 => burn::tensor::FloatDType::F32,
            Self::F16 => burn::tensor::FloatDType::F16,
        };
        device
            .configure(burn::tensor::DeviceConfig::default().float_dtype(dtype))
            .map_err(|e| Error::Device(format!("could not set the device's precision to {self}: {e}")))
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            other => Err(Error::Device(format!("unknown precision {other:?}: f32 or f16"))),
        }
    }
}

/// How the weights of int8 files are kept on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// Every weight as a float of the device's precision (f32, or f16 where the device was configured for it:
    /// [`Precision`]), dequantized as it is loaded.
    #[default]
    Float,
    /// The int8 weights of linear, convolution and embedding layers stay int8 on the device (burn's quantized
    /// tensors: a quarter of the f32 memory), dequantized inside burn's matmul, per convolution call or per
    /// looked-up row; norms and biases as floats of the device's precision.
    /// The numbers are the f32 path's on GPU backends (cubecl); burn's CPU backend quantizes the activations
    /// in its quantized matmul, so the CPU keeps [`Storage::Float`].
    Int8,
}

impl Storage {
    /// Device bytes `module`'s parameters will take once loaded from int8 files, from its (lazy) shapes alone:
    /// what [`load_stored`] keeps int8 counts one byte per value plus one f32 scale per block, the rest as floats
    /// of the device's precision.
    pub fn planned_bytes<M: burn::module::Module>(self, module: &M) -> u64 {
        struct Plan {
            storage: Storage,
            float_bytes: u64,
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
                    _ => numel * self.float_bytes,
                };
            }
        }
        let float_bytes = float_dtype(module).size() as u64;
        let mut plan = Plan { storage: self, float_bytes, path: vec![], containers: vec![], bytes: 0 };
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
/// burn-store's PyTorch adapter and every float to the device's float dtype (f32 unless the device was
/// configured for f16). Fails with one error naming every missing, unexpected or mis-shaped tensor.
pub fn load_into<M: ModuleSnapshot>(
    module: &mut M,
    model: &str,
    files: Vec<WeightFile>,
    names: &NameMap,
) -> Result<()> {
    load_stored(module, model, files, names, Storage::Float)
}

/// [`load_into`] keeping int8 weights as `storage` says.
pub fn load_stored<M: ModuleSnapshot>(
    module: &mut M,
    model: &str,
    files: Vec<WeightFile>,
    names: &NameMap,
    storage: Storage,
) -> Result<()> {
    let mut loading = Loading::new(module, model, names, storage);
    for file in files {
        loading.apply(file)?;
    }
    loading.finish()
}

/// One model's weights applied file by file, or piece by piece as a download arrives ([`Stream`]): what each
/// file set, lacked or carried in excess is gathered, and [`Loading::finish`] reports every missing, unexpected
/// or mis-shaped tensor of them all in one error.
pub struct Loading<'a, M> {
    module: &'a mut M,
    model: String,
    names: &'a NameMap,
    storage: Storage,
    applied: BTreeSet<String>,
    missing: BTreeSet<String>,
    unused: BTreeSet<String>,
    errors: Vec<ApplyError>,
}

impl<'a, M: ModuleSnapshot> Loading<'a, M> {
    /// Starts loading `module` (`model` names it in errors), keeping int8 weights as `storage` says.
    pub fn new(module: &'a mut M, model: &str, names: &'a NameMap, storage: Storage) -> Self {
        Self {
            module,
            model: model.to_string(),
            names,
            storage,
            applied: BTreeSet::new(),
            missing: BTreeSet::new(),
            unused: BTreeSet::new(),
            errors: Vec::new(),
        }
    }

    /// Applies the tensors of one safetensors file (a whole file, a shard or a piece of one); a malformed file
    /// is an error at once, tensors that do not fit the model are reported by [`Loading::finish`].
    pub fn apply(&mut self, file: WeightFile) -> Result<()> {
        let (module, names) = (&mut *self.module, self.names);
        let float = float_dtype(module);
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
            let kept = match self.storage {
                Storage::Float => BTreeSet::new(),
                Storage::Int8 => keep_int8(module, &what, &bytes, &table, renames.into_iter().collect())?,
            };
            let tensors = tensors.into_iter().filter(|t| !kept.contains(&t.name)).collect();
            let adapter = PyTorchToBurnAdapter.chain(FloatCastAdapter::to(float));
            let mut result = module.apply(tensors, None, Some(Box::new(adapter)), true);
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
                .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(float)))
                .allow_partial(true)
                .validate(false)
                .skip_enum_variants(true);
            module
                .load_from(&mut store)
                .map_err(|e| Error::Safetensors { what: what.clone(), message: e.to_string() })?
        };
        let ignore = names.ignore.iter().map(|p| glob(p)).collect::<Vec<_>>();
        self.applied.extend(result.applied);
        self.missing.extend(result.missing.into_iter().map(|(path, _)| path));
        self.unused.extend(result.unused.into_iter().filter(|k| !ignore.iter().any(|re| re(k))));
        self.errors.extend(result.errors);
        Ok(())
    }

    /// Ends the loading: every parameter set once, no tensor left over, or one error listing each problem.
    pub fn finish(self) -> Result<()> {
        let mut lines: Vec<String> =
            self.missing.difference(&self.applied).map(|p| format!("missing tensor: {p}")).collect();
        lines.extend(self.unused.iter().map(|k| format!("unexpected tensor: {k}")));
        lines.extend(self.errors.iter().map(|e| match e {
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
        Err(Error::WeightMismatch { model: self.model, details })
    }
}

/// Tensor data gathered into one piece of a [`Stream`] before it is handed on.
pub const PIECE_BYTES: usize = 32 << 20;

/// A safetensors file arriving in chunks (a download) cut into self-contained safetensors files ("pieces") of
/// whole tensors as they complete, so a loader ([`Loading::apply`]) never holds the whole file: a given amount of
/// data each ([`PIECE_BYTES`] on the page; a larger tensor makes a piece alone). The header is checked as soon as it is
/// in ([`crate::codec::check_streamed_header`], and the int8 scale pairs), before any tensor data is used. In
/// an int8 file each weight travels in the piece of its scales: a weight waits for scales that come later (the
/// files `traverse quantize` writes put every scale first, so nothing waits).
pub struct Stream {
    what: String,
    piece_bytes: usize,
    /// The file's length, where the server said it.
    length: Option<u64>,
    received: u64,
    /// The length prefix and header, until the header is complete.
    head: Vec<u8>,
    table: Option<Table>,
    /// Tensor names by position in the file, and how many of them are complete.
    order: Vec<String>,
    done: usize,
    /// The bytes of the tensor being received.
    current: Vec<u8>,
    /// Complete tensors not yet handed on, and their bytes.
    ready: Vec<(String, Vec<u8>)>,
    ready_bytes: usize,
    /// int8 scales whose weight has not arrived, and int8 weights whose scales have not.
    scales: HashMap<String, Vec<u8>>,
    waiting: HashMap<String, Vec<u8>>,
}

impl Stream {
    /// A stream of the file `what` (named in errors), `length` bytes long where known, cut into pieces of
    /// about `piece_bytes` of tensor data.
    pub fn new(what: &str, length: Option<u64>, piece_bytes: usize) -> Self {
        Self {
            what: what.to_string(),
            piece_bytes,
            length,
            received: 0,
            head: Vec::new(),
            table: None,
            order: Vec::new(),
            done: 0,
            current: Vec::new(),
            ready: Vec::new(),
            ready_bytes: 0,
            scales: HashMap::new(),
            waiting: HashMap::new(),
        }
    }

    /// The file's checked tensor table, once its header has arrived.
    pub fn table(&self) -> Option<&Table> {
        self.table.as_ref()
    }

    fn bad(&self, message: String) -> Error {
        Error::Safetensors { what: self.what.clone(), message }
    }

    /// Takes the next chunk of the file; returns the pieces it completed.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<WeightFile>> {
        self.received += chunk.len() as u64;
        if let Some(length) = self.length.filter(|&n| self.received > n) {
            return Err(self.bad(format!("more than the announced {length} bytes arrived")));
        }
        let mut pieces = Vec::new();
        while self.table.is_none() {
            if chunk.is_empty() {
                return Ok(pieces);
            }
            let want = match self.head.get(..8) {
                None => 8,
                Some(prefix) => 8 + u64::from_le_bytes(prefix.try_into().unwrap_or_default()) as usize,
            };
            let n = (want - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
            if self.head.len() == 8 {
                let n = u64::from_le_bytes(self.head[..8].try_into().unwrap_or_default());
                if n > crate::codec::MAX_HEADER_BYTES || self.length.is_some_and(|l| n > l.saturating_sub(8)) {
                    return Err(self.bad(format!(
                        "header length {n} exceeds the file or the {}-byte limit",
                        crate::codec::MAX_HEADER_BYTES
                    )));
                }
            } else if self.head.len() == want {
                self.start()?;
            }
        }
        loop {
            self.complete_tensors(&mut pieces)?;
            if chunk.is_empty() {
                return Ok(pieces);
            }
            let Some(name) = self.order.get(self.done) else {
                return Err(self.bad("data beyond the last tensor".into()));
            };
            let need = self.tensor_len(name) - self.current.len();
            let n = need.min(chunk.len());
            self.current.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
        }
    }

    /// Checks the header just completed and orders its tensors by position.
    fn start(&mut self) -> Result<()> {
        let (table, data_len) = crate::codec::check_streamed_header(&self.what, &self.head[8..])?;
        let total = self.head.len() as u64 + data_len;
        if let Some(length) = self.length.filter(|&n| n != total) {
            return Err(self.bad(format!("the header describes {total} bytes but the file has {length}")));
        }
        crate::quantize::check_pairs(&self.what, &table)?;
        let mut order: Vec<&String> = table.keys().collect();
        order.sort_by_key(|name| table[*name].bytes.start);
        self.order = order.into_iter().cloned().collect();
        self.head = Vec::new();
        self.table = Some(table);
        Ok(())
    }

    fn tensor_len(&self, name: &str) -> usize {
        self.table.as_ref().map_or(0, |t| t[name].bytes.len())
    }

    /// Hands on every tensor now complete (zero-sized ones included), cutting a piece when enough is ready.
    fn complete_tensors(&mut self, pieces: &mut Vec<WeightFile>) -> Result<()> {
        while let Some(name) = self.order.get(self.done).filter(|n| self.current.len() == self.tensor_len(n)) {
            let (name, bytes) = (name.clone(), std::mem::take(&mut self.current));
            self.done += 1;
            let table = self.table.as_ref().expect("complete_tensors runs after start");
            let scale_of = name.strip_suffix(crate::quantize::SCALE_SUFFIX).filter(|b| table.contains_key(*b));
            if let Some(weight) = scale_of {
                match self.waiting.remove(weight) {
                    Some(w) => self.ready(vec![(weight.to_string(), w), (name, bytes)]),
                    None => drop(self.scales.insert(name, bytes)),
                }
            } else if table[&name].dtype == "I8" {
                match self.scales.remove(&format!("{name}{}", crate::quantize::SCALE_SUFFIX)) {
                    Some(s) => self.ready(vec![(format!("{name}{}", crate::quantize::SCALE_SUFFIX), s), (name, bytes)]),
                    None => drop(self.waiting.insert(name, bytes)),
                }
            } else {
                self.ready(vec![(name, bytes)]);
            }
            if self.ready_bytes >= self.piece_bytes {
                pieces.push(self.piece()?);
            }
        }
        Ok(())
    }

    fn ready(&mut self, tensors: Vec<(String, Vec<u8>)>) {
        self.ready_bytes += tensors.iter().map(|(_, b)| b.len()).sum::<usize>();
        self.ready.extend(tensors);
    }

    /// The ready tensors as one safetensors file, with the dtypes and shapes the header gave them.
    fn piece(&mut self) -> Result<WeightFile> {
        let table = self.table.as_ref().expect("pieces are cut after start");
        let mut header = serde_json::Map::new();
        let mut offset = 0;
        for (name, bytes) in &self.ready {
            let info = &table[name];
            header.insert(
                name.clone(),
                serde_json::json!({"dtype": info.dtype, "shape": info.shape, "data_offsets": [offset, offset + bytes.len()]}),
            );
            offset += bytes.len();
        }
        let mut json = serde_json::to_vec(&header).map_err(|e| self.bad(e.to_string()))?;
        // safetensors pads the header so the data starts 8-byte aligned.
        json.resize(json.len().next_multiple_of(8), b' ');
        let mut file = Vec::with_capacity(8 + json.len() + offset);
        file.extend_from_slice(&(json.len() as u64).to_le_bytes());
        file.extend_from_slice(&json);
        for (_, bytes) in std::mem::take(&mut self.ready) {
            file.extend_from_slice(&bytes);
        }
        self.ready_bytes = 0;
        Ok(WeightFile::Bytes { name: self.what.clone(), bytes: Arc::new(file) })
    }

    /// Ends the stream: the last piece, or an error when the file stopped short.
    pub fn finish(mut self) -> Result<Vec<WeightFile>> {
        if self.table.is_none() || self.done < self.order.len() {
            let expected = self.length.map_or(String::new(), |n| format!(" of {n}"));
            return Err(self.bad(format!("the file ended after {}{expected} bytes (truncated?)", self.received)));
        }
        // The header's scale pairs were checked, so every weight met its scales by now.
        if self.ready.is_empty() { Ok(Vec::new()) } else { Ok(vec![self.piece()?]) }
    }
}

/// Every tensor of a checked int8 file but the scales, each an f32 tensor drawn from `bytes` only when burn
/// applies it.
fn int8_tensors(what: &str, bytes: Arc<Vec<u8>>, table: &Table) -> Vec<PackTensor> {
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

/// The float dtype of `module`'s device (f32 unless it was configured for f16), which every float weight is
/// loaded as: burn computes a layer in its operands' dtype, so weights and activations must agree.
fn float_dtype<M: burn::module::Module>(module: &M) -> DType {
    module.devices().first().map_or(DType::F32, |d| d.settings().float_dtype.into())
}

/// Puts the int8 weights of `module`'s linear, convolution and embedding layers on its device as burn quantized tensors,
/// straight from the file's bytes (`paths`: module path → file tensor name); returns the module paths it set.
/// A weight whose shape is not the layer's is left for burn-store, which reports it.
fn keep_int8<M: ModuleSnapshot>(
    module: &mut M,
    what: &str,
    bytes: &[u8],
    table: &Table,
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
    table: &'a Table,
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
    fn precisions_parse_and_the_cpu_starts_in_f32() {
        assert_eq!("f16".parse::<Precision>().unwrap(), Precision::F16);
        assert_eq!(Precision::F16.to_string(), "f16");
        assert!("bf16".parse::<Precision>().unwrap_err().to_string().contains("f32 or f16"));
        assert_eq!(Precision::of(&Device::flex()), Precision::F32);
        assert_eq!((Precision::F32.bytes(), Precision::F16.bytes()), (4, 2));
    }

    /// A safetensors file whose tensors lie in the given order (name, dtype, shape, bytes).
    fn file_in_order(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut offset = 0;
        for (name, dtype, shape, bytes) in tensors {
            let span = [offset, offset + bytes.len()];
            header.insert(name.to_string(), serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": span}));
            offset += bytes.len();
        }
        let json = serde_json::to_vec(&header).unwrap();
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend(json);
        tensors.iter().for_each(|t| out.extend(&t.3));
        out
    }

    /// A piece's tensors, by name: (dtype, shape, bytes).
    type Piece = HashMap<String, (String, Vec<usize>, Vec<u8>)>;

    /// The pieces of `bytes` streamed in chunks of `chunk` bytes.
    fn pieces_of(bytes: &[u8], chunk: usize, piece_bytes: usize) -> Result<Vec<Piece>> {
        let mut stream = Stream::new("t", Some(bytes.len() as u64), piece_bytes);
        let mut pieces = Vec::new();
        for c in bytes.chunks(chunk.max(1)) {
            pieces.extend(stream.push(c)?);
        }
        pieces.extend(stream.finish()?);
        Ok(pieces
            .iter()
            .map(|p| {
                let WeightFile::Bytes { bytes, .. } = p else { unreachable!("pieces are in memory") };
                let table = crate::codec::inspect_bytes("piece", bytes).unwrap();
                table.into_iter().map(|(n, i)| (n, (i.dtype, i.shape, bytes[i.bytes].to_vec()))).collect()
            })
            .collect())
    }

    #[test]
    fn a_stream_cuts_whole_tensors_into_pieces_with_their_scales() {
        let scale = 2f32.to_le_bytes().repeat(4);
        // An int8 weight before its scales (it waits for them), a float tensor, an empty one.
        let tensors = [
            ("w", "I8", vec![4, 300], vec![3u8; 1200]),
            ("b", "F32", vec![100], vec![1u8; 400]),
            ("e", "F32", vec![0], vec![]),
            ("w.qscale", "F32", vec![4], scale.clone()),
        ];
        let bytes = file_in_order(&tensors);
        for (chunk, piece_bytes) in [(1, 1), (7, 500), (64, 1 << 20), (bytes.len(), 0)] {
            let pieces = pieces_of(&bytes, chunk, piece_bytes).unwrap();
            let all: HashMap<_, _> = pieces.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(all.len(), 4, "every tensor once (chunk {chunk}, pieces of {piece_bytes})");
            for (name, dtype, shape, data) in &tensors {
                assert_eq!(all[*name], (dtype.to_string(), shape.clone(), data.clone()), "{name}");
            }
            let with_w = pieces.iter().find(|p| p.contains_key("w")).unwrap();
            assert!(with_w.contains_key("w.qscale"), "the weight travels with its scales");
            if piece_bytes == 1 {
                // `b` alone, then the empty `e` with the weight and its scales once they are in.
                assert_eq!(pieces.len(), 2, "a piece as soon as enough is ready");
            }
            if piece_bytes > bytes.len() {
                assert_eq!(pieces.len(), 1);
            }
        }
    }

    #[test]
    fn a_broken_stream_is_an_error() {
        let good = file_in_order(&[("a", "F32", vec![4], vec![0u8; 16]), ("b", "F32", vec![2], vec![0u8; 8])]);
        let err = |bytes: &[u8], length: Option<u64>| {
            let mut stream = Stream::new("t", length, 8);
            match stream.push(bytes) {
                Err(e) => e.to_string(),
                Ok(_) => stream.finish().err().map(|e| e.to_string()).unwrap_or_default(),
            }
        };
        assert!(err(&good[..good.len() - 3], None).contains("ended after"), "truncated");
        assert!(err(&good[..5], None).contains("ended after"), "cut in the length prefix");
        let mut longer = good.clone();
        longer.extend([0; 4]);
        assert!(err(&longer, None).contains("beyond the last tensor"));
        assert!(err(&good, Some(good.len() as u64 + 4)).contains("describes"), "length differs from the header");
        assert!(err(&good, Some(good.len() as u64 - 1)).contains("more than the announced"));
        assert!(err(&u64::MAX.to_le_bytes(), None).contains("header length"));
        let unpaired = file_in_order(&[("w", "I8", vec![2, 2], vec![0u8; 4])]);
        assert!(err(&unpaired[..unpaired.len() - 4], None).contains("has no w.qscale"), "refused before the data");
        assert!(err(&good[..20], None).contains("ended after"), "cut in the header");
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match(b"*position_ids", b"text_model.embeddings.position_ids"));
        assert!(!glob_match(b"*position_ids", b"text_model.embeddings.position_embedding.weight"));
    }
}
