//! Per-op cells: each op of a [`Backend`] on seeded inputs, judged against the CPU reference with a
//! tolerance stated as data, in the manner of web-platform-tests' WebNN conformance tests.
//!
//! Tolerances are ULP of `max(|expected|, rms of its row)` (the row's scale keeps outputs that
//! cancel to near zero from demanding more than the op's inputs allow):
//!
//! | op | ULP | from |
//! |----|-----|------|
//! | gelu | 18 | WPT's `gelu` (float32) |
//! | swiglu | 36 | WPT's `sigmoid` 34, plus a multiply by x and one by `up` |
//! | softmax inside attention | 3N + 3 | WPT's `softmax` over N keys |
//! | attention | 2d + (3N + 3) + 2N | WPT's `matmul` 2K for `q k` (K = head dim d) and for `p v` (K = N), plus softmax; and the score bound below |
//! | layer norm | 2N + 12 | two WPT reductions (`reduceMean`, N + 2 each) and eight element-wise steps |
//! | rms norm | N + 8 | one reduction and six element-wise steps |
//! | rope | 8 | a rotation: two products and a sum per output, with the angle's sine and cosine |
//! | kv cache | 0 | data movement (WPT's zero-ULP list) |
//!
//! Attention also allows what f32 scores carry into the softmax, which ULP counts do not: a score
//! `s = q.k * scale` summed in f32 is off by up to `d u sum|q_e k_e| scale` (`u = 2^-24`), `exp`
//! turns that into a relative error of the weights, and the output moves by up to twice the score
//! error times `2 max|v|`. With logits in the hundreds this bound, not the ULP count, is the binding
//! one (the reference computes in f64).
//!
//! With f16 arithmetic (WGSL's shader-f16 variant: element-wise steps in f16, reductions summed in
//! f32) each case counts its reductions in f32 ULP and its element-wise steps in f16 ULP (2^13 f32
//! ULP), the same counts as above split by where they happen, as WPT states one ULP count per data
//! type: layer norm 2N f32 + 12 f16, rms norm N + 8, gelu 0 + 18, swiglu 0 + 36, rope 0 + 8,
//! attention 2d + 2N f32 (the two dot products) + 3N + 5 f16 (softmax's exponentials and the
//! products with values), the KV cache 0. Attention's score bound then has each product rounded to
//! f16 (`2 u16` per product) besides the f32 sum: with logits in the hundreds it allows a lot, which
//! is what f16 scores can promise.

use webq_conformance::{KernelTolerance, KernelVerdict};

use crate::reference::Arith;

use super::attention::{attention, Heads, KvCache, Mask};
use super::exec::{Backend, OpResult};
use super::linear::NormWeights;
use super::ops::{gelu_erf, layer_norm, rms_norm, rope_adjacent, silu};
use crate::seeded::Rng;

/// One per-op cell's verdict (failed, with the backend's words, when the op did not run).
#[derive(Clone, Debug)]
pub struct OpVerdict {
    pub case: &'static str,
    pub tolerance: KernelTolerance,
    pub verdict: KernelVerdict,
    pub error: Option<String>,
}

/// One op's call with its inputs.
#[derive(Clone, Debug)]
pub enum OpCall {
    LayerNorm {
        x: Vec<f32>,
        dim: usize,
        w: NormWeights,
        eps: f64,
    },
    RmsNorm {
        x: Vec<f32>,
        dim: usize,
        w: NormWeights,
        eps: f64,
    },
    Gelu {
        x: Vec<f32>,
    },
    Swiglu {
        gate: Vec<f32>,
        up: Vec<f32>,
    },
    Rope {
        x: Vec<f32>,
        width: usize,
        head_dim: usize,
        pos0: usize,
        base: f64,
    },
    Attention {
        q: Vec<f32>,
        k: Vec<f32>,
        v: Vec<f32>,
        tq: usize,
        tk: usize,
        h: Heads,
        mask: OwnedMask,
    },
    /// A prefill of `prefill` positions, then the rest one at a time.
    KvCache {
        k: Vec<f32>,
        v: Vec<f32>,
        width: usize,
        prefill: usize,
    },
}

