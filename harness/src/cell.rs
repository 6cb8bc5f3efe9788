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
}

impl Cell {
    /// A stable identifier: `runtime/backend/precision/kernel-arith-workgroup/shape`.
    pub fn id(&self) -> String {
        let wg = self.workgroup.map_or("tuned".to_string(), |w| w.to_string());
        let variant = match self.kernel {
            KernelKind::Gemv => format!("gemv-{}-{wg}", self.arith.name()),
            KernelKind::Gemm => format!("gemm-{}", self.arith.name()),
        };
        format!("{}/{}/{}/{variant}/{}", self.runtime, self.backend, self.precision, self.shape)
    }

    pub fn format(&self) -> QuantFormat {
        self.precision.parse().expect("cells hold canonical format names")
    }
}

/// Every cell of a matrix, in an order that lets a runner reuse weights across neighbours
/// (runtime, shape, precision outermost), and how many combinations the shapes ruled out.
pub fn expand(matrix: &Matrix) -> (Vec<Cell>, Vec<String>) {
    let mut cells = Vec::new();
    let mut ruled_out = Vec::new();
    for runtime in &matrix.runtimes {
        for backend in &matrix.backends {
            for shape in &matrix.shapes {
                let kernel = KernelKind::for_rows(shape.m);
                for format in shape.precisions.as_ref().unwrap_or(&matrix.precisions) {
                    if let Err(e) = format.check_shape(shape.n, shape.k) {
                        ruled_out.push(format!("{format} x {}: {e}", shape.name));
                        continue;
                    }
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
                                precision: format.to_string(),
                                kernel,
                                arith,
                                workgroup,
                                shape: shape.name.clone(),
                                m: shape.m,
                                n: shape.n,
                                k: shape.k,
                                seed: matrix.seed,
                                quantizer: matrix.quantizer,
                            });
                        }
                    }
                }
            }
        }
    }
    (cells, ruled_out)
}
