//! What a shared link says: every setting of one traversal as URL query parameters, parsed strictly (a bad
//! value is an error naming the parameter, never a silent default) and written back canonically, so the same
//! link reproduces the same images on any machine.

use crate::app::examples::{self, Example};
use crate::error::{Error, Result};
use crate::prompt_edit::PromptEdit;
use crate::swap::{GUIDANCE_RANGE, PAPER_SWAP_POINTS};
use crate::synthetic::Kind;
use crate::weights::Precision;

/// Longest prompt accepted from a link (the tokenizer truncates at 77 tokens anyway).
pub const MAX_PROMPT_CHARS: usize = 500;
/// Most style prompts one link may run (each adds a branch per swap point to every U-Net batch).
pub const MAX_STYLES: usize = 6;
/// Most swap points one link may ask for.
pub const MAX_SWAP_POINTS: usize = 20;
/// Most DDIM steps (the scheduler has 1000 training timesteps).
pub const MAX_STEPS: usize = 1000;
/// Most interpolated frames along the Bézier curve.
pub const MAX_SAMPLES: usize = 200;
/// Smallest image side a link may ask for, in pixels.
pub const MIN_SIZE: usize = 64;
/// Largest image side a link may ask for, in pixels (SD 1.5's 512 and SD 2's 768 fit).
pub const MAX_SIZE: usize = 1024;

/// Every parameter of one traversal. [`Default`] is the paper's setting on the first built-in example.
#[derive(Debug, Clone, PartialEq)]
pub struct Traversal {
    /// The built-in example the prompts come from, if they were not replaced.
    pub example: Option<String>,
    /// Image family: picks the attribute classifiers.
    pub kind: Kind,
    /// Seed of the initial noise.
    pub seed: u64,
    /// The neutral prompt.
    pub neutral: String,
    /// Style (attribute) prompts, one trajectory each.
    pub styles: Vec<String>,
    /// The unconditional prompt of classifier-free guidance ("" as in Stable Diffusion).
    pub negative: String,
    /// DDIM steps.
    pub steps: usize,
    /// Classifier-free guidance scale.
    pub guidance: f64,
    /// Swap points, sorted and distinct.
    pub swap_points: Vec<usize>,
    /// Bézier control points taken from each trajectory.
    pub controls: usize,
    /// Interpolated frames along each Bézier curve.
    pub samples: usize,
    /// Which style's traversal the slider shows.
    pub shown: usize,
    /// Which interpolated frame the slider shows.
    pub frame: usize,
    /// Image side in pixels; `None` is the model's native size (its U-Net's `sample_size` × 8).
    pub size: Option<usize>,
    /// Model folder, relative to the page (a diffusers folder with the standard file names).
    pub model: String,
    /// The float type the GPU computes in (f16 where the adapter has `shader-f16`); a link-only setting, since
    /// a page's GPU device is configured once.
    pub precision: Precision,
}

impl Default for Traversal {
    fn default() -> Self {
        let first = examples::all().into_iter().next().expect("built-in examples exist");
        Self::from_example(&first, 42)
    }
}

/// The parameters a link may carry; anything else is reported as ignored.
pub const KNOWN: [&str; 16] = [
    "example",
    "kind",
    "seed",
    "neutral",
    "style",
    "negative",
    "steps",
    "guidance",
    "t",
    "controls",
    "samples",
    "shown",
    "frame",
    "size",
    "model",
    "precision",
];

impl Traversal {
    /// The paper's settings on a built-in example.
    pub fn from_example(example: &Example, seed: u64) -> Self {
        Self {
            example: Some(example.id.to_string()),
            kind: example.kind,
            seed,
            neutral: example.setting.neutral.clone(),
            styles: example.setting.styles.iter().map(|(_, p)| p.clone()).collect(),
            negative: String::new(),
            steps: 50,
            guidance: example.guidance,
            swap_points: PAPER_SWAP_POINTS.to_vec(),
            controls: 7,
            samples: 50,
            shown: 0,
            frame: 49,
            size: None,
            model: "model".into(),
            precision: Precision::F32,
        }
    }

