//! Building blocks shared by the U-Net and the VAE, one file each, named as in diffusers
//! (`resnet.py`, `attention_processor.py`, `downsampling.py`/`upsampling.py`), and `cpu/`: faster kernels
//! for burn's CPU backend behind the same functions (attention, GroupNorm + SiLU, GEGLU, convolution), with
//! `cpu_autodiff.rs` taking each of them into burn's autodiff, backward passes included, for training. On a
//! native GPU, stride-1 convolutions are matrix products (`conv2d`) and narrow attention heads take a flash
//! kernel (`attention`).

pub mod attention;
#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
pub mod cpu;
#[cfg(all(feature = "cpu", feature = "train", not(target_arch = "wasm32")))]
mod cpu_autodiff;
pub mod resnet;
pub mod sampling;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::DType;
use serde::{Deserialize, Serialize};

/// A `k`×`k` convolution with "same" padding for odd `k`, as diffusers builds them.
pub(crate) fn conv(cin: usize, cout: usize, k: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .init(device)
}

/// `conv.forward(x)`, through which every convolution of the models goes. On burn's CPU backend a stride-1
/// "same" convolution takes [`cpu::conv_same`] instead (im2col by bands sized to the cache); under autodiff
/// there, with its own backward pass (`cpu_autodiff.rs`). On a native GPU a stride-1 "same" convolution is a matrix product (`conv_gemm`); any
/// other GPU convolution in f16 takes f32 operands (`conv2d_f32`). The page keeps burn's direct kernel in f32:
/// on SwiftShader, the page's software WebGPU in the e2e test, the im2col gather made the shipped model's decode
/// about 4× slower (`?bench=1`), where on lavapipe the product is 2× faster.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(not(target_arch = "wasm32"))]
    if !on_flex(&x)
        && let Some(k) = gemm_kernel(conv, &x)
    {
        return conv_gemm(conv, x, k);
    }
    if x.dtype() == DType::F16 {
        return conv2d_f32(conv, x);
    }
    #[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
    if let Some(c) = same_conv(conv, &x) {
        if on_cpu_backend(&x) {
            let (weight, bias) = (conv.weight.val(), conv.bias.as_ref().map(|b| b.val()));
            let out = with_cpu_values(&x, |x| {
                with_cpu_values(&weight, |w| match &bias {
                    Some(b) => with_cpu_values(b, |b| cpu::conv_same(x, w, Some(b), c)),
                    None => cpu::conv_same(x, w, None, c),
                })
            });
            return Tensor::from_data(TensorData::new(out, [c.batch, c.cout, c.h, c.w]), &Device::flex());
        }
        #[cfg(feature = "train")]
        if on_cpu_autodiff(&x)
            && let Some(y) = cpu_autodiff::conv_same(x.clone(), conv.weight.val(), c)
        {
            return match &conv.bias {
                Some(b) => y + b.val().reshape([1, c.cout, 1, 1]),
                None => y,
            };
        }
    }
    conv.forward(x)
}

/// Whether `x` lives on burn's CPU backend (flex), which has kernels of its own here.
#[cfg(not(target_arch = "wasm32"))]
fn on_flex<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(feature = "cpu")]
    return x.device() == Device::flex();
    #[cfg(not(feature = "cpu"))]
    {
        let _ = x;
        false
    }
}

/// The kernel side `k` of `conv` if it is a stride-1 "same" convolution [`conv_gemm`] computes: an odd square
/// kernel, dilation 1, one group, padding `k / 2` on every side (none for 1×1).
#[cfg(not(target_arch = "wasm32"))]
fn gemm_kernel(conv: &Conv2d, x: &Tensor<4>) -> Option<usize> {
    let [cout, cin, kh, kw] = conv.weight.dims();
    let p = kh / 2;
    let fits = kh == kw
        && kh % 2 == 1
        && cin == x.dims()[1]
        && cout > 0
        && conv.groups == 1
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && (conv.padding == PaddingConfig2d::Explicit(p, p, p, p)
            || conv.padding == PaddingConfig2d::Same
            || (p == 0 && conv.padding == PaddingConfig2d::Valid));
    fits.then_some(kh)
}

