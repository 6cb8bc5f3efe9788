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

use webq_conformance::{KernelTolerance, KernelVerdict};

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

fn seeded(label: &str, n: usize, scale: f32) -> Vec<f32> {
    let mut rng = Rng::stream(7, label);
    (0..n).map(|_| rng.normal() * scale).collect()
}

/// `ulps` ULP of `max(|want|, rms of the row)`.
fn judge(case: &'static str, op: &str, ulps: f64, got: OpResult<Vec<f32>>, want: &[f32], row: usize) -> OpVerdict {
    judge_with(case, op, ulps, got, want, row, &[])
}

/// As [`judge`], output `i` allowed `extra[i]` where that is larger.
fn judge_with(
    case: &'static str,
    op: &str,
    ulps: f64,
    got: OpResult<Vec<f32>>,
    want: &[f32],
    row: usize,
    extra: &[f64],
) -> OpVerdict {
    let tolerance = KernelTolerance {
        op: op.into(),
        ulp_per_k: ulps,
        acc_units_per_k: 0.0,
        f16_product_units: 0.0,
        rel_rms: ulps / (1u64 << 24) as f64,
    };
    let scale: Vec<f32> = want
        .chunks(row.max(1))
        .flat_map(|r| {
            let rms = (r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / r.len() as f64).sqrt() as f32;
            std::iter::repeat_n(rms, r.len())
        })
        .collect();
    let allowed = |i: usize| tolerance.allowed(want[i], scale[i], 1).max(extra.get(i).copied().unwrap_or(0.0));
    match got {
        Ok(got) => OpVerdict { case, verdict: KernelVerdict::within(&got, want, allowed), tolerance, error: None },
        Err(e) => {
            let verdict = KernelVerdict {
                pass: false,
                worst_ratio: f64::INFINITY,
                worst_index: 0,
                max_abs_err: f64::NAN,
                failures: want.len(),
                non_finite: 0,
            };
            OpVerdict { case, tolerance, verdict, error: Some(e.to_string()) }
        }
    }
}

/// Per output of attention: `4 max|v| d u max_j sum_e |q_ie k_je| scale` (see the module's notes).
fn score_bound(q: &[f32], k: &[f32], v: &[f32], tq: usize, tk: usize, h: Heads) -> Vec<f64> {
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
            let bound = 4.0 * vmax * d as f64 * (1.0 / (1u64 << 24) as f64) * smax * scale;
            out[i * qw + head * d..][..d].iter_mut().for_each(|o| *o = bound);
        }
    }
    out
}

