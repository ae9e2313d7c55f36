//! Splitting an evaluation over processes or a cluster's array tasks, and merging the pieces.
//!
//! Shard K of N measures the subjects `K·S/N .. (K+1)·S/N` of every setting and writes their
//! [`SubjectRecord`]s to `KIND-K-of-N.json`; shard 0 also measures the autoencoder ceiling. [`merge`] checks
//! that the shards belong to one run (same settings, each index once, every subject once) and computes the
//! report from the records with [`summarize`], exactly as a single process does: one process is the run
//! with N = 1. A shard whose file is already there for the same run is skipped, so a killed job resumes.

use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::report::{CeilingReport, Cost, EvaluationReport};
use super::{AutoencoderCeiling, Evaluation, SubjectRecord, summarize};
use crate::classifier::ClassifierConfig;
use crate::error::{Error, Result};
use crate::swap::SwapSettings;
use crate::synthetic::{Kind, settings};

/// One of `count` shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 0-based index.
    pub index: usize,
    /// How many shards the run has.
    pub count: usize,
}

/// The most shards a run may have (a Slurm array's default maximum is 1001 tasks).
pub const MAX_SHARDS: usize = 100_000;

impl FromStr for Shard {
    type Err = Error;

    /// `K/N`, 0 ≤ K < N.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::arg(format!("a shard is K/N with 0 ≤ K < N ≤ {MAX_SHARDS}, e.g. 0/4; got {s:?}"));
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index >= count || count > MAX_SHARDS {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// The whole run as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// This shard's subjects of `total`: contiguous, sizes differing by at most one.
    pub fn subjects(&self, total: usize) -> Range<usize> {
        (self.index * total / self.count)..((self.index + 1) * total / self.count)
    }

    /// Its file name for a family, e.g. `derm-0002-of-0016.json`.
    pub fn file_name(&self, kind: Kind) -> String {
        format!("{}-{:04}-of-{:04}.json", kind.name(), self.index, self.count)
    }
}

/// What every shard of one run shares, and the report repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Phantom family.
    pub kind: Kind,
    /// The model folder.
    pub model: String,
    /// The classifier folder.
    pub classifier: String,
    /// The LPIPS weights, if any.
    pub lpips: Option<String>,
    /// Subjects per setting.
    pub subjects: usize,
    /// First seed (and the ceiling's dataset seed).
    pub seed: u64,
    /// DDIM steps.
    pub steps: usize,
    /// Guidance.
    pub guidance: f64,
    /// Swap points.
    pub swap_points: Vec<usize>,
    /// Bézier control points.
    pub controls: usize,
    /// Interpolated images per trajectory.
    pub interpolations: usize,
    /// Subjects on each t-SNE map (the first ones).
    pub map_subjects: usize,
    /// Phantoms per attribute of the autoencoder ceiling (0: none).
    pub ceiling_subjects: usize,
    /// The float type the models computed in (runs written before it existed were f32).
    #[serde(default)]
    pub precision: crate::weights::Precision,
    /// SHA-256 of the files the run reads ([`inputs_sha256`]): a shard that another model (or classifier)
    /// measured from the same folder is never taken for this run's. Empty in files written before it.
    #[serde(default)]
    pub inputs_sha256: String,
}

