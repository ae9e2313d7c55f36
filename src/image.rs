//! Conversions between image tensors (`[1, 3, H, W]` in [-1, 1], as the VAE uses them) and RGB images.

use ::image::{ImageBuffer, Rgb, RgbImage, imageops};
use burn::prelude::*;

use crate::error::{Error, Result};

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
