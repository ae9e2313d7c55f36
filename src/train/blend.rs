//! Weight-space ensembling (WiSE-FT, Wortsman et al. 2022) of a fine-tuned U-Net with the one it was
//! fine-tuned from, into a new diffusers folder.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::files;

/// Weight-space ensembling of a fine-tuned U-Net with the one it was fine-tuned from (WiSE-FT, Wortsman et al.
/// 2022): writes to `out`, which must not exist yet, a copy of the diffusers folder `tuned` whose U-Net
/// weights are (1 − weight) · base + weight · tuned, tensor by tensor. A fine-tune that gains on some
/// attributes and loses on others can keep much of both. int8 files (a shipped folder) are dequantized first;
/// both U-Nets must hold the same tensors. The text encoder and autoencoder are `tuned`'s, which a U-Net-only
/// fine-tune shares with `base`.
pub fn blend_unet(base: &Path, tuned: &Path, weight: f32, out: &Path) -> Result<()> {
    if !(0.0..=1.0).contains(&weight) {
        return Err(Error::arg(format!("the blend weight must be in 0..=1, got {weight}")));
    }
    if out.exists() {
        return Err(Error::arg(format!("{} exists; blend into a new folder", out.display())));
    }
    let unet = |dir: &Path| dir.join("unet/diffusion_pytorch_model.safetensors");
    let read = |path: PathBuf| -> Result<Vec<u8>> {
        let bytes = crate::files::read(&path)?;
        crate::quantize::dequantize(&path.display().to_string(), &bytes)
    };
    let blended = blend(&unet(tuned).display().to_string(), &read(unet(base))?, &read(unet(tuned))?, weight)?;
    copy_dir(tuned, out)?;
    files::write(&unet(out), &blended)
}

/// (1 − weight) · base + weight · tuned for every tensor of two safetensors files with the same tensors.
fn blend(what: &str, base: &[u8], tuned: &[u8], weight: f32) -> Result<Vec<u8>> {
    use safetensors::Dtype;
    let bad = |message: String| Error::Safetensors { what: what.to_string(), message };
    let (a, b) = (crate::codec::parse(what, base)?, crate::codec::parse(what, tuned)?);
    if a.len() != b.len() {
        return Err(bad(format!("the U-Nets hold {} and {} tensors", a.len(), b.len())));
    }
    let mut out = Vec::with_capacity(b.len());
    for (name, y) in b.tensors() {
        let x = a.tensor(&name).map_err(|_| bad(format!("tensor {name} is not in the base U-Net")))?;
        if x.shape() != y.shape() {
            return Err(bad(format!("tensor {name} has shape {:?} here, {:?} in the base", y.shape(), x.shape())));
        }
        let shape = y.shape().to_vec();
        let (x, y) = (crate::codec::floats(what, &name, &x)?, crate::codec::floats(what, &name, &y)?);
        let values = x.iter().zip(&y).flat_map(|(x, y)| ((1.0 - weight) * x + weight * y).to_le_bytes()).collect();
        out.push((name, Dtype::F32, shape, values));
    }
    crate::codec::serialize(what, out, None)
}

/// Copies the folder `from` (files and sub-folders) to `to`.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    files::create_dir(to)?;
    for entry in std::fs::read_dir(from).map_err(Error::io(from))? {
        let path = entry.map_err(Error::io(from))?.path();
        let target = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            std::fs::copy(&path, &target).map_err(Error::io(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blend_unet_mixes_the_weights_and_copies_the_rest() {
        use safetensors::{Dtype, SafeTensors};
        let dir = std::env::temp_dir().join(format!("traverse-blend-{}", std::process::id()));
        let unet_file = |model: &str, values: &[f32], shape: Vec<usize>| {
            let path = dir.join(model).join("unet/diffusion_pytorch_model.safetensors");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let file = crate::codec::serialize("t", vec![("w".into(), Dtype::F32, shape, bytes)], None).unwrap();
            std::fs::write(path, file).unwrap();
        };
        let base: Vec<f32> = (0..2048).map(|i| (i % 7) as f32).collect();
        let tuned: Vec<f32> = (0..2048).map(|i| (i % 5) as f32 - 2.0).collect();
        unet_file("base", &base, vec![32, 64]);
        unet_file("tuned", &tuned, vec![32, 64]);
        std::fs::write(dir.join("tuned/model_index.json"), "{}").unwrap();
        blend_unet(&dir.join("base"), &dir.join("tuned"), 0.25, &dir.join("out")).unwrap();
        let bytes = std::fs::read(dir.join("out/unet/diffusion_pytorch_model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let w = crate::codec::floats("t", "w", &st.tensor("w").unwrap()).unwrap();
        assert!(w.iter().zip(base.iter().zip(&tuned)).all(|(w, (x, y))| (w - (0.75 * x + 0.25 * y)).abs() < 1e-6));
        assert_eq!(std::fs::read_to_string(dir.join("out/model_index.json")).unwrap(), "{}");

        // An int8 base (a shipped folder) is dequantized first: within its rounding of the base.
        let path = dir.join("base/unet/diffusion_pytorch_model.safetensors");
        std::fs::write(&path, crate::quantize::quantize("t", &std::fs::read(&path).unwrap()).unwrap()).unwrap();
        blend_unet(&dir.join("base"), &dir.join("tuned"), 0.5, &dir.join("int8")).unwrap();
        let bytes = std::fs::read(dir.join("int8/unet/diffusion_pytorch_model.safetensors")).unwrap();
        let w =
            crate::codec::floats("t", "w", &SafeTensors::deserialize(&bytes).unwrap().tensor("w").unwrap()).unwrap();
        assert!(w.iter().zip(base.iter().zip(&tuned)).all(|(w, (x, y))| (w - 0.5 * (x + y)).abs() < 0.05));

        // Refused, with nothing written: an existing output, a weight outside 0..=1, other tensors.
        assert!(blend_unet(&dir.join("base"), &dir.join("tuned"), 0.5, &dir.join("out")).is_err());
        assert!(blend_unet(&dir.join("base"), &dir.join("tuned"), 1.5, &dir.join("new")).is_err());
        unet_file("base", &base, vec![64, 32]);
        assert!(blend_unet(&dir.join("base"), &dir.join("tuned"), 0.5, &dir.join("new")).is_err());
        assert!(!dir.join("new").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
