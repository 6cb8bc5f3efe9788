//! A model cell in the page: the weights file streamed in by the shim ([`model_begin`],
//! [`model_chunk`]: chunk by chunk into wasm memory, so the page never holds the file twice), then
//! the whole model run on the `wasm` backend (the CPU path, simd128), the `webgpu` backend (every
//! op in WGSL on the page's shared device) or the `webnn` backends (every op a WebNN graph on a
//! context of the cell's device type; standard mode stores 8-bit, see `ModelPrecision::on_backend`).

use std::cell::RefCell;

use wasm_bindgen::prelude::*;

use super::webgpu_cell::{gpu, shared_executor};
use super::webnn_cell;
use super::webnn_model::WebnnBackend;
use super::{CellOutput, CellSpec, Failure};
use crate::models::exec::CpuExec;
use crate::models::gpu::GpuBackend;
use crate::models::linear::ModelPrecision;
use crate::models::run::{run_model_traced, ModelRun};
use crate::models::trace::Trace;
use crate::models::ModelError;
use crate::protocol::{CellBackend, ErrorClass, ModelSpec};

thread_local! {
    /// The weights file the page holds: its path on the page server and its bytes.
    static WEIGHTS: RefCell<Option<(String, Vec<u8>)>> = const { RefCell::new(None) };
}

/// Starts receiving `file` (`len` bytes, 0 when unknown), dropping the file held before.
#[wasm_bindgen(js_name = modelBegin)]
pub fn model_begin(file: String, len: usize) {
    WEIGHTS.with(|w| {
        *w.borrow_mut() = None;
        *w.borrow_mut() = Some((file, Vec::with_capacity(len)));
    });
}

/// Appends one chunk of the file being received.
#[wasm_bindgen(js_name = modelChunk)]
pub fn model_chunk(chunk: &[u8]) {
    WEIGHTS.with(|w| {
        if let Some((_, bytes)) = w.borrow_mut().as_mut() {
            bytes.extend_from_slice(chunk);
        }
    });
}

pub async fn run(spec: &CellSpec, out: &mut CellOutput) -> Result<(), Failure> {
    let model = spec.model.as_ref().ok_or_else(|| Failure::bad_spec("not a model cell"))?;
    if spec.backend == CellBackend::Auto {
        return Err(Failure::unsupported("a model cell runs a named backend, not `auto`"));
    }
    let (precision, ran, notes) = ModelPrecision::on_backend(spec.precision, spec.quantizer, spec.backend)
        .ok_or_else(|| Failure::bad_spec("a model cell needs a named precision"))?;
    out.precision = Some(ran.to_string());
    out.notes.extend(notes);
    // The bytes are taken out while the model runs (an await point) and put back after.
    let held = WEIGHTS.with(|w| w.borrow_mut().take());
    let (file, bytes) = match held {
        Some((file, bytes)) if file == model.file => (file, bytes),
        other => {
            WEIGHTS.with(|w| *w.borrow_mut() = other);
            return Err(Failure::new(ErrorClass::BadInput, format!("the page holds no copy of {}", model.file)));
        }
    };
    let run = run_on(spec, model, &bytes, &precision, out).await;
    WEIGHTS.with(|w| *w.borrow_mut() = Some((file, bytes)));
    let run = run?;
    out.trace = run.1;
    let run = run.0.map_err(|e| match e {
        ModelError::Backend { .. } => Failure::classified(ErrorClass::Dispatch, e.to_string()),
        other => Failure::new(ErrorClass::BadInput, other.to_string()),
    })?;
    if spec.backend == CellBackend::Wasm {
        out.dot_path = Some(crate::cpu::dot_path().into());
    }
    out.upload_ms = Some(run.load_us / 1e3);
    out.wall_us = Some(run.run_us);
    out.dispatches = Some(1);
    out.notes.push(format!("load and quantize {:.1} ms; {}", run.load_us / 1e3, run.speed));
    out.set_output(&run.y);
    let mut bench = run.bench;
    // Linear memory only grows: after the run it is the cell's high-water mark.
    bench.wasm_memory_bytes = Some(core::arch::wasm32::memory_size(0) as u64 * 65536);
    out.bench = Some(bench);
    out.transcripts = run.transcripts;
    Ok(())
}

/// The model on the cell's backend: `Err` when the backend could not be had at all, `Ok((Err, _))`
/// when the model failed on it; with the trace, where the cell asked for one.
async fn run_on(
    spec: &CellSpec,
    model: &ModelSpec,
    bytes: &[u8],
    precision: &ModelPrecision,
    out: &mut CellOutput,
) -> Result<(Result<ModelRun, ModelError>, Option<Trace>), Failure> {
    Ok(match spec.backend {
        CellBackend::Webgpu => {
            let exec = shared_executor().await.map_err(gpu)?;
            out.adapter = Some(exec.adapter().clone());
            out.workgroup = Some(spec.gemv.to_string());
            run_model_traced(model, bytes, precision, &mut GpuBackend::new(&exec, spec.gemv)).await
        }
        CellBackend::Webnn | CellBackend::WebnnExperimental => {
            let ctx = webnn_cell::context(spec, out).await?;
            let mut exec = WebnnBackend::new(&ctx);
            let run = run_model_traced(model, bytes, precision, &mut exec).await;
            out.notes.extend(exec.finish());
            ctx.destroy();
            run
        }
        _ => run_model_traced(model, bytes, precision, &mut CpuExec::default()).await,
    })
}
