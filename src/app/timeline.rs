//! The swap as a timeline: for each swap point t, which DDIM steps use the neutral prompt and which the style
//! prompt, and what sharing the neutral prefix saves. Plain data for the page's drawing, tested natively.

/// One swap point's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The swap point: how many final steps use the style prompt.
    pub t: usize,
    /// Steps run with the neutral prompt first (shared with the trunk, computed once).
    pub neutral_steps: usize,
}

/// The rows of one run and its U-Net bill.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// DDIM steps.
    pub steps: usize,
    /// One row per swap point, sorted.
    pub rows: Vec<Row>,
    /// Guided latent evaluations with the shared trunk: the trunk's steps plus each branch's own.
    pub shared: usize,
    /// Evaluations if every image ran from scratch: (1 + branches) × steps.
    pub separate: usize,
}

impl Timeline {
    /// The timeline of `steps` steps with these swap points (each in `1..=steps`) and `styles` style prompts.
    pub fn new(steps: usize, swap_points: &[usize], styles: usize) -> Self {
        let mut points = swap_points.to_vec();
        points.sort_unstable();
        points.dedup();
        let rows: Vec<Row> = points.iter().map(|&t| Row { t, neutral_steps: steps.saturating_sub(t) }).collect();
        let shared = steps + styles * points.iter().sum::<usize>();
        let separate = (1 + styles * points.len()) * steps;
        Self { steps, rows, shared, separate }
    }

    /// The share of U-Net evaluations the trunk saves, in 0..1.
    pub fn saved(&self) -> f64 {
        if self.separate == 0 { 0.0 } else { 1.0 - self.shared as f64 / self.separate as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_papers_trajectory_costs_275_evaluations_instead_of_500() {
        let tl = Timeline::new(50, &crate::swap::PAPER_SWAP_POINTS, 1);
        assert_eq!((tl.shared, tl.separate), (275, 500));
        assert!((tl.saved() - 0.45).abs() < 1e-12);
        assert_eq!(tl.rows[0], Row { t: 5, neutral_steps: 45 });
        assert_eq!(tl.rows[8], Row { t: 45, neutral_steps: 5 });
        // Four styles share the trunk too: 50 + 4 × 225 of 37 × 50.
        let tl = Timeline::new(50, &[45, 5, 5], 4);
        assert_eq!((tl.rows.len(), tl.shared, tl.separate), (2, 50 + 4 * 50, 9 * 50));
    }
}
