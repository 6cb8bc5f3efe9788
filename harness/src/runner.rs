//! The one runner loop, for native and browser cells alike: for each cell not yet recorded, a
//! fresh record (status `error` until judged), the runtime runs and judges it, the record is
//! appended, progress is told. What differs between runtimes is only [`CellRunner::run`].

use std::collections::HashSet;

use crate::cell::Cell;
use crate::results::{unix_now, CellRecord, Environment, ResultsStore};
use crate::verdict::blank_record;

/// A runtime that runs cells: natively on wgpu, or in a browser page.
pub trait CellRunner {
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
