//! What a model needs from the GPU beyond one matmul: weights uploaded once and kept
//! ([`ResidentMatrix`]), matmuls on them with fresh activations, and the transformer ops of
//! `kernels/model_ops.wgsl` in f32 or f16 arithmetic, each one dispatch with its inputs uploaded
//! and its output read back.

use std::sync::Arc;

use web_time::Instant;
use wgpu::util::DeviceExt;

use super::error::GpuError;
use super::executor::Executor;
use super::kernel::{assemble, gemv_vec_tile, KernelVariant};
use crate::quant::{QuantFormat, QuantizedMatrix};
use crate::reference::Arith;

const OPS_SOURCE: &str = include_str!("kernels/model_ops.wgsl");

/// The ops of `model_ops.wgsl`, by entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelOp {
    LayerNorm,
    RmsNorm,
    Gelu,
    Swiglu,
    Rope,
    Attention,
}

impl ModelOp {
    pub fn entry_point(self) -> &'static str {
        match self {
            ModelOp::LayerNorm => "layer_norm",
            ModelOp::RmsNorm => "rms_norm",
            ModelOp::Gelu => "gelu",
            ModelOp::Swiglu => "swiglu",
            ModelOp::Rope => "rope",
            ModelOp::Attention => "attention",
        }
    }
}

/// A weight matrix on the GPU, uploaded once.
pub struct ResidentMatrix {
    codes: wgpu::Buffer,
    scales: wgpu::Buffer,
    zeros: wgpu::Buffer,
    pub format: QuantFormat,
    pub n: usize,
    pub k: usize,
    row_stride: usize,
    groups_per_row: usize,
    pub bytes: usize,
}

/// 16 parameter words: integers, and f32 values as their bits.
pub type OpParams = [u32; 16];

/// One op's output, read back, and the GPU's own time for its dispatch: from a timestamp pair
/// around it when the caller asked (a traced cell) and the device has timestamp queries.
pub struct OpOutput {
    pub y: Vec<f32>,
    pub gpu_us: Option<f64>,
}

