//! `UNet2DConditionModel`: the noise predictor, conditioned on the timestep and the text embedding.
//! Every size comes from diffusers' `unet/config.json` ([`UNet2DConditionConfig`], same field names), so
//! SD 1.x, SD 2.x and tiny test models all load through this one definition.

pub mod blocks;
pub mod embeddings;
pub mod transformer;

use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::resnet::ResnetBlock2DConfig;
use crate::nn::{ActFn, conv, group_norm};
use crate::weights::NameMap;
use blocks::{DownBlock, MidBlock, UpBlock};
use embeddings::{TimestepEmbedding, timestep_features};
use transformer::Transformer2DConfig;

/// A config value given either once for all blocks or once per block.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum PerBlock<T> {
    /// The same value for every block.
    All(T),
    /// One value per down block.
    Each(Vec<T>),
}

impl<T: Clone> PerBlock<T> {
    fn expand(&self, name: &str, n: usize) -> Result<Vec<T>> {
        match self {
            Self::All(v) => Ok(vec![v.clone(); n]),
            Self::Each(v) if v.len() == n => Ok(v.clone()),
            Self::Each(v) => {
                Err(Error::config("unet/config.json", format!("{name} has {} entries for {n} blocks", v.len())))
            }
        }
    }
}

/// A down block type (diffusers' `down_block_types`) of SD 1.x/2.x.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum DownBlockType {
    /// Resnets, each followed by a transformer, then a downsampler.
    CrossAttnDownBlock2D,
    /// Resnets, then a downsampler.
    DownBlock2D,
}

/// An up block type (diffusers' `up_block_types`) of SD 1.x/2.x.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum UpBlockType {
    /// Resnets, each followed by a transformer, then an upsampler.
    CrossAttnUpBlock2D,
    /// Resnets, then an upsampler.
    UpBlock2D,
}

/// The mid block type (diffusers' `mid_block_type`); SD has only this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum MidBlockType {
    /// Resnet, transformer, resnet.
    UNetMidBlock2DCrossAttn,
}

/// How the time embedding enters the resnets (diffusers' `resnet_time_scale_shift`); SD adds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeScaleShift {
    /// Added after the first convolution.
    Default,
}

/// The timestep features (diffusers' `time_embedding_type`); SD uses sinusoids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeEmbeddingType {
    /// Sinusoidal features of the timestep.
    Positional,
}

/// The transformers' attention (diffusers' `attention_type`); SD uses plain attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionType {
    /// Self- and cross-attention, no gating.
    Default,
}

fn default_down() -> Vec<DownBlockType> {
    use DownBlockType::*;
    vec![CrossAttnDownBlock2D, CrossAttnDownBlock2D, CrossAttnDownBlock2D, DownBlock2D]
}
fn default_up() -> Vec<UpBlockType> {
    use UpBlockType::*;
    vec![UpBlock2D, CrossAttnUpBlock2D, CrossAttnUpBlock2D, CrossAttnUpBlock2D]
}

/// diffusers' `UNet2DConditionModel` config; defaults are diffusers' defaults (those of SD 1.x).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct UNet2DConditionConfig {
    pub sample_size: Option<usize>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub center_input_sample: bool,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    pub down_block_types: Vec<DownBlockType>,
    pub mid_block_type: Option<MidBlockType>,
    pub up_block_types: Vec<UpBlockType>,
    pub only_cross_attention: PerBlock<bool>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: PerBlock<usize>,
    pub downsample_padding: usize,
    pub mid_block_scale_factor: f64,
    pub act_fn: ActFn,
    pub norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    pub cross_attention_dim: PerBlock<usize>,
    pub transformer_layers_per_block: PerBlock<usize>,
    /// Number of heads per block (diffusers' historical misnomer), unless `num_attention_heads` is set.
    pub attention_head_dim: PerBlock<usize>,
    pub num_attention_heads: Option<PerBlock<usize>>,
    pub use_linear_projection: bool,
    pub upcast_attention: bool,
    pub resnet_time_scale_shift: TimeScaleShift,
    pub time_embedding_type: TimeEmbeddingType,
    pub time_embedding_dim: Option<usize>,
    pub conv_in_kernel: usize,
    pub conv_out_kernel: usize,
    pub class_embed_type: Option<String>,
    pub addition_embed_type: Option<String>,
    pub encoder_hid_dim: Option<usize>,
    pub time_cond_proj_dim: Option<usize>,
    pub dual_cross_attention: bool,
    pub attention_type: AttentionType,
    // Read only to refuse them: each changes the computation of SD 1.x/2.x's blocks.
    pub num_class_embeds: Option<usize>,
    pub encoder_hid_dim_type: Option<String>,
    pub time_embedding_act_fn: Option<String>,
    pub timestep_post_act: Option<String>,
    pub cross_attention_norm: Option<String>,
    /// The up blocks' transformer depths, if not the down blocks' reversed (accepted only when they are).
    pub reverse_transformer_layers_per_block: Option<serde_json::Value>,
}

