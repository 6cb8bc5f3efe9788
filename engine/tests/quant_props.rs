//! Property tests of the formats: packing, rounding bounds, asymmetric coverage, the scale search.

#![cfg(not(target_arch = "wasm32"))]

use half::f16;
use proptest::prelude::*;
use webq_engine::quant::{quantize, Group, IntBits, IntFormat, Layout, QuantFormat, Quantizer, ScaleType, Scheme};

fn int_format() -> impl Strategy<Value = IntFormat> {
    (
        prop::sample::select(IntBits::ALL.to_vec()),
        prop::sample::select(Group::SIZES.to_vec()),
        prop::sample::select(vec![Scheme::Symmetric, Scheme::Asymmetric]),
        prop::sample::select(vec![ScaleType::F16, ScaleType::F32]),
    )
        .prop_map(|(bits, group, scheme, scale)| IntFormat { bits, group, scheme, scale })
}

/// Weights in a realistic range, with the occasional outlier and exact zero.
fn weight() -> impl Strategy<Value = f32> {
    prop_oneof![8 => -1.0f32..1.0, 1 => -30.0f32..30.0, 1 => Just(0.0f32)]
}

fn matrix(f: IntFormat) -> impl Strategy<Value = (IntFormat, usize, usize, Vec<f32>)> {
    let group = f.group.size().unwrap_or(1) as usize;
    (1usize..4, 1usize..4).prop_flat_map(move |(n, groups)| {
        let k = if f.group == Group::PerChannel { 13 * groups } else { group * groups };
        prop::collection::vec(weight(), n * k).prop_map(move |w| (f, n, k, w))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn pack_unpack_round_trips(bits in prop::sample::select(IntBits::ALL.to_vec()),
                               codes in prop::collection::vec(any::<u8>(), 0..200)) {
        let layout = Layout::for_bits(bits);
        let codes: Vec<u8> = codes.into_iter().map(|c| c & bits.mask() as u8).collect();
        let packed = layout.pack(&codes);
        prop_assert_eq!(packed.len(), layout.packed_bytes(codes.len()));
        prop_assert_eq!(layout.unpack(&packed, codes.len()), codes);
    }

    #[test]
    fn rounding_error_is_at_most_half_a_scale_inside_the_clamp_range(
        (f, n, k, w) in int_format().prop_flat_map(matrix),
        quantizer in prop::sample::select(Quantizer::ALL.to_vec()),
    ) {
        let q = quantize(&w, n, k, QuantFormat::Int(f), quantizer).unwrap();
        let (lo, hi) = f.code_range();
        for r in 0..n {
            for c in 0..k {
                let g = c / q.group_len();
                let (s, z) = (q.scale(r, g), q.zero(r, g));
                let x = w[r * k + c];
                let (min, max) = ((lo - z) as f32 * s, (hi - z) as f32 * s);
                if x >= min && x <= max {
                    let err = (x - q.weight(r, c)).abs();
                    prop_assert!(err <= s * 0.5 * (1.0 + 1e-5) + 1e-30,
                        "{} r{} c{}: x {} dq {} scale {}", QuantFormat::Int(f), r, c, x, q.weight(r, c), s);
                }
            }
        }
    }

    #[test]
    fn asymmetric_codes_cover_the_group_range((f, n, k, w) in int_format()
            .prop_filter("asymmetric", |f| f.scheme == Scheme::Asymmetric).prop_flat_map(matrix)) {
        let q = quantize(&w, n, k, QuantFormat::Int(f), Quantizer::RoundToNearest).unwrap();
        let (_, qmax) = f.code_range();
        let glen = q.group_len();
        for r in 0..n {
            for g in 0..k / glen {
                let x = &w[r * k + g * glen..r * k + (g + 1) * glen];
                let lo = x.iter().copied().fold(0.0f32, f32::min);
                let hi = x.iter().copied().fold(0.0f32, f32::max);
                let (s, z) = (q.scale(r, g), q.zero(r, g));
                let slack = s * 0.5 * (1.0 + 1e-5) + 1e-30;
                prop_assert!((-z) as f32 * s <= lo + slack, "lowest code reaches the minimum");
                prop_assert!((qmax - z) as f32 * s >= hi - slack, "highest code reaches the maximum: r{} g{} lo {} hi {} s {} z {}", r, g, lo, hi, s, z);
            }
        }
    }

    #[test]
    fn scale_search_is_never_worse_than_round_to_nearest((f, n, k, w) in int_format().prop_flat_map(matrix)) {
        let rtn = quantize(&w, n, k, QuantFormat::Int(f), Quantizer::RoundToNearest).unwrap();
        let search = quantize(&w, n, k, QuantFormat::Int(f), Quantizer::ScaleSearch).unwrap();
        let glen = rtn.group_len();
        for r in 0..n {
            for g in 0..k / glen {
                let sse = |q: &webq_engine::quant::QuantizedMatrix| -> f64 {
                    (g * glen..(g + 1) * glen).map(|c| ((w[r * k + c] - q.weight(r, c)) as f64).powi(2)).sum()
                };
                prop_assert!(sse(&search) <= sse(&rtn), "row {} group {}: {} > {}", r, g, sse(&search), sse(&rtn));
            }
        }
    }

    #[test]
    fn fp16_weights_round_to_nearest_f16(w in prop::collection::vec(-65504.0f32..65504.0, 1..40)) {
        let q = quantize(&w, 1, w.len(), QuantFormat::F16, Quantizer::RoundToNearest).unwrap();
        for (c, &x) in w.iter().enumerate() {
            prop_assert_eq!(q.weight(0, c), f16::from_f32(x).to_f32());
        }
    }
}

#[test]
fn fp16_edge_values() {
    let sub = f16::from_bits(1).to_f32(); // smallest subnormal
    let w = [sub, -sub, 65504.0, -65504.0, 0.0, -0.0, 6.0e-5, 1.0e-8];
    let q = quantize(&w, 1, w.len(), QuantFormat::F16, Quantizer::RoundToNearest).unwrap();
    assert_eq!(q.weight(0, 0), sub);
    assert_eq!(q.weight(0, 2), 65504.0);
    assert_eq!(q.weight(0, 7), 0.0, "below half the smallest subnormal rounds to zero");
    // Just above the largest f16 rounds to it; far above overflows and is refused.
    assert!(quantize(&[65519.0], 1, 1, QuantFormat::F16, Quantizer::RoundToNearest).is_ok());
    assert!(quantize(&[65520.0], 1, 1, QuantFormat::F16, Quantizer::RoundToNearest).is_err());
    // Tiny weights give subnormal f16 scales that still dequantize within half a scale.
    let tiny = [1.0e-6f32, -3.0e-6, 2.0e-6, 0.0];
    let f: QuantFormat = "int4-pc-sym".parse().unwrap();
    let q = quantize(&tiny, 1, 4, f, Quantizer::RoundToNearest).unwrap();
    let s = q.scale(0, 0);
    assert!(s > 0.0 && s < f16::MIN_POSITIVE.to_f32(), "subnormal scale {s}");
    for (c, &x) in tiny.iter().enumerate() {
        approx::assert_abs_diff_eq!(x, q.weight(0, c), epsilon = s * 0.5 + 1e-12);
    }
}
