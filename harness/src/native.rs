//! The `native` runtime: cells on wgpu directly (Vulkan; lavapipe here, a real GPU where there is one).
//! References are computed here, on the CPU, never by the backend under test.

use std::panic::{catch_unwind, AssertUnwindSafe};

use webq_engine::cpu;
use webq_engine::platform::fallback::matmul_with_fallback;
use webq_engine::protocol::{CellBackend, ErrorClass, ModelSpec};
use webq_engine::reference::Arith;
use webq_engine::seeded;
use webq_engine::webgpu::{Executor, ExecutorOptions, GemvKernel, GpuError, TuningTable};

use crate::cell::Cell;
use crate::model_cells::{self, FileAt};
use crate::model_verdict::{judge_model, judge_transcripts, output_digest};
use crate::results::{CellRecord, Environment, RunDetail, Status};
use crate::runner::CellRunner;
use crate::verdict::{judge, RawTimings, References};
use webq_engine::models::bench::BenchRequest;
use webq_engine::models::exec::CpuExec;
use webq_engine::models::gpu::GpuBackend;
use webq_engine::models::linear::ModelPrecision;
use webq_engine::models::run::{run_model, run_model_traced};
use webq_engine::models::ModelError;

/// The output with the cell's planted defect, if it has one.
fn planted(cell: &Cell, mut y: Vec<f32>) -> Vec<f32> {
    if let Some(p) = cell.plant {
        p.apply(&mut y);
    }
    y
}

pub struct NativeRunner {
    executor: Option<Executor>,
    /// Why there is no executor (recorded as the `unsupported` reason of every cell).
    missing: Option<String>,
    tuning: TuningTable,
    reps: usize,
    /// Model cells' warm inferences.
    bench: BenchRequest,
    /// Trace model cells (`webq run --trace`).
    pub trace: bool,
    /// Inputs and references of the last cell, reused by its neighbours.
    prepared: Option<References>,
}

impl NativeRunner {
    pub fn new(reps: usize, bench: BenchRequest) -> Self {
        let tuning = TuningTable::seed();
        let mut r = NativeRunner { executor: None, missing: None, tuning, reps, bench, trace: false, prepared: None };
        r.connect();
        r
    }

    fn connect(&mut self) {
        match Executor::new(&ExecutorOptions::default()) {
            Ok(e) => {
                self.executor = Some(e);
                self.missing = None;
            }
            Err(e) => {
                self.executor = None;
                self.missing = Some(format!("{e} (is mesa-vulkan-drivers installed? scripts/setup installs it)"));
            }
        }
    }

    pub fn adapter_environment(&self) -> Environment {
        let a = self.executor.as_ref().map(|e| e.adapter());
        Environment {
            runtime: "native".into(),
            adapter: a.map(|a| a.name.clone()),
            driver: a.map(|a| format!("{} {}", a.driver, a.driver_info).trim().to_string()),
            graphics_api: a.map(|a| a.backend.clone()),
            shader_f16: a.map(|a| a.shader_f16),
            user_agent: None,
        }
    }

    pub fn adapter_json(&self) -> serde_json::Value {
        self.executor
            .as_ref()
            .map_or(serde_json::Value::Null, |e| serde_json::to_value(e.adapter()).unwrap_or_default())
    }
}

impl CellRunner for NativeRunner {
    fn runtime(&self) -> webq_engine::protocol::Runtime {
        webq_engine::protocol::Runtime::Native
    }

    fn environment(&self) -> Environment {
        self.adapter_environment()
    }

    /// A cell that panics is recorded as a crash, and the executor is opened anew for the next one.
    async fn run(&mut self, cell: &Cell, rec: CellRecord) -> CellRecord {
        let base = rec.clone();
        let mut prepared = self.prepared.take();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.run_cell(cell, &mut prepared, rec)));
        match outcome {
            Ok(r) => {
                self.prepared = prepared;
                r
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                self.connect();
                CellRecord { status: Status::Crash, reason: Some(msg), error_class: Some(ErrorClass::Crash), ..base }
            }
        }
    }
}

impl NativeRunner {
    /// The tuning table's GEMV for this adapter and family, as the device can run it.
    fn tuned(&self, exec: &Executor, family: Option<&str>) -> GemvKernel {
        let adapter = exec.adapter();
        self.tuning.pick("native", &adapter.name, family).runnable(adapter.subgroups)
    }

