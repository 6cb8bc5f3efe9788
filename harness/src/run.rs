//! `webq run` and `webq report`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use crate::browser_run::{run_browser, RunContext};
use crate::browsers::BrowserKind;
use crate::cell::{expand, Cell};
use crate::matrix::Matrix;
use crate::native::NativeRunner;
use crate::report;
use crate::results::{self, latest_run, unix_now, ResultsStore, Status};
use crate::server::PageServer;

#[derive(Args)]
pub struct RunArgs {
    /// The matrix file (TOML).
    #[arg(long)]
    matrix: PathBuf,
    /// Directory for results.jsonl, run.json and index.html.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Continue the latest run in --out, skipping the cells it already recorded.
    #[arg(long)]
    resume: bool,
    /// Print one line per cell.
    #[arg(long, short)]
    verbose: bool,
    /// Exit non-zero when any cell failed, errored, crashed or timed out (`unsupported` is an answer).
    #[arg(long)]
    check: bool,
    /// The page bundle browsers load (scripts/build-page makes it).
    #[arg(long, default_value = "target/webq-page")]
    page: PathBuf,
}

#[derive(Args)]
pub struct ReportArgs {
    /// A directory a run wrote (with results.jsonl).
    #[arg(long)]
    results: PathBuf,
}

pub fn run(args: &RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let matrix = Matrix::load(&args.matrix)?;
    let (cells, ruled_out) = expand(&matrix);
    let started = Instant::now();
    let (run_id, done) = if args.resume {
        resume_point(&args.out)?
    } else {
        (format!("{}-{}", matrix.name, unix_now()), HashSet::new())
    };
    eprintln!(
        "webq: matrix {} ({}): {} cells{}, run {run_id}",
        matrix.name,
        args.matrix.display(),
        cells.len(),
        if ruled_out.is_empty() {
            String::new()
        } else {
            format!(", {} combinations ruled out by shape", ruled_out.len())
        }
    );
    let mut store = ResultsStore::open(&args.out)?;
    let verbose = args.verbose;
    let mut progress = |r: &crate::results::CellRecord| {
        if verbose || r.status != Status::Pass {
            let reason = r.reason.as_deref().map_or(String::new(), |s| format!(": {s}"));
            eprintln!("  {:<11} {}{reason}", r.status.name(), r.id);
        }
    };
    let (native, browser): (Vec<_>, Vec<_>) = cells.iter().cloned().partition(|c| c.runtime == "native");
    let mut runner = None;
    if !native.is_empty() {
        let r = NativeRunner::new(matrix.reps);
        if let Some(a) = r.environment().adapter {
            eprintln!("webq: native adapter: {a}");
        }
        runner.insert(r).run(&native, &done, &run_id, &matrix.name, &mut store, &mut progress)?;
    }
    if !browser.is_empty() {
        let server = PageServer::start(&args.page)?;
        let url = server.url();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        for kind in BrowserKind::ALL {
            let mine: Vec<&Cell> =
                browser.iter().filter(|c| c.runtime == kind.name() && !done.contains(&c.id())).collect();
            if mine.is_empty() {
                continue;
            }
            eprintln!("webq: {} cells in {}", mine.len(), kind.name());
            let ctx = RunContext { page_url: &url, run_id: &run_id, matrix: &matrix.name, reps: matrix.reps };
            let work = run_browser(kind, &mine, &ctx, &mut store, &mut progress);
            let interrupted = rt.block_on(async {
                tokio::select! {
                    r = work => r.map(|_| false),
                    _ = tokio::signal::ctrl_c() => Ok(true),
                }
            })?;
            if interrupted {
                return Err(
                    "interrupted: every browser and driver webq started has been stopped; --resume continues".into()
                );
            }
        }
    }
    let run_info = serde_json::json!({
        "schema": results::RESULTS_SCHEMA,
        "run_id": run_id,
        "matrix": matrix.name,
        "matrix_file": args.matrix.display().to_string(),
        "cells": cells.len(),
        "ruled_out": ruled_out,
        "wall_s": started.elapsed().as_secs_f64(),
        "finished_at": unix_now(),
        "webq_version": env!("CARGO_PKG_VERSION"),
        "native_adapter": runner.as_ref().map(|r| r.adapter_json()),
    });
    write_atomic(&args.out.join("run.json"), &serde_json::to_string_pretty(&run_info)?)?;
    let (all, warnings) = results::load(&args.out)?;
    let latest = latest_run(all);
    let index = report::write(&args.out, &report::build(&latest, info(&run_info), warnings))?;
    let count = |s: Status| latest.iter().filter(|r| r.status == s).count();
    eprintln!(
        "webq: {} cells in {:.1} s: {}",
        latest.len(),
        started.elapsed().as_secs_f64(),
        Status::ALL.iter().map(|s| format!("{} {}", count(*s), s.name())).collect::<Vec<_>>().join(", ")
    );
    eprintln!("webq: results {}, report {}", store.path().display(), index.display());
    let bad = count(Status::Fail) + count(Status::Error) + count(Status::Crash) + count(Status::Timeout);
    let unmet = crate::expect::violations(&matrix.expect, &latest);
    for v in &unmet {
        eprintln!("webq: {v}");
    }
    if args.check && (bad > 0 || !unmet.is_empty()) {
        return Err(format!(
            "--check: {bad} cells failed, errored, crashed or timed out; {} expectations unmet",
            unmet.len()
        )
        .into());
    }
    Ok(())
}

/// The latest run id in a results directory and the cells it already finished.
fn resume_point(dir: &Path) -> Result<(String, HashSet<String>), Box<dyn std::error::Error>> {
    let (records, _) = results::load(dir)?;
    let latest = latest_run(records);
    let id = latest.first().map(|r| r.run_id.clone()).ok_or("nothing to resume: no results in --out")?;
    Ok((id, latest.into_iter().map(|r| r.id).collect()))
}

fn info(run: &serde_json::Value) -> Vec<(String, String)> {
    let s = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let mut out = vec![
        ("matrix".to_string(), format!("{} ({})", s(&run["matrix"]), s(&run["matrix_file"]))),
        ("run".into(), s(&run["run_id"])),
        ("cells".into(), s(&run["cells"])),
        ("wall time".into(), format!("{:.1} s", run["wall_s"].as_f64().unwrap_or(0.0))),
    ];
    if let Some(a) = run["native_adapter"].as_object() {
        out.push((
            "native adapter".into(),
            format!(
                "{} ({}, {} {}; shader-f16 {}, timestamps {})",
                s(&a["name"]),
                s(&a["backend"]),
                s(&a["driver"]),
                s(&a["driver_info"]),
                a["shader_f16"],
                a["timestamps"]
            ),
        ));
    }
    out
}

pub fn report(args: &ReportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (all, warnings) = results::load(&args.results)?;
    let latest = latest_run(all);
    let run_info: serde_json::Value = std::fs::read_to_string(args.results.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let info = if run_info.is_object() { info(&run_info) } else { vec![] };
    let path = report::write(&args.results, &report::build(&latest, info, warnings))?;
    eprintln!("webq: report {}", path.display());
    Ok(())
}

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}
