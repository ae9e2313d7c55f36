//! Prompt editing as AUTOMATIC1111 users write it, `[from:to:when]`, mapped onto the prompt swap: the prompt
//! with `from` is the neutral prompt, the prompt with `to` the style prompt, and `when` the step after which
//! the style takes over. `a chest X-ray [with no findings:with pleural effusion:0.6]` over 50 steps is the
//! neutral prompt for 30 steps and the style prompt for the last 20: swap point t = 20 (see [`crate::swap`]).
//!
//! As in AUTOMATIC1111, `when` with a decimal point is a fraction of the steps (truncated to a whole step),
//! without one a step count; `[to:when]` adds `to` after `when` and `[from::when]` removes `from`. Text outside
//! the brackets belongs to both prompts. Several edits may appear if they share one `when` (the swap sampler
//! changes prompts once); nested brackets and the other square-bracket syntaxes (`[less weight]`, `[a|b]`) are
//! refused rather than silently read as text.

use crate::error::{Error, Result};

/// Longest prompt-edit text accepted (the same bound as one prompt in a link).
const MAX_CHARS: usize = 1000;

/// When the style prompt takes over, as written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    /// After this many steps (`[a:b:30]`).
    Step(usize),
    /// After this fraction of the steps (`[a:b:0.6]`).
    Fraction(f64),
}

/// A parsed `[from:to:when]` prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptEdit {
    /// The prompt before the swap (every `from`).
    pub neutral: String,
    /// The prompt after the swap (every `to`).
    pub style: String,
    /// When the swap happens.
    pub when: When,
}

fn bad(text: &str, why: impl std::fmt::Display) -> Error {
    Error::arg(format!("prompt edit {text:?}: {why}"))
}