    fn run_cell(&mut self, cell: &Cell, prepared: &mut Option<References>, mut rec: CellRecord) -> CellRecord {
        if cell.model.is_some() {
            return self.run_model_cell(cell, rec);
        }
        match cell.backend {
            CellBackend::Webgpu if cell.memory_cap.is_some() => return self.run_capped(cell, prepared, rec),
            CellBackend::Webgpu => {}
            CellBackend::Wasm => return self.run_cpu(cell, prepared, rec),
            other => {
                rec.status = Status::Unsupported;
                rec.error_class = Some(ErrorClass::Unsupported);
                rec.reason = Some(format!("`{other}` runs in browser pages only"));
                return rec;
            }
        }
        let Some(format) = cell.format() else {
            rec.reason = Some(format!("unknown precision {}", cell.precision));
            return rec;
        };
        let Some(exec) = self.executor.as_ref() else {
            rec.status = Status::Unsupported;
            rec.reason = self.missing.clone();
            rec.error_class = Some(ErrorClass::NoAdapter);
            return rec;
        };
        if !exec.supports(cell.arith) {
            rec.status = Status::Unsupported;
            rec.reason = Some("the adapter has no shader-f16 feature".into());
            rec.error_class = Some(ErrorClass::MissingFeature);
            return rec;
        }
        let p = match References::for_cell(prepared, cell, format) {
            Ok(p) => p,
            Err(e) => {
                rec.reason = Some(e);
                rec.error_class = Some(ErrorClass::BadInput);
                return rec;
            }
        };
        // The table's rows are GEMV kernels; a GEMM cell runs what `variant` makes of the adapter's row
        // (`gemm-vec` on the CPU adapters), as a model's prefill does.
        let kernel = cell.workgroup.unwrap_or_else(|| self.tuned(exec, None));
        let variant = kernel.variant(cell.m, cell.n, cell.k, Some(&format), cell.arith);
        rec.workgroup = Some(GemvKernel::ran(&variant));
        let reps = self.reps;
        let run = pollster::block_on(async {
            let prep = exec.prepare(&p.x, cell.m, &p.q, variant).await?;
            let y = prep.output().await?;
            let t = prep.time(reps).await?;
            Ok::<_, GpuError>((y, t, prep.compile_ms, prep.upload_ms))
        });
        let (y, t, compile_ms, upload_ms) = match run {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, GpuError::DeviceLost(_)) {
                    // A lost device stays lost: the next cell opens a new one.
                    self.connect();
                }
                rec.status = if matches!(e, GpuError::MissingFeature(_)) { Status::Unsupported } else { Status::Error };
                rec.error_class = Some(e.class());
                rec.reason = Some(e.to_string());
                rec.detail = Some(RunDetail::default().classify(&e.to_string()));
                return rec;
            }
        };
        let t = RawTimings {
            compile_ms,
            upload_ms,
            dispatches: t.dispatches,
            wall_us: t.wall_us_per_dispatch,
            gpu_us: t.gpu_us_median,
        };
        judge(cell, p, &planted(cell, y), t, &mut rec);
        rec
    }

    /// The CPU kernels (the `wasm` backend's code, built natively: scalar dot products).
    fn run_cpu(&mut self, cell: &Cell, prepared: &mut Option<References>, mut rec: CellRecord) -> CellRecord {
        if cell.arith == Arith::F16 {
            rec.status = Status::Unsupported;
            rec.error_class = Some(ErrorClass::Unsupported);
            rec.reason = Some("f16 arithmetic: unsupported data type for the wasm backend (it computes in f32)".into());
            return rec;
        }
        let Some(p) = cell.format().and_then(|f| References::for_cell(prepared, cell, f).ok()) else {
            rec.reason = Some(format!("cannot quantize {} for this shape", cell.precision));
            return rec;
        };
        let y = cpu::matmul(&p.x, cell.m, &p.q);
        let reps = self.reps;
        let start = std::time::Instant::now();
        for _ in 0..reps {
            std::hint::black_box(cpu::matmul(&p.x, cell.m, &p.q));
        }
        let wall_us = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
        rec.detail = Some(RunDetail { dot_path: Some(cpu::dot_path().into()), ..Default::default() });
        let t = RawTimings { compile_ms: None, upload_ms: 0.0, dispatches: reps, wall_us, gpu_us: None };
        judge(cell, p, &planted(cell, y), t, &mut rec);
        rec
    }

    /// WebGPU on a device asked for at most `memory_cap` bytes a buffer and binding, with the
    /// out-of-memory fallback: what ran is judged against references of the format that fitted.
    fn run_capped(&mut self, cell: &Cell, prepared: &mut Option<References>, mut rec: CellRecord) -> CellRecord {
        let cap = cell.memory_cap.expect("checked by the caller");
        let (Some(format), Some(base)) = (cell.format(), self.executor.as_ref()) else {
            rec.status = Status::Unsupported;
            rec.reason = self.missing.clone().or(Some(format!("unknown precision {}", cell.precision)));
            return rec;
        };
        let kernel = cell.workgroup.unwrap_or_else(|| self.tuned(base, None));
        // The fallback may step the format down: the vector kernel only where every format can take K.
        let variant = kernel.variant(cell.m, cell.n, cell.k, None, cell.arith);
        rec.workgroup = Some(GemvKernel::ran(&variant));
        let exec = match Executor::new(&ExecutorOptions { memory_cap: Some(cap), ..Default::default() }) {
            Ok(e) => e,
            Err(e) => {
                rec.error_class = Some(e.class());
                rec.reason = Some(e.to_string());
                return rec;
            }
        };
        let w = seeded::weights(cell.seed, cell.n, cell.k);
        let x = seeded::activations(cell.seed, cell.m, cell.k);
        let outcome = pollster::block_on(matmul_with_fallback(
            &exec,
            &w,
            cell.n,
            cell.k,
            &x,
            cell.m,
            format,
            cell.quantizer,
            variant,
        ));
        let mut detail = RunDetail::default();
        match outcome {
            Ok(f) => {
                detail.notes.extend(f.note(format));
                detail.fallback_steps = f.steps;
                detail.precision = Some(f.format.to_string());
                rec.detail = Some(detail);
                let Ok(p) = References::for_cell(prepared, cell, f.format) else {
                    rec.reason = Some(format!("cannot quantize {} for this shape", f.format));
                    return rec;
                };
                let t = RawTimings {
                    compile_ms: f.run.compile_ms,
                    upload_ms: f.run.upload_ms,
                    dispatches: f.run.timings.dispatches,
                    wall_us: f.run.timings.wall_us_per_dispatch,
                    gpu_us: f.run.timings.gpu_us_median,
                };
                judge(cell, p, &planted(cell, f.run.y), t, &mut rec);
            }
            Err((steps, e)) => {
                detail.fallback_steps = steps;
                rec.detail = Some(detail.classify(&e.to_string()));
                rec.error_class = Some(e.class());
                rec.reason = Some(e.to_string());
            }
        }
        rec
    }
}

