//! Cells: one (runtime, backend, precision, kernel variant, shape) to run, expanded from a matrix.

use serde::{Deserialize, Serialize};
use webq_engine::platform::selection::Family;
use webq_engine::protocol::{CellBackend, CellSpec, Plant, Precision, Runtime, WebnnDevice};
use webq_engine::quant::{LayerKind, QuantFormat, Quantizer};
use webq_engine::reference::Arith;
use webq_engine::webgpu::{GemvKernel, KernelKind};

use crate::matrix::{Matrix, WorkgroupChoice};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub runtime: Runtime,
    pub backend: CellBackend,
    pub precision: Precision,
    pub kernel: KernelKind,
    pub arith: Arith,
    /// GEMV kernel and workgroup size; `None`: the tuning table picks them.
    pub workgroup: Option<GemvKernel>,
    pub shape: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub seed: u64,
    pub quantizer: Quantizer,
    /// WebNN device type (`cpu`, `gpu`, `npu`), for WebNN backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<WebnnDevice>,
    /// Model family and layer kind, which `auto` selects for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerKind>,
    /// WebGPU: bytes a buffer and binding may take (small: provokes the out-of-memory fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_cap: Option<u64>,
    /// Test only: a defect planted in the output (natively and by the page), which must fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plant: Option<Plant>,
    /// A whole trained model instead of one matmul (`m`, `n`, `k` are then 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelCell>,
}

/// Which model a model cell runs, how deep, on which of the inputs kept in `harness/data/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelCell {
    pub family: Family,
    /// Layers or blocks; `None`: all.
    pub depth: Option<usize>,
    /// text: the first sentences (all when `None`); llm: the first `tokens` of the passage, the
    /// last `decode` of them decoded one at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentences: Option<usize>,
    /// vision: the first photographs; audio: the first utterances (all when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<usize>,
    #[serde(default)]
    pub tokens: usize,
    #[serde(default)]
    pub decode: usize,
    /// audio: the decoder too: fp16's greedy transcript of each utterance scored under teacher
    /// forcing (the judged output: logits), and the cell's own greedy transcript, of at most
    /// `tokens` tokens.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transcribe: bool,
    /// audio: Whisper's whole 30 s window (3000 frames) as it was trained, not only the frames the
    /// longest utterance needs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_window: bool,
}

impl ModelCell {
    /// A model on all its inputs, nothing transcribed (tests and `webq faults`).
    pub fn new(family: Family, depth: Option<usize>, sentences: Option<usize>, tokens: usize, decode: usize) -> Self {
        ModelCell { family, depth, sentences, inputs: None, tokens, decode, transcribe: false, full_window: false }
    }
}

impl Cell {
    /// A stable identifier: `runtime/backend/precision/kernel-arith-workgroup/shape`, and
    /// `runtime/backend/precision/model/name` for a model cell (`backend@device` on WebNN).
    pub fn id(&self) -> String {
        let backend = match &self.device {
            Some(d) => format!("{}@{d}", self.backend),
            None => self.backend.to_string(),
        };
        if self.model.is_some() {
            return format!("{}/{backend}/{}/model/{}", self.runtime, self.precision, self.shape);
        }
        let wg = self.workgroup.map_or("tuned".to_string(), |w| w.to_string());
        let variant = match self.kernel {
            KernelKind::Gemv | KernelKind::GemvVec | KernelKind::GemvVecSg => {
                format!("{}-{}-{wg}", self.kernel.name(), self.arith.name())
            }
            KernelKind::Gemm | KernelKind::GemmVec => format!("gemm-{}", self.arith.name()),
        };
        let plant = self.plant.map_or(String::new(), |p| format!("/planted-{p}"));
        format!("{}/{backend}/{}/{variant}/{}{plant}", self.runtime, self.precision, self.shape)
    }

    /// The requested format (`None` for `auto`).
    pub fn format(&self) -> Option<QuantFormat> {
        self.precision.format()
    }

