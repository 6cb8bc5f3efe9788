//! CPU oracles.
//!
//! - [`fp16_reference`]: the model as fp16 would run it, the yardstick of quantization accuracy.
//! - [`emulate`]: exactly the computation a quantized kernel does (same packed codes, same stored
//!   scales, dequantize then multiply-accumulate in f32), the yardstick of kernel conformance.
//!   Only summation order separates a correct kernel from it.
//!
//! `y[m, n] = sum_k x[m, k] * w[n, k]`: weights are `n x k` (output channels by input channels).

use half::f16;
use serde::{Deserialize, Serialize};

use crate::quant::QuantizedMatrix;

/// The arithmetic a kernel variant uses between loading a weight and accumulating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arith {
    /// Dequantize and multiply in f32.
    #[default]
    F32,
    /// Activations and dequantized weights in f16, products in f16, accumulation in f32
    /// (the `shader-f16` variant).
    F16,
}

impl std::str::FromStr for Arith {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Arith::F32),
            "f16" => Ok(Arith::F16),
            other => Err(format!("unknown arithmetic `{other}` (known: f32, f16)")),
        }
    }
}

impl Arith {
    pub fn name(self) -> &'static str {
        match self {
            Arith::F32 => "f32",
            Arith::F16 => "f16",
        }
    }
}

/// The fp16 reference: weights rounded to f16, products and sums in f64, output rounded to f32.
pub fn fp16_reference(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "activations are m x k");
    assert_eq!(w.len(), n * k, "weights are n x k");
    let w16: Vec<f64> = w.iter().map(|&v| f16::from_f32(v).to_f64()).collect();
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        let xi = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let wj = &w16[j * k..(j + 1) * k];
            y[i * n + j] = xi.iter().zip(wj).map(|(&a, &b)| a as f64 * b).sum::<f64>() as f32;
        }
    }
    y
}

/// The emulated output and, per output, `sum_k |x_k * w_k|`: the scale of any rounding error,
/// which tolerances are stated against.
#[derive(Clone, Debug, PartialEq)]
pub struct Emulated {
    pub y: Vec<f32>,
    pub abs_dot: Vec<f32>,
}

fn round_f16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// Emulates a quantized matmul `x (m x k) * q^T` exactly as a kernel with `arith` computes it,
/// accumulating in f32 in order of k.
pub fn emulate(x: &[f32], m: usize, q: &QuantizedMatrix, arith: Arith) -> Emulated {
    let (n, k) = (q.n, q.k);
    assert_eq!(x.len(), m * k, "activations are m x k");
    let w: Vec<f32> = match arith {
        Arith::F32 => q.dequantize(),
        Arith::F16 => dequantize_f16(q),
    };
    let xs: Vec<f32> = match arith {
        Arith::F32 => x.to_vec(),
        Arith::F16 => x.iter().map(|&v| round_f16(v)).collect(),
    };
    let mut y = vec![0f32; m * n];
    let mut abs_dot = vec![0f32; m * n];
    for i in 0..m {
        let xi = &xs[i * k..(i + 1) * k];
        for j in 0..n {
            let wj = &w[j * k..(j + 1) * k];
            let (mut acc, mut abs) = (0f32, 0f32);
            for (&a, &b) in xi.iter().zip(wj) {
                let p = match arith {
                    Arith::F32 => a * b,
                    Arith::F16 => round_f16(a * b),
                };
                acc += p;
                abs += p.abs();
            }
            y[i * n + j] = acc;
            abs_dot[i * n + j] = abs;
        }
    }
    Emulated { y, abs_dot }
}

/// Weights as the f16 variant forms them: `f16(q - z) * f16(scale)`, rounded to f16.
fn dequantize_f16(q: &QuantizedMatrix) -> Vec<f32> {
    let mut out = Vec::with_capacity(q.n * q.k);
    if q.format.as_int().is_none() {
        return q.dequantize();
    }
    let glen = q.group_len();
    for r in 0..q.n {
        for c in 0..q.k {
            let g = c / glen;
            let d = round_f16((q.code(r, c) - q.zero(r, g)) as f32);
            out.push(round_f16(d * round_f16(q.scale(r, g))));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{quantize, QuantFormat, Quantizer};
    use crate::seeded;

    #[test]
    fn fp16_format_emulation_equals_reference_up_to_summation() {
        let (m, n, k) = (2, 8, 64);
        let x = seeded::activations(1, m, k);
        let w = seeded::weights(1, n, k);
        let q = quantize(&w, n, k, QuantFormat::F16, Quantizer::RoundToNearest).unwrap();
        let r = fp16_reference(&x, m, &w, n, k);
        let e = emulate(&x, m, &q, Arith::F32);
        for ((a, b), s) in r.iter().zip(&e.y).zip(&e.abs_dot) {
            approx::assert_abs_diff_eq!(a, b, epsilon = 1e-6 * s);
        }
    }

    #[test]
    fn int8_is_close_and_int2_is_far() {
        let (m, n, k) = (1, 32, 256);
        let x = seeded::activations(2, m, k);
        let w = seeded::weights(2, n, k);
        let r = fp16_reference(&x, m, &w, n, k);
        let rel = |f: &str| {
            let q = quantize(&w, n, k, f.parse().unwrap(), Quantizer::RoundToNearest).unwrap();
            let y = emulate(&x, m, &q, Arith::F32).y;
            let num: f32 = y.iter().zip(&r).map(|(a, b)| (a - b) * (a - b)).sum();
            let den: f32 = r.iter().map(|b| b * b).sum();
            (num / den).sqrt()
        };
        let (e8, e4, e2) = (rel("int8-pc-sym"), rel("int4-g32-sym"), rel("int2-g32-asym"));
        assert!(e8 < 0.02 && e8 < e4 && e4 < e2, "int8 {e8} int4 {e4} int2 {e2}");
    }
}
