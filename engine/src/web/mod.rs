//! The engine in a browser page (wasm32): `runCell(specJson)` runs one cell on the backend it names
//! (`webgpu`, `webnn`, `webnn-experimental`, `wasm`, or `auto`, which selects one the way an
//! application would) and returns its output (f32 bytes, base64: binary, never float text), timings,
//! what actually ran and, on failure, the browser's words classified. The page never grades itself:
//! the harness recomputes references from the same seed natively.

mod auto;
mod model_cell;
mod op_cell;
mod timing;
mod wasm_cell;
mod webgpu_cell;
mod webnn_api;
mod webnn_cell;
mod webnn_model;

use wasm_bindgen::prelude::*;

use crate::platform::classify::{classify, ErrorKind};
pub use crate::protocol::{Attempt, CellBackend, CellOutput, CellSpec, ErrorClass};
use crate::quant::{quantize, QuantFormat, QuantizedMatrix};
use crate::seeded;

/// Hands a load event to the page's `webqProgress` hook, where the page set one (the shim posts
/// it to the harness, which draws a progress bar while the cell loads). A hook that throws costs
/// the bar, never the cell.
pub fn report_progress(e: &crate::models::loading::LoadEvent) {
    let Ok(hook) = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("webqProgress")) else { return };
    if let (Some(f), Ok(json)) = (hook.dyn_ref::<js_sys::Function>(), serde_json::to_string(e)) {
        let _ = f.call1(&JsValue::NULL, &JsValue::from_str(&json));
    }
}

/// Records a failure in the answer, classified.
trait Fail {
    fn fail(&mut self, f: Failure);
}

impl Fail for CellOutput {
    fn fail(&mut self, f: Failure) {
        let c = classify(&f.message);
        self.error_class = Some(f.class);
        self.error = Some(f.message);
        self.error_kind = Some(c.kind);
        self.recommendation = Some(c.recommendation);
    }
}

/// Why a cell produced no output.
#[derive(Debug)]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
}

impl Failure {
    fn new(class: ErrorClass, message: impl Into<String>) -> Failure {
        Failure { class, message: message.into() }
    }
    fn unsupported(message: impl Into<String>) -> Failure {
        Failure::new(ErrorClass::Unsupported, message)
    }
    fn bad_spec(message: impl Into<String>) -> Failure {
        Failure::new(ErrorClass::BadSpec, message)
    }
    /// A failure at `stage`; `unsupported` when the browser's words say the precision is not supported.
    fn classified(stage: ErrorClass, message: String) -> Failure {
        let class =
            if classify(&message).kind == ErrorKind::PrecisionNotSupported { ErrorClass::Unsupported } else { stage };
        Failure::new(class, message)
    }
    /// `map_err` adapter for a thrown JS exception.
    fn js(stage: ErrorClass) -> impl Fn(JsValue) -> Failure {
        move |e| Failure::classified(stage, webnn_api::describe(&e))
    }
}

/// Runs one cell; errors come back inside the JSON, classified.
#[wasm_bindgen(js_name = runCell)]
pub async fn run_cell(spec: String) -> String {
    let mut out = CellOutput::default();
    match serde_json::from_str::<CellSpec>(&spec) {
        Ok(spec) => match run(&spec, &mut out).await {
            Err(f) => out.fail(f),
            Ok(()) => {
                if let Some(p) = spec.plant {
                    out.plant(p);
                }
            }
        },
        Err(e) => out.fail(Failure::bad_spec(e.to_string())),
    }
    serde_json::to_string(&out).unwrap_or_default()
}

async fn run(spec: &CellSpec, out: &mut CellOutput) -> Result<(), Failure> {
    out.backend = Some(spec.backend.name().into());
    out.precision = Some(spec.precision.to_string());
    if spec.model.is_some() {
        return match spec.backend {
            CellBackend::Auto => auto::run_model(spec, out).await,
            _ => model_cell::run(spec, out).await,
        };
    }
    match spec.backend {
        CellBackend::Webgpu => webgpu_cell::run(spec, out).await,
        CellBackend::Webnn => webnn_cell::run(spec, webnn_cell::Mode::Standard, out).await,
        CellBackend::WebnnExperimental => webnn_cell::run(spec, webnn_cell::Mode::Experimental, out).await,
        CellBackend::Wasm => wasm_cell::run(spec, out).await,
        CellBackend::Auto => auto::run(spec, out).await,
    }
}

/// The checksum of seeded weights, so the harness can confirm the page generates the same bits.
#[wasm_bindgen(js_name = seedChecksum)]
pub fn seed_checksum(seed: u64, n: usize, k: usize) -> String {
    seeded::checksum(&seeded::weights(seed, n, k)).to_string()
}

/// What the page computes from a spec.
trait SpecInputs {
    /// The requested format (not for `auto`, whose precision the policy picks).
    fn format(&self) -> Result<QuantFormat, Failure>;
    /// The seeded weights and activations of the cell.
    fn inputs(&self) -> (Vec<f32>, Vec<f32>);
    /// The seeded weights quantized to `format`, and the activations.
    fn quantized(&self, format: QuantFormat) -> Result<(QuantizedMatrix, Vec<f32>), Failure>;
}

impl SpecInputs for CellSpec {
    fn format(&self) -> Result<QuantFormat, Failure> {
        self.precision.format().ok_or_else(|| Failure::bad_spec("`auto` has no format of its own"))
    }

    fn inputs(&self) -> (Vec<f32>, Vec<f32>) {
        (seeded::weights(self.seed, self.n, self.k), seeded::activations(self.seed, self.m, self.k))
    }

    fn quantized(&self, format: QuantFormat) -> Result<(QuantizedMatrix, Vec<f32>), Failure> {
        let (w, x) = self.inputs();
        let q = quantize(&w, self.n, self.k, format, self.quantizer)
            .map_err(|e| Failure::new(ErrorClass::BadInput, e.to_string()))?;
        Ok((q, x))
    }
}
