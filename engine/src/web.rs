//! The engine in a browser page (wasm32): `runCell(specJson)` runs one cell on the browser's WebGPU
//! and returns its output (f32 bytes, base64: binary, never float text), timings and adapter.
//! The page never grades itself: the harness recomputes references from the same seed natively.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::quant::{quantize, QuantFormat, Quantizer};
use crate::reference::Arith;
use crate::seeded;
use crate::webgpu::{AdapterSummary, Executor, ExecutorOptions, GpuError, KernelKind, KernelVariant, Workgroup};

/// What the harness asks the page to run.
#[derive(Deserialize)]
pub struct CellSpec {
    pub precision: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub seed: u64,
    pub arith: Arith,
    pub workgroup: String,
    pub quantizer: Quantizer,
    pub reps: usize,
}

#[derive(Serialize, Default)]
pub struct CellOutput {
    /// f32 little-endian bytes of the output, base64.
    pub y_b64: Option<String>,
    pub compile_ms: Option<f64>,
    pub upload_ms: Option<f64>,
    pub wall_us: Option<f64>,
    pub gpu_us: Option<f64>,
    pub dispatches: Option<usize>,
    pub adapter: Option<AdapterSummary>,
    /// Error class (see `GpuError::class`) and the browser's or wgpu's own words.
    pub error_class: Option<String>,
    pub error: Option<String>,
}

thread_local! {
    static EXECUTOR: RefCell<Option<Rc<Executor>>> = const { RefCell::new(None) };
}

async fn executor() -> Result<Rc<Executor>, GpuError> {
    if let Some(e) = EXECUTOR.with(|c| c.borrow().clone()) {
        return Ok(e);
    }
    let e = Rc::new(Executor::open(&ExecutorOptions::default()).await?);
    EXECUTOR.with(|c| *c.borrow_mut() = Some(e.clone()));
    Ok(e)
}

/// Runs one cell; errors come back inside the JSON, classified.
#[wasm_bindgen(js_name = runCell)]
pub async fn run_cell(spec: String) -> String {
    let out = match serde_json::from_str::<CellSpec>(&spec) {
        Ok(spec) => run(&spec).await,
        Err(e) => CellOutput { error_class: Some("bad_spec".into()), error: Some(e.to_string()), ..Default::default() },
    };
    serde_json::to_string(&out).unwrap_or_default()
}

async fn run(spec: &CellSpec) -> CellOutput {
    let fail = |class: &str, msg: String| CellOutput {
        error_class: Some(class.into()),
        error: Some(msg),
        ..Default::default()
    };
    let format: QuantFormat = match spec.precision.parse() {
        Ok(f) => f,
        Err(e) => return fail("bad_spec", e.to_string()),
    };
    let Some(workgroup) = Workgroup::parse(&spec.workgroup) else {
        return fail("bad_spec", format!("bad workgroup {}", spec.workgroup));
    };
    let exec = match executor().await {
        Ok(e) => e,
        Err(e) => return fail(e.class(), e.to_string()),
    };
    let w = seeded::weights(spec.seed, spec.n, spec.k);
    let x = seeded::activations(spec.seed, spec.m, spec.k);
    let q = match quantize(&w, spec.n, spec.k, format, spec.quantizer) {
        Ok(q) => q,
        Err(e) => return fail("bad_input", e.to_string()),
    };
    let variant = KernelVariant::new(KernelKind::for_rows(spec.m), spec.arith, workgroup);
    let result = async {
        let p = exec.prepare(&x, spec.m, &q, variant).await?;
        let y = p.output().await?;
        let t = p.time(spec.reps).await?;
        Ok::<_, GpuError>((y, t, p.compile_ms, p.upload_ms))
    }
    .await;
    match result {
        Ok((y, t, compile_ms, upload_ms)) => CellOutput {
            y_b64: Some(crate::b64::encode(bytemuck::cast_slice(&y))),
            compile_ms,
            upload_ms: Some(upload_ms),
            wall_us: Some(t.wall_us_per_dispatch),
            gpu_us: t.gpu_us_median,
            dispatches: Some(t.dispatches),
            adapter: Some(exec.adapter().clone()),
            ..Default::default()
        },
        Err(e) => CellOutput { adapter: Some(exec.adapter().clone()), ..fail(e.class(), e.to_string()) },
    }
}

/// The checksum of seeded weights, so the harness can confirm the page generates the same bits.
#[wasm_bindgen(js_name = seedChecksum)]
pub fn seed_checksum(seed: u64, n: usize, k: usize) -> String {
    seeded::checksum(&seeded::weights(seed, n, k)).to_string()
}
