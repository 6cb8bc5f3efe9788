//! The CPU path's own GELU and attention, where the reference's per-value libm calls (`erf`, `exp`
//! in f64) and f64 sums were most of a ViT's time: f32, with loops the compiler turns into SIMD
//! (simd128 in the page, SSE natively). [`super::ops`] and [`super::attention`] stay the reference:
//! these are judged against it like any backend's ops, by the op cells' tolerances (`op_cases`)
//! and the model cells' kernel verdict.
//!
//! Only basic IEEE operations (no `mul_add`, no libm), so the bits are the same in every build
//! and on every machine: a native run's digests still equal the page's.

use std::f32::consts::{FRAC_1_SQRT_2, LOG2_E};

use super::attention::{visible_end, Heads, Mask};

/// GELU in BERT's exact (erf) form, `x/2 * (1 + erf(x / sqrt 2))`, with `1 + erf(z) = erfc(-z)`
/// from the Chebyshev fit of erfc the WGSL kernel uses (Numerical Recipes' `erfcc`, relative error
/// below 1.2e-7, also in the tail where `1 + erf` is small) and [`exp_neg`]. Branch-free: the
/// sign's choice is a select.
///
/// Against [`super::ops::gelu_erf`] over every 2^-10 in [-16, 16]: 6 ULP at worst (see the test).
pub fn gelu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| gelu_one(v)).collect()
}

/// Where [`gelu`] takes `1 + erf(x / sqrt 2)` as 0 (negative x) or 2 (positive).
const TAIL: f32 = 12.5;

