//! Shared helpers for the integration tests: fixture paths and reference tensors.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use burn::prelude::*;
use safetensors::{Dtype, SafeTensors};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn device() -> Device {
    Device::flex()
}

/// A reference tensor: values as f32 (ints converted) and shape.
pub struct Ref {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
}

pub fn load_reference(name: &str) -> HashMap<String, Ref> {
    let bytes = std::fs::read(fixtures().join(name)).expect("reference fixture");
    let st = SafeTensors::deserialize(&bytes).expect("valid fixture");
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            let data = match v.dtype() {
                Dtype::F32 => v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
                Dtype::I64 => {
                    v.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect()
                }
                other => panic!("unexpected dtype {other:?}"),
            };
            (k, Ref { data, shape: v.shape().to_vec() })
        })
        .collect()
}

impl Ref {
    pub fn tensor<const D: usize>(&self, device: &Device) -> Tensor<D> {
        Tensor::from_data(TensorData::new(self.data.clone(), self.shape.clone()), device)
    }
    pub fn ids(&self) -> Vec<Vec<u32>> {
        self.data.chunks(self.shape[1]).map(|r| r.iter().map(|&x| x as u32).collect()).collect()
    }
}

/// Largest absolute difference between a tensor and reference values of the same shape.
pub fn max_abs_err<const D: usize>(got: Tensor<D>, want: &Ref) -> f32 {
    assert_eq!(got.dims().to_vec(), want.shape, "shape");
    let got = got.into_data().convert::<f32>();
    got.as_slice::<f32>().unwrap().iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

pub fn assert_close<const D: usize>(what: &str, got: Tensor<D>, want: &Ref, tol: f32) {
    let err = max_abs_err(got, want);
    let scale = want.data.iter().fold(0f32, |m, x| m.max(x.abs()));
    println!("{what}: max |err| = {err:.3e} (max |ref| = {scale:.3})");
    assert!(err <= tol, "{what}: max abs error {err} > {tol}");
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "traverse-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies a folder tree.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst)
        } else {
            std::fs::copy(e.path(), dst).map(|_| ()).unwrap()
        }
    }
}
