//! The `native` runtime: cells on wgpu directly (Vulkan; lavapipe here, a real GPU where there is one).
//! References are computed here, on the CPU, never by the backend under test.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use webq_conformance::{AccuracyVerdict, KernelTolerance};
use webq_engine::quant::{quantize, QuantizedMatrix};
use webq_engine::reference::{emulate, fp16_reference, Arith, Emulated};
use webq_engine::seeded;
use webq_engine::webgpu::{Executor, ExecutorOptions, GpuError, KernelVariant, TuningTable};

use crate::cell::Cell;
use crate::results::{unix_now, CellRecord, CellTimings, Environment, KernelResult, ResultsStore, Status};

/// Inputs, weights and both references of one (shape, precision): shared by its neighbouring cells.
struct Prepared {
    key: (String, String, u64),
    x: Vec<f32>,
    q: QuantizedMatrix,
    reference: Vec<f32>,
    emulated: Vec<(Arith, Emulated)>,
}

impl Prepared {
    fn new(cell: &Cell) -> Result<Prepared, String> {
        let (m, n, k) = (cell.m, cell.n, cell.k);
        let w = seeded::weights(cell.seed, n, k);
        let x = seeded::activations(cell.seed, m, k);
        let q = quantize(&w, n, k, cell.format(), cell.quantizer).map_err(|e| e.to_string())?;
        let reference = fp16_reference(&x, m, &w, n, k);
        Ok(Prepared { key: key(cell), x, q, reference, emulated: Vec::new() })
    }

    fn emulated(&mut self, arith: Arith) -> &Emulated {
        if let Some(i) = self.emulated.iter().position(|(a, _)| *a == arith) {
            return &self.emulated[i].1;
        }
        let e = emulate(&self.x, self.x.len() / self.q.k, &self.q, arith);
        self.emulated.push((arith, e));
        &self.emulated.last().expect("just pushed").1
    }
}

fn key(cell: &Cell) -> (String, String, u64) {
    (format!("{}:{}x{}x{}", cell.shape, cell.m, cell.n, cell.k), cell.precision.clone(), cell.seed)
}

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
        mut progress: impl FnMut(&CellRecord),
    ) -> std::io::Result<Vec<CellRecord>> {
        let mut prepared: Option<Prepared> = None;
        let mut records = Vec::new();
        for cell in cells.iter().filter(|c| !done.contains(&c.id())) {
            let base = CellRecord {
                schema: crate::results::RESULTS_SCHEMA,
                run_id: run_id.to_string(),
                matrix: matrix.to_string(),
                id: cell.id(),
                cell: cell.clone(),
                environment: self.environment(),
                status: Status::Error,
                reason: None,
                error_class: None,
                workgroup: None,
                kernel: None,
                accuracy: None,
                timings: None,
                finished_at: 0,
            };
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
            records.push(record);
        }
        Ok(records)
    }

    fn run_cell(&mut self, cell: &Cell, prepared: &mut Option<Prepared>, mut rec: CellRecord) -> CellRecord {
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
        if prepared.as_ref().is_none_or(|p| p.key != key(cell)) {
            match Prepared::new(cell) {
                Ok(p) => *prepared = Some(p),
                Err(e) => {
                    rec.reason = Some(format!("quantization: {e}"));
                    rec.error_class = Some("bad_input".into());
                    *prepared = None;
                    return rec;
                }
            }
        }
        let p = prepared.as_mut().expect("prepared above");
        let workgroup =
            cell.workgroup.unwrap_or_else(|| self.tuning.pick("native", &exec.adapter().name, cell.kernel, None));
        let variant = KernelVariant::new(cell.kernel, cell.arith, workgroup);
        rec.workgroup = Some(variant.workgroup.to_string());
        let run = exec.prepare(&p.x, cell.m, &p.q, variant).and_then(|prep| {
            let y = prep.output()?;
            let t = prep.time(self.reps)?;
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
        let tolerance = match cell.arith {
            Arith::F32 => KernelTolerance::matmul_f32(),
            Arith::F16 => KernelTolerance::matmul_f16(),
        };
        let reference = p.reference.clone();
        let em = p.emulated(cell.arith);
        let verdict = tolerance.judge(&y, &em.y, &em.abs_dot, cell.k);
        let format = p.q.format;
        let per_channel = format.as_int().is_some_and(|f| f.group.size().is_none());
        let accuracy =
            AccuracyVerdict::judge(&y, &reference, format.weight_bits(), per_channel, cell.arith == Arith::F16, None);
        let weight_bytes = format.storage_bytes(cell.n, cell.k).map_or(0, |b| b.total() as u64);
        let us = t.gpu_us_median.unwrap_or(t.wall_us_per_dispatch);
        rec.timings = Some(CellTimings {
            compile_ms,
            upload_ms,
            dispatches: t.dispatches,
            wall_us: t.wall_us_per_dispatch,
            gpu_us: t.gpu_us_median,
            weight_bytes,
            weight_gbps: weight_bytes as f64 / (us * 1e3),
        });
        let mut reasons = Vec::new();
        if !verdict.pass {
            reasons.push(format!(
                "kernel: {} of {} outputs beyond tolerance (worst {:.3e}x, max abs err {:.3e})",
                verdict.failures,
                y.len(),
                verdict.worst_ratio,
                verdict.max_abs_err
            ));
        }
        if !accuracy.pass {
            reasons.push(format!(
                "accuracy: rel L2 {:.3e} over budget {:.3e}",
                accuracy.metrics.rel_l2, accuracy.budget_rel_l2
            ));
        }
        rec.status = if reasons.is_empty() { Status::Pass } else { Status::Fail };
        rec.reason = (!reasons.is_empty()).then(|| reasons.join("; "));
        rec.kernel = Some(KernelResult { tolerance, verdict });
        rec.accuracy = Some(accuracy);
        rec
    }
}
