//! What a shared link says: every setting of one traversal as URL query parameters, parsed strictly (a bad
//! value is an error naming the parameter, never a silent default) and written back canonically, so the same
//! link reproduces the same images on any machine.

use crate::app::examples::{self, Example};
use crate::error::{Error, Result};
use crate::swap::{GUIDANCE_RANGE, PAPER_SWAP_POINTS};
use crate::synthetic::Kind;

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
    /// Model folder, relative to the page (a diffusers folder with the standard file names).
    pub model: String,
}

impl Default for Traversal {
    fn default() -> Self {
        let first = examples::all().into_iter().next().expect("built-in examples exist");
        Self::from_example(&first, 42)
    }
}

/// The parameters a link may carry; anything else is reported as ignored.
pub const KNOWN: [&str; 13] = [
    "example", "kind", "seed", "neutral", "style", "steps", "guidance", "t", "controls", "samples", "shown", "frame",
    "model",
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
            steps: 50,
            guidance: example.guidance,
            swap_points: PAPER_SWAP_POINTS.to_vec(),
            controls: 7,
            samples: 50,
            shown: 0,
            frame: 49,
            model: "model".into(),
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
            let mut points =
                v.split(',').map(|p| number("t", p.trim(), 1, MAX_STEPS)).collect::<Result<Vec<usize>>>()?;
            points.sort_unstable();
            points.dedup();
            if points.len() > MAX_SWAP_POINTS {
                return Err(bad("t", format!("{} swap points; at most {MAX_SWAP_POINTS}", points.len())));
            }
            t.swap_points = points;
        }
        if let Some(&p) = t.swap_points.iter().find(|&&p| p > t.steps) {
            return Err(bad("t", format!("swap point {p} is more than the {} steps", t.steps)));
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
        if let Some(v) = one("model")? {
            t.model = model_path(v)?;
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
        if self.model != base.model {
            q.append_pair("model", &self.model);
        }
        q.finish()
    }

    /// The form picks built-in example `id`: its prompts and the paper's settings, keeping the seed and the
    /// model. An unknown id changes nothing.
    pub fn pick_example(&mut self, id: &str) {
        if let Some(ex) = examples::all().into_iter().find(|e| e.id == id) {
            *self = Self { model: self.model.clone(), ..Self::from_example(&ex, self.seed) };
        }
    }

    /// The form's seed field: a whole number, else nothing changes.
    pub fn edit_seed(&mut self, text: &str) {
        if let Ok(seed) = text.trim().parse() {
            self.seed = seed;
        }
    }

    /// The next subject: the next seed.
    pub fn next_subject(&mut self) {
        self.seed = self.seed.wrapping_add(1);
    }

    /// The form's neutral prompt: a new, non-empty prompt leaves the example.
    pub fn edit_neutral(&mut self, text: &str) {
        let v = text.trim();
        if !v.is_empty() && v != self.neutral {
            self.neutral = v.to_string();
            self.example = None;
        }
    }

    /// The form's style prompts, one per line (blank lines dropped, at most [`MAX_STYLES`]): new prompts leave
    /// the example and show the first style.
    pub fn edit_styles(&mut self, text: &str) {
        let v: Vec<String> =
            text.lines().map(str::trim).filter(|l| !l.is_empty()).take(MAX_STYLES).map(String::from).collect();
        if !v.is_empty() && v != self.styles {
            self.styles = v;
            self.example = None;
            self.shown = 0;
        }
    }

    /// The form's step count, in 1..=[`MAX_STEPS`]: the swap points keep their fraction of the run (rounded
    /// up, merged where they meet) and the control points their bound.
    pub fn edit_steps(&mut self, text: &str) {
        let Some(steps) = text.trim().parse::<usize>().ok().filter(|s| (1..=MAX_STEPS).contains(s)) else {
            return;
        };
        let old = self.steps;
        self.steps = steps;
        let mut t: Vec<usize> = self.swap_points.iter().map(|p| (p * steps).div_ceil(old).clamp(1, steps)).collect();
        t.dedup();
        self.swap_points = t;
        self.controls = self.controls.min(self.swap_points.len() + 1);
    }

    /// The form's guidance: a finite number in [`GUIDANCE_RANGE`], else nothing changes.
    pub fn edit_guidance(&mut self, text: &str) {
        if let Some(g) = guidance(text) {
            self.guidance = g;
        }
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

pub(crate) fn bad(name: &str, why: impl std::fmt::Display) -> Error {
    Error::arg(format!("URL parameter `{name}`: {why}"))
}

/// A guidance scale: a finite number in [`GUIDANCE_RANGE`].
fn guidance(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok().filter(|g| g.is_finite() && GUIDANCE_RANGE.contains(g))
}

pub(crate) fn number(name: &str, v: &str, lo: usize, hi: usize) -> Result<usize> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| bad(name, format!("{v:?} is not a whole number in {lo}..={hi}")))
}

fn prompt(name: &str, v: &str) -> Result<String> {
    let v = v.trim();
    if v.is_empty() {
        return Err(bad(name, "is empty"));
    }
    if v.chars().count() > MAX_PROMPT_CHARS {
        return Err(bad(name, format!("is longer than {MAX_PROMPT_CHARS} characters")));
    }
    if v.chars().any(char::is_control) {
        return Err(bad(name, "contains control characters"));
    }
    Ok(v.to_string())
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
            ("model=https%3A%2F%2Fevil.example%2Fm", "`model`"),
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
        t.edit_seed(" 7 ");
        t.edit_seed("-3");
        t.next_subject();
        assert_eq!(t.seed, 8);
        // 50 → 10 steps: swap points keep their fraction, rounded up, merged where they meet.
        t.edit_steps("10");
        assert_eq!((t.steps, t.swap_points.clone()), (10, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]));
        t.edit_steps("3");
        assert_eq!(t.swap_points, [1, 2, 3]);
        assert_eq!(t.controls, 4);
        for bad in ["0", "1001", "x"] {
            t.edit_steps(bad);
            assert_eq!(t.steps, 3, "{bad}");
        }
        t.edit_guidance("4");
        for bad in ["nan", "51", "-1", "inf"] {
            t.edit_guidance(bad);
        }
        assert_eq!(t.guidance, 4.0);
        t.edit_neutral("  ");
        assert_eq!(t.example.as_deref(), Some("chest"), "an empty prompt changes nothing");
        t.edit_styles("a\n\n b \nc\nd\ne\nf\ng");
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
    fn changing_a_prompt_leaves_the_example() {
        let (t, _) = Traversal::from_query("example=chest&style=Chest+x-ray+showing+Support+Devices").unwrap();
        assert_eq!(t.example, None);
        assert_eq!(t.styles.len(), 1);
        assert!(t.to_query().contains("neutral="));
    }
}
