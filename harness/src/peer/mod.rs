//! `webq peer`: webq's GEMV against onnxruntime-web's `MatMulNBits` in the same browser, on the same
//! packed 4-bit weights and activations. Both outputs go through the same kernel verdict against the
//! CPU emulation (a peer that computes wrong numbers is reported as such); the table gives each
//! one's time per run and webq's time over ORT-web's. ORT-web runs from both of its WebGPU builds
//! (`ort.webgpu.min.mjs`: the C++ WebGPU EP; `ort.all.min.mjs`: the JSEP one) and its wasm EP.
//!
//! Clocks: webq's figure is the page's wall time per dispatch over `--reps` dispatches in one
//! submission with one readback (its GPU-timestamp median beside it where the browser has
//! timestamps); ORT-web's is wall time per `session.run` over `--reps` runs with the output left on
//! the GPU (`preferredOutputLocation: 'gpu-buffer'`) and one readback at the end.
//!
//! Every measurement is appended to `peer.jsonl` ([`record`]) as it is made, and `peer.html`
//! ([`page`]) is built again from the whole file at the end, so rounds run one after another into
//! one directory are summarized together (medians and ranges over them).

pub mod page;
pub mod record;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use serde_json::{json, Value};
use webq_conformance::KernelTolerance;
use webq_engine::protocol::{CellBackend, CellSpec, Outcome, Precision};
use webq_engine::quant::{quantize, QuantFormat, Quantizer};
use webq_engine::reference::{emulate, Arith};
use webq_engine::seeded;
use webq_engine::webgpu::TuningTable;
use webq_reports::ReportError;

use crate::browser_run::{adapter_name, environment, load_page};
use crate::browsers::{BrowserKind, Session};
use crate::models::cache_dir;
use crate::onnx::matmul_nbits;
use crate::report::write_atomic;
use crate::results::unix_now;
use crate::run::revision;
use crate::server::PageServer;
use record::{PeerRecord, PeerStore, PEER_FILE, PEER_SCHEMA};

/// The onnxruntime-web release webq is compared with (scripts/setup fetches it, sha256-checked).
pub const ORT_VERSION: &str = "1.30.0";

/// Where scripts/setup puts onnxruntime-web's `dist/`.
pub fn ort_dir() -> PathBuf {
    cache_dir().join("npm").join(format!("onnxruntime-web-{ORT_VERSION}")).join("dist")
}

#[derive(Args)]
pub struct PeerArgs {
    /// Browsers to compare in (chromium, firefox).
    #[arg(long, value_delimiter = ',', default_value = "chromium,firefox")]
    browsers: Vec<String>,
    /// Activation rows M (1: GEMV, as in decoding; more: webq's GEMM against MatMulNBits' own).
    #[arg(long, default_value_t = 1)]
    m: usize,
    /// Output rows N.
    #[arg(long, default_value_t = 4096)]
    n: usize,
    /// Inner dimension K.
    #[arg(long, default_value_t = 4096)]
    k: usize,
    /// Timed runs per measurement.
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Which backends to compare, each side's: webgpu (webq's WGSL against ORT's two WebGPU
    /// builds), wasm (webq's CPU path against ORT's wasm EP).
    #[arg(long, value_delimiter = ',', default_value = "webgpu,wasm", value_parser = ["webgpu", "wasm"])]
    backends: Vec<String>,
    /// Formats (4-bit grouped: MatMulNBits' block sizes with and without zero points).
    #[arg(long, value_delimiter = ',', default_value = "int4-g32-sym,int4-g32-asym,int4-g128-sym,int4-g128-asym")]
    formats: Vec<QuantFormat>,
    /// Appends to peer.jsonl here and writes peer.html from all of it.
    #[arg(long, default_value = "out/peer")]
    out: PathBuf,
    /// A name for this run's records on the page ("before", "after", a bundle's name); rounds
    /// with the same label are summarized together.
    #[arg(long)]
    label: Option<String>,
    /// The page bundle (scripts/build-page).
    #[arg(long, default_value = "target/webq-page")]
    page: PathBuf,
}

