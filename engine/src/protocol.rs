//! The one protocol between the harness and the page: what a cell asks for ([`CellSpec`]) and what
//! the page answers ([`CellOutput`]). Both sides compile these types, so a field added on one side
//! cannot silently vanish on the other: the harness reads answers with unknown fields refused, and
//! [`CellOutput::outcome`] turns an answer into either a validated run or a failure, never a
//! default value.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::models::bench::{BenchRequest, ModelBench};
use crate::platform::classify::ErrorKind;
use crate::platform::fallback::FallbackStep;
use crate::platform::selection::{Backend, Capabilities, Choice, Family};
use crate::quant::{LayerKind, MixedPolicy, QuantFormat, Quantizer};
use crate::reference::Arith;
use crate::webgpu::{AdapterSummary, GemvKernel};

/// Declares a string-valued enum: its names, `name()`, `Display`, `FromStr` (with the known names
/// in the error) and serde as that string.
macro_rules! named_enum {
    ($(#[$doc:meta])* $ty:ident, $what:literal { $($variant:ident => $name:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $ty {
            $(#[serde(rename = $name)] $variant),+
        }

        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $ty::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| {
                    format!("unknown {} `{s}` (known: {})", $what, $ty::NAMES.join(", "))
                })
            }
        }
    };
}

named_enum!(
    /// Where a cell runs: wgpu natively, or a browser over WebDriver.
    Runtime, "runtime" {
        Native => "native",
        Chromium => "chromium",
        ChromeShell => "chrome-shell",
        Firefox => "firefox",
        WebKitGtk => "webkitgtk",
    }
);

named_enum!(
    /// What a cell runs on. `webnn` is WebNN's standard mode (8-bit; narrower requests upgraded),
    /// `webnn-experimental` runs what was asked; `auto` lets the selection policy choose.
    CellBackend, "backend" {
        Webgpu => "webgpu",
        Webnn => "webnn",
        WebnnExperimental => "webnn-experimental",
        Wasm => "wasm",
        Auto => "auto",
    }
);

named_enum!(
    /// A WebNN context's device type.
    WebnnDevice, "WebNN device type" {
        Cpu => "cpu",
        Gpu => "gpu",
        Npu => "npu",
    }
);

named_enum!(
    /// Why a cell has no verdict, in a word: where it stopped (the page's stage, the harness's
    /// step) or what the device said. The browser's own words go with it, classified by kind
    /// (`platform::classify`).
    ErrorClass, "error class" {
        Unsupported => "unsupported",
        NotInstalled => "not_installed",
        Session => "session",
        Timeout => "timeout",
        Crash => "crash",
        NoAdapter => "no_adapter",
        NoWebgpu => "no_webgpu",
        MissingFeature => "missing_feature",
        BadSpec => "bad_spec",
        BadInput => "bad_input",
        BadOutput => "bad_output",
        Unrecordable => "unrecordable",
        JsException => "js_exception",
        GraphBuilding => "graph_building",
        Tensor => "tensor",
        Dispatch => "dispatch",
        DeviceRequest => "device_request",
        ResourceLimit => "resource_limit",
        Compile => "compile",
        Validation => "validation",
        DeviceLost => "device_lost",
        Readback => "readback",
    }
);

named_enum!(
    /// A defect planted in a cell's output after the backend computed it, to prove that the
    /// verdicts, the results file, the summary and `--check` refuse it end to end (natively and
    /// through the page): one output NaN or infinite, or the last output dropped.
    Plant, "planted defect" {
        NanOutput => "nan-output",
        InfOutput => "inf-output",
        Truncate => "truncate",
    }
);

impl Plant {
    pub fn apply(self, y: &mut Vec<f32>) {
        let at = y.len() / 2;
        match self {
            Plant::NanOutput if !y.is_empty() => y[at] = f32::NAN,
            Plant::InfOutput if !y.is_empty() => y[at] = f32::INFINITY,
            Plant::Truncate => {
                y.pop();
            }
            _ => {}
        }
    }
}

