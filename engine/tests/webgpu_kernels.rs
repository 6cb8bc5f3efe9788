//! Every format through every kernel variant on the real adapter (lavapipe here), judged against the
//! CPU emulation of the same computation.

#![cfg(not(target_arch = "wasm32"))]

use webq_conformance::KernelTolerance;
use webq_engine::protocol::ErrorClass;
use webq_engine::quant::{quantize, QuantFormat, Quantizer};
use webq_engine::reference::{emulate, Arith};
use webq_engine::seeded;
use webq_engine::webgpu::{Executor, ExecutorOptions, KernelKind, KernelVariant, Workgroup};

/// The executor; a missing adapter fails unless WEBQ_ALLOW_NO_GPU=1.
pub fn executor() -> Option<Executor> {
    webq_engine::webgpu::executor_for_tests()
}

fn check(
    exec: &Executor,
    format: QuantFormat,
    m: usize,
    n: usize,
    k: usize,
    variant: KernelVariant,
) -> Result<(), String> {
    let w = seeded::weights(11, n, k);
    let x = seeded::activations(12, m, k);
    let q = quantize(&w, n, k, format, Quantizer::ScaleSearch).map_err(|e| e.to_string())?;
    let run =
        pollster::block_on(exec.matmul(&x, m, &q, variant, 1)).map_err(|e| format!("{format} {variant:?}: {e}"))?;
    let want = emulate(&x, m, &q, variant.arith);
    let tol = match variant.arith {
        Arith::F32 => KernelTolerance::matmul_f32(),
        Arith::F16 => KernelTolerance::matmul_f16(),
    };
    let v = tol.judge(&run.y, &want.y, &want.abs_dot, k);
    if v.pass {
        Ok(())
    } else {
        let i = v.worst_index;
        Err(format!(
            "{format} {} {} wg {} m{m} n{n} k{k}: {} outputs off, worst #{i} got {} want {} ({}x tolerance)",
            variant.kind.name(),
            variant.arith.name(),
            variant.workgroup,
            v.failures,
            run.y[i],
            want.y[i],
            v.worst_ratio
        ))
    }
}

/// Checks every cell (format, m, n, k, variant) and fails with all the cells that failed.
fn assert_all_match(exec: &Executor, cells: &[(QuantFormat, usize, usize, usize, KernelVariant)]) {
    let failures: Vec<String> =
        cells.iter().filter_map(|&(format, m, n, k, variant)| check(exec, format, m, n, k, variant).err()).collect();
    assert!(failures.is_empty(), "{} of {} cells failed:\n{}", failures.len(), cells.len(), failures.join("\n"));
    eprintln!("{} cells passed on {}", cells.len(), exec.adapter().name);
}

#[test]
fn every_format_every_kernel_matches_the_emulation() {
    let Some(exec) = executor() else { return };
    let mut cells = Vec::new();
    for format in QuantFormat::catalogue() {
        for arith in [Arith::F32, Arith::F16] {
            if !exec.supports(arith) {
                eprintln!("SKIPPED {format} f16 arithmetic: adapter has no shader-f16");
                continue;
            }
            let shapes: &[(usize, usize, usize)] = if format.as_int().is_some_and(|f| f.group.size().is_some()) {
                &[(1, 37, 256), (5, 21, 128), (37, 70, 128)]
            } else {
                &[(1, 37, 200), (5, 21, 200), (37, 70, 200)] // K not a multiple of the tile, chunk or block
            };
            // 37 x 70: several GEMM tiles of every height, channels not a multiple of 4.
            for &(m, n, k) in shapes {
                let kind = KernelKind::for_rows(m);
                let wgs: &[Workgroup] =
                    if kind == KernelKind::Gemv { &Workgroup::VARIANTS } else { &Workgroup::GEMM_TILES };
                cells.extend(wgs.iter().map(|&wg| (format, m, n, k, KernelVariant::new(kind, arith, wg))));
            }
        }
    }
    assert_all_match(&exec, &cells);
}

/// The vector-load GEMV, every format and arithmetic, rows not a multiple of the rows per workgroup,
/// several activation rows, workgroups wider than the tiles of a row.
#[test]
fn every_format_through_the_vector_gemv_matches_the_emulation() {
    let Some(exec) = executor() else { return };
    let mut cells = Vec::new();
    for format in QuantFormat::catalogue() {
        for arith in [Arith::F32, Arith::F16] {
            if !exec.supports(arith) {
                continue;
            }
            // Rows per thread 8, 3 and 1 (each compiles its own unrolled shader: lavapipe is slow at it).
            let cases = [
                ((1, 37, 512), Workgroup { x: 32, y: 8 }),
                ((3, 19, 1024), Workgroup { x: 64, y: 3 }),
                ((1, 5, 256), Workgroup { x: 256, y: 1 }),
            ];
            for ((m, n, k), wg) in cases {
                cells.push((format, m, n, k, KernelVariant::new(KernelKind::GemvVec, arith, wg)));
            }
        }
    }
    assert_all_match(&exec, &cells);
}

