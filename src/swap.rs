//! The paper's method: from one noise, denoise with a neutral prompt and swap to a style (attribute) prompt
//! for the last `t` of the DDIM steps, for each swap point `t` (default 5, 10, …, 45 of 50). Swap point 0 is
//! the neutral image; the larger `t`, the more the attribute shows.
//!
//! All images share the neutral prefix: one trunk latent is denoised with the neutral prompt, and when the
//! remaining step count reaches a swap point the trunk is copied into a branch that continues with the style
//! prompt. At every step the trunk and all live branches go through the U-Net as one batch (split into
//! chunks of at most `max_batch` latents). A trajectory of 9 swap points thus costs 50 + Σt = 275 guided
//! latent evaluations, in 50 U-Net calls, instead of 10 × 50 = 500 evaluations.

use burn::prelude::*;

use crate::error::{Error, Result};
use crate::pipeline::StableDiffusion;
use crate::scheduler::{Ddim, DdimConfig};
use crate::unet::{UNet2DConditionConfig, UNet2DConditionModel};

/// The paper's swap points: 5, 10, …, 45 of 50 steps.
pub const PAPER_SWAP_POINTS: [usize; 9] = [5, 10, 15, 20, 25, 30, 35, 40, 45];

/// Classifier-free guidance scales a run accepts (the page, links and the CLI alike).
pub const GUIDANCE_RANGE: std::ops::RangeInclusive<f64> = 0.0..=50.0;

/// Settings of one prompt-swap run.
#[derive(Debug, Clone)]
pub struct SwapSettings {
    /// DDIM steps (50 in the paper).
    pub steps: usize,
    /// Classifier-free guidance scale (7.5 by default).
    pub guidance: f64,
    /// Numbers of final steps that use the style prompt, each in `1..=steps`.
    pub swap_points: Vec<usize>,
    /// Most latents per U-Net call (each costs two rows when guided); bounds memory.
    pub max_batch: usize,
}

impl Default for SwapSettings {
    fn default() -> Self {
        Self { steps: 50, guidance: 7.5, swap_points: PAPER_SWAP_POINTS.to_vec(), max_batch: 16 }
    }
}

impl SwapSettings {
    /// Checks the settings; swap points come back sorted and deduplicated.
    pub fn validated(&self) -> Result<Self> {
        let mut points = self.swap_points.clone();
        points.sort_unstable();
        points.dedup();
        if let Some(&p) = points.iter().find(|&&p| p == 0 || p > self.steps) {
            return Err(Error::arg(format!("swap point {p} must be in 1..={}", self.steps)));
        }
        if !(self.guidance.is_finite() && GUIDANCE_RANGE.contains(&self.guidance)) {
            let (lo, hi) = GUIDANCE_RANGE.into_inner();
            return Err(Error::arg(format!("guidance {} must be in {lo}..={hi}", self.guidance)));
        }
        if self.max_batch == 0 {
            return Err(Error::arg("max_batch must be at least 1"));
        }
        Ok(Self { swap_points: points, ..self.clone() })
    }
}

/// The latents of one style prompt's trajectory.
#[derive(Debug, Clone)]
pub struct Trajectory {
    /// The style prompt.
    pub style: String,
    /// Final latent per swap point, in the order of [`SwapSettings::swap_points`] (sorted).
    pub latents: Vec<Tensor<4>>,
}

/// Result of a prompt-swap run.
#[derive(Debug, Clone)]
pub struct SwapResult {
    /// Swap points, sorted.
    pub swap_points: Vec<usize>,
    /// The neutral image's final latent `[1, C, h, w]`.
    pub neutral: Tensor<4>,
    /// One trajectory per style prompt.
    pub trajectories: Vec<Trajectory>,
    /// Guided latent evaluations: one per latent per step (275 for the paper's trajectory).
    pub unet_evaluations: usize,
    /// U-Net forward calls (batches).
    pub unet_batches: usize,
}

