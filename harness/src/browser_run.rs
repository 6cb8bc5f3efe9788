//! Running cells in real browsers: one session per browser, the page loaded once per session, one
//! cell per script call. A crashed or hung browser marks its cell (`crash`, `timeout`) and the next
//! cell gets a new session.

use std::time::Duration;

use serde_json::{json, Value};
use webq_engine::b64;
use webq_engine::webgpu::TuningTable;

use crate::browsers::{BrowserKind, Located, Session};
use crate::cell::Cell;
use crate::results::{unix_now, CellRecord, Environment, ResultsStore, RunDetail, Status};
use crate::verdict::{blank_record, judge, RawTimings, References};

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

fn environment_record(kind: BrowserKind, env: &Value) -> Environment {
    let gpu = &env["webgpu"];
    let adapter = gpu["adapter"].as_object().map(|a| {
        let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        [s("vendor"), s("architecture"), s("description")]
            .into_iter()
            .filter(|v| !v.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    });
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
    Timeout,
    Crash(String),
}

/// What every cell of a run shares.
pub struct RunContext<'a> {
    pub page_url: &'a str,
    pub run_id: &'a str,
    pub matrix: &'a str,
    pub reps: usize,
}

/// Runs `cells` (all of one browser) and appends their records.
pub async fn run_browser(
    kind: BrowserKind,
    cells: &[&Cell],
    ctx: &RunContext<'_>,
    store: &mut ResultsStore,
    progress: &mut impl FnMut(&CellRecord),
) -> std::io::Result<()> {
    let located: Result<Located, String> = kind.locate();
    let tuning = TuningTable::seed();
    let mut session: Option<(Session, Value)> = None;
    let mut refs: Option<References> = None;
    for cell in cells {
        let mut rec = blank_record(
            cell,
            ctx.run_id,
            ctx.matrix,
            Environment { runtime: kind.name().into(), ..Default::default() },
        );
        match &located {
            Err(missing) => {
                rec.error_class = Some("not_installed".into());
                rec.reason = Some(missing.clone());
            }
            Ok(located) => {
                if session.is_none() {
                    match open(kind, located, ctx.page_url).await {
                        Ok(s) => session = Some(s),
                        Err(e) => {
                            rec.error_class = Some("session".into());
                            rec.reason = Some(e);
                        }
                    }
                }
                if let Some((s, env)) = &session {
                    rec.environment = environment_record(kind, env);
                    match run_cell(s, env, cell, &tuning, ctx.reps, &mut refs, &mut rec).await {
                        Ok(()) => {}
                        Err(Failure::Timeout) => {
                            rec.status = Status::Timeout;
                            rec.error_class = Some("timeout".into());
                            rec.reason = Some(format!(
                                "no answer within {} s: the browser was restarted",
                                CELL_TIMEOUT.as_secs()
                            ));
                            session = None;
                        }
                        Err(Failure::Crash(msg)) => {
                            rec.status = Status::Crash;
                            rec.error_class = Some("crash".into());
                            rec.reason = Some(format!("the browser session died: {msg}"));
                            session = None;
                        }
                    }
                }
            }
        }
        rec.finished_at = unix_now();
        store.append(&rec)?;
        progress(&rec);
    }
    if let Some((s, _)) = session {
        s.close().await;
    }
    Ok(())
}

async fn open(kind: BrowserKind, located: &Located, url: &str) -> Result<(Session, Value), String> {
    let s = Session::start(kind, located).await?;
    load_page(&s.client, url).await?;
    let env = environment(&s.client).await?;
    Ok((s, env))
}

async fn run_cell(
    s: &Session,
    env: &Value,
    cell: &Cell,
    tuning: &TuningTable,
    reps: usize,
    refs: &mut Option<References>,
    rec: &mut CellRecord,
) -> Result<(), Failure> {
    if cell.backend == "webgpu" && env["webgpu"]["available"] != Value::Bool(true) {
        rec.status = Status::Unsupported;
        rec.error_class = Some("no_webgpu".into());
        rec.reason = Some(env["webgpu"]["reason"].as_str().unwrap_or("no WebGPU").to_string());
        return Ok(());
    }
    let adapter = rec.environment.adapter.clone().unwrap_or_default();
    let workgroup = cell.workgroup.unwrap_or_else(|| tuning.pick(&cell.runtime, &adapter, cell.kernel, None));
    let spec = json!({
        "backend": cell.backend, "device": cell.device, "precision": cell.precision,
        "m": cell.m, "n": cell.n, "k": cell.k, "seed": cell.seed,
        "arith": cell.arith, "workgroup": workgroup.to_string(), "quantizer": cell.quantizer, "reps": reps,
        "family": cell.family, "layer": cell.layer, "memory_cap": cell.memory_cap,
    });
    let script = "const [spec, done] = arguments; \
                  window.webq.runCell(spec).then(done, (e) => done({error_class: 'js_exception', error: String(e && e.stack || e)}));";
    let call = s.client.execute_async(script, vec![spec]);
    let out = match tokio::time::timeout(CELL_TIMEOUT, call).await {
        Err(_) => return Err(Failure::Timeout),
        Ok(Err(e)) => {
            let msg = e.to_string();
            if msg.contains("timeout") {
                return Err(Failure::Timeout);
            }
            return Err(Failure::Crash(msg));
        }
        Ok(Ok(v)) => v,
    };
    rec.workgroup = out["workgroup"].as_str().map(str::to_string);
    rec.detail = Some(detail_of(&out));
    judge_output(cell, &out, refs, rec);
    Ok(())
}

