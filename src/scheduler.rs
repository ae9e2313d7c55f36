//! DDIM (Song et al. 2020) with eta = 0, matching diffusers' `DDIMScheduler` and `DDIMInverseScheduler`
//! for the settings in a model's `scheduler/scheduler_config.json` (SD 1.5: scaled_linear betas
//! 0.00085–0.012, 1000 training steps, `steps_offset` 1, `set_alpha_to_one` false).

use burn::prelude::*;
use serde::Deserialize;

use crate::error::{Error, Result};

/// What the U-Net predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The added noise (SD 1.x, SD 2.x base).
    Epsilon,
    /// v = sqrt(ᾱ)·ε − sqrt(1−ᾱ)·x₀ (SD 2.x 768).
    VPrediction,
    /// The clean sample.
    Sample,
}

/// How betas grow over the training timesteps (diffusers' `beta_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// Linear in β.
    Linear,
    /// Linear in √β (SD).
    ScaledLinear,
    /// Nichol & Dhariwal's cosine schedule.
    SquaredcosCapV2,
}

/// Where the inference timesteps fall (diffusers' `timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// `i · ratio + steps_offset` (SD 1.x).
    Leading,
    /// Counted down from the last training timestep.
    Trailing,
    /// Evenly spread over all training timesteps.
    Linspace,
}

/// Where a diffusers model folder keeps the scheduler's config (named in errors).
const FILE: &str = "scheduler/scheduler_config.json";

/// The most training timesteps a scheduler config may ask for (SD uses 1000; the ᾱ table is allocated from it).
pub const MAX_TRAIN_TIMESTEPS: usize = 100_000;

/// The fields of diffusers' scheduler configs that define DDIM; other schedulers' configs (PNDM, as SD 1.5
/// ships) share them, which is how diffusers' `DDIMScheduler.from_config` reuses them.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct DdimConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub set_alpha_to_one: bool,
    pub steps_offset: usize,
    pub prediction_type: PredictionType,
    pub timestep_spacing: TimestepSpacing,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    /// Explicit betas, overriding `beta_schedule` when given.
    pub trained_betas: Option<Vec<f64>>,
    /// Rescale the betas so the last timestep has zero signal (Lin et al. 2023, Algorithm 1), as diffusers does.
    pub rescale_betas_zero_snr: bool,
    /// Dynamic thresholding of x₀ (for pixel-space models; diffusers calls it unsuitable for latent ones). Only
    /// read so that a config asking for it gets an error instead of being silently sampled without it.
    pub thresholding: bool,
}

impl Default for DdimConfig {
    /// Stable Diffusion 1.5's settings.
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            set_alpha_to_one: false,
            steps_offset: 1,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: TimestepSpacing::Leading,
            clip_sample: false,
            clip_sample_range: 1.0,
            trained_betas: None,
            rescale_betas_zero_snr: false,
            thresholding: false,
        }
    }
}

/// DDIM with its timestep schedule for a fixed number of inference steps.
#[derive(Debug, Clone)]
pub struct Ddim {
    config: DdimConfig,
    alphas_cumprod: Vec<f64>,
    timesteps: Vec<usize>,
    step_ratio: usize,
}

