//! The pages and files a run leaves in its directory, built from its records: `index.html` (the
//! compatibility matrix), `cells.html` (every cell that is not a pass, in full), `perf.html`,
//! `browsers.html` (the census), `junit.xml` and `wptreport-<runtime>.json`. `webq report`
//! builds them again from stored results, `--baseline` adds what changed, `webq publish` adds a
//! run to a static site.

mod census;
pub mod changes;
mod matrix;
mod outcomes;
mod perf;
pub mod publish;
pub mod verify;

use std::path::{Path, PathBuf};

use serde_json::Value;
use webq_reports::machine::OutcomeStatus;
use webq_reports::Changes;

use crate::matrix::Expect;
use crate::results::{CellRecord, Status};

/// What a run wrote besides its records: `run.json` and `census.json` (either may be missing in
/// a directory written by an older webq; the pages then say less).
#[derive(Clone, Debug, Default)]
pub struct RunFacts {
    pub run: Value,
    pub census: Value,
}

impl RunFacts {
    pub fn load(dir: &Path) -> RunFacts {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
        };
        RunFacts { run: read("run.json"), census: read("census.json") }
    }

    /// The matrix's expectations as the run recorded them.
    pub fn expects(&self) -> Vec<Expect> {
        serde_json::from_value(self.run["expect"].clone()).unwrap_or_default()
    }

    /// Key facts for the pages' headers.
    pub fn info(&self) -> Vec<(String, String)> {
        let run = &self.run;
        if !run.is_object() {
            return vec![];
        }
        let s = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
        let mut out = vec![
            ("matrix".to_string(), format!("{} ({})", s(&run["matrix"]), s(&run["matrix_file"]))),
            ("run".into(), s(&run["run_id"])),
            ("cells".into(), s(&run["cells"])),
            ("wall time".into(), format!("{:.1} s", run["wall_s"].as_f64().unwrap_or(0.0))),
        ];
        if let Some(s) = self.scheduling() {
            out.push(("scheduling".into(), s));
        }
        if let Some(rev) = run["revision"].as_str() {
            out.push(("webq revision".into(), rev.to_string()));
        }
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
}

impl RunFacts {
    /// How the run scheduled its cells; none for runs written before `run.json` said.
    pub fn scheduling(&self) -> Option<String> {
        self.run["pool"].as_object().map(|p| scheduling(p, self.run["cores"].as_u64()))
    }

    /// The run's wall time in seconds.
    pub fn wall_s(&self) -> Option<f64> {
        self.run["wall_s"].as_f64()
    }
}

/// How a run scheduled its cells (`run.json`'s `pool`), for comparing wall times across runs.
fn scheduling(pool: &serde_json::Map<String, Value>, cores: Option<u64>) -> String {
    let mut out = match pool.get("sessions").and_then(Value::as_u64).unwrap_or(0) {
        0 => "one session at a time, browser after browser".to_string(),
        1 => "--pool 1: 1 session per browser, every browser at once, native cells beside".to_string(),
        n => format!("--pool {n}: {n} sessions per browser, every browser at once, native cells beside"),
    };
    if let Some(n) = pool.get("recycle_after").and_then(Value::as_u64) {
        out.push_str(&format!("; new session every {n} cells"));
    }
    if let Some(mib) = pool.get("memory_budget_mb").and_then(Value::as_u64) {
        out.push_str(&format!("; memory budget {mib} MiB per session"));
    }
    let endpoints: Vec<&str> =
        pool.get("webdriver").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    if !endpoints.is_empty() {
        out.push_str(&format!("; WebDriver endpoints {}", endpoints.join(", ")));
    }
    if let Some(c) = cores.filter(|c| *c > 0) {
        out.push_str(&format!("; {c} cores"));
    }
    out
}

/// A record's status as the pages show it: a failure the matrix pins is an expected failure, a
/// pass where the matrix pins something else an unexpected pass.
pub fn shown(r: &CellRecord, expects: &[Expect]) -> OutcomeStatus {
    match r.status {
        Status::Fail if crate::expect::pinned_failure(expects, r) => OutcomeStatus::ExpectedFail,
        Status::Fail => OutcomeStatus::Fail,
        Status::Pass if expects.iter().any(|e| e.status != Status::Pass && crate::expect::glob(&e.cells, &r.id)) => {
            OutcomeStatus::UnexpectedPass
        }
        Status::Pass => OutcomeStatus::Pass,
        Status::Unsupported => OutcomeStatus::Unsupported,
        Status::Error => OutcomeStatus::Error,
        Status::Timeout => OutcomeStatus::Timeout,
        Status::Crash => OutcomeStatus::Crash,
    }
}

