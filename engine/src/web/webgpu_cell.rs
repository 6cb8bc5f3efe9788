//! A cell on the browser's WebGPU: the WGSL kernels through wgpu. With a `memory_cap` the cell opens
//! its own device with small limits and runs the out-of-memory fallback (each step recorded).

use std::cell::RefCell;
use std::rc::Rc;

use super::{CellOutput, CellSpec, Failure, SpecInputs};
use crate::platform::fallback::matmul_with_fallback;
use crate::webgpu::{Executor, ExecutorOptions, GemvKernel, GpuError, MatmulRun};

thread_local! {
    static EXECUTOR: RefCell<Option<Rc<Executor>>> = const { RefCell::new(None) };
}

/// The page's shared device (opened once: pipelines stay cached across cells).
pub(super) async fn shared_executor() -> Result<Rc<Executor>, GpuError> {
    if let Some(e) = EXECUTOR.with(|c| c.borrow().clone()) {
        return Ok(e);
    }
    let e = Rc::new(Executor::open(&ExecutorOptions::default()).await?);
    EXECUTOR.with(|c| *c.borrow_mut() = Some(e.clone()));
    Ok(e)
}

pub(super) fn gpu(e: GpuError) -> Failure {
    // A lost device stays lost: the next cell opens a new one.
    if matches!(e, GpuError::DeviceLost(_)) {
        EXECUTOR.with(|c| *c.borrow_mut() = None);
    }
    Failure::new(e.class(), e.to_string())
}

pub async fn run(spec: &CellSpec, out: &mut CellOutput) -> Result<(), Failure> {
    let format = spec.format()?;
    // A fallback may step the format down: the vector kernel only where every format can take K.
    let fixed = spec.memory_cap.is_none().then_some(&format);
    let variant = spec.gemv.variant(spec.m, spec.n, spec.k, fixed, spec.arith);
    out.workgroup = Some(GemvKernel::ran(&variant));
    let run: MatmulRun = match spec.memory_cap {
        None => {
            let exec = shared_executor().await.map_err(gpu)?;
            out.adapter = Some(exec.adapter().clone());
            let (q, x) = spec.quantized(format)?;
            exec.matmul(&x, spec.m, &q, variant, spec.reps).await.map_err(gpu)?
        }
        Some(cap) => {
            let opts = ExecutorOptions { memory_cap: Some(cap), ..Default::default() };
            let exec = Executor::open(&opts).await.map_err(gpu)?;
            let a = exec.adapter();
            out.notes.push(format!(
                "device asked for {cap} bytes a buffer and binding; got maxBufferSize {} and maxStorageBufferBindingSize {}",
                a.max_buffer_size, a.max_storage_buffer_binding_size
            ));
            out.adapter = Some(a.clone());
            // The fallback quantizes each format it tries from the raw weights.
            let (w, x) = spec.inputs();
            let result =
                matmul_with_fallback(&exec, &w, spec.n, spec.k, &x, spec.m, format, spec.quantizer, variant).await;
            match result {
                Ok(f) => {
                    out.notes.extend(f.note(format));
                    out.fallback_steps = f.steps;
                    out.precision = Some(f.format.to_string());
                    f.run
                }
                Err((steps, e)) => {
                    out.fallback_steps = steps;
                    return Err(gpu(e));
                }
            }
        }
    };
    out.set_output(&run.y);
    out.compile_ms = run.compile_ms;
    out.upload_ms = Some(run.upload_ms);
    out.wall_us = Some(run.timings.wall_us_per_dispatch);
    out.gpu_us = run.timings.gpu_us_median;
    out.dispatches = Some(run.timings.dispatches);
    Ok(())
}
