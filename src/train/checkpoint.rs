//! A model folder under training: `config.json`, the weights (diffusers' names), `train_state.json` (the step
//! reached and every run that trained it, with its settings), `loss.csv` with its plot `loss.svg`, and the
//! optimizer's state at that step in `optimizer-{step}/`, so a resumed run goes on with AdamW's moments.
//! Opening a folder resumes from its last save; every file is replaced atomically, so a crash mid-save leaves
//! the previous save whole; a folder whose state is missing, corrupt or without weights is an error that says
//! how to go on, never a silent restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::optim::ModuleOptimizer;
use burn_store::{BurnpackStore, ModuleSnapshot};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files;
use crate::weights::{NameMap, WeightFile};

/// One run of a stage: the steps it trained and the settings it trained them with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The step it started from.
    pub from_step: usize,
    /// The step its last save reached.
    pub to_step: usize,
    /// Its settings (the stage's training config).
    pub settings: serde_json::Value,
    /// Whether it went on with the optimizer state of the save it resumed (false: AdamW started afresh, as
    /// in every run before the state was saved, and in runs carried to another machine without it).
    #[serde(default)]
    pub optimizer_resumed: bool,
}

/// What `train_state.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: usize,
    /// Every run that trained the weights, oldest first (empty for folders saved before runs were recorded).
    #[serde(default)]
    pub runs: Vec<RunRecord>,
    /// The folder beside this file that holds the optimizer's state at `step` (`optimizer-{step}`), when the
    /// save wrote one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<String>,
}

impl TrainState {
    /// Reads `train_state.json`; a file that is not a state is an error saying how to go on.
    pub fn read(path: &Path) -> Result<Self> {
        let text = files::read_text(path)?;
        serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "is not a training state ({e}); restore it from a backup, or delete its folder to train this \
                 stage from scratch"
            ),
        })
    }
}

/// When a run stops early, saving first, so that a machine lent for a fixed time keeps what it trained: the
/// next run resumes from that save.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline: every stage runs to its last step.
    pub const NEVER: Self = Self(None);

    /// `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Self(Instant::now().checked_add(limit))
    }

    /// Whether the deadline has passed.
    pub fn passed(self) -> bool {
        self.0.is_some_and(|at| Instant::now() >= at)
    }
}

/// Where a stage saves its checkpoints (and resumes from), and when it stops early.
#[derive(Debug, Clone, Copy)]
pub struct Saves<'a> {
    /// The stage's folder.
    pub dir: &'a Path,
    /// When to stop, at a save.
    pub deadline: Deadline,
}

impl<'a> Saves<'a> {
    /// Saves in `dir`, with no deadline.
    pub fn to(dir: &'a Path) -> Self {
        Self { dir, deadline: Deadline::NEVER }
    }

    /// The same, stopping once `deadline` has passed.
    pub fn until(self, deadline: Deadline) -> Self {
        Self { deadline, ..self }
    }
}

/// What [`Checkpoint::after_step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Logged the step; the next one follows.
    Next,
    /// Saved; the next step follows (unless this was the last).
    Saved,
    /// Saved because the deadline passed: the stage stops here.
    Stop,
}

/// The open checkpoint of one stage.
pub struct Checkpoint {
    dir: PathBuf,
    weights: String,
    export: &'static [(&'static str, &'static str)],
    state: TrainState,
    /// `loss.csv` as saved, plus the steps logged since.
    losses: String,
}

