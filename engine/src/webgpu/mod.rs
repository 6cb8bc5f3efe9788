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
mod completion;
mod error;
mod executor;
mod model_ops;
mod timing;

pub use kernel::{
    gemm_vec_channels, gemm_vec_fits, gemm_vec_rows, gemv_vec_tile, pipeline_constants, shader_source, GemvKernel,
    KernelKind, KernelVariant, Workgroup,
};
pub use tuning::{TuningKey, TuningTable};

pub use error::GpuError;
pub use executor::{AdapterSummary, Executor, ExecutorOptions, MatmulRun, Prepared, Timings};
pub use model_ops::{ModelOp, OpOutput, OpParams, ResidentMatrix};

/// Set to `1` on a machine that has no GPU adapter at all: GPU tests then skip, saying so. Without
/// it a missing adapter fails them: a vanished Vulkan driver must not turn a test run green.
#[cfg(not(target_arch = "wasm32"))]
pub const ALLOW_NO_GPU: &str = "WEBQ_ALLOW_NO_GPU";

/// The executor for a test, or `None` (with a `SKIPPED` line) only where [`ALLOW_NO_GPU`]`=1`.
///
/// # Panics
/// When there is no adapter and the opt-out is not set.
#[cfg(not(target_arch = "wasm32"))]
pub fn executor_for_tests() -> Option<Executor> {
    match Executor::new(&ExecutorOptions::default()) {
        Ok(e) => Some(e),
        Err(e) if std::env::var(ALLOW_NO_GPU).as_deref() == Ok("1") => {
            eprintln!("SKIPPED: no GPU adapter ({e}); {ALLOW_NO_GPU}=1 allows that");
            None
        }
        Err(e) => panic!(
            "no GPU adapter: {e}. scripts/setup installs Mesa's lavapipe; on a machine without any, set {ALLOW_NO_GPU}=1"
        ),
    }
}
