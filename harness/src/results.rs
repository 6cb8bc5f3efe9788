//! The results store: one JSON object a line, schema-versioned, appended with one write per record
//! (so a crash loses at most the record being written), readable by later versions.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use webq_conformance::{number, AccuracyVerdict, KernelTolerance, KernelVerdict};

use crate::cell::Cell;
use webq_engine::models::bench::ModelBench;
use webq_engine::protocol::ErrorClass;

/// Version of the record layout. Readers accept every version up to this one; fields added later
/// are optional, so older records still read. 3: model cells (`cell.model`, `model`). 4: the kernel
/// verdict's worst output (`kernel.verdict.worst`: expected, got, allowed). 5: a model cell's
/// benchmark (`bench`). 6: its load, stage by stage (`bench.progressive`, `first_layer_ms`,
/// `progress`, `weights_digest`; `model.storage.digest`), and a traced cell's `trace`.
pub const RESULTS_SCHEMA: u32 = 6;
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
    #[serde(default, with = "number::option")]
    pub compile_ms: Option<f64>,
    #[serde(with = "number")]
    pub upload_ms: f64,
    pub dispatches: usize,
    #[serde(with = "number")]
    pub wall_us: f64,
    #[serde(default, with = "number::option")]
    pub gpu_us: Option<f64>,
    /// Bytes of weights read per dispatch (codes, scales, zero points).
    pub weight_bytes: u64,
    /// Weight bytes over GPU time (wall time where there are no timestamps).
    #[serde(with = "number")]
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
    pub error_class: Option<ErrorClass>,
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
    /// A model cell's measures against the fp16 model, its budget and what its weights cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelResult>,
    /// A model cell's benchmark: load broken down, first and warm inferences, throughput, memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bench: Option<ModelBench>,
    /// The session's memory budget: what the cell was predicted to need, what the page held
    /// before and after, what the runner did (`memory_budget`). Only under a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::memory_budget::MemoryRecord>,
    /// A traced model cell's op, error, memory and shader logs (`webq run --trace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<webq_engine::models::trace::Trace>,
    pub finished_at: u64,
}

/// A whole model's output judged against the fp16 model's (`webq eval` prints the same measures).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    /// Whether every layer ran: budgets apply only then (a cut model is judged by agreement).
    pub full_depth: bool,
    pub measures: ModelMeasures,
    /// The precision's budget (text: minimum cosine, neighbour agreement; llm: top-1 agreement,
    /// perplexity over fp16's) and whether it held; absent for cut models and int2.
    #[serde(default)]
    pub budget: Option<(f64, f64)>,
    #[serde(default)]
    pub budget_pass: Option<bool>,
    /// `|output - fp16| / rms(fp16)`, in decades.
    pub histogram: webq_engine::models::accuracy::ErrorHistogram,
    /// The format of every tensor, bits per weight, bytes against fp16.
    pub storage: webq_engine::models::linear::ModelStorage,
    /// audio with the decoder: each utterance's greedy transcript, as text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transcripts: Vec<String>,
    /// The output's bits hashed ([`webq_engine::models::linear::Digest`]): the `wasm` backend runs
    /// the same code in every engine, so its cells must agree with `native`'s to the bit
    /// ([`crate::model_verdict::wasm_divergences`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_digest: String,
    /// `native` `wasm` cells: the digest of the same cell with fused multiply-adds
    /// ([`webq_engine::cpu::Summation::Fused`]), the twin of a browser's relaxed-simd bundle.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fused_output_digest: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelMeasures {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "number::option")]
    pub cosine_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "number::option")]
    pub cosine_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "number::option")]
    pub neighbour_agreement: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "number::option")]
    pub top1_agreement: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "number::option")]
    pub perplexity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "number::option")]
    pub fp16_perplexity: Option<f64>,
    /// vision: the mean cosine of the patch tokens to fp16's, and the fraction of patches whose
    /// most similar other patch (of the same image) is the one fp16's picks. `cosine_min` and
    /// `cosine_mean` are then the class token's, over the images.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "number::option")]
    pub patch_cosine_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "number::option")]
    pub patch_neighbour_agreement: Option<f64>,
    /// audio: the largest relative L2 error of one utterance's encoder output (`cosine_min` and
    /// `cosine_mean` are then per utterance).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "number::option")]
    pub rel_l2_max: Option<f64>,
    /// audio with the decoder: the word error rate of the cell's greedy transcripts against fp16's
    /// and against the sentences spoken, means over the utterances (`top1_agreement` and the
    /// perplexities are then the decoder's, scoring fp16's transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "number::option")]
    pub wer_vs_fp16: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "number::option")]
    pub wer_vs_spoken: Option<f64>,
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
    /// The page's wasm linear memory after the cell (its high-water mark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm_memory_bytes: Option<u64>,
}

