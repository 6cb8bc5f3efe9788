//! `webq run` and `webq report`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use webq_engine::protocol::Runtime;

use crate::browser_run::{BrowserRunner, RunContext};
use crate::browsers::BrowserKind;
use crate::cell::{expand, Cell};
use crate::endpoints::Endpoints;
use crate::matrix::Matrix;
use crate::memory_budget::MemoryLedger;
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
    /// Print every `unsupported` cell as it happens (they are in the report either way).
    #[arg(long)]
    show_unsupported: bool,
    /// Trace every model cell: each op with its milliseconds, every error with its op, the
    /// backend's memory after each op and the WGSL of each pipeline the cell created, in its
    /// record and the report's cell detail. Off by default (and then nothing is traced).
    #[arg(long)]
    trace: bool,
    /// Run the browser cells over N sessions of each browser, every browser at once (a cell goes
    /// to a free session of its browser; the matrix's `[pool]` may set this, recycle sessions and
    /// put cells first). Without it (and without `[pool] sessions`): one session, browser after
    /// browser.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pool: Option<u64>,
    /// Open browser sessions at this W3C WebDriver endpoint (a Selenium Grid's hub or standalone
    /// server) instead of starting drivers here; `BROWSER=URL` for one browser only. Repeatable:
    /// a pool's sessions take the endpoints in turn. Browsers no endpoint serves run locally.
    #[arg(long, value_name = "[BROWSER=]URL")]
    webdriver: Vec<String>,
    /// The address the page server binds and sends browsers to (loopback by default): one the
    /// endpoints' browsers can reach when they run on other machines.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    page_host: String,
    /// What one browser session's page may hold, in MiB (overrides `[pool] memory_budget_mb`): a
    /// cell predicted over it runs on a new session, or not at all when it alone needs more
    /// (`unsupported`, `resource_limit`); a session measured over it after a cell is closed.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    memory_budget: Option<u64>,
}

