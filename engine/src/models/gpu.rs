//! The `webgpu` backend of a model: every op in WGSL (f32 or f16 arithmetic), natively through wgpu and in a browser's
//! WebGPU. Weights are uploaded once per model and stay on the GPU; each op uploads its
//! activations, dispatches once and reads its output back (simple and judgeable op by op; keeping
//! activations on the GPU between ops is the speed work still to do). Residual adds, embedding
//! lookups and pooling stay on the host.

use std::collections::HashMap;

use super::attention::{Heads, Mask};
use super::bench::Footprint;
use super::exec::{add_bias, pad_rows, Backend, OpResult};
use super::linear::{Linear, NormWeights};
use super::ops::rope_table;
use super::ModelError;
use crate::reference::Arith;
use crate::webgpu::{Executor, GemvKernel, GpuError, ModelOp, OpOutput, OpParams, ResidentMatrix};

pub struct GpuBackend<'e> {
    exec: &'e Executor,
    resident: HashMap<String, ResidentMatrix>,
    /// The GEMV for one-row matmuls (the tuning table's pick); several rows run the GEMM.
    gemv: GemvKernel,
    /// Bytes of weights uploaded so far.
    pub uploaded: usize,
    /// The arithmetic of every op and matmul (f16 needs the adapter's shader-f16).
    arith: Arith,
    /// The most bytes of activations one op uploaded and read back.
    activation_peak: usize,
    /// Timestamp pairs around every dispatch ([`Backend::time_ops`]), and the microseconds they
    /// measured since [`Backend::take_device_ms`] last took them.
    time_ops: bool,
    device_us: Option<f64>,
}

fn params(words: &[u32]) -> OpParams {
    let mut p = [0u32; 16];
    p[..words.len()].copy_from_slice(words);
    p
}

impl<'e> GpuBackend<'e> {
    pub fn new(exec: &'e Executor, gemv: GemvKernel) -> Self {
        GpuBackend::with_arith(exec, gemv, Arith::F32)
    }

    pub fn with_arith(exec: &'e Executor, gemv: GemvKernel, arith: Arith) -> Self {
        GpuBackend {
            exec,
            resident: HashMap::new(),
            gemv,
            uploaded: 0,
            arith,
            activation_peak: 0,
            time_ops: false,
            device_us: None,
        }
    }

    fn failed(op: &str) -> impl Fn(GpuError) -> ModelError + '_ {
        move |e| ModelError::Backend { backend: "webgpu".into(), op: op.into(), why: e.to_string() }
    }

    fn moved(&mut self, floats: usize) {
        self.activation_peak = self.activation_peak.max(floats * 4);
    }

    /// An op's output, its device time counted.
    fn output(&mut self, out: OpOutput) -> Vec<f32> {
        if let Some(us) = out.gpu_us {
            self.device_us = Some(self.device_us.unwrap_or(0.0) + us);
        }
        out.y
    }

    async fn op(
        &mut self,
        op: ModelOp,
        p: &[u32],
        inputs: &[&[f32]],
        out_len: usize,
        threads: usize,
    ) -> OpResult<Vec<f32>> {
        self.moved(inputs.iter().map(|x| x.len()).sum::<usize>() + out_len);
        let r = self.exec.run_op(op, self.arith, &params(p), inputs, out_len, threads, self.time_ops).await;
        Ok(self.output(r.map_err(Self::failed(op.entry_point()))?))
    }
}