impl RunDetail {
    /// What the page's answer says ran, beyond the cell itself.
    pub fn from_page(out: &webq_engine::protocol::CellOutput) -> RunDetail {
        RunDetail {
            backend: out.backend.clone(),
            precision: out.precision.clone(),
            notes: out.notes.clone(),
            op_support_limits: out.op_support_limits.clone(),
            fallback_steps: out.fallback_steps.clone(),
            capabilities: out.capabilities.as_ref().map(to_json),
            choice: out.choice.as_ref().map(to_json),
            attempts: out.attempts.iter().map(to_json).collect(),
            dot_path: out.dot_path.clone(),
            error_kind: out.error_kind.map(|k| k.name().to_string()),
            recommendation: out.recommendation.clone(),
            wasm_memory_bytes: out.wasm_memory_bytes,
        }
    }

    /// The kind of an error message and its recommendation (`engine/src/platform/error_classes.json`).
    pub fn classify(mut self, message: &str) -> RunDetail {
        let c = webq_engine::platform::classify::classify(message);
        self.error_kind = Some(c.kind.name().to_string());
        self.recommendation = Some(c.recommendation);
        self
    }
}

/// A value as JSON; what cannot be (never expected of these types) says so instead of vanishing.
fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_else(|e| serde_json::Value::String(format!("not representable as JSON: {e}")))
}

/// Appends records to `DIR/results.jsonl`.
pub struct ResultsStore {
    path: PathBuf,
    file: File,
}

impl ResultsStore {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let (path, file) = open_append(dir, RESULTS_FILE)?;
        Ok(ResultsStore { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One `write` of one whole line, then a flush to the file. The line is read back before it is
    /// written: a record that would not read back exactly as it is (a value JSON cannot hold) is
    /// written as an `error` that says so, with the original status in the reason, never lost.
    pub fn append(&mut self, record: &CellRecord) -> std::io::Result<()> {
        let mut line = encode(record).map_err(std::io::Error::other)?;
        if let Err(why) = reads_back(record, &line) {
            let mut safe = record.clone();
            safe.status = Status::Error;
            safe.error_class = Some(ErrorClass::Unrecordable);
            safe.reason = Some(format!(
                "webq could not record this cell faithfully ({why}); it was {}: {}",
                record.status.name(),
                record.reason.as_deref().unwrap_or("")
            ));
            safe.kernel = None;
            safe.accuracy = None;
            safe.timings = None;
            line = encode(&safe).map_err(std::io::Error::other)?;
        }
        append_line(&mut self.file, line)
    }
}

/// `DIR/NAME` opened to append (the directory made if missing).
pub fn open_append(dir: &Path, name: &str) -> std::io::Result<(PathBuf, File)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    Ok((path, file))
}

/// One `write` of one whole line, then a sync: a crash loses at most this line.
pub fn append_line(file: &mut File, mut line: String) -> std::io::Result<()> {
    line.push('\n');
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

/// Each non-empty line of a JSON-lines file with its `file:line`: its JSON, or why it is none.
pub fn json_lines(path: &Path) -> std::io::Result<Vec<(String, Result<serde_json::Value, String>)>> {
    let mut out = Vec::new();
    for (i, line) in BufReader::new(File::open(path)?).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(&line).map_err(|e| format!("not JSON ({e}): a torn write?"));
        out.push((format!("{}:{}", path.display(), i + 1), value));
    }
    Ok(out)
}

fn encode(record: &CellRecord) -> Result<String, serde_json::Error> {
    serde_json::to_string(record)
}

/// Whether `line` reads back into exactly `record` (compared by their debug text, where NaN equals
/// NaN and `Some(NaN)` differs from `None`).
fn reads_back(record: &CellRecord, line: &str) -> Result<(), String> {
    let back: CellRecord = serde_json::from_str(line).map_err(|e| format!("it does not read back: {e}"))?;
    if format!("{back:?}") != format!("{record:?}") {
        return Err("it reads back different from what was written".into());
    }
    Ok(())
}

/// A line of a results file that could not be used.
#[derive(Clone, Debug, PartialEq)]
pub struct Unreadable {
    /// `file:line`
    pub place: String,
    pub why: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.place, self.why)
    }
}