/// The vector GEMV reducing with subgroup operations. The reduction is the same for every format, so
/// every format runs once (f32, four subgroups a workgroup on lavapipe's 8-wide subgroups), and three
/// formats in both arithmetics run the other shapes: eight subgroups with three rows a thread and
/// several activation rows, and a workgroup narrower than a subgroup (4 threads). lavapipe compiles
/// each pipeline slowly, hence not every format in every shape.
#[test]
fn every_format_through_the_subgroup_gemv_matches_the_emulation() {
    let Some(exec) = executor() else { return };
    if !exec.adapter().subgroups {
        eprintln!("skipped: {} offers no subgroups, so gemv-vec-sg cannot run", exec.adapter().name);
        return;
    }
    let sg = |arith, x, y| KernelVariant::new(KernelKind::GemvVecSg, arith, Workgroup { x, y });
    let mut cells: Vec<_> =
        QuantFormat::catalogue().into_iter().map(|f| (f, 1, 37, 512, sg(Arith::F32, 32, 8))).collect();
    for format in ["int4-g128-sym", "int3-g32-asym", "fp16"] {
        let format: QuantFormat = format.parse().unwrap();
        for arith in [Arith::F32, Arith::F16] {
            if exec.supports(arith) {
                cells.push((format, 3, 19, 1024, sg(arith, 64, 3)));
                cells.push((format, 1, 5, 256, sg(arith, 4, 1)));
            }
        }
    }
    assert_all_match(&exec, &cells);
}

/// The CPU adapters' GEMM, every format it takes in both arithmetics through lavapipe's block (16
/// channels by 8 rows a thread), and one format per width and scheme through SwiftShader's (16 by 16;
/// it has no shader-f16), the other blocks and the edges: 2 to 16 rows a thread with M not a multiple
/// of them, 4 to 32 channels with N not a multiple of them (and fewer than them), several groups a
/// row and several workgroups of channels. (Each cell compiles its own pipeline, up to 6 s on
/// lavapipe for 16 by 16: not every format takes every block.)
#[test]
fn every_format_through_the_vector_gemm_matches_the_emulation() {
    let Some(exec) = executor() else { return };
    let edges: [QuantFormat; 4] =
        ["int2-g32-asym", "int4-g32-sym", "int4-g128-asym", "int8-pc-sym"].map(|f| f.parse().unwrap());
    let mut cells = Vec::new();
    for format in QuantFormat::catalogue() {
        if !webq_engine::webgpu::gemm_vec_fits(&format, 256) {
            continue;
        }
        for arith in [Arith::F32, Arith::F16] {
            if !exec.supports(arith) {
                continue;
            }
            let mut blocks = vec![((37, 70, 128), (16, 8))];
            if edges.contains(&format) {
                // 2100 channels are two workgroups of 32 a thread.
                blocks.extend([
                    ((2, 3, 256), (16, 8)),
                    ((37, 70, 128), (4, 8)),
                    ((2, 2100, 128), (32, 2)),
                    ((9, 300, 256), (8, 16)),
                    ((9, 300, 256), (16, 16)),
                ]);
            }
            for ((m, n, k), (channels, most)) in blocks {
                if most == 16 && arith == Arith::F16 {
                    continue;
                }
                let wg = Workgroup { x: channels, y: webq_engine::webgpu::gemm_vec_rows(m, most) };
                cells.push((format, m, n, k, KernelVariant::new(KernelKind::GemmVec, arith, wg)));
            }
        }
    }
    assert!(cells.len() >= 60, "{} cells", cells.len());
    assert_all_match(&exec, &cells);
}

