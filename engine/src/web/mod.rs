//! The engine in a browser page (wasm32): `runCell(specJson)` runs one cell on the backend it names
//! (`webgpu`, `webnn`, `webnn-experimental`, `wasm`, or `auto`, which selects one the way an
//! application would) and returns its output (f32 bytes, base64: binary, never float text), timings,
//! what actually ran and, on failure, the browser's words classified. The page never grades itself:
//! the harness recomputes references from the same seed natively.

mod auto;
mod timing;
mod wasm_cell;
mod webgpu_cell;
mod webnn_api;
mod webnn_cell;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::platform::classify::{classify, ErrorKind};
use crate::platform::fallback::FallbackStep;
use crate::platform::selection::{Capabilities, Choice};
use crate::quant::{quantize, QuantFormat, QuantizedMatrix, Quantizer};
use crate::reference::Arith;
use crate::seeded;
use crate::webgpu::AdapterSummary;

/// What the harness asks the page to run.
#[derive(Clone, Deserialize)]
pub struct CellSpec {
    #[serde(default = "default_backend")]
    pub backend: String,
    /// WebNN device type (`cpu`, `gpu`, `npu`).
    #[serde(default)]
    pub device: Option<String>,
    /// A format name, or `auto` (the selection policy picks).
    pub precision: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub seed: u64,
    pub arith: Arith,
    pub workgroup: String,
    pub quantizer: Quantizer,
    pub reps: usize,
    /// Model family and layer kind, for `auto`.
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub layer: Option<String>,
    /// WebGPU: ask the device for at most this many bytes a buffer and binding, and step the
    /// precision down when the weight does not fit.
    #[serde(default)]
    pub memory_cap: Option<u64>,
}

fn default_backend() -> String {
    "webgpu".into()
}

/// One backend tried by `auto`, and how it went.
#[derive(Clone, Serialize, Default)]
pub struct Attempt {
    pub backend: String,
    pub precision: String,
    pub ok: bool,
    pub error: Option<String>,
}

#[derive(Serialize, Default)]
pub struct CellOutput {
    /// f32 little-endian bytes of the output, base64.
    pub y_b64: Option<String>,
    /// The backend and format that produced the output (they differ from the request after an
    /// upgrade, a fallback or an `auto` choice).
    pub backend: Option<String>,
    pub precision: Option<String>,
    pub workgroup: Option<String>,
    pub compile_ms: Option<f64>,
    pub upload_ms: Option<f64>,
    pub wall_us: Option<f64>,
    pub gpu_us: Option<f64>,
    pub dispatches: Option<usize>,
    pub adapter: Option<AdapterSummary>,
    /// Everything the cell did that the request did not say: upgrades, widenings, fallbacks.
    pub notes: Vec<String>,
    /// WebNN: the context's `opSupportLimits()` for the operators used, read before building.
    pub op_support_limits: Option<serde_json::Value>,
    /// Out-of-memory fallback: the formats that did not fit, in order.
    pub fallback_steps: Vec<FallbackStep>,
    /// `auto`: what the page detected, what it chose and why, and each backend it tried.
    pub capabilities: Option<Capabilities>,
    pub choice: Option<Choice>,
    pub attempts: Vec<Attempt>,
    /// The CPU path's dot product (`simd128` or `scalar`).
    pub dot_path: Option<String>,
    /// Failure: a short class (`unsupported`, `graph_building`, ...), the browser's or wgpu's own
    /// words, their kind (PRECISION_NOT_SUPPORTED, ...) and what to try instead.
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub error_kind: Option<ErrorKind>,
    pub recommendation: Option<String>,
}

impl CellOutput {
    fn set_output(&mut self, y: &[f32]) {
        self.y_b64 = Some(crate::b64::encode(bytemuck::cast_slice(y)));
    }

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
    pub class: String,
    pub message: String,
}

impl Failure {
    fn new(class: &str, message: impl Into<String>) -> Failure {
        Failure { class: class.into(), message: message.into() }
    }
    fn unsupported(message: impl Into<String>) -> Failure {
        Failure::new("unsupported", message)
    }
    fn bad_spec(message: impl Into<String>) -> Failure {
        Failure::new("bad_spec", message)
    }
    /// A failure at `stage`; `unsupported` when the browser's words say the precision is not supported.
    fn classified(stage: &str, message: String) -> Failure {
        let class = if classify(&message).kind == ErrorKind::PrecisionNotSupported { "unsupported" } else { stage };
        Failure::new(class, message)
    }
    /// `map_err` adapter for a thrown JS exception.
    fn js(stage: &'static str) -> impl Fn(JsValue) -> Failure {
        move |e| Failure::classified(stage, webnn_api::describe(&e))
    }
}

/// Runs one cell; errors come back inside the JSON, classified.
#[wasm_bindgen(js_name = runCell)]
pub async fn run_cell(spec: String) -> String {
    let mut out = CellOutput::default();
    match serde_json::from_str::<CellSpec>(&spec) {
        Ok(spec) => {
            if let Err(f) = run(&spec, &mut out).await {
                out.fail(f);
            }
        }
        Err(e) => out.fail(Failure::bad_spec(e.to_string())),
    }
    serde_json::to_string(&out).unwrap_or_default()
}

async fn run(spec: &CellSpec, out: &mut CellOutput) -> Result<(), Failure> {
    out.backend = Some(spec.backend.clone());
    out.precision = Some(spec.precision.clone());
    match spec.backend.as_str() {
        "webgpu" => webgpu_cell::run(spec, out).await,
        "webnn" => webnn_cell::run(spec, webnn_cell::Mode::Standard, out).await,
        "webnn-experimental" => webnn_cell::run(spec, webnn_cell::Mode::Experimental, out).await,
        "wasm" => wasm_cell::run(spec, out).await,
        "auto" => auto::run(spec, out).await,
        other => Err(Failure::bad_spec(format!("unknown backend `{other}`"))),
    }
}

/// The checksum of seeded weights, so the harness can confirm the page generates the same bits.
#[wasm_bindgen(js_name = seedChecksum)]
pub fn seed_checksum(seed: u64, n: usize, k: usize) -> String {
    seeded::checksum(&seeded::weights(seed, n, k)).to_string()
}

impl CellSpec {
    /// The requested format (not for `auto`, whose precision the policy picks).
    fn format(&self) -> Result<QuantFormat, Failure> {
        self.precision.parse().map_err(|e: crate::quant::QuantError| Failure::bad_spec(e.to_string()))
    }

    /// The seeded weights and activations of the cell.
    fn inputs(&self) -> (Vec<f32>, Vec<f32>) {
        (seeded::weights(self.seed, self.n, self.k), seeded::activations(self.seed, self.m, self.k))
    }

    /// The seeded weights quantized to `format`, and the activations.
    fn quantized(&self, format: QuantFormat) -> Result<(QuantizedMatrix, Vec<f32>), Failure> {
        let (w, x) = self.inputs();
        let q = quantize(&w, self.n, self.k, format, self.quantizer)
            .map_err(|e| Failure::new("bad_input", e.to_string()))?;
        Ok((q, x))
    }
}
