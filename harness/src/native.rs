//! The `native` runtime: cells on wgpu directly (Vulkan; lavapipe here, a real GPU where there is one).
//! References are computed here, on the CPU, never by the backend under test.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use webq_engine::webgpu::{Executor, ExecutorOptions, GpuError, KernelVariant, TuningTable};

use crate::cell::Cell;
use crate::results::{unix_now, CellRecord, Environment, ResultsStore, Status};
use crate::verdict::{blank_record, judge, RawTimings, References};

pub struct NativeRunner {
    executor: Option<Executor>,
    /// Why there is no executor (recorded as the `unsupported` reason of every cell).
    missing: Option<String>,
    tuning: TuningTable,
    reps: usize,
}

impl NativeRunner {
    pub fn new(reps: usize) -> Self {
        let mut r = NativeRunner { executor: None, missing: None, tuning: TuningTable::seed(), reps };
        r.connect();
        r
    }

    fn connect(&mut self) {
        match Executor::new(&ExecutorOptions::default()) {
            Ok(e) => {
                self.executor = Some(e);
                self.missing = None;
            }
            Err(e) => {
                self.executor = None;
                self.missing = Some(format!("{e} (is mesa-vulkan-drivers installed? scripts/setup installs it)"));
            }
        }
    }

    pub fn environment(&self) -> Environment {
        let a = self.executor.as_ref().map(|e| e.adapter());
        Environment {
            runtime: "native".into(),
            adapter: a.map(|a| a.name.clone()),
            driver: a.map(|a| format!("{} {}", a.driver, a.driver_info).trim().to_string()),
            graphics_api: a.map(|a| a.backend.clone()),
            shader_f16: a.map(|a| a.shader_f16),
            user_agent: None,
        }
    }

    pub fn adapter_json(&self) -> serde_json::Value {
        self.executor
            .as_ref()
            .map_or(serde_json::Value::Null, |e| serde_json::to_value(e.adapter()).unwrap_or_default())
    }

    /// Runs the cells (skipping ids in `done`), appending one record per cell; a cell that panics
    /// is recorded as a crash and the executor is opened anew for the next one.
    pub fn run(
        &mut self,
        cells: &[Cell],
        done: &HashSet<String>,
        run_id: &str,
        matrix: &str,
        store: &mut ResultsStore,
        progress: &mut impl FnMut(&CellRecord),
    ) -> std::io::Result<()> {
        let mut prepared: Option<References> = None;
        for cell in cells.iter().filter(|c| !done.contains(&c.id())) {
            let base = blank_record(cell, run_id, matrix, self.environment());
            let outcome = catch_unwind(AssertUnwindSafe(|| self.run_cell(cell, &mut prepared, base.clone())));
            let mut record = match outcome {
                Ok(r) => r,
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".into());
                    self.connect();
                    prepared = None;
                    CellRecord { status: Status::Crash, reason: Some(msg), error_class: Some("crash".into()), ..base }
                }
            };
            record.finished_at = unix_now();
            store.append(&record)?;
            progress(&record);
        }
        Ok(())
    }

    fn run_cell(&mut self, cell: &Cell, prepared: &mut Option<References>, mut rec: CellRecord) -> CellRecord {
        let Some(exec) = self.executor.as_ref() else {
            rec.status = Status::Unsupported;
            rec.reason = self.missing.clone();
            rec.error_class = Some("no_adapter".into());
            return rec;
        };
        if !exec.supports(cell.arith) {
            rec.status = Status::Unsupported;
            rec.reason = Some("the adapter has no shader-f16 feature".into());
            rec.error_class = Some("missing_feature".into());
            return rec;
        }
        let p = match References::for_cell(prepared, cell) {
            Ok(p) => p,
            Err(e) => {
                rec.reason = Some(e);
                rec.error_class = Some("bad_input".into());
                return rec;
            }
        };
        let workgroup =
            cell.workgroup.unwrap_or_else(|| self.tuning.pick("native", &exec.adapter().name, cell.kernel, None));
        let variant = KernelVariant::new(cell.kernel, cell.arith, workgroup);
        rec.workgroup = Some(variant.workgroup.to_string());
        let reps = self.reps;
        let run = pollster::block_on(async {
            let prep = exec.prepare(&p.x, cell.m, &p.q, variant).await?;
            let y = prep.output().await?;
            let t = prep.time(reps).await?;
            Ok::<_, GpuError>((y, t, prep.compile_ms, prep.upload_ms))
        });
        let (y, t, compile_ms, upload_ms) = match run {
            Ok(r) => r,
            Err(e) => {
                rec.status = if matches!(e, GpuError::MissingFeature(_)) { Status::Unsupported } else { Status::Error };
                rec.error_class = Some(e.class().into());
                rec.reason = Some(e.to_string());
                return rec;
            }
        };
        let t = RawTimings {
            compile_ms,
            upload_ms,
            dispatches: t.dispatches,
            wall_us: t.wall_us_per_dispatch,
            gpu_us: t.gpu_us_median,
        };
        judge(cell, p, &y, t, &mut rec);
        rec
    }
}
