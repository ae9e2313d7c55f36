//! The safetensors codec, below everything that loads weights: a strict check of a file's header against its
//! real length (reading at most [`MAX_HEADER_BYTES`] of JSON), float tensors read as f32, and files written.
//!
//! burn-store trusts a file's header; a hostile header could make it map or allocate whatever the header
//! says. So every file is first checked here, before burn-store (or our int8 code) sees it.

use std::collections::BTreeMap;

use safetensors::SafeTensors;
use safetensors::tensor::TensorView;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Largest safetensors JSON header we accept (the safetensors crate's own limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One safetensors file, in memory (browser, tests) or on disk (CLI).
pub enum WeightFile {
    /// The whole file's bytes, with a name for messages.
    Bytes {
        /// Name used in error messages.
        name: String,
        /// File content, shared (the loader copies it only for a non-int8 file whose bytes are still held
        /// elsewhere).
        bytes: std::sync::Arc<Vec<u8>>,
    },
    /// A file on disk; it is memory-mapped by burn-store after its header has been checked.
    #[cfg(not(target_arch = "wasm32"))]
    Path(std::path::PathBuf),
}

impl WeightFile {
    /// The file's name, for messages.
    pub fn name(&self) -> String {
        match self {
            Self::Bytes { name, .. } => name.clone(),
            #[cfg(not(target_arch = "wasm32"))]
            Self::Path(p) => p.display().to_string(),
        }
    }
}

/// What the header says about one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// safetensors dtype name (F32, F16, BF16, ...).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Where its bytes are in the whole file.
    pub bytes: std::ops::Range<usize>,
}

#[derive(Deserialize)]
struct RawInfo {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// Checks a safetensors header against the length of the data that follows it: known dtypes, shapes whose
/// byte size equals their offset range, offsets inside the data, tensors that neither overlap nor leave
/// gaps, and a data section that ends where the last tensor ends. Byte ranges in the table count from the
/// file's start (the data follows the 8-byte length and the header).
pub fn check_header(what: &str, header: &[u8], data_len: u64) -> Result<BTreeMap<String, TensorInfo>> {
    checked_table(what, header, Some(data_len)).map(|(table, _)| table)
}

/// [`check_header`] for a file whose length is not known yet (a download in progress): the same checks, the
/// data section taken to end where the last tensor ends; returns the table and that data length, which the
/// rest of the stream must then match.
pub fn check_streamed_header(what: &str, header: &[u8]) -> Result<(BTreeMap<String, TensorInfo>, u64)> {
    checked_table(what, header, None)
}

fn checked_table(what: &str, header: &[u8], data_len: Option<u64>) -> Result<(BTreeMap<String, TensorInfo>, u64)> {
    let base = 8 + header.len() as u64;
    let bad = |message: String| Error::Safetensors { what: what.to_string(), message };
    let raw: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| bad(format!("header is not a JSON object: {e}")))?;
    let mut spans = Vec::with_capacity(raw.len());
    let mut out = BTreeMap::new();
    for (name, value) in raw {
        if name == "__metadata__" {
            continue;
        }
        let info: RawInfo =
            serde_json::from_value(value).map_err(|e| bad(format!("tensor '{name}' has a malformed entry: {e}")))?;
        let size =
            dtype_size(&info.dtype).ok_or_else(|| bad(format!("tensor '{name}' has unknown dtype {}", info.dtype)))?;
        let count = info
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(size))
            .ok_or_else(|| bad(format!("tensor '{name}' has an overflowing shape {:?}", info.shape)))?;
        let [start, end] = info.data_offsets;
        if start > end || end - start != count {
            return Err(bad(format!(
                "tensor '{name}' of shape {:?} {} needs {count} bytes but its offsets are {start}..{end}",
                info.shape, info.dtype
            )));
        }
        if let Some(data_len) = data_len.filter(|&n| end > n) {
            return Err(bad(format!(
                "tensor '{name}' ends at byte {end} but the file has only {data_len} data bytes (truncated?)"
            )));
        }
        let shape = info
            .shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| bad(format!("tensor '{name}' dimension {d} too large"))))
            .collect::<Result<Vec<_>>>()?;
        spans.push((start, end, name.clone()));
        let at = |offset: u64| {
            usize::try_from(base + offset)
                .map_err(|_| bad(format!("tensor '{name}' lies beyond this machine's memory")))
        };
        let bytes = at(start)?..at(end)?;
        out.insert(name, TensorInfo { dtype: info.dtype, shape, bytes });
    }
    spans.sort();
    let mut cursor = 0;
    for (start, end, name) in &spans {
        if *start != cursor {
            return Err(bad(format!("tensor '{name}' starts at byte {start}, expected {cursor} (overlap or gap)")));
        }
        cursor = *end;
    }
    if let Some(data_len) = data_len.filter(|&n| n != cursor) {
        return Err(bad(format!("tensors cover {cursor} data bytes but the file has {data_len}")));
    }
    Ok((out, cursor))
}

/// Splits a whole safetensors file into (header JSON, data length) after checking the length prefix.
fn split_bytes<'a>(what: &str, bytes: &'a [u8]) -> Result<(&'a [u8], u64)> {
    let bad = |message: String| Error::Safetensors { what: what.to_string(), message };
    let prefix: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad(format!("file has {} bytes, fewer than the 8-byte header length", bytes.len())))?;
    let n = u64::from_le_bytes(prefix);
    let total = bytes.len() as u64;
    if n > MAX_HEADER_BYTES || n > total - 8 {
        return Err(bad(format!(
            "header length {n} exceeds the file ({total} bytes) or the {MAX_HEADER_BYTES}-byte limit"
        )));
    }
    Ok((&bytes[8..8 + n as usize], total - 8 - n))
}