/// One measured runner: webq's backend, or an ORT-web build and execution provider.
#[derive(Clone, Copy)]
enum Runner {
    Webq(CellBackend),
    Ort { build: &'static str, ep: &'static str },
}

impl Runner {
    const ALL: [Runner; 5] = [
        Runner::Webq(CellBackend::Webgpu),
        Runner::Ort { build: "ort.webgpu.min.mjs", ep: "webgpu" },
        Runner::Ort { build: "ort.all.min.mjs", ep: "webgpu" },
        Runner::Webq(CellBackend::Wasm),
        Runner::Ort { build: "ort.all.min.mjs", ep: "wasm" },
    ];

    fn name(self) -> String {
        match self {
            Runner::Webq(b) => format!("webq {b}"),
            Runner::Ort { build, ep } => {
                format!("ort {ep} ({})", if build.contains("webgpu") { "C++ EP build" } else { "JSEP build" })
            }
        }
    }

    /// The backend kind both sides share, for the ratio: webgpu or wasm.
    fn backend(self) -> &'static str {
        match self {
            Runner::Webq(CellBackend::Webgpu) | Runner::Ort { ep: "webgpu", .. } => "webgpu",
            _ => "wasm",
        }
    }
}

/// One measurement: the runner's time per run (ms) and verdict, or why it did not run.
#[derive(Default)]
struct Measured {
    ms: Option<f64>,
    gpu_ms: Option<f64>,
    verdict: Option<(bool, f64)>,
    /// The kernel webq's page says it ran.
    kernel: Option<String>,
    note: String,
}

impl Measured {
    fn failed(note: String) -> Measured {
        Measured { note, ..Default::default() }
    }
}

