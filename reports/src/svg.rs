//! Charts as inline SVG, drawn here so the pages need no script and no CDN to show them. Every
//! label passes through [`escape`]: names come from browsers and matrices.

use std::fmt::Write;

/// Text for HTML and SVG: `& < > " '` as entities.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Series colours, distinguishable in print and for the common colour-vision deficiencies
/// (Okabe and Ito's palette).
/// After eight, greys and browns that stay apart from them.
const COLOURS: [&str; 12] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000", "#999999", "#8B4513",
    "#6A5ACD", "#2F4F4F",
];

fn colour(i: usize) -> &'static str {
    COLOURS[i % COLOURS.len()]
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1e-3 {
        format!("{v:.3}")
    } else {
        format!("{v:.0e}")
    }
}

fn legend(svg: &mut String, series: &[String], x: f64, y: f64) {
    for (i, s) in series.iter().enumerate() {
        let yy = y + i as f64 * 16.0;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}" class="legend">{}</text>"#,
            yy - 9.0,
            colour(i),
            x + 14.0,
            yy,
            escape(s)
        );
    }
}

/// The SVG element with its accessible title, and the title drawn at the top left.
fn open(title: &str, width: f64, height: f64, left: f64) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}"><title>{}</title>"#,
        escape(title)
    );
    let _ = write!(svg, r#"<text x="{left}" y="16" class="title">{}</text>"#, escape(title));
    svg
}

/// The largest finite value with a tenth of headroom (1 when there is none).
fn scale_max(values: &[Vec<Option<f64>>]) -> f64 {
    let max = values.iter().flatten().flatten().copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
    if max > 0.0 {
        max * 1.1
    } else {
        1.0
    }
}

/// A linear y axis from zero to `max`: five grid lines with their values, and the unit.
fn linear_axis(svg: &mut String, (left, top, plot_w, plot_h): (f64, f64, f64, f64), max: f64, unit: &str) {
    for t in 0..=4 {
        let v = max * t as f64 / 4.0;
        let y = top + plot_h - plot_h * t as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" class="tick" text-anchor="end">{}</text>"##,
            left + plot_w,
            left - 4.0,
            y + 4.0,
            fmt_num(v)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="14" y="{}" class="axis" transform="rotate(-90 14 {})">{}</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        escape(unit)
    );
}

/// Grouped bars: one group per `groups` entry, one bar per series, `values[series][group]`
/// (`None`: not measured, no bar). Values are drawn from zero.
pub fn bar_chart(title: &str, unit: &str, groups: &[String], series: &[String], values: &[Vec<Option<f64>>]) -> String {
    // Group names are written at -35 degrees under their bars: room to the left for the first one
    // and below for the longest (about 6 px a character).
    let label_w = |g: &String| g.chars().count() as f64 * 6.0;
    let longest = groups.iter().map(label_w).fold(0.0, f64::max);
    let (top, plot_h, bar_w): (f64, f64, f64) = (30.0, 200.0, 12.0);
    let left = groups.first().map_or(0.0, |g| label_w(g) * 0.82 - 7.0).max(60.0);
    let group_w = (series.len().max(1) as f64) * bar_w + 14.0;
    let plot_w = group_w * groups.len().max(1) as f64;
    let width = left + plot_w + 300.0;
    let height =
        (top + plot_h + 30.0 + longest * 0.58).max(top + plot_h + 90.0).max(top + 16.0 * series.len() as f64 + 20.0);
    let max = scale_max(values);
    let mut svg = open(title, width, height, left);
    linear_axis(&mut svg, (left, top, plot_w, plot_h), max, unit);
    for (g, name) in groups.iter().enumerate() {
        let gx = left + g as f64 * group_w + 7.0;
        for (s, row) in values.iter().enumerate() {
            let Some(v) = row.get(g).copied().flatten().filter(|v| v.is_finite()) else { continue };
            let h = plot_h * v / max;
            let _ = write!(
                svg,
                r#"<rect x="{}" y="{}" width="{}" height="{h}" fill="{}"><title>{}: {} {}</title></rect>"#,
                gx + s as f64 * bar_w,
                top + plot_h - h,
                bar_w - 1.0,
                colour(s),
                escape(&format!("{} {}", series[s], name)),
                fmt_num(v),
                escape(unit)
            );
        }
        let cx = gx + series.len() as f64 * bar_w / 2.0;
        let cy = top + plot_h + 12.0;
        let _ = write!(
            svg,
            r#"<text x="{cx}" y="{cy}" class="tick" text-anchor="end" transform="rotate(-35 {cx} {cy})">{}</text>"#,
            escape(name)
        );
    }
    legend(&mut svg, series, left + plot_w + 16.0, top + 10.0);
    svg.push_str("</svg>");
    svg
}

/// One point of a scatter chart.
#[derive(Clone, Debug)]
pub struct Point {
    pub label: String,
    pub series: usize,
    pub x: f64,
    pub y: f64,
}

/// Whether `p` is on the front of its series: no other point has fewer bits (x) and less error
/// (y) with at least one strictly so.
fn on_front(p: &Point, all: &[Point]) -> bool {
    !all.iter().any(|q| q.series == p.series && q.x <= p.x && q.y <= p.y && (q.x < p.x || q.y < p.y))
}

