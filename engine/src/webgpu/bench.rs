//! The kernel benchmark protocol, shared by the criterion benches and `examples/gpu_bench.rs`:
//! seeded weights of a shape, quantized once, uploaded once, then timed dispatches.

use std::fmt;

use crate::quant::{quantize, QuantFormat, QuantizedMatrix, Quantizer};
use crate::reference::Arith;
use crate::seeded;

use super::{Executor, GpuError, KernelKind, KernelVariant, Prepared, TuningTable, Workgroup};

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

/// A GEMV kernel to benchmark: the portable `gemv` (a workgroup, or the tuning table's pick) or the
/// vector-load `gemv-vec` (threads x rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemvChoice {
    pub kind: KernelKind,
    pub workgroup: Option<Workgroup>,
}

impl GemvChoice {
    /// Parses `gemv` (tuned), `gemv:128x2` or `vec:64x4`.
    pub fn parse(s: &str) -> Option<GemvChoice> {
        let (kind, wg) = s.split_once(':').unwrap_or((s, ""));
        let kind = match kind {
            "gemv" => KernelKind::Gemv,
            "vec" | "gemv-vec" => KernelKind::GemvVec,
            _ => return None,
        };
        let workgroup = match (kind, wg) {
            (KernelKind::Gemv, "" | "tuned") => None,
            (KernelKind::GemvVec, "") => return None,
            (KernelKind::GemvVec, wg) => {
                let (x, y) = wg.split_once('x')?;
                let w = Workgroup { x: x.parse().ok()?, y: y.parse().ok()? };
                (w.x.is_power_of_two() && w.x <= 256 && (1..=8).contains(&w.y) && w.x >= w.y).then_some(w)?;
                Some(w)
            }
            (_, wg) => Some(Workgroup::parse(wg)?),
        };
        Some(GemvChoice { kind, workgroup })
    }

    /// `WEBQ_BENCH_KERNELS` (comma-separated), else the portable kernel as tuned and a sweep of the
    /// vector kernel's shapes.
    pub fn from_env() -> Vec<GemvChoice> {
        let list = std::env::var("WEBQ_BENCH_KERNELS")
            .unwrap_or_else(|_| "gemv,vec:32x8,vec:64x4,vec:128x2,vec:32x4,vec:64x8,vec:128x4,vec:256x1".into());
        list.split(',').filter_map(|s| GemvChoice::parse(s.trim())).collect()
    }
}

impl fmt::Display for GemvChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.workgroup) {
            (KernelKind::GemvVec, Some(w)) => write!(f, "vec:{w}"),
            (_, Some(w)) => write!(f, "{}:{w}", self.kind.name()),
            (_, None) => write!(f, "{}:tuned", self.kind.name()),
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

    /// The kernel of a choice, uploaded (`None` workgroup: the tuning table's).
    pub async fn prepare<'e>(
        &self,
        exec: &'e Executor,
        kind: KernelKind,
        arith: Arith,
        wg: Option<Workgroup>,
    ) -> Result<Prepared<'e>, GpuError> {
        let wg = wg.unwrap_or_else(|| TuningTable::seed().pick("native", &exec.adapter().name, kind, None));
        exec.prepare(&self.x, self.m, &self.q, KernelVariant::new(kind, arith, wg)).await
    }
}

/// A prepared kernel for a benchmark cell (GEMV workgroup `wg`, or the tuning table's), with the
/// bytes of weights one dispatch reads.
pub fn prepare_bench(
    exec: &Executor,
    format: QuantFormat,
    shape: (usize, usize, usize),
    arith: Arith,
    wg: Option<Workgroup>,
) -> Result<(Prepared<'_>, u64), GpuError> {
    let w = BenchWeights::new(format, shape);
    let kind = KernelKind::for_rows(shape.0);
    let prepared = pollster::block_on(w.prepare(exec, kind, arith, wg))?;
    Ok((prepared, w.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_choices_parse() {
        assert_eq!(GemvChoice::parse("gemv"), Some(GemvChoice { kind: KernelKind::Gemv, workgroup: None }));
        let v = GemvChoice::parse("vec:64x4").unwrap();
        assert_eq!((v.kind, v.workgroup), (KernelKind::GemvVec, Some(Workgroup { x: 64, y: 4 })));
        assert_eq!(v.to_string(), "vec:64x4");
        assert_eq!(GemvChoice::parse("gemv:128x2").unwrap().to_string(), "gemv:128x2");
        for bad in ["vec", "vec:64x9", "vec:4x8", "vec:100x2", "gemm", "gemv:65536x65536"] {
            assert_eq!(GemvChoice::parse(bad), None, "{bad}");
        }
        assert!(GemvChoice::from_env().len() >= 2);
    }
}
