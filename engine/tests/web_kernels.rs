//! The engine's kernel tests in a real browser (wasm-bindgen-test; CHROMEDRIVER or GECKODRIVER picks
//! it): every format through GEMV and GEMM on the browser's WebGPU, judged against the CPU emulation
//! computed in the same wasm module; the CPU path's simd128 decode and dot products, to the bit; and
//! seeded data bit-identical to native.

#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;
use webq_conformance::KernelTolerance;
use webq_engine::platform::selection::Browser;
use webq_engine::quant::{quantize, QuantFormat, QuantizedMatrix, Quantizer};
use webq_engine::reference::{emulate, Arith};
use webq_engine::seeded;
use webq_engine::webgpu::{
    gemm_vec_rows, Executor, ExecutorOptions, KernelKind, KernelVariant, TuningTable, Workgroup,
};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn seeded_data_is_bit_identical_to_native() {
    // The same constants as the native golden test in src/seeded.rs.
    assert_eq!(seeded::checksum(&seeded::weights(7, 16, 64)), 7673784155379425272);
    assert_eq!(seeded::checksum(&seeded::activations(7, 2, 64)), 11956779287944144897);
}

/// The wasm backend: the CPU kernels built with simd128, every format, against the emulation.
#[wasm_bindgen_test]
fn cpu_kernels_use_simd128_and_match_the_emulation() {
    let path = webq_engine::cpu::dot_path();
    let built =
        if cfg!(target_feature = "relaxed-simd") { ["simd128-fma", "simd128-madd-unfused"] } else { ["simd128"; 2] };
    assert!(built.contains(&path), "the wasm build must enable simd128 (.cargo/config.toml): {path}");
    let tolerance = KernelTolerance::matmul_f32();
    for format in QuantFormat::catalogue() {
        let (m, n, k) = (3, 17, 256);
        let w = seeded::weights(5, n, k);
        let x = seeded::activations(6, m, k);
        let q = quantize(&w, n, k, format, Quantizer::RoundToNearest).unwrap();
        let y = webq_engine::cpu::matmul(&x, m, &q);
        let want = emulate(&x, m, &q, Arith::F32);
        let v = tolerance.judge(&y, &want.y, &want.abs_dot, k);
        assert!(v.pass, "{format}: {} outputs beyond tolerance (worst {:.3}x)", v.failures, v.worst_ratio);
    }
}

/// The simd128 decode gives every weight to the bit: the identity matrix as activations reads each
/// decoded weight back through the product (w * 1 plus zeros), for every format, at a K of whole
/// 16-weight steps (the vector decode) and one that is not (the scalar decode).
#[wasm_bindgen_test]
fn cpu_kernel_decodes_every_weight_exactly() {
    for format in QuantFormat::catalogue() {
        for k in [256, 250] {
            let n = 3;
            if format.check_shape(n, k).is_err() {
                continue;
            }
            let q = quantize(&seeded::weights(9, n, k), n, k, format, Quantizer::RoundToNearest).unwrap();
            let mut identity = vec![0f32; k * k];
            (0..k).for_each(|c| identity[c * k + c] = 1.0);
            let y = webq_engine::cpu::matmul(&identity, k, &q);
            for r in 0..n {
                for c in 0..k {
                    // `==`, not bits: a weight of -0 read back through `+ 0` is +0.
                    assert_eq!(y[c * n + r], q.weight(r, c), "{format} K {k} weight ({r}, {c})");
                }
            }
        }
    }
}

/// fp16 rows through the simd128 conversion: all 65536 halves (zeros, subnormals, infinities and
/// NaNs included) decode to the bits `half` gives, as `QuantizedMatrix::weight` does.
#[wasm_bindgen_test]
fn cpu_kernel_converts_every_half_exactly() {
    let k = 64;
    let n = 65536 / k;
    let codes: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
    let q = QuantizedMatrix { format: QuantFormat::F16, n, k, codes, row_stride: 2 * k, scales: vec![], zeros: vec![] };
    for r in 0..n {
        for (c, w) in webq_engine::cpu::decoded_row(&q, r).into_iter().enumerate() {
            assert_eq!(w.to_bits(), q.weight(r, c).to_bits(), "half {:#06x}", r * k + c);
        }
    }
}

/// The simd128 path's four activation rows a pass, against two weight rows (`accumulate4x2`: N = 5
/// gives two pairs) or the odd last one (`dot4`), sums each output as one row alone does (decoded as
/// it is dotted, where the vector decode takes the row; 8-bit rows two at a time, N = 5 again giving
/// two pairs and an odd row), to the bit, tail included (K = 130 is not whole vectors), for every
/// format. M = 9, N = 35 and K = 1030 or 1152 take the GEMM over two panels of 16 weight rows and an
/// odd one, and K in two steps of 512 and a short one, with a row past the last block of four.
#[wasm_bindgen_test]
fn cpu_kernel_sums_four_rows_at_once_as_one_row_at_a_time() {
    let shapes = [(6, 5, 130), (6, 5, 256), (9, 35, 1030), (9, 35, 1152)];
    for (format, (m, n, k)) in QuantFormat::catalogue().into_iter().flat_map(|f| shapes.map(|s| (f, s))) {
        if format.check_shape(n, k).is_err() {
            continue;
        }
        let q = quantize(&seeded::weights(7, n, k), n, k, format, Quantizer::RoundToNearest).unwrap();
        let x = seeded::activations(7, m, k);
        let y = webq_engine::cpu::matmul(&x, m, &q);
        for i in 0..m {
            let alone = webq_engine::cpu::matmul(&x[i * k..(i + 1) * k], 1, &q);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y[i * n..(i + 1) * n]), bits(&alone), "{format} {m}x{n}x{k} row {i}");
        }
    }
}