/// [`Mask`] with its padding owned, so a case can hold it.
#[derive(Clone, Debug)]
pub enum OwnedMask {
    Padding(Vec<u32>),
    Causal { offset: usize },
}

impl OwnedMask {
    fn as_mask(&self) -> Mask<'_> {
        match self {
            OwnedMask::Padding(m) => Mask::Padding(m),
            OwnedMask::Causal { offset } => Mask::Causal { offset: *offset },
        }
    }
}

/// One per-op cell: the call, its tolerance in ULP (of `max(|expected|, rms of its row)`, rows of
/// `row` outputs), and for attention the score bound where it is larger.
#[derive(Clone, Debug)]
pub struct OpCase {
    pub name: &'static str,
    pub op: &'static str,
    pub ulps: f64,
    /// With f16 arithmetic: (ULP of the reductions, in f32 units; ULP of the element-wise steps,
    /// in f16 units).
    pub f16_ulps: (f64, f64),
    pub row: usize,
    pub call: OpCall,
}

/// An f16 ULP in f32 ULPs at the same magnitude (10 mantissa bits against 23).
const F16_ULP_IN_F32: f64 = 8192.0;

fn seeded(label: &str, n: usize, scale: f32) -> Vec<f32> {
    let mut rng = Rng::stream(7, label);
    (0..n).map(|_| rng.normal() * scale).collect()
}

/// Per output of attention: `4 max|v| (d u + p) max_j sum_e |q_ie k_je| scale` (see the module's
/// notes; `p` is the rounding of each product: 0 in f32, `2 u16` with f16 products).
fn score_bound(q: &[f32], k: &[f32], v: &[f32], tq: usize, tk: usize, h: Heads, arith: Arith) -> Vec<f64> {
    let product = match arith {
        Arith::F32 => 0.0,
        Arith::F16 => 2.0 / 2048.0,
    };
    let (qw, kw, d) = (h.q_width(), h.kv_width(), h.head_dim);
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0.0; tq * qw];
    for head in 0..h.heads {
        let kvh = head / (h.heads / h.kv_heads);
        let vmax = (0..tk).flat_map(|j| &v[j * kw + kvh * d..][..d]).fold(0f64, |m, &x| m.max(x.abs() as f64));
        for i in 0..tq {
            let qi = &q[i * qw + head * d..][..d];
            let smax = (0..tk)
                .map(|j| {
                    qi.iter().zip(&k[j * kw + kvh * d..][..d]).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum::<f64>()
                })
                .fold(0f64, f64::max);
            let bound = 4.0 * vmax * (d as f64 * (1.0 / (1u64 << 24) as f64) + product) * smax * scale;
            out[i * qw + head * d..][..d].iter_mut().for_each(|o| *o = bound);
        }
    }
    out
}

