//! The wgpu executor: a device from the adapter's real features and limits, pipelines compiled once
//! per (kernel, format, variant) and cached, error scopes that turn failures into [`GpuError`]s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use web_time::Instant;

use serde::{Deserialize, Serialize};
use wgpu::util::DeviceExt;

use super::completion::completion;
use super::error::GpuError;
use super::kernel::{
    gemm_vec_fits, gemv_vec_tile, pipeline_constants, shader_source, KernelKind, KernelVariant, Workgroup,
};
use super::timing::TimestampQueries;
use crate::quant::{QuantFormat, QuantizedMatrix};
use crate::reference::Arith;

#[derive(Clone, Debug, Default)]
pub struct ExecutorOptions {
    /// Limits to ask for instead of the adapter's own (smaller ones provoke out-of-memory errors).
    pub limits: Option<wgpu::Limits>,
    /// Leave out `shader-f16` even where the adapter has it.
    pub no_f16: bool,
    /// Ask for at most this many bytes a buffer and a storage binding, keeping the adapter's other
    /// limits (how a test makes a large format fail for real; browsers may raise it to the default).
    pub memory_cap: Option<u64>,
}

/// What the adapter is and can do, as results record it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterSummary {
    pub name: String,
    pub vendor: u32,
    pub device: u32,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub backend: String,
    pub shader_f16: bool,
    pub timestamps: bool,
    /// Subgroup operations in compute shaders (`gemv-vec-sg`); wgpu asks for them natively only.
    #[serde(default)]
    pub subgroups: bool,
    /// Timestamps between commands of an encoder (copies can be timed).
    #[serde(default)]
    pub encoder_timestamps: bool,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
}

impl AdapterSummary {
    /// A fallback adapter: software on the CPU (wgpu's `DeviceType::Cpu`, which its WebGPU backend
    /// gives where the browser says `isFallbackAdapter`).
    pub fn is_fallback(&self) -> bool {
        self.device_type == format!("{:?}", wgpu::DeviceType::Cpu)
    }
}

type PipelineKey = (KernelVariant, QuantFormat, Option<&'static str>);

pub struct Executor {
    pub(super) device: wgpu::Device,
    pub(super) queue: wgpu::Queue,
    pub(super) summary: AdapterSummary,
    pub(super) bind_layout: wgpu::BindGroupLayout,
    pub(super) pipeline_layout: wgpu::PipelineLayout,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    /// The model ops' pipelines (`model_ops.wgsl`), by entry point.
    pub(super) op_pipelines: Mutex<HashMap<(&'static str, Arith), Arc<wgpu::ComputePipeline>>>,
    /// Pipelines compiled over the executor's life and the milliseconds they took (a model
    /// cell's benchmark reads what its first inference added).
    compiled: Mutex<(usize, f64)>,
    /// Every pipeline compiled, with its WGSL, in order (a traced cell keeps those it added).
    shaders: Mutex<Vec<crate::models::trace::ShaderEntry>>,
}

/// Timings of repeated dispatches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub dispatches: usize,
    /// Wall time of all dispatches in one submission, divided by their number.
    pub wall_us_per_dispatch: f64,
    /// Median GPU time of one dispatch from timestamp queries, where the adapter has them.
    pub gpu_us_median: Option<f64>,
}

/// One matmul run: the output and what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct MatmulRun {
    pub y: Vec<f32>,
    /// Pipeline compile time, when this run compiled it (`None`: it came from the cache).
    pub compile_ms: Option<f64>,
    pub upload_ms: f64,
    pub timings: Timings,
}

