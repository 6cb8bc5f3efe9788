//! The kernel benchmark protocol, shared by the criterion benches and `examples/gpu_bench.rs`:
//! seeded weights of a shape, quantized once, uploaded once, then timed dispatches.

use crate::quant::{quantize, QuantFormat, Quantizer};
use crate::reference::Arith;
use crate::seeded;

use super::{Executor, GpuError, KernelKind, KernelVariant, Prepared, TuningTable, Workgroup};

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

/// GEMV workgroup sizes to benchmark: `WEBQ_BENCH_WORKGROUPS` (comma-separated, e.g. `128x2,32x8`),
/// else only the tuning table's pick (`None`).
pub fn bench_workgroups() -> Vec<Option<Workgroup>> {
    match std::env::var("WEBQ_BENCH_WORKGROUPS") {
        Ok(v) => v.split(',').filter_map(|s| Workgroup::parse(s.trim())).map(Some).collect(),
        Err(_) => vec![None],
    }
}

/// A prepared kernel for a benchmark cell (GEMV workgroup `wg`, or the tuning table's), with the
/// bytes of weights one dispatch reads.
pub fn prepare_bench(
    exec: &Executor,
    format: QuantFormat,
    (m, n, k): (usize, usize, usize),
    arith: Arith,
    wg: Option<Workgroup>,
) -> Result<(Prepared<'_>, u64), GpuError> {
    let w = seeded::weights(1, n, k);
    let x = seeded::activations(1, m, k);
    // Round-to-nearest: the benchmark measures kernels, not the quantizer.
    let q = quantize(&w, n, k, format, Quantizer::RoundToNearest).expect("benchmark shapes fit every format");
    let kind = KernelKind::for_rows(m);
    let wg = wg.unwrap_or_else(|| TuningTable::seed().pick("native", &exec.adapter().name, kind, None));
    let prepared = pollster::block_on(exec.prepare(&x, m, &q, KernelVariant::new(kind, arith, wg)))?;
    let bytes = format.storage_bytes(n, k).map(|b| b.total() as u64).unwrap_or(0);
    Ok((prepared, bytes))
}
