//! Accuracy metrics of an output against a reference.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Outputs of different lengths cannot be compared: the caller records that as its own failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{got} outputs, {want} expected")]
pub struct LengthMismatch {
    pub got: usize,
    pub want: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// ||got - want|| / ||want||
    #[serde(with = "crate::number")]
    pub rel_l2: f64,
    #[serde(with = "crate::number")]
    pub max_abs: f64,
    #[serde(with = "crate::number")]
    pub cosine: f64,
    /// Fraction of rows whose arg-max agrees (rows of `row_len` values: logits), when asked for.
    #[serde(with = "crate::number::option", default)]
    pub top1_agreement: Option<f64>,
}

impl Metrics {
    /// Compares `got` to `want`. Non-finite values make every metric NaN, which no budget accepts.
    pub fn compare(got: &[f32], want: &[f32], row_len: Option<usize>) -> Result<Metrics, LengthMismatch> {
        if got.len() != want.len() {
            return Err(LengthMismatch { got: got.len(), want: want.len() });
        }
        let (mut diff2, mut want2, mut got2, mut dot, mut max_abs) = (0f64, 0f64, 0f64, 0f64, 0f64);
        for (&g, &w) in got.iter().zip(want) {
            let (g, w) = (g as f64, w as f64);
            let d = g - w;
            diff2 += d * d;
            want2 += w * w;
            got2 += g * g;
            dot += g * w;
            max_abs = if d.is_nan() || max_abs.is_nan() { f64::NAN } else { max_abs.max(d.abs()) };
        }
        let rel_l2 = if want2 > 0.0 { (diff2 / want2).sqrt() } else { diff2.sqrt() };
        let cosine = if want2 > 0.0 && got2 > 0.0 { dot / (want2.sqrt() * got2.sqrt()) } else { f64::NAN };
        let top1_agreement = row_len.filter(|&l| l > 0).map(|l| {
            let rows = got.len() / l;
            let agree = (0..rows).filter(|r| argmax(&got[r * l..(r + 1) * l]) == argmax(&want[r * l..(r + 1) * l]));
            agree.count() as f64 / rows.max(1) as f64
        });
        Ok(Metrics { rel_l2, max_abs, cosine, top1_agreement })
    }
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, x)| if *x > v[best] { i } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn metrics_of_known_vectors() {
        let m = Metrics::compare(&[1.0, 0.0, 3.0], &[1.0, 0.0, 4.0], Some(3)).unwrap();
        assert_relative_eq!(m.rel_l2, 1.0 / 17f64.sqrt(), max_relative = 1e-12);
        assert_relative_eq!(m.max_abs, 1.0);
        assert!(m.cosine > 0.99 && m.cosine < 1.0);
        assert_eq!(m.top1_agreement, Some(1.0));
        let nan = Metrics::compare(&[f32::NAN, 0.0], &[1.0, 0.0], None).unwrap();
        assert!(nan.rel_l2.is_nan() && nan.max_abs.is_nan());
    }

    #[test]
    fn different_lengths_are_an_error_not_a_panic() {
        let e = Metrics::compare(&[1.0], &[1.0, 2.0], None).unwrap_err();
        assert_eq!(e, LengthMismatch { got: 1, want: 2 });
    }
}
