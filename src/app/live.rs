//! What the page shows while a run computes: every image of the run as it forms. At each DDIM step the engine
//! sends a cheap preview of each latent's predicted clean image ([`crate::preview`]); a swap image shows the
//! trunk's preview until its swap point (it *is* the trunk until then), and its own branch after. When
//! denoising ends, the VAE's real images replace the previews one by one. Plain data, tested natively.

use crate::swap::Lane;

/// One image slot of a running traversal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slot {
    /// The image (a data URL): a preview, or the decoded image once `decoded`.
    pub url: Option<String>,
    /// Whether its branch has left the trunk (its style prompt has taken over).
    pub branched: bool,
    /// Whether `url` is the VAE's decoded image rather than a preview.
    pub decoded: bool,
}

/// A running (or stopped) traversal as the page draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    /// DDIM steps in all.
    pub steps: usize,
    /// Swap points, sorted.
    pub swap_points: Vec<usize>,
    /// DDIM steps done.
    pub done: usize,
    /// The neutral image.
    pub neutral: Slot,
    /// Per style, per swap point.
    pub swaps: Vec<Vec<Slot>>,
    /// Seconds since the run started, at the last step or decode.
    pub seconds: f64,
    /// Seconds the denoising took (once it is over).
    pub denoise_seconds: Option<f64>,
    /// Images decoded so far, and to decode in all.
    pub decoded: (usize, usize),
    /// Whether the visitor stopped the run.
    pub stopped: bool,
}

impl Live {
    /// A run of `steps` steps with these swap points and `styles` style prompts, nothing shown yet.
    pub fn new(steps: usize, swap_points: &[usize], styles: usize) -> Self {
        Self {
            steps,
            swap_points: swap_points.to_vec(),
            done: 0,
            neutral: Slot::default(),
            swaps: vec![vec![Slot::default(); swap_points.len()]; styles],
            seconds: 0.0,
            denoise_seconds: None,
            decoded: (0, 1 + styles * swap_points.len()),
            stopped: false,
        }
    }

    /// The step after which swap point `t`'s style prompt takes over (0: from the start).
    pub fn swap_step(&self, t: usize) -> usize {
        self.steps.saturating_sub(t)
    }

    /// `done` steps have run, `seconds` after the start.
    pub fn step(&mut self, done: usize, seconds: f64) {
        self.done = done.min(self.steps);
        self.seconds = seconds;
        if self.done == self.steps {
            self.denoise_seconds = Some(seconds);
        }
    }

    /// A preview of `lane`'s predicted clean image. The trunk's also stands for every swap image that has not
    /// branched yet, since until its swap point it is the same latent.
    pub fn preview(&mut self, lane: Lane, url: String) {
        match lane {
            Lane::Trunk => {
                for slot in self.swaps.iter_mut().flatten().filter(|s| !s.branched && !s.decoded) {
                    slot.url = Some(url.clone());
                }
                if !self.neutral.decoded {
                    self.neutral.url = Some(url);
                }
            }
            Lane::Branch { style, swap } => {
                if let Some(slot) = self.swaps.get_mut(style).and_then(|r| r.get_mut(swap)).filter(|s| !s.decoded) {
                    (slot.url, slot.branched) = (Some(url), true);
                }
            }
        }
    }

    /// The VAE's image for `lane`, `seconds` after the start.
    pub fn decoded_image(&mut self, lane: Lane, url: String, seconds: f64) {
        let slot = match lane {
            Lane::Trunk => Some(&mut self.neutral),
            Lane::Branch { style, swap } => self.swaps.get_mut(style).and_then(|r| r.get_mut(swap)),
        };
        if let Some(slot) = slot.filter(|s| !s.decoded) {
            (slot.url, slot.decoded, slot.branched) = (Some(url), true, lane != Lane::Trunk);
            self.decoded.0 += 1;
        }
        self.seconds = seconds;
    }