    /// Parses a query string (with or without the leading `?`). Returns the traversal and the names of
    /// parameters it ignored (unknown ones, e.g. tracking tags); any bad value is an error.
    pub fn from_query(query: &str) -> Result<(Self, Vec<String>)> {
        let query = query.strip_prefix('?').unwrap_or(query);
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let one = |name: &str| -> Result<Option<&str>> {
            let mut it = pairs.iter().filter(|(k, _)| k == name);
            let first = it.next().map(|(_, v)| v.as_str());
            if it.next().is_some() {
                return Err(bad(name, "is given more than once"));
            }
            Ok(first)
        };
        let ignored: Vec<String> =
            pairs.iter().filter(|(k, _)| !KNOWN.contains(&k.as_str())).map(|(k, _)| k.clone()).collect();

        let examples = examples::all();
        let mut t = match one("example")? {
            Some(id) => {
                let ex = examples.iter().find(|e| e.id == id).ok_or_else(|| {
                    let ids: Vec<&str> = examples.iter().map(|e| e.id).collect();
                    bad("example", format!("{id:?} is not one of {}", ids.join(", ")))
                })?;
                Self::from_example(ex, 42)
            }
            None => Self::default(),
        };
        if let Some(v) = one("kind")? {
            t.kind = match v {
                "chest" => Kind::Chest,
                "derm" => Kind::Derm,
                _ => return Err(bad("kind", format!("{v:?} is not chest or derm"))),
            };
        }
        if let Some(v) = one("seed")? {
            t.seed = v.parse().map_err(|_| bad("seed", format!("{v:?} is not a whole number in 0..=2^64-1")))?;
        }
        if let Some(v) = one("neutral")? {
            t.neutral = prompt("neutral", v)?;
        }
        let styles: Vec<&str> = pairs.iter().filter(|(k, _)| k == "style").map(|(_, v)| v.as_str()).collect();
        if !styles.is_empty() {
            if styles.len() > MAX_STYLES {
                return Err(bad("style", format!("{} prompts given; at most {MAX_STYLES}", styles.len())));
            }
            t.styles = styles.into_iter().map(|s| prompt("style", s)).collect::<Result<_>>()?;
        }
        if let Some(v) = one("negative")? {
            t.negative = negative(v).map_err(|why| bad("negative", why))?;
        }
        let custom = t.neutral != t.example_neutral(&examples) || t.styles != t.example_styles(&examples);
        if custom || one("kind")?.is_some_and(|k| Some(k) != t.example_kind(&examples)) {
            t.example = None;
        }
        if let Some(v) = one("steps")? {
            t.steps = number("steps", v, 1, MAX_STEPS)?;
        }
        if let Some(v) = one("guidance")? {
            let (lo, hi) = GUIDANCE_RANGE.into_inner();
            t.guidance = guidance(v).ok_or_else(|| bad("guidance", format!("{v:?} is not a number in {lo}..={hi}")))?;
        }
        if let Some(v) = one("t")? {
            t.swap_points = swap_points(v).map_err(|why| bad("t", why))?;
        }
        if let Some(&p) = t.swap_points.iter().find(|&&p| p > t.steps) {
            return Err(bad("t", over_steps(p, t.steps)));
        }
        let points = t.swap_points.len() + 1;
        t.controls = match one("controls")? {
            Some(v) => number("controls", v, 2, points)?,
            None => t.controls.min(points),
        };
        if let Some(v) = one("samples")? {
            t.samples = number("samples", v, 2, MAX_SAMPLES)?;
        }
        t.frame = match one("frame")? {
            Some(v) => number("frame", v, 0, t.samples - 1)?,
            None => t.samples - 1,
        };
        if let Some(v) = one("shown")? {
            t.shown = number("shown", v, 0, t.styles.len() - 1)?;
        }
        if let Some(v) = one("size")? {
            t.size = Some(image_size(v).map_err(|why| bad("size", why))?);
        }
        if let Some(v) = one("model")? {
            t.model = model_path(v)?;
        }
        if let Some(v) = one("precision")? {
            t.precision = precision(v)?;
        }
        Ok((t, ignored))
    }

