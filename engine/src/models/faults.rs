//! Planted faults in the ops of a model backend: each one a plausible bug of a real
//! implementation. `webq faults` checks that the per-op cells ([`super::op_cases`]) or the model
//! cells' kernel verdict catch every one, and that the correct backend fails none.

use super::attention::{attention_with, Heads, KvCache, Mask};
use super::exec::{Backend, OpResult};
use super::linear::{Linear, NormWeights};

/// A fault: which op it breaks and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpFault {
    pub id: &'static str,
    pub op: &'static str,
    pub description: &'static str,
}

pub const OP_FAULTS: &[OpFault] = &[
    OpFault {
        id: "softmax-no-max",
        op: "attention",
        description: "softmax in f32 without subtracting the row's maximum: large logits overflow exp",
    },
    OpFault { id: "rope-reversed", op: "rope", description: "rotary pairs rotated the wrong way (by -theta)" },
    OpFault {
        id: "causal-off-by-one",
        op: "attention",
        description: "the causal mask lets each query see the next position",
    },
    OpFault { id: "padding-mask-ignored", op: "attention", description: "padded keys are attended to" },
    OpFault {
        id: "gqa-wrong-group",
        op: "attention",
        description: "query head h reads key/value head h mod kv_heads, not h / group",
    },
    OpFault {
        id: "layer-norm-unbiased",
        op: "layer_norm",
        description: "layer norm divides the variance by N - 1 (BERT's is the biased, 1/N)",
    },
    OpFault { id: "gelu-tanh", op: "gelu", description: "GELU's tanh approximation instead of BERT's exact erf form" },
    OpFault {
        id: "kv-cache-wrong-slot",
        op: "kv_cache",
        description: "a decode step writes its key and value over the previous position as well",
    },
];

/// A backend with one planted fault; every other op is `inner`'s.
pub struct Faulty<B> {
    pub inner: B,
    pub fault: &'static OpFault,
}

impl<B: Backend> Faulty<B> {
    pub fn new(inner: B, fault: &'static OpFault) -> Self {
        Faulty { inner, fault }
    }

    fn is(&self, id: &str) -> bool {
        self.fault.id == id
    }
}

/// Softmax attention in f32 without the maximum subtracted (the `softmax-no-max` fault).
fn attention_no_max(q: &[f32], k: &[f32], v: &[f32], tq: usize, tk: usize, h: Heads, mask: Mask) -> Vec<f32> {
    let (qw, kw, d) = (h.q_width(), h.kv_width(), h.head_dim);
    let group = h.heads / h.kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0f32; tq * qw];
    for head in 0..h.heads {
        let kvh = head / group;
        for i in 0..tq {
            let qi = &q[i * qw + head * d..][..d];
            let e: Vec<f32> = (0..tk)
                .map(|j| {
                    if !mask.allows(i, j) {
                        return 0.0;
                    }
                    let s: f32 = qi.iter().zip(&k[j * kw + kvh * d..][..d]).map(|(a, b)| a * b).sum();
                    (s * scale).exp()
                })
                .collect();
            let sum: f32 = e.iter().sum();
            for c in 0..d {
                let acc: f32 = e.iter().enumerate().map(|(j, p)| p * v[j * kw + kvh * d + c]).sum();
                out[i * qw + head * d + c] = acc / sum;
            }
        }
    }
    out
}

impl<B: Backend> Backend for Faulty<B> {
    async fn linear(&mut self, x: &[f32], m: usize, l: &Linear) -> OpResult<Vec<f32>> {
        self.inner.linear(x, m, l).await
    }

    async fn preload(&mut self, l: &Linear) -> OpResult<()> {
        self.inner.preload(l).await
    }