/// Most bytes of one im2col matrix of `conv_gemm`: half of WebGPU's default 128 MiB buffer binding.
#[cfg(not(target_arch = "wasm32"))]
pub const GEMM_COLS_BYTES: usize = 64 << 20;

/// A stride-1 "same" `k`×`k` convolution as matrix products: the input in channels-last layout, each band of
/// output rows' k²-neighbourhoods gathered into one im2col matrix (at most [`GEMM_COLS_BYTES`]) and multiplied by
/// the kernel. burn's GPU convolution without autotune is a direct kernel (7 GFLOP/s on lavapipe for SD 1.5's
/// 3×3 at 64×64, where the matrix product runs at twice that) that accumulates in its operands' type; burn's
/// matrix product accumulates in f32, so f16 convolutions keep f32 sums this way too.
#[cfg(not(target_arch = "wasm32"))]
fn conv_gemm(conv: &Conv2d, x: Tensor<4>, k: usize) -> Tensor<4> {
    conv_gemm_banded(conv, x, k, GEMM_COLS_BYTES)
}

/// [`conv_gemm`] with im2col matrices of at most `cols_bytes` (at least one output row each).
#[cfg(not(target_arch = "wasm32"))]
fn conv_gemm_banded(conv: &Conv2d, x: Tensor<4>, k: usize, cols_bytes: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let cout = conv.weight.dims()[0];
    let p = k / 2;
    let weight = dequantized(conv.weight.val());
    // Rows (kernel row, kernel column, input channel) as the im2col matrix's columns run.
    let weight = weight.permute([2, 3, 1, 0]).reshape([k * k * c, cout]);
    let nhwc = x.permute([0, 2, 3, 1]);
    let padded = if p > 0 { nhwc.pad([(0, 0), (p, p), (p, p), (0, 0)], 0.0) } else { nhwc };
    let row_bytes = b * w * k * k * c * padded.dtype().size();
    let band = (cols_bytes / row_bytes.max(1)).clamp(1, h);
    let bands: Vec<Tensor<4>> = (0..h)
        .step_by(band)
        .map(|top| {
            let rows = band.min(h - top);
            let taps: Vec<Tensor<4>> = (0..k * k)
                .map(|t| padded.clone().slice([0..b, top + t / k..top + t / k + rows, t % k..t % k + w, 0..c]))
                .collect();
            let cols = Tensor::cat(taps, 3).reshape([b * rows * w, k * k * c]);
            cols.matmul(weight.clone()).reshape([b, rows, w, cout])
        })
        .collect();
    let mut y = Tensor::cat(bands, 1);
    if let Some(bias) = &conv.bias {
        y = y + bias.val().reshape([1, 1, 1, cout]);
    }
    y.permute([0, 3, 1, 2])
}

/// A weight as floats: an int8 one (`weights::Storage::Int8`) dequantized, any other as it is.
fn dequantized<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if matches!(t.dtype(), DType::QFloat(_)) { t.dequantize() } else { t }
}

/// An f16 convolution computed with f32 operands, the output rounded to f16 once: for the convolutions
/// [`conv_gemm`] does not take (strided ones, and all of the page's). burn's GPU convolution without autotune
/// (cubek's direct kernel) accumulates in its operands' type, rounding every partial sum to f16, where PyTorch's
/// f16 convolutions accumulate in f32.
fn conv2d_f32(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let wide = Conv2d {
        weight: Param::from_tensor(dequantized(conv.weight.val()).cast(DType::F32)),
        bias: conv.bias.as_ref().map(|b| Param::from_tensor(b.val().cast(DType::F32))),
        ..conv.clone()
    };
    wide.forward(x.cast(DType::F32)).cast(DType::F16)
}

/// Whether `t` is an f32 tensor of burn's CPU backend under autodiff (training).
#[cfg(all(feature = "cpu", feature = "train", not(target_arch = "wasm32")))]
fn on_cpu_autodiff<const D: usize>(t: &Tensor<D>) -> bool {
    let device = t.device();
    device == Device::flex() && device.is_autodiff() && t.dtype() == burn::tensor::DType::F32
}

