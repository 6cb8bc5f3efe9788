//! Builds the HTML report from result records, and writes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use webq_reports::{grid_class, render_html, DetailRow, Grid, GridCell, GridRow, Report, StatusCount};

use crate::results::{CellRecord, Status};

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or(
        String::new(),
        |v| if v.abs() >= 1e-3 && v.abs() < 1e5 { format!("{v:.digits$}") } else { format!("{v:.2e}") },
    )
}

/// The report of one run's records.
pub fn build(records: &[CellRecord], info: Vec<(String, String)>, warnings: Vec<String>) -> Report {
    let totals = Status::ALL
        .iter()
        .map(|s| StatusCount { status: s.name().into(), count: records.iter().filter(|r| r.status == *s).count() })
        .filter(|c| c.count > 0)
        .collect();
    // Grid: rows backend (with its WebNN device) + precision, columns runtime + kernel + arith,
    // each in first-seen order.
    let column = |r: &CellRecord| match r.cell.model {
        Some(_) => format!("{} model", r.cell.runtime),
        None => format!("{} {} {}", r.cell.runtime, r.cell.kernel.name(), r.cell.arith.name()),
    };
    let row = |r: &CellRecord| match &r.cell.device {
        Some(d) => format!("{}@{d} {}", r.cell.backend, r.cell.precision),
        None => format!("{} {}", r.cell.backend, r.cell.precision),
    };
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<String> = Vec::new();
    let mut groups: BTreeMap<(usize, usize), Vec<&CellRecord>> = BTreeMap::new();
    for r in records {
        let c = column(r);
        let ci = columns.iter().position(|x| *x == c).unwrap_or_else(|| {
            columns.push(c);
            columns.len() - 1
        });
        let label = row(r);
        let ri = rows.iter().position(|x| *x == label).unwrap_or_else(|| {
            rows.push(label);
            rows.len() - 1
        });
        groups.entry((ri, ci)).or_default().push(r);
    }
    let grid_rows = rows
        .iter()
        .enumerate()
        .map(|(ri, label)| GridRow {
            label: label.clone(),
            cells: (0..columns.len())
                .map(|ci| {
                    let cell = groups.get(&(ri, ci)).map(Vec::as_slice).unwrap_or(&[]);
                    let count = |s: Status| cell.iter().filter(|r| r.status == s).count();
                    let (passes, total) = (count(Status::Pass), cell.len());
                    let title: Vec<String> = cell
                        .iter()
                        .filter(|r| r.status != Status::Pass)
                        .map(|r| format!("{} {}: {}", r.cell.shape, r.status.name(), r.reason.as_deref().unwrap_or("")))
                        .collect();
                    GridCell {
                        passes,
                        total,
                        class: grid_class(passes, count(Status::Fail), count(Status::Unsupported), total).into(),
                        title: title.join("\n"),
                    }
                })
                .collect(),
        })
        .collect();
    let cells = records
        .iter()
        .map(|r| DetailRow {
            id: r.id.clone(),
            status: r.status.name().into(),
            reason: r.reason.clone().unwrap_or_default(),
            workgroup: r.workgroup.clone().unwrap_or_default(),
            kernel_ratio: num(r.kernel.as_ref().map(|k| k.verdict.worst_ratio), 3),
            rel_l2: num(r.accuracy.as_ref().map(|a| a.metrics.rel_l2), 4),
            budget: num(r.accuracy.as_ref().map(|a| a.budget_rel_l2), 4),
            cosine: num(r.accuracy.as_ref().map(|a| a.metrics.cosine), 5),
            gpu_us: num(r.timings.as_ref().and_then(|t| t.gpu_us), 1),
            wall_us: num(r.timings.as_ref().map(|t| t.wall_us), 1),
            gbps: num(r.timings.as_ref().map(|t| t.weight_gbps), 2),
            compile_ms: num(r.timings.as_ref().and_then(|t| t.compile_ms), 1),
            ran: ran(r),
            notes: notes(r),
        })
        .collect();
    let title = match records.first() {
        Some(r) => format!("webq: matrix {}", r.matrix),
        None => "webq: no results".into(),
    };
    Report { title, info, totals, grid: Grid { columns, rows: grid_rows }, cells, warnings }
}

/// `backend precision` that ran, when it differs from the cell's own.
fn ran(r: &CellRecord) -> String {
    let Some(d) = &r.detail else { return String::new() };
    let backend = d.backend.clone().unwrap_or_else(|| r.cell.backend.to_string());
    let precision = d.precision.clone().unwrap_or_else(|| r.cell.precision.to_string());
    if backend == r.cell.backend.name() && precision == r.cell.precision.to_string() {
        String::new()
    } else {
        format!("{backend} {precision}")
    }
}

/// A model cell's measures against fp16 and what its weights cost, in words.
fn model_summary(r: &CellRecord) -> Option<String> {
    let m = r.model.as_ref()?;
    let x = &m.measures;
    let mut parts = Vec::new();
    if let (Some(min), Some(mean), Some(nn)) = (x.cosine_min, x.cosine_mean, x.neighbour_agreement) {
        parts.push(format!("cosine to fp16 min {min:.5} mean {mean:.5}, neighbours {nn:.3}"));
    }
    if let (Some(t), Some(p), Some(f)) = (x.top1_agreement, x.perplexity, x.fp16_perplexity) {
        parts.push(format!("top-1 agreement {t:.3}, perplexity {} (fp16 {})", num(Some(p), 3), num(Some(f), 3)));
    }
    let s = &m.storage;
    parts.push(format!(
        "{:.2} bits/weight, {:.2}x fp16's bytes",
        s.bits_per_weight,
        s.bytes as f64 / s.fp16_bytes.max(1) as f64
    ));
    parts.push(match (m.budget, m.budget_pass) {
        (Some(b), Some(ok)) => format!("budget ({}, {}) {}", b.0, b.1, if ok { "met" } else { "NOT met" }),
        _ if !m.full_depth => "cut model: no budget".into(),
        _ => "no budget".into(),
    });
    Some(parts.join("; "))
}

fn notes(r: &CellRecord) -> String {
    let mut parts: Vec<String> = model_summary(r).into_iter().collect();
    let Some(d) = &r.detail else { return parts.join("; ") };
    parts.extend(d.notes.clone());
    if let Some(c) = d.choice.as_ref().and_then(|c| c["reasons"].as_array()) {
        parts.extend(c.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    if let (Some(k), Some(rec)) = (&d.error_kind, &d.recommendation) {
        parts.push(format!("{k}: {rec}"));
    }
    parts.join("; ")
}

/// Writes `DIR/index.html` and returns its path.
pub fn write(dir: &Path, report: &Report) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let html = render_html(report)?;
    let path = dir.join("index.html");
    let tmp = dir.join(".index.html.tmp");
    std::fs::write(&tmp, html)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}
