//! `webq ops`: the per-op cells (layer and RMS norm, GELU, SwiGLU, rotary, attention with its
//! masks and grouped heads, the KV cache) on each backend of each browser: the page runs the ops
//! and returns their outputs, and they are judged here, natively, against the CPU reference with
//! the tolerances of `engine/src/models/op_cases.rs`. Exits non-zero when a case fails or a
//! backend the browser has gives a malformed answer; a backend the browser lacks is said so.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};
use webq_engine::models::op_cases::op_cases;
use webq_engine::protocol::{CellBackend, OpCasesAnswer, OpCasesSpec, WebnnDevice};
use webq_engine::reference::Arith;

use crate::browser_run::{environment, load_page};
use crate::browsers::{BrowserKind, Session};
use crate::server::PageServer;

#[derive(Args)]
pub struct OpsArgs {
    /// Browsers to run in (chromium, chrome-shell, firefox, webkitgtk).
    #[arg(long, value_delimiter = ',', default_value = "chrome-shell,firefox")]
    browsers: Vec<String>,
    /// Backends (wasm, webgpu, webnn).
    #[arg(long, value_delimiter = ',', default_value = "wasm,webgpu,webnn")]
    backends: Vec<CellBackend>,
    /// WebNN device types.
    #[arg(long, value_delimiter = ',', default_value = "cpu,gpu,npu")]
    devices: Vec<WebnnDevice>,
    /// Arithmetic of the WGSL ops (webgpu; the other backends compute in f32).
    #[arg(long, value_delimiter = ',', default_value = "f32,f16")]
    arith: Vec<Arith>,
    /// Appends one JSON line per case here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The page bundle (scripts/build-page).
    #[arg(long, default_value = "target/webq-page")]
    page: PathBuf,
}

/// What one backend of one browser did.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
}

pub fn run(args: &OpsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let server = PageServer::start(&args.page)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut jsonl = match &args.out {
        Some(p) => Some(std::fs::OpenOptions::new().create(true).append(true).open(p)?),
        None => None,
    };
    let cases = op_cases();
    let (mut passed, mut failed) = (0, Vec::new());
    for name in &args.browsers {
        let kind =
            BrowserKind::ALL.into_iter().find(|b| b.name() == name).ok_or_else(|| format!("unknown browser {name}"))?;
        let session = rt.block_on(Session::start(kind, &kind.locate()?))?;
        rt.block_on(load_page(&session.client, &server.url()))?;
        let env = rt.block_on(environment(&session.client))?;
        for &backend in &args.backends {
            let devices: Vec<Option<WebnnDevice>> =
                if backend.is_webnn() { args.devices.iter().copied().map(Some).collect() } else { vec![None] };
            let ariths = if backend == CellBackend::Webgpu { args.arith.clone() } else { vec![Arith::F32] };
            for (device, arith) in devices.iter().flat_map(|d| ariths.iter().map(move |a| (*d, *a))) {
                let label = match (device, arith) {
                    (Some(d), _) => format!("{}/{backend}@{d}", kind.name()),
                    (None, Arith::F16) => format!("{}/{backend}-f16", kind.name()),
                    (None, Arith::F32) => format!("{}/{backend}", kind.name()),
                };
                let spec = OpCasesSpec { backend, device, arith };
                let answer = rt.block_on(ask(&session, &spec))?;
                if let Some(e) = &answer.error {
                    println!("{label:<28} unsupported: {e}");
                    continue;
                }
                let tally = judge(&label, arith, &cases, &answer, &env, jsonl.as_mut())?;
                passed += tally.passed;
                failed.extend(tally.failed);
            }
        }
        rt.block_on(session.close());
    }
    println!("{passed} passed, {} failed", failed.len());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("per-op cells failed: {}", failed.join("; ")).into())
    }
}

async fn ask(session: &Session, spec: &OpCasesSpec) -> Result<OpCasesAnswer, String> {
    let script = "const [spec, done] = arguments; \
                  window.webq.runOpCases(spec).then(done, (e) => done({error: String(e && e.stack || e)}));";
    let spec = serde_json::to_value(spec).map_err(|e| e.to_string())?;
    let v = session.client.execute_async(script, vec![spec]).await.map_err(|e| e.to_string())?;
    serde_json::from_value(v).map_err(|e| format!("malformed answer to runOpCases: {e}"))
}

/// Judges each case of `answer` against the reference; a missing or extra case is a failure.
fn judge(
    label: &str,
    arith: Arith,
    cases: &[webq_engine::models::op_cases::OpCase],
    answer: &OpCasesAnswer,
    env: &Value,
    mut jsonl: Option<&mut std::fs::File>,
) -> Result<Tally, Box<dyn std::error::Error>> {
    let mut t = Tally::default();
    if answer.cases.len() != cases.len() {
        t.failed.push(format!("{label}: {} answers for {} cases", answer.cases.len(), cases.len()));
    }
    for (case, got) in cases.iter().zip(&answer.cases) {
        let v = if got.case == case.name {
            case.judge(arith, got.output().map_err(|why| webq_engine::models::ModelError::Input { why }))
        } else {
            case.judge(
                arith,
                Err(webq_engine::models::ModelError::Input {
                    why: format!("the page answered `{}` in its place", got.case),
                }),
            )
        };
        let verdict = match &v.error {
            Some(e) => format!("FAIL: {e}"),
            None if v.verdict.pass => format!("pass {:.3}", v.verdict.worst_ratio),
            None => format!("FAIL {:.3} at output {}", v.verdict.worst_ratio, v.verdict.worst_index),
        };
        println!("{label:<28} {:<45} {verdict}", case.name);
        if v.verdict.pass {
            t.passed += 1;
        } else {
            t.failed.push(format!("{label} {}: {verdict}", case.name));
        }
        if let Some(f) = jsonl.as_mut() {
            let record = json!({"cell": label, "case": case.name, "op": case.op, "pass": v.verdict.pass,
                "worst_ratio": webq_conformance::number::non_finite_name(v.verdict.worst_ratio)
                    .map_or(json!(v.verdict.worst_ratio), |n| json!(n)),
                "worst_index": v.verdict.worst_index, "arith": arith.name(), "tolerance_ulp": case.ulps_in(arith), "error": v.error,
                "user_agent": env["userAgent"], "notes": answer.notes});
            writeln!(f, "{record}")?;
        }
    }
    Ok(t)
}
