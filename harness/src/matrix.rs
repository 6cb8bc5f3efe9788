//! Matrix files (TOML): what to run. A bad one gets an error with file, line and field.
//!
//! ```toml
//! schema = 1
//! name = "native"
//! runtimes = ["native"]
//! precisions = ["catalogue"]      # every format webq knows, or names: "int4-g128-sym", "fp16", ...
//! arith = ["f32", "f16"]
//! workgroups = ["tuned"]          # the tuning table's pick, "all" (every GEMV variant) or "128x2", ...
//! quantizer = "search"            # or "rtn"
//! reps = 5                        # timed dispatches per cell
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
//!
//! [[expect]]                      # checked by `webq run --check`
//! cells = "chrome-shell/webnn@cpu/*"
//! status = "pass"
//! ran = "int8-*"                  # optional: the precision that actually ran
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;
use webq_engine::quant::{QuantFormat, Quantizer};
use webq_engine::reference::Arith;
use webq_engine::webgpu::Workgroup;

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
    #[serde(default = "default_seed")]
    seed: u64,
    #[serde(default = "default_webnn_devices")]
    webnn_devices: Vec<Spanned<String>>,
    shapes: Vec<RawShape>,
    #[serde(default)]
    expect: Vec<RawExpect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    cells: String,
    status: Spanned<String>,
    #[serde(default)]
    ran: Option<String>,
}

/// What some cells must come out as (checked by `webq run --check`): cells whose id matches
/// `cells` (`*` matches any run of characters) have `status`, and, with `ran`, ran a precision
/// matching it (after an upgrade, a fallback or `auto`'s choice). A pattern that matches no cell
/// is itself a failure, so a renamed cell cannot slip out of its expectation.
#[derive(Clone, Debug, PartialEq)]
pub struct Expect {
    pub cells: String,
    pub status: Status,
    pub ran: Option<String>,
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
    Fixed(Workgroup),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub name: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub precisions: Option<Vec<QuantFormat>>,
    pub backends: Option<Vec<String>>,
    pub runtimes: Option<Vec<String>>,
    pub family: Option<String>,
    pub layer: Option<String>,
    pub memory_cap: Option<u64>,
    /// Overrides the matrix's quantizer for this shape.
    pub quantizer: Option<Quantizer>,
}

/// A validated matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    pub runtimes: Vec<String>,
    pub backends: Vec<String>,
    pub precisions: Vec<QuantFormat>,
    pub arith: Vec<Arith>,
    pub workgroups: Vec<WorkgroupChoice>,
    pub quantizer: Quantizer,
    pub reps: usize,
    pub seed: u64,
    pub webnn_devices: Vec<String>,
    pub shapes: Vec<Shape>,
    pub expect: Vec<Expect>,
}

pub const RUNTIMES: &[&str] = &["native", "chromium", "chrome-shell", "firefox", "webkitgtk"];
pub const BACKENDS: &[&str] = &["webgpu", "webnn", "webnn-experimental", "wasm", "auto"];
pub const WEBNN_DEVICES: &[&str] = &["cpu", "gpu", "npu"];
pub const FAMILIES: &[&str] = &["text", "vision", "audio", "llm"];