/// Error against bits: `y` on a log scale (errors span decades), the Pareto front of each series
/// (the points nothing beats on both) joined by a line.
pub fn pareto_chart(title: &str, x_label: &str, y_label: &str, series: &[String], points: &[Point]) -> String {
    let (left, top, plot_w, plot_h) = (70.0, 30.0, 420.0, 240.0);
    let width = left + plot_w + 300.0;
    let height = top + plot_h + 50.0;
    let finite: Vec<&Point> = points.iter().filter(|p| p.x.is_finite() && p.y.is_finite() && p.y > 0.0).collect();
    let xmax = finite.iter().map(|p| p.x).fold(1.0, f64::max) * 1.05;
    let (ylo, yhi) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.y.log10().floor()), hi.max(p.y.log10().ceil()))
    });
    let (ylo, yhi) = if ylo.is_finite() { (ylo, yhi.max(ylo + 1.0)) } else { (-3.0, 0.0) };
    let px = |x: f64| left + plot_w * x / xmax;
    let py = |y: f64| top + plot_h - plot_h * (y.log10() - ylo) / (yhi - ylo);
    let mut svg = open(title, width, height, left);
    for d in (ylo as i32)..=(yhi as i32) {
        let y = py(10f64.powi(d));
        let _ = write!(
            svg,
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" class="tick" text-anchor="end">1e{d}</text>"##,
            left + plot_w,
            left - 4.0,
            y + 4.0
        );
    }
    let mut bits = 0.0;
    while bits <= xmax {
        let x = px(bits);
        let _ = write!(
            svg,
            r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{}" stroke="#eee"/><text x="{x}" y="{}" class="tick" text-anchor="middle">{bits}</text>"##,
            top + plot_h,
            top + plot_h + 14.0
        );
        bits += 2.0;
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" class="axis" text-anchor="middle">{}</text><text x="14" y="{}" class="axis" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        top + plot_h + 34.0,
        escape(x_label),
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        escape(y_label)
    );
    for s in 0..series.len() {
        let mut front: Vec<&Point> = finite.iter().copied().filter(|p| p.series == s && on_front(p, points)).collect();
        front.sort_by(|a, b| a.x.total_cmp(&b.x));
        if front.len() > 1 {
            let path: Vec<String> = front.iter().map(|p| format!("{:.1},{:.1}", px(p.x), py(p.y))).collect();
            let _ = write!(
                svg,
                r#"<polyline class="front" points="{}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
                path.join(" "),
                colour(s)
            );
        }
    }
    for p in &finite {
        let front = on_front(p, points);
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="{}" fill="{}" class="{}"><title>{}: {:.2} bits, {}</title></circle>"#,
            px(p.x),
            py(p.y),
            if front { 5.0 } else { 3.5 },
            colour(p.series),
            if front { "point on-front" } else { "point" },
            escape(&p.label),
            p.x,
            fmt_num(p.y)
        );
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" class="tick">{}</text>"#,
            px(p.x) + 6.0,
            py(p.y) - 4.0,
            escape(&p.label)
        );
    }
    legend(&mut svg, series, left + plot_w + 16.0, top + 10.0);
    svg.push_str("</svg>");
    svg
}

/// Lines across runs: `values[series][run]`, runs labelled along x, drawn from zero.
pub fn line_chart(title: &str, unit: &str, runs: &[String], series: &[String], values: &[Vec<Option<f64>>]) -> String {
    let (left, top, plot_h) = (60.0, 30.0, 180.0);
    let step = 60.0;
    let plot_w = step * (runs.len().max(2) - 1) as f64;
    let width = left + plot_w + 260.0;
    let height = top + plot_h + 80.0;
    let max = scale_max(values);
    let px = |i: usize| left + step * i as f64;
    let py = |v: f64| top + plot_h - plot_h * v / max;
    let mut svg = open(title, width, height, left);
    linear_axis(&mut svg, (left, top, plot_w, plot_h), max, unit);
    for (i, r) in runs.iter().enumerate() {
        let (x, y) = (px(i), top + plot_h + 12.0);
        let _ = write!(
            svg,
            r#"<text x="{x}" y="{y}" class="tick" text-anchor="end" transform="rotate(-35 {x} {y})">{}</text>"#,
            escape(r)
        );
    }
    for (s, row) in values.iter().enumerate() {
        let pts: Vec<(usize, f64)> =
            row.iter().enumerate().filter_map(|(i, v)| v.filter(|v| v.is_finite()).map(|v| (i, v))).collect();
        if pts.len() > 1 {
            let path: Vec<String> = pts.iter().map(|&(i, v)| format!("{:.1},{:.1}", px(i), py(v))).collect();
            let _ = write!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
                path.join(" "),
                colour(s)
            );
        }
        for (i, v) in pts {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>{} {}: {}</title></circle>"#,
                px(i),
                py(v),
                colour(s),
                escape(&series[s]),
                escape(&runs[i]),
                fmt_num(v)
            );
        }
    }
    legend(&mut svg, series, left + plot_w + 16.0, top + 10.0);
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_the_front_is_the_undominated_points() {
        let svg = bar_chart("t", "GB/s", &["<b>".into()], &["a\"b".into()], &[vec![Some(2.0)]]);
        assert!(svg.contains("&lt;b&gt;") && svg.contains("a&quot;b") && !svg.contains("<b>"));
        let p = |x, y| Point { label: String::new(), series: 0, x, y };
        let all = [p(4.0, 0.1), p(8.0, 0.01), p(8.0, 0.2), p(16.0, 0.001)];
        let front: Vec<bool> = all.iter().map(|q| on_front(q, &all)).collect();
        assert_eq!(front, [true, true, false, true]);
        let chart = pareto_chart("e", "bits", "err", &["s".into()], &all);
        assert_eq!(chart.matches("on-front").count(), 3);
        assert!(line_chart("t", "n", &["r1".into(), "r2".into()], &["x".into()], &[vec![Some(1.0), None]])
            .contains("</svg>"));
    }
}
