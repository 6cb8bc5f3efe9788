//! GPU benchmark of the matmul kernels with GPU timestamps, for machines with a real GPU
//! (`scripts/gpu-bench`). Per GEMV shape and format: the copy-bandwidth anchor (a buffer-to-buffer
//! copy of the weights' size), then per kernel and arithmetic the kernel verdict of its output
//! against the CPU emulation, and the median GPU time of one dispatch over `WEBQ_BENCH_REPS`
//! (default 200) dispatches in one submission, twice: "hot" (one copy of the weights, which stays
//! in the GPU's cache when it fits) and "cold" (copies of the weights taken in turn, together far
//! larger than the cache: what memory delivers). GB/s count bytes of weights read; the copy's GB/s
//! count bytes read plus written, so `frac` (weight GB/s over copy GB/s) is the fraction of the
//! memory bandwidth a copy achieves; a second anchor, a WGSL kernel that only reads the same bytes
//! (`kernels/stream.wgsl`), is what a read-only kernel can get. `WEBQ_BENCH_KERNELS` picks kernels (`tuned`, `128x2`, `vec-64x4`, ...; see `GemvChoice`),
//! `WEBQ_BENCH_FORMATS` formats, `WEBQ_BENCH_GEMM=1` adds the GEMM 512x4096x4096 (`WEBQ_BENCH_GEMM_SHAPE`
//! another) and
//! `WEBQ_BENCH_ONLY=gemv|gemm` runs one of the two, `WEBQ_BENCH_ARITH=f32|f16` one arithmetic.
//! Prints a table on stderr and, with `--json`, JSON lines on stdout.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main()
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use webq_conformance::KernelTolerance;
    use webq_engine::reference::{emulate, Arith};
    use webq_engine::seeded;
    use webq_engine::webgpu::bench::{bench_formats, BenchWeights, GemvChoice, GEMM_SHAPE, GEMV_SHAPES};
    use webq_engine::webgpu::{Executor, ExecutorOptions, Prepared, Timings};

    /// `WEBQ_BENCH_ARITH=f32` or `f16` times one arithmetic only (CPU adapters run f16 slowly).
    fn arith_wanted(arith: Arith) -> bool {
        std::env::var("WEBQ_BENCH_ARITH").map_or(true, |a| a == arith.name())
    }

    fn us(t: &Timings) -> f64 {
        t.gpu_us_median.unwrap_or(t.wall_us_per_dispatch)
    }

    pub fn main() {
        let json = std::env::args().any(|a| a == "--json");
        let reps: usize = std::env::var("WEBQ_BENCH_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
        let exec = Executor::new(&ExecutorOptions::default()).unwrap_or_else(|e| {
            eprintln!("gpu_bench: {e}");
            std::process::exit(1)
        });
        let a = exec.adapter();
        eprintln!(
            "adapter: {} ({}, {} {}), timestamps {}, encoder timestamps {}, shader-f16 {}, {reps} dispatches a timing",
            a.name, a.backend, a.driver, a.driver_info, a.timestamps, a.encoder_timestamps, a.shader_f16
        );
        eprintln!(
            "{:<14} {:>10} {:<11} {:>4} {:>12} {:>8} {:>8} {:>7} {:>8} {:>5}",
            "format", "N x K", "kernel", "ari", "verdict", "hot us", "cold us", "GB/s", "copyGB/s", "frac"
        );
        let formats = bench_formats();
        let choices = GemvChoice::from_env();
        let only = std::env::var("WEBQ_BENCH_ONLY").unwrap_or_default();
        if only == "gemm" {
            return gemm(&exec, &formats, reps, json);
        }
        // `WEBQ_BENCH_SHAPES=8192x8192,...` (N x K) narrows the GEMV shapes.
        let shapes: Vec<(usize, usize)> = match std::env::var("WEBQ_BENCH_SHAPES") {
            Ok(v) => v
                .split(',')
                .filter_map(|s| s.trim().split_once('x'))
                .filter_map(|(n, k)| Some((n.parse().ok()?, k.parse().ok()?)))
                .collect(),
            Err(_) => GEMV_SHAPES.to_vec(),
        };
        for (n, k) in shapes {
            let w = seeded::weights(1, n, k);
            // Quantizing is the slow part on the CPU: every format at once.
            let all: Vec<BenchWeights> = std::thread::scope(|s| {
                let w = &w;
                let handles: Vec<_> =
                    formats.iter().map(|&f| s.spawn(move || BenchWeights::from_weights(f, (1, n, k), w))).collect();
                handles.into_iter().map(|h| h.join().expect("quantize")).collect()
            });
            for bw in &all {
                let format = bw.q.format;
                let copies = bw.cold_copies();
                let _ = pollster::block_on(exec.time_copy(bw.bytes, copies, reps));
                let copy = match pollster::block_on(exec.time_copy(bw.bytes, copies, reps)) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("{format} {n}x{k} copy: {e}");
                        continue;
                    }
                };
                let copy_gbps = 2.0 * bw.bytes as f64 / (us(&copy) * 1e3);
                let stream = match pollster::block_on(exec.time_stream(bw.bytes, copies, reps)) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("{format} {n}x{k} stream: {e}");
                        continue;
                    }
                };
                let stream_gbps = bw.bytes as f64 / (us(&stream) * 1e3);
                eprintln!(
                    "{format} {n}x{k}: {:.1} MB of weights; copy {:.1} us ({copy_gbps:.0} GB/s read+written), read-only kernel {:.1} us ({stream_gbps:.0} GB/s), {copies} copies in turn",
                    bw.bytes as f64 / 1e6,
                    us(&copy),
                    us(&stream)
                );
                for arith in [Arith::F32, Arith::F16] {
                    if !exec.supports(arith) || !arith_wanted(arith) {
                        continue;
                    }
                    let want = emulate(&bw.x, 1, &bw.q, arith);
                    let tol = match arith {
                        Arith::F32 => KernelTolerance::matmul_f32(),
                        Arith::F16 => KernelTolerance::matmul_f16(),
                    };
                    for choice in &choices {
                        let cell = format!("{format} {n}x{k} {choice} {}", arith.name());
                        let prepared: Result<Vec<Prepared>, _> =
                            (0..copies).map(|_| pollster::block_on(bw.prepare(&exec, *choice, arith))).collect();
                        let prepared = match prepared {
                            Ok(p) => p,
                            Err(e) => {
                                eprintln!("{cell}: {e}");
                                continue;
                            }
                        };
                        let verdict = match pollster::block_on(prepared[0].output()) {
                            Ok(y) => tol.judge(&y, &want.y, &want.abs_dot, k),
                            Err(e) => {
                                eprintln!("{cell}: {e}");
                                continue;
                            }
                        };
                        let refs: Vec<&Prepared> = prepared.iter().collect();
                        // A whole untimed batch before each timed one: the GPU's clocks drop while the
                        // CPU prepares the next cell, and a short warm-up leaves them low.
                        let timed = pollster::block_on(prepared[0].time(reps))
                            .and_then(|_| pollster::block_on(prepared[0].time(reps)))
                            .and_then(|hot| {
                                pollster::block_on(Prepared::time_round_robin(&refs, reps))?;
                                pollster::block_on(Prepared::time_round_robin(&refs, reps)).map(|cold| (hot, cold))
                            });
                        let (hot, cold) = match timed {
                            Ok(t) => t,
                            Err(e) => {
                                eprintln!("{cell}: {e}");
                                continue;
                            }
                        };
                        let gbps = bw.bytes as f64 / (us(&cold) * 1e3);
                        let verdict_text = if verdict.pass {
                            format!("pass {:.2}", verdict.worst_ratio)
                        } else {
                            format!("FAIL {:.1}", verdict.worst_ratio)
                        };
                        eprintln!(
                            "{:<14} {:>10} {:<11} {:>4} {:>12} {:>8.1} {:>8.1} {:>7.1} {:>8.1} {:>5.2}",
                            format.to_string(),
                            format!("{n}x{k}"),
                            choice.to_string(),
                            arith.name(),
                            verdict_text,
                            us(&hot),
                            us(&cold),
                            gbps,
                            copy_gbps,
                            gbps / copy_gbps
                        );
                        if json {
                            println!(
                                "{}",
                                serde_json::json!({"adapter": a.name, "driver": a.driver_info, "format": format.to_string(),
                                    "m": 1, "n": n, "k": k, "kernel": choice.to_string(), "arith": arith.name(),
                                    "verdict_pass": verdict.pass, "worst_ratio": verdict.worst_ratio,
                                    "hot_gpu_us_median": hot.gpu_us_median, "cold_gpu_us_median": cold.gpu_us_median,
                                    "cold_wall_us_per_dispatch": cold.wall_us_per_dispatch, "cold_copies": copies,
                                    "dispatches": cold.dispatches, "weight_bytes": bw.bytes, "weight_gbps": gbps,
                                    "copy_us_median": copy.gpu_us_median, "copy_gbps": copy_gbps,
                                    "stream_us_median": stream.gpu_us_median, "stream_gbps": stream_gbps,
                                    "fraction_of_stream": gbps / stream_gbps,
                                    "fraction_of_copy": gbps / copy_gbps})
                            );
                        }
                    }
                }
            }
        }
        if only != "gemv" && std::env::var("WEBQ_BENCH_GEMM").as_deref() == Ok("1") {
            gemm(&exec, &formats, reps, json);
        }
    }

    /// The GEMM prefill shape per format and arithmetic (timed hot; verdicts come from the test suite:
    /// emulating 512x4096x4096 on the CPU takes longer than the whole benchmark).
    fn gemm(exec: &Executor, formats: &[webq_engine::quant::QuantFormat], reps: usize, json: bool) {
        // `WEBQ_BENCH_GEMM_SHAPE=MxNxK` for adapters too slow for the prefill shape.
        let shape = std::env::var("WEBQ_BENCH_GEMM_SHAPE")
            .ok()
            .and_then(|v| {
                let d: Vec<usize> = v.split('x').filter_map(|s| s.trim().parse().ok()).collect();
                (d.len() == 3).then(|| (d[0], d[1], d[2]))
            })
            .unwrap_or(GEMM_SHAPE);
        let (m, n, k) = shape;
        for &format in formats {
            let bw = BenchWeights::new(format, shape);
            for arith in [Arith::F32, Arith::F16] {
                if !exec.supports(arith) {
                    continue;
                }
                let t = pollster::block_on(bw.prepare(exec, GemvChoice(None), arith)).and_then(|p| {
                    let _ = pollster::block_on(p.time(3));
                    pollster::block_on(p.time(reps))
                });
                match t {
                    Ok(t) => {
                        let tflops = 2.0 * (m * n * k) as f64 / (us(&t) * 1e6);
                        eprintln!(
                            "gemm {format} {m}x{n}x{k} {}: {:.1} us, {:.1} GFLOP/s",
                            arith.name(),
                            us(&t),
                            tflops * 1e3
                        );
                        if json {
                            println!(
                                "{}",
                                serde_json::json!({"format": format.to_string(), "m": m, "n": n, "k": k, "kernel": "gemm",
                                    "arith": arith.name(), "hot_gpu_us_median": t.gpu_us_median, "tflops": tflops})
                            );
                        }
                    }
                    Err(e) => eprintln!("gemm {format} {}: {e}", arith.name()),
                }
            }
        }
    }
}