/// SHA-256 over `paths` (files, or folders walked in name order) of each file's path below its root, length
/// and bytes, read in pieces. Folders nest at most 8 deep (a link cycle is an error, not a hang).
pub fn inputs_sha256(paths: &[&Path]) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;

    fn add(hasher: &mut Sha256, path: &Path, name: &str, depth: usize) -> Result<()> {
        let meta = std::fs::metadata(path).map_err(Error::io(path))?;
        if meta.is_dir() {
            if depth == 8 {
                return Err(Error::arg(format!("{}: folders nest too deep", path.display())));
            }
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .and_then(|d| d.collect::<std::io::Result<Vec<_>>>())
                .map_err(Error::io(path))?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let child = format!("{name}/{}", entry.file_name().to_string_lossy());
                add(hasher, &entry.path(), &child, depth + 1)?;
            }
            return Ok(());
        }
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(meta.len().to_le_bytes());
        let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(Error::io(path))?;
            if n == 0 {
                return Ok(());
            }
            hasher.update(&buf[..n]);
        }
    }
    let mut hasher = Sha256::new();
    for (i, path) in paths.iter().enumerate() {
        add(&mut hasher, path, &i.to_string(), 0)?;
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl RunSettings {
    /// The evaluation these settings describe (checked).
    pub fn evaluation(&self) -> Result<Evaluation> {
        let swap = SwapSettings {
            steps: self.steps,
            guidance: self.guidance,
            swap_points: self.swap_points.clone(),
            max_batch: 16,
        };
        Ok(Evaluation {
            subjects: self.subjects,
            seed: self.seed,
            swap: swap.validated()?,
            controls: self.controls,
            interpolations: self.interpolations,
            map_subjects: self.map_subjects,
        })
    }
}

/// One setting's records in a shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettingRecords {
    /// Setting name.
    pub setting: String,
    /// Subject records, in subject order.
    pub records: Vec<SubjectRecord>,
}

/// How long a shard took.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardTiming {
    /// Wall time of the subjects, in seconds.
    pub seconds: f64,
    /// Wall time of the autoencoder ceiling (shard 0), in seconds.
    pub ceiling_seconds: f64,
    /// Subjects measured (per setting).
    pub subjects: usize,
}

/// A shard's file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardResult {
    /// Which shard.
    pub shard: Shard,
    /// The run it belongs to.
    pub run: RunSettings,
    /// The classifier's labels and sizes, so merging needs no model files.
    pub classifier_config: ClassifierConfig,
    /// Per setting of the family, in order.
    pub settings: Vec<SettingRecords>,
    /// The autoencoder ceiling (shard 0, when measured).
    pub ceiling: Option<Vec<AutoencoderCeiling>>,
    /// Its cost.
    pub timing: ShardTiming,
}

impl ShardResult {
    /// The result as its file reads back: numbers pass through JSON's decimal text, and serde_json parses
    /// some floats a last bit away from what was written. A one-process run's records take the same path, so
    /// its report equals a merged one's to the byte.
    pub fn as_stored(&self) -> Result<Self> {
        let text = serde_json::to_string(self).map_err(|e| Error::arg(format!("shard result: {e}")))?;
        serde_json::from_str(&text).map_err(|e| Error::arg(format!("shard result: {e}")))
    }
}

/// Shard files are ours, but a wrong path must not read gigabytes: 1 GiB is far past the paper's scale
/// (2500 subjects of one family with 50 interpolations take about 100 MB in one shard).
const MAX_SHARD_BYTES: u64 = 1 << 30;

/// Reads a shard file.
pub fn read_shard(path: &Path) -> Result<ShardResult> {
    let len = std::fs::metadata(path).map_err(Error::io(path))?.len();
    if len > MAX_SHARD_BYTES {
        return Err(Error::arg(format!("{} is {len} bytes, more than a shard file holds", path.display())));
    }
    let text = crate::files::read_text(path)?;
    serde_json::from_str(&text).map_err(|e| Error::arg(format!("{} is not a shard file: {e}", path.display())))
}

/// Whether shard `shard` of `run` is already in `path`: `false` if there is no file, an error if the file is
/// another run's (it is not overwritten).
pub fn already_done(path: &Path, shard: Shard, run: &RunSettings) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let done = read_shard(path)?;
    if done.shard != shard || &done.run != run {
        return Err(Error::arg(format!(
            "{} holds shard {}/{} of another run (different settings); move it away or use another --shard-dir",
            path.display(),
            done.shard.index,
            done.shard.count
        )));
    }
    Ok(true)
}

