//! Matrix files (TOML): what to run. A bad one gets an error with file, line and field.
//!
//! ```toml
//! schema = 1
//! name = "native"
//! runtimes = ["native"]
//! precisions = ["catalogue"]      # every format webq knows, or names: "int4-g128-sym", "fp16", ...
//! arith = ["f32", "f16"]
//! workgroups = ["tuned"]          # the tuning table's pick, "all" (every GEMV kernel), "128x2", "vec-64x4", ...
//! quantizer = "search"            # or "rtn"
//! reps = 5                        # timed dispatches per cell
//! warm_ms = 1000                  # model cells: warm inferences after the first for at least this long
//! min_warm = 3                    # ... and at least this many (both default 0: the first inference only)
//! seed = 1
//! backends = ["webgpu", "webnn", "webnn-experimental", "wasm", "auto"]
//! webnn_devices = ["cpu"]         # WebNN contexts to run: cpu, gpu, npu
//!
//! [[shapes]]
//! name = "decode"
//! m = 1
//! n = 333
//! k = 1024
//! precisions = ["int4-g128-sym"]  # optional: only these formats for this shape
//! backends = ["webgpu"]           # optional: only these backends for this shape
//! runtimes = ["native"]           # optional: only these runtimes for this shape
//! family = "text"                 # optional: model family (text, vision, audio, llm) for `auto`
//! layer = "attention"             # optional: layer kind for `auto` with llm (mixed precision)
//! memory_cap = 1048576            # optional: WebGPU device limit in bytes (out-of-memory fallback)
//! quantizer = "rtn"               # optional: this shape's quantizer
//! plant = "nan-output"            # test only: plant a defect in every output (nan-output,
//!                                 # inf-output, truncate) that the verdicts must refuse
//!
//! [[models]]                      # whole trained models (harness/data/ holds their inputs)
//! name = "minilm"                 # the cells' shape name
//! family = "text"                 # text (all-MiniLM-L6-v2), vision (ViT-S/14), audio (Whisper tiny.en's encoder) or llm (SmolLM2-135M)
//! precisions = ["int8-pc-sym", "mixed"]   # formats, or "mixed" (4-bit, attention and embeddings 8-bit)
//! backends = ["wasm", "webgpu"]   # optional (default wasm): the CPU path, every op in WGSL, or
//!                                 # every op a WebNN graph (webnn: 8-bit; webnn-experimental), on
//!                                 # each of the matrix's webnn_devices
//! runtimes = ["native", "firefox"]  # optional
//! webnn_devices = ["cpu"]         # optional: the WebNN cells' device types (default: the matrix's)
//! depth = 2                       # optional: layers (text, vision, audio) or blocks (llm) to run; all when absent
//! sentences = 8                   # text: the first N sentences of harness/data/sentences.txt (all when absent)
//! inputs = 2                      # vision: the first N photographs; audio: the first N utterances
//! tokens = 24                     # llm: the first N tokens of harness/data/passage.txt
//! decode = 8                      # llm: of which the last N are decoded one at a time (KV cache)
//! transcribe = true               # audio: the decoder too (fp16's transcripts scored, greedy transcripts
//!                                 # of at most `tokens` tokens, default 64; word error rates)
//! full_window = true              # audio: Whisper's whole 30 s window, not the frames the speech needs
//! workgroup = "128x2"             # optional: the GEMV of one-row matmuls (default: the tuning table's)
//!
//! [[expect]]                      # checked by `webq run --check`
//! cells = "chrome-shell/webnn@cpu/*"
//! status = "pass"
//! ran = "int8-*"                  # optional: the precision that actually ran
//! kernel = "vec-sg-*"             # optional: the GEMV or GEMM kernel that actually ran
//!
//! [[expect]]                      # every `unsupported` cell must be named by one of these
//! cells = "firefox/webnn*"
//! status = "unsupported"
//! reason = "navigator.ml is undefined"   # optional: the reason, `*` as above
//! ```

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;
use webq_engine::models::bench::BenchRequest;
use webq_engine::models::whisper_decoder::MAX_TOKENS;
use webq_engine::platform::selection::Family;
use webq_engine::protocol::{CellBackend, Plant, Precision, Runtime, WebnnDevice};
use webq_engine::quant::{LayerKind, QuantFormat, Quantizer};
use webq_engine::reference::Arith;
use webq_engine::webgpu::GemvKernel;