/// Runs every per-op cell on `b`.
pub async fn run_op_cases<B: Backend>(b: &mut B) -> Vec<OpVerdict> {
    let mut out = Vec::new();

    let dim = 384;
    let x = seeded("ln-x", 4 * dim, 2.0);
    let w = NormWeights::new("ln", &seeded("ln-g", dim, 1.0), Some(&seeded("ln-b", dim, 0.5)));
    let want = layer_norm(&x, dim, &w.gamma, w.beta.as_deref().unwrap_or_default(), 1e-12);
    out.push(judge(
        "layer-norm 4x384",
        "layer_norm",
        (2 * dim + 12) as f64,
        b.layer_norm(&x, dim, &w, 1e-12).await,
        &want,
        dim,
    ));

    let dim = 576;
    let x = seeded("rms-x", 4 * dim, 1.5);
    let w = NormWeights::new("rms", &seeded("rms-g", dim, 1.0), None);
    let want = rms_norm(&x, dim, &w.gamma, 1e-5);
    out.push(judge("rms-norm 4x576", "rms_norm", (dim + 8) as f64, b.rms_norm(&x, dim, &w, 1e-5).await, &want, dim));

    let x = seeded("gelu", 1024, 2.5);
    let want: Vec<f32> = x.iter().map(|&v| gelu_erf(v)).collect();
    out.push(judge("gelu 1024", "gelu", 18.0, b.gelu(&x).await, &want, 64));

    let (gate, up) = (seeded("swiglu-g", 1024, 2.5), seeded("swiglu-u", 1024, 1.0));
    let want: Vec<f32> = gate.iter().zip(&up).map(|(&g, &u)| silu(g) * u).collect();
    out.push(judge("swiglu 1024", "swiglu", 36.0, b.swiglu(&gate, &up).await, &want, 64));

    let (width, hd) = (3 * 64, 64);
    let x = seeded("rope", 5 * width, 1.0);
    let got = b.rope(&x, width, hd, 7, 1e5).await;
    let mut want = x.clone();
    for (s, row) in want.chunks_exact_mut(width).enumerate() {
        rope_adjacent(row, hd, 7 + s, 1e5);
    }
    out.push(judge("rope 5x3x64 from position 7", "rope", 8.0, got, &want, width));

    let attn_tol = |d: usize, n: usize| (2 * d + 3 * n + 3 + 2 * n) as f64;
    let gqa = Heads { heads: 4, kv_heads: 2, head_dim: 16 };
    for (case, scale, tq, tk, offset) in [
        ("attention causal GQA 4/2 heads, 9 tokens", 1.0, 9, 9, 0),
        ("attention causal, logits in the hundreds", 12.0, 9, 9, 0),
        ("attention decode: 1 query after 6 cached", 1.0, 1, 7, 6),
    ] {
        let q = seeded("attn-q", tq * gqa.q_width(), scale);
        let k = seeded("attn-k", tk * gqa.kv_width(), scale);
        let v = seeded("attn-v", tk * gqa.kv_width(), 1.0);
        let mask = Mask::Causal { offset };
        let want = attention(&q, &k, &v, tq, tk, gqa, mask);
        let bound = score_bound(&q, &k, &v, tq, tk, gqa);
        out.push(judge_with(
            case,
            "attention",
            attn_tol(16, tk),
            b.attention(&q, &k, &v, tq, tk, gqa, mask).await,
            &want,
            gqa.q_width(),
            &bound,
        ));
    }
    let h = Heads { heads: 2, kv_heads: 2, head_dim: 8 };
    let (q, k, v) = (seeded("pad-q", 6 * 16, 1.0), seeded("pad-k", 6 * 16, 1.0), seeded("pad-v", 6 * 16, 1.0));
    let pad = [1, 1, 1, 1, 0, 0];
    let want = attention(&q, &k, &v, 6, 6, h, Mask::Padding(&pad));
    let got = b.attention(&q, &k, &v, 6, 6, h, Mask::Padding(&pad)).await;
    let bound = score_bound(&q, &k, &v, 6, 6, h);
    out.push(judge_with(
        "attention with 2 padded keys of 6",
        "attention",
        attn_tol(8, 6),
        got,
        &want,
        h.q_width(),
        &bound,
    ));

    // The cache after a prefill of 3 positions and one decode step holds all 4, in order.
    let kw = 8;
    let (k, v) = (seeded("kv-k", 4 * kw, 1.0), seeded("kv-v", 4 * kw, 1.0));
    let mut cache = KvCache::new(1, kw);
    b.cache_append(&mut cache, 0, &k[..3 * kw], &v[..3 * kw]);
    b.cache_append(&mut cache, 0, &k[3 * kw..], &v[3 * kw..]);
    let (ks, vs) = cache.layer(0);
    out.push(judge("kv cache: prefill 3, decode 1", "kv_cache", 0.0, Ok([ks, vs].concat()), &[k, v].concat(), kw));
    out
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::models::exec::CpuExec;

    #[test]
    fn the_cpu_path_passes_every_op_cell() {
        let verdicts = pollster::block_on(run_op_cases(&mut CpuExec::default()));
        assert!(verdicts.len() >= 10);
        for v in &verdicts {
            assert!(v.verdict.pass, "{}: {:?}", v.case, v.verdict);
        }
    }
}
