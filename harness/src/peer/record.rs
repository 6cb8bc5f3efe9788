//! `peer.jsonl`: one record per runner and case of `webq peer`. Schema-versioned, and appended one
//! whole line per write (then synced), so a crash loses at most the record being written and every
//! round of a comparison on a noisy machine stays in one file for the page to take medians over.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::results::{append_line, json_lines, open_append, Unreadable};

/// Version of the record layout. 1: the records written before versioning (no `schema`; no
/// `run_id`, `revision` or `label`; `m` absent in the first ones, meaning 1; `webq_kernel` named the
/// GEMV's tuning pick, the kernel the page ran was in `note`). 2: `schema`, `run_id`, `revision`,
/// `label`, and `webq_kernel` is the kernel the page ran (the wasm backend's: its dot path, such as
/// `simd128-fma`, since 2026-12-07; none before).
pub const PEER_SCHEMA: u32 = 2;
pub const PEER_FILE: &str = "peer.jsonl";

/// One runner's measurement of one case: webq's backend or an ORT-web build and execution provider,
/// in one browser, on one shape and format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerRecord {
    #[serde(default = "unversioned")]
    pub schema: u32,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub revision: Option<String>,
    /// What the run is, in the user's words (`--label`: "before", "after", a bundle's name).
    #[serde(default)]
    pub label: Option<String>,
    pub browser: String,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub adapter: String,
    pub format: String,
    #[serde(default = "one_row")]
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub reps: usize,
    /// `webq webgpu`, `webq wasm`, `ort webgpu (C++ EP build)`, `ort webgpu (JSEP build)`,
    /// `ort wasm (JSEP build)`.
    pub runner: String,
    /// The backend both sides of a ratio share: `webgpu` or `wasm`.
    pub backend: String,
    #[serde(default)]
    pub webq_kernel: Option<String>,
    /// Wall time per run (ms): per dispatch for webq, per `session.run` for ORT-web.
    pub ms_per_run: Option<f64>,
    /// webq's GPU-timestamp median per dispatch (ms), where the browser has timestamps.
    #[serde(default)]
    pub gpu_ms: Option<f64>,
    /// The kernel verdict against the CPU emulation; `None`: no output to judge.
    pub verdict_pass: Option<bool>,
    #[serde(default)]
    pub worst_ratio: Option<f64>,
    #[serde(default)]
    pub note: String,
}

fn unversioned() -> u32 {
    1
}

fn one_row() -> usize {
    1
}

impl PeerRecord {
    pub fn is_webq(&self) -> bool {
        self.runner.starts_with("webq ")
    }

    /// `M x N x K`.
    pub fn shape(&self) -> String {
        format!("{}x{}x{}", self.m, self.n, self.k)
    }

    /// Time per run, only where the output passed the verdict: a wrong answer has no speed.
    pub fn judged_ms(&self) -> Option<f64> {
        self.ms_per_run.filter(|_| self.verdict_pass == Some(true))
    }
}

/// Appends records to `DIR/peer.jsonl`.
pub struct PeerStore {
    path: PathBuf,
    file: File,
}