/// The legend class of a shown status.
pub fn class(s: OutcomeStatus) -> &'static str {
    match s {
        OutcomeStatus::Pass => "pass",
        OutcomeStatus::Fail => "fail",
        OutcomeStatus::ExpectedFail => "expected-fail",
        OutcomeStatus::UnexpectedPass => "unexpected-pass",
        OutcomeStatus::Unsupported => "unsupported",
        OutcomeStatus::Error => "error",
        OutcomeStatus::Timeout => "timeout",
        OutcomeStatus::Crash => "crash",
    }
}

/// The legend's words for a class.
pub fn words(class: &str) -> &'static str {
    webq_reports::LEGEND.iter().find(|l| l.class == class).map_or("?", |l| l.words)
}

/// Most severe first: what a cell holding several variants is coloured as.
pub const SEVERITY: [OutcomeStatus; 8] = [
    OutcomeStatus::Crash,
    OutcomeStatus::Timeout,
    OutcomeStatus::Error,
    OutcomeStatus::Fail,
    OutcomeStatus::UnexpectedPass,
    OutcomeStatus::ExpectedFail,
    OutcomeStatus::Pass,
    OutcomeStatus::Unsupported,
];

/// An id as an HTML anchor.
pub fn anchor(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

pub fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or(
        String::new(),
        |v| if v.abs() >= 1e-3 && v.abs() < 1e5 { format!("{v:.digits$}") } else { format!("{v:.2e}") },
    )
}