impl NativeRunner {
    /// A model cell natively: the CPU path (the `wasm` backend's code, threaded) or every op in
    /// WGSL on the adapter (`webgpu`), judged against the references (the emulated quantized model
    /// and the fp16 model).
    fn run_model_cell(&mut self, cell: &Cell, mut rec: CellRecord) -> CellRecord {
        let prepared = (|| {
            let mut spec = model_cells::spec(cell, FileAt::Native)?;
            spec.bench = self.bench;
            spec.progressive = true;
            spec.trace = self.trace;
            let bytes = model_cells::weights(cell)?;
            let (precision, _) = model_cells::precision(cell)?;
            let refs = model_cells::references(cell)?;
            Ok::<_, String>((spec, bytes, precision, refs))
        })();
        let (spec, bytes, precision, refs) = match prepared {
            Ok(p) => p,
            Err(e) => {
                rec.error_class = Some(ErrorClass::BadInput);
                rec.reason = Some(e);
                return rec;
            }
        };
        if cell.backend.is_webnn() || cell.backend == CellBackend::Auto {
            rec.status = Status::Unsupported;
            rec.error_class = Some(ErrorClass::Unsupported);
            rec.reason = Some(format!("`{}` runs in browser pages only", cell.backend));
            return rec;
        }
        let mut detail = RunDetail::default();
        let run = match cell.backend {
            CellBackend::Webgpu => {
                let Some(exec) = self.executor.as_ref() else {
                    rec.status = Status::Unsupported;
                    rec.reason = self.missing.clone();
                    rec.error_class = Some(ErrorClass::NoAdapter);
                    return rec;
                };
                let family = cell.model.as_ref().map(|m| m.family.name());
                let gemv = cell.workgroup.unwrap_or_else(|| self.tuned(exec, family));
                rec.workgroup = Some(gemv.to_string());
                pollster::block_on(run_model_traced(&spec, &bytes, &precision, &mut GpuBackend::new(exec, gemv)))
            }
            _ => {
                detail.dot_path = Some(cpu::dot_path().into());
                pollster::block_on(run_model_traced(&spec, &bytes, &precision, &mut CpuExec::default()))
            }
        };
        let (run, trace) = run;
        rec.trace = trace;
        let run = match run {
            Ok(r) => r,
            Err(e) => {
                rec.error_class = Some(if matches!(e, ModelError::Backend { .. }) {
                    ErrorClass::Dispatch
                } else {
                    ErrorClass::BadInput
                });
                rec.reason = Some(e.to_string());
                return rec;
            }
        };
        detail.notes.push(format!("load and quantize {:.1} ms; {}", run.load_us / 1e3, run.speed));
        rec.detail = Some(detail);
        rec.bench = Some(run.bench);
        let t = RawTimings {
            compile_ms: None,
            upload_ms: run.load_us / 1e3,
            dispatches: 1,
            wall_us: run.run_us,
            gpu_us: None,
        };
        judge_model(cell, &refs, &planted(cell, run.y), t, &mut rec);
        judge_transcripts(cell, &refs, &run.transcripts, &mut rec);
        if cell.backend == CellBackend::Wasm {
            fused_twin(cell, &spec, &bytes, &precision, &mut rec);
        }
        rec
    }
}

