//! Criterion benches of the native kernels: GEMV 4096x4096 and 14336x4096 (N x K) and GEMM
//! 512x4096x4096, per format, with the throughput in bytes of weights read. Each iteration is one
//! dispatch, submitted and waited for. `WEBQ_BENCH_FORMATS=catalogue` runs every format.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use webq_engine::reference::Arith;
use webq_engine::webgpu::bench::{bench_formats, prepare_bench, GemvChoice, GEMM_SHAPE, GEMV_SHAPES};
use webq_engine::webgpu::{Executor, ExecutorOptions};

fn kernels(c: &mut Criterion) {
    let exec = match Executor::new(&ExecutorOptions::default()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("SKIPPED: no GPU adapter ({e}); scripts/setup installs lavapipe");
            return;
        }
    };
    eprintln!("adapter: {}", exec.adapter().name);
    let formats = bench_formats();
    let mut shapes: Vec<(usize, usize, usize)> = GEMV_SHAPES[..2].iter().map(|&(n, k)| (1, n, k)).collect();
    shapes.push(GEMM_SHAPE);
    for (m, n, k) in shapes {
        let mut group =
            c.benchmark_group(format!("{}x{n}x{k}", if m == 1 { "gemv 1".to_string() } else { format!("gemm {m}") }));
        group.sample_size(10);
        for format in &formats {
            let (prepared, bytes) = match prepare_bench(&exec, *format, (m, n, k), Arith::F32, GemvChoice(None)) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{format}: {e}");
                    continue;
                }
            };
            group.throughput(Throughput::Bytes(bytes));
            group.bench_function(BenchmarkId::from_parameter(format), |b| {
                b.iter(|| pollster::block_on(prepared.dispatch_and_wait()).expect("dispatch"))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