impl Executor {
    /// Opens the first adapter wgpu finds, blocking (native only; WGPU_BACKEND and friends are honoured).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(opts: &ExecutorOptions) -> Result<Self, GpuError> {
        pollster::block_on(Self::open(opts))
    }

    /// Opens the first adapter: the browser's WebGPU on wasm32, Vulkan/Metal/DX12 natively.
    pub async fn open(opts: &ExecutorOptions) -> Result<Self, GpuError> {
        let adapter = request_adapter().await?;
        let (device, queue, features) = request_device(&adapter, opts).await?;
        let summary = summarize(&adapter.get_info(), features, &device.limits());
        let (bind_layout, pipeline_layout) = matmul_layouts(&device);
        Ok(Executor {
            device,
            queue,
            summary,
            bind_layout,
            pipeline_layout,
            pipelines: Mutex::new(HashMap::new()),
            op_pipelines: Mutex::new(HashMap::new()),
            compiled: Mutex::new((0, 0.0)),
            shaders: Mutex::new(Vec::new()),
        })
    }

    pub fn adapter(&self) -> &AdapterSummary {
        &self.summary
    }

    /// Whether kernels with this arithmetic can run here.
    /// Pipelines compiled so far, and the milliseconds they took.
    pub fn compiled(&self) -> (usize, f64) {
        *self.compiled.lock().expect("compile count")
    }

    pub(super) fn count_compiled(&self, label: &str, entry_point: &str, source: &str, ms: f64) {
        let mut c = self.compiled.lock().expect("compile count");
        *c = (c.0 + 1, c.1 + ms);
        self.shaders.lock().expect("shader log").push(crate::models::trace::ShaderEntry {
            label: label.into(),
            entry_point: entry_point.into(),
            ms,
            source: source.into(),
        });
    }

    /// The pipelines compiled after the first `from` (see [`Executor::compiled`]), with their WGSL.
    pub fn compiled_shaders(&self, from: usize) -> Vec<crate::models::trace::ShaderEntry> {
        self.shaders.lock().expect("shader log").iter().skip(from).cloned().collect()
    }

    pub fn supports(&self, arith: Arith) -> bool {
        arith == Arith::F32 || self.summary.shader_f16
    }

    /// The pipeline of a kernel, compiled on first use (shader precompilation: callers may warm the
    /// cache before timing). Returns the compile time when this call compiled it.
    pub(super) async fn pipeline(
        &self,
        variant: KernelVariant,
        format: QuantFormat,
        planted: Option<(&'static str, String)>,
    ) -> Result<(Arc<wgpu::ComputePipeline>, Option<f64>), GpuError> {
        if !self.supports(variant.arith) {
            return Err(GpuError::MissingFeature("shader-f16"));
        }
        if variant.kind == KernelKind::GemvVecSg && !self.summary.subgroups {
            return Err(GpuError::MissingFeature("subgroups (gemv-vec-sg)"));
        }
        let key = (variant, format, planted.as_ref().map(|(id, _)| *id));
        if let Some(p) = self.pipelines.lock().expect("pipeline cache").get(&key) {
            return Ok((p.clone(), None));
        }
        let source = match planted {
            Some((_, source)) => source,
            None => shader_source(&variant),
        };
        let start = Instant::now();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(variant.kind.name()),
            source: wgpu::ShaderSource::Wgsl(source.as_str().into()),
        });
        let constants = pipeline_constants(&format, &variant);
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(variant.kind.name()),
            layout: Some(&self.pipeline_layout),
            module: &module,
            entry_point: Some(variant.kind.entry_point()),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = scope.pop().await {
            return Err(GpuError::Compile(e.to_string()));
        }
        let ms = start.elapsed().as_secs_f64() * 1e3;
        self.count_compiled(&format!("{} {format}", variant.kind.name()), variant.kind.entry_point(), &source, ms);
        let pipeline = Arc::new(pipeline);
        self.pipelines.lock().expect("pipeline cache").insert(key, pipeline.clone());
        Ok((pipeline, Some(ms)))
    }

    /// A storage buffer holding `bytes`. Zero-length bindings are invalid (an unused buffer,
    /// symmetric zero points, gets zeros), and kernels that read vec4s need whole 16-byte elements:
    /// padded to a multiple of 16 bytes (a copy only where padding is needed; weights usually need none).
    pub(super) fn storage_buffer(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        let padded = bytes.len().max(1).next_multiple_of(16);
        let contents: std::borrow::Cow<[u8]> = if bytes.len() == padded {
            bytes.into()
        } else {
            let mut v = bytes.to_vec();
            v.resize(padded, 0);
            v.into()
        };
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &contents,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        })
    }

    pub(super) fn check_size(&self, what: &'static str, bytes: usize) -> Result<(), GpuError> {
        let limit = self.summary.max_storage_buffer_binding_size.min(self.summary.max_buffer_size);
        if bytes as u64 > limit {
            return Err(GpuError::TooLarge { what, bytes: bytes as u64, limit });
        }
        Ok(())
    }

    /// Uploads a quantized weight and activations and builds everything one kernel needs.
    pub async fn prepare(
        &self,
        x: &[f32],
        m: usize,
        q: &QuantizedMatrix,
        variant: KernelVariant,
    ) -> Result<Prepared<'_>, GpuError> {
        self.prepare_inner(x, m, q, variant, None).await
    }

    /// As [`Executor::prepare`], with a planted fault's source.
    #[cfg(any(test, feature = "planted-faults"))]
    pub async fn prepare_faulty(
        &self,
        x: &[f32],
        m: usize,
        q: &QuantizedMatrix,
        variant: KernelVariant,
        fault: &'static super::faults::Fault,
    ) -> Result<Prepared<'_>, GpuError> {
        let source = fault.source(&variant).map_err(GpuError::Compile)?;
        self.prepare_inner(x, m, q, variant, Some((fault.id, source))).await
    }

    async fn prepare_inner(
        &self,
        x: &[f32],
        m: usize,
        q: &QuantizedMatrix,
        variant: KernelVariant,
        planted: Option<(&'static str, String)>,
    ) -> Result<Prepared<'_>, GpuError> {
        assert_eq!(x.len(), m * q.k, "activations are m x k");
        if variant.kind.is_gemv_vec() {
            let tile = gemv_vec_tile(&q.format);
            let wg = variant.workgroup;
            if q.k % tile != 0 || wg.y > 8 || wg.x < wg.y || !wg.x.is_power_of_two() || wg.x > 256 {
                return Err(GpuError::Shape(format!(
                    "gemv-vec needs K a multiple of {tile} for {} (K is {}), a power-of-two workgroup of at most 256 threads and at most 8 rows, at least as many threads as rows (asked {wg})",
                    q.format, q.k
                )));
            }
        }
        if variant.kind == KernelKind::GemmVec && !gemm_vec_fits(&q.format, q.k) {
            return Err(GpuError::Shape(format!(
                "gemm-vec needs 2-, 4- or 8-bit weights and K a multiple of 32 (asked {} with K {})",
                q.format, q.k
            )));
        }
        if variant.kind == KernelKind::GemmVec && !variant.workgroup.is_gemm_vec_block() {
            return Err(GpuError::Shape(format!(
                "gemm-vec needs {} (asked {})",
                Workgroup::gemm_vec_blocks(),
                variant.workgroup
            )));
        }
        let (pipeline, compile_ms) = self.pipeline(variant, q.format, planted).await?;
        let start = Instant::now();
        let scales = q.scale_bytes();
        let zeros = q.zero_bytes();
        let y_bytes = (m * q.n * 4) as u64;
        for (what, len) in [("packed weights", q.codes.len()), ("scales", scales.len()), ("activations", x.len() * 4)] {
            self.check_size(what, len)?;
        }
        self.check_size("output", y_bytes as usize)?;
        let scope_oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let scope_val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let storage = |label: &str, bytes: &[u8]| self.storage_buffer(label, bytes);
        let groups_per_row = if q.format == QuantFormat::F16 { 1 } else { q.groups_per_row() };
        let params: [u32; 8] =
            [m as u32, q.n as u32, q.k as u32, (q.row_stride / 4) as u32, groups_per_row as u32, 0, 0, 0];
        let params = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::cast_slice(&params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let codes = storage("codes", &q.codes);
        let scales = storage("scales", &scales);
        let zeros = storage("zeros", &zeros);
        let xb = storage("x", bytemuck::cast_slice(x));
        let y = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("y"),
            size: y_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("y staging"),
            size: y_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("webq matmul"),
            layout: &self.bind_layout,
            entries: &[&params, &codes, &scales, &zeros, &xb, &y]
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
                .collect::<Vec<_>>(),
        });
        if let Some(e) = scope_val.pop().await {
            return Err(GpuError::Validation(e.to_string()));
        }
        if let Some(e) = scope_oom.pop().await {
            return Err(GpuError::OutOfMemory(e.to_string()));
        }
        self.settle().await?;
        let upload_ms = start.elapsed().as_secs_f64() * 1e3;
        let groups = variant.groups(m, q.n);
        Ok(Prepared { exec: self, pipeline, bind, y, staging, y_bytes, groups, compile_ms, upload_ms })
    }

    /// Resolves when all submitted work is done, natively and in a browser.
    pub(super) async fn settle(&self) -> Result<(), GpuError> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        completion(&self.device, &self.queue, rx, || {
            GpuError::DeviceLost("the queue dropped its work-done callback".into())
        })
        .await
    }

    /// Quantized matmul `x (m x k) * q^T`: compile (or reuse), upload, read the output of one
    /// dispatch back, then time `reps` dispatches.
    pub async fn matmul(
        &self,
        x: &[f32],
        m: usize,
        q: &QuantizedMatrix,
        variant: KernelVariant,
        reps: usize,
    ) -> Result<MatmulRun, GpuError> {
        let p = self.prepare(x, m, q, variant).await?;
        p.finish(reps).await
    }
}

