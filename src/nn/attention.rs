//! diffusers' `Attention` (`attention_processor.py`) in the two forms SD uses: token attention inside the
//! U-Net's transformer blocks (self or cross), and the VAE's single-head spatial attention with its own
//! GroupNorm and residual.

use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::group_norm;

/// Scaled dot-product attention over `[B, N, heads*d]` inputs, split into heads, with an optional causal
/// mask (CLIP): this crate's kernels on the CPU, a flash kernel on a native GPU for heads up to 64 wide
/// (`flash`), else burn's op, which on the GPU (without burn's autotune) materializes the `[B, heads, N, M]`
/// scores: with `max_scores` > 0 the queries then go through in slices whose scores hold at most that many
/// elements (at least one query row per slice), so one buffer stays under the adapter's binding limit. Each
/// query row's softmax sees every key either way, so slicing changes nothing but the order of the work.
pub fn multi_head_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    causal: bool,
    max_scores: usize,
) -> Tensor<3> {
    in_heads(q, k, v, heads, |q, k, v| heads_attention(q, k, v, causal, max_scores))
}

/// [`multi_head_attention`] by burn's op alone (sliced as there), as the model ran it before the flash kernel: what
/// `examples/bench` compares the flash kernel with.
pub fn burn_attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize, max_scores: usize) -> Tensor<3> {
    in_heads(q, k, v, heads, |q, k, v| sliced_attention(q, k, v, false, max_scores))
}

/// `attention` of `[B, N, heads*d]` inputs split into heads `[B, heads, N, d]`, joined back.
fn in_heads(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    attention: impl FnOnce(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>,
) -> Tensor<3> {
    let [b, n, c] = q.dims();
    let m = k.dims()[1];
    let d = c / heads;
    let split = |t: Tensor<3>, len: usize| t.reshape([b, len, heads, d]).swap_dims(1, 2);
    attention(split(q, n), split(k, m), split(v, m)).swap_dims(1, 2).reshape([b, n, c])
}

/// Attention of `[B, heads, N, d]` queries over `[B, heads, M, d]` keys and values: this crate's kernels on
/// burn's CPU backend (outside and, for training, inside autodiff), burn-cubecl's flash kernel on a GPU (native
/// or the page's WebGPU) where it applies ([`flash`]), else burn's op ([`sliced_attention`]).
fn heads_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool, max_scores: usize) -> Tensor<4> {
    #[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
    if !causal && q.dims()[3] > 0 && k.dims()[2] > 0 {
        if super::on_cpu_backend(&q) {
            return on_cpu(q, k, v);
        }
        #[cfg(feature = "train")]
        if super::on_cpu_autodiff(&q)
            && let Some(out) = super::cpu_autodiff::attention(q.clone(), k.clone(), v.clone())
        {
            return out;
        }
    }
    #[cfg(any(feature = "wgpu", target_arch = "wasm32"))]
    if !causal
        && k.dims()[2] > 0
        && let Some(out) = flash(&q, &k, &v)
    {
        return out;
    }
    sliced_attention(q, k, v, causal, max_scores)
}

/// Widest head that takes [`flash`]. FlashUnit keeps a head's values per unit, and its compilation grows
/// steeply with the width (lavapipe, first call: 1.5 s at 40, 6 s at 80, 19 s at 128, 35 s at 160, 137 s at
/// 256); SD 1.5's heads at its 4096-token level, where the scores are largest, are 40 wide.
#[cfg(any(feature = "wgpu", target_arch = "wasm32"))]
const FLASH_MAX_HEAD_DIM: usize = 64;

/// `[B, heads, N, d]` attention through burn-cubecl's flash kernel (`FlashUnit`: softmax(QKᵀ/√d)·V in one
/// kernel that never writes the scores, so it needs no slicing; it accumulates in f32 also for f16 inputs),
/// where it applies: a wgpu tensor (Vulkan/Metal/DX12, or WebGPU on the page) outside autodiff, heads of at
/// most [`FLASH_MAX_HEAD_DIM`]. burn without autotune never picks it. `None` elsewhere, or where the kernel
/// refuses the shape.
#[cfg(any(feature = "wgpu", target_arch = "wasm32"))]
fn flash(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>) -> Option<Tensor<4>> {
    use burn::backend::Wgpu;
    use burn_cubecl::kernel::attention::{AttentionStrategy, attention};
    if q.dims()[3].max(v.dims()[3]) > FLASH_MAX_HEAD_DIM {
        return None;
    }
    let primitive = |t: &Tensor<4>| t.clone().try_into_primitive::<Wgpu>().ok();
    let (q, k, v) = (primitive(q)?, primitive(k)?, primitive(v)?);
    let out = attention(q, k, v, None, None, Default::default(), AttentionStrategy::FlashUnit).ok()?;
    Some(Tensor::from_primitive::<Wgpu>(out))
}