pub fn run(args: &PeerArgs) -> Result<(), Box<dyn std::error::Error>> {
    let ort = ort_dir();
    let server = PageServer::start_with_peer(&args.page, Some(&ort))?;
    std::fs::create_dir_all(&args.out)?;
    let mut store = PeerStore::open(&args.out)?;
    let run_id = format!("peer-{}", unix_now());
    let revision = revision();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (m, n, k) = (args.m, args.n, args.k);
    let w = seeded::weights(1, n, k);
    let x = seeded::activations(1, m, k);
    let x_b64 = base64::engine::general_purpose::STANDARD.encode(bytemuck::cast_slice(&x));
    println!(
        "{:<9} {:<15} {:<26} {:>10} {:>10} {:>14}  note",
        "browser", "format", "runner", "ms/run", "gpu ms", "verdict"
    );
    // webq's own cells must run and pass; a peer's wrong output is a finding, reported, not an error.
    let mut own_failures = Vec::new();
    for name in &args.browsers {
        let kind =
            BrowserKind::ALL.into_iter().find(|b| b.name() == name).ok_or_else(|| format!("unknown browser {name}"))?;
        let located = kind.locate()?;
        let session = rt.block_on(Session::start(kind, &located))?;
        rt.block_on(load_page(&session.client, &server.url()))?;
        let env = rt.block_on(environment(&session.client))?;
        let adapter = adapter_name(&env).unwrap_or_default();
        let gemv = TuningTable::seed().pick(kind.name(), &adapter, None);
        for &format in &args.formats {
            let q = quantize(&w, n, k, format, Quantizer::RoundToNearest)?;
            let model = base64::engine::general_purpose::STANDARD.encode(matmul_nbits(&q, m)?);
            let want = emulate(&x, m, &q, Arith::F32);
            let judge = |y: &[f32]| {
                let v = KernelTolerance::matmul_f32().judge(y, &want.y, &want.abs_dot, k);
                (v.pass, v.worst_ratio)
            };
            let mut times: Vec<(Runner, Option<f64>)> = Vec::new();
            for runner in Runner::ALL.into_iter().filter(|r| args.backends.iter().any(|b| b == r.backend())) {
                let measured = match runner {
                    Runner::Webq(backend) => {
                        let spec = CellSpec {
                            model: None,
                            backend,
                            device: None,
                            precision: Precision::Format(format),
                            m,
                            n,
                            k,
                            seed: 1,
                            arith: Arith::F32,
                            gemv,
                            quantizer: Quantizer::RoundToNearest,
                            reps: args.reps,
                            family: None,
                            layer: None,
                            memory_cap: None,
                            plant: None,
                        };
                        rt.block_on(webq_run(&session, &spec, &judge))
                    }
                    Runner::Ort { build, ep } => {
                        rt.block_on(ort_run(&session, build, ep, &model, &x_b64, args.reps, (m, n), &judge))
                    }
                };
                let verdict = measured
                    .verdict
                    .map_or("-".to_string(), |(p, r)| format!("{} {r:.2}", if p { "pass" } else { "FAIL" }));
                println!(
                    "{:<9} {:<15} {:<26} {:>10} {:>10} {:>14}  {}",
                    kind.name(),
                    format.to_string(),
                    runner.name(),
                    measured.ms.map_or("-".into(), |v| format!("{v:.2}")),
                    measured.gpu_ms.map_or("-".into(), |v| format!("{v:.2}")),
                    verdict,
                    measured.kernel.as_ref().map_or(measured.note.clone(), |k| format!("kernel {k} {}", measured.note))
                );
                store.append(&PeerRecord {
                    schema: PEER_SCHEMA,
                    run_id: Some(run_id.clone()),
                    revision: Some(revision.clone()),
                    label: args.label.clone(),
                    browser: kind.name().to_string(),
                    user_agent: env["userAgent"].as_str().map(str::to_string),
                    adapter: adapter.clone(),
                    format: format.to_string(),
                    m,
                    n,
                    k,
                    reps: args.reps,
                    runner: runner.name(),
                    backend: runner.backend().to_string(),
                    webq_kernel: measured.kernel.clone(),
                    ms_per_run: measured.ms,
                    gpu_ms: measured.gpu_ms,
                    verdict_pass: measured.verdict.map(|v| v.0),
                    worst_ratio: measured.verdict.map(|v| v.1),
                    note: measured.note.clone(),
                })?;
                if matches!(runner, Runner::Webq(_)) && !measured.verdict.is_some_and(|v| v.0) {
                    own_failures.push(format!("{} {format} {}: {}", kind.name(), runner.name(), measured.note));
                }
                times.push((runner, if measured.verdict.is_some_and(|v| v.0) { measured.ms } else { None }));
            }
            for (r, t) in &times {
                if let (Runner::Ort { .. }, Some(ort_ms)) = (r, t) {
                    if let Some((_, Some(webq_ms))) =
                        times.iter().find(|(w, _)| matches!(w, Runner::Webq(_)) && w.backend() == r.backend())
                    {
                        println!(
                            "{:<9} {:<15} webq / {:<19} {:>10.2}x",
                            kind.name(),
                            format.to_string(),
                            r.name(),
                            webq_ms / ort_ms
                        );
                    }
                }
            }
        }
        rt.block_on(session.close());
    }
    let page = write_page(&args.out)?;
    println!("webq peer: records in {}, the page in {}", store.path().display(), page.display());
    if own_failures.is_empty() {
        Ok(())
    } else {
        Err(format!("webq's own cells did not pass: {}", own_failures.join("; ")).into())
    }
}

/// Builds `DIR/peer.html` from every record of `DIR/peer.jsonl`; returns its path.
pub fn write_page(dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let jsonl = dir.join(PEER_FILE);
    let (records, unreadable) = record::load(&jsonl).map_err(|e| format!("{}: {e}", jsonl.display()))?;
    for u in &unreadable {
        eprintln!("webq peer: {u}: skipped");
    }
    let html = webq_reports::render_peer(&page::page(&records, &unreadable)).map_err(|e: ReportError| e.to_string())?;
    let path = dir.join("peer.html");
    write_atomic(&path, &html)?;
    Ok(path)
}

