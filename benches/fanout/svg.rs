//! Line charts as plain SVG for the fan-out sweep (`fanout --sweep --charts DIR`): a logarithmic x
//! axis (the room sizes), a y axis from 0 (or logarithmic, for figures that span decades), one
//! polyline per series with a dot on each point, and a legend: several series and log axes, which
//! the admin pages' one-series charts (`stats::svg`, whose escaping this reuses) do not draw.
//! Written by hand: a plotting crate would be the benchmark's biggest dependency, and a browser
//! shows the file as it is.
//!
//! Also the crate root of the `fanout_svg` test target (Cargo.toml), which runs the tests below
//! without the benchmark's feature.

use std::fmt::Write;

use roommanager::stats::svg::escape;

/// One line of a chart: `points` are (x, y), x > 0. `line: false` draws the points alone (a case
/// that is not part of the sweep, such as many small rooms).
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub line: bool,
    pub points: Vec<(f64, f64)>,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// A logarithmic y axis (from the decade below the smallest value); points at 0 or below
    /// are left out.
    pub y_log: bool,
    pub series: Vec<Series<'a>>,
}

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 260.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// A round step (1, 2 or 5 × 10^k) that cuts 0..=max into about five parts.
fn tick_step(max: f64) -> f64 {
    let rough = max / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * magnitude)
}