impl DdimConfig {
    /// Parses `scheduler/scheduler_config.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        crate::error::parse_json(FILE, json)
    }

    /// ᾱ_t for every training timestep (what training noises with, and what DDIM steps between).
    pub fn alphas_cumprod(&self) -> Result<Vec<f64>> {
        let n = self.num_train_timesteps;
        if n > MAX_TRAIN_TIMESTEPS {
            return Err(Error::config(
                FILE,
                format!("num_train_timesteps {n} is more than the {MAX_TRAIN_TIMESTEPS} supported"),
            ));
        }
        // diffusers builds betas in float32; we do too so that ᾱ matches bit for bit as far as possible.
        if self.thresholding {
            return Err(Error::config(FILE, "thresholding (for pixel-space models) is not supported"));
        }
        let betas: Vec<f32> = match (&self.trained_betas, self.beta_schedule) {
            (Some(b), _) if b.len() == n => b.iter().map(|&x| x as f32).collect(),
            (Some(b), _) => {
                return Err(Error::config(FILE, format!("trained_betas needs {n} values, got {}", b.len())));
            }
            (None, BetaSchedule::ScaledLinear) => {
                linspace(self.beta_start.sqrt(), self.beta_end.sqrt(), n).map(|b| b * b).collect()
            }
            (None, BetaSchedule::Linear) => linspace(self.beta_start, self.beta_end, n).collect(),
            (None, BetaSchedule::SquaredcosCapV2) => {
                // Nichol & Dhariwal's cosine schedule, as diffusers' betas_for_alpha_bar computes it (in f64).
                let alpha_bar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..n)
                    .map(|i| {
                        (1.0 - alpha_bar((i + 1) as f64 / n as f64) / alpha_bar(i as f64 / n as f64)).min(0.999) as f32
                    })
                    .collect()
            }
        };
        if let Some(b) = betas.iter().find(|b| !(0.0..1.0).contains(*b)) {
            return Err(Error::config(
                FILE,
                match self.trained_betas {
                    Some(_) => format!("trained_betas holds β = {b}, outside [0, 1)"),
                    None => format!(
                        "beta_start {} and beta_end {} give β = {b}, outside [0, 1)",
                        self.beta_start, self.beta_end
                    ),
                },
            ));
        }
        let betas = if self.rescale_betas_zero_snr {
            if n < 2 {
                return Err(Error::config(FILE, "rescale_betas_zero_snr needs num_train_timesteps ≥ 2"));
            }
            rescale_zero_terminal_snr(&betas)
        } else {
            betas
        };
        Ok(cumulative_alphas(&betas).into_iter().map(f64::from).collect())
    }

    /// A DDIM schedule of `steps` inference steps.
    pub fn build(&self, steps: usize) -> Result<Ddim> {
        let n = self.num_train_timesteps;
        if steps == 0 || n == 0 || steps > n {
            return Err(Error::arg(format!("steps must be in 1..={n}, got {steps}")));
        }
        let alphas_cumprod = self.alphas_cumprod()?;
        let step_ratio = n / steps;
        let timesteps: Vec<usize> = match self.timestep_spacing {
            TimestepSpacing::Leading => (0..steps).rev().map(|i| i * step_ratio + self.steps_offset).collect(),
            // As numpy computes them: `arange(n, 0, -n/steps)` and `linspace(0, n-1, steps)` (start + i·step, the
            // last point exact), rounded half to even, as `np.round` does.
            TimestepSpacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                (0..steps)
                    .map(|k| ((n as f64 - k as f64 * ratio).round_ties_even() as usize).saturating_sub(1))
                    .collect()
            }
            TimestepSpacing::Linspace => {
                let step = (n - 1) as f64 / (steps - 1).max(1) as f64;
                let at = |i: usize| if i + 1 == steps && steps > 1 { (n - 1) as f64 } else { i as f64 * step };
                (0..steps).rev().map(|i| at(i).round_ties_even() as usize).collect()
            }
        };
        if timesteps.iter().any(|&t| t >= n) {
            return Err(Error::config(FILE, "steps_offset pushes timesteps past num_train_timesteps"));
        }
        Ok(Ddim { config: self.clone(), alphas_cumprod, timesteps, step_ratio })
    }
}

/// ᾱ_t = ∏_{s ≤ t} (1 − β_s), accumulated in f32 as torch's `cumprod` does.
fn cumulative_alphas(betas: &[f32]) -> Vec<f32> {
    let mut acc = 1f32;
    betas
        .iter()
        .map(|b| {
            acc *= 1.0 - b;
            acc
        })
        .collect()
}

/// diffusers' `rescale_zero_terminal_snr` (in f32 as there): shifts and scales sqrt(ᾱ) so that it ends at 0
/// and starts where it did, then turns it back into betas. `betas` has at least two entries.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let mut sqrt_bar: Vec<f32> = cumulative_alphas(betas).into_iter().map(f32::sqrt).collect();
    let (first, last) = (sqrt_bar[0], sqrt_bar[sqrt_bar.len() - 1]);
    for v in &mut sqrt_bar {
        *v -= last;
        *v *= first / (first - last);
    }
    let bar: Vec<f32> = sqrt_bar.iter().map(|v| v * v).collect();
    std::iter::once(bar[0]).chain(bar.windows(2).map(|w| w[1] / w[0])).map(|a| 1.0 - a).collect()
}

