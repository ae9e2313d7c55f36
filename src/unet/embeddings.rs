//! Sinusoidal timestep features and the MLP that embeds them (diffusers `embeddings.py`:
//! `get_timestep_embedding`, `Timesteps`, `TimestepEmbedding`).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;

/// Sinusoidal features of `timesteps` (`[B]`), `dim` wide, exactly as diffusers computes them.
pub fn timestep_features(
    timesteps: &[f32],
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    device: &Device,
) -> Tensor<2> {
    let half = dim / 2;
    let denom = half as f64 - freq_shift;
    // diffusers computes the frequencies in f32: exp(-ln(10000) * i / denom).
    let freqs: Vec<f32> = (0..half).map(|i| ((-(10000f64.ln()) as f32) * i as f32 / denom as f32).exp()).collect();
    let mut data = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let args: Vec<f32> = freqs.iter().map(|f| t * f).collect();
        let (sin, cos): (Vec<f32>, Vec<f32>) = args.iter().map(|a| (a.sin(), a.cos())).unzip();
        let (first, second) = if flip_sin_to_cos { (cos, sin) } else { (sin, cos) };
        data.extend(first);
        data.extend(second);
        if dim % 2 == 1 {
            data.push(0.0);
        }
    }
    Tensor::from_data(TensorData::new(data, [timesteps.len(), dim]), device)
}

/// `TimestepEmbedding`: `linear_1` → SiLU → `linear_2`.
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    /// `input` features in, `out` wide embedding out.
    pub fn new(input: usize, out: usize, device: &Device) -> Self {
        Self {
            linear_1: LinearConfig::new(input, out).init(device),
            linear_2: LinearConfig::new(out, out).init(device),
        }
    }

    /// `[B, input]` → `[B, out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear_2.forward(silu(self.linear_1.forward(x)))
    }
}