/// The sizes of `conv` on `x` if it is a convolution [`cpu::conv_same`] can compute: f32 weights and input, an
/// odd square kernel, stride and dilation 1, one group, padding `k / 2` on every side.
#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
fn same_conv(conv: &Conv2d, x: &Tensor<4>) -> Option<cpu::Conv> {
    let [batch, cin, h, w] = x.dims();
    let [cout, wcin, kh, kw] = conv.weight.dims();
    let p = kh / 2;
    let fits = x.dtype() == burn::tensor::DType::F32
        && conv.weight.val().dtype() == burn::tensor::DType::F32
        && conv.bias.as_ref().is_none_or(|b| b.val().dtype() == burn::tensor::DType::F32)
        && kh == kw
        && kh % 2 == 1
        && wcin == cin
        && conv.groups == 1
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && (conv.padding == PaddingConfig2d::Explicit(p, p, p, p) || conv.padding == PaddingConfig2d::Same);
    fits.then_some(cpu::Conv { batch, cin, cout, h, w, k: kh })
}

/// GroupNorm with affine parameters (PyTorch's `nn.GroupNorm`).
pub(crate) fn group_norm(groups: usize, channels: usize, eps: f64, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels).with_epsilon(eps).init(device)
}

/// `silu(norm(x))`, the ResNet blocks' pattern: one fused pass on burn's CPU backend ([`cpu::group_norm`]),
/// with its own backward pass there under autodiff ([`cpu::group_norm_backward`]); burn's two ops elsewhere.
pub fn group_norm_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    normalize(norm, x, true)
}

/// `norm(x)`, GroupNorm alone (before the transformers' projection and the VAE's attention), by the kernels of
/// [`group_norm_silu`] on burn's CPU backend, burn's op elsewhere.
pub fn group_norm_forward(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    normalize(norm, x, false)
}

/// GroupNorm, then SiLU if `silu`.
fn normalize(norm: &GroupNorm, x: Tensor<4>, silu: bool) -> Tensor<4> {
    #[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
    if on_cpu_backend(&x) {
        let [batch, channels, h, w] = x.dims();
        let affine = |p: &Option<burn::module::Param<Tensor<1>>>, default: f32| match p {
            Some(p) => cpu_values(p.val()),
            None => vec![default; channels],
        };
        let (gamma, beta) = (affine(&norm.gamma, 1.0), affine(&norm.beta, 0.0));
        let mut data = cpu_values(x);
        let groups = cpu::Groups { batch, channels, pixels: h * w, groups: norm.num_groups };
        cpu::group_norm(&mut data, groups, &gamma, &beta, norm.epsilon as f32, silu);
        return Tensor::from_data(TensorData::new(data, [batch, channels, h, w]), &Device::flex());
    }
    #[cfg(all(feature = "cpu", feature = "train", not(target_arch = "wasm32")))]
    if on_cpu_autodiff(&x)
        && let Some(y) = cpu_autodiff::group_norm(norm, x.clone(), silu)
    {
        return y;
    }
    let normed = norm.forward(x);
    if silu { burn::tensor::activation::silu(normed) } else { normed }
}

/// diffusers' `GEGLU` after its projection: `[…, value | gate]` → `value · gelu(gate)` (erf GELU); one
/// vectorized pass on burn's CPU backend ([`cpu::geglu`]; under autodiff with [`cpu::geglu_backward`]), burn's
/// ops elsewhere.
pub fn geglu(h: Tensor<3>) -> Tensor<3> {
    #[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
    if on_cpu_backend(&h) && h.dims()[2].is_multiple_of(2) {
        let [b, n, width] = h.dims();
        let out = cpu::geglu(&cpu_values(h), width / 2);
        return Tensor::from_data(TensorData::new(out, [b, n, width / 2]), &Device::flex());
    }
    #[cfg(all(feature = "cpu", feature = "train", not(target_arch = "wasm32")))]
    if on_cpu_autodiff(&h)
        && h.dims()[2].is_multiple_of(2)
        && let Some(out) = cpu_autodiff::geglu(h.clone())
    {
        return out;
    }
    let mut parts = h.chunk(2, 2);
    let gate = parts.pop().expect("two chunks");
    let value = parts.pop().expect("two chunks");
    value * burn::tensor::activation::gelu(gate)
}