impl CellBackend {
    pub fn is_webnn(self) -> bool {
        matches!(self, CellBackend::Webnn | CellBackend::WebnnExperimental)
    }
}

impl From<Backend> for CellBackend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Webgpu => CellBackend::Webgpu,
            Backend::Webnn => CellBackend::Webnn,
            Backend::Wasm => CellBackend::Wasm,
        }
    }
}

/// What a cell asks for: a format, `mixed` (a model's layers in the formats of
/// [`MixedPolicy::webq_default`], model cells only), or `auto` (the selection policy picks it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    Auto,
    Mixed,
    Format(QuantFormat),
}

impl Precision {
    pub fn format(self) -> Option<QuantFormat> {
        match self {
            Precision::Auto | Precision::Mixed => None,
            Precision::Format(f) => Some(f),
        }
    }

    /// The format of each layer kind, for a model (`None` for `auto`).
    pub fn policy(self) -> Option<MixedPolicy> {
        match self {
            Precision::Auto => None,
            Precision::Mixed => Some(MixedPolicy { name: "mixed".into(), ..MixedPolicy::webq_default() }),
            Precision::Format(f) => Some(MixedPolicy::uniform(f)),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Precision::Auto => f.write_str("auto"),
            Precision::Mixed => f.write_str("mixed"),
            Precision::Format(q) => q.fmt(f),
        }
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => return Ok(Precision::Auto),
            "mixed" => return Ok(Precision::Mixed),
            _ => {}
        }
        s.parse().map(Precision::Format).map_err(|e: crate::quant::QuantError| e.to_string())
    }
}

impl Serialize for Precision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// What the harness asks the page to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellSpec {
    pub backend: CellBackend,
    /// WebNN device type, for WebNN backends and `auto`.
    #[serde(default)]
    pub device: Option<WebnnDevice>,
    pub precision: Precision,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub seed: u64,
    pub arith: Arith,
    /// The GEMV kernel and its workgroup (the tuning table's pick, or the cell's own).
    pub gemv: GemvKernel,
    pub quantizer: Quantizer,
    pub reps: usize,
    /// Model family and layer kind, for `auto`.
    #[serde(default)]
    pub family: Option<Family>,
    #[serde(default)]
    pub layer: Option<LayerKind>,
    /// WebGPU: ask the device for at most this many bytes a buffer and binding, and step the
    /// precision down when the weight does not fit.
    #[serde(default)]
    pub memory_cap: Option<u64>,
    /// Test only: a defect to plant in the output (see [`Plant`]).
    #[serde(default)]
    pub plant: Option<Plant>,
    /// A whole model to run instead of one matmul.
    #[serde(default)]
    pub model: Option<ModelSpec>,
}

/// A model cell: which trained model, where the page fetches its weights, how deep to run it, and
/// its inputs as token ids (the page never tokenizes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub family: Family,
    /// The weights file: a path on the page server (`/models/...`), natively a file path.
    pub file: String,
    /// The model's `config.json` text (BERT; Whisper, for the tokens greedy decoding suppresses).
    #[serde(default)]
    pub config: Option<String>,
    /// Layers (text) or blocks (llm) to run; all when absent.
    #[serde(default)]
    pub depth: Option<usize>,
    /// text: one row of ids per sentence, padded to one length; llm: one row, the sequence;
    /// audio (asks for the decoder): per utterance the transcript to score under teacher forcing,
    /// from the prompt on.
    pub ids: Vec<Vec<u32>>,
    /// text: the attention mask of each row.
    #[serde(default)]
    pub mask: Vec<Vec<u32>>,
    /// llm: how many of the ids run as one prefill; the rest are decoded one at a time through
    /// the KV cache.
    #[serde(default)]
    pub prefill: usize,
    /// vision: the images' pixels (normalized, channels first, one image after another); audio:
    /// the utterances' log-mel features. f32 little-endian bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features_b64: Option<String>,
    /// audio: log-mel frames per utterance.
    #[serde(default)]
    pub frames: usize,
    /// audio with the decoder: the longest greedy transcript, in tokens (0: the decoder's limit).
    #[serde(default)]
    pub max_tokens: usize,
    /// The warm inferences of the benchmark protocol (none by default: the references run once).
    #[serde(default)]
    pub bench: BenchRequest,
    /// Load stage by stage, each uploaded as it is stored (the seed's progressive loading);
    /// otherwise everything is stored, then uploaded (how the references load).
    #[serde(default)]
    pub progressive: bool,
    /// Trace the cell (`webq run --trace`, see `models::trace`): its ops, errors, memory and shaders.
    #[serde(default)]
    pub trace: bool,
}

