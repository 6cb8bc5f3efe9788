//! The CPU reference of the transformer ops the model families need (f64 inside, f32 out): the
//! yardstick the WGSL, WebNN and wasm versions will be judged against, one op at a time.
//!
//! Conventions: activations are row-major `rows x dim`; each function works row by row.

/// Layer normalization (BERT): `(x - mean) / sqrt(var + eps) * gamma + beta`, with the biased
/// variance (divided by `dim`, not `dim - 1`), as PyTorch's `LayerNorm` computes it.
pub fn layer_norm(x: &[f32], dim: usize, gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f32> {
    assert!(gamma.len() == dim && beta.len() == dim && x.len() % dim == 0, "layer_norm: shapes");
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(dim) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
        let inv = 1.0 / (var + eps).sqrt();
        out.extend(
            row.iter()
                .zip(gamma.iter().zip(beta))
                .map(|(&v, (&g, &b))| ((v as f64 - mean) * inv * g as f64 + b as f64) as f32),
        );
    }
    out
}

/// RMS normalization (llama): `x / sqrt(mean(x^2) + eps) * gamma`.
pub fn rms_norm(x: &[f32], dim: usize, gamma: &[f32], eps: f64) -> Vec<f32> {
    assert!(gamma.len() == dim && x.len() % dim == 0, "rms_norm: shapes");
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(dim) {
        let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / dim as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        out.extend(row.iter().zip(gamma).map(|(&v, &g)| (v as f64 * inv * g as f64) as f32));
    }
    out
}

/// Softmax of each row, the row's maximum subtracted first (so large logits cannot overflow);
/// `-inf` entries (masked) get probability 0. A row that is entirely `-inf` is all zeros.
pub fn softmax(x: &[f32], dim: usize) -> Vec<f32> {
    assert!(x.len() % dim == 0, "softmax: shapes");
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(dim) {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        if max == f64::NEG_INFINITY {
            out.extend(std::iter::repeat_n(0.0, dim));
            continue;
        }
        let e: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| (v / sum) as f32));
    }
    out
}

/// GELU in BERT's exact form: `x/2 * (1 + erf(x / sqrt(2)))`.
pub fn gelu_erf(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))) as f32
}

/// SiLU: `x * sigmoid(x)`; SwiGLU's gate is `silu(gate) * up`.
pub fn silu(x: f32) -> f32 {
    let x = x as f64;
    (x / (1.0 + (-x).exp())) as f32
}

/// Rotary position embedding as llama.cpp applies it to GGUF weights: within each head of
/// `head_dim`, ADJACENT pairs `(2i, 2i+1)` rotate by `pos * base^(-2i / head_dim)`. (The GGUF
/// converter permuted the query and key rows so that this equals Hugging Face's half-split form.)
/// `x` is one position's `heads x head_dim` values.
pub fn rope_adjacent(x: &mut [f32], head_dim: usize, pos: usize, base: f64) {
    assert!(head_dim % 2 == 0 && x.len() % head_dim == 0, "rope: shapes");
    for head in x.chunks_exact_mut(head_dim) {
        for i in 0..head_dim / 2 {
            let theta = pos as f64 * base.powf(-2.0 * i as f64 / head_dim as f64);
            let (s, c) = theta.sin_cos();
            let (a, b) = (head[2 * i] as f64, head[2 * i + 1] as f64);
            head[2 * i] = (a * c - b * s) as f32;
            head[2 * i + 1] = (a * s + b * c) as f32;
        }
    }
}

/// The cosine and sine of every rotary angle of `rows` positions from `pos0` (`head_dim / 2`
/// a row), in f64 and then rounded, as llama.cpp and onnxruntime precompute them: the backends
/// that rotate on the device take these rather than their own `sin`/`cos` (WGSL's promise 2^-11).
pub fn rope_table(rows: usize, head_dim: usize, pos0: usize, base: f64) -> Vec<[f32; 2]> {
    let half = head_dim / 2;
    let mut table = Vec::with_capacity(rows * half);
    for r in 0..rows {
        for i in 0..half {
            let theta = (pos0 + r) as f64 * base.powf(-2.0 * i as f64 / head_dim as f64);
            table.push([theta.cos() as f32, theta.sin() as f32]);
        }
    }
    table
}