/// Whether [`cpu`]'s kernels apply to `t`: burn's CPU backend, f32, outside autodiff (the GPU and training
/// keep burn's kernels).
#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
pub(crate) fn on_cpu_backend<const D: usize>(t: &Tensor<D>) -> bool {
    let device = t.device();
    device == Device::flex() && !device.is_autodiff() && t.dtype() == burn::tensor::DType::F32
}

/// The values of a tensor for which [`on_cpu_backend`] holds (see [`primitive_values`]). Taking the tensor by
/// value matters: when this is its only handle, its buffer is handed over instead of copied, and a copy into
/// fresh memory of an activation as large as SD 1.5's GEGLU input costs more than the kernel.
///
/// # Panics
/// Never for such a tensor: it is an f32 tensor of burn's CPU backend.
#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
pub(crate) fn cpu_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    let primitive = t.try_into_primitive::<burn::backend::Flex>();
    primitive_values(primitive.unwrap_or_else(|_| panic!("a tensor of burn's CPU backend")))
}

/// burn's CPU backend's f32 tensors, as this crate's kernels take them.
#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
pub(crate) type CpuPrimitive = <burn::backend::Flex as burn::backend::BackendTypes>::FloatTensorPrimitive;

/// The f32 values of a CPU primitive in row-major order: its buffer itself where this is its only handle and
/// the data are in that order; one copy of the buffer where other handles share it (burn-flex copies a shared
/// tensor element by element, many times slower); burn's reordering copy otherwise.
///
/// # Panics
/// If `p` does not hold f32 values.
#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
pub(crate) fn primitive_values(p: CpuPrimitive) -> Vec<f32> {
    if !p.is_unique()
        && let Some(values) = p.as_slice::<f32>()
    {
        return values.to_vec();
    }
    p.into_data().try_into_vec::<f32>().expect("an f32 tensor")
}

/// A CPU primitive's f32 values in row-major order: borrowed where its data are already in that order (an
/// input that other handles keep, as the U-Net's skip connections and autodiff's saved tensors are), else
/// copied into that order by [`primitive_values`].
#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
pub(crate) fn primitive_view(p: &CpuPrimitive) -> std::borrow::Cow<'_, [f32]> {
    match p.as_slice::<f32>() {
        Some(values) => std::borrow::Cow::Borrowed(values),
        None => std::borrow::Cow::Owned(primitive_values(p.clone())),
    }
}

/// Calls `f` with the values of a tensor for which [`on_cpu_backend`] holds, read in place where they can be
/// (see [`primitive_view`]).
///
/// # Panics
/// Never for such a tensor: it is an f32 tensor of burn's CPU backend.
#[cfg(all(feature = "cpu", not(target_arch = "wasm32")))]
fn with_cpu_values<const D: usize, R>(t: &Tensor<D>, f: impl FnOnce(&[f32]) -> R) -> R {
    let primitive = t.clone().try_into_primitive::<burn::backend::Flex>();
    f(&primitive_view(&primitive.unwrap_or_else(|_| panic!("a tensor of burn's CPU backend"))))
}

