//! Quantization accuracy: how far a backend's output may be from the fp16 reference.
//!
//! Two bounds, both must hold:
//!
//! 1. **Not worse than the exact computation.** The backend computes with the same quantized
//!    weights as the CPU emulation (same codes, same stored scales). The emulation's own error
//!    against fp16, `e_exact`, is the quantization error of those weights, measured rather than
//!    estimated; the backend's error `e` may exceed it only by float rounding:
//!    `e <= e_exact * (1 + EXACT_SLACK) + rounding`, with `rounding` = [`F32_ARITH_EXTRA`] for f32
//!    arithmetic and [`F16_ARITH_EXTRA`] for f16. Whatever the width, an output that is zero,
//!    sign-flipped or random has `e >= 1` (zero: exactly 1; `-y`: 2; random: about `sqrt(2)` or more),
//!    far above any `e_exact` of an informative format, so this bound rejects them at every width.
//! 2. **The quantizer is fit for use (the ceiling).** Derived from the format, not tuned to results:
//!    a uniform quantizer with step `s` has an RMS error of `s / sqrt(12)`. A group of roughly normal
//!    weights spans about 8 standard deviations, and a group that holds an outlier channel (8x larger
//!    weights, as trained models have) about twice that again: `RANGE_SIGMAS` = 16 for grouped
//!    formats, 32 for per-channel ones, where every row holds outliers. So `s ~ RANGE_SIGMAS * sigma /
//!    (2^b - 1)`, and the relative error of weights, and so of outputs over random inputs, is about
//!    `RANGE_SIGMAS / ((2^b - 1) * sqrt(12))`. fp16 weights carry at most half an f16 ULP:
//!    `2^-11 / sqrt(3)` RMS. The ceiling is `SAFETY` times that estimate, capped at
//!    [`MAX_INFORMATIVE`] = 1: an output no closer to the reference than the all-zero output
//!    (whose error is exactly 1) carries no information, whatever the width. The cap is a strict
//!    bound: an error of 1 or more always fails. (For 2-bit and 3-bit formats the estimate, which
//!    assumes outlier channels, is above 1, so there the cap decides; measured on seeded normal
//!    weights, 2-bit errors run from about 0.35 (groups of 32) to 0.68 (per channel).)
//!
//! The verdict passes when `e <= min(bound 1, ceiling)`. Bound 1 catches a backend that is worse
//! than its own weights allow; the ceiling catches weights (a quantizer, a format) that are useless.
//! Neither can be met by an output that carries no information.

use serde::{Deserialize, Serialize};

use crate::metrics::{LengthMismatch, Metrics};

/// How many weight standard deviations one group spans, outliers included.
pub const RANGE_SIGMAS: f64 = 16.0;
/// The same for per-channel scales.
pub const RANGE_SIGMAS_PER_CHANNEL: f64 = 32.0;
/// Ceiling = this times the estimated relative error.
pub const SAFETY: f64 = 2.0;
/// No output may be this far from fp16 (relative L2) or further: the all-zero output is exactly
/// this far, so anything at or beyond it carries no information.
pub const MAX_INFORMATIVE: f64 = 1.0;
/// A backend may be this much (relative) worse than the exact computation of its weights: room
/// for a different but correct order of f32 accumulation, nothing more.
pub const EXACT_SLACK: f64 = 0.05;
/// Absolute relative-L2 room for reordered f32 sums: about `sqrt(K) * 2^-24` times the
/// cancellation factor `sum|x w| / |y|` (a few to tens) at K up to 16384, rounded up to 2^-14. It
/// matters only where `e_exact` itself is that small (fp16 weights).
pub const F32_ARITH_EXTRA: f64 = 1.0 / 16384.0;
/// The same when the kernel rounds activations and products to f16: one f16 unit roundoff for each.
pub const F16_ARITH_EXTRA: f64 = 2.0 / 2048.0;

/// The ceiling (relative L2) of a format of `weight_bits` bits (16 = fp16), grouped or per-channel,
/// with f32 arithmetic; add [`F16_ARITH_EXTRA`] for the f16 variant.
pub fn accuracy_budget(weight_bits: u32, per_channel: bool) -> f64 {
    let estimate = if weight_bits >= 16 {
        (1.0 / 2048.0) / 3f64.sqrt()
    } else {
        let range = if per_channel { RANGE_SIGMAS_PER_CHANNEL } else { RANGE_SIGMAS };
        range / (((1u64 << weight_bits) - 1) as f64 * 12f64.sqrt())
    };
    (SAFETY * estimate).min(MAX_INFORMATIVE)
}

/// What a format is, for its ceiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetKey {
    pub weight_bits: u32,
    pub per_channel: bool,
    pub f16_arith: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccuracyVerdict {
    pub pass: bool,
    /// The relative L2 error allowed: `min(exact bound, ceiling)`.
    #[serde(with = "crate::number")]
    pub budget_rel_l2: f64,
    /// The format's ceiling (derived from its width).
    #[serde(with = "crate::number::option", default)]
    pub ceiling_rel_l2: Option<f64>,
    /// The exact CPU emulation's own relative L2 error against fp16.
    #[serde(with = "crate::number::option", default)]
    pub exact_rel_l2: Option<f64>,
    pub metrics: Metrics,
}

