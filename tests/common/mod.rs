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

/// Largest absolute difference between two equally long lists of values.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Largest absolute difference between a tensor and reference values of the same shape.
pub fn max_abs_err<const D: usize>(got: Tensor<D>, want: &Ref) -> f32 {
    assert_eq!(got.dims().to_vec(), want.shape, "shape");
    max_diff(got.into_data().convert::<f32>().as_slice::<f32>().unwrap(), &want.data)
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

/// `scripts/make_lpips_fixture.py`'s AlexNet weights: a stepped ramp exact in any language.
fn formula_weight(shape: &[usize], layer: i64, bias: bool) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let fan_in = if bias { 1 } else { n / shape[0] };
    let amp = if bias { 0.01 } else { (6.0 / fan_in as f64).sqrt() };
    (0..n as i64)
        .map(|i| {
            let level = ((i * 7919 + layer * 104729 + i64::from(bias) * 15485863) % 2001) as f64 / 1000.0 - 1.0;
            (level * amp) as f32
        })
        .collect()
}

/// The LPIPS fixture's weights as a safetensors file with the `lpips` package's state-dict names: the
/// formula AlexNet and the package's real linear heads (stored in the fixture), which it also repeats as
/// `lins.k`, and its input scaling buffer.
pub fn lpips_test_weights() -> Vec<u8> {
    let r = load_reference("lpips_reference.safetensors");
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let f32s = Dtype::F32;
    // AlexNet `features` as the lpips package names them (slice k holds torchvision's layer index).
    let convs: [(usize, usize, [usize; 4]); 5] = [
        (1, 0, [64, 3, 11, 11]),
        (2, 3, [192, 64, 5, 5]),
        (3, 6, [384, 192, 3, 3]),
        (4, 8, [256, 384, 3, 3]),
        (5, 10, [256, 256, 3, 3]),
    ];
    let mut tensors = Vec::new();
    for (layer, (slice, index, shape)) in convs.into_iter().enumerate() {
        let w = formula_weight(&shape, layer as i64, false);
        let b = formula_weight(&shape[..1], layer as i64, true);
        tensors.push((format!("net.slice{slice}.{index}.weight"), f32s, shape.to_vec(), bytes(&w)));
        tensors.push((format!("net.slice{slice}.{index}.bias"), f32s, vec![shape[0]], bytes(&b)));
    }
    for k in 0..5 {
        let lin = &r[&format!("lin{k}.model.1.weight")];
        tensors.push((format!("lin{k}.model.1.weight"), f32s, lin.shape.clone(), bytes(&lin.data)));
        tensors.push((format!("lins.{k}.model.1.weight"), f32s, lin.shape.clone(), bytes(&lin.data)));
    }
    tensors.push(("scaling_layer.shift".into(), f32s, vec![1, 3, 1, 1], bytes(&[-0.030, -0.088, -0.188])));
    traverse::codec::serialize("lpips", tensors, None).unwrap()
}