/// diffusers' `act_fn` of the U-Net and the VAE: SiLU, under either of its names (the only one SD uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActFn {
    /// x · σ(x).
    Silu,
    /// The same function under its other name.
    Swish,
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The library tests' wgpu device, started once (burn starts its wgpu runtime once per process).
    #[cfg(feature = "wgpu")]
    pub(crate) fn gpu() -> Device {
        static GPU: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
        GPU.get_or_init(|| {
            Device::wgpu_options().init().expect("a wgpu adapter (lavapipe: apt install mesa-vulkan-drivers)")
        })
        .clone()
    }

    #[cfg(feature = "wgpu")]
    #[test]
    fn gpu_convolutions_are_banded_matrix_products_with_burns_numbers() {
        let d = gpu();
        let x = Tensor::<4>::random([2, 5, 33, 17], Distribution::Normal(0.0, 1.0), &d);
        let pad = |p| PaddingConfig2d::Explicit(p, p, p, p);
        let cases = [
            (Conv2dConfig::new([5, 7], [3, 3]).with_padding(pad(1)), Some(3)),
            (Conv2dConfig::new([5, 4], [5, 5]).with_padding(pad(2)).with_bias(false), Some(5)),
            (Conv2dConfig::new([5, 4], [3, 3]).with_padding(PaddingConfig2d::Same), Some(3)),
            (Conv2dConfig::new([5, 6], [1, 1]), Some(1)),
            (Conv2dConfig::new([5, 4], [3, 3]).with_padding(pad(1)).with_stride([2, 2]), None),
            (Conv2dConfig::new([5, 4], [3, 3]), None),
        ];
        for (config, kernel) in cases {
            let conv = config.init(&d);
            assert_eq!(gemm_kernel(&conv, &x), kernel);
            let want = crate::readback::values(conv.forward(x.clone())).unwrap();
            // Whole, and in bands of 4 rows (the last one of 1): one output row of im2col is 2 × 17 × k²·5 values.
            let row = 2 * 17 * 9 * 5 * 4;
            for cols_bytes in [GEMM_COLS_BYTES, 4 * row] {
                let got = match kernel {
                    Some(k) => conv_gemm_banded(&conv, x.clone(), k, cols_bytes),
                    None => conv2d(&conv, x.clone()),
                };
                let got = crate::readback::values(got).unwrap();
                let err = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(got.len() == want.len() && err < 1e-4, "{kernel:?}, {cols_bytes} bytes: {err}");
            }
        }
    }

    #[test]
    fn same_convolutions_take_the_cpu_kernel_with_burns_numbers() {
        let d = Device::flex();
        let pad = |p| PaddingConfig2d::Explicit(p, p, p, p);
        let cases = [
            (Conv2dConfig::new([5, 7], [3, 3]).with_padding(pad(1)), true),
            (Conv2dConfig::new([5, 4], [5, 5]).with_padding(pad(2)).with_bias(false), true),
            (Conv2dConfig::new([5, 4], [3, 3]).with_padding(PaddingConfig2d::Same), true),
            (Conv2dConfig::new([5, 6], [1, 1]).with_padding(pad(0)), true),
            (Conv2dConfig::new([5, 7], [3, 3]).with_padding(pad(1)).with_stride([2, 2]), false),
            (Conv2dConfig::new([5, 7], [3, 3]).with_padding(pad(0)), false),
        ];
        // A large plane and a small one.
        for [h, w] in [[40, 33], [6, 5]] {
            let x = Tensor::<4>::random([2, 5, h, w], Distribution::Normal(0.0, 1.0), &d);
            for (config, taken) in &cases {
                let conv = config.init(&d);
                assert_eq!(same_conv(&conv, &x).is_some(), *taken, "{config:?}");
                let (want, got) = (conv.forward(x.clone()), conv2d(&conv, x.clone()));
                assert_eq!(want.dims(), got.dims());
                let err = (want - got).abs().max().into_scalar::<f32>();
                assert!(err < 1e-5, "{config:?} at {h}×{w}: {err}");
            }
        }
    }

    #[cfg(feature = "train")]
    #[test]
    fn group_norm_under_autodiff_gives_burns_values_and_gradients() {
        let d = Device::flex().autodiff();
        d.seed(4);
        let mut norm = GroupNormConfig::new(4, 8).init(&d);
        // Parameters away from their initial ones and 63 pixels (not a multiple of 16 lanes).
        let param = |t: Tensor<1>| burn::module::Param::from_tensor(t);
        norm.gamma = Some(param(Tensor::random([8], Distribution::Normal(1.0, 1.0), &d).require_grad()));
        norm.beta = Some(param(Tensor::random([8], Distribution::Normal(0.0, 1.0), &d).require_grad()));
        let x = Tensor::<4>::random([2, 8, 9, 7], Distribution::Normal(0.5, 3.0), &d).require_grad();
        let g = Tensor::<4>::random([2, 8, 9, 7], Distribution::Normal(0.0, 1.0), &d);
        let run = |y: Tensor<4>| {
            let grads = (y.clone() * g.clone()).sum().backward();
            let param = |p: &Option<burn::module::Param<Tensor<1>>>| {
                p.as_ref().and_then(|p| p.grad(&grads)).expect("a parameter gradient").reshape([1, 1, 1, 8])
            };
            [y.inner(), x.grad(&grads).expect("an input gradient"), param(&norm.gamma), param(&norm.beta)]
        };
        for silu in [true, false] {
            let ours = cpu_autodiff::group_norm(&norm, x.clone(), silu).expect("an Autodiff<Flex> tensor");
            let routed = if silu { group_norm_silu(&norm, x.clone()) } else { group_norm_forward(&norm, x.clone()) };
            assert_eq!(routed.into_data(), ours.clone().into_data(), "training takes this crate's GroupNorm");
            let normed = norm.forward(x.clone());
            let theirs = if silu { burn::tensor::activation::silu(normed) } else { normed };
            for (w, o) in run(theirs).into_iter().zip(run(ours)) {
                let scale = w.clone().abs().max().into_scalar::<f32>().max(1.0);
                let err = (w - o).abs().max().into_scalar::<f32>() / scale;
                assert!(err < 1e-5, "silu {silu}: relative error {err}");
            }
        }
    }

    #[cfg(feature = "train")]
    #[test]
    fn same_convolutions_under_autodiff_give_burns_values_and_gradients() {
        let d = Device::flex().autodiff();
        let pad = |p| PaddingConfig2d::Explicit(p, p, p, p);
        let configs = [
            Conv2dConfig::new([5, 7], [3, 3]).with_padding(pad(1)),
            Conv2dConfig::new([5, 4], [5, 5]).with_padding(pad(2)).with_bias(false),
        ];
        // A large plane and a small one, each with and without the input's gradient.
        let cases = configs.iter().flat_map(|c| [([40, 33], c), ([6, 5], c)]).zip([true, true, false, false]);
        for (([h, w], config), input_grad) in cases {
            let conv = config.init(&d);
            let x = Tensor::<4>::random([2, 5, h, w], Distribution::Normal(0.0, 1.0), &d);
            let x = if input_grad { x.require_grad() } else { x };
            let [cout, ..] = conv.weight.dims();
            let g = Tensor::<4>::random([2, cout, h, w], Distribution::Normal(0.0, 1.0), &d);
            let run = |y: Tensor<4>| {
                let grads = (y.clone() * g.clone()).sum().backward();
                let mut out = vec![y.inner()];
                out.push(conv.weight.grad(&grads).expect("a weight gradient"));
                if let Some(b) = &conv.bias {
                    out.push(b.grad(&grads).expect("a bias gradient").reshape([1, 1, 1, cout]));
                }
                if input_grad {
                    out.push(x.grad(&grads).expect("an input gradient"));
                }
                out
            };
            let c = same_conv(&conv, &x).expect("a same convolution");
            assert!(on_cpu_autodiff(&x) && cpu_autodiff::conv_same(x.clone(), conv.weight.val(), c).is_some());
            let (want, got) = (run(conv.forward(x.clone())), run(conv2d(&conv, x.clone())));
            assert_eq!(want.len(), got.len());
            for (w, g) in want.into_iter().zip(got) {
                assert_eq!(w.dims(), g.dims());
                let scale = w.clone().abs().max().into_scalar::<f32>().max(1.0);
                let err = (w - g).abs().max().into_scalar::<f32>() / scale;
                assert!(err < 1e-5, "{config:?}: relative error {err}");
            }
        }
    }

    #[cfg(feature = "train")]
    #[test]
    fn geglu_under_autodiff_gives_burns_values_and_gradients() {
        let d = Device::flex().autodiff();
        d.seed(7);
        // 37 gate columns: two full 16-lane chunks and a remainder.
        let h = Tensor::<3>::random([2, 5, 74], Distribution::Normal(0.0, 2.0), &d).require_grad();
        let g = Tensor::<3>::random([2, 5, 37], Distribution::Normal(0.0, 1.0), &d);
        let ours = cpu_autodiff::geglu(h.clone()).expect("an Autodiff<Flex> tensor");
        assert_eq!(geglu(h.clone()).into_data(), ours.clone().into_data(), "training takes this crate's GEGLU");
        let [value, gate] = [0, 37].map(|start| h.clone().narrow(2, start, 37));
        let theirs = value * burn::tensor::activation::gelu(gate);
        let run = |y: Tensor<3>| {
            let grads = (y.clone() * g.clone()).sum().backward();
            [y.inner(), h.grad(&grads).expect("an input gradient")]
        };
        for (w, o) in run(theirs).into_iter().zip(run(ours)) {
            let err = (w - o).abs().max().into_scalar::<f32>();
            assert!(err < 1e-5, "{err}");
        }
    }
}