    /// The canonical query string (no leading `?`): the example and only what differs from it, so links stay
    /// short, but always the seed, which is what people change.
    pub fn to_query(&self) -> String {
        let examples = examples::all();
        let base = match &self.example {
            Some(id) => examples.iter().find(|e| e.id == id).map(|e| Self::from_example(e, self.seed)),
            None => None,
        };
        let base = base.unwrap_or_else(|| Self { example: None, ..Self::default() });
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(id) = &self.example {
            q.append_pair("example", id);
        }
        if self.example.is_none() || self.kind != base.kind {
            q.append_pair("kind", self.kind.name());
        }
        q.append_pair("seed", &self.seed.to_string());
        if self.example.is_none() {
            q.append_pair("neutral", &self.neutral);
            for s in &self.styles {
                q.append_pair("style", s);
            }
        }
        if !self.negative.is_empty() {
            q.append_pair("negative", &self.negative);
        }
        if self.steps != base.steps {
            q.append_pair("steps", &self.steps.to_string());
        }
        if self.guidance != base.guidance {
            q.append_pair("guidance", &self.guidance.to_string());
        }
        if self.swap_points != base.swap_points {
            let t: Vec<String> = self.swap_points.iter().map(usize::to_string).collect();
            q.append_pair("t", &t.join(","));
        }
        if self.controls != base.controls.min(self.swap_points.len() + 1) {
            q.append_pair("controls", &self.controls.to_string());
        }
        if self.samples != base.samples {
            q.append_pair("samples", &self.samples.to_string());
        }
        if self.shown != 0 {
            q.append_pair("shown", &self.shown.to_string());
        }
        if self.frame != self.samples - 1 {
            q.append_pair("frame", &self.frame.to_string());
        }
        if let Some(size) = self.size {
            q.append_pair("size", &size.to_string());
        }
        if self.model != base.model {
            q.append_pair("model", &self.model);
        }
        if self.precision != base.precision {
            q.append_pair("precision", &self.precision.to_string());
        }
        q.finish()
    }

    /// The form picks built-in example `id`: its prompts and the paper's settings, keeping the seed and the
    /// model. An unknown id changes nothing.
    pub fn pick_example(&mut self, id: &str) {
        if let Some(ex) = examples::all().into_iter().find(|e| e.id == id) {
            *self = Self {
                model: self.model.clone(),
                size: self.size,
                precision: self.precision,
                ..Self::from_example(&ex, self.seed)
            };
        }
    }

    /// The form's seed field: a whole number.
    pub fn edit_seed(&mut self, text: &str) -> FieldCheck {
        self.seed =
            text.trim().parse().map_err(|_| format!("{:?} is not a whole number in 0..=2^64-1", text.trim()))?;
        Ok(())
    }

    /// The next subject: the next seed.
    pub fn next_subject(&mut self) {
        self.seed = self.seed.wrapping_add(1);
    }

    /// The form's neutral prompt: a new prompt leaves the example.
    pub fn edit_neutral(&mut self, text: &str) -> FieldCheck {
        let v = prompt_text(text)?;
        if v != self.neutral {
            self.neutral = v;
            self.example = None;
        }
        Ok(())
    }

    /// The form's style prompts, one per line (blank lines dropped, at most [`MAX_STYLES`]): new prompts leave
    /// the example and show the first style.
    pub fn edit_styles(&mut self, text: &str) -> FieldCheck {
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if lines.is_empty() {
            return Err("give at least one style prompt".into());
        }
        if lines.len() > MAX_STYLES {
            return Err(format!("{} style prompts; at most {MAX_STYLES}", lines.len()));
        }
        let v = lines.into_iter().map(prompt_text).collect::<std::result::Result<Vec<_>, _>>()?;
        if v != self.styles {
            self.styles = v;
            self.example = None;
            self.shown = 0;
        }
        Ok(())
    }

    /// The form's negative (unconditional) prompt; empty is Stable Diffusion's default.
    pub fn edit_negative(&mut self, text: &str) -> FieldCheck {
        self.negative = negative(text)?;
        Ok(())
    }

    /// The form's step count, in 1..=[`MAX_STEPS`]: the swap points keep their fraction of the run (rounded
    /// up, merged where they meet) and the control points their bound.
    pub fn edit_steps(&mut self, text: &str) -> FieldCheck {
        let steps = whole(text.trim(), 1, MAX_STEPS)?;
        let old = self.steps;
        self.steps = steps;
        let mut t: Vec<usize> = self.swap_points.iter().map(|p| (p * steps).div_ceil(old).clamp(1, steps)).collect();
        t.dedup();
        self.swap_points = t;
        self.controls = self.controls.min(self.swap_points.len() + 1);
        Ok(())
    }

