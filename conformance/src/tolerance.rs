//! Kernel conformance: how far a backend may stray from the CPU emulation of the same computation.
//!
//! Stated as data, in the manner of web-platform-tests' WebNN conformance tests: an output passes
//! when it is within `ulp_per_k * K` ULP of the emulated value (WPT's matmul tolerance is 2*K ULP),
//! or within the forward error bound of a dot product summed in another order,
//! `(acc_units_per_k * K * u32 + f16_product_units * u16) * sum_k |x_k w_k|`, which does not
//! collapse when the output cancels to near zero. Every fault a kernel can plant moves outputs by
//! a fraction of `|y|`, orders of magnitude above both.

use serde::{Deserialize, Serialize};

/// Unit roundoff of f32 and f16.
const U32: f64 = 1.0 / (1u64 << 24) as f64;
const U16: f64 = 1.0 / (1u64 << 11) as f64;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelTolerance {
    pub op: String,
    #[serde(with = "crate::number")]
    pub ulp_per_k: f64,
    #[serde(with = "crate::number")]
    pub acc_units_per_k: f64,
    #[serde(with = "crate::number")]
    pub f16_product_units: f64,
    /// Whole models: the error allowed for each output as a fraction of the RMS of the emulated
    /// outputs (passed as each output's `abs_dot`, with `k = 1`). Absent (0) for single ops.
    #[serde(default, with = "crate::number", skip_serializing_if = "is_zero")]
    pub rel_rms: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl KernelTolerance {
    /// matmul/GEMV with f32 arithmetic.
    pub fn matmul_f32() -> Self {
        KernelTolerance {
            op: "matmul".into(),
            ulp_per_k: 2.0,
            acc_units_per_k: 1.0,
            f16_product_units: 0.0,
            rel_rms: 0.0,
        }
    }

    /// A whole model's forward pass in f32 against its emulation: each output within `rel_rms`
    /// of the outputs' RMS. The emulation and a backend differ only in the order each matmul
    /// sums (error up to `K u` of `sum |x w|`, K <= 1536 here: ~1e-4 at worst, ~1e-6 typically)
    /// and in last-bit differences of `exp`/`erf`/`sqrt` between math libraries; norms rescale every
    /// layer, so these stay of that order through the model. `1e-3` leaves a factor of ten over the
    /// worst case; a wrong op (a mask off by one, a head mixed up) moves outputs by tens of percent.
    pub fn model(op: &str) -> Self {
        KernelTolerance { op: op.into(), ulp_per_k: 0.0, acc_units_per_k: 0.0, f16_product_units: 0.0, rel_rms: 1e-3 }
    }

    /// matmul/GEMV with f16 products (the f16 result of a product may round once more on the device).
    pub fn matmul_f16() -> Self {
        KernelTolerance { f16_product_units: 2.0, ..Self::matmul_f32() }
    }

    /// The largest difference allowed for one output.
    pub fn allowed(&self, want: f32, abs_dot: f32, k: usize) -> f64 {
        let ulps = self.ulp_per_k * k as f64 * ulp(want);
        let bound = (self.acc_units_per_k * k as f64 * U32 + self.f16_product_units * U16) * abs_dot as f64;
        ulps.max(bound).max(self.rel_rms * abs_dot as f64)
    }

    /// Judges `got` against the emulation (`want`, with each output's `sum |x w|`).
    pub fn judge(&self, got: &[f32], want: &[f32], abs_dot: &[f32], k: usize) -> KernelVerdict {
        KernelVerdict::within(got, want, |i| self.allowed(want[i], abs_dot[i], k))
    }
}

impl KernelVerdict {
    /// `got` against `want`, output `i` allowed `allowed(i)` of absolute error; NaN or infinite
    /// outputs, and outputs of the wrong count, always fail.
    pub fn within(got: &[f32], want: &[f32], allowed: impl Fn(usize) -> f64) -> KernelVerdict {
        let mut v = KernelVerdict {
            pass: got.len() == want.len(),
            worst_ratio: 0.0,
            worst_index: 0,
            max_abs_err: 0.0,
            failures: 0,
            non_finite: 0,
            worst: None,
        };
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (g as f64 - w as f64).abs();
            let ratio = if err.is_nan() { f64::INFINITY } else { err / allowed(i).max(f64::MIN_POSITIVE) };
            if ratio > 1.0 {
                v.failures += 1;
                v.pass = false;
            }
            if ratio > v.worst_ratio || i == 0 {
                v.worst_ratio = ratio;
                v.worst_index = i;
                v.worst = Some(WorstOutput { expected: w as f64, got: g as f64, allowed: allowed(i) });
            }
            if !g.is_finite() {
                v.non_finite += 1;
            }
            v.max_abs_err = if err.is_nan() || v.max_abs_err.is_nan() { f64::NAN } else { v.max_abs_err.max(err) };
        }
        v
    }
}

/// Distance from |v| to the next larger f32.
pub fn ulp(v: f32) -> f64 {
    let a = v.abs();
    if !a.is_finite() {
        return f64::INFINITY;
    }
    (f32::from_bits(a.to_bits() + 1) as f64) - a as f64
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelVerdict {
    pub pass: bool,
    /// The largest error as a multiple of what was allowed (<= 1 passes; infinite for NaN).
    #[serde(with = "crate::number")]
    pub worst_ratio: f64,
    pub worst_index: usize,
    #[serde(with = "crate::number")]
    pub max_abs_err: f64,
    /// How many outputs exceeded their tolerance.
    pub failures: usize,
    /// How many outputs were NaN or infinite (each one also a failure).
    #[serde(default)]
    pub non_finite: usize,
    /// The output at `worst_index`: what the emulation gave, what the backend gave, the error
    /// allowed there (absent in records written before it was kept, and when nothing was output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst: Option<WorstOutput>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorstOutput {
    #[serde(with = "crate::number")]
    pub expected: f64,
    #[serde(with = "crate::number")]
    pub got: f64,
    #[serde(with = "crate::number")]
    pub allowed: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reordered_sums_pass_and_wrong_values_fail() {
        let t = KernelTolerance::matmul_f32();
        let xs: Vec<f32> = (0..4096).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0).collect();
        let fwd: f32 = xs.iter().sum();
        let back: f32 = xs.iter().rev().sum();
        let abs: f32 = xs.iter().map(|x| x.abs()).sum();
        assert!(t.judge(&[back], &[fwd], &[abs], 4096).pass);
        assert!(!t.judge(&[fwd + abs * 0.01], &[fwd], &[abs], 4096).pass);
        let nan = t.judge(&[f32::NAN], &[fwd], &[abs], 4096);
        assert!(!nan.pass && nan.non_finite == 1 && nan.worst_ratio.is_infinite() && nan.max_abs_err.is_nan());
        assert!(!t.judge(&[f32::INFINITY], &[fwd], &[abs], 4096).pass);
        assert_eq!(ulp(1.0), f32::EPSILON as f64);
    }
}
