//! Quantizers (round-to-nearest and a per-group scale search) and the quantized matrix they produce.
//!
//! Weights are `n x k`, row-major: row `r` is output channel `r`, groups run along K.
//! Dequantization is defined once, here, as kernels compute it: `w = f32(q - z) * scale`,
//! with `scale` exactly as stored (already rounded to f16 when the format stores f16 scales).

use half::f16;
use serde::{Deserialize, Serialize};

use super::error::QuantError;
use super::format::{IntFormat, QuantFormat, ScaleType, Scheme};
use super::layout::{sign_extend, Layout};

/// How codes and scales are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quantizer {
    /// Scale from the group's range, codes rounded to nearest.
    RoundToNearest,
    /// Tries a range of scales (and least-squares refits of each) per group and keeps the one with the
    /// smallest squared error, as llama.cpp's `make_qx_quants` does. Round-to-nearest is one of the
    /// candidates, so the search is never worse on any group.
    ScaleSearch,
}

impl Quantizer {
    pub const ALL: [Quantizer; 2] = [Quantizer::RoundToNearest, Quantizer::ScaleSearch];

    pub fn name(self) -> &'static str {
        match self {
            Quantizer::RoundToNearest => "rtn",
            Quantizer::ScaleSearch => "search",
        }
    }
}

/// A matrix in its stored form.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedMatrix {
    pub format: QuantFormat,
    pub n: usize,
    pub k: usize,
    /// Packed rows (f16 little endian for fp16), each `row_stride` bytes.
    pub codes: Vec<u8>,
    pub row_stride: usize,
    /// One scale per group, row-major (`row * groups_per_row + group`), exactly as stored.
    pub scales: Vec<f32>,
    /// Zero-point patterns, one per group (empty for symmetric formats).
    pub zeros: Vec<u8>,
}

impl QuantizedMatrix {
    pub fn group_len(&self) -> usize {
        match self.format {
            QuantFormat::F16 => self.k,
            QuantFormat::Int(f) => f.group.len_for(self.k).expect("checked at quantization"),
        }
    }

    pub fn groups_per_row(&self) -> usize {
        self.k / self.group_len()
    }

    /// Row `r`'s stored codes (its packed bytes and the padding to `row_stride`).
    pub(crate) fn row(&self, r: usize) -> &[u8] {
        &self.codes[r * self.row_stride..(r + 1) * self.row_stride]
    }

    /// The integer code of weight (r, c): signed for symmetric, unsigned for asymmetric formats.
    pub fn code(&self, r: usize, c: usize) -> i32 {
        let f = self.int_format();
        let pattern = f.layout().code_at(self.row(r), c);
        match f.scheme {
            Scheme::Symmetric => sign_extend(pattern, f.bits.bits()),
            Scheme::Asymmetric => pattern as i32,
        }
    }

    /// The zero point of group `g` of row `r` (0 for symmetric formats).
    pub fn zero(&self, r: usize, g: usize) -> i32 {
        if self.zeros.is_empty() {
            0
        } else {
            self.zeros[r * self.groups_per_row() + g] as i32
        }
    }

    pub fn scale(&self, r: usize, g: usize) -> f32 {
        self.scales[r * self.groups_per_row() + g]
    }

    fn int_format(&self) -> IntFormat {
        *self.format.as_int().expect("an integer format")
    }

    /// Weight (r, c) as every kernel dequantizes it, in f32.
    pub fn weight(&self, r: usize, c: usize) -> f32 {
        match self.format {
            QuantFormat::F16 => {
                let o = r * self.row_stride + 2 * c;
                f16::from_le_bytes([self.codes[o], self.codes[o + 1]]).to_f32()
            }
            QuantFormat::Int(_) => {
                let g = c / self.group_len();
                (self.code(r, c) - self.zero(r, g)) as f32 * self.scale(r, g)
            }
        }
    }

