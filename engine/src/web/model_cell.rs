//! A model cell in the page: the weights file streamed in by the shim ([`model_begin`],
//! [`model_chunk`]: chunk by chunk into wasm memory, so the page never holds the file twice), then
//! the whole model run on the `wasm` backend (the CPU path, simd128) or the `webgpu` backend (every
//! op in WGSL on the page's shared device).

use std::cell::RefCell;

use wasm_bindgen::prelude::*;

use super::webgpu_cell::{gpu, shared_executor};
use super::{CellOutput, CellSpec, Failure};
use crate::models::exec::CpuExec;
use crate::models::gpu::GpuBackend;
use crate::models::linear::ModelPrecision;
use crate::models::run::run_model;
use crate::models::ModelError;
use crate::protocol::{CellBackend, ErrorClass};

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
    if !matches!(spec.backend, CellBackend::Wasm | CellBackend::Webgpu) {
        return Err(Failure::unsupported(format!(
            "models run on the wasm and webgpu backends only so far, not `{}`",
            spec.backend
        )));
    }
    let policy = spec.precision.policy().ok_or_else(|| Failure::bad_spec("a model cell needs a named precision"))?;
    let precision = ModelPrecision { policy, quantizer: spec.quantizer };
    // The bytes are taken out while the model runs (an await point) and put back after.
    let held = WEIGHTS.with(|w| w.borrow_mut().take());
    let (file, bytes) = match held {
        Some((file, bytes)) if file == model.file => (file, bytes),
        other => {
            WEIGHTS.with(|w| *w.borrow_mut() = other);
            return Err(Failure::new(ErrorClass::BadInput, format!("the page holds no copy of {}", model.file)));
        }
    };
    let run = match spec.backend {
        CellBackend::Webgpu => match shared_executor().await {
            Ok(exec) => {
                out.adapter = Some(exec.adapter().clone());
                out.workgroup = Some(spec.gemv.to_string());
                run_model(model, &bytes, &precision, &mut GpuBackend::new(&exec, spec.gemv)).await
            }
            Err(e) => {
                WEIGHTS.with(|w| *w.borrow_mut() = Some((file, bytes)));
                return Err(gpu(e));
            }
        },
        _ => run_model(model, &bytes, &precision, &mut CpuExec::default()).await,
    };
    WEIGHTS.with(|w| *w.borrow_mut() = Some((file, bytes)));
    let run = run.map_err(|e| match e {
        ModelError::Backend { .. } => Failure::classified(ErrorClass::Dispatch, e.to_string()),
        other => Failure::new(ErrorClass::BadInput, other.to_string()),
    })?;
    if spec.backend == CellBackend::Wasm {
        out.dot_path = Some(crate::cpu::DOT_PATH.into());
    }
    out.upload_ms = Some(run.load_us / 1e3);
    out.wall_us = Some(run.run_us);
    out.dispatches = Some(1);
    out.notes.push(format!("load and quantize {:.1} ms; {}", run.load_us / 1e3, run.speed));
    out.set_output(&run.y);
    Ok(())
}