impl ModelSpec {
    /// Sets [`ModelSpec::features_b64`].
    pub fn set_features(&mut self, x: &[f32]) {
        self.features_b64 = Some(base64::engine::general_purpose::STANDARD.encode(bytemuck::cast_slice(x)));
    }

    /// The decoded features (empty when there are none).
    pub fn features(&self) -> Result<Vec<f32>, String> {
        self.features_b64.as_deref().map_or(Ok(Vec::new()), decode_f32s)
    }
}

/// One backend tried by `auto`, and how it went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    pub backend: String,
    pub precision: String,
    pub ok: bool,
    pub error: Option<String>,
}

/// The page's answer. The page writes every field; a field the harness does not know is refused
/// (a stale page bundle), a missing one is empty (a page-level exception answers with only
/// `error_class` and `error`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CellOutput {
    /// f32 little-endian bytes of the output, base64 (binary: NaN and infinities survive).
    pub y_b64: Option<String>,
    /// The backend and format that produced the output (they differ from the request after an
    /// upgrade, a fallback or an `auto` choice).
    pub backend: Option<String>,
    pub precision: Option<String>,
    pub workgroup: Option<String>,
    #[serde(with = "webq_conformance::number::option")]
    pub compile_ms: Option<f64>,
    #[serde(with = "webq_conformance::number::option")]
    pub upload_ms: Option<f64>,
    #[serde(with = "webq_conformance::number::option")]
    pub wall_us: Option<f64>,
    #[serde(with = "webq_conformance::number::option")]
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
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
    pub error_kind: Option<ErrorKind>,
    pub recommendation: Option<String>,
    /// A model cell's benchmark record.
    pub bench: Option<ModelBench>,
    /// A traced model cell's trace (`ModelSpec::trace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::models::trace::Trace>,
    /// An audio model cell with the decoder: each utterance's greedy transcript, as token ids.
    pub transcripts: Vec<Vec<u32>>,
    /// The page's wasm linear memory after the cell (the shim's measure: it only grows, so it is
    /// the page's high-water mark), for the pool's memory budget.
    pub wasm_memory_bytes: Option<u64>,
}

/// Timings as the page measured them, every one present.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PageTimings {
    pub compile_ms: Option<f64>,
    pub upload_ms: f64,
    pub dispatches: usize,
    pub wall_us: f64,
    pub gpu_us: Option<f64>,
}

/// A validated answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The cell ran: its output (of the expected length), the precision that produced it, timings.
    Ran { y: Vec<f32>, precision: Precision, timings: PageTimings },
    /// The page says why it did not run.
    Failed { class: ErrorClass, message: String, kind: Option<ErrorKind> },
}

impl CellOutput {
    pub fn set_output(&mut self, y: &[f32]) {
        self.y_b64 = Some(base64::engine::general_purpose::STANDARD.encode(bytemuck::cast_slice(y)));
    }

    /// Plants `plant` in the output, if there is one.
    pub fn plant(&mut self, plant: Plant) {
        let Some(bytes) = self.y_b64.as_deref().and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        else {
            return;
        };
        let mut y: Vec<f32> =
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        plant.apply(&mut y);
        self.set_output(&y);
    }