    /// All weights, dequantized, row-major `n x k`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.n * self.k);
        for r in 0..self.n {
            out.extend((0..self.k).map(|c| self.weight(r, c)));
        }
        out
    }

    /// Scales as stored bytes (f16 or f32, little endian), padded to a whole word.
    pub fn scale_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let QuantFormat::Int(f) = self.format {
            for &s in &self.scales {
                match f.scale {
                    ScaleType::F16 => out.extend_from_slice(&f16::from_f32(s).to_le_bytes()),
                    ScaleType::F32 => out.extend_from_slice(&s.to_le_bytes()),
                }
            }
        }
        pad_to_word(out)
    }

    /// Zero points packed flat at the weight's width, padded to a whole word (empty when symmetric).
    pub fn zero_bytes(&self) -> Vec<u8> {
        match self.format {
            QuantFormat::Int(f) if f.scheme == Scheme::Asymmetric => pad_to_word(f.layout().pack(&self.zeros)),
            _ => Vec::new(),
        }
    }
}

fn pad_to_word(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
    bytes
}

/// Quantizes a row-major `n x k` matrix.
pub fn quantize(
    w: &[f32],
    n: usize,
    k: usize,
    format: QuantFormat,
    quantizer: Quantizer,
) -> Result<QuantizedMatrix, QuantError> {
    format.check_shape(n, k)?;
    if w.len() != n * k {
        return Err(QuantError::Shape { what: format!("{} weights given for a {n}x{k} matrix", w.len()) });
    }
    if let Some(i) = w.iter().position(|v| !v.is_finite()) {
        return Err(QuantError::NonFinite { row: i / k, col: i % k, value: w[i] });
    }
    match format {
        QuantFormat::F16 => quantize_f16(w, n, k),
        QuantFormat::Int(f) => quantize_int(w, n, k, f, quantizer),
    }
}

