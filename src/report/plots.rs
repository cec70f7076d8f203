//! SVG plots (plotters): per-task curves, the Pareto front and the accuracy-matrix heat map. Each
//! returns the SVG text, so the HTML report can inline it and the Markdown report can link a file.

use plotters::prelude::*;

use super::Error;
use super::tables::FrontPoint;

fn plot_error<E: std::fmt::Debug>(e: E) -> Error {
    Error::Plot(format!("{e:?}"))
}

/// A colour per series: candidates get strong colours, baselines greys.
fn colour(index: usize, baseline: bool) -> RGBColor {
    const STRONG: [RGBColor; 6] = [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(23, 190, 207),
    ];
    const GREYS: [RGBColor; 6] = [
        RGBColor(40, 40, 40),
        RGBColor(110, 110, 110),
        RGBColor(150, 120, 80),
        RGBColor(90, 130, 130),
        RGBColor(170, 170, 170),
        RGBColor(120, 90, 120),
    ];
    if baseline {
        GREYS[index % GREYS.len()]
    } else {
        STRONG[index % STRONG.len()]
    }
}

/// One line of a curve plot.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Whether it is a baseline (drawn grey and thin).
    pub baseline: bool,
    /// (task, value) points.
    pub points: Vec<(f64, f64)>,
}

/// A line plot of one metric against the task number.
pub fn curves(title: &str, y_label: &str, series: &[Series]) -> Result<String, Error> {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in all {
        x_max = x_max.max(*x);
        y_min = y_min.min(*y);
        y_max = y_max.max(*y);
    }
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    // A flat or nearly flat curve still gets a readable axis: at least ±1% of its magnitude (±0.01
    // around zero), not a span of a few ulps.
    let pad = ((y_max - y_min) * 0.08).max(0.01 * y_max.abs().max(y_min.abs()).max(1.0));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(1f64..x_max.max(2.0), (y_min - pad)..(y_max + pad))
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("task")
            .y_desc(y_label)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_error)?;
        let (mut strong, mut grey) = (0, 0);
        for s in series {
            let c = if s.baseline {
                grey += 1;
                colour(grey - 1, true)
            } else {
                strong += 1;
                colour(strong - 1, false)
            };
            let width = if s.baseline { 1 } else { 2 };
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(width)))
                .map_err(plot_error)?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Plasticity × retention: every subject as a point, the front joined by a line, names beside the
/// front and the baselines.
pub fn pareto(points: &[(FrontPoint, bool)], front: &[FrontPoint]) -> Result<String, Error> {
    let (mut x0, mut x1, mut y0, mut y1) =
        (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for (p, _) in points {
        x0 = x0.min(p.plasticity);
        x1 = x1.max(p.plasticity);
        y0 = y0.min(p.retention);
        y1 = y1.max(p.retention);
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let (px, py) = (((x1 - x0) * 0.1).max(0.005), ((y1 - y0) * 0.1).max(0.005));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Pareto front: plasticity × retention", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d((x0 - px)..(x1 + px), (y0 - py)..(y1 + py))
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("mean plasticity")
            .y_desc("mean retention")
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_error)?;
        let dim = RGBColor(180, 180, 180);
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|(_, baseline)| !baseline)
                    .map(|(p, _)| Circle::new((p.plasticity, p.retention), 3, dim.filled())),
            )
            .map_err(plot_error)?;
        let red = colour(0, false);
        chart
            .draw_series(LineSeries::new(
                front.iter().map(|p| (p.plasticity, p.retention)),
                red.stroke_width(2),
            ))
            .map_err(plot_error)?;
        chart
            .draw_series(
                front
                    .iter()
                    .map(|p| Circle::new((p.plasticity, p.retention), 4, red.filled())),
            )
            .map_err(plot_error)?;
        let black = RGBColor(30, 30, 30);
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|(_, baseline)| *baseline)
                    .map(|(p, _)| TriangleMarker::new((p.plasticity, p.retention), 6, black.filled())),
            )
            .map_err(plot_error)?;
        let labelled = points
            .iter()
            .filter(|(p, baseline)| *baseline || front.iter().any(|f| f.subject == p.subject));
        chart
            .draw_series(labelled.map(|(p, _)| {
                Text::new(
                    p.subject.clone(),
                    (p.plasticity, p.retention),
                    ("sans-serif", 12).into_font().color(&black),
                )
            }))
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The accuracy matrix R as a heat map: row i = after training task i, column j = tested task j.
pub fn heat_map(title: &str, matrix: &[Vec<Option<f32>>]) -> Result<String, Error> {
    let n = matrix.len().max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0.5f64..n as f64 + 0.5, (n as f64 + 0.5)..0.5f64)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("tested task j")
            .y_desc("after training task i")
            .draw()
            .map_err(plot_error)?;
        let cells = matrix.iter().enumerate().flat_map(|(i, row)| {
            row.iter().enumerate().filter_map(move |(j, a)| {
                let a = (*a)? as f64;
                // White (0%) to dark blue (100%).
                let shade = |lo: f64, hi: f64| (lo + (hi - lo) * a.clamp(0.0, 1.0)) as u8;
                let c = RGBColor(shade(255.0, 8.0), shade(255.0, 48.0), shade(255.0, 107.0));
                let (x, y) = (j as f64 + 1.0, i as f64 + 1.0);
                Some(Rectangle::new(
                    [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                    c.filled(),
                ))
            })
        });
        chart.draw_series(cells).map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}