use crate::results::Status;

pub const MATRIX_SCHEMA: u32 = 1;

#[derive(Debug, Error)]
pub enum MatrixError {
    #[error("{file}: cannot read the matrix: {message}")]
    Io { file: String, message: String },
    #[error("{file}:{line}: {message}")]
    Parse { file: String, line: usize, message: String },
    #[error("{file}:{line}: field `{field}`: {message}")]
    Field { file: String, line: usize, field: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    schema: Spanned<u32>,
    name: String,
    #[serde(default)]
    description: String,
    runtimes: Vec<Spanned<String>>,
    #[serde(default = "default_backends")]
    backends: Vec<Spanned<String>>,
    precisions: Vec<Spanned<String>>,
    #[serde(default = "default_arith")]
    arith: Vec<Spanned<String>>,
    #[serde(default = "default_workgroups")]
    workgroups: Vec<Spanned<String>>,
    #[serde(default)]
    quantizer: Option<Spanned<String>>,
    #[serde(default = "default_reps")]
    reps: usize,
    #[serde(default)]
    warm_ms: Option<Spanned<f64>>,
    #[serde(default)]
    min_warm: usize,
    #[serde(default = "default_seed")]
    seed: u64,
    #[serde(default = "default_webnn_devices")]
    webnn_devices: Vec<Spanned<String>>,
    #[serde(default)]
    shapes: Vec<RawShape>,
    #[serde(default)]
    models: Vec<RawModel>,
    #[serde(default)]
    expect: Vec<RawExpect>,
    #[serde(default)]
    pool: Option<RawPool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    #[serde(default)]
    sessions: Option<Spanned<usize>>,
    #[serde(default)]
    recycle_after: Option<Spanned<usize>>,
    #[serde(default)]
    high_priority: Vec<String>,
    #[serde(default)]
    memory_budget_mb: Option<Spanned<usize>>,
}

/// How `webq run --pool` schedules browser cells (a matrix's `[pool]`; `--pool N` overrides
/// `sessions`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolConfig {
    /// Sessions per browser, all browsers at once; 0: one session at a time, browser after browser.
    pub sessions: usize,
    /// A session is closed and a new one opened after this many cells.
    pub recycle_after: Option<usize>,
    /// Cell id patterns (`*` matches anything) that run before every other cell.
    pub high_priority: Vec<String>,
    /// What one browser session's page may hold, in MiB (`memory_budget`); none: no budget.
    pub memory_budget_mb: Option<usize>,
}

impl PoolConfig {
    pub fn is_high(&self, id: &str) -> bool {
        self.high_priority.iter().any(|p| crate::expect::glob(p, id))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    family: Spanned<String>,
    precisions: Vec<Spanned<String>>,
    #[serde(default)]
    backends: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    runtimes: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    webnn_devices: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    depth: Option<Spanned<usize>>,
    #[serde(default)]
    sentences: Option<Spanned<usize>>,
    #[serde(default)]
    inputs: Option<Spanned<usize>>,
    #[serde(default)]
    tokens: Option<Spanned<usize>>,
    #[serde(default)]
    decode: Option<usize>,
    #[serde(default)]
    transcribe: Option<Spanned<bool>>,
    #[serde(default)]
    full_window: Option<Spanned<bool>>,
    #[serde(default)]
    workgroup: Option<Spanned<String>>,
    #[serde(default)]
    quantizer: Option<Spanned<String>>,
}

/// A trained model to run end to end (see the module's example).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEntry {
    pub name: String,
    pub family: Family,
    pub precisions: Vec<Precision>,
    pub backends: Vec<CellBackend>,
    pub runtimes: Option<Vec<Runtime>>,
    /// WebNN device types for this model's WebNN cells (the matrix's when `None`).
    pub webnn_devices: Option<Vec<WebnnDevice>>,
    pub depth: Option<usize>,
    pub sentences: Option<usize>,
    pub inputs: Option<usize>,
    pub tokens: usize,
    pub decode: usize,
    /// audio: the decoder and greedy transcripts too (of at most `tokens` tokens); Whisper's
    /// whole 30 s window.
    pub transcribe: bool,
    pub full_window: bool,
    /// The GEMV of the cells' one-row matmuls (`None`: the tuning table's pick).
    pub workgroup: Option<GemvKernel>,
    pub quantizer: Option<Quantizer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    cells: String,
    status: Spanned<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    ran: Option<String>,
    #[serde(default)]
    kernel: Option<String>,
    #[serde(default)]
    dot_path: Option<String>,
    #[serde(default)]
    backend: Option<String>,
}