/// Every per-op cell, on seeded inputs (the same on every platform: the page and the harness
/// build the same cases).
pub fn op_cases() -> Vec<OpCase> {
    let mut out = Vec::new();
    let case = |name, op, ulps: usize, (r, e): (usize, usize), row, call| OpCase {
        name,
        op,
        ulps: ulps as f64,
        f16_ulps: (r as f64, e as f64),
        row,
        call,
    };

    let dim = 384;
    let x = seeded("ln-x", 4 * dim, 2.0);
    let w = NormWeights::new("ln", &seeded("ln-g", dim, 1.0), Some(&seeded("ln-b", dim, 0.5)));
    out.push(case(
        "layer-norm 4x384",
        "layer_norm",
        2 * dim + 12,
        (2 * dim, 12),
        dim,
        OpCall::LayerNorm { x, dim, w, eps: 1e-12 },
    ));

    let dim = 576;
    let x = seeded("rms-x", 4 * dim, 1.5);
    let w = NormWeights::new("rms", &seeded("rms-g", dim, 1.0), None);
    out.push(case("rms-norm 4x576", "rms_norm", dim + 8, (dim, 8), dim, OpCall::RmsNorm { x, dim, w, eps: 1e-5 }));

    out.push(case("gelu 1024", "gelu", 18, (0, 18), 64, OpCall::Gelu { x: seeded("gelu", 1024, 2.5) }));
    let (gate, up) = (seeded("swiglu-g", 1024, 2.5), seeded("swiglu-u", 1024, 1.0));
    out.push(case("swiglu 1024", "swiglu", 36, (0, 36), 64, OpCall::Swiglu { gate, up }));

    let (width, head_dim) = (3 * 64, 64);
    let x = seeded("rope", 5 * width, 1.0);
    let rope = OpCall::Rope { x, width, head_dim, pos0: 7, base: 1e5 };
    out.push(case("rope 5x3x64 from position 7", "rope", 8, (0, 8), width, rope));

    let attn_tol = |d: usize, n: usize| 2 * d + 3 * n + 3 + 2 * n;
    let attn_f16 = |d: usize, n: usize| (2 * d + 2 * n, 3 * n + 5);
    let gqa = Heads { heads: 4, kv_heads: 2, head_dim: 16 };
    for (name, scale, tq, tk, offset) in [
        ("attention causal GQA 4/2 heads, 9 tokens", 1.0, 9, 9, 0),
        ("attention causal, logits in the hundreds", 12.0, 9, 9, 0),
        ("attention decode: 1 query after 6 cached", 1.0, 1, 7, 6),
    ] {
        let q = seeded("attn-q", tq * gqa.q_width(), scale);
        let k = seeded("attn-k", tk * gqa.kv_width(), scale);
        let v = seeded("attn-v", tk * gqa.kv_width(), 1.0);
        let call = OpCall::Attention { q, k, v, tq, tk, h: gqa, mask: OwnedMask::Causal { offset } };
        out.push(case(name, "attention", attn_tol(16, tk), attn_f16(16, tk), gqa.q_width(), call));
    }
    let h = Heads { heads: 2, kv_heads: 2, head_dim: 8 };
    let (q, k, v) = (seeded("pad-q", 6 * 16, 1.0), seeded("pad-k", 6 * 16, 1.0), seeded("pad-v", 6 * 16, 1.0));
    let call = OpCall::Attention { q, k, v, tq: 6, tk: 6, h, mask: OwnedMask::Padding(vec![1, 1, 1, 1, 0, 0]) };
    out.push(case("attention with 2 padded keys of 6", "attention", attn_tol(8, 6), attn_f16(8, 6), h.q_width(), call));

    // The cache after a prefill of 3 positions and one decode step holds all 4, in order.
    let width = 8;
    let (k, v) = (seeded("kv-k", 4 * width, 1.0), seeded("kv-v", 4 * width, 1.0));
    out.push(case(
        "kv cache: prefill 3, decode 1",
        "kv_cache",
        0,
        (0, 0),
        width,
        OpCall::KvCache { k, v, width, prefill: 3 },
    ));
    out
}

impl OpCall {
    /// The op on backend `b`.
    pub async fn run<B: Backend>(&self, b: &mut B) -> OpResult<Vec<f32>> {
        match self {
            OpCall::LayerNorm { x, dim, w, eps } => b.layer_norm(x, *dim, w, *eps).await,
            OpCall::RmsNorm { x, dim, w, eps } => b.rms_norm(x, *dim, w, *eps).await,
            OpCall::Gelu { x } => b.gelu(x).await,
            OpCall::Swiglu { gate, up } => b.swiglu(gate, up).await,
            OpCall::Rope { x, width, head_dim, pos0, base } => b.rope(x, *width, *head_dim, *pos0, *base).await,
            OpCall::Attention { q, k, v, tq, tk, h, mask } => b.attention(q, k, v, *tq, *tk, *h, mask.as_mask()).await,
            OpCall::KvCache { k, v, width, prefill } => {
                let mut cache = KvCache::new(1, *width);
                b.cache_append(&mut cache, 0, &k[..prefill * width], &v[..prefill * width]);
                for (kr, vr) in k.chunks_exact(*width).zip(v.chunks_exact(*width)).skip(*prefill) {
                    b.cache_append(&mut cache, 0, kr, vr);
                }
                let (ks, vs) = cache.layer(0);
                Ok([ks, vs].concat())
            }
        }
    }