/// webq's own cell, through the page's runCell.
async fn webq_run(session: &Session, spec: &CellSpec, judge: &dyn Fn(&[f32]) -> (bool, f64)) -> Measured {
    let script = "const [spec, done] = arguments; window.webq.runCell(spec).then(done, (e) => done({error_class: 'js_exception', error: String(e)}));";
    let spec_value = serde_json::to_value(spec).expect("a spec serializes");
    let answer = match session.client.execute_async(script, vec![spec_value]).await {
        Ok(a) => a,
        Err(e) => return Measured::failed(format!("webdriver: {e}")),
    };
    let out: webq_engine::protocol::CellOutput = match serde_json::from_value(answer) {
        Ok(o) => o,
        Err(e) => return Measured::failed(format!("malformed answer: {e}")),
    };
    // The wasm backend has no workgroup: its dot path (which bundle ran, and whether it fused) instead.
    let kernel = out.workgroup.clone().filter(|k| !k.is_empty()).or_else(|| out.dot_path.clone());
    match out.outcome(spec.precision, spec.m * spec.n) {
        Ok(Outcome::Ran { y, timings, .. }) => Measured {
            ms: Some(timings.wall_us / 1e3),
            gpu_ms: timings.gpu_us.map(|v| v / 1e3),
            verdict: Some(judge(&y)),
            note: String::new(),
            kernel,
        },
        Ok(Outcome::Failed { message, .. }) => Measured::failed(message),
        Err(why) => Measured::failed(why),
    }
}

/// ORT-web's MatMulNBits session, through peer.js.
#[allow(clippy::too_many_arguments)]
async fn ort_run(
    session: &Session,
    build: &str,
    ep: &str,
    model: &str,
    x: &str,
    reps: usize,
    (m, n): (usize, usize),
    judge: &dyn Fn(&[f32]) -> (bool, f64),
) -> Measured {
    let script =
        "const [spec, done] = arguments; window.webqPeer.run(spec).then(done, (e) => done({error: String(e)}));";
    let spec = json!({"build": build, "ep": ep, "model": model, "x": x, "rows": m, "reps": reps});
    let answer = match tokio::time::timeout(
        std::time::Duration::from_secs(600),
        session.client.execute_async(script, vec![spec]),
    )
    .await
    {
        Err(_) => return Measured::failed("timed out after 600 s".into()),
        Ok(Err(e)) => return Measured::failed(format!("webdriver: {e}")),
        Ok(Ok(a)) => a,
    };
    let placed = placements(&answer["log"]);
    if let Some(e) = answer["error"].as_str() {
        return Measured::failed(format!("{e}; {placed}"));
    }
    let y: Option<Vec<f32>> = answer["y"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .filter(|b| b.len() == 4 * m * n)
        .map(|b| bytemuck::pod_collect_to_vec::<u8, f32>(&b));
    let Some(y) = y else {
        return Measured::failed(format!("no output of {m} x {n} floats; {placed}"));
    };
    Measured {
        ms: answer["per_run_ms"].as_f64(),
        verdict: Some(judge(&y)),
        kernel: None,
        gpu_ms: None,
        note: format!(
            "create {:.0} ms, first run {:.1} ms; {placed}",
            answer["create_ms"].as_f64().unwrap_or(f64::NAN),
            answer["first_ms"].as_f64().unwrap_or(f64::NAN)
        ),
    }
}

/// Which execution providers ORT's verbose log names.
fn placements(log: &Value) -> String {
    let lines: Vec<&str> = log.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let mut eps: Vec<&str> =
        ["WebGpuExecutionProvider", "JsExecutionProvider", "CPUExecutionProvider", "WasmExecutionProvider"]
            .into_iter()
            .filter(|ep| lines.iter().any(|l| l.contains(ep)))
            .collect();
    eps.dedup();
    if eps.is_empty() {
        "log names no execution provider".into()
    } else {
        format!("log names {}", eps.join(", "))
    }
}