/// One latent of a run: the neutral trunk, or the branch of one style from one swap point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The neutral prompt's latent (the neutral image at the end).
    Trunk,
    /// Style `style`'s latent from swap point index `swap` (into the sorted swap points).
    Branch {
        /// Index of the style prompt.
        style: usize,
        /// Index of the swap point.
        swap: usize,
    },
}

/// A run's prompts as text embeddings, each `[1, 77, D]`: the step from prompt to embedding, done once per
/// run before any latent moves.
#[derive(Debug, Clone)]
pub struct PromptEmbeddings {
    /// The neutral prompt's.
    pub neutral: Tensor<3>,
    /// Each style prompt with its embedding.
    pub styles: Vec<(String, Tensor<3>)>,
    /// The unconditional (negative) prompt's: "" in SD.
    pub negative: Tensor<3>,
}

impl PromptEmbeddings {
    /// Embeds the prompts with `sd`'s tokenizer and text encoder.
    pub fn new(sd: &StableDiffusion, neutral: &str, styles: &[String], negative: &str) -> Result<Self> {
        Ok(Self {
            neutral: sd.embed(neutral)?,
            styles: styles.iter().map(|s| Ok((s.clone(), sd.embed(s)?))).collect::<Result<_>>()?,
            negative: sd.embed(negative)?,
        })
    }

    /// Checks that every embedding is `[1, L, width]` with one `L`.
    fn check(&self, width: usize) -> Result<()> {
        let all = std::iter::once(&self.neutral).chain(self.styles.iter().map(|s| &s.1)).chain([&self.negative]);
        let dims: Vec<[usize; 3]> = all.map(Tensor::dims).collect();
        match dims.iter().find(|&&[b, l, d]| b != 1 || l == 0 || l != dims[0][1] || d != width) {
            Some(bad) => Err(Error::arg(format!(
                "text embeddings must all be [1, L, {width}] with one L (the U-Net's cross_attention_dim), got {bad:?}"
            ))),
            None => Ok(()),
        }
    }
}

/// A prompt-swap run advanced one DDIM step at a time, so a UI can report progress and yield in between.
pub struct SwapSampler<'a> {
    unet: &'a UNet2DConditionModel,
    ddim: Ddim,
    settings: SwapSettings,
    styles: Vec<(String, Tensor<3>)>,
    neutral_emb: Tensor<3>,
    uncond: Tensor<3>,
    trunk: Tensor<4>,
    /// (style index, swap point index, latent)
    branches: Vec<(usize, usize, Tensor<4>)>,
    /// x̂₀ predicted at the last step: the trunk's, then each branch's.
    denoised: Vec<Tensor<4>>,
    step: usize,
    evaluations: usize,
    batches: usize,
}

impl<'a> SwapSampler<'a> {
    /// Prepares a run from `init` noise `[1, C, h, w]`. `negative` is the unconditional prompt ("" in SD).
    pub fn new(
        sd: &'a StableDiffusion,
        init: Tensor<4>,
        neutral: &str,
        styles: &[String],
        negative: &str,
        settings: &SwapSettings,
    ) -> Result<Self> {
        let prompts = PromptEmbeddings::new(sd, neutral, styles, negative)?;
        Self::from_embeddings(&sd.unet, &sd.unet_config, &sd.scheduler, init, prompts, settings)
    }

    /// Prepares a run of `unet` (built from `config`) under the scheduler `scheduler` from `init` noise
    /// `[1, C, h, w]` and prompts already embedded, e.g. a benchmark's fixed embeddings.
    pub fn from_embeddings(
        unet: &'a UNet2DConditionModel,
        config: &UNet2DConditionConfig,
        scheduler: &DdimConfig,
        init: Tensor<4>,
        prompts: PromptEmbeddings,
        settings: &SwapSettings,
    ) -> Result<Self> {
        let settings = settings.validated()?;
        let [b, c, h, w] = init.dims();
        if b != 1 || c != config.in_channels || h == 0 || w == 0 {
            return Err(Error::arg(format!(
                "initial latents must be [1, {}, h, w], got {:?}",
                config.in_channels,
                init.dims()
            )));
        }
        prompts.check(config.context_dim())?;
        let PromptEmbeddings { neutral, styles, negative } = prompts;
        Ok(Self {
            ddim: scheduler.build(settings.steps)?,
            neutral_emb: neutral,
            uncond: negative,
            unet,
            settings,
            styles,
            trunk: init,
            branches: Vec::new(),
            denoised: Vec::new(),
            step: 0,
            evaluations: 0,
            batches: 0,
        })
    }