    /// The form's guidance: a finite number in [`GUIDANCE_RANGE`].
    pub fn edit_guidance(&mut self, text: &str) -> FieldCheck {
        let (lo, hi) = GUIDANCE_RANGE.into_inner();
        self.guidance = guidance(text).ok_or_else(|| format!("{:?} is not a number in {lo}..={hi}", text.trim()))?;
        Ok(())
    }

    /// The form's swap points, comma-separated, each in 1..=steps; the control points keep their bound.
    pub fn edit_swap_points(&mut self, text: &str) -> FieldCheck {
        let points = swap_points(text)?;
        if let Some(&p) = points.iter().find(|&&p| p > self.steps) {
            return Err(over_steps(p, self.steps));
        }
        self.swap_points = points;
        self.controls = self.controls.min(self.swap_points.len() + 1);
        Ok(())
    }

    /// The form's image size: empty for the model's native size, else a multiple of 8 in
    /// [`MIN_SIZE`]..=[`MAX_SIZE`] (the model's own limits are checked when it runs).
    pub fn edit_size(&mut self, text: &str) -> FieldCheck {
        let text = text.trim();
        self.size = if text.is_empty() { None } else { Some(image_size(text)?) };
        Ok(())
    }

    /// The form's Bézier control points: 2 up to the trajectory's images (neutral and one per swap point).
    pub fn edit_controls(&mut self, text: &str) -> FieldCheck {
        self.controls = whole(text.trim(), 2, self.swap_points.len() + 1)?;
        Ok(())
    }

    /// The form's Bézier samples (interpolated frames), in 2..=[`MAX_SAMPLES`]; the slider's frame is kept
    /// within them.
    pub fn edit_samples(&mut self, text: &str) -> FieldCheck {
        self.samples = whole(text.trim(), 2, MAX_SAMPLES)?;
        self.frame = self.frame.min(self.samples - 1);
        Ok(())
    }

    /// A prompt edit `[from:to:when]` (see [`crate::prompt_edit`]): its prompts become the neutral prompt and
    /// the only style, and its swap point joins the trajectory's.
    pub fn apply_prompt_edit(&mut self, text: &str) -> FieldCheck {
        let edit = PromptEdit::parse(text.trim()).map_err(|e| e.to_string())?;
        let t = edit.swap_point(self.steps).map_err(|e| e.to_string())?;
        let neutral = prompt_text(&edit.neutral)?;
        let style = prompt_text(&edit.style)?;
        let mut points = self.swap_points.clone();
        if !points.contains(&t) {
            if points.len() >= MAX_SWAP_POINTS {
                return Err(format!("already {MAX_SWAP_POINTS} swap points; remove one for t = {t}"));
            }
            points.push(t);
            points.sort_unstable();
        }
        self.neutral = neutral;
        self.styles = vec![style];
        self.swap_points = points;
        self.example = None;
        self.shown = 0;
        Ok(())
    }

    /// The traversal slider shows style `k` (if there is one).
    pub fn show_style(&mut self, k: usize) {
        if k < self.styles.len() {
            self.shown = k;
        }
    }

    /// The traversal slider shows frame `frame`, clamped to the samples.
    pub fn show_frame(&mut self, frame: usize) {
        self.frame = frame.min(self.samples - 1);
    }

    fn example_of<'a>(&self, examples: &'a [Example]) -> Option<&'a Example> {
        self.example.as_deref().and_then(|id| examples.iter().find(|e| e.id == id))
    }
    fn example_neutral(&self, examples: &[Example]) -> String {
        self.example_of(examples).map(|e| e.setting.neutral.clone()).unwrap_or_default()
    }
    fn example_styles(&self, examples: &[Example]) -> Vec<String> {
        self.example_of(examples).map(|e| e.setting.styles.iter().map(|(_, p)| p.clone()).collect()).unwrap_or_default()
    }
    fn example_kind(&self, examples: &[Example]) -> Option<&'static str> {
        self.example_of(examples).map(|e| e.kind.name())
    }
}

/// A form field's verdict on what was typed: on an error the traversal keeps its last good value and the
/// form shows the reason beside the field.
pub type FieldCheck = std::result::Result<(), String>;

pub(crate) fn bad(name: &str, why: impl std::fmt::Display) -> Error {
    Error::arg(format!("URL parameter `{name}`: {why}"))
}