/// burn's attention op, in slices of queries whose scores hold at most `max_scores` elements (see
/// [`multi_head_attention`]).
fn sliced_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool, max_scores: usize) -> Tensor<4> {
    let [b, heads, n, _] = q.dims();
    let m = k.dims()[2];
    let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
    let rows = query_rows(b * heads * m, n, max_scores);
    // A causal mask relates query i to key i, which a slice of queries would lose.
    if rows >= n || causal {
        return attention(q, k, v, None, None, options);
    }
    let slices = (0..n)
        .step_by(rows)
        .map(|start| {
            let len = rows.min(n - start);
            attention(q.clone().narrow(2, start, len), k.clone(), v.clone(), None, None, options)
        })
        .collect();
    Tensor::cat(slices, 2)
}

/// `[B, heads, N, d]` attention through [`super::cpu::attention`] (see [`super::on_cpu_backend`]).
#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
fn on_cpu(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    use super::cpu::{Shape, attention};
    use super::cpu_values;
    let [b, heads, n, d] = q.dims();
    let [_, _, m, value_dim] = v.dims();
    let shape = Shape { heads: b * heads, queries: n, keys: m, dim: d, value_dim };
    let out = attention(&cpu_values(q), &cpu_values(k), &cpu_values(v), shape, 1.0 / (d as f32).sqrt());
    Tensor::from_data(TensorData::new(out, [b, heads, n, value_dim]), &Device::flex())
}

/// Query rows per slice so that `rows × per_row` scores stay within `max_scores` (0: all `n` at once).
fn query_rows(per_row: usize, n: usize, max_scores: usize) -> usize {
    if max_scores == 0 { n } else { (max_scores / per_row.max(1)).clamp(1, n.max(1)) }
}

/// Sizes of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttentionConfig {
    /// Width of the queries (and of the output).
    pub query_dim: usize,
    /// Width of the keys/values' source: the text embedding for cross-attention, else `query_dim`.
    pub context_dim: usize,
    /// Number of heads.
    pub heads: usize,
    /// Width of one head.
    pub dim_head: usize,
    /// Whether q/k/v have biases (false in the U-Net, true in the VAE).
    pub qkv_bias: bool,
    /// `Some((groups, eps))` for the VAE's spatial attention, which normalizes its own input.
    pub group_norm: Option<(usize, f64)>,
    /// Most score elements one attention call materializes (0: no limit); see [`multi_head_attention`].
    pub max_scores: usize,
}

/// diffusers' `Attention` with `to_q`, `to_k`, `to_v`, `to_out.0` (and `group_norm` in the VAE).
#[derive(Module, Debug)]
pub struct Attention {
    group_norm: Option<GroupNorm>,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    max_scores: usize,
}

impl AttentionConfig {
    /// Creates the layer with uninitialized weights.
    pub fn init(&self, device: &Device) -> Attention {
        let inner = self.heads * self.dim_head;
        let lin = |i, o, bias| LinearConfig::new(i, o).with_bias(bias).init(device);
        Attention {
            group_norm: self.group_norm.map(|(g, eps)| group_norm(g, self.query_dim, eps, device)),
            to_q: lin(self.query_dim, inner, self.qkv_bias),
            to_k: lin(self.context_dim, inner, self.qkv_bias),
            to_v: lin(self.context_dim, inner, self.qkv_bias),
            to_out: lin(inner, self.query_dim, true),
            heads: self.heads,
            max_scores: self.max_scores,
        }
    }
}

impl Attention {
    /// Token attention: `x` `[B, N, C]` attends to `context` `[B, M, D]` (or to itself).
    pub fn forward(&self, x: Tensor<3>, context: Option<&Tensor<3>>) -> Tensor<3> {
        let ctx = context.cloned().unwrap_or_else(|| x.clone());
        let q = self.to_q.forward(x);
        let k = self.to_k.forward(ctx.clone());
        let v = self.to_v.forward(ctx);
        self.to_out.forward(multi_head_attention(q, k, v, self.heads, false, self.max_scores))
    }