fn linspace(a: f64, b: f64, n: usize) -> impl Iterator<Item = f32> {
    let (a, b) = (a as f32, b as f32);
    // torch.linspace(float32): start + i * step, mirrored from the end for the second half.
    let step = (b - a) / (n.max(2) - 1) as f32;
    (0..n).map(move |i| if i < n / 2 { a + step * i as f32 } else { b - step * (n - 1 - i) as f32 })
}

impl Ddim {
    /// Timesteps from most to least noisy (981, 961, …, 1 for SD 1.5 at 50 steps).
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// The config this schedule was built from.
    pub fn config(&self) -> &DdimConfig {
        &self.config
    }

    fn alpha(&self, t: isize, first: f64) -> f64 {
        if t >= 0 { self.alphas_cumprod[t as usize] } else { first }
    }

    /// ᾱ at a training timestep, which must be one of this schedule's.
    fn alpha_at(&self, timestep: usize) -> Result<f64> {
        self.alphas_cumprod.get(timestep).copied().ok_or_else(|| {
            Error::arg(format!("timestep {timestep} is beyond the {} training timesteps", self.alphas_cumprod.len()))
        })
    }

    /// Splits a model output into (predicted x₀, predicted ε).
    fn predict(&self, output: Tensor<4>, sample: Tensor<4>, alpha: f64) -> (Tensor<4>, Tensor<4>) {
        let (a, b) = (alpha.sqrt(), (1.0 - alpha).sqrt());
        let (x0, eps) = match self.config.prediction_type {
            PredictionType::Epsilon => ((sample - output.clone() * b) / a, output),
            PredictionType::VPrediction => (sample.clone() * a - output.clone() * b, output * a + sample * b),
            PredictionType::Sample => (output.clone(), (sample - output * a) / b),
        };
        let x0 = if self.config.clip_sample {
            let r = self.config.clip_sample_range;
            x0.clamp(-r, r)
        } else {
            x0
        };
        (x0, eps)
    }

    /// One denoising step from `timestep` (a training timestep) to the next (deterministic, eta = 0).
    pub fn step(&self, output: Tensor<4>, timestep: usize, sample: Tensor<4>) -> Result<Tensor<4>> {
        self.step_predicting(output, timestep, sample).map(|(prev, _)| prev)
    }

    /// [`step`](Self::step), also returning the clean latent x̂₀ the model predicts at `timestep`
    /// (diffusers' `pred_original_sample`): what the image would be if denoising stopped here.
    pub fn step_predicting(
        &self,
        output: Tensor<4>,
        timestep: usize,
        sample: Tensor<4>,
    ) -> Result<(Tensor<4>, Tensor<4>)> {
        let alpha = self.alpha_at(timestep)?;
        let prev = timestep as isize - self.step_ratio as isize;
        let final_alpha = if self.config.set_alpha_to_one { 1.0 } else { self.alphas_cumprod[0] };
        let alpha_prev = self.alpha(prev, final_alpha);
        let (x0, eps) = self.predict(output, sample, alpha);
        Ok((x0.clone() * alpha_prev.sqrt() + eps * (1.0 - alpha_prev).sqrt(), x0))
    }

    /// Timesteps of the inversion, from least to most noisy, as `DDIMInverseScheduler` visits them.
    pub fn inverse_timesteps(&self) -> Vec<usize> {
        self.timesteps.iter().rev().copied().collect()
    }

    /// One inversion step (diffusers' `DDIMInverseScheduler.step`): from the noise level one step below
    /// `timestep` up to `timestep`, `output` being the model's prediction at the current, lower level.
    pub fn inverse_step(&self, output: Tensor<4>, timestep: usize, sample: Tensor<4>) -> Result<Tensor<4>> {
        let alpha_next = self.alpha_at(timestep)?;
        let n = self.config.num_train_timesteps as isize;
        let current = (timestep as isize - self.step_ratio as isize).min(n - 1);
        let initial = if self.config.set_alpha_to_one { 1.0 } else { self.alphas_cumprod[0] };
        let alpha = self.alpha(current, initial);
        let (x0, eps) = self.predict(output, sample, alpha);
        Ok(x0 * alpha_next.sqrt() + eps * (1.0 - alpha_next).sqrt())
    }
}

#[cfg(test)]
mod tests {
    //! The reference numbers below are printed by `scripts/reference_values.py` (pinned diffusers).
    use super::*;