impl Backend for GpuBackend<'_> {
    fn footprint(&self) -> Footprint {
        Footprint {
            device_weight_bytes: Some(self.uploaded as u64),
            activation_peak_bytes: Some(self.activation_peak as u64),
            compiled: Some(self.exec.compiled()),
        }
    }

    fn shaders_since(&self, from: usize) -> Vec<super::trace::ShaderEntry> {
        self.exec.compiled_shaders(from)
    }

    fn time_ops(&mut self) {
        self.time_ops = true;
    }

    fn take_device_ms(&mut self) -> Option<f64> {
        self.device_us.take().map(|us| us / 1e3)
    }

    async fn preload(&mut self, l: &Linear) -> OpResult<()> {
        if !self.resident.contains_key(&l.name) {
            let w = self.exec.upload_matrix(&l.q).await.map_err(Self::failed(&l.name))?;
            self.uploaded += w.bytes;
            self.resident.insert(l.name.clone(), w);
        }
        Ok(())
    }

    async fn linear(&mut self, x: &[f32], m: usize, l: &Linear) -> OpResult<Vec<f32>> {
        self.preload(l).await?;
        let w = &self.resident[&l.name];
        let x = pad_rows(x, m, l.k, l.q.k);
        let variant = self.gemv.variant(m, l.q.n, l.q.k, Some(&l.q.format), self.arith);
        let out = self.exec.matmul_resident(w, &x, m, variant, self.time_ops).await.map_err(Self::failed(&l.name))?;
        let mut y = self.output(out);
        self.moved(x.len() + y.len());
        add_bias(&mut y, l.bias.as_deref());
        Ok(y)
    }

    async fn layer_norm(&mut self, x: &[f32], dim: usize, w: &NormWeights, eps: f64) -> OpResult<Vec<f32>> {
        let rows = x.len() / dim;
        let beta = w.beta.as_deref().expect("a layer norm has a bias");
        let p = [rows as u32, dim as u32, (eps as f32).to_bits()];
        self.op(ModelOp::LayerNorm, &p, &[x, &w.gamma, beta], x.len(), rows).await
    }

    async fn rms_norm(&mut self, x: &[f32], dim: usize, w: &NormWeights, eps: f64) -> OpResult<Vec<f32>> {
        let rows = x.len() / dim;
        let p = [rows as u32, dim as u32, (eps as f32).to_bits()];
        self.op(ModelOp::RmsNorm, &p, &[x, &w.gamma], x.len(), rows).await
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
        let (causal, offset, keys): (u32, usize, Vec<f32>) = match mask {
            Mask::Causal { offset } => (1, offset, vec![0.0]),
            Mask::Padding(m) => (0, 0, m.iter().map(|&v| v as f32).collect()),
        };
        let scale = (1.0 / (h.head_dim as f64).sqrt()) as f32;
        let p = [tq, tk, h.heads, h.kv_heads, h.head_dim, causal as usize, offset].map(|v| v as u32);
        let p = [&p[..], &[scale.to_bits()]].concat();
        self.op(ModelOp::Attention, &p, &[q, k, v, &keys], tq * h.q_width(), tq * h.heads).await
    }

    async fn gelu(&mut self, x: &[f32]) -> OpResult<Vec<f32>> {
        self.op(ModelOp::Gelu, &[x.len() as u32], &[x], x.len(), x.len()).await
    }

    async fn swiglu(&mut self, gate: &[f32], up: &[f32]) -> OpResult<Vec<f32>> {
        self.op(ModelOp::Swiglu, &[gate.len() as u32], &[gate, up], gate.len(), gate.len()).await
    }

    async fn rope(&mut self, x: &[f32], width: usize, head_dim: usize, pos0: usize, base: f64) -> OpResult<Vec<f32>> {
        let rows = x.len() / width;
        let table: Vec<f32> = rope_table(rows, head_dim, pos0, base).concat();
        let p = [rows as u32, width as u32, head_dim as u32];
        self.op(ModelOp::Rope, &p, &[x, &table], x.len(), rows * width / 2).await
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::models::op_cases::run_op_cases;

    #[test]
    fn every_wgsl_op_passes_its_op_cells_in_f32_and_in_f16() {
        let Some(exec) = crate::webgpu::executor_for_tests() else { return };
        for arith in [Arith::F32, Arith::F16] {
            if !exec.supports(arith) {
                eprintln!("SKIPPED {arith:?}: the adapter has no shader-f16");
                continue;
            }
            let mut b = GpuBackend::with_arith(&exec, GemvKernel::PORTABLE, arith);
            let verdicts = pollster::block_on(run_op_cases(&mut b, arith));
            for v in &verdicts {
                eprintln!("{arith:?} {}: worst {:.3} of its tolerance", v.case, v.verdict.worst_ratio);
                assert!(v.verdict.pass, "{arith:?} {}: {:?} {:?}", v.case, v.verdict, v.error);
            }
        }
    }
}