/// The adapter: Vulkan (and whatever the environment allows) natively, the browser's WebGPU on wasm32.
async fn request_adapter() -> Result<wgpu::Adapter, GpuError> {
    #[cfg(not(target_arch = "wasm32"))]
    let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    #[cfg(target_arch = "wasm32")]
    let desc = wgpu::InstanceDescriptor {
        backends: wgpu::Backends::BROWSER_WEBGPU,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    };
    wgpu::Instance::new(desc)
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        })
        .await
        .map_err(|e| GpuError::NoAdapter(e.to_string()))
}

/// A device with shader-f16, timestamps and subgroups where the adapter has them (f16 unless `no_f16`), the
/// adapter's limits (or the options'), capped at `memory_cap` a buffer and binding.
async fn request_device(
    adapter: &wgpu::Adapter,
    opts: &ExecutorOptions,
) -> Result<(wgpu::Device, wgpu::Queue, wgpu::Features), GpuError> {
    let available = adapter.features();
    let mut features = wgpu::Features::empty();
    // Timestamps inside encoders time buffer copies (the copy-bandwidth anchor of the benchmarks).
    for f in [
        wgpu::Features::SHADER_F16,
        wgpu::Features::TIMESTAMP_QUERY,
        wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
        wgpu::Features::SUBGROUP,
    ] {
        if available.contains(f) && !(opts.no_f16 && f == wgpu::Features::SHADER_F16) {
            features |= f;
        }
    }
    let mut limits = opts.limits.clone().unwrap_or_else(|| adapter.limits());
    if let Some(cap) = opts.memory_cap {
        limits.max_buffer_size = limits.max_buffer_size.min(cap);
        limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(cap);
    }
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("webq"),
            required_features: features,
            required_limits: limits,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        })
        .await
        .map_err(|e| GpuError::Device(e.to_string()))?;
    Ok((device, queue, features))
}

