//! The one runner loop, for native and browser cells alike: for each cell not yet recorded, a
//! fresh record (status `error` until judged), the runtime runs and judges it, the record is
//! appended, progress is told. What differs between runtimes is only [`CellRunner::run`].
//! [`run_pool`] runs the same loop over many runners at once (a pool of browser sessions).

use std::cell::RefCell;
use std::collections::HashSet;

use webq_engine::protocol::Runtime;

use crate::cell::Cell;
use crate::results::{unix_now, CellRecord, Environment, ResultsStore};
use crate::verdict::blank_record;

/// A runtime that runs cells: natively on wgpu, or in a browser page.
pub trait CellRunner {
    /// The runtime whose cells this runner takes.
    fn runtime(&self) -> Runtime;

    /// The environment a record starts with (filled in further by `run` where it learns more).
    fn environment(&self) -> Environment;

    /// Runs `cell`, judges its output and fills in `rec`; a failure of the runtime is a status
    /// of `rec` (`error`, `crash`, `timeout`, ...), never an early return.
    async fn run(&mut self, cell: &Cell, rec: CellRecord) -> CellRecord;

    /// Releases what the runner holds (a browser session) after the last cell.
    async fn finish(&mut self) {}
}

/// Who the records belong to.
pub struct RunIds<'a> {
    pub run_id: &'a str,
    pub matrix: &'a str,
}

/// Runs every cell of `cells` that `done` does not name, appending one record each.
pub async fn run_cells<'c>(
    runner: &mut impl CellRunner,
    cells: impl IntoIterator<Item = &'c Cell>,
    done: &HashSet<String>,
    ids: &RunIds<'_>,
    store: &mut ResultsStore,
    progress: &mut impl FnMut(&CellRecord),
) -> std::io::Result<()> {
    for cell in cells.into_iter().filter(|c| !done.contains(&c.id())) {
        tracing::debug!(cell = %cell.id(), "running");
        let rec = blank_record(cell, ids.run_id, ids.matrix, runner.environment());
        let mut rec = runner.run(cell, rec).await;
        rec.finished_at = unix_now();
        store.append(&rec)?;
        progress(&rec);
    }
    runner.finish().await;
    Ok(())
}

/// Runs every cell of `cells` that `done` does not name over all of `runners` at once, on one
/// thread: an idle runner takes the first cell of its runtime still queued (the queue is `cells`
/// with the `high` ones first, in order otherwise), so a cell goes to whichever session of its
/// runtime is free and the sessions stay evenly loaded. Records are appended as cells finish, in
/// whatever order that is; each cell is taken once, so none runs twice into the results.
pub async fn run_pool<'c, R: CellRunner>(
    runners: &mut [R],
    cells: impl IntoIterator<Item = &'c Cell>,
    high: impl Fn(&Cell) -> bool,
    done: &HashSet<String>,
    ids: &RunIds<'_>,
    store: &mut ResultsStore,
    progress: &mut impl FnMut(&CellRecord),
) -> std::io::Result<()> {
    let queue = RefCell::new(pool_order(cells.into_iter().filter(|c| !done.contains(&c.id())).collect(), high));
    let sink = RefCell::new((store, progress, Ok(())));
    let workers = runners.iter_mut().map(|runner| {
        let (queue, sink) = (&queue, &sink);
        async move {
            loop {
                let next = {
                    let mut q = queue.borrow_mut();
                    q.iter().position(|c| c.runtime == runner.runtime()).map(|i| q.remove(i))
                };
                let Some(cell) = next else { break };
                tracing::debug!(cell = %cell.id(), "running");
                let rec = blank_record(cell, ids.run_id, ids.matrix, runner.environment());
                let mut rec = runner.run(cell, rec).await;
                rec.finished_at = unix_now();
                let mut s = sink.borrow_mut();
                let (store, progress, result) = &mut *s;
                match store.append(&rec) {
                    Ok(()) => progress(&rec),
                    // The record is lost only if the disk refuses it; the run stops at once.
                    Err(e) => {
                        *result = Err(e);
                        queue.borrow_mut().clear();
                    }
                }
            }
            runner.finish().await;
        }
    });
    futures_util::future::join_all(workers).await;
    sink.into_inner().2
}

