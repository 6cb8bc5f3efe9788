//! Timed GPU work: timestamp queries around each command of a submission, and the bandwidth
//! anchors the kernel benchmarks are measured against (a buffer copy and a read-only kernel of the
//! same size).

use web_time::Instant;

use super::completion::completion;
use super::executor::{median, Timings};
use super::{Executor, GpuError};

/// Timestamp queries for `reps` timed commands: a pair each, resolved into a buffer that is
/// copied to wherever the caller reads back ([`TimestampQueries::resolve_to`]).
pub(super) struct TimestampQueries {
    pub(super) set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
}

impl TimestampQueries {
    /// The pair around timed command `i`.
    pub(super) fn pass_writes(&self, i: u32) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        }
    }

    /// Resolves the pairs of `reps` commands into `dst` at `offset` (16 bytes a pair): a buffer of
    /// their own, or beside an output in its staging buffer, so one readback brings both (each
    /// readback is a round trip to the browser's GPU process, and in Firefox a wait of its own:
    /// `completion`).
    pub(super) fn resolve_to(&self, enc: &mut wgpu::CommandEncoder, reps: usize, dst: &wgpu::Buffer, offset: u64) {
        enc.resolve_query_set(&self.set, 0..2 * reps as u32, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, dst, offset, 16 * reps as u64);
    }
}

impl Executor {
    pub(super) fn timestamp_queries(&self, reps: usize, available: bool) -> Option<TimestampQueries> {
        available.then(|| {
            let dev = &self.device;
            let set = dev.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("webq timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * reps as u32,
            });
            let resolve = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: 16 * reps as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            TimestampQueries { set, resolve }
        })
    }

    /// Submits `enc` (which holds `reps` timed commands), waits, and reads the timestamps: the wall
    /// time per command and the median GPU time of one.
    pub(super) async fn run_timed(
        &self,
        mut enc: wgpu::CommandEncoder,
        query: Option<TimestampQueries>,
        reps: usize,
    ) -> Result<Timings, GpuError> {
        let read = query.as_ref().map(|q| {
            let read = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps read"),
                size: 16 * reps as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            q.resolve_to(&mut enc, reps, &read, 0);
            read
        });
        let start = Instant::now();
        self.queue.submit([enc.finish()]);
        self.settle().await?;
        let wall = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
        let gpu_us_median = match &read {
            Some(read) => Some(median(&mut self.pair_us(&self.read_buffer(read).await?))),
            None => None,
        };
        Ok(Timings { dispatches: reps, wall_us_per_dispatch: wall, gpu_us_median })
    }

    /// The microseconds between each pair of resolved timestamps in `resolved`.
    pub(super) fn pair_us(&self, resolved: &[u8]) -> Vec<f64> {
        let ticks: Vec<u64> =
            resolved.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))).collect();
        let period_ns = self.queue.get_timestamp_period() as f64;
        ticks.chunks_exact(2).map(|p| p[1].saturating_sub(p[0]) as f64 * period_ns / 1e3).collect()
    }

    pub(super) async fn read_buffer(&self, buffer: &wgpu::Buffer) -> Result<Vec<u8>, GpuError> {
        let slice = buffer.slice(..);
        let (tx, rx) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        completion(&self.device, &self.queue, rx, || GpuError::Readback("the mapping's callback was dropped".into()))
            .await?
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let bytes = slice.get_mapped_range().map_err(|e| GpuError::Readback(e.to_string()))?.to_vec();
        buffer.unmap();
        Ok(bytes)
    }

    /// The copy-bandwidth anchor of the benchmarks: `reps` buffer-to-buffer copies of `bytes` bytes,
    /// taking `sources` source buffers in turn (enough of them exceed the cache, as for the kernels).
    /// GPU times need timestamps inside encoders; without them only the wall time is measured.
    pub async fn time_copy(&self, bytes: u64, sources: usize, reps: usize) -> Result<Timings, GpuError> {
        let bytes = bytes.next_multiple_of(4);
        let reps = reps.max(1);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = |usage| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("copy bandwidth"),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        let src: Vec<wgpu::Buffer> = (0..sources.max(1)).map(|_| buffer(wgpu::BufferUsages::COPY_SRC)).collect();
        let dst = buffer(wgpu::BufferUsages::COPY_DST);
        if let Some(e) = scope.pop().await {
            return Err(GpuError::OutOfMemory(e.to_string()));
        }
        let query = self.timestamp_queries(reps, self.summary.encoder_timestamps);
        let mut enc = self.device.create_command_encoder(&Default::default());
        for i in 0..reps {
            if let Some(q) = &query {
                enc.write_timestamp(&q.set, 2 * i as u32);
            }
            enc.copy_buffer_to_buffer(&src[i % src.len()], 0, &dst, 0, bytes);
            if let Some(q) = &query {
                enc.write_timestamp(&q.set, 2 * i as u32 + 1);
            }
        }
        self.run_timed(enc, query, reps).await
    }
}

impl Executor {
    /// The read-bandwidth anchor: a kernel that reads `bytes` bytes once as vec4s (as a GEMV reads its
    /// weights), `reps` times, taking `sources` buffers in turn. Workgroups: a 64 KiB slice each.
    pub async fn time_stream(&self, bytes: u64, sources: usize, reps: usize) -> Result<Timings, GpuError> {
        let bytes = bytes.next_multiple_of(16);
        let reps = reps.max(1);
        let groups = bytes.div_ceil(64 << 10).clamp(1, 65535) as u32;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("stream"),
            source: wgpu::ShaderSource::Wgsl(include_str!("kernels/stream.wgsl").into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("stream"),
            layout: None,
            module: &module,
            entry_point: Some("stream"),
            compilation_options: Default::default(),
            cache: None,
        });
        let buffer = |size, usage| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("stream"),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        let sink = buffer(4 * groups as u64, wgpu::BufferUsages::STORAGE);
        let binds: Vec<wgpu::BindGroup> = (0..sources.max(1))
            .map(|_| {
                let src = buffer(bytes, wgpu::BufferUsages::STORAGE);
                self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("stream"),
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &[
                        wgpu::BindGroupEntry { binding: 0, resource: src.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 1, resource: sink.as_entire_binding() },
                    ],
                })
            })
            .collect();
        if let Some(e) = oom.pop().await {
            return Err(GpuError::OutOfMemory(e.to_string()));
        }
        if let Some(e) = scope.pop().await {
            return Err(GpuError::Compile(e.to_string()));
        }
        let query = self.timestamp_queries(reps, self.summary.timestamps);
        let mut enc = self.device.create_command_encoder(&Default::default());
        for i in 0..reps {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("stream"),
                timestamp_writes: query.as_ref().map(|q| q.pass_writes(i as u32)),
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &binds[i % binds.len()], &[]);
            pass.dispatch_workgroups(groups, 1, 1);
        }
        self.run_timed(enc, query, reps).await
    }
}