    /// Estimated seconds left: the remaining steps at the pace so far, then the decodes at theirs (before the
    /// first decode, a decode is guessed to cost two steps' time). `None` before the first step.
    pub fn seconds_left(&self) -> Option<f64> {
        if self.done == 0 || self.stopped {
            return None;
        }
        let (decoded, to_decode) = self.decoded;
        match self.denoise_seconds {
            None => {
                let per_step = self.seconds / self.done as f64;
                Some(per_step * ((self.steps - self.done) as f64 + 2.0 * to_decode as f64))
            }
            Some(denoise) if decoded > 0 => {
                let per_image = (self.seconds - denoise) / decoded as f64;
                Some(per_image * (to_decode - decoded) as f64)
            }
            Some(denoise) => Some(2.0 * denoise / self.steps as f64 * to_decode as f64),
        }
    }

    /// The status line: where the run is, and how long it has left.
    pub fn status(&self) -> String {
        let (decoded, to_decode) = self.decoded;
        let what = if self.stopped {
            format!(
                "Stopped after step {} of {}: the previews show where each image was heading.",
                self.done, self.steps
            )
        } else if self.done < self.steps {
            format!("Denoising: step {} of {}", self.done, self.steps)
        } else {
            format!("Decoding the images with the VAE: {decoded} of {to_decode}")
        };
        match self.seconds_left() {
            Some(s) => format!("{what} · about {} left", duration(s)),
            None => what,
        }
    }

    /// Progress in 0..=1 for the progress bar (steps and decodes, weighted as [`seconds_left`] guesses).
    ///
    /// [`seconds_left`]: Self::seconds_left
    pub fn fraction(&self) -> f64 {
        match (self.seconds_left(), self.seconds) {
            (Some(left), spent) if spent + left > 0.0 => spent / (spent + left),
            _ => self.done as f64 / self.steps.max(1) as f64,
        }
    }
}

/// Seconds as people read them: "40 s", "3 min 20 s".
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s < 60 { format!("{s} s") } else { format!("{} min {} s", s / 60, s % 60) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_images_show_the_trunk_until_they_branch() {
        let mut live = Live::new(10, &[3, 6], 2);
        assert_eq!((live.swap_step(3), live.swap_step(6)), (7, 4));
        live.preview(Lane::Trunk, "trunk@1".into());
        assert!(live.swaps.iter().flatten().all(|s| s.url.as_deref() == Some("trunk@1") && !s.branched));
        // Step 5: the t = 6 branches exist.
        live.preview(Lane::Branch { style: 1, swap: 1 }, "b1@5".into());
        live.preview(Lane::Trunk, "trunk@5".into());
        assert_eq!(live.swaps[1][1].url.as_deref(), Some("b1@5"));
        assert!(live.swaps[1][1].branched);
        assert_eq!(live.swaps[0][0].url.as_deref(), Some("trunk@5"));
        assert_eq!(live.neutral.url.as_deref(), Some("trunk@5"));
        live.preview(Lane::Branch { style: 7, swap: 0 }, "nowhere".into());
        live.decoded_image(Lane::Branch { style: 0, swap: 0 }, "png".into(), 1.0);
        live.decoded_image(Lane::Branch { style: 0, swap: 0 }, "png".into(), 1.0);
        assert_eq!(live.decoded, (1, 5), "an image counts once");
        assert!(live.swaps[0][0].decoded && live.swaps[0][0].branched);
        live.preview(Lane::Trunk, "late".into());
        assert_eq!(live.swaps[0][0].url.as_deref(), Some("png"), "a decoded image is not replaced by a preview");
    }

    #[test]
    fn time_left_follows_the_pace() {
        let mut live = Live::new(10, &[5], 1);
        assert_eq!(live.seconds_left(), None);
        assert_eq!(live.status(), "Denoising: step 0 of 10");
        live.step(2, 4.0);
        // 8 steps at 2 s, then 2 decodes guessed at 4 s each.
        assert_eq!(live.seconds_left(), Some(24.0));
        assert_eq!(live.status(), "Denoising: step 2 of 10 · about 24 s left");
        assert!((live.fraction() - 4.0 / 28.0).abs() < 1e-12);
        live.step(10, 20.0);
        assert_eq!(live.seconds_left(), Some(8.0));
        live.decoded_image(Lane::Trunk, "n".into(), 23.0);
        assert_eq!(live.seconds_left(), Some(3.0));
        assert_eq!(live.status(), "Decoding the images with the VAE: 1 of 2 · about 3 s left");
        live.stopped = true;
        assert!(live.status().starts_with("Stopped after step 10 of 10"));
        assert_eq!(duration(200.4), "3 min 20 s");
    }
}