impl Checkpoint {
    /// Opens the stage folder `dir`, whose weights file is `weights`, for a run with `settings`: writes
    /// `config` as `config.json` and, when the folder holds a save, loads its weights into `model` and, where
    /// the save kept it, its state into `optim`. Returns the checkpoint and the step to start from.
    #[allow(clippy::too_many_arguments)]
    pub fn open<M: ModuleSnapshot>(
        dir: &Path,
        weights: &str,
        config: &serde_json::Value,
        model: &mut M,
        optim: &mut ModuleOptimizer,
        names: &NameMap,
        export: &'static [(&'static str, &'static str)],
        settings: &impl Serialize,
    ) -> Result<(Self, usize)> {
        files::create_dir(dir)?;
        let (state_path, weights_path) = (dir.join("train_state.json"), dir.join(weights));
        let fail = |message: String| Error::Checkpoint { path: dir.to_path_buf(), message };
        let mut state = match (state_path.is_file(), weights_path.is_file()) {
            (false, false) => TrainState { step: 0, runs: Vec::new(), optimizer: None },
            (true, true) => {
                let state = TrainState::read(&state_path)?;
                crate::weights::load_into(model, weights, vec![WeightFile::Path(weights_path)], names).map_err(
                    |e| fail(format!("{e}; restore {weights}, or delete the folder to train this stage from scratch")),
                )?;
                state
            }
            (true, false) => {
                return Err(fail(format!(
                    "has train_state.json but no {weights}; restore the weights, or delete train_state.json to \
                     train this stage from scratch"
                )));
            }
            (false, true) => {
                return Err(fail(format!(
                    "has {weights} but no train_state.json, so the step they reached is unknown; restore \
                     train_state.json (e.g. {{\"step\": 1200}}), delete the weights to train this stage from \
                     scratch, or seed the folder from a shipped model with `train-mini --resume-from`"
                )));
            }
        };
        let optimizer_resumed = match state.optimizer.take() {
            Some(name) => load_optimizer(dir, &name, model, optim)?,
            None => false,
        };
        let settings = serde_json::to_value(settings).map_err(|e| fail(format!("settings: {e}")))?;
        state.runs.push(RunRecord { from_step: state.step, to_step: state.step, settings, optimizer_resumed });
        // Steps logged after the last save (before a crash) are trained again, so their rows go.
        let log = dir.join("loss.csv");
        let losses = if log.is_file() {
            let text = files::read_text(&log)?;
            let kept = text.lines().filter(|l| {
                l.split_once(',').and_then(|(s, _)| s.trim().parse::<usize>().ok()).is_some_and(|s| s < state.step)
            });
            kept.map(|l| format!("{l}\n")).collect()
        } else {
            String::new()
        };
        files::write_json(&dir.join("config.json"), config)?;
        let start = state.step;
        let ckpt = Self { dir: dir.to_path_buf(), weights: weights.to_string(), export, state, losses };
        if !ckpt.losses.is_empty() {
            ckpt.plot()?;
        }
        Ok((ckpt, start))
    }

    /// [`open`](Self::open) for a diffusers model folder: `diffusion_pytorch_model.safetensors`, and the
    /// model's `config` written with its `_class_name`.
    #[allow(clippy::too_many_arguments)]
    pub fn diffusers<M: ModuleSnapshot>(
        dir: &Path,
        class_name: &str,
        config: &impl Serialize,
        model: &mut M,
        optim: &mut ModuleOptimizer,
        names: &NameMap,
        export: &'static [(&'static str, &'static str)],
        settings: &impl Serialize,
    ) -> Result<(Self, usize)> {
        let json = super::diffusers_config(class_name, config)?;
        Self::open(dir, "diffusion_pytorch_model.safetensors", &json, model, optim, names, export, settings)
    }

    /// Logs step `step`'s loss and saves when `every` steps have passed, the run (`steps` in all) is done or
    /// `deadline` has passed; says which.
    #[allow(clippy::too_many_arguments)]
    pub fn after_step<M: ModuleSnapshot>(
        &mut self,
        model: &M,
        optim: &ModuleOptimizer,
        step: usize,
        loss: f32,
        steps: usize,
        every: usize,
        deadline: Deadline,
    ) -> Result<After> {
        self.losses.push_str(&format!("{step},{loss}\n"));
        let stop = deadline.passed() && step + 1 < steps;
        if !(stop || (step + 1).is_multiple_of(every.max(1)) || step + 1 == steps) {
            return Ok(After::Next);
        }
        self.save(model, optim, step + 1)?;
        Ok(if stop { After::Stop } else { After::Saved })
    }

    /// Saves the weights, the optimizer's state and the loss log, then the state that names their step (last,
    /// so a crash in between resumes from the previous save, whose log rows past it are dropped), then drops
    /// the older optimizer states and draws the plot.
    fn save<M: ModuleSnapshot>(&mut self, model: &M, optim: &ModuleOptimizer, step: usize) -> Result<()> {
        crate::weights::save_pytorch(model, &self.dir.join(&self.weights), self.export)?;
        let name = format!("{OPTIMIZER}{step}");
        save_optimizer(&self.dir.join(&name), model, optim)?;
        files::write(&self.dir.join("loss.csv"), self.losses.as_bytes())?;
        self.state.step = step;
        self.state.optimizer = Some(name.clone());
        if let Some(run) = self.state.runs.last_mut() {
            run.to_step = step;
        }
        files::write_json(&self.dir.join("train_state.json"), &self.state)?;
        for entry in std::fs::read_dir(&self.dir).map_err(Error::io(&self.dir))? {
            let old = entry.map_err(Error::io(&self.dir))?.path();
            if old.file_name().is_some_and(|n| n.to_string_lossy().starts_with(OPTIMIZER) && *n != *name) {
                std::fs::remove_dir_all(&old).map_err(Error::io(&old))?;
            }
        }
        self.plot()
    }

    fn plot(&self) -> Result<()> {
        let title = self.dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        crate::plot::loss(&self.losses, &title, &self.dir.join("loss.svg"))
    }
}