    /// The VAE's spatial self-attention over `[B, C, H, W]`, with its GroupNorm and residual.
    pub fn forward_spatial(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let normed = match &self.group_norm {
            Some(norm) => super::group_norm_forward(norm, x.clone()),
            None => x.clone(),
        };
        let tokens = normed.reshape([b, c, h * w]).swap_dims(1, 2);
        let out = self.forward(tokens, None).swap_dims(1, 2).reshape([b, c, h, w]);
        out + x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn sliced_attention_equals_the_whole() {
        let device = Device::flex();
        device.seed(3);
        let t = |n: usize| Tensor::<4>::random([2, 2, n, 4], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (t(37), t(21), t(21));
        let whole = sliced_attention(q.clone(), k.clone(), v.clone(), false, 0);
        // 2 × 2 heads × 21 keys = 84 scores per query row: 1, 3 and 10 rows per slice, the last one short.
        for max in [1, 84 * 3, 84 * 10 + 5] {
            let sliced = sliced_attention(q.clone(), k.clone(), v.clone(), false, max);
            let diff = (sliced - whole.clone()).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-6, "{max}: {diff}");
        }
        assert_eq!(query_rows(84, 37, 84 * 3), 3);
        assert_eq!(query_rows(84, 37, 0), 37);
        assert_eq!(query_rows(84, 37, 10), 1, "never less than a row");
    }

    /// On a native GPU, heads up to 64 wide take the flash kernel, with burn's op's numbers.
    #[cfg(all(feature = "wgpu", not(target_arch = "wasm32")))]
    #[test]
    fn gpu_attention_is_flash_with_burns_numbers() {
        let device = crate::nn::tests::gpu();
        // Queries and keys that fill no tile evenly, SD 1.5's widest-level heads (40) with its 77 text tokens,
        // the widest flash head, and one past it.
        for (n, m, d) in [(37, 21, 8), (100, 77, 40), (64, 64, 64), (16, 16, 80)] {
            let t = |len: usize| Tensor::<4>::random([2, 3, len, d], Distribution::Normal(0.0, 1.0), &device);
            let (q, k, v) = (t(n), t(m), t(m));
            assert_eq!(flash(&q, &k, &v).is_some(), d <= FLASH_MAX_HEAD_DIM, "{d}");
            let ours = heads_attention(q.clone(), k.clone(), v.clone(), false, 0);
            let burns = sliced_attention(q.clone(), k.clone(), v.clone(), false, 0);
            let diff = (ours - burns.clone()).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-5, "{n}×{m}, heads of {d}: {diff}");
            // burn's op sliced as for a small binding limit (5 query rows of 2 × 3 heads × m keys), on the GPU.
            let sliced = sliced_attention(q, k, v, false, 5 * 6 * m);
            let diff = (sliced - burns).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-6, "{n}×{m}, heads of {d}, sliced: {diff}");
        }
        // Not under autodiff (training keeps burn's differentiable op) nor on the CPU.
        let t = |device: &Device| Tensor::<4>::random([1, 1, 4, 8], Distribution::Normal(0.0, 1.0), device);
        let ad = device.clone().autodiff();
        assert!(flash(&t(&ad), &t(&ad), &t(&ad)).is_none());
        let cpu = Device::flex();
        assert!(flash(&t(&cpu), &t(&cpu), &t(&cpu)).is_none());
    }

    /// Training's attention on the CPU (this crate's kernels both ways) against burn's op under autodiff:
    /// outputs and the three inputs' gradients, with one and with several blocks of query rows.
    #[cfg(all(feature = "cpu", feature = "train", not(target_arch = "wasm32")))]
    #[test]
    fn cpu_attention_under_autodiff_equals_burns() {
        let device = Device::flex().autodiff();
        device.seed(5);
        // 600 queries over 500 keys: blocks of 524 and 76 rows (`cpu::BLOCK_SCORES`); value width ≠ key width.
        for (n, m, d, dv) in [(37, 21, 8, 8), (600, 500, 4, 6)] {
            let t = |len: usize, width: usize| {
                Tensor::<4>::random([2, 3, len, width], Distribution::Normal(0.0, 1.0), &device).require_grad()
            };
            let (q, k, v, g) = (t(n, d), t(m, d), t(m, dv), t(n, dv));
            let ours = crate::nn::cpu_autodiff::attention(q.clone(), k.clone(), v.clone()).expect("Autodiff<Flex>");
            let routed = heads_attention(q.clone(), k.clone(), v.clone(), false, 0);
            assert_eq!(routed.into_data(), ours.clone().into_data(), "training takes this crate's kernel");
            let theirs = sliced_attention(q.clone(), k.clone(), v.clone(), false, 0);
            let diff = (ours.clone() - theirs.clone()).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-5, "{n}×{m} output: {diff}");
            let (ours, theirs) = ((ours * g.clone()).sum().backward(), (theirs * g.clone()).sum().backward());
            for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
                let (a, b) = (x.grad(&ours).expect("gradient"), x.grad(&theirs).expect("gradient"));
                let scale = b.clone().abs().max().into_scalar::<f32>();
                let diff = (a - b).abs().max().into_scalar::<f32>();
                assert!(diff < 1e-5 * scale.max(1.0), "{n}×{m} d{name}: {diff} (largest {scale})");
            }
        }
    }
}
