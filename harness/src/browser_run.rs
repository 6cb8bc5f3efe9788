//! Running cells in real browsers: one session per browser, the page loaded once per session, one
//! cell per script call. A crashed or hung browser marks its cell (`crash`, `timeout`) and the next
//! cell gets a new session.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use webq_engine::models::bench::BenchRequest;
use webq_engine::platform::classify::ErrorKind;
use webq_engine::protocol::{CellBackend, CellOutput, CellSpec, ErrorClass, Outcome, Precision};
use webq_engine::webgpu::TuningTable;

use crate::browsers::{BrowserKind, Located, Session};
use crate::cell::Cell;
use crate::memory_budget::{MemoryAction, MemoryLedger};
use crate::model_cells::{self, FileAt, ModelRefs};
use crate::model_verdict::{judge_model, judge_transcripts};
use crate::results::{CellRecord, Environment, RunDetail, Status};
use crate::runner::CellRunner;
use crate::verdict::{judge, References};

/// How long one cell may take in a browser (SwiftShader is slow) before it is a `timeout`.
pub const CELL_TIMEOUT: Duration = Duration::from_secs(180);
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Loads the page and waits until the engine is ready.
pub async fn load_page(client: &fantoccini::Client, url: &str) -> Result<(), String> {
    client.goto(url).await.map_err(|e| format!("loading the page: {e}"))?;
    let start = std::time::Instant::now();
    loop {
        let ready = client.execute("return window.webqReady || null;", vec![]).await.map_err(|e| e.to_string())?;
        match ready {
            Value::Bool(true) => return Ok(()),
            Value::String(s) => return Err(s),
            _ if start.elapsed() > LOAD_TIMEOUT => return Err("the engine did not load within 60 s".into()),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// What the browser offers: user agent, WebGPU adapter, features, limits, WebNN contexts.
pub async fn environment(client: &fantoccini::Client) -> Result<Value, String> {
    client
        .execute_async("const done = arguments[arguments.length - 1]; window.webq.environment().then(done, (e) => done({error: String(e)}));", vec![])
        .await
        .map_err(|e| e.to_string())
}

/// The WebGPU adapter as results name it (vendor, architecture, description), as the tuning table matches it.
pub fn adapter_name(env: &Value) -> Option<String> {
    env["webgpu"]["adapter"].as_object().map(|a| {
        let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        [s("vendor"), s("architecture"), s("description")]
            .into_iter()
            .filter(|v| !v.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    })
}

fn environment_record(kind: BrowserKind, env: &Value) -> Environment {
    let gpu = &env["webgpu"];
    let adapter = adapter_name(env);
    Environment {
        runtime: kind.name().into(),
        adapter,
        driver: None,
        graphics_api: Some("WebGPU".into()),
        shader_f16: gpu["shaderF16"].as_bool(),
        user_agent: env["userAgent"].as_str().map(str::to_string),
    }
}

enum Failure {
    /// No answer in time: why (whose clock ran out).
    Timeout(String),
    Crash(String),
}

/// What the cells of a browser share.
pub struct RunContext<'a> {
    pub page_url: &'a str,
    pub reps: usize,
    /// Model cells' warm inferences.
    pub bench: BenchRequest,
    /// Trace model cells (`webq run --trace`).
    pub trace: bool,
}

/// How many times a session that could not be started is tried again, and the first wait.
const OPEN_RETRIES: u32 = 2;
const OPEN_BACKOFF: Duration = Duration::from_secs(1);

/// One browser: a session opened on demand, reused cell after cell, opened anew after a crash or
/// a hang, or after `recycle_after` cells (a pool's setting: a long-lived page leaks).
pub struct BrowserRunner<'a> {
    kind: BrowserKind,
    located: Result<Located, String>,
    tuning: TuningTable,
    session: Option<(Session, Value)>,
    /// Cells the open session has run.
    session_cells: usize,
    pub recycle_after: Option<usize>,
    /// A W3C WebDriver endpoint (`--webdriver`: a Selenium Grid, a remote driver) that opens this
    /// runner's sessions instead of a driver webq starts here.
    pub endpoint: Option<String>,
    /// The session's memory budget (`[pool] memory_budget_mb`), with what its page holds.
    pub memory: Option<MemoryLedger>,
    refs: Option<References>,
    ctx: &'a RunContext<'a>,
    /// What the page reported when a session last opened (the run's census of this browser).
    census: Option<Value>,
}

impl<'a> BrowserRunner<'a> {
    pub fn new(kind: BrowserKind, ctx: &'a RunContext<'a>) -> Self {
        let located = kind.locate();
        BrowserRunner {
            kind,
            located,
            tuning: TuningTable::seed(),
            session: None,
            session_cells: 0,
            recycle_after: None,
            endpoint: None,
            memory: None,
            refs: None,
            ctx,
            census: None,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        self.kind.name()
    }

    /// The page's environment report from the latest session, for the run's `census.json`.
    pub fn census(&self) -> Option<&Value> {
        self.census.as_ref()
    }
}

impl CellRunner for BrowserRunner<'_> {
    fn runtime(&self) -> webq_engine::protocol::Runtime {
        self.kind.runtime()
    }

    fn environment(&self) -> Environment {
        Environment { runtime: self.kind.name().into(), ..Default::default() }
    }

    async fn run(&mut self, cell: &Cell, mut rec: CellRecord) -> CellRecord {
        let mut memory = self.memory.as_ref().map(|l| l.plan(cell));
        match memory.as_ref().map(|m| m.action) {
            Some(MemoryAction::Refused) => {
                rec.status = Status::Unsupported;
                rec.error_class = Some(ErrorClass::ResourceLimit);
                rec.reason = memory.as_ref().map(MemoryLedger::refusal);
                rec.memory = memory;
                return rec;
            }
            Some(MemoryAction::NewSession) => self.close_session().await,
            _ => {}
        }
        let from = match (&self.located, &self.endpoint) {
            (Err(missing), None) => {
                rec.error_class = Some(ErrorClass::NotInstalled);
                rec.reason = Some(missing.clone());
                return rec;
            }
            (Ok(l), None) => SessionSource::Local(l),
            (l, Some(url)) => SessionSource::Remote { url, binary: l.as_ref().ok().map(|l| l.browser.as_path()) },
        };
        // A remote session lost mid-cell or while it opened (a Grid node gone) costs the cell one
        // more try on a fresh session, never more: the infrastructure is in doubt there, not the
        // cell. Locally a lost session is the browser's crash, and the cell's.
        let tries = if self.endpoint.is_some() { 2 } else { 1 };
        let mut outcome = Ok(());
        let blank = rec.clone();
        for attempt in 1..=tries {
            if attempt > 1 {
                rec = blank.clone();
            }
            if self.session.is_none() {
                match open(self.kind, &from, self.ctx.page_url).await {
                    Ok(s) => {
                        self.census = Some(s.1.clone());
                        self.session = Some(s);
                        self.session_cells = 0;
                        if let Some(l) = self.memory.as_mut() {
                            l.new_session();
                        }
                    }
                    Err(e) if attempt < tries => {
                        tracing::warn!(cell = %cell.id(), error = %e, "the remote session did not open; trying a new one");
                        continue;
                    }
                    Err(e) => {
                        rec.error_class = Some(ErrorClass::Session);
                        rec.reason = Some(e);
                        return rec;
                    }
                }
            }
            let Some((s, env)) = &self.session else { return rec };
            rec.environment = environment_record(self.kind, env);
            outcome = run_cell(s, env, cell, &self.tuning, self.ctx, &mut self.refs, &mut rec).await;
            match &outcome {
                Err(Failure::Crash(msg)) if attempt < tries => {
                    tracing::warn!(cell = %cell.id(), error = %msg, "the remote session was lost; the cell runs again on a new one");
                    self.session = None;
                }
                _ => break,
            }
        }
        match outcome {
            Ok(()) => {}
            Err(Failure::Timeout(why)) => {
                rec.status = Status::Timeout;
                rec.error_class = Some(ErrorClass::Timeout);
                rec.reason = Some(format!("{why}: the browser was restarted"));
                self.session = None;
            }
            Err(Failure::Crash(msg)) => {
                rec.status = Status::Crash;
                rec.error_class = Some(ErrorClass::Crash);
                rec.reason = Some(format!("the browser session died: {msg}"));
                self.session = None;
            }
        }
        self.session_cells += 1;
        let mut over_budget = false;
        if let (Some(l), Some(m)) = (self.memory.as_mut(), memory.as_mut()) {
            // Only a report from the session that ran the cell counts (not one lost on the way).
            // The browser's own measure (Chromium, cross-origin isolated, model cells) where it
            // has one: it counts what the page holds outside the engine's memory too.
            let browser = rec.bench.as_ref().and_then(|b| b.browser_memory_bytes);
            let held = self
                .session
                .as_ref()
                .and(rec.detail.as_ref())
                .and_then(|d| d.wasm_memory_bytes)
                .map(|w| w.max(browser.unwrap_or(0)));
            over_budget = l.measured(cell, m, held);
        }
        rec.memory = memory;
        if over_budget || self.recycle_after.is_some_and(|n| self.session_cells >= n) {
            self.close_session().await;
        }
        rec
    }

    async fn finish(&mut self) {
        self.close_session().await;
    }
}

impl BrowserRunner<'_> {
    async fn close_session(&mut self) {
        if let Some((s, _)) = self.session.take() {
            s.close().await;
        }
    }
}

fn our_timeout() -> String {
    format!("no answer within {} s", CELL_TIMEOUT.as_secs())
}

/// A Selenium Grid ended the command (and the session) at its `--session-timeout`: the Grid's
/// timeout, not a crash, in an `unknown error` in one of two wordings (seen here: which one
/// depends on where in the Grid the clock ran out).
fn grid_timed_out(e: &fantoccini::error::CmdError) -> bool {
    let text = e.to_string();
    text.contains("Unable to execute request for an existing session")
        && (text.contains("java.util.concurrent.TimeoutException") || text.contains("Timeout when executing request"))
}

/// Where a runner's sessions come from.
enum SessionSource<'a> {
    /// A driver webq starts on this machine.
    Local(&'a Located),
    /// A WebDriver endpoint, sent this machine's browser binary where there is one.
    Remote { url: &'a str, binary: Option<&'a Path> },
}

async fn open(kind: BrowserKind, from: &SessionSource<'_>, url: &str) -> Result<(Session, Value), String> {
    let s = start_with_retries(kind, from).await?;
    load_page(&s.client, url).await?;
    let env = environment(&s.client).await?;
    Ok((s, env))
}

async fn run_cell(
    s: &Session,
    env: &Value,
    cell: &Cell,
    tuning: &TuningTable,
    ctx: &RunContext<'_>,
    refs: &mut Option<References>,
    rec: &mut CellRecord,
) -> Result<(), Failure> {
    if cell.backend == CellBackend::Webgpu && env["webgpu"]["available"] != Value::Bool(true) {
        rec.status = Status::Unsupported;
        rec.error_class = Some(ErrorClass::NoWebgpu);
        rec.reason = Some(env["webgpu"]["reason"].as_str().unwrap_or("no WebGPU").to_string());
        return Ok(());
    }
    let adapter = rec.environment.adapter.clone().unwrap_or_default();
    let (spec, model_refs) = match page_spec(cell, tuning, &adapter, ctx) {
        Ok(s) => s,
        Err(e) => {
            rec.error_class = Some(ErrorClass::BadInput);
            rec.reason = Some(e);
            return Ok(());
        }
    };
    let spec = serde_json::to_value(spec).map_err(|e| Failure::Crash(e.to_string()))?;
    let script = "const [spec, done] = arguments; \
                  window.webq.runCell(spec).then(done, (e) => done({error_class: 'js_exception', error: String(e && e.stack || e)}));";
    let call = s.client.execute_async(script, vec![spec]);
    let answer = match tokio::time::timeout(CELL_TIMEOUT, call).await {
        Err(_) => return Err(Failure::Timeout(our_timeout())),
        Ok(Err(e)) if e.is_script_timeout() || e.is_timeout() => return Err(Failure::Timeout(our_timeout())),
        Ok(Err(e)) if grid_timed_out(&e) => {
            return Err(Failure::Timeout("the WebDriver endpoint timed the session out (its --session-timeout)".into()))
        }
        Ok(Err(e)) => return Err(Failure::Crash(e.to_string())),
        Ok(Ok(v)) => v,
    };
    match model_refs {
        Some(r) => judge_model_answer(cell, answer, r, rec),
        None => judge_answer(cell, answer, refs, rec),
    }
    Ok(())
}

/// What the page is asked to run for `cell` on `adapter`, and for a model cell its references
/// (`None` inside for an `auto` cell: those of what it chose, known from its answer).
#[allow(clippy::type_complexity)]
pub fn page_spec(
    cell: &Cell,
    tuning: &TuningTable,
    adapter: &str,
    ctx: &RunContext<'_>,
) -> Result<(CellSpec, Option<Option<Arc<ModelRefs>>>), String> {
    // The family picks its row (the seed's 256x1 GEMV for audio models in Firefox).
    let family = cell.model.as_ref().map(|m| m.family).or(cell.family).map(|f| f.name());
    // GEMM cells too: `variant` makes the GEMM of the adapter's GEMV row (`gemm-vec` on the CPU adapters).
    let gemv = cell.workgroup.unwrap_or_else(|| tuning.pick(cell.runtime.name(), adapter, family));
    let mut spec = cell.spec(gemv, ctx.reps);
    if cell.model.is_none() {
        return Ok((spec, None));
    }
    let refs = match cell.backend {
        CellBackend::Auto => None,
        _ => Some(model_cells::references(cell)?),
    };
    let mut s = model_cells::spec(cell, FileAt::Page)?;
    s.bench = ctx.bench;
    s.progressive = true;
    s.trace = ctx.trace;
    spec.model = Some(s);
    Ok((spec, Some(refs)))
}

/// The page's answer to a model cell, judged as [`judge_answer`] judges a matmul's; `refs` is
/// `None` for an `auto` cell, judged against the references of the backend and precision it ran.
pub fn judge_model_answer(cell: &Cell, answer: Value, refs: Option<Arc<ModelRefs>>, rec: &mut CellRecord) {
    let out: CellOutput = match serde_json::from_value(answer) {
        Ok(o) => o,
        Err(e) => return malformed(rec, e.to_string()),
    };
    rec.workgroup = out.workgroup.clone();
    rec.detail = Some(RunDetail::from_page(&out));
    rec.bench = out.bench.clone();
    rec.trace = out.trace.clone();
    let (judged, refs) = match refs {
        Some(r) => (cell.clone(), r),
        // A failure needs no references.
        None if out.error.is_some() => {
            return match out.outcome(cell.precision, 0) {
                Ok(Outcome::Failed { class, message, kind }) => failed(rec, class, message, kind),
                Ok(Outcome::Ran { .. }) => malformed(rec, "an error and an output".into()),
                Err(why) => malformed(rec, why),
            }
        }
        None => match chosen(cell, &out).and_then(|c| Ok((model_cells::references(&c)?, c))) {
            Ok((r, c)) => (c, r),
            Err(why) => return malformed(rec, why),
        },
    };
    match out.outcome(judged.precision, refs.exact.y.len()) {
        Err(why) => malformed(rec, why),
        Ok(Outcome::Failed { class, message, kind }) => failed(rec, class, message, kind),
        // The references are of the precision the harness expects to run: a page that ran
        // another cannot be judged against them.
        Ok(Outcome::Ran { precision, .. }) if Some(precision) != model_cells::precision(&judged).ok().map(|p| p.1) => {
            malformed(rec, format!("`precision`: the page ran `{precision}`, the references are of another"))
        }
        // The protocol's record is part of the answer: a page that stops sending it is stale or broken.
        Ok(Outcome::Ran { .. }) if out.bench.is_none() => {
            malformed(rec, "`bench`: the page ran the model and sent no benchmark record".into())
        }
        Ok(Outcome::Ran { y, timings, .. }) => {
            judge_model(&judged, &refs, &y, timings, rec);
            judge_transcripts(&judged, &refs, &out.transcripts, rec);
        }
    }
}

/// The cell an `auto` model cell's answer says it ran: its backend and precision.
fn chosen(cell: &Cell, out: &CellOutput) -> Result<Cell, String> {
    let backend: CellBackend = out.backend.as_deref().ok_or("`backend`: missing for an `auto` cell")?.parse()?;
    let precision: Precision = out.precision.as_deref().ok_or("`precision`: missing for an `auto` cell")?.parse()?;
    if backend == CellBackend::Auto || precision == Precision::Auto {
        return Err(format!("`auto` answered that it ran `{backend}` at `{precision}`"));
    }
    Ok(Cell { backend, precision, ..cell.clone() })
}

fn malformed(rec: &mut CellRecord, why: String) {
    rec.status = Status::Error;
    rec.error_class = Some(ErrorClass::BadOutput);
    rec.reason = Some(format!("malformed page answer: {why}"));
}

/// A page that says why it did not run: `unsupported` when the browser lacks the feature or rejects
/// the precision, else `error`.
fn failed(rec: &mut CellRecord, class: ErrorClass, message: String, kind: Option<ErrorKind>) {
    let unsupported = class == ErrorClass::Unsupported || kind == Some(ErrorKind::PrecisionNotSupported);
    rec.status = if unsupported { Status::Unsupported } else { Status::Error };
    rec.reason = Some(message);
    rec.error_class = Some(class);
}

/// Status, verdicts and timings from the page's answer (a [`CellOutput`], read strictly): an error
/// is `unsupported` when the browser lacks the feature or rejects the precision, else `error`; an
/// output is judged against references of the format that actually ran; an answer that is not a
/// well-formed `CellOutput`, or whose output has the wrong length or lacks a timing, is an `error`
/// cell that says what was wrong.
pub fn judge_answer(cell: &Cell, answer: Value, refs: &mut Option<References>, rec: &mut CellRecord) {
    let out: CellOutput = match serde_json::from_value(answer) {
        Ok(o) => o,
        Err(e) => return malformed(rec, e.to_string()),
    };
    rec.workgroup = out.workgroup.clone();
    rec.detail = Some(RunDetail::from_page(&out));
    match out.outcome(cell.precision, cell.m * cell.n) {
        Err(why) => malformed(rec, why),
        Ok(Outcome::Failed { class, message, kind }) => failed(rec, class, message, kind),
        Ok(Outcome::Ran { y, precision, timings }) => {
            let Some(format) = precision.format() else {
                return malformed(rec, format!("`precision`: `{precision}` is not a format"));
            };
            let r = match References::for_cell(refs, cell, format) {
                Ok(r) => r,
                Err(e) => {
                    rec.error_class = Some(ErrorClass::BadInput);
                    rec.reason = Some(e);
                    return;
                }
            };
            judge(cell, r, &y, timings, rec);
        }
    }
}

/// A new session, tried again after [`OPEN_BACKOFF`] (doubling) when it fails: [`OPEN_RETRIES`]
/// times for a local driver that may not listen yet, as [`ConnectError::retries`] says for a
/// remote endpoint. A remote endpoint's refusal or timeout is its answer and not retried; nor is the page's load (a
/// page that does not load is an answer), nor any verdict.
async fn start_with_retries(kind: BrowserKind, from: &SessionSource<'_>) -> Result<Session, String> {
    let mut wait = OPEN_BACKOFF;
    let mut tries = 1;
    loop {
        let started = match from {
            SessionSource::Local(located) => Session::start(kind, located).await.map_err(|e| (e, OPEN_RETRIES)),
            SessionSource::Remote { url, binary } => {
                Session::connect(kind, *binary, url).await.map_err(|e| (e.message, e.retries))
            }
        };
        match started {
            Ok(s) => return Ok(s),
            Err((e, 0)) => return Err(e),
            Err((e, retries)) if tries > retries => return Err(format!("{e} ({tries} tries)")),
            Err((e, _)) => {
                tracing::warn!(browser = kind.name(), error = %e, "starting a session failed; trying again");
                tokio::time::sleep(wait).await;
                wait *= 2;
                tries += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::ResultsStore;
    use crate::runner::{run_cells, RunIds};
    use crate::server::PageServer;
    use webq_engine::protocol::Runtime;

    /// An `auto` model cell is judged as what its answer says ran; an answer that names no backend,
    /// or `auto` itself, is refused.
    #[test]
    fn an_auto_model_cell_is_judged_as_what_it_chose() {
        let cell = crate::cell::test_cell(Runtime::Firefox, CellBackend::Auto, "auto", 0, 0);
        let out = |backend: Option<&str>, precision: Option<&str>| CellOutput {
            backend: backend.map(str::to_string),
            precision: precision.map(str::to_string),
            ..Default::default()
        };
        let c = chosen(&cell, &out(Some("webnn"), Some("mixed"))).unwrap();
        assert_eq!((c.backend, c.precision, c.runtime), (CellBackend::Webnn, Precision::Mixed, Runtime::Firefox));
        assert!(chosen(&cell, &out(None, Some("mixed"))).unwrap_err().contains("`backend`: missing"));
        assert!(chosen(&cell, &out(Some("wasm"), Some("auto"))).is_err());
        assert!(chosen(&cell, &out(Some("wasm"), Some("int9"))).is_err());
    }

    /// `kill -9` of the browser in the middle of a run costs the cell it was running, and only it:
    /// the next cell gets a new session, and no process of the killed session is left.
    #[test]
    fn killing_the_browser_costs_only_that_cell() {
        let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/webq-page");
        let server = match (PageServer::start(&page), BrowserKind::Firefox.locate()) {
            (Ok(s), Ok(_)) => s,
            (s, l) => {
                let why = format!("{:?} {:?}", s.err(), l.err());
                crate::browsers::skip_without_browsers(&format!("needs Firefox and the page bundle: {why}"));
                return;
            }
        };
        let cells: Vec<Cell> =
            ["int4-g128-sym", "int8-pc-sym", "fp16", "int2-g32-asym", "int3-g32-asym", "int4-g32-asym"]
                .iter()
                .map(|p| crate::cell::test_cell(Runtime::Firefox, CellBackend::Webgpu, p, 256, 512))
                .collect();
        let refs: Vec<&Cell> = cells.iter().collect();
        let dir = std::env::temp_dir().join(format!("webq-kill-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = ResultsStore::open(&dir).unwrap();
        // The killed session's profile directory names this process: its Firefox command line has it.
        let pattern = format!("webq-firefox-{}-", std::process::id());
        let mut seen = 0;
        let mut progress = |_: &CellRecord| {
            seen += 1;
            if seen == 2 {
                let _ = std::process::Command::new("pkill").args(["-9", "-f", &pattern]).status();
            }
        };
        let url = server.url();
        let ctx = RunContext { page_url: &url, reps: 1, bench: BenchRequest::default(), trace: false };
        let ids = RunIds { run_id: "kill", matrix: "kill" };
        let mut runner = BrowserRunner::new(BrowserKind::Firefox, &ctx);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let none = std::collections::HashSet::new();
        let work = run_cells(&mut runner, refs, &none, &ids, &mut store, &mut progress);
        rt.block_on(work).unwrap();
        let (records, _) = crate::results::load(&dir).unwrap();
        let statuses: Vec<Status> = records.iter().map(|r| r.status).collect();
        assert_eq!(statuses.len(), cells.len());
        assert_eq!(statuses.iter().filter(|s| **s == Status::Crash).count(), 1, "{statuses:?}");
        assert_eq!(statuses[2], Status::Crash, "the cell after the kill: {statuses:?}");
        assert!(statuses.iter().all(|s| matches!(s, Status::Pass | Status::Crash)), "{statuses:?}");
        let left = std::process::Command::new("pgrep").args(["-f", &pattern]).output().unwrap();
        assert!(left.stdout.is_empty(), "processes left: {}", String::from_utf8_lossy(&left.stdout));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