/// The optimizer state folders' name, before the step.
const OPTIMIZER: &str = "optimizer-";
/// In an optimizer state folder: the model in burn's own format, which keeps the parameter ids that the
/// optimizer's state is keyed by (the diffusers weights file has names only), and that state.
const PARAMS: &str = "params.bpk";
const STATE: &str = "state.bpk";

fn save_optimizer<M: ModuleSnapshot>(folder: &Path, model: &M, optim: &ModuleOptimizer) -> Result<()> {
    files::create_dir(folder)?;
    let fail = |e: String| Error::Checkpoint { path: folder.to_path_buf(), message: e };
    let mut store = BurnpackStore::from_file(folder.join(PARAMS)).auto_extension(false).overwrite(true);
    model.save_into(&mut store).map_err(|e| fail(e.to_string()))?;
    optim.save(folder.join(STATE)).map_err(|e| fail(e.to_string()))
}

/// Loads the optimizer state that `train_state.json` names as `name`, giving `model` the parameter ids it is
/// keyed by (its weights are the save's, as in the diffusers file). Says whether there was one: a folder carried
/// without it (`scripts/gpu` sends the weights only) restarts AdamW, as before the state was kept.
fn load_optimizer<M: ModuleSnapshot>(
    dir: &Path,
    name: &str,
    model: &mut M,
    optim: &mut ModuleOptimizer,
) -> Result<bool> {
    let folder = dir.join(name);
    let fail = |e: String| Error::Checkpoint {
        path: folder.clone(),
        message: format!(
            "holds no optimizer state that can be read ({e}); delete the folder and its \"optimizer\" entry in \
             train_state.json to resume with a fresh optimizer"
        ),
    };
    // The name comes from a file: only a folder of this one, never a path elsewhere.
    if !name.strip_prefix(OPTIMIZER).is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())) {
        return Err(fail(format!("\"{name}\" is not an optimizer-STEP name")));
    }
    if !folder.is_dir() {
        return Ok(false);
    }
    let mut store = BurnpackStore::from_file(folder.join(PARAMS)).auto_extension(false);
    let applied = model.load_from(&mut store).map_err(|e| fail(e.to_string()))?;
    if !applied.is_success() || !applied.missing.is_empty() || !applied.unused.is_empty() {
        return Err(fail(format!("{PARAMS} does not fit the model: {applied}")));
    }
    // burn's loader asserts on a record it cannot place; a damaged file is an error here, not a panic.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| optim.clone().load(folder.join(STATE))))
        .map_err(|_| fail(format!("{STATE} is damaged")))?;
    *optim = loaded.map_err(|e| fail(e.to_string()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(burn::module::Module, Debug)]
    struct Tiny {
        w: burn::module::Param<burn::prelude::Tensor<1>>,
    }

    fn tiny(v: f32) -> Tiny {
        let device = burn::prelude::Device::flex();
        Tiny { w: burn::module::Param::from_data(burn::tensor::TensorData::new(vec![v; 4], [4]), &device) }
    }

    const NAMES: NameMap = NameMap { remaps: &[], ignore: &[] };

    fn adamw() -> ModuleOptimizer {
        burn::optim::AdamWConfig::new().init()
    }

    fn open(dir: &Path, model: &mut Tiny, lr: f64) -> Result<(Checkpoint, usize)> {
        open_with(dir, model, &mut adamw(), lr)
    }

    fn open_with(dir: &Path, model: &mut Tiny, optim: &mut ModuleOptimizer, lr: f64) -> Result<(Checkpoint, usize)> {
        Checkpoint::open(
            dir,
            "w.safetensors",
            &serde_json::json!({"a": 1}),
            model,
            optim,
            &NAMES,
            &[],
            &serde_json::json!({"lr": lr}),
        )
    }

    #[test]
    fn resumes_records_every_run_and_refuses_what_it_cannot_trust() {
        let dir = std::env::temp_dir().join(format!("traverse-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut ckpt, start) = open(&dir, &mut tiny(1.0), 0.1).unwrap();
        assert_eq!(start, 0);
        for step in 0..3 {
            ckpt.after_step(&tiny(2.0), &adamw(), step, 0.5, 3, 2, Deadline::NEVER).unwrap();
        }
        // Step 3 was logged but never saved: a resumed run starts at the save (step 3 of the file) and drops
        // nothing; a row past the save would be dropped.
        std::fs::write(dir.join("loss.csv"), "0,0.5\n1,0.5\n2,0.5\n3,0.9\n").unwrap();
        let mut model = tiny(0.0);
        let (mut ckpt, start) = open(&dir, &mut model, 0.05).unwrap();
        assert_eq!(start, 3);
        assert_eq!(crate::readback::values(model.w.val()).unwrap(), vec![2.0; 4], "weights loaded");
        assert_eq!(files::read_text(&dir.join("loss.csv")).unwrap().lines().count(), 4, "nothing rewritten yet");
        ckpt.after_step(&tiny(3.0), &adamw(), 3, 0.4, 4, 10, Deadline::NEVER).unwrap();
        assert_eq!(files::read_text(&dir.join("loss.csv")).unwrap(), "0,0.5\n1,0.5\n2,0.5\n3,0.4\n");
        let state = TrainState::read(&dir.join("train_state.json")).unwrap();
        assert_eq!(state.step, 4);
        let runs: Vec<_> = state.runs.iter().map(|r| (r.from_step, r.to_step, r.settings["lr"].as_f64())).collect();
        assert_eq!(runs, [(0, 3, Some(0.1)), (3, 4, Some(0.05))]);
        assert!(
            std::fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".partial"))
        );

        // A corrupt state, a state without weights, weights without a state: errors that say what to do.
        std::fs::write(dir.join("train_state.json"), "{\"step\": ").unwrap();
        let err = open(&dir, &mut tiny(0.0), 0.1).err().unwrap().to_string();
        assert!(err.contains("is not a training state") && err.contains("delete"), "{err}");
        std::fs::remove_file(dir.join("train_state.json")).unwrap();
        let err = open(&dir, &mut tiny(0.0), 0.1).err().unwrap().to_string();
        assert!(err.contains("no train_state.json") && err.contains("--resume-from"), "{err}");
        std::fs::write(dir.join("train_state.json"), "{\"step\": 4}").unwrap();
        std::fs::remove_file(dir.join("w.safetensors")).unwrap();
        let err = open(&dir, &mut tiny(0.0), 0.1).err().unwrap().to_string();
        assert!(err.contains("but no w.safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Trains `tiny(0.0)` towards a target with AdamW (lr 0.1, a save every 2 steps) from the save in `dir`, or
    /// from scratch, up to step 4; returns the weights and the run's record.
    fn train_to_4(dir: &Path, stop_at: usize) -> (Vec<f32>, RunRecord) {
        let device = burn::prelude::Device::flex().autodiff();
        let mut model = Tiny { w: burn::module::Param::from_data(TensorData::new(vec![0.0f32; 4], [4]), &device) };
        let mut optim = adamw();
        let (mut ckpt, start) = open_with(dir, &mut model, &mut optim, 0.1).unwrap();
        for step in start..stop_at {
            let target = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, -2.0, 3.0, 0.5], [4]), &device);
            let loss = (model.w.val() - target).powf_scalar(2.0).sum();
            model = super::super::descend(model, &mut optim, loss, 0.1);
            ckpt.after_step(&model, &optim, step, 0.0, 4, 2, Deadline::NEVER).unwrap();
        }
        let state = TrainState::read(&dir.join("train_state.json")).unwrap();
        (crate::readback::values(model.w.val()).unwrap(), state.runs.last().unwrap().clone())
    }

    use burn::prelude::{Tensor, TensorData};

    #[test]
    fn a_resumed_run_goes_on_with_the_optimizer_state_of_its_save() {
        let root = std::env::temp_dir().join(format!("traverse-optim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (whole, record) = train_to_4(&root.join("whole"), 4);
        assert!(!record.optimizer_resumed);
        let kept: Vec<_> = std::fs::read_dir(root.join("whole")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(kept.iter().any(|n| n == "optimizer-4"));
        assert!(!kept.iter().any(|n| n == "optimizer-2"), "older states are dropped: {kept:?}");

        // Two runs of two steps each end where one run of four does, to the bit.
        let split = root.join("split");
        train_to_4(&split, 2);
        let (resumed, record) = train_to_4(&split, 4);
        assert!(record.optimizer_resumed);
        assert_eq!(resumed, whole);

        // Without the state (a run carried to another machine without it) AdamW restarts, and it shows.
        let carried = root.join("carried");
        train_to_4(&carried, 2);
        std::fs::remove_dir_all(carried.join("optimizer-2")).unwrap();
        let (restarted, record) = train_to_4(&carried, 4);
        assert!(!record.optimizer_resumed);
        assert_ne!(restarted, whole);

        // A damaged state, or a name that leaves the folder, is an error that says what to do.
        std::fs::write(split.join("optimizer-4").join(STATE), b"not a burnpack").unwrap();
        let err = open(&split, &mut tiny(0.0), 0.1).err().unwrap().to_string();
        assert!(err.contains("no optimizer state that can be read") && err.contains("delete"), "{err}");
        std::fs::write(split.join("train_state.json"), r#"{"step": 4, "optimizer": "../whole/optimizer-4"}"#).unwrap();
        let err = open(&split, &mut tiny(0.0), 0.1).err().unwrap().to_string();
        assert!(err.contains("is not an optimizer-STEP name"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
