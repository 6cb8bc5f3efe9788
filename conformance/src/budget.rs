//! Quantization accuracy budgets: how far a format's output may be from the fp16 reference.
//!
//! Derived from the format, not tuned to results: a uniform quantizer with step `s` has an RMS error
//! of `s / sqrt(12)`. A group of roughly normal weights spans about 8 standard deviations, and a group
//! that holds an outlier channel (8x larger weights, as trained models have) about twice that again:
//! `RANGE_SIGMAS` = 16 for grouped formats, 32 for per-channel ones, where every row holds outliers.
//! So `s ~ RANGE_SIGMAS * sigma / (2^b - 1)`, and the relative error of weights, and so of outputs
//! over random inputs, is about `RANGE_SIGMAS / ((2^b - 1) * sqrt(12))`. fp16 weights carry at most
//! half an f16 ULP: `2^-11 / sqrt(3)` RMS. The budget is `SAFETY` times that estimate, capped at 1:
//! an output whose error is as large as itself carries no information, whatever the width.

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// How many weight standard deviations one group spans, outliers included.
pub const RANGE_SIGMAS: f64 = 16.0;
/// The same for per-channel scales.
pub const RANGE_SIGMAS_PER_CHANNEL: f64 = 32.0;
/// Budget = this times the estimated relative error.
pub const SAFETY: f64 = 2.0;

/// Extra relative error allowed when the kernel rounds activations and products to f16: one f16 unit
/// roundoff for each.
pub const F16_ARITH_EXTRA: f64 = 2.0 / 2048.0;

/// Relative L2 budget of a format of `weight_bits` bits (16 = fp16), grouped or per-channel, with
/// f32 arithmetic; add [`F16_ARITH_EXTRA`] for the f16 variant.
pub fn accuracy_budget(weight_bits: u32, per_channel: bool) -> f64 {
    let estimate = if weight_bits >= 16 {
        (1.0 / 2048.0) / 3f64.sqrt()
    } else {
        let range = if per_channel { RANGE_SIGMAS_PER_CHANNEL } else { RANGE_SIGMAS };
        range / (((1u64 << weight_bits) - 1) as f64 * 12f64.sqrt())
    };
    (SAFETY * estimate).min(1.0)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccuracyVerdict {
    pub pass: bool,
    pub budget_rel_l2: f64,
    pub metrics: Metrics,
}

impl AccuracyVerdict {
    pub fn judge(
        got: &[f32],
        reference: &[f32],
        weight_bits: u32,
        per_channel: bool,
        f16_arith: bool,
        row_len: Option<usize>,
    ) -> Self {
        let metrics = Metrics::compare(got, reference, row_len);
        let extra = if f16_arith { F16_ARITH_EXTRA } else { 0.0 };
        let budget_rel_l2 = accuracy_budget(weight_bits, per_channel) + extra;
        AccuracyVerdict { pass: metrics.rel_l2 <= budget_rel_l2, budget_rel_l2, metrics }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_shrink_with_width() {
        let b: Vec<f64> = [3, 4, 8, 16].iter().map(|&w| accuracy_budget(w, false)).collect();
        assert!(b.windows(2).all(|p| p[0] > p[1]), "{b:?}");
        assert!(b[3] < 1e-3);
        assert_eq!(accuracy_budget(2, false), 1.0, "capped");
        assert!(accuracy_budget(8, true) > accuracy_budget(8, false));
    }
}
