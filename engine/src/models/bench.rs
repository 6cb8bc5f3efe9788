//! The benchmark protocol of a model cell, the same natively and in a page: the load broken down
//! (parse, quantize, upload; the page adds the fetch), the first inference (pipelines or graphs
//! compiled on the way), then warm inferences repeated for at least [`BenchRequest::warm_ms`] with
//! their median and p90, the throughput in the family's unit, and what the model holds (weights
//! stored and on the device, the KV cache, the largest activation one op moved).

use serde::{Deserialize, Serialize};

/// How long to keep repeating warm inferences. Defaults: none beyond the first inference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BenchRequest {
    /// Warm inferences repeat until they have taken this long in all ...
    pub warm_ms: f64,
    /// ... and at least this many ran.
    pub min_warm: usize,
}

impl BenchRequest {
    /// No warm run ever exceeds this count (a model that runs in microseconds).
    pub const MAX_WARM: usize = 1000;

    /// Whether another warm run is due after `runs` that took `spent_ms` in all.
    pub fn more(&self, runs: usize, spent_ms: f64) -> bool {
        runs < Self::MAX_WARM && (runs < self.min_warm || spent_ms < self.warm_ms)
    }
}

/// The median and 90th percentile (nearest rank) of repeated runs, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub runs: usize,
    #[serde(with = "webq_conformance::number")]
    pub median_ms: f64,
    #[serde(with = "webq_conformance::number")]
    pub p90_ms: f64,
    #[serde(with = "webq_conformance::number")]
    pub min_ms: f64,
}

impl Spread {
    /// `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Spread> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        // Nearest rank: the smallest sample with at least 90% of the samples at or below it.
        let p90 = s[(0.9 * n as f64).ceil() as usize - 1];
        Some(Spread { runs: n, median_ms: median, p90_ms: p90, min_ms: s[0] })
    }
}

/// What a backend holds and has compiled; `None` where it cannot tell (the CPU path has no device).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    /// Bytes of weights uploaded to the device (codes, scales, zero points).
    pub device_weight_bytes: Option<u64>,
    /// The most bytes of activations one op uploaded and read back (its inputs and output).
    pub activation_peak_bytes: Option<u64>,
    /// Pipelines (WebGPU) or graphs (WebNN) compiled so far, and the milliseconds they took.
    pub compiled: Option<(usize, f64)>,
}

/// One model cell's benchmark record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelBench {
    /// Page only: fetching the weights file from the page server; absent when the page already
    /// held it (an earlier cell of the same model) and natively.
    #[serde(with = "webq_conformance::number::option")]
    pub fetch_ms: Option<f64>,
    pub fetch_bytes: Option<u64>,
    /// Reading the file's container (header, tensor table).
    #[serde(with = "webq_conformance::number")]
    pub parse_ms: f64,
    /// Reading every tensor and storing it in the cell's precision.
    #[serde(with = "webq_conformance::number")]
    pub quantize_ms: f64,
    /// Making the weights ready on the backend (GPU buffers; nothing on the CPU path).
    #[serde(with = "webq_conformance::number")]
    pub upload_ms: f64,
    /// The first inference, compiling what it needs on the way.
    #[serde(with = "webq_conformance::number")]
    pub first_ms: f64,
    /// Pipelines or graphs the first inference compiled, and their milliseconds (part of `first_ms`).
    pub compiled: Option<(usize, f64)>,
    /// The warm inferences after the first.
    pub warm: Option<Spread>,
    /// llm: the prefill and the decode of warm runs, apart.
    pub warm_prefill: Option<Spread>,
    pub warm_decode: Option<Spread>,
    /// Throughput at the warm median (the first inference's when no warm run), in `unit`; llm:
    /// prefill tokens/s here and decode tokens/s in `decode_rate`.
    #[serde(with = "webq_conformance::number")]
    pub rate: f64,
    pub unit: String,
    #[serde(with = "webq_conformance::number::option")]
    pub decode_rate: Option<f64>,
    /// Whether every warm output was bit-identical to the first.
    pub repeatable: bool,
    /// Bytes of the stored weights (the precision's codes, scales and zero points).
    pub weight_bytes: u64,
    pub device_weight_bytes: Option<u64>,
    pub activation_peak_bytes: Option<u64>,
    /// llm: bytes the KV cache held at the end of the sequence.
    pub kv_cache_bytes: Option<u64>,
    /// Page: the wasm module's linear memory after the run (it never shrinks: a high-water mark).
    pub wasm_memory_bytes: Option<u64>,
    /// Page: the browser's own measurement (`performance.measureUserAgentSpecificMemory`), or why
    /// there is none.
    pub browser_memory_bytes: Option<u64>,
    pub browser_memory_note: Option<String>,
    /// Whether the weights went to the backend stage by stage as they were stored (then
    /// `quantize_ms` and `upload_ms` interleave; `upload_ms` is the part spent uploading).
    pub progressive: bool,
    /// From the start of the load (parsing included) until the first layer was on the backend.
    #[serde(with = "webq_conformance::number::option")]
    pub first_layer_ms: Option<f64>,
    /// One event per stage of the load, in order (see [`super::loading`]).
    pub progress: Vec<super::loading::LoadEvent>,
    /// The stored weights' digest ([`super::linear::ModelStorage::digest`]).
    pub weights_digest: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_median_and_the_nearest_rank_p90() {
        let s = Spread::of(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.runs, s.median_ms, s.p90_ms, s.min_ms), (5, 3.0, 5.0, 1.0));
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = Spread::of(&ten).unwrap();
        assert_eq!((s.median_ms, s.p90_ms), (5.5, 9.0));
        assert_eq!(Spread::of(&[7.0]).map(|s| (s.median_ms, s.p90_ms)), Some((7.0, 7.0)));
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn warm_runs_repeat_for_the_time_asked_and_at_least_the_count_asked() {
        let r = BenchRequest { warm_ms: 1000.0, min_warm: 3 };
        assert!(r.more(0, 0.0) && r.more(2, 5000.0), "fewer than three");
        assert!(r.more(3, 999.0) && !r.more(3, 1000.0));
        assert!(!BenchRequest::default().more(0, 0.0), "none by default");
        assert!(!r.more(BenchRequest::MAX_WARM, 0.0));
    }
}
