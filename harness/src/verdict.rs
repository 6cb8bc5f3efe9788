//! Judging a cell's output: references are computed here, natively, from the same seed the backend
//! used, never by the backend under test.

use webq_conformance::{AccuracyVerdict, BudgetKey, KernelTolerance};
use webq_engine::protocol::ErrorClass;
use webq_engine::quant::{quantize, QuantFormat, QuantizedMatrix};
use webq_engine::reference::{emulate, fp16_reference, Arith, Emulated};
use webq_engine::seeded;

use crate::cell::Cell;
use crate::results::{CellRecord, CellTimings, KernelResult, Status};

/// Inputs, weights and both references of one (shape, precision, seed): shared by neighbouring cells.
pub struct References {
    key: String,
    pub x: Vec<f32>,
    pub q: QuantizedMatrix,
    reference: Vec<f32>,
    emulated: Vec<(Arith, Emulated)>,
}

fn key(cell: &Cell, format: &QuantFormat) -> String {
    format!("{}:{}x{}x{}:{format}:{}:{:?}", cell.shape, cell.m, cell.n, cell.k, cell.seed, cell.quantizer)
}

impl References {
    fn new(cell: &Cell, format: QuantFormat) -> Result<References, String> {
        let (m, n, k) = (cell.m, cell.n, cell.k);
        let w = seeded::weights(cell.seed, n, k);
        let x = seeded::activations(cell.seed, m, k);
        let q = quantize(&w, n, k, format, cell.quantizer).map_err(|e| format!("quantization: {e}"))?;
        let reference = fp16_reference(&x, m, &w, n, k);
        Ok(References { key: key(cell, &format), x, q, reference, emulated: Vec::new() })
    }

    /// The references of `cell` run in `format` (the requested one, or what an upgrade, a fallback
    /// or `auto` ran instead), reusing `slot` when it already holds them.
    pub fn for_cell<'a>(
        slot: &'a mut Option<References>,
        cell: &Cell,
        format: QuantFormat,
    ) -> Result<&'a mut References, String> {
        if slot.as_ref().is_none_or(|r| r.key != key(cell, &format)) {
            *slot = None;
            *slot = Some(References::new(cell, format)?);
        }
        Ok(slot.as_mut().expect("filled above"))
    }

    /// The fp16 reference and the exact emulation with `arith` (computed once).
    fn with_emulation(&mut self, arith: Arith) -> (&[f32], &Emulated) {
        let i = match self.emulated.iter().position(|(a, _)| *a == arith) {
            Some(i) => i,
            None => {
                let e = emulate(&self.x, self.x.len() / self.q.k, &self.q, arith);
                self.emulated.push((arith, e));
                self.emulated.len() - 1
            }
        };
        (&self.reference, &self.emulated[i].1)
    }
}

/// Timings as a backend reports them (the page's, or the native runner's in the same shape).
pub use webq_engine::protocol::PageTimings as RawTimings;

/// Fills in both verdicts, the status and the timings of `rec` from the backend's output `y`. An
/// output of the wrong length is an `error` (nothing to compare), never a panic.
pub fn judge(cell: &Cell, refs: &mut References, y: &[f32], t: RawTimings, rec: &mut CellRecord) {
    let format = refs.q.format;
    let weight_bytes = format.storage_bytes(cell.n, cell.k).map_or(0, |b| b.total() as u64);
    let us = t.gpu_us.unwrap_or(t.wall_us);
    rec.timings = Some(CellTimings {
        compile_ms: t.compile_ms,
        upload_ms: t.upload_ms,
        dispatches: t.dispatches,
        wall_us: t.wall_us,
        gpu_us: t.gpu_us,
        weight_bytes,
        weight_gbps: weight_bytes as f64 / (us * 1e3),
    });
    if y.len() != refs.reference.len() {
        rec.status = Status::Error;
        rec.error_class = Some(ErrorClass::BadOutput);
        rec.reason = Some(format!("{} outputs returned, {} expected", y.len(), refs.reference.len()));
        return;
    }
    let tolerance = match cell.arith {
        Arith::F32 => KernelTolerance::matmul_f32(),
        Arith::F16 => KernelTolerance::matmul_f16(),
    };
    let per_channel = format.as_int().is_some_and(|f| f.group.size().is_none());
    let key = BudgetKey { weight_bits: format.weight_bits(), per_channel, f16_arith: cell.arith == Arith::F16 };
    let (reference, em) = refs.with_emulation(cell.arith);
    let verdict = tolerance.judge(y, &em.y, &em.abs_dot, cell.k);
    let accuracy = AccuracyVerdict::judge(y, reference, &em.y, key, None).expect("lengths checked above");
    let mut reasons = Vec::new();
    if verdict.non_finite > 0 {
        reasons.push(format!("{} of {} outputs are NaN or infinite", verdict.non_finite, y.len()));
    }
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
            "accuracy: rel L2 {:.3e} over budget {:.3e} (exact computation {:.3e}, ceiling {:.3e})",
            accuracy.metrics.rel_l2,
            accuracy.budget_rel_l2,
            accuracy.exact_rel_l2.unwrap_or(f64::NAN),
            accuracy.ceiling_rel_l2.unwrap_or(f64::NAN),
        ));
    }
    rec.status = if reasons.is_empty() { Status::Pass } else { Status::Fail };
    rec.reason = (!reasons.is_empty()).then(|| reasons.join("; "));
    rec.kernel = Some(KernelResult { tolerance, verdict });
    rec.accuracy = Some(accuracy);
}

/// A fresh record of `cell` with status `error` until judged.
pub fn blank_record(cell: &Cell, run_id: &str, matrix: &str, environment: crate::results::Environment) -> CellRecord {
    CellRecord {
        schema: crate::results::RESULTS_SCHEMA,
        run_id: run_id.to_string(),
        matrix: matrix.to_string(),
        id: cell.id(),
        cell: cell.clone(),
        environment,
        status: Status::Error,
        reason: None,
        error_class: None,
        workgroup: None,
        kernel: None,
        accuracy: None,
        timings: None,
        detail: None,
        model: None,
        bench: None,
        memory: None,
        trace: None,
        finished_at: 0,
    }
}