#[inline(always)]
fn gelu_one(x: f32) -> f32 {
    // Beyond |x| = 12.5, erfc(|x| / sqrt 2) < 1e-35 and GELU(x) for negative x is below 1e-34:
    // it is taken as 0 (f32's own rounding gives subnormals or 0 there). Subnormal outputs would
    // cost far more than their worth: x86 computes with them a hundred times slower, here and in
    // the next layer's matmul (a first try took Whisper's encoder from 49 to 365 ms a run).
    let a = x.abs();
    let tail = a > TAIL;
    let a = if tail { TAIL } else { a };
    let hi = f32::from_bits(a.to_bits() & 0xffff_f000);
    let lo = a - hi;
    let square_hi = -0.5 * (hi * hi);
    let z = a * FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -0.5 * (lo * (a + hi)) - 1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_204 + t * (1.488_515_9 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = if tail { 0.0 } else { t * exp_neg(square_hi) * exp_neg(poly) };
    let one_plus_erf = if x >= 0.0 { 2.0 - erfc } else { erfc };
    0.5 * x * one_plus_erf
}

/// `e^y` for `y <= 0` (larger `y` is not handled: callers pass a negative exponent). Below
/// `-87.3` the result would leave f32's normal range; it is held at `e^-87.3` (1.2e-38), which
/// every caller multiplies by something small.
///
/// `y = n ln 2 + r` with `n` the nearest integer to `y / ln 2` (rounded by adding and subtracting
/// 1.5 * 2^23, no rounding instruction needed) and `|r| <= ln 2 / 2`; `ln 2` in two parts (Cody and
/// Waite) so that `n ln 2` subtracts exactly; `e^r` by its Taylor series to `r^7` (truncation below
/// 2^-27 relative); `2^n` built in the exponent bits.
#[inline(always)]
fn exp_neg(y: f32) -> f32 {
    const SHIFTER: f32 = 12_582_912.0; // 1.5 * 2^23
    const LN_2_HI: f32 = 0.693_359_4; // 355/512: n * LN_2_HI is exact for |n| < 2^15
    const LN_2_LO: f32 = -2.121_944_4e-4; // ln 2 - LN_2_HI, rounded from the f64 difference
    let y = if y < -87.3 { -87.3 } else { y }; // NaN stays NaN
    let shifted = y * LOG2_E + SHIFTER;
    let n = shifted - SHIFTER;
    let r = (y - n * LN_2_HI) - n * LN_2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // `shifted`'s low bits hold n (its ulp is 1): adding 127 and shifting into the exponent field
    // drops the rest, so no float-to-int conversion is needed (SSE has none that saturates).
    p * f32::from_bits(shifted.to_bits().wrapping_add(127) << 23)
}

/// Keys a pass of [`attention`]'s scores: their sums are the SIMD lanes (four f32x4 chains). 8
/// ran as fast (0.96-1.03x in Chromium and Firefox, bench/2026-12-07-cpu-ops-attention-gelu.txt).
const KEYS: usize = 16;

/// Head dimensions a pass of [`attention`]'s weighted sum of values: four f32x4 sums a query.
const DIMS: usize = 16;

/// Below this, `e^(score - max)` is taken as 0: next to the maximum's weight of 1 it cannot move an
/// f32 sum (e^-64 = 1.6e-28), and products of smaller weights with values would be subnormal,
/// which x86 (natively, and under the browsers' wasm) computes a hundred times slower.
const NEGLIGIBLE: f32 = -64.0;

/// `softmax(q k^T / sqrt(head_dim) + mask) v` per head, as [`super::attention::attention`] (same
/// layouts and masks) but in f32: each score one f32 sum in the order of the head's dimensions,
/// [`KEYS`] keys at a time from a key-interleaved copy of the head's keys (so the keys are the
/// lanes and no sum is reordered); the weights from [`exp_neg`], summed in f32 in key order; each
/// output a sum in key order, [`DIMS`] of them at a time from a copy of the head's values in
/// blocks of dimensions.
///
/// Two queries go through each pass: every key or value loaded serves both, and their sums (8
/// f32x4) stay in registers. Blocking changes no sum's order, so the bits are those of one query
/// at a time.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], tq: usize, tk: usize, h: Heads, mask: Mask) -> Vec<f32> {
    let (qw, kw, d) = (h.q_width(), h.kv_width(), h.head_dim);
    assert!(q.len() == tq * qw && k.len() == tk * kw && v.len() == tk * kw, "attention: shapes");
    assert!(h.kv_heads > 0 && h.heads % h.kv_heads == 0, "attention: heads not a multiple of kv heads");
    let group = h.heads / h.kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    let (blocks, dim_blocks) = (tk.div_ceil(KEYS), d.div_ceil(DIMS));
    let mut out = vec![0f32; tq * qw];
    // Keys as [block][dimension][key in block]; values as [dimension block][key][dimension in
    // block], the dimensions past `d` zero.
    let mut keys = vec![0f32; blocks * d * KEYS];
    let mut values = vec![0f32; dim_blocks * tk * DIMS];
    let mut p = [vec![0f32; blocks * KEYS], vec![0f32; blocks * KEYS]];
    let mut sums_of_values = [vec![0f32; dim_blocks * DIMS], vec![0f32; dim_blocks * DIMS]];
    for kvh in 0..h.kv_heads {
        let cols = kvh * d..(kvh + 1) * d;
        for (j, (kj, vj)) in k.chunks_exact(kw).zip(v.chunks_exact(kw)).enumerate() {
            let (b, r) = (j / KEYS, j % KEYS);
            for (c, &x) in kj[cols.clone()].iter().enumerate() {
                keys[(b * d + c) * KEYS + r] = x;
            }
            for (c, &x) in vj[cols.clone()].iter().enumerate() {
                values[((c / DIMS) * tk + j) * DIMS + c % DIMS] = x;
            }
        }
        for head in kvh * group..(kvh + 1) * group {
            for i0 in (0..tq).step_by(2) {
                // An odd last query is paired with itself; its twin's results are dropped.
                let pair = [i0, (i0 + 1).min(tq - 1)];
                let ends = pair.map(|i| visible_end(tk, i, |i, j| mask.allows(i, j)));
                let end = ends[0].max(ends[1]);
                if end == 0 {
                    continue; // no key visible: zero outputs, as softmax of an all-masked row
                }
                let [q0, q1] = pair.map(|i| &q[i * qw + head * d..][..d]);
                let [p0, p1] = &mut p;
                scores(q0, q1, &keys[..end.div_ceil(KEYS) * d * KEYS], scale, p0, p1);
                let sums = weights(&mut p, end, ends, pair, mask);
                weighted_values(&p[0][..end], &p[1][..end], &values, tk, &mut sums_of_values);
                for (n, o) in sums_of_values.iter().enumerate().take(if pair[1] == pair[0] { 1 } else { 2 }) {
                    if ends[n] == 0 {
                        continue;
                    }
                    for (y, &a) in out[pair[n] * qw + head * d..][..d].iter_mut().zip(&o[..d]) {
                        *y = a / sums[n];
                    }
                }
            }
        }
    }
    out
}

