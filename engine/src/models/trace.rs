//! The seed's debugging hooks for one model cell (`webq run --trace`): every op with its
//! milliseconds (the page's clock in a browser, the wall clock natively) and, on a GPU whose
//! device has timestamp queries (natively, and in browsers that expose them), the device's own
//! time for the op's dispatches, every error with the op and tensor it happened in, the backend's memory after
//! each op, and the WGSL of every pipeline the cell created (see [`Executor::compiled_shaders`]).
//! [`Traced`] wraps any [`Backend`]; a cell without `trace` never builds one, so tracing costs
//! nothing when off.
//!
//! [`Executor::compiled_shaders`]: crate::webgpu::Executor::compiled_shaders

use serde::{Deserialize, Serialize};
use web_time::Instant;

use super::attention::{Heads, KvCache, Mask};
use super::bench::Footprint;
use super::exec::{Backend, OpResult};
use super::linear::{Linear, NormWeights};

/// One op: what it was, on what, when it began and how long it took (milliseconds since the
/// trace began).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpEvent {
    pub op: String,
    /// The tensor or shape it ran on (`encoder/layer_0/ffn/linear_0 m=50`).
    pub on: String,
    pub at_ms: f64,
    pub ms: f64,
    /// The device's time for the op's dispatches, from timestamp queries (absent where the
    /// backend runs no dispatch or the device cannot time them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_ms: Option<f64>,
}

/// An op that failed: where, and the backend's words.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceError {
    pub op: String,
    pub on: String,
    pub at_ms: f64,
    pub message: String,
}

/// What the backend held after an op (bytes; absent where it does not say).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemorySample {
    pub at_ms: f64,
    pub device_weight_bytes: Option<u64>,
    pub activation_peak_bytes: Option<u64>,
}

/// A pipeline the cell created: its label and entry point, compile milliseconds, and its WGSL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShaderEntry {
    pub label: String,
    pub entry_point: String,
    pub ms: f64,
    pub source: String,
}

/// A cell's trace: the op trace, the error log, the memory log and the shader log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Trace {
    pub ops: Vec<OpEvent>,
    pub errors: Vec<TraceError>,
    pub memory: Vec<MemorySample>,
    pub shaders: Vec<ShaderEntry>,
}

impl Trace {
    /// The device milliseconds of every timed op, where any was timed.
    pub fn gpu_ms(&self) -> Option<f64> {
        self.ops.iter().filter_map(|e| e.gpu_ms).reduce(|a, b| a + b)
    }

    /// Per op kind: how many ran, their milliseconds and their device milliseconds (where any
    /// was timed), most milliseconds first.
    pub fn by_op(&self) -> Vec<(String, usize, f64, Option<f64>)> {
        let mut kinds: Vec<(String, usize, f64, Option<f64>)> = Vec::new();
        for e in &self.ops {
            let i = match kinds.iter().position(|k| k.0 == e.op) {
                Some(i) => i,
                None => {
                    kinds.push((e.op.clone(), 0, 0.0, None));
                    kinds.len() - 1
                }
            };
            let k = &mut kinds[i];
            (k.1, k.2) = (k.1 + 1, k.2 + e.ms);
            if let Some(g) = e.gpu_ms {
                k.3 = Some(k.3.unwrap_or(0.0) + g);
            }
        }
        kinds.sort_by(|a, b| b.2.total_cmp(&a.2));
        kinds
    }
}

/// A backend whose every op is timed and logged into a [`Trace`].
pub struct Traced<'b, B> {
    inner: &'b mut B,
    started: Instant,
    pub trace: Trace,
}

impl<'b, B: Backend> Traced<'b, B> {
    pub fn new(inner: &'b mut B) -> Self {
        inner.time_ops();
        Traced { inner, started: Instant::now(), trace: Trace::default() }
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1e3
    }

    /// Logs an op that began at `at_ms` and its result.
    fn log<T>(&mut self, op: &str, on: String, at_ms: f64, r: OpResult<T>) -> OpResult<T> {
        let end = self.now();
        let gpu_ms = self.inner.take_device_ms();
        match &r {
            Ok(_) => self.trace.ops.push(OpEvent { op: op.into(), on, at_ms, ms: end - at_ms, gpu_ms }),
            Err(e) => self.trace.errors.push(TraceError { op: op.into(), on, at_ms, message: e.to_string() }),
        }
        let f = self.inner.footprint();
        if f.device_weight_bytes.is_some() || f.activation_peak_bytes.is_some() {
            let sample = MemorySample {
                at_ms: end,
                device_weight_bytes: f.device_weight_bytes,
                activation_peak_bytes: f.activation_peak_bytes,
            };
            // Only changes are worth a line.
            let last = self.trace.memory.last();
            if last.is_none_or(|l| {
                (l.device_weight_bytes, l.activation_peak_bytes) != (f.device_weight_bytes, f.activation_peak_bytes)
            }) {
                self.trace.memory.push(sample);
            }
        }
        r
    }
}