/// The report of a whole run from its shards (any order): every figure equal to the one-process run's.
///
/// With `first_subjects`, the report of only the run's first subjects, equal to a one-process run of that
/// many (its cost aside, which counts the whole shards that held them): the shards holding them must be
/// there, the others may not be. It compares a large run with a smaller one on the same seeds.
pub fn merge(mut shards: Vec<ShardResult>, first_subjects: Option<usize>) -> Result<EvaluationReport> {
    let first = shards.first().ok_or_else(|| Error::arg("no shard files to merge"))?;
    let (whole, config, count) = (first.run.clone(), first.classifier_config.clone(), first.shard.count);
    let mut run = whole.clone();
    // The shards holding the subjects to report: all of them, or those that start below `first_subjects`.
    let mut expected = count;
    if let Some(n) = first_subjects {
        if n == 0 || n > run.subjects {
            return Err(Error::arg(format!("--first-subjects {n} of a run of {} subjects", run.subjects)));
        }
        let needed = |index| Shard { index, count }.subjects(run.subjects).start < n;
        expected = (0..count).filter(|&k| needed(k)).count();
        shards.retain(|s| needed(s.shard.index));
        run.subjects = n;
    }
    shards.sort_by_key(|s| s.shard.index);
    for (k, s) in shards.iter().enumerate() {
        if s.run != whole || s.classifier_config != config || s.shard.count != count {
            return Err(Error::arg(format!(
                "shard {}/{} belongs to another run than shard {}/{count}",
                s.shard.index, s.shard.count, shards[0].shard.index
            )));
        }
        if s.shard.index != k {
            let missing = if s.shard.index > k { format!("shard {k} is missing") } else { "a shard repeats".into() };
            return Err(Error::arg(format!("{missing}: {} of {count} shard files given", shards.len())));
        }
    }
    if shards.len() != expected {
        return Err(Error::arg(format!("{} of {expected} shards given", shards.len())));
    }
    let eval = run.evaluation()?;
    let (mut scores, mut maps, mut evaluations, mut trajectories) = (Vec::new(), Vec::new(), 0usize, 0usize);
    let family = settings(run.kind)?;
    for (i, setting) in family.iter().enumerate() {
        let mut records = Vec::with_capacity(run.subjects);
        for s in &mut shards {
            let part = s.settings.get_mut(i).filter(|p| p.setting == setting.name).ok_or_else(|| {
                Error::arg(format!("shard {} has no records of setting {:?}", s.shard.index, setting.name))
            })?;
            records.extend(part.records.drain(..).filter(|r| r.subject < run.subjects));
        }
        if !records.iter().map(|r| r.subject).eq(0..run.subjects) {
            return Err(Error::arg(format!(
                "setting {:?}: the shards' records are not subjects 0..{} once each",
                setting.name, run.subjects
            )));
        }
        evaluations += records.iter().map(|r| r.unet_evaluations).sum::<usize>();
        trajectories += records.len() * setting.styles.len();
        let report = summarize(&config, setting, &eval, &records)?;
        scores.extend(report.scores);
        maps.extend(report.latent_map);
    }
    let seconds: f64 = shards.iter().map(|s| s.timing.seconds).sum();
    let swap_images = (scores.iter().map(|s| s.samples).sum::<usize>()).max(1);
    let cost = Cost {
        shards: shards.len(),
        seconds,
        ceiling_seconds: shards.iter().map(|s| s.timing.ceiling_seconds).sum(),
        unet_evaluations_per_trajectory: evaluations as f64 / trajectories.max(1) as f64,
        seconds_per_subject: seconds / (run.subjects * family.len()).max(1) as f64,
        seconds_per_swap_image: seconds / swap_images as f64,
    };
    let ceiling = shards[0].ceiling.take().map(|attributes| CeilingReport {
        subjects: run.ceiling_subjects,
        dataset_seed: run.seed,
        attributes,
    });
    Ok(EvaluationReport { command: "evaluate", run, scores, latent_maps: maps, autoencoder_ceiling: ceiling, cost })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_subjects_evenly_and_once() {
        for (total, count) in [(10, 3), (2500, 16), (2, 5), (0, 1)] {
            let mut all = Vec::new();
            for index in 0..count {
                let range = Shard { index, count }.subjects(total);
                assert!(range.len() == total / count || range.len() == total / count + 1);
                all.extend(range);
            }
            assert_eq!(all, (0..total).collect::<Vec<_>>());
        }
        assert_eq!("2/3".parse::<Shard>().unwrap(), Shard { index: 2, count: 3 });
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2", "0/1000000"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(Shard { index: 2, count: 16 }.file_name(Kind::Derm), "derm-0002-of-0016.json");
    }
}
