//! Where a model's ops run. The forward passes ([`super::bert`], [`super::llama`]) call a
//! [`Backend`] for every op: the quantized matmuls, norms, attention (softmax and masks included),
//! activations, rotary embeddings and the KV cache's writes. Every op but the matmul defaults to
//! the CPU reference ([`super::ops`], [`super::attention`]); a backend overrides what it runs
//! itself. The CPU path ([`CpuExec`], the `wasm` backend's code) overrides the matmul, attention
//! and GELU ([`super::cpu_ops`]: f32, vectorized; the reference sums attention in f64 and calls
//! libm's f64 `erf` and `exp` per value).

use super::attention::{attention, Heads, KvCache, Mask};
use super::bench::Footprint;
use super::linear::{Linear, NormWeights};
use super::ops::{gelu_erf, layer_norm, rms_norm, rope_adjacent, silu};
use super::ModelError;
use crate::cpu;
use crate::reference::{emulate, Arith};

/// An op that could not run on its backend (a GPU error, in words).
pub type OpResult<T> = Result<T, ModelError>;

/// The ops of a transformer, on rows of activations (row-major). Async: a GPU backend in a browser
/// awaits its readbacks; the CPU path's futures are ready at once (natively, `pollster` drives them).
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// `x (m x l.k) * W^T + bias` for one stored matrix.
    async fn linear(&mut self, x: &[f32], m: usize, l: &Linear) -> OpResult<Vec<f32>>;

    /// Makes `l` ready before the model runs (a GPU backend uploads it), so that a run's time is
    /// the model's, not the upload's.
    async fn preload(&mut self, _l: &Linear) -> OpResult<()> {
        Ok(())
    }

    async fn layer_norm(&mut self, x: &[f32], dim: usize, w: &NormWeights, eps: f64) -> OpResult<Vec<f32>> {
        Ok(layer_norm(x, dim, &w.gamma, w.beta.as_deref().expect("a layer norm has a bias"), eps))
    }

    async fn rms_norm(&mut self, x: &[f32], dim: usize, w: &NormWeights, eps: f64) -> OpResult<Vec<f32>> {
        Ok(rms_norm(x, dim, &w.gamma, eps))
    }

    #[allow(clippy::too_many_arguments)]
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
        Ok(attention(q, k, v, tq, tk, h, mask))
    }

    async fn gelu(&mut self, x: &[f32]) -> OpResult<Vec<f32>> {
        Ok(x.iter().map(|&v| gelu_erf(v)).collect())
    }

    /// SwiGLU's gating: `silu(gate) * up`.
    async fn swiglu(&mut self, gate: &[f32], up: &[f32]) -> OpResult<Vec<f32>> {
        Ok(gate.iter().zip(up).map(|(&g, &u)| silu(g) * u).collect())
    }

    /// Rotary embeddings of rows of `width` values, row `s` at position `pos0 + s`.
    async fn rope(&mut self, x: &[f32], width: usize, head_dim: usize, pos0: usize, base: f64) -> OpResult<Vec<f32>> {
        let mut x = x.to_vec();
        for (s, row) in x.chunks_exact_mut(width).enumerate() {
            rope_adjacent(row, head_dim, pos0 + s, base);
        }
        Ok(x)
    }

    /// What the backend holds and has compiled, for the benchmark record.
    fn footprint(&self) -> Footprint {
        Footprint::default()
    }

    /// The pipelines compiled after the first `from` of [`Footprint::compiled`], with their
    /// source (a traced cell's shader log); none where the backend compiles no shaders.
    fn shaders_since(&self, _from: usize) -> Vec<super::trace::ShaderEntry> {
        Vec::new()
    }

    /// Asks the backend to time each op on the device as well (a traced cell), where it can: a
    /// GPU backend then puts a timestamp pair around every dispatch.
    fn time_ops(&mut self) {}

    /// The device's milliseconds for the ops since the last call ([`Backend::time_ops`]); `None`
    /// where the backend does not time them, the device has no timestamp queries, or no op ran.
    fn take_device_ms(&mut self) -> Option<f64> {
        None
    }

    /// Writes `k`, `v` (the next positions) into `layer`'s cache.
    fn cache_append(&mut self, cache: &mut KvCache, layer: usize, k: &[f32], v: &[f32]) {
        cache.append(layer, k, v);
    }
}

/// The CPU path: [`cpu::matmul`] (threaded natively), bias added in f32.
#[derive(Clone, Copy, Debug)]
pub struct CpuExec {
    pub threads: usize,
    /// Either (the twin of a wasm bundle that fuses takes `Fused`); a wasm build computes its own,
    /// the only one it can, so it has no field to set.
    #[cfg(not(target_arch = "wasm32"))]
    pub summation: cpu::Summation,
}

impl Default for CpuExec {
    fn default() -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        return CpuExec {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            summation: cpu::Summation::of_this_build(),
        };
        #[cfg(target_arch = "wasm32")]
        CpuExec { threads: 1 }
    }
}

/// `x` with each row padded with zeros to the stored K (see [`super::linear`]).
pub fn pad_rows(x: &[f32], m: usize, k: usize, stored_k: usize) -> std::borrow::Cow<'_, [f32]> {
    assert_eq!(x.len(), m * k, "activations are m x k");
    if k == stored_k {
        return x.into();
    }
    let mut out = vec![0f32; m * stored_k];
    for (dst, src) in out.chunks_exact_mut(stored_k).zip(x.chunks_exact(k)) {
        dst[..k].copy_from_slice(src);
    }
    out.into()
}

/// Adds the bias to each row.
pub fn add_bias(y: &mut [f32], bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
        }
    }
}

impl Backend for CpuExec {
    async fn linear(&mut self, x: &[f32], m: usize, l: &Linear) -> OpResult<Vec<f32>> {
        let x = pad_rows(x, m, l.k, l.q.k);
        #[cfg(not(target_arch = "wasm32"))]
        let mut y = cpu::matmul_threaded(&x, m, &l.q, self.summation, self.threads);
        #[cfg(target_arch = "wasm32")]
        let mut y = cpu::matmul(&x, m, &l.q);
        add_bias(&mut y, l.bias.as_deref());
        Ok(y)
    }

    #[allow(clippy::too_many_arguments)]
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
        Ok(super::cpu_ops::attention(q, k, v, tq, tk, h, mask))
    }

    async fn gelu(&mut self, x: &[f32]) -> OpResult<Vec<f32>> {
        Ok(super::cpu_ops::gelu(x))
    }
}

/// The yardstick: [`emulate`] (each weight dequantized as kernels do, products summed in order of
/// K in f32), what every backend's model output is judged against.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmulateExec;

impl Backend for EmulateExec {
    async fn linear(&mut self, x: &[f32], m: usize, l: &Linear) -> OpResult<Vec<f32>> {
        let x = pad_rows(x, m, l.k, l.q.k);
        let mut y = emulate(&x, m, &l.q, Arith::F32).y;
        add_bias(&mut y, l.bias.as_deref());
        Ok(y)
    }
}