impl<B: Backend> Backend for Traced<'_, B> {
    async fn linear(&mut self, x: &[f32], m: usize, l: &Linear) -> OpResult<Vec<f32>> {
        let at = self.now();
        let r = self.inner.linear(x, m, l).await;
        self.log("linear", format!("{} m={m}", l.name), at, r)
    }

    async fn preload(&mut self, l: &Linear) -> OpResult<()> {
        let at = self.now();
        let r = self.inner.preload(l).await;
        self.log("preload", l.name.clone(), at, r)
    }

    async fn layer_norm(&mut self, x: &[f32], dim: usize, w: &NormWeights, eps: f64) -> OpResult<Vec<f32>> {
        let at = self.now();
        let r = self.inner.layer_norm(x, dim, w, eps).await;
        self.log("layer_norm", format!("{} rows={}", w.name, x.len() / dim.max(1)), at, r)
    }

    async fn rms_norm(&mut self, x: &[f32], dim: usize, w: &NormWeights, eps: f64) -> OpResult<Vec<f32>> {
        let at = self.now();
        let r = self.inner.rms_norm(x, dim, w, eps).await;
        self.log("rms_norm", format!("{} rows={}", w.name, x.len() / dim.max(1)), at, r)
    }

    async fn attention(
        &mut self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        tq: usize,
        tk: usize,
        h: Heads,
        mask: Mask<'_>,
    ) -> OpResult<Vec<f32>> {
        let at = self.now();
        let r = self.inner.attention(q, k, v, tq, tk, h, mask).await;
        self.log("attention", format!("tq={tq} tk={tk} heads={}", h.heads), at, r)
    }

    async fn gelu(&mut self, x: &[f32]) -> OpResult<Vec<f32>> {
        let at = self.now();
        let r = self.inner.gelu(x).await;
        self.log("gelu", format!("n={}", x.len()), at, r)
    }

    async fn swiglu(&mut self, gate: &[f32], up: &[f32]) -> OpResult<Vec<f32>> {
        let at = self.now();
        let r = self.inner.swiglu(gate, up).await;
        self.log("swiglu", format!("n={}", gate.len()), at, r)
    }

    async fn rope(&mut self, x: &[f32], width: usize, head_dim: usize, pos0: usize, base: f64) -> OpResult<Vec<f32>> {
        let at = self.now();
        let r = self.inner.rope(x, width, head_dim, pos0, base).await;
        self.log("rope", format!("rows={} pos0={pos0}", x.len() / width.max(1)), at, r)
    }

    fn footprint(&self) -> Footprint {
        self.inner.footprint()
    }

    fn shaders_since(&self, from: usize) -> Vec<ShaderEntry> {
        self.inner.shaders_since(from)
    }

    fn cache_append(&mut self, cache: &mut KvCache, layer: usize, k: &[f32], v: &[f32]) {
        self.inner.cache_append(cache, layer, k, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::exec::CpuExec;
    use crate::models::linear::ModelPrecision;
    use crate::models::loading::ready;
    use crate::quant::LayerKind;

    /// Every op is logged with its tensor, a failing op lands in the error log and still fails.
    #[test]
    fn every_op_and_every_error_is_logged() {
        let l = Linear::new("f", "w", LayerKind::Mlp, &[1.0, 2.0, 3.0, 4.0], (2, 2), None, &ModelPrecision::fp16())
            .unwrap();
        let mut cpu = CpuExec::default();
        let mut t = Traced::new(&mut cpu);
        let y = ready(t.linear(&[1.0, 1.0], 1, &l)).unwrap();
        assert_eq!(y, [3.0, 7.0]);
        ready(t.gelu(&y)).unwrap();
        let norm = NormWeights::new("n", &[1.0, 1.0], None);
        ready(t.rms_norm(&y, 2, &norm, 1e-6)).unwrap();
        let ops: Vec<(&str, &str)> = t.trace.ops.iter().map(|e| (e.op.as_str(), e.on.as_str())).collect();
        assert_eq!(ops, [("linear", "w m=1"), ("gelu", "n=2"), ("rms_norm", "n rows=1")]);
        assert!(t.trace.ops.windows(2).all(|w| w[1].at_ms >= w[0].at_ms));
        assert!(t.trace.ops.iter().all(|e| e.gpu_ms.is_none()), "the CPU path has no device clock");
        let failed: OpResult<()> = Err(crate::models::ModelError::Backend {
            backend: "webgpu".into(),
            op: "linear".into(),
            why: "out of memory".into(),
        });
        let at = t.now();
        assert!(t.log("linear", "big m=1".into(), at, failed).is_err());
        assert_eq!(t.trace.errors.len(), 1);
        assert!(t.trace.errors[0].message.contains("out of memory"));
        assert_eq!(t.trace.by_op()[0].1, 1);
    }
}