/// A guidance scale: a finite number in [`GUIDANCE_RANGE`].
fn guidance(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok().filter(|g| g.is_finite() && GUIDANCE_RANGE.contains(g))
}

/// A whole number in `lo..=hi`.
fn whole(v: &str, lo: usize, hi: usize) -> std::result::Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| format!("{v:?} is not a whole number in {lo}..={hi}"))
}

pub(crate) fn number(name: &str, v: &str, lo: usize, hi: usize) -> Result<usize> {
    whole(v, lo, hi).map_err(|why| bad(name, why))
}

/// An image side: a multiple of 8 (SD's VAE downsampling) in [`MIN_SIZE`]..=[`MAX_SIZE`].
fn image_size(v: &str) -> std::result::Result<usize, String> {
    let size = whole(v.trim(), MIN_SIZE, MAX_SIZE)?;
    if !size.is_multiple_of(8) {
        return Err(format!("{size} px is not a multiple of 8"));
    }
    Ok(size)
}

/// Swap points as a link or the form writes them, "5,10,15": sorted, distinct, at most [`MAX_SWAP_POINTS`].
fn swap_points(v: &str) -> std::result::Result<Vec<usize>, String> {
    let mut points = v.split(',').map(|p| whole(p.trim(), 1, MAX_STEPS)).collect::<std::result::Result<Vec<_>, _>>()?;
    points.sort_unstable();
    points.dedup();
    if points.len() > MAX_SWAP_POINTS {
        return Err(format!("{} swap points; at most {MAX_SWAP_POINTS}", points.len()));
    }
    Ok(points)
}

fn over_steps(p: usize, steps: usize) -> String {
    format!("swap point {p} is more than the {steps} steps")
}

/// A prompt: non-empty, at most [`MAX_PROMPT_CHARS`], no control characters; trimmed.
fn prompt_text(v: &str) -> std::result::Result<String, String> {
    let v = v.trim();
    if v.is_empty() {
        return Err("is empty".into());
    }
    negative(v)
}

/// A negative prompt: as [`prompt_text`], but it may be empty.
fn negative(v: &str) -> std::result::Result<String, String> {
    let v = v.trim();
    if v.chars().count() > MAX_PROMPT_CHARS {
        return Err(format!("is longer than {MAX_PROMPT_CHARS} characters"));
    }
    if v.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    Ok(v.to_string())
}

fn prompt(name: &str, v: &str) -> Result<String> {
    prompt_text(v).map_err(|why| bad(name, why))
}

/// A link's float type: `f32` or `f16`.
pub(crate) fn precision(v: &str) -> Result<Precision> {
    v.parse().map_err(|_| bad("precision", format!("{v:?} is not f32 or f16")))
}