    /// What the answer says, checked: an output of `expected_len` values in a known format with
    /// every timing present and in range, or a failure with its words. Anything else is an error
    /// that names what was wrong (the harness records it as an `error` cell).
    pub fn outcome(&self, requested: Precision, expected_len: usize) -> Result<Outcome, String> {
        match (&self.error, &self.y_b64) {
            (Some(_), Some(_)) => return Err("the answer has both an output and an error".into()),
            (Some(message), None) => {
                return Ok(Outcome::Failed {
                    class: self.error_class.ok_or("an error without `error_class`")?,
                    message: message.clone(),
                    kind: self.error_kind,
                })
            }
            (None, None) => return Err("the answer has neither an output (`y_b64`) nor an error".into()),
            (None, Some(_)) => {}
        }
        let y = decode_f32s(self.y_b64.as_deref().unwrap_or_default())?;
        if y.len() != expected_len {
            return Err(format!("the page returned {} outputs, {expected_len} expected", y.len()));
        }
        let precision = match (&self.precision, requested) {
            (Some(p), _) => p.parse().map_err(|e| format!("`precision`: the page ran an unknown format `{p}`: {e}"))?,
            (None, Precision::Auto) => return Err("`precision`: missing for an `auto` cell".into()),
            (None, requested) => requested,
        };
        let need = |v: Option<f64>, name: &str| -> Result<f64, String> {
            match v {
                None => Err(format!("`{name}`: missing")),
                Some(t) if !t.is_finite() || t < 0.0 => Err(format!("`{name}`: {t} is not a duration")),
                Some(t) => Ok(t),
            }
        };
        let timings = PageTimings {
            compile_ms: self.compile_ms.map(|t| need(Some(t), "compile_ms")).transpose()?,
            upload_ms: need(self.upload_ms, "upload_ms")?,
            dispatches: self.dispatches.filter(|&d| d > 0).ok_or("`dispatches`: missing or zero")?,
            wall_us: need(self.wall_us, "wall_us")?,
            gpu_us: self.gpu_us.map(|t| need(Some(t), "gpu_us")).transpose()?,
        };
        Ok(Outcome::Ran { y, precision, timings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(y: &[f32]) -> CellOutput {
        let mut out = CellOutput {
            precision: Some("int4-g128-sym".into()),
            upload_ms: Some(1.0),
            wall_us: Some(10.0),
            dispatches: Some(3),
            ..Default::default()
        };
        out.set_output(y);
        out
    }

    fn through_json(out: &CellOutput) -> CellOutput {
        serde_json::from_str(&serde_json::to_string(out).unwrap()).unwrap()
    }

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for r in Runtime::ALL {
            assert_eq!(r.name().parse::<Runtime>().unwrap(), *r);
            assert_eq!(serde_json::to_string(r).unwrap(), format!("\"{r}\""));
        }
        assert_eq!("webnn-experimental".parse::<CellBackend>().unwrap(), CellBackend::WebnnExperimental);
        let e = "webgl".parse::<CellBackend>().unwrap_err();
        assert!(e.contains("webgl") && e.contains("webnn-experimental"), "{e}");
        assert_eq!("auto".parse::<Precision>().unwrap(), Precision::Auto);
        assert_eq!("int4".parse::<Precision>().unwrap().to_string(), "int4-g128-sym");
        assert!("int5".parse::<Precision>().is_err());
    }

    #[test]
    fn non_finite_outputs_and_timings_survive_the_json_round_trip() {
        let mut out = ran(&[1.0, f32::NAN, f32::INFINITY]);
        out.gpu_us = Some(f64::NAN);
        let back = through_json(&out);
        assert!(back.gpu_us.unwrap().is_nan());
        // A NaN timing is malformed; a NaN output is the kernel's, judged (and failed) by the verdicts.
        let e = back.outcome(Precision::Auto, 3).unwrap_err();
        assert!(e.contains("gpu_us"), "{e}");
        let Outcome::Ran { y, .. } =
            through_json(&ran(&[1.0, f32::NAN, f32::NEG_INFINITY])).outcome(Precision::Auto, 3).unwrap()
        else {
            panic!("ran")
        };
        assert!(y[1].is_nan() && y[2] == f32::NEG_INFINITY);
    }

    #[test]
    fn malformed_answers_are_errors_that_say_what_was_wrong() {
        let truncated = ran(&[1.0, 2.0]);
        assert_eq!(truncated.outcome(Precision::Auto, 3).unwrap_err(), "the page returned 2 outputs, 3 expected");
        let no_timing = CellOutput { wall_us: None, ..ran(&[1.0]) };
        assert!(no_timing.outcome(Precision::Auto, 1).unwrap_err().contains("wall_us"));
        let torn = CellOutput { y_b64: Some("AAAA=A".into()), ..ran(&[1.0]) };
        assert!(torn.outcome(Precision::Auto, 1).unwrap_err().contains("base64"));
        let odd = CellOutput { y_b64: Some("AAAAAAA=".into()), ..ran(&[1.0]) };
        assert!(odd.outcome(Precision::Auto, 1).unwrap_err().contains("5 bytes"));
        assert!(CellOutput::default().outcome(Precision::Auto, 1).unwrap_err().contains("neither"));
        let unknown = serde_json::from_str::<CellOutput>(r#"{"y_b64": null, "surprise": 1}"#).unwrap_err();
        assert!(unknown.to_string().contains("surprise"), "{unknown}");
        let failed =
            CellOutput { error: Some("no".into()), error_class: Some(ErrorClass::Unsupported), ..Default::default() };
        assert!(matches!(failed.outcome(Precision::Auto, 1), Ok(Outcome::Failed { .. })));
    }
}

/// What `webq ops` asks a page: the per-op cells ([`crate::models::op_cases`]) on one backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpCasesSpec {
    pub backend: CellBackend,
    #[serde(default)]
    pub device: Option<WebnnDevice>,
    /// The WGSL ops' arithmetic (webgpu only; f16 needs shader-f16).
    #[serde(default)]
    pub arith: crate::reference::Arith,
}

/// The page's answer: each case's output (f32 bytes, base64) or the backend's words, in the order
/// of [`crate::models::op_cases::op_cases`]; the harness judges them. `error`: no backend at all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpCasesAnswer {
    #[serde(default)]
    pub cases: Vec<OpCaseOutput>,
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpCaseOutput {
    pub case: String,
    #[serde(default)]
    pub y_b64: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

impl OpCaseOutput {
    pub fn new(case: &str, y: Result<Vec<f32>, String>) -> OpCaseOutput {
        let b64 = |y: Vec<f32>| base64::engine::general_purpose::STANDARD.encode(bytemuck::cast_slice(&y));
        match y {
            Ok(y) => OpCaseOutput { case: case.into(), y_b64: Some(b64(y)), error: None },
            Err(e) => OpCaseOutput { case: case.into(), y_b64: None, error: Some(e) },
        }
    }

    /// The output, or why there is none (the backend's words, or a malformed answer).
    pub fn output(&self) -> Result<Vec<f32>, String> {
        match (&self.y_b64, &self.error) {
            (_, Some(e)) => Err(e.clone()),
            (None, None) => Err("the answer has neither an output nor an error".into()),
            (Some(b), None) => decode_f32s(b),
        }
    }
}

/// An output's f32 values from their little-endian bytes in base64 (`y_b64`).
fn decode_f32s(b64: &str) -> Result<Vec<f32>, String> {
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("`y_b64` is not base64: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err(format!("`y_b64` holds {} bytes, not a whole number of f32 values", bytes.len()));
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("chunks of 4"))).collect())
}
