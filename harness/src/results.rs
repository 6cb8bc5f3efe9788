//! The results store: one JSON object a line, schema-versioned, appended with one write per record
//! (so a crash loses at most the record being written), readable by later versions.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use webq_conformance::{AccuracyVerdict, KernelTolerance, KernelVerdict};

use crate::cell::Cell;

/// Version of the record layout. Readers accept every version up to this one; fields added later
/// are optional, so older records still read.
pub const RESULTS_SCHEMA: u32 = 1;
pub const RESULTS_FILE: &str = "results.jsonl";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Unsupported,
    Error,
    Timeout,
    Crash,
}

impl Status {
    pub const ALL: [Status; 6] =
        [Status::Pass, Status::Fail, Status::Unsupported, Status::Error, Status::Timeout, Status::Crash];

    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Unsupported => "unsupported",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Crash => "crash",
        }
    }
}

/// Where a cell ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub runtime: String,
    #[serde(default)]
    pub adapter: Option<String>,
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub graphics_api: Option<String>,
    #[serde(default)]
    pub shader_f16: Option<bool>,
    #[serde(default)]
    pub user_agent: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelResult {
    pub tolerance: KernelTolerance,
    pub verdict: KernelVerdict,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CellTimings {
    /// Pipeline compile time, when this cell compiled it (else it came from the cache).
    #[serde(default)]
    pub compile_ms: Option<f64>,
    pub upload_ms: f64,
    pub dispatches: usize,
    pub wall_us: f64,
    #[serde(default)]
    pub gpu_us: Option<f64>,
    /// Bytes of weights read per dispatch (codes, scales, zero points).
    pub weight_bytes: u64,
    /// Weight bytes over GPU time (wall time where there are no timestamps).
    pub weight_gbps: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    pub schema: u32,
    pub run_id: String,
    pub matrix: String,
    pub id: String,
    pub cell: Cell,
    pub environment: Environment,
    pub status: Status,
    /// Why it is not a pass: which verdict failed and by how much, the browser's or driver's words.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub error_class: Option<String>,
    /// The GEMV workgroup size that ran.
    #[serde(default)]
    pub workgroup: Option<String>,
    #[serde(default)]
    pub kernel: Option<KernelResult>,
    #[serde(default)]
    pub accuracy: Option<AccuracyVerdict>,
    #[serde(default)]
    pub timings: Option<CellTimings>,
    /// What ran and how it was decided (backend, precision, upgrades, fallbacks, `auto`'s choice,
    /// WebNN limits, the error's kind). Absent in records written before it existed.
    #[serde(default)]
    pub detail: Option<RunDetail>,
    pub finished_at: u64,
}

/// What actually ran, when it is more than the cell says.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    /// The backend and precision that produced the output.
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub precision: Option<String>,
    /// Upgrades, widenings, fallbacks, device limits: everything not in the request.
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub op_support_limits: Option<serde_json::Value>,
    #[serde(default)]
    pub fallback_steps: Vec<webq_engine::platform::fallback::FallbackStep>,
    #[serde(default)]
    pub capabilities: Option<serde_json::Value>,
    #[serde(default)]
    pub choice: Option<serde_json::Value>,
    #[serde(default)]
    pub attempts: Vec<serde_json::Value>,
    #[serde(default)]
    pub dot_path: Option<String>,
    /// The error's kind (PRECISION_NOT_SUPPORTED, ...) and what to try instead.
    #[serde(default)]
    pub error_kind: Option<String>,
    #[serde(default)]
    pub recommendation: Option<String>,
}

impl RunDetail {
    /// The kind of an error message and its recommendation (`engine/src/platform/error_classes.json`).
    pub fn classify(mut self, message: &str) -> RunDetail {
        let c = webq_engine::platform::classify::classify(message);
        self.error_kind = Some(c.kind.name().to_string());
        self.recommendation = Some(c.recommendation);
        self
    }
}

/// Appends records to `DIR/results.jsonl`.
pub struct ResultsStore {
    path: PathBuf,
    file: File,
}

impl ResultsStore {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(RESULTS_FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(ResultsStore { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One `write` of one whole line, then a flush to the file.
    pub fn append(&mut self, record: &CellRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()
    }
}

/// Reads every record; lines it cannot use (torn by a crash, or from a newer schema) are skipped with
/// a warning that names the line.
pub fn load(dir: &Path) -> std::io::Result<(Vec<CellRecord>, Vec<String>)> {
    let path = dir.join(RESULTS_FILE);
    let file = File::open(&path)?;
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let where_ = format!("{}:{}", path.display(), i + 1);
        let value: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                warnings.push(format!("{where_}: skipped, not JSON ({e}): a torn write?"));
                continue;
            }
        };
        let schema = value.get("schema").and_then(|s| s.as_u64()).unwrap_or(0);
        if schema == 0 || schema > RESULTS_SCHEMA as u64 {
            warnings.push(format!("{where_}: skipped, schema {schema} (this webq reads 1..={RESULTS_SCHEMA})"));
            continue;
        }
        match serde_json::from_value(value) {
            Ok(r) => records.push(r),
            Err(e) => warnings.push(format!("{where_}: skipped, field error: {e}")),
        }
    }
    Ok((records, warnings))
}

/// The records of the latest run in a store.
pub fn latest_run(records: Vec<CellRecord>) -> Vec<CellRecord> {
    let Some(last) = records.last().map(|r| r.run_id.clone()) else { return records };
    records.into_iter().filter(|r| r.run_id == last).collect()
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