/// A number as a tick label: thousands as "k", no needless decimals.
fn label(value: f64) -> String {
    if value >= 1000.0 && (value / 1000.0).fract() == 0.0 {
        format!("{}k", value / 1000.0)
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

/// The chart as a standalone SVG document.
pub fn render(chart: &Chart) -> String {
    let points = || chart.series.iter().flat_map(|s| s.points.iter());
    let mut xs: Vec<f64> = points().map(|p| p.0).filter(|x| *x > 0.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    // A margin on both sides keeps the end points off the frame.
    let (x_min, x_max) = match (xs.first(), xs.last()) {
        (Some(a), Some(b)) if b > a => {
            let margin = (b.log10() - a.log10()) * 0.05;
            (a.log10() - margin, b.log10() + margin)
        }
        (Some(a), _) => (a.log10() - 0.5, a.log10() + 0.5),
        _ => (0.0, 1.0),
    };
    let shown = |p: &&(f64, f64)| p.0 > 0.0 && (!chart.y_log || p.1 > 0.0);
    let y_top = points().filter(shown).map(|p| p.1).fold(0.0, f64::max);
    // Linear: 0 to a round multiple of the tick step. Logarithmic: whole decades.
    let (y_min, y_max, y_ticks) = if chart.y_log {
        let low = points()
            .filter(shown)
            .map(|p| p.1)
            .fold(f64::INFINITY, f64::min);
        let (low, high) = if low.is_finite() {
            (
                low.log10().floor(),
                y_top.log10().ceil().max(low.log10().floor() + 1.0),
            )
        } else {
            (0.0, 1.0)
        };
        let ticks: Vec<f64> = (low as i32..=high as i32).map(|e| 10f64.powi(e)).collect();
        (low, high, ticks)
    } else {
        let step = if y_top > 0.0 { tick_step(y_top) } else { 1.0 };
        let top = (y_top / step).ceil().max(1.0) * step;
        let ticks: Vec<f64> = (0..=(top / step).round() as usize)
            .map(|i| i as f64 * step)
            .collect();
        (0.0, top, ticks)
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x.log10() - x_min) / (x_max - x_min) * plot_w;
    let py = |y: f64| {
        let y = if chart.y_log { y.log10() } else { y };
        TOP + plot_h - (y - y_min) / (y_max - y_min) * plot_h
    };

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(
        out,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(chart.title)
    );
    // Horizontal grid lines with the y labels.
    for y in y_ticks {
        let at = py(y);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{at:.1}" x2="{:.1}" y2="{at:.1}" stroke="#ddd"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            at + 4.0,
            label(y)
        );
    }
    // A tick and label at each room size measured.
    for x in &xs {
        let at = px(*x);
        let _ = writeln!(
            out,
            r##"<line x1="{at:.1}" y1="{TOP}" x2="{at:.1}" y2="{:.1}" stroke="#eee"/>"##,
            TOP + plot_h
        );
        let _ = writeln!(
            out,
            r#"<text x="{at:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + plot_h + 20.0,
            label(*x)
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0,
        escape(chart.x_label)
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + plot_h / 2.0,
        escape(chart.y_label)
    );
    for (i, series) in chart.series.iter().enumerate() {
        let color = escape(series.color);
        let mut sorted = series.points.clone();
        sorted.retain(|p| shown(&p));
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        if series.line {
            let path: Vec<String> = sorted
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                path.join(" ")
            );
        }
        for (x, y) in &sorted {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="{}" fill="{color}"><title>{}: {} at {}</title></circle>"#,
                px(*x),
                py(*y),
                if series.line { 3.5 } else { 6.0 },
                escape(series.name),
                label(*y),
                label(*x)
            );
        }
        let legend_y = TOP + 10.0 + i as f64 * 22.0;
        let legend_x = LEFT + plot_w + 16.0;
        if series.line {
            let _ = writeln!(
                out,
                r#"<line x1="{legend_x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{color}" stroke-width="2"/>"#,
                legend_x + 24.0
            );
        }
        let _ = writeln!(
            out,
            r#"<circle cx="{}" cy="{legend_y}" r="{}" fill="{color}"/>"#,
            legend_x + 12.0,
            if series.line { 3.5 } else { 6.0 }
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}">{}</text>"#,
            legend_x + 32.0,
            legend_y + 4.0,
            escape(series.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> Chart<'static> {
        Chart {
            title: "µs per delivery <by N>",
            x_label: "viewers",
            y_label: "µs & more",
            y_log: false,
            series: vec![
                Series {
                    name: "RoomManager",
                    color: "#1f77b4",
                    line: true,
                    points: vec![(1000.0, 4.2), (100.0, 6.0), (15000.0, 3.1)],
                },
                Series {
                    name: "Node ws",
                    color: "#ff7f0e",
                    line: true,
                    points: vec![(100.0, 9.0), (1000.0, 9.8)],
                },
                Series {
                    name: "500 rooms × 20",
                    color: "#2ca02c",
                    line: false,
                    points: vec![(10000.0, 12.5)],
                },
            ],
        }
    }

    /// The tags in `svg`, in order: ("name", is_closing, is_self_closing).
    fn tags(svg: &str) -> Vec<(String, bool, bool)> {
        let mut found = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let close = rest[open..].find('>').expect("every tag is closed") + open;
            let inner = &rest[open + 1..close];
            assert!(!inner.contains('<'), "a tag inside a tag: {inner}");
            let closing = inner.starts_with('/');
            let name: String = inner
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            found.push((name, closing, inner.ends_with('/')));
            rest = &rest[close + 1..];
        }
        found
    }

    #[test]
    fn tags_nest_and_each_line_series_is_one_polyline() {
        let svg = render(&chart());
        let mut open = Vec::new();
        for (name, closing, self_closing) in tags(&svg) {
            if closing {
                assert_eq!(
                    open.pop(),
                    Some(name.clone()),
                    "</{name}> closes the wrong tag"
                );
            } else if !self_closing {
                open.push(name);
            }
        }
        assert!(open.is_empty(), "left open: {open:?}");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(svg.matches("<polyline ").count(), 2);
        // Each point a dot (with its value as a tooltip), plus one dot per legend entry.
        assert_eq!(svg.matches("<circle ").count(), 6 + 3);
    }

    #[test]
    fn text_is_escaped_and_points_run_left_to_right() {
        let svg = render(&chart());
        assert!(svg.contains("µs per delivery &lt;by N&gt;"));
        assert!(svg.contains("µs &amp; more"));
        assert!(!svg.contains("<by N>"));
        let line = svg
            .lines()
            .find(|l| l.starts_with("<polyline"))
            .expect("a polyline");
        let xs: Vec<f64> = line
            .split('"')
            .nth(1)
            .expect("the points attribute")
            .split(' ')
            .map(|p| {
                p.split(',')
                    .next()
                    .and_then(|x| x.parse().ok())
                    .expect("x,y")
            })
            .collect();
        assert_eq!(xs.len(), 3);
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
        assert!(xs.iter().all(|x| (LEFT..=WIDTH - RIGHT).contains(x)));
    }

    #[test]
    fn a_log_axis_has_a_line_per_decade_and_leaves_out_zero() {
        let mut chart = chart();
        chart.y_log = true;
        chart.series[1].points.push((5000.0, 0.0));
        chart.series[1].points.push((15000.0, 2500.0));
        let svg = render(&chart);
        for decade in ["1", "10", "100", "1k", "10k"] {
            assert!(svg.contains(&format!(">{decade}</text>")), "{decade}");
        }
        assert!(!svg.contains(">100k</text>"));
        // 3 + 3 (the point at 0 left out) + 1 points, 3 legend dots.
        assert_eq!(svg.matches("<circle ").count(), 7 + 3);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(12.5), 5.0);
        assert!((tick_step(0.9) - 0.2).abs() < 1e-12);
        assert_eq!(label(15000.0), "15k");
        assert_eq!(label(0.25), "0.25");
    }
}
