//! `webq publish`: adds a run to a static site that keeps every run's pages under
//! `runs/<run id>/`, one summary line per run in `history.jsonl` (schema-versioned, appended), and
//! a front page with the runs newest first and trends across them.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};
use webq_reports::svg::line_chart;
use webq_reports::{Chart, SitePage, SiteRun, StatusCount};

use crate::results::{self, latest_run, CellRecord, Status};

#[derive(Args)]
pub struct PublishArgs {
    /// A directory a run wrote (with results.jsonl).
    #[arg(long)]
    results: PathBuf,
    /// The site's directory (created if missing).
    #[arg(long)]
    site: PathBuf,
}

pub const HISTORY_SCHEMA: u32 = 1;

/// One run's summary on the site.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    pub schema: u32,
    pub run_id: String,
    pub matrix: String,
    pub finished_at: u64,
    pub counts: Vec<(String, usize)>,
    /// Key figures by name: medians over cells of a kind, so a trend is one line.
    pub key: Vec<(String, f64)>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

/// The run's summary: statuses, and the key figures tracked across runs.
pub fn summarize(records: &[CellRecord]) -> RunSummary {
    let first = records.first();
    let counts =
        Status::ALL.iter().map(|s| (s.name().to_string(), records.iter().filter(|r| r.status == *s).count())).collect();
    let mut key = Vec::new();
    let kernel_us: Vec<f64> = records
        .iter()
        .filter(|r| r.status == Status::Pass && r.cell.model.is_none() && r.cell.shape == "decode")
        .filter_map(|r| r.timings.as_ref().map(|t| t.wall_us))
        .collect();
    if let Some(m) = median(kernel_us) {
        key.push(("decode GEMV wall us (median of cells)".to_string(), m));
    }
    let cos: Vec<f64> = records.iter().filter_map(|r| r.model.as_ref()?.measures.cosine_min).collect();
    if let Some(m) = median(cos) {
        key.push(("text cosine min (median of cells)".into(), m));
    }
    let top1: Vec<f64> = records.iter().filter_map(|r| r.model.as_ref()?.measures.top1_agreement).collect();
    if let Some(m) = median(top1) {
        key.push(("llm top-1 agreement (median of cells)".into(), m));
    }
    RunSummary {
        schema: HISTORY_SCHEMA,
        run_id: first.map_or(String::new(), |r| r.run_id.clone()),
        matrix: first.map_or(String::new(), |r| r.matrix.clone()),
        finished_at: records.iter().map(|r| r.finished_at).max().unwrap_or(0),
        counts,
        key,
    }
}

fn read_history(path: &Path) -> Result<Vec<RunSummary>, String> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(vec![]) };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let s: RunSummary = serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        if s.schema > HISTORY_SCHEMA {
            return Err(format!(
                "{}:{}: schema {} (this webq reads 1..={HISTORY_SCHEMA})",
                path.display(),
                i + 1,
                s.schema
            ));
        }
        out.push(s);
    }
    Ok(out)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() && !e.file_name().to_string_lossy().starts_with('.') {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

fn iso_day(secs: u64) -> String {
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let days = (secs / 86400) as i64;
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let rem = secs % 86400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// The site's front page from its history.
pub fn site_page(history: &[RunSummary]) -> SitePage {
    let runs: Vec<String> = history.iter().map(|h| h.run_id.clone()).collect();
    let mut charts = Vec::new();
    let statuses = ["pass", "fail", "unsupported", "error", "timeout", "crash"];
    let values: Vec<Vec<Option<f64>>> = statuses
        .iter()
        .map(|s| history.iter().map(|h| h.counts.iter().find(|(n, _)| n == s).map(|(_, c)| *c as f64)).collect())
        .collect();
    let names: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
    charts.push(Chart {
        title: "cells per status".into(),
        caption: "every run on this site, oldest to newest".into(),
        svg: line_chart("cells per status", "cells", &runs, &names, &values),
    });
    let mut keys: Vec<String> = Vec::new();
    for (k, _) in history.iter().flat_map(|h| &h.key) {
        super::index_of(&mut keys, k);
    }
    for k in keys {
        let v = vec![history.iter().map(|h| h.key.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)).collect()];
        charts.push(Chart {
            title: k.clone(),
            caption: "median over the run's cells of that kind".into(),
            svg: line_chart(&k, "", &runs, std::slice::from_ref(&k), &v),
        });
    }
    let rows = history
        .iter()
        .rev()
        .map(|h| SiteRun {
            run_id: h.run_id.clone(),
            href: format!("runs/{}/index.html", h.run_id),
            finished: iso_day(h.finished_at),
            counts: h
                .counts
                .iter()
                .filter(|(_, c)| *c > 0)
                .map(|(s, c)| StatusCount { status: s.clone(), count: *c })
                .collect(),
            key: h.key.iter().map(|(k, v)| (k.clone(), super::num(Some(*v), 4))).collect(),
        })
        .collect();
    SitePage { title: "webq: every published run".into(), runs: rows, charts }
}

pub fn run(args: &PublishArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (all, unreadable) = results::load(&args.results)?;
    for u in &unreadable {
        eprintln!("webq: {u}: skipped");
    }
    let latest = latest_run(all);
    if latest.is_empty() {
        return Err(format!("{}: no results to publish", args.results.display()).into());
    }
    let summary = summarize(&latest);
    let history_path = args.site.join("history.jsonl");
    let mut history = read_history(&history_path)?;
    let dest = args.site.join("runs").join(&summary.run_id);
    copy_dir(&args.results, &dest)?;
    if history.iter().any(|h| h.run_id == summary.run_id) {
        eprintln!("webq: {} is already on the site: its pages were refreshed, its history kept", summary.run_id);
    } else {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&history_path)?;
        f.write_all(format!("{}\n", serde_json::to_string(&summary)?).as_bytes())?;
        f.sync_data()?;
        history.push(summary);
    }
    let html = webq_reports::render_site(&site_page(&history))?;
    let index = args.site.join("index.html");
    super::write_atomic(&index, &html)?;
    eprintln!("webq: site {} ({} runs)", index.display(), history.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::iso_day;

    #[test]
    fn dates() {
        assert_eq!(iso_day(0), "1970-01-01 00:00 UTC");
        assert_eq!(iso_day(1_796_165_145), "2026-12-01 22:45 UTC");
    }
}
