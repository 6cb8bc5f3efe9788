//! `webq pair`: two models in one page at once, the seed's parallel execution: a WebGPU model cell
//! on the page's thread and a CPU (wasm) model cell in a Web Worker (harness/page/pair.js), against
//! the same two cells one after the other. A matrix's webgpu and wasm model cells of each browser
//! are paired in order. Every answer, sequential or concurrent, is judged like a `webq run` cell
//! (both verdicts), and the outputs must be bit-identical between the two modes: running at once may
//! change how fast a model is, never what it computes. Reports the throughput ratio it measures
//! (sequential wall time over concurrent, same work: warm inferences by count, never by time), the
//! most any overlap could give for those two cells, and each cell's slowdown when paired.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};
use webq_engine::protocol::{CellBackend, CellSpec, Runtime};
use webq_engine::webgpu::TuningTable;

use crate::browser_run::{
    adapter_name, environment, judge_model_answer, load_page, page_spec, RunContext, CELL_TIMEOUT,
};
use crate::browsers::{BrowserKind, Session};
use crate::cell::{expand, Cell};
use crate::matrix::Matrix;
use crate::model_cells::ModelRefs;
use crate::results::{Environment, Status};
use crate::server::PageServer;
use crate::verdict::blank_record;

#[derive(Args)]
pub struct PairArgs {
    /// The matrix whose webgpu and wasm model cells are paired, browser by browser.
    #[arg(long, default_value = "matrices/pair.toml")]
    matrix: PathBuf,
    /// Rounds after a first untimed one (which fetches the weights): each runs the pair one after
    /// the other and at once, which one first alternating.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Appends one JSON line per pair here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The page bundle (scripts/build-page).
    #[arg(long, default_value = "target/webq-page")]
    page: PathBuf,
}

/// One WebGPU cell and one wasm cell of a browser.
#[derive(Clone, Debug)]
pub struct Pair {
    pub gpu: Cell,
    pub cpu: Cell,
}

/// The matrix's pairs for `runtime`: its webgpu and wasm model cells, zipped in order.
pub fn pairs(matrix: &Matrix, runtime: Runtime) -> Result<Vec<Pair>, String> {
    if matrix.bench.warm_ms > 0.0 {
        return Err(format!(
            "{}: warm_ms = {}: a pair compares the same work both ways, so warm inferences go by count (min_warm), not by time",
            matrix.path.display(),
            matrix.bench.warm_ms
        ));
    }
    let (cells, _) = expand(matrix);
    let of = |b: CellBackend| -> Vec<Cell> {
        cells.iter().filter(|c| c.runtime == runtime && c.model.is_some() && c.backend == b).cloned().collect()
    };
    let (gpu, cpu) = (of(CellBackend::Webgpu), of(CellBackend::Wasm));
    if gpu.len() != cpu.len() || gpu.is_empty() {
        return Err(format!(
            "{}: {} webgpu and {} wasm model cells for {runtime}: a pair needs one of each, as many of one as of the other",
            matrix.path.display(),
            gpu.len(),
            cpu.len()
        ));
    }
    Ok(gpu.into_iter().zip(cpu).map(|(gpu, cpu)| Pair { gpu, cpu }).collect())
}

/// The page's answer to `runPair`.
#[derive(Debug, Deserialize)]
struct PairAnswer {
    mode: String,
    gpu: Value,
    cpu: Value,
    wall_ms: f64,
    gpu_ms: f64,
    /// As the worker timed it.
    cpu_ms: f64,
    /// When its answer reached the page (later while the page's thread is busy).
    cpu_seen_ms: f64,
    hardware_concurrency: Option<u32>,
}

/// Wall times of one mode, one entry a round.
#[derive(Debug, Default, Clone)]
pub struct Times {
    pub wall_ms: Vec<f64>,
    pub gpu_ms: Vec<f64>,
    /// The worker's cell as the worker timed it.
    pub cpu_ms: Vec<f64>,
    /// The worker's cell until its answer reached the page.
    pub cpu_seen_ms: Vec<f64>,
}

/// What a pair measured in one browser.
#[derive(Debug, Clone)]
pub struct PairResult {
    pub browser: &'static str,
    pub pair: Pair,
    pub sequential: Times,
    pub concurrent: Times,
    pub user_agent: String,
    pub hardware_concurrency: Option<u32>,
    /// Why a round did not count: a cell that did not pass, outputs that changed between modes.
    pub failures: Vec<String>,
}

fn median(v: &[f64]) -> f64 {
    webq_engine::models::bench::Spread::of(v).map_or(f64::NAN, |s| s.median_ms)
}