#[wasm_bindgen_test]
async fn every_format_matches_the_emulation_on_webgpu() {
    let exec = Executor::open(&ExecutorOptions::default()).await.expect("this browser has no WebGPU adapter");
    let mut failures = Vec::new();
    let mut cells = 0;
    for format in QuantFormat::catalogue() {
        let k = if format.as_int().is_some_and(|f| f.group.size().is_some()) { 256 } else { 200 };
        for (m, n) in [(1, 33), (5, 19)] {
            for arith in [Arith::F32, Arith::F16] {
                if !exec.supports(arith) {
                    continue;
                }
                let w = seeded::weights(3, n, k);
                let x = seeded::activations(4, m, k);
                let q = quantize(&w, n, k, format, Quantizer::RoundToNearest).unwrap();
                let variant = KernelVariant::new(KernelKind::for_rows(m), arith, Workgroup { x: 128, y: 2 });
                let run = exec.matmul(&x, m, &q, variant, 1).await.unwrap();
                let want = emulate(&x, m, &q, arith);
                let tol =
                    if arith == Arith::F32 { KernelTolerance::matmul_f32() } else { KernelTolerance::matmul_f16() };
                let v = tol.judge(&run.y, &want.y, &want.abs_dot, k);
                cells += 1;
                if !v.pass {
                    failures.push(format!("{format} m{m} {}: worst {:.3e}x", arith.name(), v.worst_ratio));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {cells} cells failed on {}: {failures:?}", failures.len(), exec.adapter().name);
}

/// The CPU adapters' GEMM (`gemm-vec`, what Chromium's SwiftShader and Firefox's lavapipe run for
/// several rows) in the browser's WebGPU: one format per width and scheme, both arithmetics, through
/// the block a thread the tuning table gives this browser's adapter (Chromium's SwiftShader 16
/// channels x 16 rows, Firefox's lavapipe 16 x 8), the narrowest (4 x 16) and the widest (32 x 2),
/// with rows and channels not a multiple of a thread's. (Every format and block runs natively,
/// engine/tests/webgpu_kernels.rs; here each cell waits for a readback and each block compiles for
/// seconds.)
#[wasm_bindgen_test]
async fn the_cpu_adapters_gemm_matches_the_emulation_on_webgpu() {
    let exec = Executor::open(&ExecutorOptions::default()).await.expect("this browser has no WebGPU adapter");
    let ua = js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| js_sys::Reflect::get(&n, &"userAgent".into()))
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default();
    let runtime = if Browser::from_user_agent(&ua) == Browser::Firefox { "firefox" } else { "chromium" };
    let tuned = TuningTable::seed().pick(runtime, &exec.adapter().name, None).gemm_vec;
    let own = tuned.map_or((16, 8), |b| (b.x, b.y));
    let mut failures = Vec::new();
    let mut cells = 0;
    let (m, n, k) = (11, 70, 256);
    for format in ["int2-g32-asym", "int4-g32-sym", "int4-g128-asym", "int8-pc-sym"] {
        let format: QuantFormat = format.parse().unwrap();
        let q = quantize(&seeded::weights(5, n, k), n, k, format, Quantizer::RoundToNearest).unwrap();
        let x = seeded::activations(6, m, k);
        for arith in [Arith::F32, Arith::F16] {
            if !exec.supports(arith) {
                continue;
            }
            let want = emulate(&x, m, &q, arith);
            let tol = if arith == Arith::F32 { KernelTolerance::matmul_f32() } else { KernelTolerance::matmul_f16() };
            for (channels, most) in [own, (4, 16), (32, 2)] {
                let block = Workgroup { x: channels, y: gemm_vec_rows(m, most) };
                let variant = KernelVariant::new(KernelKind::GemmVec, arith, block);
                let run = exec.matmul(&x, m, &q, variant, 1).await.unwrap();
                let v = tol.judge(&run.y, &want.y, &want.abs_dot, k);
                cells += 1;
                if !v.pass {
                    failures.push(format!("{format} {} {block}: worst {:.3e}x", arith.name(), v.worst_ratio));
                }
            }
        }
    }
    assert!(cells >= 12, "{cells} cells");
    assert!(failures.is_empty(), "{} of {cells} cells failed on {}: {failures:?}", failures.len(), exec.adapter().name);
}