    /// Steps done so far, and in all.
    pub fn progress(&self) -> (usize, usize) {
        (self.step, self.settings.steps)
    }

    /// The neutral (trunk) latent as it stands; reading it back waits for the steps so far.
    pub fn trunk(&self) -> &Tensor<4> {
        &self.trunk
    }

    /// The clean latents x̂₀ the last step predicted, for a preview of where each image is heading: the
    /// trunk's (neutral prompt) first, then each live branch's. Empty before the first step.
    pub fn denoised(&self) -> Vec<(Lane, Tensor<4>)> {
        let lanes = std::iter::once(Lane::Trunk)
            .chain(self.branches.iter().map(|&(style, swap, _)| Lane::Branch { style, swap }));
        lanes.zip(self.denoised.iter().cloned()).collect()
    }

    /// Whether every step has run.
    pub fn is_done(&self) -> bool {
        self.step >= self.settings.steps
    }

    /// Runs one DDIM step for the trunk and every live branch (nothing once done).
    pub fn step(&mut self) -> Result<()> {
        if self.is_done() {
            return Ok(());
        }
        let remaining = self.settings.steps - self.step;
        for (pi, &p) in self.settings.swap_points.iter().enumerate() {
            if p == remaining {
                for si in 0..self.styles.len() {
                    self.branches.push((si, pi, self.trunk.clone()));
                }
            }
        }
        let t = self.ddim.timesteps()[self.step];
        let latents: Vec<Tensor<4>> =
            std::iter::once(self.trunk.clone()).chain(self.branches.iter().map(|b| b.2.clone())).collect();
        let contexts: Vec<Tensor<3>> = std::iter::once(self.neutral_emb.clone())
            .chain(self.branches.iter().map(|b| self.styles[b.0].1.clone()))
            .collect();
        let mut stepped = Vec::with_capacity(latents.len());
        let mut denoised = Vec::with_capacity(latents.len());
        for (lat, ctx) in latents.chunks(self.settings.max_batch).zip(contexts.chunks(self.settings.max_batch)) {
            let x = Tensor::cat(lat.to_vec(), 0);
            let eps =
                self.unet.guided(x.clone(), Tensor::cat(ctx.to_vec(), 0), &self.uncond, t, self.settings.guidance);
            let (next, x0) = self.ddim.step_predicting(eps, t, x)?;
            stepped.extend(next.chunk(lat.len(), 0));
            denoised.extend(x0.chunk(lat.len(), 0));
            self.batches += 1;
        }
        self.evaluations += latents.len();
        let mut it = stepped.into_iter();
        if let Some(trunk) = it.next() {
            self.trunk = trunk;
        }
        for (branch, next) in self.branches.iter_mut().zip(it) {
            branch.2 = next;
        }
        self.denoised = denoised;
        self.step += 1;
        Ok(())
    }

    /// Runs the remaining steps and returns the result.
    pub fn run(mut self) -> Result<SwapResult> {
        while !self.is_done() {
            self.step()?;
        }
        Ok(self.finish())
    }

    /// The result; call after [`is_done`](Self::is_done).
    pub fn finish(self) -> SwapResult {
        let n = self.settings.swap_points.len();
        let mut trajectories: Vec<Trajectory> =
            self.styles.iter().map(|(s, _)| Trajectory { style: s.clone(), latents: Vec::with_capacity(n) }).collect();
        let mut branches = self.branches;
        branches.sort_by_key(|b| (b.0, b.1));
        for (si, _, latent) in branches {
            trajectories[si].latents.push(latent);
        }
        SwapResult {
            swap_points: self.settings.swap_points,
            neutral: self.trunk,
            trajectories,
            unet_evaluations: self.evaluations,
            unet_batches: self.batches,
        }
    }
}