/// What results record of the adapter, with the limits the device really got (a browser may raise
/// a limit asked below its default).
fn summarize(info: &wgpu::AdapterInfo, features: wgpu::Features, limits: &wgpu::Limits) -> AdapterSummary {
    AdapterSummary {
        name: info.name.clone(),
        vendor: info.vendor,
        device: info.device,
        device_type: format!("{:?}", info.device_type),
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
        backend: format!("{:?}", info.backend),
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
        timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        subgroups: features.contains(wgpu::Features::SUBGROUP),
        encoder_timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS),
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
    }
}

/// The one bind group layout of every matmul kernel (parameters, activations, codes, scales, zero
/// points, output) and its pipeline layout.
fn matmul_layouts(device: &wgpu::Device) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
    let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let bind_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("webq matmul"),
        entries: &[
            wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            },
            storage(1, true),
            storage(2, true),
            storage(3, true),
            storage(4, true),
            storage(5, false),
        ],
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("webq matmul"),
        bind_group_layouts: &[Some(&bind_layout)],
        immediate_size: 0,
    });
    (bind_layout, pipeline_layout)
}

/// Everything one kernel needs, uploaded: dispatch it as often as you like.
pub struct Prepared<'e> {
    exec: &'e Executor,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind: wgpu::BindGroup,
    y: wgpu::Buffer,
    staging: wgpu::Buffer,
    y_bytes: u64,
    groups: (u32, u32, u32),
    pub compile_ms: Option<f64>,
    pub upload_ms: f64,
}