fn quantize_f16(w: &[f32], n: usize, k: usize) -> Result<QuantizedMatrix, QuantError> {
    let row_stride = Layout::Half.row_stride_bytes(k);
    let mut codes = vec![0u8; n * row_stride];
    for r in 0..n {
        for c in 0..k {
            let v = w[r * k + c];
            let h = f16::from_f32(v);
            if h.is_infinite() {
                return Err(QuantError::OutOfF16Range { row: r, col: c, value: v });
            }
            let o = r * row_stride + 2 * c;
            codes[o..o + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    Ok(QuantizedMatrix { format: QuantFormat::F16, n, k, codes, row_stride, scales: vec![], zeros: vec![] })
}

fn quantize_int(
    w: &[f32],
    n: usize,
    k: usize,
    f: IntFormat,
    quantizer: Quantizer,
) -> Result<QuantizedMatrix, QuantError> {
    let glen = f.group.len_for(k)?;
    let groups = k / glen;
    let layout = f.layout();
    let row_stride = layout.row_stride_bytes(k);
    let mut codes = vec![0u8; n * row_stride];
    let mut scales = Vec::with_capacity(n * groups);
    let mut zeros = Vec::with_capacity(if f.scheme == Scheme::Asymmetric { n * groups } else { 0 });
    let mut row_codes = vec![0u8; k];
    for r in 0..n {
        for g in 0..groups {
            let x = &w[r * k + g * glen..r * k + (g + 1) * glen];
            let choice = match quantizer {
                Quantizer::RoundToNearest => round_to_nearest(x, &f),
                Quantizer::ScaleSearch => scale_search(x, &f),
            }
            .ok_or(QuantError::ScaleOverflow { row: r, group: g, scale: group_scale_hint(x, &f) })?;
            let (lo, hi) = f.code_range();
            for (dst, &v) in row_codes[g * glen..(g + 1) * glen].iter_mut().zip(x) {
                let q = code_for(v, choice.scale, choice.zero, lo, hi);
                *dst = (q as u32 & f.bits.mask()) as u8;
            }
            scales.push(choice.scale);
            if f.scheme == Scheme::Asymmetric {
                zeros.push(choice.zero as u8);
            }
        }
        layout.pack_into(&row_codes, &mut codes[r * row_stride..r * row_stride + layout.packed_bytes(k)]);
    }
    Ok(QuantizedMatrix { format: QuantFormat::Int(f), n, k, codes, row_stride, scales, zeros })
}

/// A group's stored scale and zero point.
#[derive(Clone, Copy, Debug)]
struct GroupChoice {
    scale: f32,
    zero: i32,
}

/// Rounds a scale to its storage type; `None` when it does not fit.
fn store_scale(s: f32, t: ScaleType) -> Option<f32> {
    let stored = match t {
        ScaleType::F16 => f16::from_f32(s).to_f32(),
        ScaleType::F32 => s,
    };
    stored.is_finite().then_some(stored)
}

/// Rounds a scale up to its storage type, so that the grid of codes still spans the group's range.
fn store_scale_up(s: f32, t: ScaleType) -> Option<f32> {
    let stored = store_scale(s, t)?;
    if stored >= s || t == ScaleType::F32 {
        return Some(stored);
    }
    let up = f16::from_bits(f16::from_f32(s).to_bits() + 1).to_f32();
    up.is_finite().then_some(up)
}

/// The nearest code of `v` under (scale, zero), clamped to the code range.
fn code_for(v: f32, scale: f32, zero: i32, lo: i32, hi: i32) -> i32 {
    if scale == 0.0 {
        return zero.clamp(lo, hi);
    }
    ((v / scale).round() as i32 + zero).clamp(lo, hi)
}

/// Squared error of a group under (scale, zero), with codes rounded to nearest.
fn group_sse(x: &[f32], c: GroupChoice, lo: i32, hi: i32) -> f64 {
    x.iter()
        .map(|&v| {
            let q = code_for(v, c.scale, c.zero, lo, hi);
            let d = (v - (q - c.zero) as f32 * c.scale) as f64;
            d * d
        })
        .sum()
}

fn range_with_zero(x: &[f32]) -> (f32, f32) {
    let lo = x.iter().copied().fold(0.0f32, f32::min);
    let hi = x.iter().copied().fold(0.0f32, f32::max);
    (lo, hi)
}

fn abs_max(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// The zero point that puts `lo` on the grid of `scale`, clamped to the code range.
fn zero_for(lo: f32, scale: f32, qmax: i32) -> i32 {
    if scale == 0.0 {
        0
    } else {
        ((-lo / scale).round() as i32).clamp(0, qmax)
    }
}

/// Unrounded round-to-nearest scale, for the overflow message.
fn group_scale_hint(x: &[f32], f: &IntFormat) -> f32 {
    let (lo, hi) = f.code_range();
    match f.scheme {
        Scheme::Symmetric => abs_max(x) / hi as f32,
        Scheme::Asymmetric => {
            let (a, b) = range_with_zero(x);
            (b - a) / (hi - lo) as f32
        }
    }
}

/// The scale from the group's range (rounded up when stored), codes to nearest.
fn round_to_nearest(x: &[f32], f: &IntFormat) -> Option<GroupChoice> {
    let (_, hi) = f.code_range();
    match f.scheme {
        Scheme::Symmetric => Some(GroupChoice { scale: store_scale_up(abs_max(x) / hi as f32, f.scale)?, zero: 0 }),
        Scheme::Asymmetric => {
            let (a, b) = range_with_zero(x);
            let scale = store_scale_up((b - a) / hi as f32, f.scale)?;
            Some(GroupChoice { scale, zero: zero_for(a, scale, hi) })
        }
    }
}

/// Offsets added to the largest code when a candidate scale is derived from the group's range.
const SEARCH_STEPS: i32 = 9;
fn search_offset(i: i32) -> f32 {
    -0.4 + 0.2 * i as f32
}

fn scale_search(x: &[f32], f: &IntFormat) -> Option<GroupChoice> {
    let (lo, hi) = f.code_range();
    let rtn = round_to_nearest(x, f)?;
    let mut best = (group_sse(x, rtn, lo, hi), rtn);
    let mut consider = |c: GroupChoice| {
        let e = group_sse(x, c, lo, hi);
        if e < best.0 {
            best = (e, c);
        }
    };
    match f.scheme {
        Scheme::Symmetric => {
            let amax = abs_max(x);
            if amax == 0.0 {
                return Some(rtn);
            }
            for i in 0..SEARCH_STEPS {
                let Some(scale) = store_scale(amax / (hi as f32 + search_offset(i)), f.scale) else { continue };
                let cand = GroupChoice { scale, zero: 0 };
                consider(cand);
                // Least-squares scale for the codes this candidate picks.
                let (mut xq, mut qq) = (0f64, 0f64);
                for &v in x {
                    let q = code_for(v, scale, 0, lo, hi) as f64;
                    xq += v as f64 * q;
                    qq += q * q;
                }
                if qq > 0.0 {
                    if let Some(s) = store_scale((xq / qq) as f32, f.scale) {
                        consider(GroupChoice { scale: s, zero: 0 });
                    }
                }
            }
        }
        Scheme::Asymmetric => {
            let (a, b) = range_with_zero(x);
            if b == a {
                return Some(rtn);
            }
            for i in 0..SEARCH_STEPS {
                let Some(scale) = store_scale((b - a) / (hi as f32 + search_offset(i)), f.scale) else { continue };
                let cand = GroupChoice { scale, zero: zero_for(a, scale, hi) };
                consider(cand);
                // Least-squares fit of x ~ s * q + m over the codes this candidate picks.
                let (mut sq, mut sqq, mut sx, mut sxq) = (0f64, 0f64, 0f64, 0f64);
                for &v in x {
                    let q = code_for(v, cand.scale, cand.zero, lo, hi) as f64;
                    sq += q;
                    sqq += q * q;
                    sx += v as f64;
                    sxq += v as f64 * q;
                }
                let len = x.len() as f64;
                let det = len * sqq - sq * sq;
                if det > 0.0 {
                    let s = (len * sxq - sq * sx) / det;
                    let m = (sx - s * sq) / len;
                    if s > 0.0 {
                        if let Some(scale) = store_scale(s as f32, f.scale) {
                            consider(GroupChoice { scale, zero: zero_for(m as f32, scale, hi) });
                        }
                    }
                }
            }
        }
    }
    Some(best.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{Group, IntBits};

    fn int(bits: IntBits, group: Group, scheme: Scheme) -> QuantFormat {
        QuantFormat::Int(IntFormat::new(bits, group, scheme))
    }

    #[test]
    fn known_values_int4_sym() {
        let w = [0.7f32, -0.7, 0.1, 0.0];
        let q = quantize(&w, 1, 4, int(IntBits::B4, Group::PerChannel, Scheme::Symmetric), Quantizer::RoundToNearest)
            .unwrap();
        assert_eq!(q.scale(0, 0), 0.10003662, "0.1 rounded up to the next f16");
        assert_eq!((0..4).map(|c| q.code(0, c)).collect::<Vec<_>>(), vec![7, -7, 1, 0]);
    }

    #[test]
    fn nan_and_inf_are_refused_with_position() {
        let mut w = vec![0.5f32; 64];
        w[37] = f32::NAN;
        let f = int(IntBits::B4, Group::Size(32), Scheme::Symmetric);
        let err = quantize(&w, 2, 32, f, Quantizer::RoundToNearest).unwrap_err();
        assert!(matches!(err, QuantError::NonFinite { row: 1, col: 5, .. }), "{err}");
        w[37] = f32::INFINITY;
        assert!(quantize(&w, 2, 32, QuantFormat::F16, Quantizer::RoundToNearest).is_err());
    }

    #[test]
    fn fp16_overflow_is_refused() {
        let w = [1.0f32, 70000.0];
        let err = quantize(&w, 1, 2, QuantFormat::F16, Quantizer::RoundToNearest).unwrap_err();
        assert!(matches!(err, QuantError::OutOfF16Range { row: 0, col: 1, .. }), "{err}");
        let f = int(IntBits::B2, Group::PerChannel, Scheme::Symmetric);
        let err = quantize(&w, 1, 2, f, Quantizer::RoundToNearest).unwrap_err();
        assert!(err.to_string().contains("f32 scales"), "{err}");
    }

    #[test]
    fn empty_and_mismatched_shapes_are_refused() {
        let f = int(IntBits::B8, Group::PerChannel, Scheme::Symmetric);
        assert!(matches!(quantize(&[], 0, 4, f, Quantizer::RoundToNearest), Err(QuantError::Empty { .. })));
        assert!(matches!(quantize(&[1.0; 3], 1, 4, f, Quantizer::RoundToNearest), Err(QuantError::Shape { .. })));
    }
}
