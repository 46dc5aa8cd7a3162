//! `curves.png`: loss, learning rate and evaluation score over training, drawn from
//! `metrics.jsonl` (so a resumed run's curves include what came before).
use super::records::Record;
use crate::eval::score::Score;
use anyhow::Context;
use plotters::prelude::*;
use std::path::Path;

/// Series read from metrics.jsonl: (step, value).
#[derive(Debug, Default)]
pub struct History {
    pub loss: Vec<(f64, f64)>,
    pub lr: Vec<(f64, f64)>,
    pub score: Vec<(f64, f64)>,
    pub score_name: String,
}

pub fn read_history(metrics: &Path) -> anyhow::Result<History> {
    let mut h = History { score_name: "mIoU".into(), ..Default::default() };
    for record in super::records::read(metrics)? {
        match record {
            // A diverged step's loss (NaN) has no place on the plot.
            Record::Train(t) if t.loss.is_finite() => {
                h.loss.push((t.step as f64, t.loss));
                h.lr.push((t.step as f64, t.lr));
            }
            Record::Eval(e) => {
                if let Score::Cls(_) = e.score {
                    h.score_name = "top-1".into();
                }
                h.score.push((e.step as f64, e.score.main().1));
            }
            Record::Train(_) | Record::Start(_) => {}
        }
    }
    Ok(h)
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    data: &[(f64, f64)],
    color: RGBColor,
) -> anyhow::Result<()> {
    let x_max = data.iter().map(|p| p.0).fold(1.0, f64::max);
    let (lo, hi) = data.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (lo, hi) = if data.is_empty() {
        (0.0, 1.0)
    } else if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    let pad = (hi - lo) * 0.05;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart.configure_mesh().x_desc("step").label_style(("sans-serif", 13)).draw().map_err(|e| anyhow::anyhow!("{e}"))?;
    chart.draw_series(LineSeries::new(data.iter().copied(), &color)).map_err(|e| anyhow::anyhow!("{e}"))?;
    if data.len() < 30 {
        chart
            .draw_series(data.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// Draw loss, learning rate and score panels into `out` (PNG).
pub fn render(metrics: &Path, out: &Path) -> anyhow::Result<()> {
    crate::fonts::register()?;
    let h = read_history(metrics)?;
    let root = BitMapBackend::new(out, (1500, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let areas = root.split_evenly((1, 3));
    panel(&areas[0], "training loss", &h.loss, RGBColor(31, 119, 180))?;
    panel(&areas[1], "learning rate", &h.lr, RGBColor(255, 127, 14))?;
    panel(&areas[2], &format!("val {}", h.score_name), &h.score, RGBColor(44, 160, 44))?;
    root.present().with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