#[derive(Args)]
pub struct ReportArgs {
    /// A directory a run wrote: results.jsonl (`webq run`: the matrix's pages), peer.jsonl
    /// (`webq peer`: peer.html), or both.
    #[arg(long)]
    results: PathBuf,
    /// An older run's directory: mark what regressed and what was fixed since.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Open every page in headless Chromium, check it (matrix, legend, filters, charts, census,
    /// no page error, nothing a browser said rendered as markup) and keep a screenshot of each.
    #[arg(long)]
    verify: bool,
    /// Where --verify puts its screenshots (default: RESULTS/screenshots).
    #[arg(long)]
    screenshots: Option<PathBuf>,
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
    let mut bar = Progress::new(cells.len().saturating_sub(done.len()), args.verbose, args.show_unsupported);
    let mut progress = |r: &CellRecord| {
        appended.push((r.id.clone(), r.status));
        bar.record(r);
    };
    let mut pool = matrix.pool.clone();
    if let Some(n) = args.pool {
        pool.sessions = n as usize;
    }
    if let Some(mib) = args.memory_budget {
        pool.memory_budget_mb = Some(mib as usize);
    }
    let endpoints = Endpoints::parse(&args.webdriver)?;
    let ctx = Plan {
        run_id: &run_id,
        matrix: &matrix,
        done: &done,
        trace: args.trace,
        pool: &pool,
        endpoints: &endpoints,
        page_host: &args.page_host,
    };
    let (native_adapter, census) = if pool.sessions > 0 {
        run_side_by_side(&cells, &ctx, &args.page, &args.out, &mut store, &mut progress)?
    } else {
        (
            run_native(&cells, &ctx, &mut store, &mut progress)?,
            run_browsers(&cells, &ctx, &args.page, &mut store, &mut progress)?,
        )
    };
    bar.finish();
    report::write_atomic(&args.out.join("census.json"), &serde_json::to_string_pretty(&census)?)?;
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
        "pool": {
            "sessions": pool.sessions,
            "recycle_after": pool.recycle_after,
            "memory_budget_mb": pool.memory_budget_mb,
            "webdriver": args.webdriver,
        },
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "expect": matrix.expect,
        "revision": revision(),
    });
    report::write_atomic(&args.out.join("run.json"), &serde_json::to_string_pretty(&run_info)?)?;
    let (all, unreadable) = results::load(&args.out)?;
    let latest = latest_run(all);
    let warnings = unreadable.iter().map(|u| format!("{u}: skipped")).collect();
    let facts = report::RunFacts::load(&args.out);
    let written = report::write_all(&args.out, &latest, &facts, warnings, None)?;
    let summary = Summary::of(&latest, &unreadable, &appended, cells.len(), &matrix.expect);
    print_table(&latest, &facts.expects());
    eprintln!("webq: {} cells in {:.1} s: {}", latest.len(), started.elapsed().as_secs_f64(), summary.counts());
    let names: Vec<String> =
        written.iter().filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    eprintln!("webq: results {}; {} in {}", store.path().display(), names.join(", "), args.out.display());
    let unmet = crate::expect::violations(&matrix.expect, &latest);
    let diverged = crate::model_verdict::wasm_divergences(&latest);
    for problem in summary.problems.iter().chain(&unmet).chain(&diverged) {
        eprintln!("webq: {problem}");
    }
    if args.check && (summary.bad > 0 || !summary.problems.is_empty() || !unmet.is_empty() || !diverged.is_empty()) {
        return Err(format!(
            "--check: {} cells failed, errored, crashed or timed out; {} results problems; {} expectations unmet; \
             {} wasm model cells not bit-identical to native's",
            summary.bad,
            summary.problems.len(),
            unmet.len(),
            diverged.len()
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
    /// `--trace`.
    trace: bool,
    /// `--pool` and the matrix's `[pool]`.
    pool: &'a crate::matrix::PoolConfig,
    /// `--webdriver`.
    endpoints: &'a Endpoints,
    /// `--page-host`.
    page_host: &'a str,
}

/// Ctrl-C stopped the run.
#[derive(Debug, thiserror::Error)]
#[error("interrupted: every browser and driver webq started has been stopped; --resume continues")]
struct Interrupted;

/// A pool's run: the native cells on a thread of their own beside the browsers' sessions (the
/// CPU the browsers leave idle), both appending to the results file (one whole-line write per
/// record) and telling the one progress line. Returns the native adapter and the census.
fn run_side_by_side(
    cells: &[Cell],
    plan: &Plan,
    page: &Path,
    out: &Path,
    store: &mut ResultsStore,
    progress: &mut (impl FnMut(&CellRecord) + Send),
) -> Result<(serde_json::Value, serde_json::Value), Box<dyn std::error::Error>> {
    let shared = std::sync::Mutex::new(progress);
    let tell = |r: &CellRecord| (shared.lock().expect("progress lock"))(r);
    std::thread::scope(|scope| {
        let native = scope.spawn(|| -> Result<serde_json::Value, String> {
            let mut store = ResultsStore::open(out).map_err(|e| format!("{}: {e}", out.display()))?;
            run_native(cells, plan, &mut store, &mut |r| tell(r)).map_err(|e| e.to_string())
        });
        let census = run_browsers(cells, plan, page, store, &mut |r| tell(r));
        if let Err(e) = &census {
            if e.is::<Interrupted>() {
                // The native thread would finish its cells first; what it recorded is kept.
                eprintln!("webq: {e}");
                std::process::exit(130);
            }
        }
        let native = native.join().map_err(|_| "the native cells' thread panicked")??;
        Ok((native, census?))
    })
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
    let mut runner = NativeRunner::new(plan.matrix.reps, plan.matrix.bench);
    runner.trace = plan.trace;
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
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let mut census = serde_json::Map::new();
    if cells.iter().all(|c| c.runtime == Runtime::Native) {
        return Ok(census.into());
    }
    crate::browsers::remove_stale_profiles();
    let server = PageServer::start_on(page, plan.page_host)?;
    let url = server.url();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let ctx = RunContext { page_url: &url, reps: plan.matrix.reps, bench: plan.matrix.bench, trace: plan.trace };
    let ids = RunIds { run_id: plan.run_id, matrix: &plan.matrix.name };
    if plan.pool.sessions > 0 {
        return run_browser_pool(cells, plan, &ctx, &ids, &rt, &server, store, progress);
    }
    for kind in BrowserKind::ALL {
        let mine: Vec<&Cell> =
            cells.iter().filter(|c| c.runtime == kind.runtime() && !plan.done.contains(&c.id())).collect();
        if mine.is_empty() {
            continue;
        }
        let endpoint = plan.endpoints.for_kind(kind).first().map(|u| u.to_string());
        eprintln!("webq: {} cells in {}{}", mine.len(), kind.name(), at(endpoint.as_deref()));
        let mut runner = BrowserRunner::new(kind, &ctx);
        runner.endpoint = endpoint;
        runner.memory = plan.pool.memory_budget_mb.map(|mib| MemoryLedger::new((mib as u64) << 20));
        let work = run_cells(&mut runner, mine, plan.done, &ids, store, progress);
        let interrupted = rt.block_on(async {
            tokio::select! {
                r = work => r.map(|_| false),
                _ = tokio::signal::ctrl_c() => Ok(true),
                _ = draw_loading(&server) => unreachable!("the bar draws until the cells end"),
            }
        })?;
        if let Some(env) = runner.census() {
            census.insert(kind.name().to_string(), env.clone());
        }
        if interrupted {
            return Err(Interrupted.into());
        }
    }
    Ok(census.into())
}

/// The browser cells over a pool: `plan.pool.sessions` sessions of each browser that has cells,
/// all at once on one thread (the browsers are processes of their own), high-priority cells first.
#[allow(clippy::too_many_arguments)]
fn run_browser_pool(
    cells: &[Cell],
    plan: &Plan,
    ctx: &RunContext,
    ids: &RunIds,
    rt: &tokio::runtime::Runtime,
    server: &PageServer,
    store: &mut ResultsStore,
    progress: &mut impl FnMut(&CellRecord),
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let mine: Vec<&Cell> = cells.iter().filter(|c| c.runtime != Runtime::Native).collect();
    let mut runners = Vec::new();
    for kind in BrowserKind::ALL {
        let n = mine.iter().filter(|c| c.runtime == kind.runtime() && !plan.done.contains(&c.id())).count();
        let sessions = plan.pool.sessions.min(n);
        let endpoints = plan.endpoints.for_kind(kind);
        if sessions > 0 {
            let list = if endpoints.is_empty() { String::new() } else { at(Some(&endpoints.join(", "))) };
            eprintln!("webq: {n} cells in {} over {sessions} sessions{list}", kind.name());
        }
        for i in 0..sessions {
            let mut r = BrowserRunner::new(kind, ctx);
            r.recycle_after = plan.pool.recycle_after;
            r.memory = plan.pool.memory_budget_mb.map(|mib| MemoryLedger::new((mib as u64) << 20));
            // The sessions take the endpoints in turn.
            r.endpoint = (!endpoints.is_empty()).then(|| endpoints[i % endpoints.len()].to_string());
            runners.push(r);
        }
    }
    let high = |c: &Cell| plan.pool.is_high(&c.id());
    let work = crate::runner::run_pool(&mut runners, mine, high, plan.done, ids, store, progress);
    let interrupted = rt.block_on(async {
        tokio::select! {
            r = work => r.map(|_| false),
            _ = tokio::signal::ctrl_c() => Ok(true),
            _ = draw_loading(server) => unreachable!("the bar draws until the cells end"),
        }
    })?;
    let mut census = serde_json::Map::new();
    for r in &runners {
        if let Some(env) = r.census() {
            census.entry(r.kind_name().to_string()).or_insert_with(|| env.clone());
        }
    }
    if interrupted {
        return Err(Interrupted.into());
    }
    Ok(census.into())
}

/// " at URL" for a browser whose sessions an endpoint opens, else nothing.
fn at(endpoint: Option<&str>) -> String {
    endpoint.map(|u| format!(" at {u}")).unwrap_or_default()
}

/// On a terminal, a bar on the progress line for the model a page is loading, redrawn at each
/// load event the page posts (the next cell's line replaces it); elsewhere nothing.
async fn draw_loading(server: &PageServer) {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return std::future::pending().await;
    }
    let mut seen = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if let (n, Some(e)) = server.progress() {
            if n != seen {
                seen = n;
                eprint!("\r\x1b[2K  {}", loading_bar(&e));
            }
        }
    }
}