impl Default for UNet2DConditionConfig {
    fn default() -> Self {
        Self {
            sample_size: None,
            in_channels: 4,
            out_channels: 4,
            center_input_sample: false,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            down_block_types: default_down(),
            mid_block_type: Some(MidBlockType::UNetMidBlock2DCrossAttn),
            up_block_types: default_up(),
            only_cross_attention: PerBlock::All(false),
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: PerBlock::All(2),
            downsample_padding: 1,
            mid_block_scale_factor: 1.0,
            act_fn: ActFn::Silu,
            norm_num_groups: Some(32),
            norm_eps: 1e-5,
            cross_attention_dim: PerBlock::All(1280),
            transformer_layers_per_block: PerBlock::All(1),
            attention_head_dim: PerBlock::All(8),
            num_attention_heads: None,
            use_linear_projection: false,
            upcast_attention: false,
            resnet_time_scale_shift: TimeScaleShift::Default,
            time_embedding_type: TimeEmbeddingType::Positional,
            time_embedding_dim: None,
            conv_in_kernel: 3,
            conv_out_kernel: 3,
            class_embed_type: None,
            addition_embed_type: None,
            encoder_hid_dim: None,
            time_cond_proj_dim: None,
            dual_cross_attention: false,
            attention_type: AttentionType::Default,
            num_class_embeds: None,
            encoder_hid_dim_type: None,
            time_embedding_act_fn: None,
            timestep_post_act: None,
            cross_attention_norm: None,
            reverse_transformer_layers_per_block: None,
        }
    }
}

/// One layer of a U-Net call, for measuring it ([`UNet2DConditionConfig::stages`]); `level` is the resolution
/// it runs at (0 the latent's, each level half the previous).
enum Stage {
    /// A resnet from `cin` to `cout` channels.
    Resnet { cin: usize, cout: usize, level: usize },
    /// Down/up block `block`'s transformer over `channels` channels.
    Transformer { block: usize, channels: usize, level: usize, only_cross: bool },
    /// A down- or upsampler's 3×3 convolution, `level` its output's.
    Resample { channels: usize, level: usize },
}

/// The U-Net's per-block sizes, resolved and checked.
#[derive(Debug, Clone)]
struct Resolved {
    heads: Vec<usize>,
    layers: Vec<usize>,
    cross: Vec<usize>,
    depth: Vec<usize>,
    only_cross: Vec<bool>,
    groups: usize,
}