    async fn layer_norm(&mut self, x: &[f32], dim: usize, w: &NormWeights, eps: f64) -> OpResult<Vec<f32>> {
        if !self.is("layer-norm-unbiased") {
            return self.inner.layer_norm(x, dim, w, eps).await;
        }
        let beta = w.beta.as_deref().expect("a layer norm has a bias");
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(dim) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (dim - 1) as f64;
            let inv = 1.0 / (var + eps).sqrt();
            let norm = |(c, &v): (usize, &f32)| ((v as f64 - mean) * inv * w.gamma[c] as f64 + beta[c] as f64) as f32;
            out.extend(row.iter().enumerate().map(norm));
        }
        Ok(out)
    }

    async fn rms_norm(&mut self, x: &[f32], dim: usize, w: &NormWeights, eps: f64) -> OpResult<Vec<f32>> {
        self.inner.rms_norm(x, dim, w, eps).await
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
        let group = h.heads / h.kv_heads;
        let at = (tq, tk);
        Ok(match self.fault.id {
            "softmax-no-max" => attention_no_max(q, k, v, tq, tk, h, mask),
            "causal-off-by-one" => {
                let mask = match mask {
                    Mask::Causal { offset } => Mask::Causal { offset: offset + 1 },
                    other => other,
                };
                attention_with(q, k, v, at, h, |i, j| mask.allows(i, j), |head| head / group)
            }
            "padding-mask-ignored" => {
                let sees = |i, j| matches!(mask, Mask::Padding(_)) || mask.allows(i, j);
                attention_with(q, k, v, at, h, sees, |head| head / group)
            }
            "gqa-wrong-group" => attention_with(q, k, v, at, h, |i, j| mask.allows(i, j), |head| head % h.kv_heads),
            _ => return self.inner.attention(q, k, v, tq, tk, h, mask).await,
        })
    }

    async fn gelu(&mut self, x: &[f32]) -> OpResult<Vec<f32>> {
        if !self.is("gelu-tanh") {
            return self.inner.gelu(x).await;
        }
        let c = (2.0 / std::f64::consts::PI).sqrt();
        Ok(x.iter()
            .map(|&v| {
                let y = v as f64;
                (0.5 * y * (1.0 + (c * (y + 0.044715 * y * y * y)).tanh())) as f32
            })
            .collect())
    }

    async fn swiglu(&mut self, gate: &[f32], up: &[f32]) -> OpResult<Vec<f32>> {
        self.inner.swiglu(gate, up).await
    }

    async fn rope(&mut self, x: &[f32], width: usize, head_dim: usize, pos0: usize, base: f64) -> OpResult<Vec<f32>> {
        if !self.is("rope-reversed") {
            return self.inner.rope(x, width, head_dim, pos0, base).await;
        }
        let mut x = x.to_vec();
        for (s, row) in x.chunks_exact_mut(width).enumerate() {
            for head in row.chunks_exact_mut(head_dim) {
                for i in 0..head_dim / 2 {
                    let theta = (pos0 + s) as f64 * base.powf(-2.0 * i as f64 / head_dim as f64);
                    let (sn, c) = theta.sin_cos();
                    let (a, b) = (head[2 * i] as f64, head[2 * i + 1] as f64);
                    head[2 * i] = (a * c + b * sn) as f32;
                    head[2 * i + 1] = (b * c - a * sn) as f32;
                }
            }
        }
        Ok(x)
    }

    fn cache_append(&mut self, cache: &mut KvCache, layer: usize, k: &[f32], v: &[f32]) {
        let decoding = !cache.is_empty() && k.len() == cache.width();
        if self.is("kv-cache-wrong-slot") && decoding {
            cache.overwrite_last(layer, k, v);
        }
        self.inner.cache_append(cache, layer, k, v)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::models::exec::CpuExec;
    use crate::models::op_cases::run_op_cases;

    #[test]
    fn every_planted_op_fault_fails_a_per_op_cell() {
        for fault in OP_FAULTS {
            let verdicts = pollster::block_on(run_op_cases(
                &mut Faulty::new(CpuExec::default(), fault),
                crate::reference::Arith::F32,
            ));
            let failed: Vec<&str> = verdicts.iter().filter(|v| !v.verdict.pass).map(|v| v.case).collect();
            assert!(!failed.is_empty(), "{} was not caught", fault.id);
        }
    }
}