impl AccuracyVerdict {
    /// Judges `got` against the fp16 `reference`, given the exact emulation of the same quantized
    /// computation (`exact`). Outputs of the wrong length are the caller's error to record.
    pub fn judge(
        got: &[f32],
        reference: &[f32],
        exact: &[f32],
        key: BudgetKey,
        row_len: Option<usize>,
    ) -> Result<Self, LengthMismatch> {
        let metrics = Metrics::compare(got, reference, row_len)?;
        let exact_rel_l2 = Metrics::compare(exact, reference, None)?.rel_l2;
        let rounding = if key.f16_arith { F16_ARITH_EXTRA } else { F32_ARITH_EXTRA };
        let ceiling =
            accuracy_budget(key.weight_bits, key.per_channel) + if key.f16_arith { F16_ARITH_EXTRA } else { 0.0 };
        let exact_bound = exact_rel_l2 * (1.0 + EXACT_SLACK) + rounding;
        // `min` of a NaN picks the other: a NaN exact error must fail, not fall back to the ceiling.
        let budget_rel_l2 = if exact_bound.is_nan() { f64::NAN } else { exact_bound.min(ceiling) };
        Ok(AccuracyVerdict {
            pass: metrics.rel_l2 <= budget_rel_l2 && metrics.rel_l2 < MAX_INFORMATIVE,
            budget_rel_l2,
            ceiling_rel_l2: Some(ceiling),
            exact_rel_l2: Some(exact_rel_l2),
            metrics,
        })
    }
}

impl AccuracyVerdict {
    /// A whole model's outputs against the fp16 model's: no further from them than the exact
    /// emulation of the same quantized model (with the slack of [`EXACT_SLACK`] and f32 rounding).
    /// Whether that exact error is acceptable for the precision is the model's own budget (cosine,
    /// top-1 agreement, perplexity), judged apart: no single-matmul ceiling applies to a model.
    pub fn judge_model(
        got: &[f32],
        reference: &[f32],
        exact: &[f32],
        row_len: Option<usize>,
    ) -> Result<Self, LengthMismatch> {
        let metrics = Metrics::compare(got, reference, row_len)?;
        let exact_rel_l2 = Metrics::compare(exact, reference, None)?.rel_l2;
        let budget_rel_l2 = exact_rel_l2 * (1.0 + EXACT_SLACK) + F32_ARITH_EXTRA;
        Ok(AccuracyVerdict {
            pass: metrics.rel_l2 <= budget_rel_l2,
            budget_rel_l2,
            ceiling_rel_l2: None,
            exact_rel_l2: Some(exact_rel_l2),
            metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_shrink_with_width_and_stay_informative() {
        let b: Vec<f64> = [4, 8, 16].iter().map(|&w| accuracy_budget(w, false)).collect();
        assert!(b.windows(2).all(|p| p[0] > p[1]), "{b:?}");
        assert!(b[2] < 1e-3);
        assert_eq!(accuracy_budget(2, false), MAX_INFORMATIVE, "capped");
        assert!(accuracy_budget(8, true) > accuracy_budget(8, false));
        for bits in [2, 3, 4, 8, 16] {
            for pc in [false, true] {
                assert!(accuracy_budget(bits, pc) <= MAX_INFORMATIVE, "{bits} bits");
            }
        }
    }

    #[test]
    fn an_output_as_far_as_zero_fails_even_when_the_exact_computation_is_as_bad() {
        let reference = [1.0f32, -2.0, 3.0, 0.5];
        let zero = [0.0f32; 4];
        let key = BudgetKey { weight_bits: 2, per_channel: true, f16_arith: false };
        let v = AccuracyVerdict::judge(&zero, &reference, &zero, key, None).unwrap();
        assert_eq!(v.metrics.rel_l2, 1.0);
        assert!(!v.pass, "{v:?}");
    }

    #[test]
    fn a_backend_worse_than_its_exact_computation_fails() {
        let reference = [1.0f32, -2.0, 3.0, 0.5];
        let exact = [1.1f32, -2.1, 2.9, 0.4]; // e_exact ~ 0.1
        let key = BudgetKey { weight_bits: 4, per_channel: false, f16_arith: false };
        let same = AccuracyVerdict::judge(&exact, &reference, &exact, key, None).unwrap();
        assert!(same.pass, "{same:?}");
        let worse = [1.3f32, -2.3, 2.7, 0.2];
        assert!(!AccuracyVerdict::judge(&worse, &reference, &exact, key, None).unwrap().pass);
        let nan = AccuracyVerdict::judge(&[f32::NAN, -2.0, 3.0, 0.5], &reference, &exact, key, None).unwrap();
        assert!(!nan.pass);
    }
}