impl PairResult {
    /// Sequential over concurrent wall time, medians: the throughput of the pair at once relative
    /// to one after the other.
    pub fn ratio(&self) -> f64 {
        median(&self.sequential.wall_ms) / median(&self.concurrent.wall_ms)
    }

    /// The most overlap could give these two cells: both one after the other over the longer alone.
    pub fn ideal(&self) -> f64 {
        let (g, c) = (median(&self.sequential.gpu_ms), median(&self.sequential.cpu_ms));
        (g + c) / g.max(c)
    }

    /// Each cell's wall time paired over alone.
    pub fn slowdowns(&self) -> (f64, f64) {
        (
            median(&self.concurrent.gpu_ms) / median(&self.sequential.gpu_ms),
            median(&self.concurrent.cpu_ms) / median(&self.sequential.cpu_ms),
        )
    }

    pub fn json(&self) -> Value {
        let (gs, cs) = self.slowdowns();
        json!({
            "schema": 2, "kind": "pair", "browser": self.browser, "user_agent": self.user_agent,
            "hardware_concurrency": self.hardware_concurrency, "host_cores": host_cores(),
            "gpu_cell": self.pair.gpu.id(), "cpu_cell": self.pair.cpu.id(),
            "rounds": self.sequential.wall_ms.len(),
            "sequential_ms": self.sequential.wall_ms, "concurrent_ms": self.concurrent.wall_ms,
            "sequential_gpu_ms": self.sequential.gpu_ms, "sequential_cpu_ms": self.sequential.cpu_ms,
            "concurrent_gpu_ms": self.concurrent.gpu_ms, "concurrent_cpu_ms": self.concurrent.cpu_ms,
            "sequential_cpu_seen_ms": self.sequential.cpu_seen_ms, "concurrent_cpu_seen_ms": self.concurrent.cpu_seen_ms,
            "ratio": finite(self.ratio()), "ideal": finite(self.ideal()),
            "gpu_slowdown": finite(gs), "cpu_slowdown": finite(cs), "failures": self.failures,
        })
    }
}

fn finite(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        json!(webq_conformance::number::non_finite_name(x).unwrap_or("NaN"))
    }
}

pub fn host_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A prepared side of a pair: the spec the page runs and the references it is judged against.
struct Side<'c> {
    cell: &'c Cell,
    spec: CellSpec,
    refs: Arc<ModelRefs>,
}

fn side<'c>(cell: &'c Cell, adapter: &str, ctx: &RunContext<'_>) -> Result<Side<'c>, String> {
    let (spec, refs) = page_spec(cell, &TuningTable::seed(), adapter, ctx)?;
    let refs = refs.flatten().ok_or_else(|| format!("{}: not a model cell of a named backend", cell.id()))?;
    Ok(Side { cell, spec, refs })
}

/// Runs `pairs` in `kind`'s page: a first sequential round (fetching the weights; judged, not
/// timed), then `rounds` rounds of both modes. Fails only when the browser cannot be driven; a
/// cell that does not pass, or changes its output between modes, is in the result's failures.
pub async fn run_pairs(
    kind: BrowserKind,
    pairs: &[Pair],
    matrix: &Matrix,
    page_url: &str,
    rounds: usize,
) -> Result<Vec<PairResult>, String> {
    let session = Session::start(kind, &kind.locate()?).await?;
    let result = pairs_in(&session, kind, pairs, matrix, page_url, rounds).await;
    session.close().await;
    result
}