    /// What the page is asked to run for this cell, with the GEMV kernel the tuning table picked.
    pub fn spec(&self, gemv: GemvKernel, reps: usize) -> CellSpec {
        CellSpec {
            backend: self.backend,
            device: self.device,
            precision: self.precision,
            m: self.m,
            n: self.n,
            k: self.k,
            seed: self.seed,
            arith: self.arith,
            gemv,
            quantizer: self.quantizer,
            reps,
            family: self.family,
            layer: self.layer,
            memory_cap: self.memory_cap,
            plant: self.plant,
            model: None,
        }
    }
}

/// A GEMV cell of `n x k` seeded weights with the scale search (tests, and `webq faults`'s model cells).
pub fn test_cell(runtime: Runtime, backend: CellBackend, precision: &str, n: usize, k: usize) -> Cell {
    Cell {
        runtime,
        backend,
        precision: precision.parse().expect("a known precision"),
        kernel: KernelKind::Gemv,
        arith: Arith::F32,
        workgroup: None,
        shape: "s".into(),
        m: 1,
        n,
        k,
        seed: 1,
        quantizer: Quantizer::ScaleSearch,
        device: None,
        family: None,
        layer: None,
        memory_cap: None,
        plant: None,
        model: None,
    }
}

/// Every cell of a matrix, in an order that lets a runner reuse weights across neighbours
/// (runtime, shape, precision outermost), and how many combinations the shapes ruled out.
pub fn expand(matrix: &Matrix) -> (Vec<Cell>, Vec<String>) {
    let mut cells = Vec::new();
    let mut ruled_out = Vec::new();
    for runtime in &matrix.runtimes {
        for (backend, device) in backends_with_devices(matrix) {
            for shape in &matrix.shapes {
                if shape.backends.as_ref().is_some_and(|b| !b.contains(&backend))
                    || shape.runtimes.as_ref().is_some_and(|r| !r.contains(runtime))
                {
                    continue;
                }
                let kernel = KernelKind::for_rows(shape.m);
                let precisions: Vec<Precision> = if backend == CellBackend::Auto {
                    vec![Precision::Auto]
                } else {
                    let mut v = Vec::new();
                    for format in shape.precisions.as_ref().unwrap_or(&matrix.precisions) {
                        match format.check_shape(shape.n, shape.k) {
                            Ok(()) => v.push(Precision::Format(*format)),
                            Err(e) => ruled_out.push(format!("{format} x {}: {e}", shape.name)),
                        }
                    }
                    v
                };
                for precision in precisions {
                    for &arith in &matrix.arith {
                        let mut workgroups: Vec<Option<GemvKernel>> = matrix
                            .workgroups
                            .iter()
                            .map(|w| match w {
                                WorkgroupChoice::Tuned => None,
                                WorkgroupChoice::Fixed(w) => Some(*w),
                            })
                            .collect();
                        // Only the WGSL GEMV has kernels to choose; `auto` takes the tuning table's.
                        if kernel == KernelKind::Gemm || backend != CellBackend::Webgpu {
                            workgroups = vec![None];
                        }
                        workgroups.dedup();
                        for workgroup in workgroups {
                            cells.push(Cell {
                                runtime: *runtime,
                                backend,
                                precision,
                                kernel,
                                arith,
                                workgroup,
                                shape: shape.name.clone(),
                                m: shape.m,
                                n: shape.n,
                                k: shape.k,
                                seed: matrix.seed,
                                quantizer: shape.quantizer.unwrap_or(matrix.quantizer),
                                device,
                                family: shape.family,
                                layer: shape.layer,
                                memory_cap: shape.memory_cap,
                                plant: shape.plant,
                                model: None,
                            });
                        }
                    }
                }
            }
        }
        cells.extend(model_cells(matrix, *runtime));
    }
    (cells, ruled_out)
}

