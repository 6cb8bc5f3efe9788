//! webq-reports: the pages and files a run leaves for people and dashboards.
//!
//! The harness turns its records into the page structures here (what to show); this crate only
//! lays them out, so every page can be rendered again from stored results at any time. Pages are
//! static and self-contained (inline style, inline SVG, a few lines of inline script for the
//! filters, no CDN): they work from `file://` and from any static host. Every value is escaped by
//! tera's autoescape or by [`svg::escape`]; only SVG built by [`svg`] is inserted raw.

pub mod machine;
pub mod svg;

use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("report template {template}: {why}")]
    Template { template: &'static str, why: String },
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StatusCount {
    pub status: String,
    pub count: usize,
}

/// One status as the pages show it: its class (colour), its words, what it means.
#[derive(Clone, Debug, Serialize)]
pub struct Legend {
    pub class: &'static str,
    pub words: &'static str,
    pub meaning: &'static str,
}

/// The statuses a cell can show, in the legend's order.
pub const LEGEND: &[Legend] = &[
    Legend {
        class: "pass",
        words: "pass",
        meaning: "both verdicts held: kernel conformance and accuracy against fp16",
    },
    Legend { class: "fail", words: "fail", meaning: "a verdict failed: the reason says which and by how much" },
    Legend {
        class: "expected-fail",
        words: "expected failure",
        meaning: "failed for the reason the matrix pins (a known shortfall, documented)",
    },
    Legend {
        class: "unexpected-pass",
        words: "unexpected pass",
        meaning: "passed where the matrix pins a failure or no support: the matrix is out of date",
    },
    Legend {
        class: "unsupported",
        words: "unsupported",
        meaning: "the browser or backend does not offer this (an answer, not a failure)",
    },
    Legend { class: "error", words: "error", meaning: "the cell could not run to a verdict" },
    Legend { class: "timeout", words: "timeout", meaning: "no answer within the cell's time" },
    Legend { class: "crash", words: "crash", meaning: "the browser or its driver went away" },
];

/// A column of the matrix: one runtime and backend, with the browser and adapter it ran on.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Column {
    pub runtime: String,
    pub backend: String,
    pub browser: String,
    pub adapter: String,
    pub passes: usize,
    pub total: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct MatrixRow {
    /// `text`, `llm`, ... for model rows; `kernel` for the kernel-level cases.
    pub family: String,
    /// What the row runs: a model and its depth, or a kernel shape.
    pub what: String,
    pub precision: String,
    pub cells: Vec<MatrixCell>,
    /// The status classes present in the row, space-separated (the status filter reads them).
    pub statuses: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct MatrixCell {
    /// A [`LEGEND`] class, or `empty`.
    pub class: String,
    /// The status in words, with counts where the cell holds several variants ("5 pass, 1 fail").
    pub words: String,
    /// Key numbers and reasons (shown on hover).
    pub summary: String,
    /// `cells.html#...` for a cell that holds anything but passes.
    pub link: String,
}

/// A run against a baseline run: what got worse and what got better.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Changes {
    pub baseline: String,
    pub regressions: Vec<Change>,
    pub fixes: Vec<Change>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Change {
    pub id: String,
    pub before: String,
    pub after: String,
    pub why: String,
}

/// `index.html`: the compatibility matrix.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MatrixPage {
    pub title: String,
    pub info: Vec<(String, String)>,
    pub totals: Vec<StatusCount>,
    pub warnings: Vec<String>,
    pub columns: Vec<Column>,
    pub rows: Vec<MatrixRow>,
    pub runtimes: Vec<String>,
    pub backends: Vec<String>,
    pub families: Vec<String>,
    pub changes: Option<Changes>,
}

/// One cell that is not a pass (or was traced), in full (`cells.html`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CellDetail {
    pub anchor: String,
    pub id: String,
    pub status: String,
    pub class: String,
    pub reason: String,
    pub error_kind: String,
    pub recommendation: String,
    /// The worst output: index, expected, got, allowed; and the tolerance in words.
    pub worst: Vec<(String, String)>,
    pub tolerance: String,
    pub ran: String,
    pub notes: Vec<String>,
    /// A traced cell's logs: (title, lines) each (ops, errors, memory).
    pub trace: Vec<(String, Vec<String>)>,
    /// A traced cell's shader log: (what was compiled, its WGSL).
    pub shaders: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DetailPage {
    pub title: String,
    pub cells: Vec<CellDetail>,
}

/// A chart drawn by [`svg`], inserted raw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Chart {
    pub title: String,
    pub caption: String,
    pub svg: String,
}

/// A table of numbers with its header (the perf page has several).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Table {
    pub title: String,
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// `perf.html`: the measured numbers, and charts of them; `peer.html` has the same layout.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PerfPage {
    pub title: String,
    pub info: Vec<(String, String)>,
    pub notes: Vec<String>,
    pub charts: Vec<Chart>,
    pub tables: Vec<Table>,
}

/// One browser (or the native runtime) as the run found it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Census {
    pub runtime: String,
    pub browser: String,
    pub facts: Vec<(String, String)>,
}

