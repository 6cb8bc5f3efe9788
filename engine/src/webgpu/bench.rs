//! The kernel benchmark protocol, shared by the criterion benches and `examples/gpu_bench.rs`:
//! seeded weights of a shape, quantized once, uploaded once, then timed dispatches.

use crate::quant::{quantize, QuantFormat, Quantizer};
use crate::reference::Arith;
use crate::seeded;

use super::{Executor, GpuError, KernelKind, KernelVariant, Prepared, TuningTable};

/// GEMV shapes of the benchmarks (N x K), as in llama-class decoders.
pub const GEMV_SHAPES: [(usize, usize); 3] = [(4096, 4096), (14336, 4096), (8192, 8192)];
/// The GEMM benchmark: M x N x K.
pub const GEMM_SHAPE: (usize, usize, usize) = (128, 4096, 4096);

/// One format per width (the defaults), unless `WEBQ_BENCH_FORMATS` says otherwise
/// (`catalogue`, or a comma-separated list of names).
pub fn bench_formats() -> Vec<QuantFormat> {
    match std::env::var("WEBQ_BENCH_FORMATS") {
        Ok(v) if v == "catalogue" => QuantFormat::catalogue(),
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => ["int2", "int3", "int4", "int8", "fp16", "int4-g32-asym"]
            .iter()
            .map(|s| s.parse().expect("known"))
            .collect(),
    }
}

/// A prepared kernel for a benchmark cell, with the bytes of weights one dispatch reads.
pub fn prepare_bench(
    exec: &Executor,
    format: QuantFormat,
    m: usize,
    n: usize,
    k: usize,
    arith: Arith,
) -> Result<(Prepared<'_>, u64), GpuError> {
    let w = seeded::weights(1, n, k);
    let x = seeded::activations(1, m, k);
    // Round-to-nearest: the benchmark measures kernels, not the quantizer.
    let q = quantize(&w, n, k, format, Quantizer::RoundToNearest).expect("benchmark shapes fit every format");
    let kind = KernelKind::for_rows(m);
    let wg = TuningTable::seed().pick("native", &exec.adapter().name, kind, None);
    let prepared = pollster::block_on(exec.prepare(&x, m, &q, KernelVariant::new(kind, arith, wg)))?;
    let bytes = format.storage_bytes(n, k).map(|b| b.total() as u64).unwrap_or(0);
    Ok((prepared, bytes))
}