    /// The CPU reference's output ([`super::ops`], [`super::attention`]; f64 inside).
    pub fn reference(&self) -> Vec<f32> {
        match self {
            OpCall::LayerNorm { x, dim, w, eps } => {
                layer_norm(x, *dim, &w.gamma, w.beta.as_deref().unwrap_or_default(), *eps)
            }
            OpCall::RmsNorm { x, dim, w, eps } => rms_norm(x, *dim, &w.gamma, *eps),
            OpCall::Gelu { x } => x.iter().map(|&v| gelu_erf(v)).collect(),
            OpCall::Swiglu { gate, up } => gate.iter().zip(up).map(|(&g, &u)| silu(g) * u).collect(),
            OpCall::Rope { x, width, head_dim, pos0, base } => {
                let mut want = x.clone();
                for (s, row) in want.chunks_exact_mut(*width).enumerate() {
                    rope_adjacent(row, *head_dim, pos0 + s, *base);
                }
                want
            }
            OpCall::Attention { q, k, v, tq, tk, h, mask } => attention(q, k, v, *tq, *tk, *h, mask.as_mask()),
            OpCall::KvCache { k, v, .. } => [&k[..], &v[..]].concat(),
        }
    }
}

impl OpCase {
    /// The case's tolerance in f32 ULP for arithmetic `arith`.
    pub fn ulps_in(&self, arith: Arith) -> f64 {
        match arith {
            Arith::F32 => self.ulps,
            Arith::F16 => self.f16_ulps.0 + self.f16_ulps.1 * F16_ULP_IN_F32,
        }
    }

    /// Judges `got` (the backend's output in `arith`, or why it did not run) against the reference.
    pub fn judge(&self, arith: Arith, got: OpResult<Vec<f32>>) -> OpVerdict {
        let want = self.call.reference();
        let extra = match &self.call {
            OpCall::Attention { q, k, v, tq, tk, h, .. } => score_bound(q, k, v, *tq, *tk, *h, arith),
            _ => Vec::new(),
        };
        let ulps = self.ulps_in(arith);
        let tolerance = KernelTolerance {
            op: self.op.into(),
            ulp_per_k: ulps,
            acc_units_per_k: 0.0,
            f16_product_units: 0.0,
            rel_rms: ulps / (1u64 << 24) as f64,
        };
        let scale: Vec<f32> = want
            .chunks(self.row.max(1))
            .flat_map(|r| {
                let rms = (r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / r.len() as f64).sqrt() as f32;
                std::iter::repeat_n(rms, r.len())
            })
            .collect();
        let allowed = |i: usize| tolerance.allowed(want[i], scale[i], 1).max(extra.get(i).copied().unwrap_or(0.0));
        let case = self.name;
        match got {
            Ok(got) => OpVerdict { case, verdict: KernelVerdict::within(&got, &want, allowed), tolerance, error: None },
            Err(e) => {
                let verdict = KernelVerdict {
                    pass: false,
                    worst_ratio: f64::INFINITY,
                    worst_index: 0,
                    max_abs_err: f64::NAN,
                    failures: want.len(),
                    non_finite: 0,
                    worst: None,
                };
                OpVerdict { case, tolerance, verdict, error: Some(e.to_string()) }
            }
        }
    }
}

/// Runs every per-op cell on `b` (whose arithmetic is `arith`) and judges it.
pub async fn run_op_cases<B: Backend>(b: &mut B, arith: Arith) -> Vec<OpVerdict> {
    let mut out = Vec::new();
    for case in op_cases() {
        let got = case.call.run(b).await;
        out.push(case.judge(arith, got));
    }
    out
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::models::exec::CpuExec;

    #[test]
    fn the_cpu_path_passes_every_op_cell() {
        let verdicts = pollster::block_on(run_op_cases(&mut CpuExec::default(), Arith::F32));
        assert!(verdicts.len() >= 10);
        for v in &verdicts {
            assert!(v.verdict.pass, "{}: {:?}", v.case, v.verdict);
        }
    }
}