    #[test]
    fn sd15_schedule_matches_diffusers() {
        let d = DdimConfig::default().build(50).unwrap();
        assert_eq!(d.timesteps().len(), 50);
        assert_eq!(d.timesteps()[0], 981);
        assert_eq!(d.timesteps()[49], 1);
        // diffusers: DDIMScheduler(SD1.5).alphas_cumprod[[0, 500, 999]] (float32)
        let expected = [0.9991499781608582, 0.27633246779441833, 0.00466009508818388];
        for (i, e) in [0usize, 500, 999].iter().zip(expected) {
            assert!((d.alphas_cumprod[*i] - e).abs() < 1e-6, "ᾱ[{i}] = {} vs {e}", d.alphas_cumprod[*i]);
        }
    }

    #[test]
    fn other_beta_schedules_match_diffusers() {
        let cos =
            DdimConfig { beta_schedule: BetaSchedule::SquaredcosCapV2, ..Default::default() }.alphas_cumprod().unwrap();
        // diffusers: DDIMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod[[0, 1, 500, 998]]
        for (i, e) in
            [(0, 0.9999586939811707), (1, 0.9999125599861145), (500, 0.4922850430011749), (998, 2.428766265438753e-06)]
        {
            assert!((cos[i] - e).abs() <= 1e-6 * e.max(1e-3), "ᾱ[{i}] = {} vs {e}", cos[i]);
        }
        let trained =
            DdimConfig { trained_betas: Some(vec![0.01; 1000]), ..Default::default() }.alphas_cumprod().unwrap();
        assert!((trained[0] - 0.9900000095367432).abs() < 1e-9);
        assert!((trained[999] - 4.3171661673113704e-05).abs() < 1e-8);
        assert!(DdimConfig { trained_betas: Some(vec![0.01; 3]), ..Default::default() }.alphas_cumprod().is_err());
        assert!(DdimConfig { thresholding: true, ..Default::default() }.alphas_cumprod().is_err());
        let one = DdimConfig { num_train_timesteps: 1, rescale_betas_zero_snr: true, ..Default::default() };
        assert!(one.alphas_cumprod().is_err(), "a one-step schedule cannot be rescaled");
    }