/// The digest of the CPU path's output with fused sums: the native twin of the page's relaxed-simd
/// bundle in an engine that fuses, which [`crate::model_verdict::wasm_divergences`] holds its cells
/// to. Runs the model once more, untimed and untraced; a twin that fails is a reason, not a pass.
fn fused_twin(cell: &Cell, spec: &ModelSpec, bytes: &[u8], precision: &ModelPrecision, rec: &mut CellRecord) {
    let Some(model) = rec.model.as_mut() else { return };
    let twin = ModelSpec { bench: BenchRequest::default(), trace: false, ..spec.clone() };
    let mut exec = CpuExec { summation: cpu::Summation::Fused, ..CpuExec::default() };
    match pollster::block_on(run_model(&twin, bytes, precision, &mut exec)) {
        Ok(run) => model.fused_output_digest = output_digest(&planted(cell, run.y)),
        Err(e) => {
            rec.status = Status::Fail;
            let why = format!("the fused-sum twin failed: {e}");
            rec.reason = Some(rec.reason.take().map_or(why.clone(), |r| format!("{r}; {why}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::ModelCell;
    use webq_engine::platform::selection::Family;
    use webq_engine::protocol::Runtime;

    /// `--trace` natively: a model cell in WGSL records every op with its tensor, the WGSL of the
    /// pipelines it created and its weights arriving on the device; untraced, it records nothing.
    #[test]
    fn a_traced_model_cell_records_its_ops_shaders_and_memory() {
        if crate::models::cached_file(&crate::models::PACKAGES[0], 0).is_none() {
            return;
        }
        let mut cell = crate::cell::test_cell(Runtime::Native, CellBackend::Webgpu, "int8-pc-sym", 0, 0);
        cell.model = Some(ModelCell::new(Family::Text, Some(1), Some(2), 0, 0));
        let mut runner = NativeRunner::new(1, BenchRequest::default());
        if runner.executor.is_none() {
            return crate::browsers::skip_without_browsers("needs a Vulkan adapter (lavapipe)");
        }
        runner.trace = true;
        let blank = || crate::verdict::blank_record(&cell, "t", "t", Environment::default());
        let rec = runner.run_model_cell(&cell, blank());
        assert_eq!(rec.status, Status::Pass, "{:?}", rec.reason);
        let t = rec.trace.expect("a traced cell has a trace");
        let linears: Vec<&str> = t.ops.iter().filter(|e| e.op == "linear").map(|e| e.on.as_str()).collect();
        assert_eq!(linears.len(), 6, "one layer's six matrices: {linears:?}");
        assert!(linears[0].starts_with("encoder.layer.0.attention.self.query m="), "{linears:?}");
        assert!(t.ops.iter().any(|e| e.op == "attention") && t.ops.iter().any(|e| e.op == "preload"));
        assert!(
            !t.shaders.is_empty() && t.shaders.iter().all(|s| s.source.contains("@compute")),
            "{:?}",
            t.shaders.len()
        );
        // Every op that dispatched was timed on the device where it has timestamp queries
        // (lavapipe has), within the op's wall time; an upload dispatches nothing.
        let timestamps = runner.executor.as_ref().expect("checked above").adapter().timestamps;
        for e in &t.ops {
            match (e.op.as_str(), e.gpu_ms) {
                ("preload", g) => assert_eq!(g, None, "{e:?}"),
                (_, Some(g)) => assert!(timestamps && g > 0.0 && g <= e.ms, "{e:?}"),
                (_, None) => assert!(!timestamps, "{e:?} has no device time on an adapter with timestamps"),
            }
        }
        assert!(t.gpu_ms().is_some() == timestamps, "{:?}", t.gpu_ms());
        let last = t.memory.last().expect("a memory log");
        assert!(last.device_weight_bytes.is_some_and(|b| b > 0), "{last:?}");
        assert!(t.errors.is_empty(), "{:?}", t.errors);
        runner.trace = false;
        assert!(runner.run_model_cell(&cell, blank()).trace.is_none());
    }
}