/// What some cells must come out as (checked by `webq run --check`): cells whose id matches
/// `cells` (`*` matches any run of characters) have `status`; with `reason`, for a reason matching
/// it (the browser's own words); with `ran`, ran a precision matching it (after an upgrade, a
/// fallback or `auto`'s choice); with `kernel`, ran a kernel matching it (the record's `workgroup`:
/// the tuning table's pick as the device could run it, so a driver that loses a feature the pick
/// needs, such as subgroups, is caught rather than quietly stepped back from); with `dot_path`, the
/// CPU path summed as it names (`simd128-fma`: an engine that stops validating or fusing relaxed-simd
/// loads the other bundle, whose cells pass just as well); with `backend`, ran on a backend matching
/// it (`auto`'s choice or fallback: a browser that stops saying its WebGPU adapter is a fallback one
/// is caught). A pattern that
/// matches no cell is itself a failure, so a renamed cell cannot slip out of its expectation; an
/// `unsupported` cell that no expectation names is one too (see `expect::violations`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, Deserialize)]
pub struct Expect {
    pub cells: String,
    pub status: Status,
    pub reason: Option<String>,
    pub ran: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dot_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShape {
    name: String,
    m: Spanned<usize>,
    n: Spanned<usize>,
    k: Spanned<usize>,
    #[serde(default)]
    precisions: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    backends: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    runtimes: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    family: Option<Spanned<String>>,
    #[serde(default)]
    layer: Option<Spanned<String>>,
    #[serde(default)]
    memory_cap: Option<u64>,
    #[serde(default)]
    quantizer: Option<Spanned<String>>,
    #[serde(default)]
    plant: Option<Spanned<String>>,
}

fn default_backends() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "webgpu".into())]
}
fn default_arith() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "f32".into())]
}
fn default_workgroups() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "tuned".into())]
}
fn default_webnn_devices() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "cpu".into())]
}
fn default_reps() -> usize {
    3
}
fn default_seed() -> u64 {
    1
}

/// Which GEMV workgroup sizes to run.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkgroupChoice {
    Tuned,
    Fixed(GemvKernel),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub name: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub precisions: Option<Vec<QuantFormat>>,
    pub backends: Option<Vec<CellBackend>>,
    pub runtimes: Option<Vec<Runtime>>,
    pub family: Option<Family>,
    pub layer: Option<LayerKind>,
    pub memory_cap: Option<u64>,
    /// Overrides the matrix's quantizer for this shape.
    pub quantizer: Option<Quantizer>,
    /// Test only: a defect planted in every output of this shape.
    pub plant: Option<Plant>,
}

/// A validated matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    pub runtimes: Vec<Runtime>,
    pub backends: Vec<CellBackend>,
    pub precisions: Vec<QuantFormat>,
    pub arith: Vec<Arith>,
    pub workgroups: Vec<WorkgroupChoice>,
    pub quantizer: Quantizer,
    pub reps: usize,
    /// Model cells' warm inferences (the benchmark protocol).
    pub bench: BenchRequest,
    pub seed: u64,
    pub webnn_devices: Vec<WebnnDevice>,
    pub shapes: Vec<Shape>,
    pub models: Vec<ModelEntry>,
    pub expect: Vec<Expect>,
    pub pool: PoolConfig,
}