/// The model cells of one runtime: each model x backend (x WebNN device type) x precision.
fn model_cells(matrix: &Matrix, runtime: Runtime) -> Vec<Cell> {
    let mut cells = Vec::new();
    for entry in matrix.models.iter().filter(|e| e.runtimes.as_ref().is_none_or(|r| r.contains(&runtime))) {
        let devices = |b: CellBackend| -> Vec<Option<WebnnDevice>> {
            if b.is_webnn() {
                entry.webnn_devices.as_ref().unwrap_or(&matrix.webnn_devices).iter().copied().map(Some).collect()
            } else {
                vec![None]
            }
        };
        let backends = entry.backends.iter().flat_map(|&b| devices(b).into_iter().map(move |d| (b, d)));
        for (backend, device) in backends {
            for &precision in &entry.precisions {
                cells.push(Cell {
                    runtime,
                    backend,
                    precision,
                    kernel: KernelKind::Gemv,
                    arith: Arith::F32,
                    workgroup: entry.workgroup,
                    shape: entry.name.clone(),
                    m: 0,
                    n: 0,
                    k: 0,
                    seed: 0,
                    quantizer: entry.quantizer.unwrap_or(matrix.quantizer),
                    device,
                    family: Some(entry.family),
                    layer: None,
                    memory_cap: None,
                    plant: None,
                    model: Some(ModelCell {
                        family: entry.family,
                        depth: entry.depth,
                        sentences: entry.sentences,
                        inputs: entry.inputs,
                        tokens: if entry.family == Family::Llm || entry.transcribe { entry.tokens } else { 0 },
                        decode: if entry.family == Family::Llm { entry.decode } else { 0 },
                        transcribe: entry.transcribe,
                        full_window: entry.full_window,
                    }),
                });
            }
        }
    }
    cells
}