impl Matrix {
    pub fn load(path: &Path) -> Result<Matrix, MatrixError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MatrixError::Io { file: path.display().to_string(), message: e.to_string() })?;
        Matrix::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Matrix, MatrixError> {
        let file = path.display().to_string();
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let raw: RawMatrix = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(s.start));
            // Name the field when the offending line is `key = value`.
            let key = text.lines().nth(line - 1).and_then(|l| l.split_once('=')).map(|(k, _)| k.trim().to_string());
            match key.filter(|k| !k.is_empty() && !k.starts_with('[')) {
                Some(field) => MatrixError::Field { file: file.clone(), line, field, message: e.message().to_string() },
                None => MatrixError::Parse { file: file.clone(), line, message: e.message().to_string() },
            }
        })?;
        let field = |span: std::ops::Range<usize>, field: &str, message: String| MatrixError::Field {
            file: file.clone(),
            line: line_of(span.start),
            field: field.to_string(),
            message,
        };
        if *raw.schema.get_ref() != MATRIX_SCHEMA {
            return Err(field(raw.schema.span(), "schema", format!("this webq reads matrix schema {MATRIX_SCHEMA}")));
        }
        let names = |list: &[Spanned<String>], name: &str, known: &[&str]| -> Result<Vec<String>, MatrixError> {
            list.iter()
                .map(|s| {
                    if known.contains(&s.get_ref().as_str()) {
                        Ok(s.get_ref().clone())
                    } else {
                        Err(field(
                            s.span(),
                            name,
                            format!("unknown value `{}` (known: {})", s.get_ref(), known.join(", ")),
                        ))
                    }
                })
                .collect()
        };
        let formats = |list: &[Spanned<String>], name: &str| -> Result<Vec<QuantFormat>, MatrixError> {
            let mut out = Vec::new();
            for s in list {
                if s.get_ref() == "catalogue" {
                    out.extend(QuantFormat::catalogue());
                } else {
                    out.push(
                        s.get_ref()
                            .parse()
                            .map_err(|e: webq_engine::quant::QuantError| field(s.span(), name, e.to_string()))?,
                    );
                }
            }
            Ok(out)
        };
        let arith = raw
            .arith
            .iter()
            .map(|s| match s.get_ref().as_str() {
                "f32" => Ok(Arith::F32),
                "f16" => Ok(Arith::F16),
                other => Err(field(s.span(), "arith", format!("unknown arithmetic `{other}` (known: f32, f16)"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let workgroups = raw
            .workgroups
            .iter()
            .map(|s| match s.get_ref().as_str() {
                "tuned" => Ok(vec![WorkgroupChoice::Tuned]),
                "all" => Ok(Workgroup::VARIANTS.iter().map(|w| WorkgroupChoice::Fixed(*w)).collect()),
                other => Workgroup::parse(other).map(|w| vec![WorkgroupChoice::Fixed(w)]).ok_or_else(|| {
                    field(
                        s.span(),
                        "workgroups",
                        format!("`{other}` is not `tuned`, `all` or XxY with X a power of two and X*Y <= 256"),
                    )
                }),
            })
            .collect::<Result<Vec<_>, _>>()?
            .concat();
        let parse_quantizer = |s: &Spanned<String>, name: &str| match s.get_ref().as_str() {
            "search" => Ok(Quantizer::ScaleSearch),
            "rtn" => Ok(Quantizer::RoundToNearest),
            other => Err(field(s.span(), name, format!("unknown quantizer `{other}` (known: rtn, search)"))),
        };
        let quantizer = match &raw.quantizer {
            None => Quantizer::ScaleSearch,
            Some(s) => parse_quantizer(s, "quantizer")?,
        };
        let one = |v: &Option<Spanned<String>>, name: &str, known: &[&str]| -> Result<Option<String>, MatrixError> {
            v.as_ref().map(|s| names(std::slice::from_ref(s), name, known).map(|mut n| n.remove(0))).transpose()
        };
        let layers: Vec<&str> = webq_engine::quant::LayerKind::ALL.iter().map(|k| k.name()).collect();
        let mut shapes = Vec::new();
        for s in &raw.shapes {
            for (v, name) in [(&s.m, "m"), (&s.n, "n"), (&s.k, "k")] {
                if *v.get_ref() == 0 {
                    return Err(field(v.span(), &format!("shapes.{}.{name}", s.name), "must be at least 1".into()));
                }
            }
            shapes.push(Shape {
                name: s.name.clone(),
                m: *s.m.get_ref(),
                n: *s.n.get_ref(),
                k: *s.k.get_ref(),
                precisions: s
                    .precisions
                    .as_deref()
                    .map(|p| formats(p, &format!("shapes.{}.precisions", s.name)))
                    .transpose()?,
                backends: s
                    .backends
                    .as_deref()
                    .map(|b| names(b, &format!("shapes.{}.backends", s.name), BACKENDS))
                    .transpose()?,
                runtimes: s
                    .runtimes
                    .as_deref()
                    .map(|r| names(r, &format!("shapes.{}.runtimes", s.name), RUNTIMES))
                    .transpose()?,
                family: one(&s.family, &format!("shapes.{}.family", s.name), FAMILIES)?,
                layer: one(&s.layer, &format!("shapes.{}.layer", s.name), &layers)?,
                memory_cap: s.memory_cap,
                quantizer: s
                    .quantizer
                    .as_ref()
                    .map(|q| parse_quantizer(q, &format!("shapes.{}.quantizer", s.name)))
                    .transpose()?,
            });
        }
        Ok(Matrix {
            path: path.to_path_buf(),
            name: raw.name,
            description: raw.description,
            runtimes: names(&raw.runtimes, "runtimes", RUNTIMES)?,
            backends: names(&raw.backends, "backends", BACKENDS)?,
            precisions: formats(&raw.precisions, "precisions")?,
            arith,
            workgroups,
            quantizer,
            reps: raw.reps.max(1),
            seed: raw.seed,
            webnn_devices: names(&raw.webnn_devices, "webnn_devices", WEBNN_DEVICES)?,
            shapes,
            expect: raw
                .expect
                .iter()
                .map(|e| {
                    let status = Status::ALL.into_iter().find(|s| s.name() == e.status.get_ref()).ok_or_else(|| {
                        let known: Vec<&str> = Status::ALL.iter().map(|s| s.name()).collect();
                        field(
                            e.status.span(),
                            "expect.status",
                            format!("unknown status `{}` (known: {})", e.status.get_ref(), known.join(", ")),
                        )
                    })?;
                    Ok(Expect { cells: e.cells.clone(), status, ran: e.ran.clone() })
                })
                .collect::<Result<_, MatrixError>>()?,
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
        assert_eq!(m.backends, ["webgpu", "webnn", "auto"]);
        assert_eq!(m.webnn_devices, ["cpu", "gpu"]);
        assert_eq!(m.shapes[0].family.as_deref(), Some("llm"));
        assert_eq!(m.expect[0].status, Status::Pass);
        let err = parse(&text.replace("\"gpu\"]", "\"tpu\"]")).unwrap_err().to_string();
        assert!(err.starts_with("m.toml:6: field `webnn_devices`"), "{err}");
        let err = parse(&text.replace("\"llm\"", "\"robotics\"")).unwrap_err().to_string();
        assert!(err.contains("field `shapes.s.family`") && err.contains("robotics"), "{err}");
        let err = parse(&text.replace("status = \"pass\"", "status = \"great\"")).unwrap_err().to_string();
        assert!(err.contains("field `expect.status`") && err.contains("great"), "{err}");
    }
}