/// Single spaces, none at the ends: removing `[from::when]` must not leave a double space behind.
fn tidy(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl PromptEdit {
    /// Parses `text`, which must hold at least one `[from:to:when]` (or `[to:when]`, `[from::when]`).
    pub fn parse(text: &str) -> Result<Self> {
        if text.chars().count() > MAX_CHARS {
            return Err(bad("…", format!("longer than {MAX_CHARS} characters")));
        }
        if text.chars().any(char::is_control) {
            return Err(bad(text, "contains control characters"));
        }
        let (mut neutral, mut style) = (String::new(), String::new());
        let mut when: Option<(When, &str)> = None;
        let mut rest = text;
        while let Some(open) = rest.find(['[', ']']) {
            if rest[open..].starts_with(']') {
                return Err(bad(text, "a `]` without its `[`"));
            }
            let (before, group) = (&rest[..open], &rest[open + 1..]);
            let close = group.find(['[', ']']).ok_or_else(|| bad(text, "a `[` without its `]`"))?;
            if group[close..].starts_with('[') {
                return Err(bad(text, "nested brackets are not supported"));
            }
            let inner = &group[..close];
            if inner.contains('|') {
                return Err(bad(text, format!("[{inner}] alternates prompts, which the prompt swap cannot do")));
            }
            let parts: Vec<&str> = inner.split(':').collect();
            let (from, to, at) = match parts[..] {
                [from, to, at] => (from, to, at),
                [to, at] => ("", to, at),
                _ => {
                    return Err(bad(text, format!("[{inner}] is not [from:to:when], [to:when] or [from::when]")));
                }
            };
            let at = at.trim();
            let this = parse_when(at).ok_or_else(|| {
                bad(text, format!("{at:?} in [{inner}] is not a step count (30) or a fraction of the steps (0.6)"))
            })?;
            match when {
                Some((_, first)) if first != at => {
                    return Err(bad(
                        text,
                        format!(
                            "edits at {first} and {at}: the prompt swap changes prompts once, so all edits need one `when`"
                        ),
                    ));
                }
                _ => when = Some((this, at)),
            }
            for (prompt, part) in [(&mut neutral, from), (&mut style, to)] {
                prompt.push_str(before);
                prompt.push_str(part);
            }
            rest = &group[close + 1..];
        }
        neutral.push_str(rest);
        style.push_str(rest);
        let Some((when, _)) = when else {
            return Err(bad(text, "no [from:to:when] in it"));
        };
        let (neutral, style) = (tidy(&neutral), tidy(&style));
        if neutral.is_empty() || style.is_empty() {
            return Err(bad(text, "the prompt before or after the swap is empty"));
        }
        if neutral == style {
            return Err(bad(text, "the prompts before and after the swap are the same"));
        }
        Ok(Self { neutral, style, when })
    }

    /// The swap point for a run of `steps` steps: how many final steps use the style prompt (in
    /// `1..=steps`). An edit that would swap after the last step is an error: it never shows the style.
    pub fn swap_point(&self, steps: usize) -> Result<usize> {
        let after = match self.when {
            When::Step(n) => n.min(steps),
            // Truncated, as AUTOMATIC1111 does: 0.25 of 50 steps swaps after step 12.
            When::Fraction(f) => ((f * steps as f64) as usize).min(steps),
        };
        if after >= steps {
            return Err(Error::arg(format!(
                "the prompt edit swaps after step {after} of {steps}: the style prompt never runs"
            )));
        }
        Ok(steps - after)
    }
}

/// A `when`: digits (a step count), or a number with a decimal point (a fraction of the steps), never
/// negative or infinite.
fn parse_when(s: &str) -> Option<When> {
    if s.contains('.') {
        s.parse::<f64>().ok().filter(|f| f.is_finite() && *f >= 0.0 && !s.contains(['e', 'E'])).map(When::Fraction)
    } else if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        s.parse().ok().map(When::Step)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(text: &str) -> PromptEdit {
        PromptEdit::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn from_to_when_splits_into_the_two_prompts() {
        let e = edit("Chest X-ray [with no findings:of a subject with pleural effusion:0.6]");
        assert_eq!(e.neutral, "Chest X-ray with no findings");
        assert_eq!(e.style, "Chest X-ray of a subject with pleural effusion");
        assert_eq!(e.when, When::Fraction(0.6));
        assert_eq!(e.swap_point(50).unwrap(), 20);
        let e = edit("a [red:blue:30] cat");
        assert_eq!((e.neutral.as_str(), e.style.as_str(), e.when), ("a red cat", "a blue cat", When::Step(30)));
        assert_eq!(e.swap_point(50).unwrap(), 20);
        assert_eq!(e.swap_point(40).unwrap(), 10);
    }

    #[test]
    fn the_short_forms_add_or_remove_text() {
        let e = edit("dermoscopy of a nevus[ with a ruler:0.5]");
        assert_eq!(
            (e.neutral.as_str(), e.style.as_str()),
            ("dermoscopy of a nevus", "dermoscopy of a nevus with a ruler")
        );
        let e = edit("a lesion [with hair::10] on skin");
        assert_eq!((e.neutral.as_str(), e.style.as_str()), ("a lesion with hair on skin", "a lesion on skin"));
    }

    #[test]
    fn several_edits_share_one_when() {
        let e = edit("a [red:blue:0.4] cat and a [big:small:0.4] dog");
        assert_eq!((e.neutral.as_str(), e.style.as_str()), ("a red cat and a big dog", "a blue cat and a small dog"));
        let err = PromptEdit::parse("a [red:blue:0.4] cat [big:small:0.5]").unwrap_err().to_string();
        assert!(err.contains("one `when`"), "{err}");
    }

    #[test]
    fn when_reads_as_automatic1111_reads_it() {
        // A decimal point makes a fraction, truncated to a step; 1.0 is all the steps, 1 is one step.
        assert_eq!(edit("[a:b:0.25]").swap_point(50).unwrap(), 38);
        assert_eq!(edit("[a:b:0.0]").swap_point(50).unwrap(), 50);
        assert_eq!(edit("[a:b:0]").swap_point(50).unwrap(), 50);
        assert_eq!(edit("[a:b:1]").swap_point(50).unwrap(), 49);
        assert_eq!(edit("[a:b: 12 ]").swap_point(50).unwrap(), 38);
        for never in ["[a:b:1.0]", "[a:b:50]", "[a:b:99]", "[a:b:2.5]"] {
            let err = edit(never).swap_point(50).unwrap_err().to_string();
            assert!(err.contains("never runs"), "{never}: {err}");
        }
    }

    #[test]
    fn malformed_edits_say_what_is_wrong() {
        for (text, why) in [
            ("a plain prompt", "no [from:to:when]"),
            ("a [red:blue] cat", "\"blue\" in [red:blue] is not a step count"),
            ("a [red] cat", "[red] is not [from:to:when]"),
            ("a [red|blue:0.5] cat", "alternates"),
            ("[a:b:c:0.5]", "is not [from:to:when]"),
            ("[a:b:-1]", "not a step count"),
            ("[a:b:1e3]", "not a step count"),
            ("[a:b:inf]", "not a step count"),
            ("[a:b:0.5", "without its `]`"),
            ("a:b:0.5]", "without its `[`"),
            ("[a:[b:c:1]:2]", "nested"),
            ("[a:a:0.5]", "the same"),
            ("[::0.5]", "empty"),
            ("[a:b\u{0}:1]", "control characters"),
        ] {
            let err = PromptEdit::parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert!(PromptEdit::parse(&"[a:b:1]".repeat(200)).unwrap_err().to_string().contains("longer than"));
    }
}