/// `loading [#########-----------]  45% 12.3 MB: layer 3`.
fn loading_bar(e: &webq_engine::models::loading::LoadEvent) -> String {
    let f = e.fraction.clamp(0.0, 1.0);
    let full = (f * 20.0).round() as usize;
    let bar = format!("{}{}", "#".repeat(full), "-".repeat(20 - full));
    format!("loading [{bar}] {:>3.0}% {:.1} MB: {}", f * 100.0, e.bytes as f64 / 1e6, e.stage)
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

pub fn report(args: &ReportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let has_peer = args.results.join(crate::peer::record::PEER_FILE).is_file();
    if has_peer {
        eprintln!("webq: wrote {}", crate::peer::write_page(&args.results)?.display());
        if !args.results.join(results::RESULTS_FILE).is_file() {
            return Ok(());
        }
    }
    let (all, unreadable) = results::load(&args.results)
        .map_err(|e| format!("{}: {e}", args.results.join(results::RESULTS_FILE).display()))?;
    let warnings = unreadable.iter().map(|u| format!("{u}: skipped")).collect();
    let latest = latest_run(all);
    let facts = report::RunFacts::load(&args.results);
    let changes = match &args.baseline {
        None => None,
        Some(old) => {
            let (before, _) = results::load(old).map_err(|e| format!("--baseline {}: {e}", old.display()))?;
            let c = report::changes::between(&old.display().to_string(), &latest_run(before), &latest);
            eprintln!("webq: against {}: {} regressions, {} fixes", old.display(), c.regressions.len(), c.fixes.len());
            for r in &c.regressions {
                eprintln!("  regression {}: {} ({} -> {})", r.id, r.why, r.before, r.after);
            }
            for f in &c.fixes {
                eprintln!("  fix        {}: {} ({} -> {})", f.id, f.why, f.before, f.after);
            }
            Some(c)
        }
    };
    let written = report::write_all(&args.results, &latest, &facts, warnings, changes)?;
    eprintln!("webq: wrote {} files in {}", written.len(), args.results.display());
    if args.verify {
        let shots = args.screenshots.clone().unwrap_or_else(|| args.results.join("screenshots"));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (verdicts, pngs) = rt.block_on(report::verify::verify(&args.results, &shots))?;
        for (page, ok, why) in &verdicts {
            eprintln!("  {} {page}: {why}", if *ok { "ok    " } else { "FAILED" });
        }
        eprintln!("webq: {} screenshots in {}", pngs.len(), shots.display());
        let failed = verdicts.iter().filter(|v| !v.1).count();
        if failed > 0 {
            return Err(format!("--verify: {failed} pages failed their checks in Chromium").into());
        }
    }
    Ok(())
}

/// The checkout's commit (`WEBQ_REVISION` overrides), for wptreport's `run_info.revision`.
pub(crate) fn revision() -> String {
    if let Ok(r) = std::env::var("WEBQ_REVISION") {
        return r;
    }
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The terminal during a run: failures as they happen, a progress line with counts per status and
/// the time left (rewritten in place on a terminal, every 25 cells otherwise), `unsupported` and
/// passes only when asked for.
struct Progress {
    planned: usize,
    done: usize,
    counts: [usize; 6],
    started: Instant,
    verbose: bool,
    show_unsupported: bool,
    tty: bool,
}

impl Progress {
    fn new(planned: usize, verbose: bool, show_unsupported: bool) -> Self {
        use std::io::IsTerminal;
        let tty = std::io::stderr().is_terminal();
        Progress { planned, done: 0, counts: [0; 6], started: Instant::now(), verbose, show_unsupported, tty }
    }

    fn line(&self) -> String {
        let mut parts = vec![format!("{}/{} cells", self.done, self.planned)];
        for (s, n) in Status::ALL.iter().zip(self.counts) {
            if n > 0 {
                parts.push(format!("{n} {}", s.name()));
            }
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        if self.done > 0 && self.done < self.planned {
            let left = elapsed / self.done as f64 * (self.planned - self.done) as f64;
            parts.push(format!("about {}m{:02}s left", (left / 60.0) as u64, left as u64 % 60));
        }
        parts.join(", ")
    }

    fn record(&mut self, r: &CellRecord) {
        self.done += 1;
        if let Some(i) = Status::ALL.iter().position(|s| *s == r.status) {
            self.counts[i] += 1;
        }
        let loud = match r.status {
            Status::Pass => self.verbose,
            Status::Unsupported => self.verbose || self.show_unsupported,
            _ => true,
        };
        if loud {
            let reason = r.reason.as_deref().map_or(String::new(), |s| format!(": {s}"));
            if self.tty {
                eprint!("\r\x1b[2K");
            }
            eprintln!("  {:<11} {}{reason}", r.status.name(), r.id);
        }
        if self.tty {
            eprint!("\r\x1b[2K  {}", self.line());
        } else if self.done % 25 == 0 {
            eprintln!("webq: {}", self.line());
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// Statuses per runtime and backend, as a table.
fn print_table(records: &[CellRecord], expects: &[crate::matrix::Expect]) {
    let mut rows: Vec<(String, [usize; 8])> = Vec::new();
    for r in records {
        let key = format!("{}/{}", r.cell.runtime, r.cell.backend);
        let i = rows.iter().position(|(k, _)| *k == key).unwrap_or_else(|| {
            rows.push((key, [0; 8]));
            rows.len() - 1
        });
        let s = report::shown(r, expects);
        let col = report::SEVERITY.iter().rev().position(|x| *x == s).unwrap_or(0);
        rows[i].1[col] += 1;
    }
    let heads: Vec<&str> = report::SEVERITY.iter().rev().map(|s| report::words(report::class(*s))).collect();
    eprint!("{:<32}", "runtime/backend");
    for h in &heads {
        eprint!(" {h:>11}");
    }
    eprintln!();
    for (k, n) in rows {
        eprint!("{k:<32}");
        for v in n {
            eprint!(" {:>11}", if v == 0 { "-".to_string() } else { v.to_string() });
        }
        eprintln!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webq_engine::models::loading::LoadEvent;

    #[test]
    fn the_loading_bar_fills_with_the_fraction() {
        let e = |fraction| LoadEvent { stage: "layer 3".into(), layer: Some(3), bytes: 12_340_000, fraction, ms: 1.0 };
        assert_eq!(loading_bar(&e(0.45)), "loading [#########-----------]  45% 12.3 MB: layer 3");
        assert_eq!(loading_bar(&e(1.0)), format!("loading [{}] 100% 12.3 MB: layer 3", "#".repeat(20)));
        assert!(loading_bar(&e(f64::NAN)).starts_with("loading ["), "a NaN fraction draws, never panics");
    }
}