impl PeerStore {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let (path, file) = open_append(dir, PEER_FILE)?;
        Ok(PeerStore { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One `write` of one whole line, then a sync.
    pub fn append(&mut self, record: &PeerRecord) -> std::io::Result<()> {
        append_line(&mut self.file, serde_json::to_string(record).map_err(std::io::Error::other)?)
    }
}

/// Every record of a `peer.jsonl`, and every line that could not be used (torn by a crash, from a
/// newer schema, a field this webq cannot read), each named by file and line. Records of schema 1
/// that the bench scripts tagged with a `bundle` (the page bundle measured: "before", "after") get
/// it as their label; their `round` tags need no field, as rounds are told apart by order.
pub fn load(path: &Path) -> std::io::Result<(Vec<PeerRecord>, Vec<Unreadable>)> {
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    for (place, value) in json_lines(path)? {
        let mut skip = |why: String| unreadable.push(Unreadable { place: place.clone(), why });
        let mut value = match value {
            Ok(v) => v,
            Err(why) => {
                skip(why);
                continue;
            }
        };
        let schema = value.get("schema").map_or(Some(1), Value::as_u64);
        match schema {
            Some(s) if (1..=PEER_SCHEMA as u64).contains(&s) => {}
            _ => {
                skip(format!("schema {} (this webq reads 1..={PEER_SCHEMA})", value["schema"]));
                continue;
            }
        }
        if schema == Some(1) && value.get("label").is_none() {
            if let Some(bundle) = value.get("bundle").and_then(Value::as_str).map(str::to_string) {
                value["label"] = bundle.into();
            }
        }
        match serde_json::from_value(value) {
            Ok(r) => records.push(r),
            Err(e) => skip(format!("field error: {e}")),
        }
    }
    Ok((records, unreadable))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record of `runner` for the 1x4096x4096 int4-g32-sym case in Chromium.
    pub(crate) fn record(runner: &str, ms: Option<f64>, pass: Option<bool>) -> PeerRecord {
        PeerRecord {
            schema: PEER_SCHEMA,
            run_id: Some("peer-1".into()),
            revision: None,
            label: None,
            browser: "chromium".into(),
            user_agent: Some("HeadlessChrome/156".into()),
            adapter: "google swiftshader".into(),
            format: "int4-g32-sym".into(),
            m: 1,
            n: 4096,
            k: 4096,
            reps: 10,
            runner: runner.into(),
            backend: if runner.contains("wasm") { "wasm" } else { "webgpu" }.into(),
            webq_kernel: None,
            ms_per_run: ms,
            gpu_ms: None,
            verdict_pass: pass,
            worst_ratio: pass.map(|_| 0.5),
            note: String::new(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("webq-peer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_read_back_as_written_and_bad_lines_are_named_not_dropped() {
        let dir = temp_dir("store");
        let mut store = PeerStore::open(&dir).unwrap();
        let first = record("webq webgpu", Some(31.2), Some(true));
        let second = record("ort webgpu (C++ EP build)", None, None);
        store.append(&first).unwrap();
        store.append(&second).unwrap();
        let path = store.path().to_path_buf();
        let mut newer = serde_json::to_value(&first).unwrap();
        newer["schema"] = (PEER_SCHEMA + 1).into();
        let torn = "{\"browser\": \"firefox\", \"for";
        let tail = format!("{newer}\n{torn}\n");
        std::io::Write::write_all(&mut std::fs::OpenOptions::new().append(true).open(&path).unwrap(), tail.as_bytes())
            .unwrap();
        let (records, unreadable) = load(&path).unwrap();
        assert_eq!(records, vec![first, second]);
        assert_eq!(unreadable.len(), 2, "{unreadable:?}");
        assert!(unreadable[0].place.ends_with("peer.jsonl:3"), "{}", unreadable[0]);
        assert!(unreadable[0].why.contains(&format!("schema {}", PEER_SCHEMA + 1)), "{}", unreadable[0]);
        assert!(unreadable[1].place.ends_with(":4") && unreadable[1].why.contains("torn"), "{}", unreadable[1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unversioned_record_reads_with_its_bench_bundle_as_label_and_one_row_when_m_is_absent() {
        let dir = temp_dir("legacy");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(PEER_FILE);
        let line = r#"{"bundle":"before","round":2,"adapter":"","backend":"wasm","browser":"firefox","format":"int4-g128-asym","gpu_ms":null,"k":4096,"ms_per_run":26.8,"n":4096,"note":"","reps":100,"runner":"webq wasm","user_agent":null,"verdict_pass":true,"webq_kernel":null,"worst_ratio":0.001}"#;
        std::fs::write(&path, format!("{line}\n")).unwrap();
        let (records, unreadable) = load(&path).unwrap();
        assert!(unreadable.is_empty(), "{unreadable:?}");
        let r = &records[0];
        assert_eq!((r.schema, r.m, r.label.as_deref()), (1, 1, Some("before")));
        assert_eq!(r.judged_ms(), Some(26.8));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
