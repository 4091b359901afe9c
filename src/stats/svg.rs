//! Charts as inline SVG, drawn on the server: no JavaScript, and only presentation attributes
//! (the CSP's `style-src 'self'` forbids `style=`). Every text is XML-escaped here, as the pages
//! insert the chart as it is.

use std::fmt::Write;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 30.0;
/// Up to this many points every one is labelled on the x axis; beyond, the first, middle and last.
const ALL_LABELS: usize = 24;
const LABEL_CHARS: usize = 12;

/// One value of a series and what it is called.
#[derive(Debug, Clone)]
pub struct Point {
    pub label: String,
    pub value: f64,
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One `<rect class="bar">` per point.
    Bars,
    /// A polyline with one `<circle class="point">` per point.
    Line,
}

/// An `<svg>` chart of `points`, titled `title` (for screen readers and tooltips); each bar or
/// point carries a `<title>` with its label and value.
pub fn chart(kind: Kind, title: &str, points: &[Point]) -> String {
    let mut svg = String::new();
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let max = points.iter().map(|p| p.value).fold(0.0, f64::max);
    let scale = if max > 0.0 { plot_h / max } else { 0.0 };
    let step = plot_w / points.len().max(1) as f64;
    let base = TOP + plot_h;
    // `write!` into a String cannot fail.
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img"><title>{}</title>"##,
        escape(title)
    );
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{base}" x2="{}" y2="{base}" stroke="#888" stroke-width="1"/><text x="{}" y="{}" text-anchor="end" font-size="11" fill="#666">{}</text><text x="{}" y="{base}" text-anchor="end" font-size="11" fill="#666">0</text>"##,
        WIDTH - RIGHT,
        LEFT - 6.0,
        TOP + 10.0,
        number(max),
        LEFT - 6.0,
    );
    let mut line = Vec::new();
    for (i, point) in points.iter().enumerate() {
        let x = LEFT + step * i as f64;
        let h = point.value * scale;
        let tip = format!("{}: {}", escape(&point.label), number(point.value));
        match kind {
            Kind::Bars => {
                let _ = write!(
                    svg,
                    r##"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#3b82f6"><title>{tip}</title></rect>"##,
                    x + step * 0.1,
                    base - h,
                    step * 0.8,
                );
            }
            Kind::Line => {
                let cx = x + step / 2.0;
                line.push(format!("{cx:.1},{:.1}", base - h));
                let _ = write!(
                    svg,
                    r##"<circle class="point" cx="{cx:.1}" cy="{:.1}" r="3" fill="#3b82f6"><title>{tip}</title></circle>"##,
                    base - h
                );
            }
        }
        if labelled(i, points.len()) {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{}" text-anchor="middle" font-size="10" fill="#666">{}</text>"##,
                x + step / 2.0,
                HEIGHT - 10.0,
                escape(&shortened(&point.label))
            );
        }
    }
    if kind == Kind::Line && !line.is_empty() {
        let _ = write!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="#3b82f6" stroke-width="2"/>"##,
            line.join(" ")
        );
    }
    svg.push_str("</svg>");
    svg
}

fn labelled(i: usize, n: usize) -> bool {
    n <= ALL_LABELS || i == 0 || i == n / 2 || i + 1 == n
}

fn shortened(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        return label.to_owned();
    }
    let mut short: String = label.chars().take(LABEL_CHARS - 1).collect();
    short.push('…');
    short
}

/// A value as people read it: whole numbers without decimals, others with two.
fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// Text safe inside XML elements and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_per_point_and_every_label_escaped() {
        let points = vec![
            Point {
                label: "<script>x</script>".into(),
                value: 2.0,
            },
            Point {
                label: "b&c".into(),
                value: 0.5,
            },
        ];
        let svg = chart(Kind::Bars, "t\"<", &points);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 2);
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
        assert!(svg.contains("b&amp;c: 0.50"), "{svg}");
        assert!(!svg.contains("style="), "{svg}");
        let line = chart(Kind::Line, "t", &points);
        assert_eq!(line.matches("<circle class=\"point\"").count(), 2);
    }
}