/// Both queries' scaled scores against every key of `keys` (whole blocks of [`KEYS`]).
fn scores(q0: &[f32], q1: &[f32], keys: &[f32], scale: f32, p0: &mut [f32], p1: &mut [f32]) {
    let d = q0.len();
    let pass = p0.chunks_exact_mut(KEYS).zip(p1.chunks_exact_mut(KEYS)).zip(keys.chunks_exact(d * KEYS));
    for ((pb0, pb1), kb) in pass {
        let (mut s0, mut s1) = ([0f32; KEYS], [0f32; KEYS]);
        for ((&a0, &a1), kc) in q0.iter().zip(q1).zip(kb.chunks_exact(KEYS)) {
            for ((x0, x1), &x) in s0.iter_mut().zip(&mut s1).zip(kc) {
                *x0 += a0 * x;
                *x1 += a1 * x;
            }
        }
        for ((o0, o1), (x0, x1)) in pb0.iter_mut().zip(pb1.iter_mut()).zip(s0.into_iter().zip(s1)) {
            (*o0, *o1) = (x0 * scale, x1 * scale);
        }
    }
}

/// Turns a pass's scores (`p`, as far as either query sees) into softmax's numerators: 0 for keys
/// the mask hides and past each query's own visible end (`ends`). Returns each query's sum of them,
/// taken in key order.
fn weights(p: &mut [Vec<f32>; 2], end: usize, ends: [usize; 2], pair: [usize; 2], mask: Mask) -> [f32; 2] {
    for ((pn, &e), &i) in p.iter_mut().zip(&ends).zip(&pair) {
        let (mine, past) = pn[..end].split_at_mut(e);
        past.fill(0.0);
        match mask {
            Mask::Padding(m) => {
                for (pj, &mj) in mine.iter_mut().zip(m) {
                    *pj = if mj == 1 { *pj } else { f32::NEG_INFINITY };
                }
            }
            // Every key before the visible end is visible.
            Mask::Causal { .. } => debug_assert!((0..e).all(|j| mask.allows(i, j))),
        }
        let max = max_of(mine);
        for pj in mine {
            let y = *pj - max;
            *pj = if y < NEGLIGIBLE { 0.0 } else { exp_neg(y) }; // NaN stays NaN
        }
    }
    let mut sums = [0f32; 2];
    for (&w0, &w1) in p[0][..end].iter().zip(&p[1][..end]) {
        sums[0] += w0;
        sums[1] += w1;
    }
    sums
}

/// The largest of `xs` that is not NaN (`f32::max`'s answer), -inf for none, eight lanes at a time.
fn max_of(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    lanes.into_iter().chain(tail.iter().copied()).fold(f32::NEG_INFINITY, f32::max)
}

