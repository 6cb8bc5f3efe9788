//! A cell on the `wasm` backend: the engine's CPU kernels (`crate::cpu`), simd128 in this build.

use super::{CellOutput, CellSpec, Failure, SpecInputs};
use crate::reference::Arith;

pub async fn run(spec: &CellSpec, out: &mut CellOutput) -> Result<(), Failure> {
    if spec.arith == Arith::F16 {
        return Err(Failure::unsupported(
            "f16 arithmetic: unsupported data type for the wasm backend (it computes in f32)",
        ));
    }
    let (q, x) = spec.quantized(spec.format()?)?;
    out.dot_path = Some(crate::cpu::dot_path().into());
    let y = crate::cpu::matmul(&x, spec.m, &q);
    let (us, runs) = super::timing::time_runs(spec.reps, || {
        std::hint::black_box(crate::cpu::matmul(&x, spec.m, &q));
        std::future::ready(Ok::<(), Failure>(()))
    })
    .await?;
    out.wall_us = Some(us);
    out.dispatches = Some(runs);
    out.upload_ms = Some(0.0);
    out.set_output(&y);
    Ok(())
}