async fn pairs_in(
    session: &Session,
    kind: BrowserKind,
    pairs: &[Pair],
    matrix: &Matrix,
    page_url: &str,
    rounds: usize,
) -> Result<Vec<PairResult>, String> {
    load_page(&session.client, page_url).await?;
    let env = environment(&session.client).await?;
    if env["webgpu"]["available"] != Value::Bool(true) {
        return Err(format!(
            "{}: a pair needs WebGPU: {}",
            kind.name(),
            env["webgpu"]["reason"].as_str().unwrap_or("not available")
        ));
    }
    let adapter = adapter_name(&env).unwrap_or_default();
    let ctx = RunContext { page_url, reps: matrix.reps, bench: matrix.bench, trace: false };
    let environment = Environment {
        runtime: kind.name().into(),
        adapter: Some(adapter.clone()),
        graphics_api: Some("WebGPU".into()),
        user_agent: env["userAgent"].as_str().map(str::to_string),
        ..Default::default()
    };
    let mut results = Vec::new();
    for pair in pairs {
        let (gpu, cpu) = (side(&pair.gpu, &adapter, &ctx)?, side(&pair.cpu, &adapter, &ctx)?);
        let mut r = PairResult {
            browser: kind.name(),
            pair: pair.clone(),
            sequential: Times::default(),
            concurrent: Times::default(),
            user_agent: environment.user_agent.clone().unwrap_or_default(),
            hardware_concurrency: None,
            failures: Vec::new(),
        };
        // The first round's outputs: every later one must repeat them bit for bit.
        let mut first: Option<(Value, Value)> = None;
        for round in 0..=rounds {
            let modes: &[&str] = match round {
                0 => &["sequential"],
                r if r % 2 == 1 => &["sequential", "concurrent"],
                _ => &["concurrent", "sequential"],
            };
            for &mode in modes {
                let a = ask(session, &gpu.spec, &cpu.spec, mode).await?;
                r.hardware_concurrency = a.hardware_concurrency;
                let label = format!("{} round {round} {mode}", kind.name());
                for (s, out) in [(&gpu, &a.gpu), (&cpu, &a.cpu)] {
                    let mut rec = blank_record(s.cell, "pair", &matrix.name, environment.clone());
                    judge_model_answer(s.cell, out.clone(), Some(s.refs.clone()), &mut rec);
                    if rec.status != Status::Pass {
                        r.failures.push(format!(
                            "{label}: {} is {}: {}",
                            s.cell.id(),
                            rec.status.name(),
                            rec.reason.unwrap_or_default()
                        ));
                    }
                }
                let outputs = (a.gpu["y_b64"].clone(), a.cpu["y_b64"].clone());
                match &first {
                    None => first = Some(outputs),
                    Some((g, c)) => {
                        for (name, was, now) in [("webgpu", g, &outputs.0), ("wasm", c, &outputs.1)] {
                            if was != now {
                                r.failures.push(format!("{label}: the {name} cell's output differs from round 0's"));
                            }
                        }
                    }
                }
                if round == 0 {
                    continue;
                }
                let t = if a.mode == "concurrent" { &mut r.concurrent } else { &mut r.sequential };
                t.wall_ms.push(a.wall_ms);
                t.gpu_ms.push(a.gpu_ms);
                t.cpu_ms.push(a.cpu_ms);
                t.cpu_seen_ms.push(a.cpu_seen_ms);
            }
        }
        results.push(r);
    }
    Ok(results)
}

async fn ask(session: &Session, gpu: &CellSpec, cpu: &CellSpec, mode: &str) -> Result<PairAnswer, String> {
    let script = "const [pair, done] = arguments; \
                  window.webq.runPair(pair).then(done, (e) => done({error: String(e && e.stack || e)}));";
    let pair = json!({"gpu": gpu, "cpu": cpu, "mode": mode});
    let call = session.client.execute_async(script, vec![pair]);
    // Two cells, one after the other at worst.
    let v = match tokio::time::timeout(2 * CELL_TIMEOUT, call).await {
        Err(_) => return Err(format!("runPair ({mode}): no answer within {} s", 2 * CELL_TIMEOUT.as_secs())),
        Ok(r) => r.map_err(|e| format!("runPair ({mode}): {e}"))?,
    };
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(format!("runPair ({mode}): {e}"));
    }
    serde_json::from_value(v).map_err(|e| format!("runPair ({mode}): malformed answer: {e}"))
}

pub fn run(args: &PairArgs) -> Result<(), Box<dyn std::error::Error>> {
    let matrix = Matrix::load(&args.matrix)?;
    let server = PageServer::start(&args.page)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut failures = Vec::new();
    println!("webq pair: {} ({} cores here), {} rounds", args.matrix.display(), host_cores(), args.rounds);
    for runtime in matrix.runtimes.iter().filter(|r| **r != Runtime::Native) {
        let kind = BrowserKind::ALL.into_iter().find(|k| k.runtime() == *runtime).ok_or("no such browser")?;
        let results = pairs(&matrix, *runtime)
            .and_then(|p| rt.block_on(run_pairs(kind, &p, &matrix, &server.url(), args.rounds)));
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                println!("{:<14} FAIL: {e}", kind.name());
                failures.push(e);
                continue;
            }
        };
        for r in &results {
            print_result(r);
            if let Some(out) = &args.out {
                append(out, &r.json())?;
            }
            failures.extend(r.failures.iter().cloned());
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("webq pair: {}", failures.join("; ")).into())
    }
}

