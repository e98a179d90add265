//! The plot: throughput against clients, and the latency percentiles against clients, one
//! line per configuration, workload and payload, written as a PNG.
//!
//! Text is drawn with a font compiled into the binary (from `epaint_default_fonts`), so
//! the plot needs no font installed on the machine.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::Error;
use crate::report::{Run, bytes};
use crate::{Setup, Workload};

const FONT: &str = "sans-serif";
const WIDTH: u32 = 1400;
const HEIGHT: u32 = 1000;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a valid TrueType file compiled in: registering it cannot fail.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    });
}

/// One line: a configuration and payload, its points by client count.
struct Series {
    label: String,
    color: RGBColor,
    points: Vec<(usize, f64)>,
}

/// What a panel shows.
#[derive(Clone, Copy)]
enum Figure {
    Throughput,
    Latency(&'static str),
}

impl Figure {
    fn title(self) -> String {
        match self {
            Figure::Throughput => "throughput (operations per second, log scale)".to_string(),
            Figure::Latency(p) => format!("latency {p} (microseconds, log scale)"),
        }
    }

    fn value(self, run: &Run) -> f64 {
        match self {
            Figure::Throughput => run.ops_per_second,
            Figure::Latency("p50") => run.latency_us.p50,
            Figure::Latency("p99") => run.latency_us.p99,
            Figure::Latency(_) => run.latency_us.p999,
        }
    }
}

const PALETTE: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

/// Draws `runs` into a PNG at `path`.
pub fn write_png(runs: &[Run], path: &Path) -> Result<(), Error> {
    register_font();
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "raft-bench: 3-node clusters (a: in-memory, b: QUIC + file WAL, c: processes over HTTP)",
        (FONT, 24),
    )?;
    let panels = root.split_evenly((2, 2));
    let figures = [
        Figure::Throughput,
        Figure::Latency("p50"),
        Figure::Latency("p99"),
        Figure::Latency("p99.9"),
    ];
    for (panel, figure) in panels.iter().zip(figures) {
        draw_panel(panel, runs, figure)?;
    }
    root.present()?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    runs: &[Run],
    figure: Figure,
) -> Result<(), Error> {
    let mut by_line: BTreeMap<(Setup, Workload, usize, usize), Vec<&Run>> = BTreeMap::new();
    for run in runs {
        by_line
            .entry((run.config, run.workload, run.batch, run.payload_bytes))
            .or_default()
            .push(run);
    }
    let series: Vec<Series> = by_line
        .iter()
        .enumerate()
        .map(|(i, ((setup, workload, batch, payload), runs))| {
            let mut points: Vec<(usize, f64)> = runs
                .iter()
                .map(|r| (r.clients, figure.value(r)))
                .filter(|p| p.1 > 0.0)
                .collect();
            points.sort_by_key(|p| p.0);
            Series {
                label: match (workload, batch) {
                    (Workload::Write, 1) => format!("{} {}", setup.name(), bytes(*payload)),
                    (Workload::Write, n) => format!("{} {} x{n}", setup.name(), bytes(*payload)),
                    (w, _) => format!("{} {}", setup.name(), w.name()),
                },
                color: PALETTE[i % PALETTE.len()],
                points,
            }
        })
        .collect();
    let values: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).collect();
    let clients: Vec<usize> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    let x_min = clients.iter().copied().min().unwrap_or(1).max(1) as f64;
    let x_max = clients.iter().copied().max().unwrap_or(1).max(1) as f64;
    let x_range = (x_min / 1.5)..(x_max * 1.5);
    let mut chart = ChartBuilder::on(area);
    chart
        .caption(figure.title(), (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(0.0, f64::max);
    let (low, high) = if low.is_finite() && high > 0.0 {
        (low / 1.5, high * 1.5)
    } else {
        (1.0, 10.0)
    };
    let mut chart = chart.build_cartesian_2d(x_range.log_scale(), (low..high).log_scale())?;
    let label_style = (FONT, 14);
    chart
        .configure_mesh()
        .x_desc("concurrent clients")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| si(*y))
        .label_style(label_style)
        .axis_desc_style(label_style)
        .draw()?;
    // Where the lines usually are not: throughput grows to the right, and latency is
    // lowest with few clients.
    let legend = match figure {
        Figure::Throughput => SeriesLabelPosition::LowerRight,
        Figure::Latency(_) => SeriesLabelPosition::UpperLeft,
    };
    draw_series(&mut chart, &series, legend)?;
    Ok(())
}

fn draw_series<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    series: &[Series],
    legend: SeriesLabelPosition,
) -> Result<(), Error>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for s in series {
        let color = s.color;
        let points: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0 as f64, p.1)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// `1.5M`, `250k`, `12`.
fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}