/// The cells in the order a pool takes them: the `high` ones first, each part in its own order.
pub fn pool_order(cells: Vec<&Cell>, high: impl Fn(&Cell) -> bool) -> Vec<&Cell> {
    let (mut first, rest): (Vec<&Cell>, Vec<&Cell>) = cells.into_iter().partition(|c| high(c));
    first.extend(rest);
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::test_cell;
    use crate::results::Status;
    use std::time::Duration;
    use webq_engine::protocol::CellBackend;

    /// A runtime whose cells take `ms` each (a session of a browser in the scheduling's eyes).
    struct Sleeper {
        runtime: Runtime,
        ms: u64,
        ran: Vec<String>,
    }

    impl CellRunner for Sleeper {
        fn runtime(&self) -> Runtime {
            self.runtime
        }

        fn environment(&self) -> Environment {
            Environment { runtime: self.runtime.name().into(), ..Default::default() }
        }

        async fn run(&mut self, cell: &Cell, mut rec: CellRecord) -> CellRecord {
            tokio::time::sleep(Duration::from_millis(self.ms)).await;
            self.ran.push(cell.id());
            rec.status = Status::Pass;
            rec
        }
    }

    /// Two sessions of one browser and one of another share the cells: each cell runs once, on a
    /// session of its own runtime, the free session takes the next (the fast one takes more), the
    /// high-priority cells run first, and the file holds one record per cell.
    #[test]
    fn a_pool_runs_each_cell_once_on_a_free_session_of_its_runtime_high_priority_first() {
        let cells: Vec<Cell> = (1..=12)
            .map(|n| {
                let runtime = if n % 3 == 0 { Runtime::Firefox } else { Runtime::Chromium };
                let mut c = test_cell(runtime, CellBackend::Wasm, "fp16", n, 8);
                c.shape = format!("s{n}");
                c
            })
            .collect();
        let high = cells[7].id();
        let mut runners = vec![
            Sleeper { runtime: Runtime::Chromium, ms: 5, ran: vec![] },
            Sleeper { runtime: Runtime::Chromium, ms: 40, ran: vec![] },
            Sleeper { runtime: Runtime::Firefox, ms: 5, ran: vec![] },
        ];
        let dir = std::env::temp_dir().join(format!("webq-pool-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = ResultsStore::open(&dir).unwrap();
        let mut order = Vec::new();
        let ids = RunIds { run_id: "pool-1", matrix: "t" };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let done: HashSet<String> = [cells[0].id()].into();
        rt.block_on(run_pool(&mut runners, &cells, |c| c.id() == high, &done, &ids, &mut store, &mut |r| {
            order.push(r.id.clone())
        }))
        .unwrap();
        assert_eq!(order.len(), 11, "every cell not done, once: {order:?}");
        assert!(!order.contains(&cells[0].id()), "a cell already recorded is not run again");
        assert_eq!(order[0], high, "the high-priority cell first: {order:?}");
        for r in &runners {
            assert!(r.ran.iter().all(|id| id.starts_with(r.runtime.name())), "{:?} ran {:?}", r.runtime, r.ran);
        }
        assert!(
            runners[0].ran.len() > runners[1].ran.len(),
            "the faster session takes more cells: {:?}",
            runners[0].ran
        );
        assert_eq!(runners[2].ran.len(), 4);
        let (records, unreadable) = crate::results::load(&dir).unwrap();
        assert!(unreadable.is_empty());
        let mut in_file: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        in_file.sort();
        in_file.dedup();
        assert_eq!(in_file.len(), 11);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
