//! The kernel benchmark protocol, shared by the criterion benches and `examples/gpu_bench.rs`:
//! seeded weights of a shape, quantized once, uploaded once, then timed dispatches.

use std::fmt;

use crate::quant::{quantize, QuantFormat, QuantizedMatrix, Quantizer};
use crate::reference::Arith;
use crate::seeded;

use super::{Executor, GemvKernel, GpuError, Prepared, TuningTable};

/// GEMV shapes of the benchmarks (N x K), as in llama-class decoders.
pub const GEMV_SHAPES: [(usize, usize); 3] = [(4096, 4096), (14336, 4096), (8192, 8192)];
/// The GEMM benchmark: M x N x K (a 512-token prefill).
pub const GEMM_SHAPE: (usize, usize, usize) = (512, 4096, 4096);
/// Bytes of weights the round-robin copies of a cold benchmark add up to at least: several times
/// the last-level cache of today's GPUs (50 MB on an H100), so each dispatch reads from memory.
pub const COLD_FOOTPRINT: u64 = 256 << 20;

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

/// A GEMV kernel to benchmark: a fixed one, or the tuning table's pick (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemvChoice(pub Option<GemvKernel>);

impl GemvChoice {
    /// Parses `tuned`, a portable workgroup (`128x2`) or a vector kernel (`vec-64x4`, `vec-sg-64x4`).
    pub fn parse(s: &str) -> Option<GemvChoice> {
        match s {
            "tuned" => Some(GemvChoice(None)),
            s => GemvKernel::parse(s).map(|k| GemvChoice(Some(k))),
        }
    }

    /// `WEBQ_BENCH_KERNELS` (comma-separated), else the portable kernel with the seed's workgroup, a
    /// sweep of the vector kernel's shapes, and the widest of them again reducing with subgroups
    /// (refused, and reported so, where the adapter has none).
    pub fn from_env() -> Vec<GemvChoice> {
        let list = std::env::var("WEBQ_BENCH_KERNELS").unwrap_or_else(|_| {
            "128x2,vec-32x8,vec-64x4,vec-128x2,vec-32x4,vec-64x8,vec-128x4,vec-256x1,vec-sg-64x4,vec-sg-128x2,vec-sg-256x1"
                .into()
        });
        list.split(',').filter_map(|s| GemvChoice::parse(s.trim())).collect()
    }
}

impl fmt::Display for GemvChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(k) => write!(f, "{k}"),
            None => write!(f, "tuned"),
        }
    }
}

/// Seeded weights of a shape quantized to a format (round to nearest: the benchmark measures
/// kernels, not the quantizer), with the activations and the bytes of weights one dispatch reads.
pub struct BenchWeights {
    pub q: QuantizedMatrix,
    pub x: Vec<f32>,
    pub m: usize,
    pub bytes: u64,
}

impl BenchWeights {
    pub fn new(format: QuantFormat, (m, n, k): (usize, usize, usize)) -> Self {
        Self::from_weights(format, (m, n, k), &seeded::weights(1, n, k))
    }

    /// From weights already generated (several formats of one shape share them).
    pub fn from_weights(format: QuantFormat, (m, n, k): (usize, usize, usize), w: &[f32]) -> Self {
        let q = quantize(w, n, k, format, Quantizer::RoundToNearest).expect("benchmark shapes fit every format");
        let bytes = format.storage_bytes(n, k).map(|b| b.total() as u64).unwrap_or(0);
        BenchWeights { q, x: seeded::activations(1, m, k), m, bytes }
    }

    /// Copies of the weights to take in turn so that together they exceed [`COLD_FOOTPRINT`] (at most 32).
    pub fn cold_copies(&self) -> usize {
        COLD_FOOTPRINT.div_ceil(self.bytes.max(1)).clamp(1, 32) as usize
    }

    /// The kernel of a choice (GEMM for several rows), uploaded.
    pub async fn prepare<'e>(
        &self,
        exec: &'e Executor,
        choice: GemvChoice,
        arith: Arith,
    ) -> Result<Prepared<'e>, GpuError> {
        let kernel = choice.0.unwrap_or_else(|| TuningTable::seed().pick("native", &exec.adapter().name, None));
        let variant = kernel.variant(self.m, self.q.n, self.q.k, Some(&self.q.format), arith);
        exec.prepare(&self.x, self.m, &self.q, variant).await
    }
}

/// A prepared kernel for a benchmark cell, with the bytes of weights one dispatch reads.
pub fn prepare_bench(
    exec: &Executor,
    format: QuantFormat,
    shape: (usize, usize, usize),
    arith: Arith,
    choice: GemvChoice,
) -> Result<(Prepared<'_>, u64), GpuError> {
    let w = BenchWeights::new(format, shape);
    let prepared = pollster::block_on(w.prepare(exec, choice, arith))?;
    Ok((prepared, w.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_choices_parse() {
        assert_eq!(GemvChoice::parse("tuned"), Some(GemvChoice(None)));
        assert_eq!(GemvChoice::parse("vec-64x4"), Some(GemvChoice(Some(GemvKernel::vector(64, 4)))));
        assert_eq!(GemvChoice::parse("vec:64x4").unwrap().to_string(), "vec-64x4");
        assert_eq!(GemvChoice::parse("128x2").unwrap().to_string(), "128x2");
        for bad in ["vec", "vec-64x9", "gemm", "65536x65536"] {
            assert_eq!(GemvChoice::parse(bad), None, "{bad}");
        }
        assert!(GemvChoice::from_env().len() >= 2);
    }
}