    #[test]
    fn zero_terminal_snr_matches_diffusers() {
        // diffusers: DDIMScheduler(scaled_linear 0.00085–0.012, rescale_betas_zero_snr=True,
        // timestep_spacing="trailing", prediction_type="v_prediction", its default clip_sample=True), 10 steps.
        let config = DdimConfig {
            rescale_betas_zero_snr: true,
            clip_sample: true,
            timestep_spacing: TimestepSpacing::Trailing,
            prediction_type: PredictionType::VPrediction,
            ..Default::default()
        };
        let a = config.alphas_cumprod().unwrap();
        let expected = [(0, 0.9991499781608582), (1, 0.9982334971427917), (500, 0.2410186380147934)];
        for (i, e) in expected {
            assert!((a[i] - e).abs() < 1e-6, "ᾱ[{i}] = {} vs {e}", a[i]);
        }
        assert!((a[998] - 1.9679633567193378e-07).abs() < 1e-9 && a[999] == 0.0, "{} {}", a[998], a[999]);
        let linear =
            DdimConfig { beta_schedule: BetaSchedule::Linear, beta_start: 0.0001, beta_end: 0.02, ..config.clone() };
        let l = linear.alphas_cumprod().unwrap();
        assert!((l[0] - 0.9998999834060669).abs() < 1e-7 && (l[500] - 0.07524619996547699).abs() < 1e-6);
        let d = config.build(10).unwrap();
        assert_eq!(d.timesteps(), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
        // The first step, at zero signal: diffusers' `step(v, 999, x).prev_sample` (torch.manual_seed(0)).
        let x: [f64; 16] = [
            -1.1258398,
            -1.1523602,
            -0.25057858,
            -0.43387881,
            0.84871036,
            0.69200915,
            -0.31601277,
            -2.1152194,
            0.32227492,
            -1.2633348,
            0.34998319,
            0.30813393,
            0.11984151,
            1.2376579,
            1.1167772,
            -0.24727815,
        ];
        let v: [f64; 16] = [
            -1.3526537,
            -1.6959312,
            0.56665063,
            0.79350835,
            0.59883946,
            -1.5550951,
            -0.34136039,
            1.8530061,
            0.75018948,
            -0.58549756,
            -0.17339675,
            0.18347794,
            1.3893661,
            1.5863342,
            0.94629836,
            -0.84367675,
        ];
        let want: [f64; 16] = [
            -1.0690578,
            -1.0955380,
            -0.28140560,
            -0.47692144,
            0.81444216,
            0.74603218,
            -0.29673332,
            -2.1670823,
            0.28047037,
            -1.2291721,
            0.35900155,
            0.29756153,
            0.064586312,
            1.1807063,
            1.0629665,
            -0.20043877,
        ];
        let device = Device::flex();
        let t = |v: [f64; 16]| {
            let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Tensor::<4>::from_data(TensorData::new(v, [1, 4, 2, 2]), &device)
        };
        let got = d.step(t(v), 999, t(x)).unwrap().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn trailing_and_linspace_timesteps_round_as_numpy() {
        // diffusers' DDIMScheduler(timestep_spacing=…).set_timesteps(…).timesteps; the .5 cases round to even.
        let spaced = |spacing: TimestepSpacing, n: usize, steps: usize| {
            let c = DdimConfig { timestep_spacing: spacing, num_train_timesteps: n, ..Default::default() };
            c.build(steps).unwrap().timesteps().to_vec()
        };
        assert_eq!(
            spaced(TimestepSpacing::Trailing, 1000, 16),
            [999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61]
        );
        assert_eq!(spaced(TimestepSpacing::Trailing, 10, 4), [9, 7, 4, 1]);
        assert_eq!(spaced(TimestepSpacing::Linspace, 1000, 7), [999, 832, 666, 500, 333, 166, 0]);
        assert_eq!(spaced(TimestepSpacing::Linspace, 10, 5), [9, 7, 4, 2, 0]);
        assert_eq!(spaced(TimestepSpacing::Linspace, 1000, 1), [0]);
    }

    #[test]
    fn rejects_bad_step_counts() {
        assert!(DdimConfig::default().build(0).is_err());
        assert!(DdimConfig::default().build(1001).is_err());
    }

    #[test]
    fn the_predicted_clean_latent_recomposes_the_sample() {
        // ε-prediction: x_t = √ᾱ_t·x̂₀ + √(1-ᾱ_t)·ε, and the step itself is unchanged.
        let d = DdimConfig::default().build(50).unwrap();
        let device = Device::flex();
        let sample = Tensor::<4>::from_floats([[[[0.5, -1.0], [2.0, 0.25]]]], &device);
        let eps = Tensor::<4>::from_floats([[[[0.1, 0.3], [-0.7, 1.2]]]], &device);
        let t = d.timesteps()[10];
        let (prev, x0) = d.step_predicting(eps.clone(), t, sample.clone()).unwrap();
        let a = d.alpha_at(t).unwrap();
        let again = x0 * a.sqrt() + eps.clone() * (1.0 - a).sqrt();
        let diff: f32 = (again - sample.clone()).abs().max().into_scalar();
        assert!(diff < 1e-5, "{diff}");
        let step: f32 = (d.step(eps, t, sample).unwrap() - prev).abs().max().into_scalar();
        assert_eq!(step, 0.0);
    }

    #[test]
    fn rejects_timesteps_past_the_schedule_and_unknown_config_values() {
        let d = DdimConfig::default().build(10).unwrap();
        let x = Tensor::<4>::zeros([1, 1, 1, 1], &Device::flex());
        assert!(d.step(x.clone(), 1000, x.clone()).is_err());
        assert!(d.inverse_step(x.clone(), 5000, x.clone()).is_err());
        assert!(d.step(x.clone(), 981, x).is_ok());
        let err = DdimConfig::from_json(r#"{"beta_schedule": "sigmoid"}"#).unwrap_err().to_string();
        assert!(err.contains("beta_schedule") && err.contains("sigmoid"), "{err}");
        let err = DdimConfig::from_json(r#"{"timestep_spacing": 3}"#).unwrap_err().to_string();
        assert!(err.contains("timestep_spacing"), "{err}");
        // A hostile count must not size an allocation; a β ≥ 1 would make ᾱ negative and every image NaN.
        let huge = DdimConfig { num_train_timesteps: 1 << 40, ..Default::default() };
        assert!(huge.build(10).unwrap_err().to_string().contains("num_train_timesteps"));
        let steep = DdimConfig { beta_end: 5.0, ..Default::default() };
        assert!(steep.build(10).unwrap_err().to_string().contains("outside [0, 1)"));
    }
}
