//! SVG charts of a report, drawn with plotters' SVG backend into strings.
//!
//! Text is measured by plotters' font layer: natively an estimate from the font size, in the
//! browser the DOM (so the page renders reports on its main thread, not in a worker).

use plotters::prelude::*;

/// One bar series: a legend name and, per category, a value with its 95% interval.
pub struct BarSeries {
    pub name: String,
    pub values: Vec<Option<(f64, [f64; 2])>>,
}

fn err(e: impl std::fmt::Display) -> crate::Error {
    crate::Error::Invalid(format!("chart: {e}"))
}

/// Grouped bars with interval whiskers, y in `[0, 1]` shown as percent.
pub fn grouped_bars(title: &str, categories: &[String], series: &[BarSeries], y_desc: &str) -> crate::Result<String> {
    let k = categories.len().max(1);
    let width = (160 + 90 * k * series.len().max(1)).clamp(520, 1400) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5f64..(k as f64 - 0.5), 0f64..1f64)
            .map_err(err)?;
        let labels: Vec<String> = categories.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(k + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .y_desc(y_desc)
            .draw()
            .map_err(err)?;
        let s = series.len().max(1) as f64;
        let slot = 0.8 / s;
        for (si, ser) in series.iter().enumerate() {
            let color = Palette99::pick(si).to_rgba();
            let x0 = |ci: usize| ci as f64 - 0.4 + slot * si as f64;
            let bars = ser.values.iter().enumerate().filter_map(|(ci, v)| v.map(|(y, _)| (ci, y)));
            chart
                .draw_series(bars.map(|(ci, y)| Rectangle::new([(x0(ci) + 0.02, 0.0), (x0(ci) + slot - 0.02, y)], color.filled())))
                .map_err(err)?
                .label(ser.name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            let whiskers = ser.values.iter().enumerate().filter_map(|(ci, v)| v.map(|(_, ci95)| (ci, ci95)));
            chart
                .draw_series(whiskers.map(|(ci, [lo, hi])| {
                    let xc = x0(ci) + slot / 2.0;
                    PathElement::new(vec![(xc, lo), (xc, hi)], BLACK.stroke_width(1))
                }))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Labelled points (one per model): x on a log scale.
pub fn scatter_log_x(title: &str, points: &[(String, f64, f64)], x_desc: &str, y_desc: &str) -> crate::Result<String> {
    scatter_log_x_with(title, points, x_desc, y_desc, &|x| format!("{x:.1e}"))
}

/// [`scatter_log_x`] with the x tick labels formatted by `x_fmt`.
pub fn scatter_log_x_with(title: &str, points: &[(String, f64, f64)], x_desc: &str, y_desc: &str, x_fmt: &dyn Fn(&f64) -> String) -> crate::Result<String> {
    let xs: Vec<f64> = points.iter().map(|p| p.1).filter(|x| *x > 0.0).collect();
    let (lo, hi) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let (lo, hi) = if xs.is_empty() { (1.0, 10.0) } else { (lo / 2.0, hi * 2.0) };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (620, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(56)
            .build_cartesian_2d((lo..hi).log_scale(), 0f64..1f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(x_fmt)
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .draw()
            .map_err(err)?;
        for (i, (name, x, y)) in points.iter().enumerate() {
            if *x <= 0.0 {
                continue;
            }
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(std::iter::once(Circle::new((*x, *y), 6, color.filled())))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| Circle::new((x + 6, y), 5, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// One line of [`lines`]: a legend name and its points in x order.
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Lines with point markers, x in `[0, 1]` and y in `[0, y_max]` (y shown as percent when `percent`).
pub fn lines(title: &str, series: &[Line], x_desc: &str, y_desc: &str, percent: bool) -> crate::Result<String> {
    let y_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|y| y.is_finite()).fold(1f64, f64::max) * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (620, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..1f64, 0f64..y_max)
            .map_err(err)?;
        let y_fmt = |y: &f64| if percent { format!("{:.0}%", y * 100.0) } else { format!("{y:.2}") };
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).y_label_formatter(&y_fmt).draw().map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2)));
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled()))).map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