/// Mean of the rows whose mask is 1 (sentence-transformers' mean pooling), then L2-normalized.
pub fn mean_pool_normalized(x: &[f32], dim: usize, mask: &[u32]) -> Vec<f32> {
    assert!(x.len() == mask.len() * dim, "mean_pool: shapes");
    let mut sum = vec![0f64; dim];
    let mut n = 0usize;
    for (row, &m) in x.chunks_exact(dim).zip(mask) {
        if m == 1 {
            n += 1;
            sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n.max(1) as f64).collect();
    let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    mean.iter().map(|v| (v / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn norms_of_known_rows() {
        // mean 2.5, biased variance 1.25.
        let y = layer_norm(&[1.0, 2.0, 3.0, 4.0], 4, &[1.0; 4], &[0.5; 4], 0.0);
        let s = 1.25f64.sqrt();
        for (got, want) in y.iter().zip([-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s]) {
            assert_abs_diff_eq!(*got as f64, want + 0.5, epsilon = 1e-6);
        }
        // rms of [3, 4] is sqrt(12.5).
        let y = rms_norm(&[3.0, 4.0], 2, &[2.0, 1.0], 0.0);
        assert_abs_diff_eq!(y[0] as f64, 6.0 / 12.5f64.sqrt(), epsilon = 1e-6);
        assert_abs_diff_eq!(y[1] as f64, 4.0 / 12.5f64.sqrt(), epsilon = 1e-6);
    }

    #[test]
    fn softmax_is_stable_and_masks() {
        let p = softmax(&[1000.0, 1000.0, f32::NEG_INFINITY, 999.0], 4);
        let e = (-1f64).exp();
        assert_abs_diff_eq!(p[0] as f64, 1.0 / (2.0 + e), epsilon = 1e-7);
        assert_eq!(p[2], 0.0);
        assert_abs_diff_eq!(p.iter().sum::<f32>(), 1.0, epsilon = 1e-6);
        assert_eq!(softmax(&[f32::NEG_INFINITY; 3], 3), [0.0; 3]);
    }

    #[test]
    fn activations_of_known_values() {
        // GELU(1) = 0.5 * (1 + erf(1/sqrt 2)) = 0.8413447...; GELU(-3) = -0.00404951...
        assert_abs_diff_eq!(gelu_erf(1.0), 0.841_344_7, epsilon = 1e-6);
        assert_abs_diff_eq!(gelu_erf(-3.0), -0.004_049_5, epsilon = 1e-6);
        assert_eq!(gelu_erf(0.0), 0.0);
        // SiLU(1) = 1 / (1 + e^-1) = 0.7310586.
        assert_abs_diff_eq!(silu(1.0), 0.731_058_6, epsilon = 1e-6);
    }

    #[test]
    fn rope_rotates_adjacent_pairs_and_keeps_norms() {
        let mut x = [1.0f32, 0.0, 0.0, 1.0];
        rope_adjacent(&mut x, 4, 0, 1e5);
        assert_eq!(x, [1.0, 0.0, 0.0, 1.0], "position 0 is the identity");
        rope_adjacent(&mut x, 4, 1, 1e5);
        // Pair 0 turns by 1 radian, pair 1 by 1e5^(-1/2) radians.
        assert_abs_diff_eq!(x[0], 1f32.cos(), epsilon = 1e-6);
        assert_abs_diff_eq!(x[1], 1f32.sin(), epsilon = 1e-6);
        let t = 1e5f64.powf(-0.5);
        assert_abs_diff_eq!(x[2] as f64, -t.sin(), epsilon = 1e-6);
        assert_abs_diff_eq!(x[3] as f64, t.cos(), epsilon = 1e-6);
        assert_abs_diff_eq!(x.iter().map(|v| v * v).sum::<f32>(), 2.0, epsilon = 1e-6);
    }

    #[test]
    fn mean_pooling_skips_padding_and_normalizes() {
        let y = mean_pool_normalized(&[3.0, 0.0, 1.0, 4.0, 100.0, 100.0], 2, &[1, 1, 0]);
        // mean of [3,0] and [1,4] = [2, 2] -> [1/sqrt 2, 1/sqrt 2].
        assert_abs_diff_eq!(y[0], std::f32::consts::FRAC_1_SQRT_2, epsilon = 1e-7);
        assert_abs_diff_eq!(y[1], std::f32::consts::FRAC_1_SQRT_2, epsilon = 1e-7);
    }
}
