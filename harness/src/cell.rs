//! Cells: one (runtime, backend, precision, kernel variant, shape) to run, expanded from a matrix.

use serde::{Deserialize, Serialize};
use webq_engine::quant::{QuantFormat, Quantizer};
use webq_engine::reference::Arith;
use webq_engine::webgpu::{KernelKind, Workgroup};

use crate::matrix::{Matrix, WorkgroupChoice};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub runtime: String,
    pub backend: String,
    pub precision: String,
    pub kernel: KernelKind,
    pub arith: Arith,
    /// GEMV workgroup size; `None`: the tuning table picks it.
    pub workgroup: Option<Workgroup>,
    pub shape: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub seed: u64,
    pub quantizer: Quantizer,
    /// WebNN device type (`cpu`, `gpu`, `npu`), for WebNN backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Model family and layer kind, which `auto` selects for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// WebGPU: bytes a buffer and binding may take (small: provokes the out-of-memory fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_cap: Option<u64>,
}

/// The precision of `auto` cells: the selection policy picks it.
pub const AUTO: &str = "auto";

impl Cell {
    /// A stable identifier: `runtime/backend/precision/kernel-arith-workgroup/shape`.
    pub fn id(&self) -> String {
        let wg = self.workgroup.map_or("tuned".to_string(), |w| w.to_string());
        let variant = match self.kernel {
            KernelKind::Gemv => format!("gemv-{}-{wg}", self.arith.name()),
            KernelKind::Gemm => format!("gemm-{}", self.arith.name()),
        };
        let backend = match &self.device {
            Some(d) => format!("{}@{d}", self.backend),
            None => self.backend.clone(),
        };
        format!("{}/{backend}/{}/{variant}/{}", self.runtime, self.precision, self.shape)
    }

    /// The requested format (`None` for `auto`).
    pub fn format(&self) -> Option<QuantFormat> {
        self.precision.parse().ok()
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
                let precisions: Vec<String> = if backend == AUTO {
                    vec![AUTO.to_string()]
                } else {
                    let mut v = Vec::new();
                    for format in shape.precisions.as_ref().unwrap_or(&matrix.precisions) {
                        match format.check_shape(shape.n, shape.k) {
                            Ok(()) => v.push(format.to_string()),
                            Err(e) => ruled_out.push(format!("{format} x {}: {e}", shape.name)),
                        }
                    }
                    v
                };
                for precision in precisions {
                    for &arith in &matrix.arith {
                        let mut workgroups: Vec<Option<Workgroup>> = matrix
                            .workgroups
                            .iter()
                            .map(|w| match w {
                                WorkgroupChoice::Tuned => None,
                                WorkgroupChoice::Fixed(w) => Some(*w),
                            })
                            .collect();
                        if kernel == KernelKind::Gemm {
                            workgroups = vec![None];
                        }
                        workgroups.dedup();
                        for workgroup in workgroups {
                            cells.push(Cell {
                                runtime: runtime.clone(),
                                backend: backend.clone(),
                                precision: precision.clone(),
                                kernel,
                                arith,
                                workgroup,
                                shape: shape.name.clone(),
                                m: shape.m,
                                n: shape.n,
                                k: shape.k,
                                seed: matrix.seed,
                                quantizer: shape.quantizer.unwrap_or(matrix.quantizer),
                                device: device.clone(),
                                family: shape.family.clone(),
                                layer: shape.layer.clone(),
                                memory_cap: shape.memory_cap,
                            });
                        }
                    }
                }
            }
        }
    }
    (cells, ruled_out)
}

/// Each backend, with each WebNN device type for the WebNN ones.
fn backends_with_devices(matrix: &Matrix) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for b in &matrix.backends {
        if b.starts_with("webnn") {
            out.extend(matrix.webnn_devices.iter().map(|d| (b.clone(), Some(d.clone()))));
        } else {
            out.push((b.clone(), None));
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
        assert!(cells.iter().find(|c| c.backend == AUTO).unwrap().format().is_none());
    }
}