/// `browsers.html`: what each runtime offered in this run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BrowsersPage {
    pub title: String,
    pub browsers: Vec<Census>,
}

/// A published site's front page: every night's summary and the trends across them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SitePage {
    pub title: String,
    pub runs: Vec<SiteRun>,
    pub charts: Vec<Chart>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SiteRun {
    pub run_id: String,
    /// Relative link to the run's own pages.
    pub href: String,
    pub finished: String,
    pub counts: Vec<StatusCount>,
    pub key: Vec<(String, String)>,
}

const STYLE: &str = include_str!("../templates/style.html.tera");
const NAV: &str = include_str!("../templates/nav.html.tera");
const INDEX: &str = include_str!("../templates/index.html.tera");
const CELLS: &str = include_str!("../templates/cells.html.tera");
const FIGURES: &str = include_str!("../templates/figures.html.tera");
const PERF: &str = include_str!("../templates/perf.html.tera");
const PEER: &str = include_str!("../templates/peer.html.tera");
const BROWSERS: &str = include_str!("../templates/browsers.html.tera");
const SITE: &str = include_str!("../templates/site.html.tera");

fn render<T: Serialize>(template: &'static str, page: &T, legend: bool) -> Result<String, ReportError> {
    let err = |e: tera::Error| {
        use std::error::Error as _;
        let mut why = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            why.push_str(&format!(": {s}"));
            src = s.source();
        }
        ReportError::Template { template, why }
    };
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![".html"]);
    tera.add_raw_templates([
        ("style.html", STYLE),
        ("nav.html", NAV),
        ("index.html", INDEX),
        ("cells.html", CELLS),
        ("figures.html", FIGURES),
        ("perf.html", PERF),
        ("peer.html", PEER),
        ("browsers.html", BROWSERS),
        ("site.html", SITE),
    ])
    .map_err(err)?;
    let mut ctx = tera::Context::from_serialize(page).map_err(err)?;
    if legend {
        ctx.insert("legend", LEGEND);
    }
    tera.render(template, &ctx).map_err(err)
}

pub fn render_matrix(page: &MatrixPage) -> Result<String, ReportError> {
    render("index.html", page, true)
}

pub fn render_cells(page: &DetailPage) -> Result<String, ReportError> {
    render("cells.html", page, true)
}

pub fn render_perf(page: &PerfPage) -> Result<String, ReportError> {
    render("perf.html", page, false)
}

/// `peer.html` (`webq peer`): the perf page's layout, without a run's navigation.
pub fn render_peer(page: &PerfPage) -> Result<String, ReportError> {
    render("peer.html", page, false)
}

pub fn render_browsers(page: &BrowsersPage) -> Result<String, ReportError> {
    render("browsers.html", page, false)
}

pub fn render_site(page: &SitePage) -> Result<String, ReportError> {
    render("site.html", page, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANTED: &str = "<script>window.__planted = 1</script><img src=x onerror=\"window.__planted = 2\">";

    #[test]
    fn every_page_renders_and_escapes_what_browsers_say() {
        let page = MatrixPage {
            title: "t <script>".into(),
            columns: vec![Column { runtime: "firefox".into(), backend: "webgpu".into(), ..Default::default() }],
            rows: vec![MatrixRow {
                family: "kernel".into(),
                what: "decode".into(),
                precision: "int4-g128-sym".into(),
                cells: vec![MatrixCell {
                    class: "fail".into(),
                    words: "1 fail".into(),
                    summary: PLANTED.into(),
                    link: "cells.html#c1".into(),
                }],
                statuses: "fail".into(),
            }],
            ..Default::default()
        };
        let html = render_matrix(&page).unwrap();
        assert!(html.contains("t &lt;script&gt;") && html.contains("1 fail"));
        assert!(!html.contains("<img src=x") && !html.contains("<script>window.__planted"), "escaped");
        assert!(html.contains("expected failure"), "the legend is on the page");
        let detail = DetailPage {
            title: "d".into(),
            cells: vec![CellDetail { id: "x".into(), reason: PLANTED.into(), ..Default::default() }],
        };
        assert!(!render_cells(&detail).unwrap().contains("<img src=x"));
        let census = BrowsersPage {
            title: "b".into(),
            browsers: vec![Census { facts: vec![("user agent".into(), PLANTED.into())], ..Default::default() }],
        };
        assert!(!render_browsers(&census).unwrap().contains("<img src=x"));
        assert!(render_perf(&PerfPage::default()).is_ok() && render_site(&SitePage::default()).is_ok());
        let figures = PerfPage {
            title: "p".into(),
            notes: vec![PLANTED.into()],
            tables: vec![Table { rows: vec![vec![PLANTED.into()]], ..Default::default() }],
            ..Default::default()
        };
        for html in [render_perf(&figures).unwrap(), render_peer(&figures).unwrap()] {
            assert!(html.contains("&lt;script&gt;") && !html.contains("<img src=x"), "escaped");
        }
    }
}
