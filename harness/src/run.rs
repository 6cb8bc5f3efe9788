//! `webq run` and `webq report`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use webq_engine::protocol::Runtime;

use crate::browser_run::{BrowserRunner, RunContext};
use crate::browsers::BrowserKind;
use crate::cell::{expand, Cell};
use crate::matrix::Matrix;
use crate::native::NativeRunner;
use crate::report;
use crate::results::{self, latest_run, unix_now, CellRecord, ResultsStore, Status};
use crate::runner::{run_cells, RunIds};
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
    /// One line per cell: set by the global `-v`.
    #[arg(skip)]
    pub verbose: bool,
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
    // What this invocation appended, to check the file against.
    let mut appended: Vec<(String, Status)> = Vec::new();
    let verbose = args.verbose;
    let mut progress = |r: &CellRecord| {
        appended.push((r.id.clone(), r.status));
        if verbose || r.status != Status::Pass {
            let reason = r.reason.as_deref().map_or(String::new(), |s| format!(": {s}"));
            eprintln!("  {:<11} {}{reason}", r.status.name(), r.id);
        }
    };
    let ctx = Plan { run_id: &run_id, matrix: &matrix, done: &done };
    let native_adapter = run_native(&cells, &ctx, &mut store, &mut progress)?;
    run_browsers(&cells, &ctx, &args.page, &mut store, &mut progress)?;
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
        "native_adapter": native_adapter,
    });
    write_atomic(&args.out.join("run.json"), &serde_json::to_string_pretty(&run_info)?)?;
    let (all, unreadable) = results::load(&args.out)?;
    let latest = latest_run(all);
    let warnings = unreadable.iter().map(|u| format!("{u}: skipped")).collect();
    let index = report::write(&args.out, &report::build(&latest, info(&run_info), warnings))?;
    let summary = Summary::of(&latest, &unreadable, &appended, cells.len(), &matrix.expect);
    eprintln!("webq: {} cells in {:.1} s: {}", latest.len(), started.elapsed().as_secs_f64(), summary.counts());
    eprintln!("webq: results {}, report {}", store.path().display(), index.display());
    let unmet = crate::expect::violations(&matrix.expect, &latest);
    for problem in summary.problems.iter().chain(&unmet) {
        eprintln!("webq: {problem}");
    }
    if args.check && (summary.bad > 0 || !summary.problems.is_empty() || !unmet.is_empty()) {
        return Err(format!(
            "--check: {} cells failed, errored, crashed or timed out; {} results problems; {} expectations unmet",
            summary.bad,
            summary.problems.len(),
            unmet.len()
        )
        .into());
    }
    Ok(())
}

/// What the phases of a run share.
struct Plan<'a> {
    run_id: &'a str,
    matrix: &'a Matrix,
    /// Cells already recorded (`--resume`).
    done: &'a HashSet<String>,
}

/// The native cells; returns the adapter they ran on (JSON), if any ran.
fn run_native(
    cells: &[Cell],
    plan: &Plan,
    store: &mut ResultsStore,
    progress: &mut impl FnMut(&CellRecord),
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let native: Vec<Cell> = cells.iter().filter(|c| c.runtime == Runtime::Native).cloned().collect();
    if native.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    let mut runner = NativeRunner::new(plan.matrix.reps);
    if let Some(a) = runner.adapter_environment().adapter {
        eprintln!("webq: native adapter: {a}");
    }
    let ids = RunIds { run_id: plan.run_id, matrix: &plan.matrix.name };
    pollster::block_on(run_cells(&mut runner, &native, plan.done, &ids, store, progress))?;
    Ok(runner.adapter_json())
}

/// The browser cells, one browser after another; Ctrl-C stops every browser and driver.
fn run_browsers(
    cells: &[Cell],
    plan: &Plan,
    page: &Path,
    store: &mut ResultsStore,
    progress: &mut impl FnMut(&CellRecord),
) -> Result<(), Box<dyn std::error::Error>> {
    if cells.iter().all(|c| c.runtime == Runtime::Native) {
        return Ok(());
    }
    crate::browsers::remove_stale_profiles();
    let server = PageServer::start(page)?;
    let url = server.url();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let ctx = RunContext { page_url: &url, reps: plan.matrix.reps };
    let ids = RunIds { run_id: plan.run_id, matrix: &plan.matrix.name };
    for kind in BrowserKind::ALL {
        let mine: Vec<&Cell> =
            cells.iter().filter(|c| c.runtime == kind.runtime() && !plan.done.contains(&c.id())).collect();
        if mine.is_empty() {
            continue;
        }
        eprintln!("webq: {} cells in {}", mine.len(), kind.name());
        let mut runner = BrowserRunner::new(kind, &ctx);
        let work = run_cells(&mut runner, mine, plan.done, &ids, store, progress);
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
    Ok(())
}

/// The counts of a run, checked against what was appended: a cell this invocation recorded that
/// the file does not give back with the same status, and any line of the file that cannot be read,
/// is a problem that `--check` fails on.
struct Summary {
    counts: Vec<(Status, usize)>,
    unreadable: usize,
    /// Cells that failed, errored, crashed or timed out, save failures an expectation pins (with
    /// their reason: `expect::violations` holds them to it).
    bad: usize,
    problems: Vec<String>,
}

impl Summary {
    fn of(
        latest: &[CellRecord],
        unreadable: &[results::Unreadable],
        appended: &[(String, Status)],
        planned: usize,
        expects: &[crate::matrix::Expect],
    ) -> Summary {
        let counts: Vec<(Status, usize)> =
            Status::ALL.iter().map(|s| (*s, latest.iter().filter(|r| r.status == *s).count())).collect();
        let bad = latest
            .iter()
            .filter(|r| matches!(r.status, Status::Fail | Status::Error | Status::Crash | Status::Timeout))
            .filter(|r| !crate::expect::pinned_failure(expects, r))
            .count();
        let mut problems: Vec<String> = unreadable.iter().map(|u| format!("unreadable record {u}")).collect();
        let in_file: std::collections::HashMap<&str, Status> =
            latest.iter().map(|r| (r.id.as_str(), r.status)).collect();
        for (id, status) in appended {
            match in_file.get(id.as_str()) {
                None => problems.push(format!("{id}: recorded {} but not in the results file", status.name())),
                Some(s) if s != status => {
                    problems.push(format!("{id}: recorded {} but the results file says {}", status.name(), s.name()))
                }
                Some(_) => {}
            }
        }
        if latest.len() != planned {
            problems
                .push(format!("the matrix has {planned} cells, the results file holds {} of this run", latest.len()));
        }
        Summary { counts, unreadable: unreadable.len(), bad, problems }
    }

    fn counts(&self) -> String {
        let mut parts: Vec<String> = self.counts.iter().map(|(s, n)| format!("{n} {}", s.name())).collect();
        if self.unreadable > 0 {
            parts.push(format!("{} unreadable", self.unreadable));
        }
        parts.join(", ")
    }
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
    let (all, unreadable) = results::load(&args.results)?;
    let warnings = unreadable.iter().map(|u| format!("{u}: skipped")).collect();
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