fn print_result(r: &PairResult) {
    let (gs, cs) = r.slowdowns();
    println!(
        "{:<14} {} + {}: one after the other {:.0} ms, at once {:.0} ms: {:.2}x (the most overlap could give: {:.2}x); \
         alone {:.0} ms and {:.0} ms, paired {:.2}x and {:.2}x that (the worker's answer reached the page after {:.0} ms); \
         {} cores in the browser; {}",
        r.browser,
        r.pair.gpu.id(),
        r.pair.cpu.id(),
        median(&r.sequential.wall_ms),
        median(&r.concurrent.wall_ms),
        r.ratio(),
        r.ideal(),
        median(&r.sequential.gpu_ms),
        median(&r.sequential.cpu_ms),
        gs,
        cs,
        median(&r.concurrent.cpu_seen_ms),
        r.hardware_concurrency.map_or("?".into(), |n| n.to_string()),
        if r.failures.is_empty() { "every answer passed, outputs identical in both modes".into() } else { format!("{} failures", r.failures.len()) },
    );
}

fn append(path: &Path, v: &Value) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(f, "{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIR: &str = r#"
schema = 1
name = "pair-test"
description = "a pair in Chromium"
runtimes = ["chromium"]
backends = ["webgpu", "wasm"]
precisions = ["int8-pc-sym"]
min_warm = 1

[[models]]
name = "minilm-2"
family = "text"
backends = ["webgpu"]
precisions = ["int8-pc-sym"]
sentences = 2

[[models]]
name = "vit-1-1"
family = "vision"
backends = ["wasm"]
precisions = ["int4-g128-sym"]
depth = 1
inputs = 1
quantizer = "rtn"
"#;

    fn matrix(text: &str) -> Matrix {
        Matrix::parse(Path::new("pair-test.toml"), text).unwrap()
    }

    #[test]
    fn pairs_zip_webgpu_with_wasm_model_cells_and_refuse_time_boxed_warm_runs() {
        let m = matrix(PAIR);
        let p = pairs(&m, Runtime::Chromium).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].gpu.backend, p[0].cpu.backend), (CellBackend::Webgpu, CellBackend::Wasm));
        let e = pairs(&m, Runtime::Firefox).unwrap_err();
        assert!(e.contains("0 webgpu and 0 wasm") && e.contains("pair-test.toml"), "{e}");
        let lopsided = matrix(&PAIR.replace("backends = [\"wasm\"]\n", "backends = [\"wasm\", \"webgpu\"]\n"));
        let e = pairs(&lopsided, Runtime::Chromium).unwrap_err();
        assert!(e.contains("2 webgpu and 1 wasm"), "{e}");
        let timed = matrix(&PAIR.replace("min_warm = 1", "warm_ms = 500"));
        let e = pairs(&timed, Runtime::Chromium).unwrap_err();
        assert!(e.contains("warm_ms = 500") && e.contains("by count"), "{e}");
    }

    /// A WebGPU model and a wasm model in one Chromium page, at once (the wasm one in a Web Worker)
    /// and one after the other: every answer judged and passing, the outputs identical both ways.
    #[test]
    fn a_webgpu_model_and_a_worker_wasm_model_run_at_once_in_chromium_and_compute_the_same() {
        let kind = BrowserKind::Chromium;
        let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/webq-page");
        let server = match (kind.locate(), PageServer::start(&page)) {
            (Ok(_), Ok(s)) => s,
            (Err(why), _) | (_, Err(why)) => {
                return crate::browsers::skip_without_browsers(&format!("needs Chromium and the page bundle: {why}"))
            }
        };
        let m = matrix(PAIR);
        let p = pairs(&m, Runtime::Chromium).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let results = rt.block_on(run_pairs(kind, &p, &m, &server.url(), 1)).unwrap();
        let r = &results[0];
        assert!(r.failures.is_empty(), "{:#?}", r.failures);
        assert_eq!((r.sequential.wall_ms.len(), r.concurrent.wall_ms.len()), (1, 1));
        for t in [&r.sequential, &r.concurrent] {
            assert!(t.wall_ms[0] > 0.0 && t.gpu_ms[0] > 0.0 && t.cpu_ms[0] > 0.0, "{t:?}");
        }
        // At once, the pair takes at least as long as its longer cell; one after the other, their sum.
        let c = &r.concurrent;
        assert!(c.wall_ms[0] + 1.0 >= c.gpu_ms[0].max(c.cpu_ms[0]), "{c:?}");
        let s = &r.sequential;
        assert!(s.wall_ms[0] + 1.0 >= s.gpu_ms[0] + s.cpu_ms[0], "{s:?}");
        // The worker's answer reaches the page no sooner than the worker finished it.
        assert!(c.cpu_seen_ms[0] + 1.0 >= c.cpu_ms[0] && s.cpu_seen_ms[0] + 1.0 >= s.cpu_ms[0], "{c:?} {s:?}");
        assert!(r.ratio().is_finite() && r.ideal() >= 1.0, "{}", r.json());
        eprintln!("{}", r.json());
    }
}