/// Both queries' sums of weighted values into `out` (whole blocks of [`DIMS`]; past the head's
/// dimensions, 0), each in key order, skipping keys of weight 0 (so a value's NaN or infinity
/// reaches only the outputs that weigh it).
fn weighted_values(w0: &[f32], w1: &[f32], values: &[f32], tk: usize, out: &mut [Vec<f32>; 2]) {
    let [out0, out1] = out;
    let pass = out0.chunks_exact_mut(DIMS).zip(out1.chunks_exact_mut(DIMS)).zip(values.chunks_exact(tk * DIMS));
    for ((y0, y1), block) in pass {
        let (mut a0, mut a1) = ([0f32; DIMS], [0f32; DIMS]);
        for ((&c0, &c1), vj) in w0.iter().zip(w1).zip(block.chunks_exact(DIMS)) {
            if c0 != 0.0 {
                for (a, &x) in a0.iter_mut().zip(vj) {
                    *a += c0 * x;
                }
            }
            if c1 != 0.0 {
                for (a, &x) in a1.iter_mut().zip(vj) {
                    *a += c1 * x;
                }
            }
        }
        y0.copy_from_slice(&a0);
        y1.copy_from_slice(&a1);
    }
}

#[cfg(test)]
mod tests {
    use super::super::attention::attention as reference;
    use super::super::ops::gelu_erf;
    use super::*;
    use webq_conformance::tolerance::ulp;

    /// `|got - want|` in f32 ULP of `max(|want|, floor)`.
    fn ulps(got: f32, want: f32, floor: f32) -> f64 {
        (got as f64 - want as f64).abs() / ulp(want.abs().max(floor))
    }

    #[test]
    fn exp_neg_is_within_two_ulp_of_f64() {
        let mut worst = 0f64;
        for i in 0..=87_000 {
            let y = -(i as f32) / 1000.0;
            let want = (y as f64).exp() as f32;
            worst = worst.max(ulps(exp_neg(y), want, f32::MIN_POSITIVE));
        }
        assert!(worst <= 2.0, "worst {worst} ulp");
        assert_eq!(exp_neg(0.0), 1.0);
        assert!(exp_neg(-1000.0) > 0.0 && exp_neg(-1000.0) < 1.3e-38, "held at e^-87.3");
        assert_eq!(exp_neg(f32::NEG_INFINITY), exp_neg(-87.3));
        assert!(exp_neg(f32::NAN).is_nan(), "a NaN must not be hidden");
    }

    /// Every 2^-10 in [-16, 16] against the f64 reference, in ULP of `max(|want|, 2^-10)` (the op
    /// cells allow 18 ULP of `max(|want|, rms of the row)`, WPT's `gelu`, and a row's rms is far
    /// above 2^-10).
    #[test]
    fn gelu_is_within_eight_ulp_of_the_reference() {
        let xs: Vec<f32> = (-(16 << 10)..=(16 << 10)).map(|i| i as f32 / 1024.0).collect();
        let got = gelu(&xs);
        let (mut worst, mut at) = (0f64, 0f32);
        for (&x, &g) in xs.iter().zip(&got) {
            let u = ulps(g, gelu_erf(x), 1.0 / 1024.0);
            if u > worst {
                (worst, at) = (u, x);
            }
        }
        assert!(worst <= 8.0, "worst {worst} ulp at x = {at}");
    }

    #[test]
    fn gelu_at_the_edges() {
        assert_eq!(gelu(&[0.0])[0], 0.0);
        assert_eq!(gelu(&[1e6, f32::INFINITY]), [1e6, f32::INFINITY]);
        let tail = gelu(&[-20.0, -1e6])[0..2].to_vec();
        assert!(tail.iter().all(|v| *v <= 0.0 && *v > -1e-30), "{tail:?}");
        assert!(gelu(&[f32::NAN])[0].is_nan());
    }