impl UNet2DConditionConfig {
    /// Parses `unet/config.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        crate::error::parse_json("unet/config.json", json)
    }

    /// Width of the text embedding the U-Net expects.
    pub fn context_dim(&self) -> usize {
        match &self.cross_attention_dim {
            PerBlock::All(d) => *d,
            PerBlock::Each(v) => v.first().copied().unwrap_or(0),
        }
    }

    fn resolve(&self) -> Result<Resolved> {
        let bad = |m: String| Err(Error::config("unet/config.json", m));
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad(format!(
                "{} down and {} up block types for {n} block_out_channels",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        let unsupported = [
            (self.class_embed_type.is_some() || self.num_class_embeds.is_some(), "class_embed_type/num_class_embeds"),
            (self.addition_embed_type.is_some(), "addition_embed_type"),
            (
                self.encoder_hid_dim.is_some() || self.encoder_hid_dim_type.is_some(),
                "encoder_hid_dim/encoder_hid_dim_type",
            ),
            (self.time_cond_proj_dim.is_some(), "time_cond_proj_dim"),
            (self.time_embedding_act_fn.is_some(), "time_embedding_act_fn"),
            (self.timestep_post_act.is_some(), "timestep_post_act"),
            (self.cross_attention_norm.is_some(), "cross_attention_norm"),
            (self.dual_cross_attention, "dual_cross_attention"),
            (self.mid_block_type.is_none(), "a U-Net without a mid block (mid_block_type null)"),
            (self.conv_in_kernel.is_multiple_of(2) || self.conv_out_kernel.is_multiple_of(2), "even conv kernels"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(on, _)| *on) {
            return bad(format!("{what} is not supported (SD 1.x/2.x U-Nets only)"));
        }
        let heads =
            self.num_attention_heads.as_ref().unwrap_or(&self.attention_head_dim).expand("attention heads", n)?;
        let groups =
            self.norm_num_groups.ok_or_else(|| Error::config("unet/config.json", "norm_num_groups must be set"))?;
        let r = Resolved {
            heads,
            layers: self.layers_per_block.expand("layers_per_block", n)?,
            cross: self.cross_attention_dim.expand("cross_attention_dim", n)?,
            depth: self.transformer_layers_per_block.expand("transformer_layers_per_block", n)?,
            only_cross: self.only_cross_attention.expand("only_cross_attention", n)?,
            groups,
        };
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            if c == 0 || groups == 0 || c % groups != 0 || r.heads[i] == 0 || c % r.heads[i] != 0 {
                return bad(format!(
                    "block {i}: {c} channels do not split into {groups} groups and {} heads",
                    r.heads[i]
                ));
            }
        }
        if r.layers.contains(&0) || self.in_channels == 0 || self.out_channels == 0 {
            return bad("zero layers or channels".into());
        }
        if let Some(given) = &self.reverse_transformer_layers_per_block {
            let reversed: Vec<usize> = r.depth.iter().rev().copied().collect();
            if *given != serde_json::json!(reversed) {
                return bad(format!(
                    "reverse_transformer_layers_per_block {given} is not supported: up blocks mirror the down \
                     blocks' depths {reversed:?}"
                ));
            }
        }
        // Down and up blocks build up to layers + 1 resnets, each with up to `depth` transformer layers after it.
        let layers = (0..n)
            .map(|i| r.layers[i].saturating_add(1).saturating_mul(r.depth[i].saturating_add(1)).saturating_mul(2))
            .fold(0, usize::saturating_add);
        crate::error::check_layers("unet/config.json", "layers_per_block × transformer_layers_per_block", layers)?;
        crate::error::check_eps("unet/config.json", "norm_eps", self.norm_eps)?;
        Ok(r)
    }

    /// Builds the model (weights uninitialized until loaded or trained); fails on unsupported configs.
    pub fn init(&self, device: &Device) -> Result<UNet2DConditionModel> {
        self.init_limited(device, 0)
    }

    /// The layers one call runs, in order, as [`init_limited`](Self::init_limited) builds them: each down
    /// block's resnets (each followed by its transformer in a cross-attention block) and downsampler, the mid
    /// block, each up block's resnets on [previous, skip] concatenated (mirroring down block n-1-i) and
    /// upsampler. What [`largest_activation`](Self::largest_activation) and [`flops`](Self::flops) measure.
    fn stages(&self, r: &Resolved) -> Vec<Stage> {
        let ch = &self.block_out_channels;
        let n = ch.len();
        let mut stages = Vec::new();
        let mut out = ch[0];
        for (i, &channels) in ch.iter().enumerate() {
            let input = out;
            out = channels;
            for j in 0..r.layers[i] {
                stages.push(Stage::Resnet { cin: if j == 0 { input } else { out }, cout: out, level: i });
                if self.down_block_types[i] == DownBlockType::CrossAttnDownBlock2D {
                    stages.push(Stage::Transformer { block: i, channels: out, level: i, only_cross: r.only_cross[i] });
                }
            }
            if i + 1 < n {
                stages.push(Stage::Resample { channels: out, level: i + 1 });
            }
        }
        let (top, c) = (n - 1, ch[n - 1]);
        stages.push(Stage::Resnet { cin: c, cout: c, level: top });
        // diffusers' UNetMidBlock2DCrossAttn: its first attention is always self-attention.
        stages.push(Stage::Transformer { block: top, channels: c, level: top, only_cross: false });
        stages.push(Stage::Resnet { cin: c, cout: c, level: top });
        for (i, &kind) in self.up_block_types.iter().enumerate() {
            let level = n - 1 - i;
            let prev = out;
            out = ch[level];
            let input = ch[level.saturating_sub(1)];
            let layers = r.layers[level] + 1;
            for j in 0..layers {
                let skip = if j == layers - 1 { input } else { out };
                stages.push(Stage::Resnet { cin: if j == 0 { prev } else { out } + skip, cout: out, level });
                if kind == UpBlockType::CrossAttnUpBlock2D {
                    stages.push(Stage::Transformer {
                        block: level,
                        channels: out,
                        level,
                        only_cross: r.only_cross[level],
                    });
                }
            }
            if level > 0 {
                stages.push(Stage::Resample { channels: out, level: level - 1 });
            }
        }
        stages
    }

    /// Elements of the largest tensor one batch row makes at latent size `h × w`: a transformer's GEGLU
    /// projection (8 × its width per token), a resnet's input (an up block's concatenated skip), or a
    /// feature map. Attention scores are left out: the attentions slice their queries to fit. What a GPU's
    /// buffer limit has to hold, per row, for one U-Net call.
    pub fn largest_activation(&self, [h, w]: [usize; 2]) -> Result<usize> {
        let r = self.resolve()?;
        let tokens = |level: usize| h.div_ceil(1 << level) * w.div_ceil(1 << level);
        let largest = self.stages(&r).into_iter().map(|stage| match stage {
            Stage::Resnet { cin, cout, level } => cin.max(cout) * tokens(level),
            Stage::Transformer { channels, level, .. } => 8 * channels * tokens(level),
            Stage::Resample { channels, level } => channels * tokens(level),
        });
        Ok(largest.fold(self.block_out_channels[0] * tokens(0), usize::max))
    }

    /// Floating-point operations of one batch row's U-Net call at latent size `h × w` with `context` text
    /// tokens: two per multiply-add of every convolution, linear layer and attention product (norms, softmax
    /// and activations, a few percent, left out), as FLOP counters report them. SD 1.5 at 64×64 with 77 tokens:
    /// 803 GFLOP.
    pub fn flops(&self, [h, w]: [usize; 2], context: usize) -> Result<u64> {
        let r = self.resolve()?;
        let ch = &self.block_out_channels;
        let temb = self.time_embedding_dim.unwrap_or(ch[0] * 4) as u64;
        let tokens = |level: usize| (h.div_ceil(1 << level) * w.div_ceil(1 << level)) as u64;
        let conv = |cin: usize, cout: usize, k: usize, t: u64| 2 * (k * k * cin * cout) as u64 * t;
        let context = context as u64;
        let stage = |stage: Stage| match stage {
            Stage::Resnet { cin, cout, level } => {
                let t = tokens(level);
                let shortcut = if cin == cout { 0 } else { conv(cin, cout, 1, t) };
                conv(cin, cout, 3, t) + conv(cout, cout, 3, t) + shortcut + 2 * temb * cout as u64
            }
            // Projections in and out, then per layer: self-attention (or cross-only), cross-attention, GEGLU.
            Stage::Transformer { block, channels, level, only_cross } => {
                let (c, x, t) = (channels as u64, r.cross[block] as u64, tokens(level));
                let attention = |keys: u64, width: u64| 2 * (2 * c * c * t + 2 * width * c * keys + 2 * t * keys * c);
                let first = if only_cross { attention(context, x) } else { attention(t, c) };
                4 * c * c * t
                    + r.depth[block] as u64 * (first + attention(context, x) + 2 * c * 8 * c * t + 2 * 4 * c * c * t)
            }
            Stage::Resample { channels, level } => conv(channels, channels, 3, tokens(level)),
        };
        let ends = conv(self.in_channels, ch[0], self.conv_in_kernel, tokens(0))
            + conv(ch[0], self.out_channels, self.conv_out_kernel, tokens(0))
            + 2 * (ch[0] as u64 * temb + temb * temb);
        Ok(ends + self.stages(&r).into_iter().map(stage).sum::<u64>())
    }

    /// [`init`](Self::init) with attentions that materialize at most `max_scores` score elements per call
    /// (0: no limit), slicing their queries beyond that (a GPU's binding limit).
    pub fn init_limited(&self, device: &Device, max_scores: usize) -> Result<UNet2DConditionModel> {
        let r = self.resolve()?;
        let ch = &self.block_out_channels;
        let n = ch.len();
        let temb_dim = self.time_embedding_dim.unwrap_or(ch[0] * 4);
        // diffusers hands `resnet_out_scale_factor` only to block types outside SD 1.x/2.x, so these
        // resnets keep a scale of 1 whatever the config says; only the mid block's has its own factor.
        let resnet = |cin, cout, scale| ResnetBlock2DConfig {
            in_channels: cin,
            out_channels: cout,
            temb_channels: Some(temb_dim),
            groups: r.groups,
            eps: self.norm_eps,
            output_scale_factor: scale,
        };
        let attn = |i: usize, c: usize| Transformer2DConfig {
            channels: c,
            heads: r.heads[i],
            layers: r.depth[i],
            cross_attention_dim: r.cross[i],
            groups: r.groups,
            linear_projection: self.use_linear_projection,
            only_cross_attention: r.only_cross[i],
            max_scores,
        };
        let mut down_blocks = Vec::with_capacity(n);
        let mut out = ch[0];
        for (i, &channels) in ch.iter().enumerate() {
            let input = out;
            out = channels;
            let resnets = (0..r.layers[i]).map(|j| resnet(if j == 0 { input } else { out }, out, 1.0)).collect();
            let cross = self.down_block_types[i] == DownBlockType::CrossAttnDownBlock2D;
            let down = (i + 1 < n).then_some(self.downsample_padding);
            down_blocks.push(DownBlock::new(resnets, cross.then(|| attn(i, out)), down, device));
        }
        // diffusers' UNetMidBlock2DCrossAttn takes no `only_cross_attention`: its first attention is always self.
        let mid_attn = Transformer2DConfig { only_cross_attention: false, ..attn(n - 1, ch[n - 1]) };
        let mid_block = MidBlock::new(resnet(ch[n - 1], ch[n - 1], self.mid_block_scale_factor), mid_attn, 1, device);
        let mut up_blocks = Vec::with_capacity(n);
        let rev = |v: &[usize], i: usize| v[n - 1 - i];
        let mut out = rev(ch, 0);
        for i in 0..n {
            let prev = out;
            out = rev(ch, i);
            let input = rev(ch, (i + 1).min(n - 1));
            let layers = rev(&r.layers, i) + 1;
            let resnets = (0..layers)
                .map(|j| {
                    let skip = if j == layers - 1 { input } else { out };
                    let res_in = if j == 0 { prev } else { out };
                    resnet(res_in + skip, out, 1.0)
                })
                .collect();
            let cross = self.up_block_types[i] == UpBlockType::CrossAttnUpBlock2D;
            // Up block i mirrors down block n-1-i: its heads, depth and text width too.
            up_blocks.push(UpBlock::new(resnets, cross.then(|| attn(n - 1 - i, out)), i + 1 < n, device));
        }
        Ok(UNet2DConditionModel {
            conv_in: conv(self.in_channels, ch[0], self.conv_in_kernel, device),
            time_embedding: TimestepEmbedding::new(ch[0], temb_dim, device),
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(r.groups, ch[0], self.norm_eps, device),
            conv_out: conv(ch[0], self.out_channels, self.conv_out_kernel, device),
            time_proj_dim: ch[0],
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift,
            center_input_sample: self.center_input_sample,
        })
    }
}

/// diffusers' `UNet2DConditionModel` (the SD 1.x/2.x subset).
#[derive(Module, Debug)]
pub struct UNet2DConditionModel {
    conv_in: Conv2d,
    time_embedding: TimestepEmbedding,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    time_proj_dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    center_input_sample: bool,
}

/// Our module paths → diffusers' tensor names, for exporting (the inverse of [`NAMES`]).
pub const EXPORT_NAMES: &[(&str, &str)] =
    &[(r"\.to_out\.", ".to_out.0."), (r"\.ff\.geglu\.proj\.", ".ff.net.0.proj."), (r"\.ff\.out\.", ".ff.net.2.")];

/// diffusers' tensor names that differ from our module paths.
pub const NAMES: NameMap = NameMap {
    remaps: &[
        (r"\.to_out\.0\.", ".to_out."),
        (r"\.ff\.net\.0\.proj\.", ".ff.geglu.proj."),
        (r"\.ff\.net\.2\.", ".ff.out."),
    ],
    ignore: &[],
};

impl UNet2DConditionModel {
    /// Predicts noise (or v) for `sample` `[B, C, H, W]` at `timestep` given `context` `[B, 77, D]`.
    pub fn forward(&self, sample: Tensor<4>, timestep: f32, context: &Tensor<3>) -> Tensor<4> {
        let b = sample.dims()[0];
        self.forward_timesteps(sample, &vec![timestep; b], context)
    }

    /// Classifier-free guided prediction for a batch of latents at one timestep: `latents` `[N, C, h, w]`,
    /// `contexts` `[N, 77, D]` (one prompt per latent), `uncond` `[1, 77, D]`. Both halves go through one call
    /// (batch 2N); with `guidance` ≤ 1 the unconditional half is skipped, as diffusers does.
    pub fn guided(
        &self,
        latents: Tensor<4>,
        contexts: Tensor<3>,
        uncond: &Tensor<3>,
        timestep: usize,
        guidance: f64,
    ) -> Tensor<4> {
        let t = timestep as f32;
        if guidance <= 1.0 {
            return self.forward(latents, t, &contexts);
        }
        let n = latents.dims()[0];
        let [_, l, d] = uncond.dims();
        let input = Tensor::cat(vec![latents.clone(), latents], 0);
        let ctx = Tensor::cat(vec![uncond.clone().expand([n, l, d]), contexts], 0);
        let out = self.forward(input, t, &ctx);
        let (un, cond) = (out.clone().narrow(0, 0, n), out.narrow(0, n, n));
        un.clone() + (cond - un) * guidance
    }

    /// Like [`forward`](Self::forward) with one timestep per batch row (training).
    pub fn forward_timesteps(&self, sample: Tensor<4>, timesteps: &[f32], context: &Tensor<3>) -> Tensor<4> {
        let device = sample.device();
        let t = timestep_features(timesteps, self.time_proj_dim, self.flip_sin_to_cos, self.freq_shift, &device);
        let temb = self.time_embedding.forward(t);
        let sample = if self.center_input_sample { sample * 2.0 - 1.0 } else { sample };
        let mut x = crate::nn::conv2d(&self.conv_in, sample);
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            let (y, states) = block.forward(x, &temb, context);
            x = y;
            skips.extend(states);
        }
        x = self.mid_block.forward(x, &temb, context);
        for block in &self.up_blocks {
            // An odd skip size needs the upsampler to hit it exactly rather than double.
            let remaining = skips.len() - block.num_skips();
            let upsample_size = remaining.checked_sub(1).map(|i| {
                let [_, _, sh, sw] = skips[i].dims();
                [sh, sw]
            });
            x = block.forward(x, &mut skips, &temb, context, upsample_size);
        }
        crate::nn::conv2d(&self.conv_out, crate::nn::group_norm_silu(&self.conv_norm_out, x))
    }
}
