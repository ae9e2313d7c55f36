//! The figures the CLI writes as SVG: training-loss curves and the paper's Fig. 4 (t-SNE maps of latents).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::evaluate::{LatentMap, MapPoint};

/// Points a loss plot draws per line: a 720-pixel-wide plot shows no more, and a long run's every step
/// made files of hundreds of kB.
const PLOT_POINTS: usize = 1000;

/// Plots a `step,loss` CSV text as an SVG titled "`title` training loss": the steps' spread faintly (each
/// stretch of the run's lowest and highest loss), and a 1 %-of-the-run moving average on a log scale.
/// Nothing is drawn for a log without positive losses.
pub fn loss(csv: &str, title: &str, svg: &Path) -> Result<()> {
    let points: Vec<(f32, f32)> = csv
        .lines()
        .filter_map(|l| {
            let (s, v) = l.split_once(',')?;
            Some((s.trim().parse().ok()?, v.trim().parse().ok()?))
        })
        .filter(|(_, v): &(f32, f32)| v.is_finite() && *v > 0.0)
        .collect();
    if points.is_empty() {
        return Ok(());
    }
    let window = (points.len() / 100).max(1);
    let stretch = points.len().div_ceil(PLOT_POINTS / 2);
    let smooth: Vec<(f32, f32)> = points
        .windows(window)
        .map(|w| (w[w.len() - 1].0, w.iter().map(|p| p.1).sum::<f32>() / w.len() as f32))
        .step_by(stretch)
        .collect();
    let (lo, hi) = points.iter().fold((f32::MAX, f32::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let last = points.iter().map(|p| p.0).fold(1.0, f32::max);
    let fail = |e: &dyn std::fmt::Display| Error::Plot(format!("{}: {e}", svg.display()));
    let root = SVGBackend::new(svg, (720, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title} training loss"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f32..last, (lo * 0.9..hi * 1.1).log_scale())
        .map_err(|e| fail(&e))?;
    chart.configure_mesh().x_desc("step").y_desc("loss").draw().map_err(|e| fail(&e))?;
    chart.draw_series(LineSeries::new(spread(&points, stretch), BLUE.mix(0.25))).map_err(|e| fail(&e))?;
    chart.draw_series(LineSeries::new(smooth, BLUE.stroke_width(2))).map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

/// Each stretch of `stretch` points as its highest value at its first step and its lowest at its last, so a
/// line through them covers the range the steps spanned.
fn spread(points: &[(f32, f32)], stretch: usize) -> Vec<(f32, f32)> {
    points
        .chunks(stretch)
        .flat_map(|c| {
            let (lo, hi) = c.iter().fold((f32::MAX, f32::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
            [(c[0].0, hi), (c[c.len() - 1].0, lo)]
        })
        .collect()
}

/// The styles of a latent map's points, in order of first appearance.
fn map_styles(m: &LatentMap) -> Vec<&str> {
    let mut seen: Vec<&str> = Vec::new();
    for s in m.points.iter().filter_map(|p| p.style.as_deref()) {
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    seen
}

/// Fig. 4 as an SVG: per setting, every latent's t-SNE position, neutral latents black, each style's swap
/// latents in its colour (larger for later swap points), joined per subject in swap order.
pub fn latent_maps(maps: &[LatentMap], path: &Path) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| Error::Plot(format!("{}: {e}", path.display()));
    let panel = 420u32;
    let root = SVGBackend::new(path, (panel * maps.len().max(1) as u32, panel + 40)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    for (m, area) in maps.iter().zip(root.split_evenly((1, maps.len().max(1)))) {
        let range = |f: fn(&MapPoint) -> f32| {
            let (lo, hi) = m.points.iter().map(f).fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(v), h.max(v)));
            let pad = 0.05 * (hi - lo).max(1e-6);
            lo - pad..hi + pad
        };
        let styles = map_styles(m);
        let mut chart = ChartBuilder::on(&area)
            .caption(format!("t-SNE of latents: {}", m.setting), ("sans-serif", 15))
            .margin(10)
            .margin_bottom(16 * styles.len() as i32 + 10)
            .build_cartesian_2d(range(|p| p.x), range(|p| p.y))
            .map_err(|e| fail(&e))?;
        let style_colour = |s: &str| Palette99::pick(styles.iter().position(|x| *x == s).unwrap_or(0));
        let color = |p: &MapPoint| p.style.as_deref().map_or(BLACK.to_rgba(), |s| style_colour(s).to_rgba());
        // Each subject's trajectory per style: its neutral latent, then the swap points in order.
        for (i, p) in m.points.iter().enumerate().filter(|(_, p)| p.style.is_none()) {
            for style in &styles {
                let line = std::iter::once((p.x, p.y)).chain(
                    m.points[i + 1..]
                        .iter()
                        .take_while(|q| q.subject == p.subject)
                        .filter(|q| q.style.as_deref() == Some(*style))
                        .map(|q| (q.x, q.y)),
                );
                chart.draw_series(LineSeries::new(line, style_colour(style).mix(0.35))).map_err(|e| fail(&e))?;
            }
        }
        let last = m.points.iter().map(|p| p.swap_point).max().unwrap_or(1).max(1) as f32;
        chart
            .draw_series(m.points.iter().map(|p| {
                let r = if p.style.is_none() { 5 } else { 2 + (3.0 * p.swap_point as f32 / last).round() as i32 };
                Circle::new((p.x, p.y), r, color(p).filled())
            }))
            .map_err(|e| fail(&e))?;
        // The legend under the map, in the margin the chart leaves.
        for (k, s) in styles.iter().enumerate() {
            let y = panel as i32 + 20 - 16 * (styles.len() - k) as i32;
            area.draw(&Text::new(
                s.to_string(),
                (14, y + 20),
                ("sans-serif", 13).into_font().color(&Palette99::pick(k)),
            ))
            .map_err(|e| fail(&e))?;
        }
    }
    root.present().map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_log_plots_its_spread_in_few_points() {
        let points: Vec<(f32, f32)> = (0..10).map(|i| (i as f32, [3.0, 1.0, 2.0, 5.0, 4.0][i % 5])).collect();
        assert_eq!(spread(&points, 5), [(0.0, 5.0), (4.0, 1.0), (5.0, 5.0), (9.0, 1.0)]);
        assert_eq!(spread(&points[..7], 5)[2..], [(5.0, 3.0), (6.0, 1.0)], "a short last stretch");

        let csv: String = (0..30_000).map(|s| format!("{s},{}\n", 1.0 + (s % 7) as f32 / 10.0)).collect();
        let svg = std::env::temp_dir().join(format!("traverse-loss-{}.svg", std::process::id()));
        loss(&csv, "unet", &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        std::fs::remove_file(&svg).unwrap();
        assert!(text.contains("unet training loss"));
        // Two blue lines (the axes are polylines too) of at most PLOT_POINTS points each, where the run's
        // every step was 30 000 of them.
        let lines: Vec<usize> = text
            .split("<polyline")
            .filter(|l| l.contains("stroke=\"#0000FF\""))
            .map(|l| l.split("points=\"").nth(1).unwrap().split('"').next().unwrap().split_whitespace().count())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines.iter().all(|n| (100..=PLOT_POINTS).contains(n)), "{lines:?}");
    }
}