/// Each backend, with each WebNN device type for the WebNN ones.
fn backends_with_devices(matrix: &Matrix) -> Vec<(CellBackend, Option<WebnnDevice>)> {
    let mut out = Vec::new();
    for &b in &matrix.backends {
        if b.is_webnn() {
            out.extend(matrix.webnn_devices.iter().map(|&d| (b, Some(d))));
        } else {
            out.push((b, None));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn auto_cells_leave_the_precision_to_the_page_and_webnn_cells_name_their_device() {
        let text = "schema = 1\nname = \"t\"\nruntimes = [\"firefox\"]\nbackends = [\"webgpu\", \"webnn\", \"auto\"]\n\
                    webnn_devices = [\"cpu\", \"npu\"]\nprecisions = [\"int4\", \"fp16\"]\n\n\
                    [[shapes]]\nname = \"s\"\nm = 1\nn = 8\nk = 128\n\n\
                    [[shapes]]\nname = \"only-native\"\nruntimes = [\"native\"]\nm = 1\nn = 8\nk = 128\n";
        let m = Matrix::parse(Path::new("m.toml"), text).unwrap();
        let (cells, _) = expand(&m);
        let ids: Vec<String> = cells.iter().map(Cell::id).collect();
        // webgpu: 2 precisions; webnn: 2 devices x 2 precisions; auto: one cell; none of only-native.
        assert_eq!(ids.len(), 2 + 4 + 1, "{ids:?}");
        assert!(ids.contains(&"firefox/webnn@npu/int4-g128-sym/gemv-f32-tuned/s".to_string()), "{ids:?}");
        assert!(ids.contains(&"firefox/auto/auto/gemv-f32-tuned/s".to_string()), "{ids:?}");
        assert!(cells.iter().find(|c| c.backend == CellBackend::Auto).unwrap().format().is_none());
    }

    #[test]
    fn only_webgpu_gemv_cells_multiply_by_kernel() {
        let text = "schema = 1\nname = \"t\"\nruntimes = [\"firefox\"]\nbackends = [\"webgpu\", \"wasm\", \"auto\"]\n\
                    precisions = [\"int4\"]\nworkgroups = [\"tuned\", \"vec-64x4\"]\n\n\
                    [[shapes]]\nname = \"d\"\nm = 1\nn = 8\nk = 128\n\n\
                    [[shapes]]\nname = \"p\"\nbackends = [\"webgpu\"]\nm = 4\nn = 8\nk = 128\n";
        let m = Matrix::parse(Path::new("m.toml"), text).unwrap();
        let ids: Vec<String> = expand(&m).0.iter().map(Cell::id).collect();
        // webgpu decode: two kernels; wasm, auto and the GEMM (prefill) one cell each.
        assert_eq!(ids.len(), 2 + 1 + 1 + 1, "{ids:?}");
        assert!(ids.contains(&"firefox/webgpu/int4-g128-sym/gemv-f32-vec-64x4/d".to_string()), "{ids:?}");
        assert!(ids.contains(&"firefox/webgpu/int4-g128-sym/gemv-f32-tuned/d".to_string()), "{ids:?}");
        assert!(ids.contains(&"firefox/wasm/int4-g128-sym/gemv-f32-tuned/d".to_string()), "{ids:?}");
    }

    #[test]
    fn model_cells_multiply_by_runtime_and_precision_only() {
        let text = "schema = 1\nname = \"t\"\nruntimes = [\"native\", \"firefox\"]\nprecisions = [\"int4\"]\n\n\
                    [[models]]\nname = \"minilm\"\nfamily = \"text\"\nprecisions = [\"fp16\", \"mixed\"]\nsentences = 4\n\n\
                    [[models]]\nname = \"lm\"\nfamily = \"llm\"\nruntimes = [\"firefox\"]\nprecisions = [\"int8-pc-sym\"]\ntokens = 9\ndecode = 3\n";
        let m = Matrix::parse(Path::new("m.toml"), text).unwrap();
        let cells = expand(&m).0;
        let ids: Vec<String> = cells.iter().map(Cell::id).collect();
        assert_eq!(
            ids,
            [
                "native/wasm/fp16/model/minilm",
                "native/wasm/mixed/model/minilm",
                "firefox/wasm/fp16/model/minilm",
                "firefox/wasm/mixed/model/minilm",
                "firefox/wasm/int8-pc-sym/model/lm"
            ]
        );
        let lm = cells.last().unwrap().model.clone().unwrap();
        assert_eq!((lm.family, lm.tokens, lm.decode, lm.sentences), (Family::Llm, 9, 3, None));
        assert_eq!(cells[0].model.as_ref().unwrap().sentences, Some(4));
    }

    #[test]
    fn webnn_model_cells_multiply_by_their_device_types() {
        let text = "schema = 1\nname = \"t\"\nruntimes = [\"chrome-shell\"]\nprecisions = [\"int4\"]\nwebnn_devices = [\"cpu\", \"npu\"]\n\n\
                    [[models]]\nname = \"minilm\"\nfamily = \"text\"\nbackends = [\"webnn\", \"wasm\"]\nprecisions = [\"mixed\"]\n\n\
                    [[models]]\nname = \"lm\"\nfamily = \"llm\"\nbackends = [\"webnn-experimental\"]\nwebnn_devices = [\"gpu\"]\nprecisions = [\"int8-pc-sym\"]\n";
        let m = Matrix::parse(Path::new("m.toml"), text).unwrap();
        let ids: Vec<String> = expand(&m).0.iter().map(Cell::id).collect();
        assert_eq!(
            ids,
            [
                "chrome-shell/webnn@cpu/mixed/model/minilm",
                "chrome-shell/webnn@npu/mixed/model/minilm",
                "chrome-shell/wasm/mixed/model/minilm",
                "chrome-shell/webnn-experimental@gpu/int8-pc-sym/model/lm"
            ]
        );
    }
}