#[test]
fn the_vector_gemm_refuses_what_it_cannot_take() {
    let Some(exec) = executor() else { return };
    let variant = KernelVariant::new(KernelKind::GemmVec, Arith::F32, Workgroup { x: 4, y: 4 });
    for (format, k) in [("int4-pc-sym", 48), ("int3", 128), ("fp16", 128)] {
        let q = quantize(&seeded::weights(1, 8, k), 8, k, format.parse().unwrap(), Quantizer::RoundToNearest).unwrap();
        let err = pollster::block_on(exec.matmul(&seeded::activations(1, 3, k), 3, &q, variant, 1)).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Unsupported, "{format} K {k}: {err}");
        assert!(err.to_string().contains("gemm-vec needs"), "{err}");
    }
    // A block a thread cannot compute: 64 channels (the workgroup's threads, as the block's width once
    // was), or 3 rows.
    let k = 128;
    let q =
        quantize(&seeded::weights(1, 8, k), 8, k, "int4-g32-sym".parse().unwrap(), Quantizer::RoundToNearest).unwrap();
    for block in [Workgroup { x: 64, y: 4 }, Workgroup { x: 16, y: 3 }] {
        let variant = KernelVariant::new(KernelKind::GemmVec, Arith::F32, block);
        let err = pollster::block_on(exec.matmul(&seeded::activations(1, 3, k), 3, &q, variant, 1)).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Unsupported, "{block}: {err}");
        assert!(err.to_string().contains(&format!("by 2, 4, 8 or 16 rows (asked {block})")), "{err}");
    }
}

#[test]
fn the_vector_gemv_refuses_a_k_that_is_not_a_whole_number_of_tiles() {
    let Some(exec) = executor() else { return };
    let (n, k) = (8, 96);
    let q = quantize(&seeded::weights(1, n, k), n, k, "int3".parse().unwrap(), Quantizer::RoundToNearest).unwrap();
    let variant = KernelVariant::new(KernelKind::GemvVec, Arith::F32, Workgroup { x: 64, y: 4 });
    let err = pollster::block_on(exec.matmul(&seeded::activations(1, 1, k), 1, &q, variant, 1)).unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unsupported, "{err}");
    assert!(err.to_string().contains("multiple of 128"), "{err}");
}

#[test]
fn binding_limit_is_refused_clearly() {
    let Some(exec) = executor() else { return };
    let limits = wgpu_limits_small();
    drop(exec);
    let small = Executor::new(&ExecutorOptions { limits: Some(limits), no_f16: false, ..Default::default() })
        .expect("device with small limits");
    let (n, k) = (256, 4096);
    let w = seeded::weights(1, n, k);
    let q = quantize(&w, n, k, QuantFormat::F16, Quantizer::RoundToNearest).unwrap();
    let x = seeded::activations(1, 1, k);
    let variant = KernelVariant::new(KernelKind::Gemv, Arith::F32, Workgroup { x: 128, y: 2 });
    let err = pollster::block_on(small.matmul(&x, 1, &q, variant, 1)).unwrap_err();
    assert_eq!(err.class(), ErrorClass::ResourceLimit, "{err}");
    assert!(err.to_string().contains("packed weights"), "{err}");
}

fn wgpu_limits_small() -> wgpu::Limits {
    wgpu::Limits { max_storage_buffer_binding_size: 1 << 20, max_buffer_size: 1 << 20, ..wgpu::Limits::default() }
}

/// A device with 1 MiB bindings cannot hold a 256x4096 weight in fp16 (2 MiB): the fallback steps to
/// int8 (exactly 1 MiB of codes), which fits and computes the right numbers.
#[test]
fn out_of_memory_falls_back_to_a_narrower_format() {
    use webq_engine::platform::fallback::matmul_with_fallback;
    if executor().is_none() {
        return;
    }
    let small =
        Executor::new(&ExecutorOptions { limits: Some(wgpu_limits_small()), no_f16: false, ..Default::default() })
            .expect("small device");
    let (m, n, k) = (1, 256, 4096);
    let w = seeded::weights(9, n, k);
    let x = seeded::activations(9, m, k);
    let variant = KernelVariant::new(KernelKind::Gemv, Arith::F32, Workgroup { x: 128, y: 2 });
    let out = pollster::block_on(matmul_with_fallback(
        &small,
        &w,
        n,
        k,
        &x,
        m,
        QuantFormat::F16,
        Quantizer::RoundToNearest,
        variant,
    ))
    .map_err(|(steps, e)| format!("{steps:?}: {e}"))
    .unwrap();
    assert_eq!(out.steps.len(), 1, "{:?}", out.steps);
    assert_eq!(out.steps[0].format, "fp16");
    assert_eq!(out.steps[0].error_class, ErrorClass::ResourceLimit);
    assert_eq!(out.format.to_string(), "int8-pc-sym");
    let q = quantize(&w, n, k, out.format, Quantizer::RoundToNearest).unwrap();
    let want = emulate(&x, m, &q, Arith::F32);
    assert!(KernelTolerance::matmul_f32().judge(&out.run.y, &want.y, &want.abs_dot, k).pass);
}