impl Prepared<'_> {
    fn encode(&self, encoder: &mut wgpu::CommandEncoder, timestamps: Option<(&TimestampQueries, u32)>) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("webq matmul"),
            timestamp_writes: timestamps.map(|(q, i)| q.pass_writes(i)),
        });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        pass.dispatch_workgroups(self.groups.0, self.groups.1, self.groups.2);
    }

    /// One dispatch, waited for (what a benchmark iteration measures).
    pub async fn dispatch_and_wait(&self) -> Result<(), GpuError> {
        let mut enc = self.exec.device.create_command_encoder(&Default::default());
        self.encode(&mut enc, None);
        self.exec.queue.submit([enc.finish()]);
        self.exec.settle().await
    }

    /// `reps` dispatches in one submission, with a timestamp pair around each where available.
    pub async fn time(&self, reps: usize) -> Result<Timings, GpuError> {
        Self::time_round_robin(&[self], reps).await
    }

    /// `reps` dispatches in one submission, taking the kernels in turn: copies of the same weights in
    /// separate buffers whose total exceeds the GPU's cache time what memory delivers, not the cache.
    ///
    /// # Panics
    /// When `kernels` is empty.
    pub async fn time_round_robin(kernels: &[&Self], reps: usize) -> Result<Timings, GpuError> {
        let first = kernels.first().expect("at least one kernel");
        let reps = reps.max(1);
        let query = first.exec.timestamp_queries(reps, first.exec.summary.timestamps);
        let mut enc = first.exec.device.create_command_encoder(&Default::default());
        for i in 0..reps {
            kernels[i % kernels.len()].encode(&mut enc, query.as_ref().map(|q| (q, i as u32)));
        }
        first.exec.run_timed(enc, query, reps).await
    }

    async fn read(&self, buffer: &wgpu::Buffer) -> Result<Vec<u8>, GpuError> {
        self.exec.read_buffer(buffer).await
    }

    /// Runs once and reads the output back.
    pub async fn output(&self) -> Result<Vec<f32>, GpuError> {
        let mut enc = self.exec.device.create_command_encoder(&Default::default());
        self.encode(&mut enc, None);
        enc.copy_buffer_to_buffer(&self.y, 0, &self.staging, 0, self.y_bytes);
        self.exec.queue.submit([enc.finish()]);
        Ok(bytemuck::cast_slice(&self.read(&self.staging).await?).to_vec())
    }

    /// Output of the first dispatch, then `reps` timed ones.
    pub async fn finish(self, reps: usize) -> Result<MatmulRun, GpuError> {
        let y = self.output().await?;
        let timings = self.time(reps).await?;
        Ok(MatmulRun { y, compile_ms: self.compile_ms, upload_ms: self.upload_ms, timings })
    }
}

/// Median of a list (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