    #[test]
    fn one_visible_key_returns_its_value_exactly() {
        let h = Heads { heads: 1, kv_heads: 1, head_dim: 2 };
        let (q, k, v) = ([1.0, 0.0, 1.0, 0.0], [5.0, 1.0, -3.0, 2.0], [10.0, 20.0, 30.0, 40.0]);
        assert_eq!(attention(&q, &k, &v, 2, 2, h, Mask::Causal { offset: 0 })[..2], [10.0, 20.0]);
        assert_eq!(attention(&q, &k, &v, 2, 2, h, Mask::Padding(&[0, 1])), [30.0, 40.0, 30.0, 40.0]);
        assert_eq!(attention(&q, &k, &v, 2, 2, h, Mask::Padding(&[0, 0])), [0.0; 4], "nothing visible");
        let nan_key = [5.0, f32::NAN, -3.0, 2.0];
        let o = attention(&q, &nan_key, &v, 2, 2, h, Mask::Padding(&[1, 1]));
        assert!(o.iter().all(|x| x.is_nan()), "a NaN score must reach the outputs: {o:?}");
    }

    /// Two queries a pass, an odd last one paired with itself: each query's outputs are the bits
    /// of that query alone (with a causal mask, at its own offset).
    #[test]
    fn queries_in_pairs_give_the_bits_of_one_at_a_time() {
        let mut rng = crate::seeded::Rng::new(9);
        let h = Heads { heads: 4, kv_heads: 2, head_dim: 20 };
        let (tq, tk) = (7, 37);
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal() * 3.0).collect() };
        let (q, k, v) = (draw(tq * h.q_width()), draw(tk * h.kv_width()), draw(tk * h.kv_width()));
        let padding: Vec<u32> = (0..tk).map(|j| u32::from(j % 4 != 2)).collect();
        for mask in [Mask::Padding(&padding), Mask::Causal { offset: 30 }] {
            let all = attention(&q, &k, &v, tq, tk, h, mask);
            for (i, (qi, row)) in q.chunks_exact(h.q_width()).zip(all.chunks_exact(h.q_width())).enumerate() {
                let alone = match mask {
                    Mask::Causal { offset } => Mask::Causal { offset: offset + i },
                    padding => padding,
                };
                let one = attention(qi, &k, &v, 1, tk, h, alone);
                assert_eq!(
                    one.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    row.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    "{mask:?} query {i}"
                );
            }
        }
    }

    /// Against the f64 reference on every mask, grouped heads and key counts around [`super::KEYS`]:
    /// each output within `2^-18` of the largest value, the bound the op cells' (looser) tolerances
    /// leave far behind; with logits in the hundreds (`spread` 30) the scores' f32 rounding is what
    /// moves the weights.
    #[test]
    fn matches_the_f64_reference() {
        let mut rng = crate::seeded::Rng::new(5);
        for (tq, tk, heads, kv_heads, head_dim) in [
            (1, 1, 1, 1, 1),
            (3, 5, 2, 1, 3),
            (7, 17, 4, 2, 8),
            (5, 33, 6, 6, 64),
            (16, 16, 3, 3, 5),
            (2, 40, 2, 2, 32),
        ] {
            let h = Heads { heads, kv_heads, head_dim };
            for spread in [1.0f32, 3.0] {
                let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal() * spread).collect() };
                let (q, k, v) = (draw(tq * h.q_width()), draw(tk * h.kv_width()), draw(tk * h.kv_width()));
                let padding: Vec<u32> = (0..tk).map(|j| u32::from(j % 3 != 1)).collect();
                for mask in [Mask::Padding(&padding), Mask::Causal { offset: 0 }, Mask::Causal { offset: 2 }] {
                    let (got, want) = (attention(&q, &k, &v, tq, tk, h, mask), reference(&q, &k, &v, tq, tk, h, mask));
                    let scale = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                    for (n, (g, w)) in got.iter().zip(&want).enumerate() {
                        let err = (g - w).abs() / scale;
                        assert!(err <= 2f32.powi(-18), "tq {tq} tk {tk} {h:?} {mask:?} output {n}: {g} vs {w}");
                    }
                }
            }
        }
    }
}