/// `backend precision` that ran, when it differs from the cell's own.
pub fn ran(r: &CellRecord) -> String {
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
pub fn model_summary(r: &CellRecord) -> Option<String> {
    let m = r.model.as_ref()?;
    let x = &m.measures;
    let mut parts = Vec::new();
    if let (Some(min), Some(mean), Some(nn)) = (x.cosine_min, x.cosine_mean, x.neighbour_agreement) {
        parts.push(format!("cosine to fp16 min {min:.5} mean {mean:.5}, neighbours {nn:.3}"));
    }
    if let (Some(min), Some(mean), Some(rel)) = (x.cosine_min, x.cosine_mean, x.rel_l2_max) {
        parts.push(format!("utterance cosine to fp16 min {min:.5} mean {mean:.5}, rel L2 max {rel:.3e}"));
    }
    if let (Some(min), Some(patch), Some(nn)) = (x.cosine_min, x.patch_cosine_mean, x.patch_neighbour_agreement) {
        parts.push(format!(
            "class token cosine to fp16 min {min:.5}, patch tokens mean {patch:.5}, nearest patch {nn:.3}"
        ));
    }
    if let (Some(t), Some(p), Some(f)) = (x.top1_agreement, x.perplexity, x.fp16_perplexity) {
        parts.push(format!("top-1 agreement {t:.3}, perplexity {} (fp16 {})", num(Some(p), 3), num(Some(f), 3)));
    }
    if let (Some(f), Some(w)) = (x.wer_vs_fp16, x.wer_vs_spoken) {
        parts.push(format!("transcript WER {f:.3} against fp16's, {w:.3} against the sentence spoken"));
    }
    if !m.transcripts.is_empty() {
        parts.push(format!(
            "transcripts: {}",
            m.transcripts.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ")
        ));
    }
    let s = &m.storage;
    parts.push(format!(
        "{:.2} bits/weight, {:.2}x fp16's bytes",
        s.bits_per_weight,
        s.bytes as f64 / s.fp16_bytes.max(1) as f64
    ));
    if let Some(b) = r.bench.as_ref().filter(|b| b.progressive) {
        if let (Some(first), Some(last)) = (b.first_layer_ms, b.progress.last()) {
            parts.push(format!(
                "loaded progressively in {} stages: first layer ready at {first:.1} ms, all at {:.1} ms",
                b.progress.len(),
                last.ms
            ));
        }
    }
    parts.push(match (m.budget, m.budget_pass) {
        (Some(b), Some(ok)) => format!("budget ({}, {}) {}", b.0, b.1, if ok { "met" } else { "NOT met" }),
        _ if !m.full_depth => "cut model: no budget".into(),
        _ => "no budget".into(),
    });
    Some(parts.join("; "))
}

/// The figures a cell's verdicts rest on, in one line: worst kernel ratio, accuracy against its
/// budget, what ran.
pub fn key_numbers(r: &CellRecord) -> String {
    let mut parts = Vec::new();
    if let Some(k) = &r.kernel {
        parts.push(format!("worst kernel error {} of its tolerance", num(Some(k.verdict.worst_ratio), 3)));
    }
    match model_summary(r) {
        Some(m) => parts.push(m),
        None => {
            if let Some(a) = &r.accuracy {
                parts.push(format!(
                    "rel L2 vs fp16 {} (budget {})",
                    num(Some(a.metrics.rel_l2), 4),
                    num(Some(a.budget_rel_l2), 4)
                ));
            }
        }
    }
    let ran = ran(r);
    if !ran.is_empty() {
        parts.push(format!("ran {ran}"));
    }
    parts.join("; ")
}

/// Notes, `auto`'s reasons, the error's kind and recommendation.
pub fn notes(r: &CellRecord) -> Vec<String> {
    let Some(d) = &r.detail else { return vec![] };
    let mut parts = d.notes.clone();
    if let Some(c) = d.choice.as_ref().and_then(|c| c["reasons"].as_array()) {
        parts.extend(c.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    parts
        .extend(d.fallback_steps.iter().map(|s| format!("fallback: {}", serde_json::to_string(s).unwrap_or_default())));
    parts
}

/// Writes `text` to `path` through a hidden temporary file beside it and a rename, so a reader
/// never sees half a file.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().map_or("out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The index of `key` in `list`, appended when new: first-seen order for rows, columns, series.
pub fn index_of<T: PartialEq + Clone>(list: &mut Vec<T>, key: &T) -> usize {
    list.iter().position(|x| x == key).unwrap_or_else(|| {
        list.push(key.clone());
        list.len() - 1
    })
}

/// Writes every page and file of a run into `dir` (each with [`write_atomic`]); returns the
/// paths written.
pub fn write_all(
    dir: &Path,
    records: &[CellRecord],
    facts: &RunFacts,
    warnings: Vec<String>,
    changes: Option<Changes>,
) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let expects = facts.expects();
    let mut written = Vec::new();
    let mut put = |name: &str, text: String| -> std::io::Result<()> {
        let path = dir.join(name);
        write_atomic(&path, &text)?;
        written.push(path);
        Ok(())
    };
    let page = matrix::page(records, facts, &expects, warnings, changes);
    put("index.html", webq_reports::render_matrix(&page)?)?;
    put("cells.html", webq_reports::render_cells(&matrix::details(records, &expects))?)?;
    put("perf.html", webq_reports::render_perf(&perf::page(records, facts))?)?;
    put("browsers.html", webq_reports::render_browsers(&census::page(records, facts))?)?;
    let outs = outcomes::outcomes(records, &expects);
    let name = format!("webq {}", facts.run["matrix"].as_str().unwrap_or("run"));
    put("junit.xml", webq_reports::machine::junit(&name, &outs))?;
    for (runtime, text) in outcomes::wptreports(records, &outs, facts) {
        put(&format!("wptreport-{runtime}.json"), text)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::scheduling;

    #[test]
    fn the_scheduling_fact_says_how_the_run_used_its_sessions_and_cores() {
        let seq = json!({"sessions": 0, "recycle_after": null, "memory_budget_mb": null, "webdriver": []});
        assert_eq!(
            scheduling(seq.as_object().unwrap(), Some(2)),
            "one session at a time, browser after browser; 2 cores"
        );
        let grid = json!({"sessions": 2, "recycle_after": 50, "memory_budget_mb": 1024,
            "webdriver": ["chromium=http://127.0.0.1:4444"]});
        let s = scheduling(grid.as_object().unwrap(), None);
        assert!(s.starts_with("--pool 2: 2 sessions per browser"), "{s}");
        for part in ["new session every 50 cells", "memory budget 1024 MiB", "endpoints chromium=http://127.0.0.1:4444"]
        {
            assert!(s.contains(part), "{part}: {s}");
        }
        assert!(!s.contains("cores"), "{s}");
    }
}
