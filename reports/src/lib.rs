//! webq-reports: HTML reports of webq results, rendered with tera.
//!
//! The harness turns its records into a [`Report`] (what to show); this crate only lays it out,
//! so a report can be rendered again from stored results at any time.

use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("report template: {0}")]
    Template(String),
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub title: String,
    /// Key facts of the run: matrix, run id, adapter, versions.
    pub info: Vec<(String, String)>,
    pub totals: Vec<StatusCount>,
    pub grid: Grid,
    pub cells: Vec<DetailRow>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StatusCount {
    pub status: String,
    pub count: usize,
}

/// The compatibility matrix: one row per precision, one column per runtime/kernel variant.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Grid {
    pub columns: Vec<String>,
    pub rows: Vec<GridRow>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct GridRow {
    pub label: String,
    pub cells: Vec<GridCell>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct GridCell {
    pub passes: usize,
    pub total: usize,
    /// `pass`, `fail`, `partial`, `unsupported`, `error`, `empty`: the colour.
    pub class: String,
    /// Hover text: the reasons of the cells that did not pass.
    pub title: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DetailRow {
    pub id: String,
    pub status: String,
    pub reason: String,
    pub workgroup: String,
    pub kernel_ratio: String,
    pub rel_l2: String,
    pub budget: String,
    pub cosine: String,
    pub gpu_us: String,
    pub wall_us: String,
    pub gbps: String,
    pub compile_ms: String,
    /// The backend and precision that ran, when not what the cell asked for.
    pub ran: String,
    /// Notes, the error's kind and its recommendation.
    pub notes: String,
}

const INDEX: &str = include_str!("../templates/index.html.tera");

/// Renders the compatibility and performance page.
pub fn render_html(report: &Report) -> Result<String, ReportError> {
    let mut tera = tera::Tera::default();
    tera.add_raw_template("index.html", INDEX).map_err(|e| ReportError::Template(format!("{e:?}")))?;
    let ctx = tera::Context::from_serialize(report).map_err(|e| ReportError::Template(e.to_string()))?;
    tera.render("index.html", &ctx).map_err(|e| ReportError::Template(format!("{e:?}")))
}

/// The colour class of a grid cell from its counts.
pub fn grid_class(passes: usize, failures: usize, unsupported: usize, total: usize) -> &'static str {
    match () {
        _ if total == 0 => "empty",
        _ if passes == total => "pass",
        _ if unsupported == total => "unsupported",
        _ if passes == 0 && failures > 0 => "fail",
        _ if passes == 0 => "error",
        _ => "partial",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_escapes() {
        let report = Report {
            title: "t <script>".into(),
            totals: vec![StatusCount { status: "pass".into(), count: 3 }],
            grid: Grid {
                columns: vec!["native gemv f32".into()],
                rows: vec![GridRow {
                    label: "int4-g128-sym".into(),
                    cells: vec![GridCell { passes: 3, total: 3, class: "pass".into(), title: String::new() }],
                }],
            },
            ..Default::default()
        };
        let html = render_html(&report).unwrap();
        assert!(html.contains("int4-g128-sym") && html.contains("3/3"));
        assert!(html.contains("t &lt;script&gt;"), "titles are escaped");
        assert_eq!(grid_class(1, 1, 0, 2), "partial");
        assert_eq!(grid_class(0, 0, 2, 2), "unsupported");
    }
}