impl Matrix {
    pub fn load(path: &Path) -> Result<Matrix, MatrixError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MatrixError::Io { file: path.display().to_string(), message: e.to_string() })?;
        Matrix::parse(path, &text)
    }

    /// Parses and validates a matrix, in two phases: TOML into the raw layout (errors located by
    /// the TOML parser), then every value checked and converted (errors located by its span).
    pub fn parse(path: &Path, text: &str) -> Result<Matrix, MatrixError> {
        let src = Source { file: path.display().to_string(), text };
        let raw: RawMatrix = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
        if *raw.schema.get_ref() != MATRIX_SCHEMA {
            return Err(src.field(&raw.schema, "schema", format!("this webq reads matrix schema {MATRIX_SCHEMA}")));
        }
        let quantizer = match &raw.quantizer {
            None => Quantizer::ScaleSearch,
            Some(q) => src.quantizer(q, "quantizer")?,
        };
        let warm_ms = match &raw.warm_ms {
            None => 0.0,
            Some(w) if w.get_ref().is_finite() && *w.get_ref() >= 0.0 => *w.get_ref(),
            Some(w) => return Err(src.field(w, "warm_ms", "milliseconds, 0 or more".into())),
        };
        Ok(Matrix {
            path: path.to_path_buf(),
            name: raw.name,
            description: raw.description,
            runtimes: src.names(&raw.runtimes, "runtimes")?,
            backends: src.names(&raw.backends, "backends")?,
            precisions: src.formats(&raw.precisions, "precisions")?,
            arith: raw.arith.iter().map(|a| src.arith(a)).collect::<Result<_, _>>()?,
            workgroups: raw.workgroups.iter().map(|w| src.workgroups(w)).collect::<Result<Vec<_>, _>>()?.concat(),
            quantizer,
            reps: raw.reps.max(1),
            bench: BenchRequest { warm_ms, min_warm: raw.min_warm },
            seed: raw.seed,
            webnn_devices: src.names(&raw.webnn_devices, "webnn_devices")?,
            shapes: raw.shapes.iter().map(|s| src.shape(s)).collect::<Result<_, _>>()?,
            models: raw.models.iter().map(|m| src.model(m)).collect::<Result<_, _>>()?,
            expect: raw.expect.iter().map(|e| src.expectation(e)).collect::<Result<_, _>>()?,
            pool: match &raw.pool {
                None => PoolConfig::default(),
                Some(p) => src.pool(p)?,
            },
        })
    }
}

