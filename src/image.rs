//! Conversions between image tensors (`[1, 3, H, W]` in [-1, 1], as the VAE uses them) and RGB images.

use ::image::{ImageBuffer, Rgb, RgbImage, imageops};
use burn::prelude::*;

use crate::error::{Error, Result};

/// The largest image side, in pixels, that anything here generates or resizes to (8× SD 1.5's 512).
pub const MAX_IMAGE_SIZE: usize = 4096;

/// `[1, 3, H, W]` floats in [-1, 1] (any batch row 0) → 8-bit RGB, as diffusers' `numpy_to_pil` rounds.
pub fn to_rgb(data: &[f32], height: usize, width: usize) -> Result<RgbImage> {
    let plane = height * width;
    if data.len() < 3 * plane {
        return Err(Error::Image(format!("{} values for a 3×{height}×{width} image", data.len())));
    }
    let px = |v: f32| ((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
    Ok(ImageBuffer::from_fn(width as u32, height as u32, |x, y| {
        let i = y as usize * width + x as usize;
        Rgb([px(data[i]), px(data[plane + i]), px(data[2 * plane + i])])
    }))
}

/// Reads a decoded image tensor back from the device as an RGB image.
pub fn tensor_to_rgb(image: Tensor<4>) -> Result<RgbImage> {
    let [_, c, h, w] = image.dims();
    if c != 3 {
        return Err(Error::Image(format!("expected 3 channels, got {c}")));
    }
    to_rgb(&crate::readback::values(image.narrow(0, 0, 1))?, h, w)
}

/// Decodes a PNG or JPEG (`name` for messages) that someone brought, refusing one whose decoding would take
/// more than `max_bytes` (the `image` crate checks its header's size against that before allocating).
pub fn decode_limited(name: &str, bytes: &[u8], max_bytes: u64) -> Result<RgbImage> {
    let bad = |e: &dyn std::fmt::Display| Error::Image(format!("{name}: {e}"));
    let mut reader =
        ::image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| bad(&e))?;
    let mut limits = ::image::Limits::default();
    limits.max_alloc = Some(max_bytes);
    reader.limits(limits);
    Ok(reader.decode().map_err(|e| bad(&e))?.to_rgb8())
}

/// An RGB image → `[1, 3, H, W]` in [-1, 1], resized (Lanczos) to `height`×`width` first if needed.
pub fn rgb_to_tensor(img: &RgbImage, height: usize, width: usize, device: &Device) -> Tensor<4> {
    let img = if img.dimensions() == (width as u32, height as u32) {
        img.clone()
    } else {
        imageops::resize(img, width as u32, height as u32, imageops::FilterType::Lanczos3)
    };
    let plane = height * width;
    let mut data = vec![0f32; 3 * plane];
    for (x, y, p) in img.enumerate_pixels() {
        let i = y as usize * width + x as usize;
        for c in 0..3 {
            data[c * plane + i] = p.0[c] as f32 / 127.5 - 1.0;
        }
    }
    Tensor::from_data(TensorData::new(data, [1, 3, height, width]), device)
}

/// Lays images out in a grid with `columns` columns and a 2-pixel gap.
pub fn contact_sheet(images: &[RgbImage], columns: usize) -> RgbImage {
    let columns = columns.max(1);
    let (w, h) = images.first().map(|i| i.dimensions()).unwrap_or((1, 1));
    let rows = images.len().div_ceil(columns).max(1);
    let gap = 2;
    let mut sheet =
        RgbImage::from_pixel(columns as u32 * (w + gap) - gap, rows as u32 * (h + gap) - gap, Rgb([255, 255, 255]));
    for (k, img) in images.iter().enumerate() {
        let (x, y) = ((k % columns) as u32 * (w + gap), (k / columns) as u32 * (h + gap));
        imageops::overlay(&mut sheet, img, x as i64, y as i64);
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        RgbImage::new(w, h).write_to(&mut std::io::Cursor::new(&mut out), ::image::ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn brought_images_decode_within_their_limit() {
        assert_eq!(decode_limited("a.png", &png(3, 2), 1 << 20).unwrap().dimensions(), (3, 2));
        // 2000×2000 RGB needs 12 MB: refused at 1 MB before anything that size is allocated.
        let err = decode_limited("big.png", &png(2000, 2000), 1 << 20).unwrap_err().to_string();
        assert!(err.contains("big.png") && err.to_lowercase().contains("limit"), "{err}");
        let err = decode_limited("x.png", b"not an image", 1 << 20).unwrap_err().to_string();
        assert!(err.contains("x.png"), "{err}");
        let mut cut = png(64, 64);
        cut.truncate(cut.len() / 2);
        assert!(decode_limited("cut.png", &cut, 1 << 20).is_err());
    }
}