/// A model folder link must stay on the page's own site: a relative path of plain names, so a shared link
/// cannot make a visitor download from elsewhere.
pub(crate) fn model_path(v: &str) -> Result<String> {
    let v = v.trim_end_matches('/');
    let ok = !v.is_empty()
        && v.len() <= 200
        && v.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if ok {
        Ok(v.to_string())
    } else {
        Err(bad("model", format!("{v:?} is not a relative folder path of plain names")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_query_is_the_paper_setting_on_the_first_example() {
        let (t, ignored) = Traversal::from_query("").unwrap();
        assert_eq!(t, Traversal::default());
        assert!(ignored.is_empty());
        assert_eq!(t.steps, 50);
        assert_eq!(t.swap_points, PAPER_SWAP_POINTS.to_vec());
        assert_eq!(t.example.as_deref(), Some("chest"));
        assert_eq!(t.to_query(), "example=chest&seed=42");
    }

    #[test]
    fn links_round_trip() {
        let queries = [
            "example=derm-nv&seed=7&t=2,4&steps=6&guidance=3.5&controls=3&samples=10&shown=1&frame=4",
            "kind=derm&seed=1&neutral=a+dermoscopic+image&style=with+ruler+%26+ink&style=hair%3F",
            "example=chest&seed=18446744073709551615&model=models%2Fmine",
            "example=chest&seed=3&size=192",
            "example=chest&seed=3&precision=f16",
        ];
        for q in queries {
            let (t, ignored) = Traversal::from_query(q).unwrap();
            assert!(ignored.is_empty(), "{q}");
            let (again, _) = Traversal::from_query(&t.to_query()).unwrap();
            assert_eq!(again, t, "{q} -> {}", t.to_query());
        }
        let (t, _) = Traversal::from_query(queries[1]).unwrap();
        assert_eq!(t.styles, ["with ruler & ink", "hair?"]);
        assert_eq!(t.example, None);
        assert_eq!(t.kind, Kind::Derm);
        assert_eq!(Traversal::from_query(queries[4]).unwrap().0.precision, Precision::F16);
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (q, what) in [
            ("seed=-1", "`seed`"),
            ("seed=1&seed=2", "more than once"),
            ("example=brain", "`example`"),
            ("kind=mri", "`kind`"),
            ("steps=0", "`steps`"),
            ("steps=10&t=5,11", "more than the 10 steps"),
            ("t=5,x", "`t`"),
            ("guidance=nan", "`guidance`"),
            ("guidance=51", "`guidance`"),
            ("neutral=%20", "is empty"),
            ("style=a%00b", "control characters"),
            ("controls=11", "`controls`"),
            ("samples=1", "`samples`"),
            ("frame=50", "`frame`"),
            ("shown=2", "`shown`"),
            ("model=..%2Fsecret", "`model`"),
            ("size=100", "not a multiple of 8"),
            ("size=4096", "`size`"),
            ("model=https%3A%2F%2Fevil.example%2Fm", "`model`"),
            ("precision=bf16", "`precision`"),
        ] {
            let err = Traversal::from_query(q).unwrap_err().to_string();
            assert!(err.contains(what), "{q}: {err}");
        }
    }

    #[test]
    fn unknown_parameters_are_reported_not_fatal() {
        let (t, ignored) = Traversal::from_query("?seed=3&utm_source=x&seeed=4").unwrap();
        assert_eq!(t.seed, 3);
        assert_eq!(ignored, ["utm_source", "seeed"]);
    }

    #[test]
    fn a_link_carries_guidance_only_where_it_differs_from_the_example() {
        let (t, _) = Traversal::from_query("example=derm-mel&seed=3").unwrap();
        assert_eq!(t.guidance, examples::DERM_GUIDANCE);
        assert_eq!(t.to_query(), "example=derm-mel&seed=3");
        let (t, _) = Traversal::from_query("example=derm-mel&seed=3&guidance=7.5").unwrap();
        assert_eq!(t.guidance, 7.5);
        assert_eq!(t.to_query(), "example=derm-mel&seed=3&guidance=7.5");
        // Prompts of one's own keep the guidance they ran at, written out.
        let (t, _) = Traversal::from_query("example=derm-nv&seed=3&neutral=skin").unwrap();
        assert_eq!(t.guidance, examples::DERM_GUIDANCE);
        let (again, _) = Traversal::from_query(&t.to_query()).unwrap();
        assert_eq!(again, t, "{}", t.to_query());
    }

    #[test]
    fn form_edits_follow_the_link_rules() {
        let mut t = Traversal::default();
        t.edit_seed(" 7 ").unwrap();
        assert!(t.edit_seed("-3").unwrap_err().contains("whole number"));
        t.next_subject();
        assert_eq!(t.seed, 8);
        // 50 → 10 steps: swap points keep their fraction, rounded up, merged where they meet.
        t.edit_steps("10").unwrap();
        assert_eq!((t.steps, t.swap_points.clone()), (10, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]));
        t.edit_steps("3").unwrap();
        assert_eq!(t.swap_points, [1, 2, 3]);
        assert_eq!(t.controls, 4);
        for bad in ["0", "1001", "x"] {
            assert!(t.edit_steps(bad).is_err(), "{bad}");
            assert_eq!(t.steps, 3, "{bad}");
        }
        t.edit_guidance("4").unwrap();
        for bad in ["nan", "51", "-1", "inf"] {
            assert!(t.edit_guidance(bad).unwrap_err().contains("0..=50"), "{bad}");
        }
        assert_eq!(t.guidance, 4.0);
        assert_eq!(t.edit_neutral("  ").unwrap_err(), "is empty");
        assert_eq!(t.example.as_deref(), Some("chest"), "an empty prompt changes nothing");
        assert!(t.edit_styles("a\n\n b \nc\nd\ne\nf\ng").unwrap_err().contains("at most 6"));
        assert!(t.edit_styles("\n \n").is_err());
        t.edit_styles("a\n\n b \nc\nd\ne\nf").unwrap();
        assert_eq!(t.styles, ["a", "b", "c", "d", "e", "f"]);
        assert_eq!(t.example, None);
        t.show_style(9);
        t.show_style(2);
        t.show_frame(500);
        assert_eq!((t.shown, t.frame), (2, t.samples - 1));
        t.model = "models/mine".into();
        t.pick_example("derm-nv");
        assert_eq!((t.example.as_deref(), t.seed, t.model.as_str()), (Some("derm-nv"), 8, "models/mine"));
        assert_eq!(t.guidance, examples::DERM_GUIDANCE);
        t.pick_example("brain");
        assert_eq!(t.example.as_deref(), Some("derm-nv"));
    }

    #[test]
    fn swap_points_bezier_and_negative_are_checked_as_typed() {
        let mut t = Traversal::default();
        t.edit_swap_points(" 30, 10,10 ").unwrap();
        assert_eq!(t.swap_points, [10, 30]);
        assert_eq!(t.controls, 3, "at most the neutral image and one per swap point");
        assert!(t.edit_swap_points("10,51").unwrap_err().contains("more than the 50 steps"));
        assert!(t.edit_swap_points("0").is_err() && t.edit_swap_points("a").is_err());
        let many: Vec<String> = (1..=21).map(|p| p.to_string()).collect();
        assert!(t.edit_swap_points(&many.join(",")).unwrap_err().contains("at most 20"));
        assert_eq!(t.swap_points, [10, 30], "a bad entry keeps the last good one");
        assert!(t.edit_controls("4").unwrap_err().contains("2..=3"));
        t.edit_controls("2").unwrap();
        t.show_frame(40);
        t.edit_samples("10").unwrap();
        assert_eq!((t.samples, t.frame), (10, 9));
        assert!(t.edit_samples("1").is_err() && t.edit_samples("201").is_err());
        t.edit_size("256").unwrap();
        assert_eq!(t.size, Some(256));
        assert!(t.edit_size("250").unwrap_err().contains("multiple of 8") && t.edit_size("2048").is_err());
        assert_eq!(t.size, Some(256), "a bad value keeps the last good one");
        t.edit_size(" ").unwrap();
        assert_eq!(t.size, None, "empty: the model's native size");
        t.edit_negative(" blurry ").unwrap();
        assert!(t.edit_negative("a\u{7}").is_err());
        let (again, _) = Traversal::from_query(&t.to_query()).unwrap();
        assert_eq!(again, t, "{}", t.to_query());
        assert!(t.to_query().contains("negative=blurry"));
        t.edit_negative("").unwrap();
        assert!(!t.to_query().contains("negative"));
    }

    #[test]
    fn a_prompt_edit_sets_both_prompts_and_adds_its_swap_point() {
        let mut t = Traversal::default();
        t.apply_prompt_edit("Chest X-ray [with no significant findings:of a subject with pleural effusion:0.6]")
            .unwrap();
        assert_eq!(t.neutral, "Chest X-ray with no significant findings");
        assert_eq!(t.styles, ["Chest X-ray of a subject with pleural effusion"]);
        assert_eq!(t.swap_points, [5, 10, 15, 20, 25, 30, 35, 40, 45], "t = 20 is already there");
        t.apply_prompt_edit("Chest X-ray [of a subject:with support devices:38]").unwrap();
        assert_eq!(t.swap_points, [5, 10, 12, 15, 20, 25, 30, 35, 40, 45]);
        assert_eq!(t.example, None);
        assert!(t.apply_prompt_edit("[a:b:50]").unwrap_err().contains("never runs"));
        assert!(t.apply_prompt_edit("no brackets").unwrap_err().contains("no [from:to:when]"));
        let (again, _) = Traversal::from_query(&t.to_query()).unwrap();
        assert_eq!(again, t);
    }

    #[test]
    fn changing_a_prompt_leaves_the_example() {
        let (t, _) = Traversal::from_query("example=chest&style=Chest+x-ray+showing+Support+Devices").unwrap();
        assert_eq!(t.example, None);
        assert_eq!(t.styles.len(), 1);
        assert!(t.to_query().contains("neutral="));
    }
}