/// The matrix text, for errors that name the file, line and field.
struct Source<'a> {
    file: String,
    text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }

    fn field<T>(&self, at: &Spanned<T>, field: &str, message: String) -> MatrixError {
        MatrixError::Field {
            file: self.file.clone(),
            line: self.line_of(at.span().start),
            field: field.into(),
            message,
        }
    }

    /// A TOML error, naming the field when the offending line is `key = value`.
    fn toml_error(&self, e: &toml::de::Error) -> MatrixError {
        let line = e.span().map_or(1, |s| self.line_of(s.start));
        let key = self.text.lines().nth(line - 1).and_then(|l| l.split_once('=')).map(|(k, _)| k.trim().to_string());
        let (file, message) = (self.file.clone(), e.message().to_string());
        match key.filter(|k| !k.is_empty() && !k.starts_with('[')) {
            Some(field) => MatrixError::Field { file, line, field, message },
            None => MatrixError::Parse { file, line, message },
        }
    }

    /// Values of a named kind (runtime, backend, family, ...), each parsed once.
    fn names<T: FromStr<Err = String>>(&self, list: &[Spanned<String>], name: &str) -> Result<Vec<T>, MatrixError> {
        list.iter().map(|s| self.one(s, name)).collect()
    }

    fn one<T: FromStr<Err = String>>(&self, s: &Spanned<String>, name: &str) -> Result<T, MatrixError> {
        s.get_ref().parse().map_err(|e| self.field(s, name, e))
    }

    fn opt<T: FromStr<Err = String>>(&self, v: &Option<Spanned<String>>, name: &str) -> Result<Option<T>, MatrixError> {
        v.as_ref().map(|v| self.one(v, name)).transpose()
    }

    fn formats(&self, list: &[Spanned<String>], name: &str) -> Result<Vec<QuantFormat>, MatrixError> {
        let mut out = Vec::new();
        for s in list {
            if s.get_ref() == "catalogue" {
                out.extend(QuantFormat::catalogue());
            } else {
                out.push(
                    s.get_ref()
                        .parse()
                        .map_err(|e: webq_engine::quant::QuantError| self.field(s, name, e.to_string()))?,
                );
            }
        }
        Ok(out)
    }

    fn pool(&self, p: &RawPool) -> Result<PoolConfig, MatrixError> {
        let positive = |v: &Option<Spanned<usize>>, field: &str| match v {
            Some(n) if *n.get_ref() == 0 => Err(self.field(n, field, "1 or more".into())),
            _ => Ok(v.as_ref().map(|n| *n.get_ref())),
        };
        Ok(PoolConfig {
            sessions: positive(&p.sessions, "pool.sessions")?.unwrap_or(0),
            recycle_after: positive(&p.recycle_after, "pool.recycle_after")?,
            high_priority: p.high_priority.clone(),
            memory_budget_mb: positive(&p.memory_budget_mb, "pool.memory_budget_mb")?,
        })
    }

    fn arith(&self, s: &Spanned<String>) -> Result<Arith, MatrixError> {
        s.get_ref().parse().map_err(|e| self.field(s, "arith", e))
    }

    fn workgroups(&self, s: &Spanned<String>) -> Result<Vec<WorkgroupChoice>, MatrixError> {
        match s.get_ref().as_str() {
            "tuned" => Ok(vec![WorkgroupChoice::Tuned]),
            "all" => Ok(GemvKernel::VARIANTS.iter().map(|w| WorkgroupChoice::Fixed(*w)).collect()),
            other => GemvKernel::parse(other).map(|w| vec![WorkgroupChoice::Fixed(w)]).ok_or_else(|| {
                self.field(
                    s,
                    "workgroups",
                    format!("`{other}` is not `tuned`, `all` or XxY with X a power of two and 1 <= X*Y <= 256"),
                )
            }),
        }
    }

    fn quantizer(&self, s: &Spanned<String>, name: &str) -> Result<Quantizer, MatrixError> {
        match s.get_ref().as_str() {
            "search" => Ok(Quantizer::ScaleSearch),
            "rtn" => Ok(Quantizer::RoundToNearest),
            other => Err(self.field(s, name, format!("unknown quantizer `{other}` (known: rtn, search)"))),
        }
    }

    fn shape(&self, s: &RawShape) -> Result<Shape, MatrixError> {
        let at = |f: &str| format!("shapes.{}.{f}", s.name);
        for (v, name) in [(&s.m, "m"), (&s.n, "n"), (&s.k, "k")] {
            if *v.get_ref() == 0 {
                return Err(self.field(v, &at(name), "must be at least 1".into()));
            }
        }
        Ok(Shape {
            name: s.name.clone(),
            m: *s.m.get_ref(),
            n: *s.n.get_ref(),
            k: *s.k.get_ref(),
            precisions: s.precisions.as_deref().map(|p| self.formats(p, &at("precisions"))).transpose()?,
            backends: s.backends.as_deref().map(|b| self.names(b, &at("backends"))).transpose()?,
            runtimes: s.runtimes.as_deref().map(|r| self.names(r, &at("runtimes"))).transpose()?,
            family: self.opt(&s.family, &at("family"))?,
            layer: self.opt(&s.layer, &at("layer"))?,
            memory_cap: s.memory_cap,
            quantizer: s.quantizer.as_ref().map(|q| self.quantizer(q, &at("quantizer"))).transpose()?,
            plant: self.opt(&s.plant, &at("plant"))?,
        })
    }

    fn model(&self, m: &RawModel) -> Result<ModelEntry, MatrixError> {
        let at = |f: &str| format!("models.{}.{f}", m.name);
        let family: Family = self.one(&m.family, &at("family"))?;
        let backends: Vec<CellBackend> = match &m.backends {
            None => vec![CellBackend::Wasm],
            Some(list) => self.names(list, &at("backends"))?,
        };
        for (v, name) in
            [(&m.depth, "depth"), (&m.sentences, "sentences"), (&m.inputs, "inputs"), (&m.tokens, "tokens")]
        {
            if let Some(v) = v.as_ref().filter(|v| *v.get_ref() == 0) {
                return Err(self.field(v, &at(name), "must be at least 1".into()));
            }
        }
        let tokens = m.tokens.as_ref().map_or(32, |t| *t.get_ref());
        let decode = m.decode.unwrap_or(0);
        if decode >= tokens {
            let why = format!("decode {decode} must leave at least one of {tokens} tokens to prefill");
            return Err(match &m.tokens {
                Some(t) => self.field(t, &at("decode"), why),
                None => self.field(&m.family, &at("decode"), why),
            });
        }
        let precisions: Vec<Precision> = self.names(&m.precisions, &at("precisions"))?;
        // `auto` chooses the precision with the backend, and a named backend needs a named precision.
        let auto_backend = backends.contains(&CellBackend::Auto);
        let auto_span = m.backends.iter().flatten().find(|b| b.get_ref() == "auto");
        if let Some(span) = auto_span.filter(|_| backends.len() > 1 || precisions != [Precision::Auto]) {
            return Err(self.field(
                span,
                &at("backends"),
                "the `auto` backend goes alone, with `precisions = [\"auto\"]` (it picks both)".into(),
            ));
        }
        if let Some(i) = precisions.iter().position(|p| *p == Precision::Auto).filter(|_| !auto_backend) {
            return Err(self.field(
                &m.precisions[i],
                &at("precisions"),
                "a model cell runs a named precision, not `auto`".into(),
            ));
        }
        let transcribe = match &m.transcribe {
            Some(t) if *t.get_ref() && family != Family::Audio => {
                return Err(self.field(t, &at("transcribe"), "only audio models transcribe".into()))
            }
            t => t.as_ref().is_some_and(|t| *t.get_ref()),
        };
        let full_window = match &m.full_window {
            Some(t) if *t.get_ref() && family != Family::Audio => {
                return Err(self.field(t, &at("full_window"), "only audio models have a window".into()))
            }
            t => t.as_ref().is_some_and(|t| *t.get_ref()),
        };
        // A transcript's default length: the decoder's own limit.
        let tokens = if transcribe && m.tokens.is_none() { MAX_TOKENS } else { tokens };
        if let Some(t) = m.tokens.as_ref().filter(|t| transcribe && *t.get_ref() > MAX_TOKENS) {
            return Err(self.field(t, &at("tokens"), format!("a transcript is at most {MAX_TOKENS} tokens")));
        }
        let workgroup = match &m.workgroup {
            None => None,
            Some(w) => Some(GemvKernel::parse(w.get_ref()).ok_or_else(|| {
                let why = format!("`{}` is not a GEMV kernel (128x2, 256x1, vec-16x8, ...)", w.get_ref());
                self.field(w, &at("workgroup"), why)
            })?),
        };
        Ok(ModelEntry {
            name: m.name.clone(),
            family,
            precisions,
            backends,
            runtimes: m.runtimes.as_deref().map(|r| self.names(r, &at("runtimes"))).transpose()?,
            webnn_devices: m.webnn_devices.as_deref().map(|d| self.names(d, &at("webnn_devices"))).transpose()?,
            depth: m.depth.as_ref().map(|d| *d.get_ref()),
            sentences: m.sentences.as_ref().map(|s| *s.get_ref()),
            inputs: m.inputs.as_ref().map(|s| *s.get_ref()),
            tokens,
            decode,
            transcribe,
            full_window,
            workgroup,
            quantizer: m.quantizer.as_ref().map(|q| self.quantizer(q, &at("quantizer"))).transpose()?,
        })
    }

    fn expectation(&self, e: &RawExpect) -> Result<Expect, MatrixError> {
        let status = Status::ALL.into_iter().find(|s| s.name() == e.status.get_ref()).ok_or_else(|| {
            let known: Vec<&str> = Status::ALL.iter().map(|s| s.name()).collect();
            self.field(
                &e.status,
                "expect.status",
                format!("unknown status `{}` (known: {})", e.status.get_ref(), known.join(", ")),
            )
        })?;
        if status == Status::Fail && e.reason.is_none() {
            return Err(self.field(
                &e.status,
                "expect.reason",
                "a pinned failure must say its reason (`reason = ...`)".into(),
            ));
        }
        Ok(Expect {
            cells: e.cells.clone(),
            status,
            reason: e.reason.clone(),
            ran: e.ran.clone(),
            kernel: e.kernel.clone(),
            dot_path: e.dot_path.clone(),
            backend: e.backend.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Matrix, MatrixError> {
        Matrix::parse(Path::new("m.toml"), text)
    }

    const GOOD: &str = "schema = 1\nname = \"t\"\nruntimes = [\"native\"]\nprecisions = [\"int4\", \"fp16\"]\n\n[[shapes]]\nname = \"s\"\nm = 1\nn = 8\nk = 128\n";

    #[test]
    fn good_matrix_parses() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.precisions.len(), 2);
        assert_eq!(m.arith, vec![Arith::F32]);
        assert_eq!(m.workgroups, vec![WorkgroupChoice::Tuned]);
    }

    /// Every matrix the repository ships parses (a matrix only a command runs is not left to rot).
    #[test]
    fn every_matrix_of_the_repository_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../matrices");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Matrix::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 5, "{n} matrices in {}", dir.display());
    }

    #[test]
    fn warm_runs_are_read_and_a_negative_time_is_refused_where_it_is() {
        assert_eq!(parse(GOOD).unwrap().bench, BenchRequest::default(), "none unless asked");
        let m = parse(&GOOD.replace("name = \"t\"", "name = \"t\"\nwarm_ms = 1000\nmin_warm = 3")).unwrap();
        assert_eq!(m.bench, BenchRequest { warm_ms: 1000.0, min_warm: 3 });
        let err = parse(&GOOD.replace("name = \"t\"", "name = \"t\"\nwarm_ms = -1.0")).unwrap_err().to_string();
        assert!(err.starts_with("m.toml:3: field `warm_ms`:"), "{err}");
    }

    #[test]
    fn a_pool_section_is_read_and_zero_sessions_refused_where_it_is() {
        assert_eq!(parse(GOOD).unwrap().pool, PoolConfig::default(), "sequential unless asked");
        let pool =
            "\n[pool]\nsessions = 2\nrecycle_after = 50\nmemory_budget_mb = 512\nhigh_priority = [\"*/model/*\"]\n";
        let m = parse(&(GOOD.to_string() + pool)).unwrap();
        assert_eq!((m.pool.sessions, m.pool.recycle_after, m.pool.memory_budget_mb), (2, Some(50), Some(512)));
        assert!(m.pool.is_high("chromium/wasm/int8-pc-sym/model/minilm") && !m.pool.is_high("chromium/wasm/fp16/gemv"));
        let err = parse(&(GOOD.to_string() + &pool.replace("= 2", "= 0"))).unwrap_err().to_string();
        assert!(err.contains("field `pool.sessions`") && err.contains("1 or more"), "{err}");
        let err = parse(&(GOOD.to_string() + &pool.replace("sessions", "session"))).unwrap_err().to_string();
        assert!(err.contains("session"), "{err}");
    }

    #[test]
    fn bad_precision_names_file_line_and_field() {
        let err = parse(&GOOD.replace("\"int4\"", "\"int5\"")).unwrap_err().to_string();
        assert!(err.starts_with("m.toml:4: field `precisions`:"), "{err}");
        assert!(err.contains("int5"), "{err}");
    }

    #[test]
    fn toml_errors_name_the_line() {
        let err = parse(&GOOD.replace("n = 8", "n = \"eight\"")).unwrap_err().to_string();
        assert!(err.starts_with("m.toml:9: field `n`:"), "{err}");
        let err = parse(&GOOD.replace("m = 1", "m = 1\nmm = 2")).unwrap_err().to_string();
        assert!(err.contains("mm"), "{err}");
        let err = parse(&GOOD.replace("k = 128", "k = 0")).unwrap_err().to_string();
        assert!(err.starts_with("m.toml:10: field `shapes.s.k`"), "{err}");
        let err = parse(&GOOD.replace("[\"native\"]", "[\"netscape\"]")).unwrap_err().to_string();
        assert!(err.starts_with("m.toml:3: field `runtimes`"), "{err}");
    }

    #[test]
    fn backends_families_and_expectations_are_checked() {
        let text = GOOD.replace("precisions = [\"int4\", \"fp16\"]", "precisions = [\"int4\", \"fp16\"]\nbackends = [\"webgpu\", \"webnn\", \"auto\"]\nwebnn_devices = [\"cpu\", \"gpu\"]")
            + "family = \"llm\"\nlayer = \"attention\"\n\n[[expect]]\ncells = \"native/*\"\nstatus = \"pass\"\nran = \"int8-*\"\n";
        let m = parse(&text).unwrap();
        assert_eq!(m.backends, [CellBackend::Webgpu, CellBackend::Webnn, CellBackend::Auto]);
        assert_eq!(m.webnn_devices, [WebnnDevice::Cpu, WebnnDevice::Gpu]);
        assert_eq!(m.shapes[0].family, Some(Family::Llm));
        assert_eq!(m.expect[0].status, Status::Pass);
        let err = parse(&text.replace("\"gpu\"]", "\"tpu\"]")).unwrap_err().to_string();
        assert!(err.starts_with("m.toml:6: field `webnn_devices`"), "{err}");
        let err = parse(&text.replace("\"llm\"", "\"robotics\"")).unwrap_err().to_string();
        assert!(err.contains("field `shapes.s.family`") && err.contains("robotics"), "{err}");
        let err = parse(&text.replace("status = \"pass\"", "status = \"great\"")).unwrap_err().to_string();
        assert!(err.contains("field `expect.status`") && err.contains("great"), "{err}");
    }

    #[test]
    fn model_entries_are_checked_and_named_where_wrong() {
        let models = "\n[[models]]\nname = \"lm\"\nfamily = \"llm\"\nprecisions = [\"mixed\", \"int8-pc-sym\"]\ndepth = 2\ntokens = 24\ndecode = 8\nquantizer = \"rtn\"\n";
        let m = parse(&(GOOD.to_string() + models)).unwrap();
        let e = &m.models[0];
        assert_eq!((e.family, e.depth, e.tokens, e.decode), (Family::Llm, Some(2), 24, 8));
        assert_eq!(e.precisions, [Precision::Mixed, "int8-pc-sym".parse().unwrap()]);
        assert_eq!((e.backends.as_slice(), e.quantizer), (&[CellBackend::Wasm][..], Some(Quantizer::RoundToNearest)));
        let err =
            parse(&(GOOD.to_string() + &models.replace("depth = 2", "backends = [\"auto\"]"))).unwrap_err().to_string();
        assert!(err.contains("field `models.lm.backends`") && err.contains("goes alone"), "{err}");
        let auto =
            models.replace("depth = 2", "backends = [\"auto\"]").replace("[\"mixed\", \"int8-pc-sym\"]", "[\"auto\"]");
        assert_eq!(parse(&(GOOD.to_string() + &auto)).unwrap().models[0].precisions, [Precision::Auto]);
        let err = parse(&(GOOD.to_string() + &models.replace("decode = 8", "decode = 24"))).unwrap_err().to_string();
        assert!(err.starts_with("m.toml:17: field `models.lm.decode`"), "{err}");
        let err = parse(&(GOOD.to_string() + &models.replace("\"mixed\"", "\"auto\""))).unwrap_err().to_string();
        assert!(err.contains("not `auto`"), "{err}");
        let err = parse(&(GOOD.to_string() + &models.replace("\"llm\"", "\"tabular\""))).unwrap_err().to_string();
        assert!(err.contains("field `models.lm.family`"), "{err}");
        let pinned = "\n[[expect]]\ncells = \"*\"\nstatus = \"fail\"\n";
        let err = parse(&(GOOD.to_string() + pinned)).unwrap_err().to_string();
        assert!(err.contains("expect.reason") && err.contains("must say its reason"), "{err}");
    }
}
