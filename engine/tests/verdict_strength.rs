//! What the verdicts refuse, on the data the kernel tests use:
//! - the test data reaches every code value of every width up to 4 bits, and the most negative and
//!   the largest code of 8-bit formats (normal weights leave some of the 256 tail codes unused), so a
//!   kernel that mishandles an extreme code cannot pass by never meeting one;
//! - the accuracy verdict rejects an all-zero, a sign-flipped and a random output at every width,
//!   while the exact computation of the same quantized weights passes.

#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeSet;

use webq_conformance::{AccuracyVerdict, BudgetKey};
use webq_engine::quant::{quantize, QuantFormat, QuantizedMatrix, Quantizer};
use webq_engine::reference::{emulate, fp16_reference, Arith};
use webq_engine::seeded;

/// (seed, n, k) of the weights the kernel tests run, all with the scale search: the kernel tests
/// (engine/tests/webgpu_kernels.rs, seed 11), the ci matrix's decode and prefill shapes (seed 1)
/// and the planted-fault cases (harness/src/faults.rs, seed 5).
/// (Round-to-nearest with symmetric codes never uses the most negative code: its scale maps the
/// group's largest magnitude to the largest positive code. So kernel data uses the search.)
const KERNEL_DATA: &[(u64, usize, usize)] =
    &[(11, 37, 256), (11, 21, 128), (1, 72, 256), (1, 40, 256), (5, 40, 256), (5, 24, 256)];

fn int_formats() -> Vec<QuantFormat> {
    QuantFormat::catalogue().into_iter().filter(|f| f.as_int().is_some()).collect()
}

fn codes(q: &QuantizedMatrix) -> BTreeSet<i32> {
    (0..q.n).flat_map(|r| (0..q.k).map(move |c| (r, c))).map(|(r, c)| q.code(r, c)).collect()
}

#[test]
fn kernel_test_data_reaches_every_code_of_every_width() {
    let mut missing = Vec::new();
    for format in int_formats() {
        let (lo, hi) = format.as_int().unwrap().code_range();
        for quantizer in [Quantizer::ScaleSearch] {
            for &(seed, n, k) in KERNEL_DATA {
                if format.check_shape(n, k).is_err() {
                    continue;
                }
                let q = quantize(&seeded::weights(seed, n, k), n, k, format, quantizer).unwrap();
                let seen = codes(&q);
                let must: Vec<i32> = if hi - lo > 15 { vec![lo, hi] } else { (lo..=hi).collect() };
                let absent: Vec<i32> = must.into_iter().filter(|c| !seen.contains(c)).collect();
                if !absent.is_empty() {
                    missing.push(format!("{format} {quantizer:?} seed {seed} {n}x{k}: codes {absent:?} never occur"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn accuracy_rejects_zero_sign_flipped_and_random_outputs_at_every_width() {
    let (m, n, k, seed) = (3, 72, 256, 1);
    let w = seeded::weights(seed, n, k);
    let x = seeded::activations(seed, m, k);
    let reference = fp16_reference(&x, m, &w, n, k);
    let noise = seeded::activations(seed + 100, m, n);
    let scale = (reference.iter().map(|v| v * v).sum::<f32>() / reference.len() as f32).sqrt();
    let mut wrong = Vec::new();
    for format in QuantFormat::catalogue() {
        let q = quantize(&w, n, k, format, Quantizer::ScaleSearch).unwrap();
        for arith in [Arith::F32, Arith::F16] {
            let exact = emulate(&x, m, &q, arith).y;
            let per_channel = format.as_int().is_some_and(|f| f.group.size().is_none());
            let key = BudgetKey { weight_bits: format.weight_bits(), per_channel, f16_arith: arith == Arith::F16 };
            let judge = |y: &[f32]| AccuracyVerdict::judge(y, &reference, &exact, key, None).unwrap();
            let exact_verdict = judge(&exact);
            if !exact_verdict.pass {
                wrong.push(format!("{format} {arith:?}: the exact computation fails: {exact_verdict:?}"));
            }
            let zero = vec![0f32; reference.len()];
            let flipped: Vec<f32> = exact.iter().map(|v| -v).collect();
            let random: Vec<f32> = noise.iter().map(|v| v * scale * 3f32.sqrt()).collect();
            let mut one_nan = exact.clone();
            one_nan[7] = f32::NAN;
            for (name, y) in [("zero", &zero), ("sign-flipped", &flipped), ("random", &random), ("one NaN", &one_nan)] {
                let v = judge(y);
                if v.pass {
                    wrong.push(format!("{format} {arith:?}: a {name} output passes ({:?})", v.metrics));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
