//! WGSL kernels and the wgpu executor that runs them.
//!
//! `kernels/*.wgsl` is the one source of every shader: a prelude picks the arithmetic type (f32, or
//! f16 where the adapter has `shader-f16`), `dequant.wgsl` decodes every packed format, and
//! `gemv.wgsl` / `gemm.wgsl` are the two kernel shapes. Formats and workgroup sizes are
//! pipeline-overridable constants, so one source serves every (kernel, format, variant) pipeline.

mod kernel;
mod tuning;

#[cfg(any(test, feature = "planted-faults"))]
pub mod faults;

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
mod error;
mod executor;

pub use kernel::{pipeline_constants, shader_source, KernelKind, KernelVariant, Workgroup};
pub use tuning::{TuningKey, TuningTable};

pub use error::GpuError;
pub use executor::{AdapterSummary, Executor, ExecutorOptions, MatmulRun, Prepared, Timings};