/// Reads and checks the header of a file on disk without reading its tensor data.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_header(path: &std::path::Path) -> Result<BTreeMap<String, TensorInfo>> {
    use std::io::Read;
    let what = path.display().to_string();
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let total = file.metadata().map_err(io)?.len();
    let bad = |message: String| Error::Safetensors { what: what.clone(), message };
    if total < 8 {
        return Err(bad(format!("file has {total} bytes, fewer than the 8-byte header length")));
    }
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).map_err(io)?;
    let n = u64::from_le_bytes(prefix);
    if n > MAX_HEADER_BYTES || n > total - 8 {
        return Err(bad(format!(
            "header length {n} exceeds the file ({total} bytes) or the {MAX_HEADER_BYTES}-byte limit"
        )));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(io)?;
    check_header(&what, &header, total - 8 - n)
}

/// Checks the header of a file's bytes (`name` for messages) and returns its tensor table.
pub fn inspect_bytes(name: &str, bytes: &[u8]) -> Result<BTreeMap<String, TensorInfo>> {
    let (header, data_len) = split_bytes(name, bytes)?;
    check_header(name, header, data_len)
}

/// Checks a file's header and returns its tensor table.
pub fn inspect(file: &WeightFile) -> Result<BTreeMap<String, TensorInfo>> {
    match file {
        WeightFile::Bytes { name, bytes } => inspect_bytes(name, bytes),
        #[cfg(not(target_arch = "wasm32"))]
        WeightFile::Path(p) => read_header(p),
    }
}

fn bad(what: &str, message: impl Into<String>) -> Error {
    Error::Safetensors { what: what.to_string(), message: message.into() }
}

/// Parses a whole safetensors file held in memory, after [`inspect_bytes`] has checked its header.
pub fn parse<'a>(what: &str, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    inspect_bytes(what, bytes)?;
    SafeTensors::deserialize(bytes).map_err(|e| bad(what, e.to_string()))
}

/// Tensors by name: f32 values and shape.
pub type Tensors = BTreeMap<String, (Vec<f32>, Vec<usize>)>;

/// Every tensor of a whole safetensors file held in memory (`what` names it in errors), as f32 values and
/// shape by name; a tensor that is not a float is an error.
pub fn float_tensors(what: &str, bytes: &[u8]) -> Result<Tensors> {
    parse(what, bytes)?
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = floats(what, &name, &view)?;
            Ok((name, (values, view.shape().to_vec())))
        })
        .collect()
}

/// Values of a float tensor as f32.
pub fn floats(what: &str, name: &str, view: &TensorView) -> Result<Vec<f32>> {
    float_values(what, name, &format!("{:?}", view.dtype()), view.data())
}

/// Little-endian `data` of a `dtype` (F32, F16 or BF16) tensor as f32 values.
pub fn float_values(what: &str, name: &str, dtype: &str, data: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        "F32" => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        "F16" => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        "BF16" => data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(bad(what, format!("tensor {name} has dtype {other}, expected a float"))),
    })
}

/// A safetensors file of `(name, dtype, shape, little-endian bytes)` tensors with optional header metadata;
/// `what` names the file in errors.
pub fn serialize(
    what: &str,
    tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>,
    meta: Option<std::collections::HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let bad = |e: safetensors::SafeTensorError| Error::Safetensors { what: what.to_string(), message: e.to_string() };
    let views = tensors
        .iter()
        .map(|(n, d, s, b)| safetensors::tensor::TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(bad)?;
    safetensors::serialize(views, meta).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend(std::iter::repeat_n(0u8, data));
        v
    }

    fn check(bytes: &[u8]) -> Result<BTreeMap<String, TensorInfo>> {
        inspect(&WeightFile::Bytes { name: "t".into(), bytes: bytes.to_vec().into() })
    }

    #[test]
    fn accepts_a_well_formed_file() {
        let h = r#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"F16","shape":[4],"data_offsets":[24,32]}}"#;
        let t = check(&file(h, 32)).unwrap();
        assert_eq!(t["a"].shape, vec![2, 3]);
        assert_eq!(t["b"].dtype, "F16");
    }

    #[test]
    fn rejects_hostile_headers() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 2, 3], "fewer than the 8-byte"),
            (u64::MAX.to_le_bytes().to_vec(), "exceeds the file"),
            (file("not json", 0), "not a JSON object"),
            (file(r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, 8), "truncated"),
            (file(r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}"#, 12), "needs 16 bytes"),
            (file(r#"{"a":{"dtype":"Q99","shape":[4],"data_offsets":[0,16]}}"#, 16), "unknown dtype"),
            (
                file(r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}"#, 16),
                "overflowing shape",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
                    24,
                ),
                "overlap or gap",
            ),
            (file(r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, 20), "cover 16 data bytes"),
            (file(r#"{"a":{"dtype":"F32","shape":[4]}}"#, 16), "malformed entry"),
        ];
        for (bytes, expected) in cases {
            let err = check(&bytes).unwrap_err().to_string();
            assert!(err.contains(expected), "expected '{expected}' in '{err}'");
        }
    }
}
