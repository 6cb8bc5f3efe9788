//! Inputs and weights from a seed, bit-identical natively and on wasm32.
//!
//! Only integer arithmetic and IEEE-exact float operations (+, *, conversions) are used: no
//! transcendental functions (their last bits differ between libms) and no platform RNG.
//! Normals are Irwin-Hall sums of four uniforms: bell-shaped with tails cut at about 3.5 sigma.

/// SplitMix64: tiny, fast, and the same on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A stream derived from a seed and a label, so that different tensors never share values.
    pub fn stream(seed: u64, label: &str) -> Self {
        Rng(seed ^ fnv1a(label.as_bytes()))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), exactly a multiple of 2^-24.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / 16_777_216.0)
    }

    /// Approximately standard normal (mean 0, variance 1).
    pub fn normal(&mut self) -> f32 {
        let s = self.uniform() + self.uniform() + self.uniform() + self.uniform();
        (s - 2.0) * 1.732_050_8
    }
}

/// FNV-1a over bytes.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3))
}

/// A checksum of float bit patterns, for checking that two platforms generated the same tensor.
pub fn checksum(values: &[f32]) -> u64 {
    values.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, v| (h ^ v.to_bits() as u64).wrapping_mul(0x0000_0100_0000_01B3))
}

/// One input channel in this many is an outlier channel.
pub const OUTLIER_EVERY: u64 = 97;
/// How much larger the weights of an outlier channel are.
pub const OUTLIER_GAIN: f32 = 8.0;

/// Weights of a linear layer, `n x k` row-major, shaped like a trained model's: roughly normal with
/// standard deviation 1/sqrt(k), row norms that vary by a factor of up to 3, and about 1% of input
/// channels with 8x larger weights (the outlier features that make per-tensor scales fail).
pub fn weights(seed: u64, n: usize, k: usize) -> Vec<f32> {
    let mut rng = Rng::stream(seed, "weights");
    let outlier: Vec<bool> = {
        let mut pick = Rng::stream(seed, "outlier-channels");
        (0..k).map(|_| pick.next_u64() % OUTLIER_EVERY == 0).collect()
    };
    let base = 1.0 / isqrt_f32(k);
    let mut out = Vec::with_capacity(n * k);
    for _ in 0..n {
        let row_gain = base * (0.5 + rng.uniform());
        for &is_outlier in &outlier {
            let gain = if is_outlier { row_gain * OUTLIER_GAIN } else { row_gain };
            out.push(rng.normal() * gain);
        }
    }
    out
}

/// Activations, `m x k` row-major, standard normal.
pub fn activations(seed: u64, m: usize, k: usize) -> Vec<f32> {
    let mut rng = Rng::stream(seed, "activations");
    (0..m * k).map(|_| rng.normal()).collect()
}

/// sqrt of an integer, by Newton's method on f64 (exact operations only, so the same everywhere).
fn isqrt_f32(k: usize) -> f32 {
    let x = k as f64;
    let mut r = if x > 1.0 { x / 2.0 } else { 1.0 };
    for _ in 0..64 {
        r = 0.5 * (r + x / r);
    }
    r as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same seed gives the same bits on every platform: this checksum is also checked on wasm32.
    #[test]
    fn golden_checksums() {
        assert_eq!(checksum(&weights(7, 16, 64)), GOLDEN_WEIGHTS);
        assert_eq!(checksum(&activations(7, 2, 64)), GOLDEN_ACTIVATIONS);
    }

    pub const GOLDEN_WEIGHTS: u64 = 7673784155379425272;
    pub const GOLDEN_ACTIVATIONS: u64 = 11956779287944144897;

    #[test]
    fn roughly_normal_with_outliers() {
        let mut rng = Rng::new(1);
        let xs: Vec<f32> = (0..100_000).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f32>() / xs.len() as f32;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / xs.len() as f32;
        approx::assert_abs_diff_eq!(mean, 0.0, epsilon = 0.02);
        approx::assert_abs_diff_eq!(var, 1.0, epsilon = 0.03);
        let w = weights(3, 64, 1024);
        let col_max = |c: usize| (0..64).map(|r| w[r * 1024 + c].abs()).fold(0.0f32, f32::max);
        let maxes: Vec<f32> = (0..1024).map(col_max).collect();
        let mut sorted = maxes.clone();
        sorted.sort_by(f32::total_cmp);
        assert!(sorted[1023] > 4.0 * sorted[512], "outlier channels stand out");
        assert_eq!(isqrt_f32(4096), 64.0);
    }
}