/// What the page says ran, beyond the cell itself: the page's answer carries `RunDetail`'s fields
/// under the same names.
pub fn detail_of(out: &Value) -> RunDetail {
    serde_json::from_value(out.clone()).unwrap_or_default()
}

/// Status, verdicts and timings from the page's answer: an error is `unsupported` when the browser
/// lacks the feature or rejects the precision, else `error`; an output is judged against references
/// of the format that actually ran.
fn judge_output(cell: &Cell, out: &Value, refs: &mut Option<References>, rec: &mut CellRecord) {
    if let Some(err) = out["error"].as_str() {
        let class = out["error_class"].as_str().unwrap_or("unknown").to_string();
        let unsupported = class == "unsupported" || out["error_kind"] == "PRECISION_NOT_SUPPORTED";
        rec.status = if unsupported { Status::Unsupported } else { Status::Error };
        rec.reason = Some(err.to_string());
        rec.error_class = Some(class);
        return;
    }
    let y: Vec<f32> = match out["y_b64"].as_str().map(b64::decode) {
        Some(Ok(bytes)) if bytes.len() % 4 == 0 => bytemuck::cast_slice(&bytes).to_vec(),
        _ => {
            rec.error_class = Some("bad_output".into());
            rec.reason = Some("the page returned no output bytes".into());
            return;
        }
    };
    let ran = out["precision"].as_str().unwrap_or(&cell.precision);
    let format = match ran.parse() {
        Ok(f) => f,
        Err(e) => {
            rec.error_class = Some("bad_output".into());
            rec.reason = Some(format!("the page ran an unknown precision `{ran}`: {e}"));
            return;
        }
    };
    let r = match References::for_cell(refs, cell, format) {
        Ok(r) => r,
        Err(e) => {
            rec.error_class = Some("bad_input".into());
            rec.reason = Some(e);
            return;
        }
    };
    let t = RawTimings {
        compile_ms: out["compile_ms"].as_f64(),
        upload_ms: out["upload_ms"].as_f64().unwrap_or(0.0),
        dispatches: out["dispatches"].as_u64().unwrap_or(0) as usize,
        wall_us: out["wall_us"].as_f64().unwrap_or(f64::NAN),
        gpu_us: out["gpu_us"].as_f64(),
    };
    judge(cell, r, &y, t, rec);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::PageServer;
    use std::path::Path;

    /// `kill -9` of the browser in the middle of a run costs the cell it was running, and only it:
    /// the next cell gets a new session, and no process of the killed session is left.
    #[test]
    fn killing_the_browser_costs_only_that_cell() {
        let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/webq-page");
        let server = match (PageServer::start(&page), BrowserKind::Firefox.locate()) {
            (Ok(s), Ok(_)) => s,
            (s, l) => {
                let why = format!("{:?} {:?}", s.err(), l.err());
                assert!(std::env::var("WEBQ_REQUIRE_BROWSERS").as_deref() != Ok("1"), "browsers required: {why}");
                eprintln!("SKIPPED: needs Firefox and the page bundle (scripts/setup, scripts/build-page): {why}");
                return;
            }
        };
        let cells: Vec<Cell> =
            ["int4-g128-sym", "int8-pc-sym", "fp16", "int2-g32-asym", "int3-g32-asym", "int4-g32-asym"]
                .iter()
                .map(|p| Cell {
                    runtime: "firefox".into(),
                    backend: "webgpu".into(),
                    precision: p.to_string(),
                    kernel: webq_engine::webgpu::KernelKind::Gemv,
                    arith: webq_engine::reference::Arith::F32,
                    workgroup: None,
                    shape: "decode".into(),
                    m: 1,
                    n: 256,
                    k: 512,
                    seed: 1,
                    quantizer: webq_engine::quant::Quantizer::RoundToNearest,
                    device: None,
                    family: None,
                    layer: None,
                    memory_cap: None,
                })
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
        let ctx = RunContext { page_url: &url, run_id: "kill", matrix: "kill", reps: 1 };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_browser(BrowserKind::Firefox, &refs, &ctx, &mut store, &mut progress)).unwrap();
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
