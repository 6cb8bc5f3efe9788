//! GPU benchmark of the GEMV kernels with GPU timestamps, for machines with a real GPU
//! (`scripts/gpu-bench`). Per format and shape: the median GPU time of one dispatch over
//! `WEBQ_BENCH_REPS` (default 200) dispatches in one submission, the wall time per dispatch of that
//! submission, and the GB/s of weights read. Prints a table, and JSON lines with `--json`.

#[cfg(not(target_arch = "wasm32"))]
use webq_engine::reference::Arith;
#[cfg(not(target_arch = "wasm32"))]
use webq_engine::webgpu::bench::{bench_formats, bench_workgroups, prepare_bench, GEMV_SHAPES};
#[cfg(not(target_arch = "wasm32"))]
use webq_engine::webgpu::{Executor, ExecutorOptions};

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let reps: usize = std::env::var("WEBQ_BENCH_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let exec = Executor::new(&ExecutorOptions::default()).unwrap_or_else(|e| {
        eprintln!("gpu_bench: {e}");
        std::process::exit(1)
    });
    let a = exec.adapter();
    eprintln!(
        "adapter: {} ({}, {} {}), timestamps {}, shader-f16 {}",
        a.name, a.backend, a.driver, a.driver_info, a.timestamps, a.shader_f16
    );
    // With --json the JSON lines go to stdout and the table to stderr: one run gives both.
    let header = format!(
        "{:<16} {:>12} {:>5} {:>6} {:>10} {:>10} {:>9}",
        "format", "N x K", "arith", "wg", "gpu us", "wall us", "GB/s"
    );
    if json {
        eprintln!("{header}");
    } else {
        println!("{header}");
    }
    for (n, k) in GEMV_SHAPES {
        for format in bench_formats() {
            for (arith, wg) in
                [Arith::F32, Arith::F16].into_iter().flat_map(|a| bench_workgroups().into_iter().map(move |w| (a, w)))
            {
                if !exec.supports(arith) {
                    continue;
                }
                let wg_name = wg.map_or("tuned".to_string(), |w| w.to_string());
                let (p, bytes) = match prepare_bench(&exec, format, (1, n, k), arith, wg) {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("{format} {n}x{k}: {e}");
                        continue;
                    }
                };
                // Warm-up, then the timed submission.
                let _ = pollster::block_on(p.time(10));
                let t = match pollster::block_on(p.time(reps)) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("{format} {n}x{k}: {e}");
                        continue;
                    }
                };
                let us = t.gpu_us_median.unwrap_or(t.wall_us_per_dispatch);
                let gbps = bytes as f64 / (us * 1e3);
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"adapter": a.name, "format": format.to_string(), "n": n, "k": k, "arith": arith.name(),
                            "workgroup": wg_name, "gpu_us_median": t.gpu_us_median, "wall_us_per_dispatch": t.wall_us_per_dispatch,
                            "dispatches": t.dispatches, "weight_bytes": bytes, "weight_gbps": gbps})
                    );
                }
                let row = format!(
                    "{:<16} {:>12} {:>5} {:>6} {:>10} {:>10.1} {:>9.1}",
                    format.to_string(),
                    format!("{n}x{k}"),
                    arith.name(),
                    wg_name,
                    t.gpu_us_median.map_or("-".into(), |v| format!("{v:.1}")),
                    t.wall_us_per_dispatch,
                    gbps
                );
                if json {
                    eprintln!("{row}");
                } else {
                    println!("{row}");
                }
            }
        }
    }
}