impl Executor {
    /// Uploads a stored matrix to keep.
    pub async fn upload_matrix(&self, q: &QuantizedMatrix) -> Result<ResidentMatrix, GpuError> {
        let (scales, zeros) = (q.scale_bytes(), q.zero_bytes());
        for (what, len) in [("packed weights", q.codes.len()), ("scales", scales.len()), ("zero points", zeros.len())] {
            self.check_size(what, len)?;
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let m = ResidentMatrix {
            codes: self.storage_buffer("resident codes", &q.codes),
            scales: self.storage_buffer("resident scales", &scales),
            zeros: self.storage_buffer("resident zeros", &zeros),
            format: q.format,
            n: q.n,
            k: q.k,
            row_stride: q.row_stride,
            groups_per_row: if q.format == QuantFormat::F16 { 1 } else { q.groups_per_row() },
            bytes: q.codes.len() + scales.len() + zeros.len(),
        };
        if let Some(e) = scope.pop().await {
            return Err(GpuError::OutOfMemory(e.to_string()));
        }
        Ok(m)
    }

    /// `x (m x k) * W^T` on a resident matrix with `variant` (a GEMV kernel for one row, the GEMM
    /// for more), read back.
    pub async fn matmul_resident(
        &self,
        w: &ResidentMatrix,
        x: &[f32],
        m: usize,
        variant: KernelVariant,
        timed: bool,
    ) -> Result<OpOutput, GpuError> {
        assert_eq!(x.len(), m * w.k, "activations are m x k");
        if variant.kind.is_gemv_vec() && w.k % gemv_vec_tile(&w.format) != 0 {
            return Err(GpuError::Shape(format!("gemv-vec needs K a multiple of {}", gemv_vec_tile(&w.format))));
        }
        let (pipeline, _) = self.pipeline(variant, w.format, None).await?;
        let params: [u32; 8] =
            [m as u32, w.n as u32, w.k as u32, (w.row_stride / 4) as u32, w.groups_per_row as u32, 0, 0, 0];
        let params = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::cast_slice(&params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let xb = self.storage_buffer("x", bytemuck::cast_slice(x));
        let groups = variant.groups(m, w.n);
        let inputs = [&params, &w.codes, &w.scales, &w.zeros, &xb];
        self.dispatch_and_read(&pipeline, &inputs, m * w.n, groups, timed).await
    }

    /// One op of `model_ops.wgsl` in `arith` on up to four inputs, `out_len` outputs read back,
    /// dispatched as `threads` invocations (64 a workgroup); `timed`: see [`OpOutput::gpu_us`].
    #[allow(clippy::too_many_arguments)]
    pub async fn run_op(
        &self,
        op: ModelOp,
        arith: Arith,
        params: &OpParams,
        inputs: &[&[f32]],
        out_len: usize,
        threads: usize,
        timed: bool,
    ) -> Result<OpOutput, GpuError> {
        let pipeline = self.op_pipeline(op, arith).await?;
        let params = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("op params"),
            contents: bytemuck::cast_slice(params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        for (i, input) in inputs.iter().enumerate() {
            self.check_size(["input a", "input b", "input c", "input d"][i.min(3)], input.len() * 4)?;
        }
        let buffers: Vec<wgpu::Buffer> = (0..4)
            .map(|i| {
                let data: &[f32] = inputs.get(i).copied().unwrap_or(&[]);
                self.storage_buffer("op input", bytemuck::cast_slice(data))
            })
            .collect();
        let groups = threads.div_ceil(64).max(1);
        let (x, y) = if groups > 65535 { (65535, groups.div_ceil(65535)) } else { (groups, 1) };
        let bound = [&params, &buffers[0], &buffers[1], &buffers[2], &buffers[3]];
        self.dispatch_and_read(&pipeline, &bound, out_len, (x as u32, y as u32, 1), timed).await
    }

    async fn op_pipeline(&self, op: ModelOp, arith: Arith) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        if !self.supports(arith) {
            return Err(GpuError::MissingFeature("shader-f16"));
        }
        let key = (op.entry_point(), arith);
        if let Some(p) = self.op_pipelines.lock().expect("op pipelines").get(&key) {
            return Ok(p.clone());
        }
        let start = Instant::now();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let source = assemble(arith, "", OPS_SOURCE);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("model ops"),
            source: wgpu::ShaderSource::Wgsl(source.as_str().into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(op.entry_point()),
            layout: Some(&self.pipeline_layout),
            module: &module,
            entry_point: Some(op.entry_point()),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = scope.pop().await {
            return Err(GpuError::Compile(e.to_string()));
        }
        self.count_compiled("model ops", op.entry_point(), &source, start.elapsed().as_secs_f64() * 1e3);
        let pipeline = Arc::new(pipeline);
        self.op_pipelines.lock().expect("op pipelines").insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Binds `inputs` (the uniform first) and a fresh output of `out_len` f32s, dispatches, reads
    /// the output back; validation and out-of-memory errors become [`GpuError`]s. `timed`: a
    /// timestamp pair around the dispatch, where the device has timestamp queries.
    async fn dispatch_and_read(
        &self,
        pipeline: &wgpu::ComputePipeline,
        inputs: &[&wgpu::Buffer],
        out_len: usize,
        groups: (u32, u32, u32),
        timed: bool,
    ) -> Result<OpOutput, GpuError> {
        let bytes = (out_len.max(1) * 4).next_multiple_of(16) as u64;
        self.check_size("output", bytes as usize)?;
        let query = self.timestamp_queries(1, timed && self.summary.timestamps);
        // The timestamp pair is read back after the output, in the same mapping.
        let stamps = if query.is_some() { 16 } else { 0 };
        let scope_oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let scope_val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("output"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("output staging"),
            size: bytes + stamps,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let entries: Vec<wgpu::BindGroupEntry> = inputs
            .iter()
            .chain([&&out])
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
            .collect();
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("model op"),
            layout: &self.bind_layout,
            entries: &entries,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("model op"),
                timestamp_writes: query.as_ref().map(|q| q.pass_writes(0)),
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        }
        enc.copy_buffer_to_buffer(&out, 0, &staging, 0, bytes);
        if let Some(q) = &query {
            q.resolve_to(&mut enc, 1, &staging, bytes);
        }
        self.queue.submit([enc.finish()]);
        if let Some(e) = scope_val.pop().await {
            return Err(GpuError::Validation(e.to_string()));
        }
        if let Some(e) = scope_oom.pop().await {
            return Err(GpuError::OutOfMemory(e.to_string()));
        }
        let raw = self.read_buffer(&staging).await?;
        let (out_bytes, stamped) = raw.split_at(bytes as usize);
        let mut y: Vec<f32> = bytemuck::cast_slice(out_bytes).to_vec();
        y.truncate(out_len);
        let gpu_us = self.pair_us(stamped).first().copied();
        Ok(OpOutput { y, gpu_us })
    }
}