/// Every record of `DIR/results.jsonl`, and every line that could not be read (torn by a crash,
/// from a newer schema, a field this webq cannot read), each named by file and line. Readers that
/// only show results skip those with a warning; `webq run --check` fails on them.
pub fn load(dir: &Path) -> std::io::Result<(Vec<CellRecord>, Vec<Unreadable>)> {
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    for (place, value) in json_lines(&dir.join(RESULTS_FILE))? {
        let mut skip = |why: String| unreadable.push(Unreadable { place: place.clone(), why });
        let value = match value {
            Ok(v) => v,
            Err(why) => {
                skip(why);
                continue;
            }
        };
        let schema = value.get("schema").and_then(|s| s.as_u64()).unwrap_or(0);
        if schema == 0 || schema > RESULTS_SCHEMA as u64 {
            skip(format!("schema {schema} (this webq reads 1..={RESULTS_SCHEMA})"));
            continue;
        }
        match serde_json::from_value(value) {
            Ok(r) => records.push(r),
            Err(e) => skip(format!("field error: {e}")),
        }
    }
    Ok((records, unreadable))
}

/// The records of the latest run in a store.
pub fn latest_run(records: Vec<CellRecord>) -> Vec<CellRecord> {
    let Some(last) = records.last().map(|r| r.run_id.clone()) else { return records };
    records.into_iter().filter(|r| r.run_id == last).collect()
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{blank_record, judge, RawTimings, References};

    fn judged(y_plant: impl Fn(&mut Vec<f32>), timing: f64) -> CellRecord {
        let cell = crate::cell::test_cell(
            webq_engine::protocol::Runtime::Native,
            webq_engine::protocol::CellBackend::Webgpu,
            "int4",
            8,
            256,
        );
        let mut slot = None;
        let refs = References::for_cell(&mut slot, &cell, cell.format().unwrap()).unwrap();
        let mut y = webq_engine::cpu::matmul(&refs.x, 1, &refs.q);
        y_plant(&mut y);
        let mut rec = blank_record(&cell, "run", "m", Environment::default());
        let t = RawTimings {
            compile_ms: Some(timing),
            upload_ms: timing,
            dispatches: 1,
            wall_us: timing,
            gpu_us: Some(timing),
        };
        judge(&cell, refs, &y, t, &mut rec);
        rec
    }

    fn store_and_load(records: &[CellRecord]) -> (Vec<CellRecord>, Vec<Unreadable>) {
        let dir = std::env::temp_dir().join(format!("webq-results-test-{}-{}", std::process::id(), records.len()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = ResultsStore::open(&dir).unwrap();
        for r in records {
            store.append(r).unwrap();
        }
        let loaded = load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        loaded
    }

    #[test]
    fn every_number_of_a_record_survives_the_round_trip_non_finite_included() {
        let clean = judged(|_| {}, 1.5);
        assert_eq!(clean.status, Status::Pass, "{:?}", clean.reason);
        let nan = judged(|y| y[3] = f32::NAN, f64::NAN);
        let inf = judged(|y| y[0] = f32::NEG_INFINITY, f64::INFINITY);
        assert_eq!((nan.status, inf.status), (Status::Fail, Status::Fail));
        let (back, unreadable) = store_and_load(&[clean.clone(), nan.clone(), inf.clone()]);
        assert!(unreadable.is_empty(), "{unreadable:?}");
        assert_eq!(back.len(), 3);
        for (want, got) in [&clean, &nan, &inf].into_iter().zip(&back) {
            assert_eq!(format!("{want:?}"), format!("{got:?}"), "read back differently");
        }
        // A model cell's record: the stored tensors with their digests, the load's events.
        let mut model = clean.clone();
        let storage = webq_engine::models::linear::ModelStorage::new(
            "int8",
            vec![webq_engine::models::linear::TensorRecord::vector("norm", &[&[1.0, 2.0]])],
        );
        let event = webq_engine::models::loading::LoadEvent {
            stage: "layer 0".into(),
            layer: Some(0),
            bytes: 4,
            fraction: 1.0,
            ms: 0.25,
        };
        model.bench = Some(ModelBench {
            progressive: true,
            first_layer_ms: Some(0.25),
            progress: vec![event],
            weights_digest: Some(storage.digest.clone()),
            ..Default::default()
        });
        model.model = Some(ModelResult {
            full_depth: true,
            measures: Default::default(),
            budget: None,
            budget_pass: None,
            histogram: webq_engine::models::accuracy::ErrorHistogram::of(&[1.0], &[1.0], 1.0),
            storage,
            transcripts: Vec::new(),
            output_digest: "0123456789abcdef".into(),
            fused_output_digest: "fedcba9876543210".into(),
        });
        let (again, unreadable) = store_and_load(std::slice::from_ref(&model));
        assert!(unreadable.is_empty(), "{unreadable:?}");
        assert_eq!(format!("{model:?}"), format!("{:?}", again[0]), "a model record read back differently");
        let t = back[1].timings.as_ref().unwrap();
        assert!(t.wall_us.is_nan() && t.gpu_us.unwrap().is_nan() && t.weight_gbps.is_nan());
        let k = &back[1].kernel.as_ref().unwrap().verdict;
        assert!(k.worst_ratio.is_infinite() && k.max_abs_err.is_nan() && k.non_finite == 1);
        assert!(back[1].accuracy.as_ref().unwrap().metrics.rel_l2.is_nan());
        assert_eq!(back[2].timings.as_ref().unwrap().upload_ms, f64::INFINITY);
    }

    #[test]
    fn a_record_of_an_older_schema_still_reads_and_a_newer_one_is_named() {
        let mut old = serde_json::to_value(judged(|_| {}, 2.0)).unwrap();
        old["schema"] = 1.into();
        // Schema 1 had no exact/ceiling figures and no non-finite count.
        old["accuracy"].as_object_mut().unwrap().remove("exact_rel_l2");
        old["kernel"]["verdict"].as_object_mut().unwrap().remove("non_finite");
        let mut newer = old.clone();
        newer["schema"] = (RESULTS_SCHEMA + 1).into();
        let dir = std::env::temp_dir().join(format!("webq-results-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(RESULTS_FILE), format!("{old}\n{newer}\n")).unwrap();
        let (records, unreadable) = load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(unreadable.len(), 1);
        assert!(unreadable[0].place.ends_with("results.jsonl:2"), "{:?}", unreadable[0]);
        assert!(unreadable[0].why.contains(&format!("schema {}", RESULTS_SCHEMA + 1)), "{:?}", unreadable[0]);
    }
}
