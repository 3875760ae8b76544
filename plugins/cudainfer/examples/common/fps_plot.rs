//! PNG line plot of aggregate fps against the number of concurrent streams.
//!
//! Included from an example with `#[path = "common/fps_plot.rs"] mod fps_plot;`; it lives in a
//! subdirectory without `main.rs` so that Cargo does not build it as an example of its own.
//! Each example uses part of it.
#![allow(dead_code)]

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;

/// One line of the plot: (N streams, aggregate fps) points.
pub struct Series<'a> {
    pub label: &'a str,
    pub points: Vec<(u32, f64)>,
}

// Embedded so that text renders through ab_glyph alone, with no fontconfig/freetype at run time.
static DEJAVU_SANS: &[u8] = include_bytes!("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf");
const FONT: &str = "sans-serif";

// Distinct and readable on white, in the order series get them.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// X axis placed by log2(N), with ticks exactly at the N values present, so that 1, 2 and 4 do
/// not crowd together next to 32.
struct Log2Ticks {
    ticks: Vec<u32>,
    lo: f64,
    hi: f64,
}

impl Log2Ticks {
    fn new(mut ticks: Vec<u32>) -> Self {
        ticks.sort_unstable();
        ticks.dedup();
        let first = f64::from(ticks[0]).log2();
        let last = f64::from(ticks[ticks.len() - 1]).log2();
        // Padding keeps the end markers off the plot frame.
        let pad = ((last - first) * 0.05).max(0.3);
        Self {
            ticks,
            lo: first - pad,
            hi: last + pad,
        }
    }
}

impl Ranged for Log2Ticks {
    type FormatOption = DefaultFormatting;
    type ValueType = u32;

    fn map(&self, value: &u32, limit: (i32, i32)) -> i32 {
        let t = (f64::from(*value).log2() - self.lo) / (self.hi - self.lo);
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<u32> {
        // Thin out evenly only if the N values outnumber what the axis asks for.
        let step = self.ticks.len().div_ceil(hint.max_num_points().max(1));
        self.ticks.iter().copied().step_by(step.max(1)).collect()
    }

    fn range(&self) -> Range<u32> {
        self.ticks[0]..self.ticks[self.ticks.len() - 1]
    }
}

fn ensure_font() -> Result<(), String> {
    // The font table is global and parsing is not free; register once per process.
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err("embedded DejaVu Sans could not be parsed".into())
    }
}

/// Writes a PNG (width x height 1000x600) with log2-spaced x axis ticks at the N values present, linear y from 0, a legend, axis labels "concurrent streams (N)" and "aggregate fps", and the given title.
pub fn write_png(path: &Path, title: &str, series: &[Series]) -> Result<(), String> {
    ensure_font()?;

    let ns: Vec<u32> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    if ns.is_empty() {
        return Err("no points to plot".into());
    }
    if ns.contains(&0) {
        return Err("N = 0 has no place on a log2 axis".into());
    }
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(0.0_f64, f64::max);
    // Headroom above the highest point; a flat zero plot still needs a non-empty range.
    let y_top = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };

    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;

    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(Log2Ticks::new(ns), 0.0..y_top)
        .map_err(|e| err(&e))?;

    chart
        .configure_mesh()
        .x_desc("concurrent streams (N)")
        .y_desc("aggregate fps")
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .max_light_lines(1)
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| err(&e))?;

    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut pts = s.points.clone();
        // Lines join neighbours in N, whatever order the caller measured them in.
        pts.sort_by_key(|p| p.0);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
            });
        // Filled markers show where the measurements are, apart from the joining lines.
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 5, colour.filled())))
            .map_err(|e| err(&e))?;
    }

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    root.present().map_err(|e| err(&e))
}

/// Writes a PNG (1000x600) of `series` as lines over linear axes from 0
/// (a soak's memory against time, say), with a legend.
pub fn write_lines_png(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), String> {
    ensure_font()?;
    let finite_max = |f: &dyn Fn(&(f64, f64)) -> f64| {
        series
            .iter()
            .flat_map(|s| s.1.iter().map(f))
            .filter(|v| v.is_finite())
            .fold(0.0_f64, f64::max)
    };
    let (x_max, y_max) = (finite_max(&|p| p.0), finite_max(&|p| p.1));
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max.max(1.0), 0.0..(y_max * 1.15).max(1.0))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .max_light_lines(1)
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (label, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
