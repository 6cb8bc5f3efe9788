//! The `webnn` backend of a model: every op a WebNN graph on the cell's `MLContext`.
//!
//! Each op of a model is one graph, built the first time its shapes (and, for a matmul or a norm,
//! its weights) are seen and then dispatched again for every later call: a quantized matmul is
//! `matmul(x, dequantizeLinear(codes, scales, zeros))` with the weight as constants (as in
//! [`super::webnn_cell`]), plus the bias. WebNN has `layerNormalization`, `gelu`, `softmax` and
//! `sigmoid`; what it lacks is composed from its element-wise, reduction and shape ops, and the
//! cell's notes say so ([`COMPOSED`]). The KV cache, residual adds, embedding lookups and pooling
//! stay on the host, as on the other backends.

use std::collections::HashMap;

use js_sys::{Array, Float32Array};
use wasm_bindgen::JsValue;
use web_time::Instant;

use super::webnn_api::{
    describe, descriptor, object, shape_array, MLContext, MLGraph, MLGraphBuilder, MLOperand, MLTensor,
};
use super::webnn_cell::weight_operand;
use crate::models::attention::{Heads, Mask};
use crate::models::bench::Footprint;
use crate::models::exec::{pad_rows, Backend, OpResult};
use crate::models::linear::{Linear, NormWeights};
use crate::models::ops::rope_table;
use crate::models::ModelError;

/// How the ops WebNN has no operator for are composed (said in every model cell's notes).
const COMPOSED: &[&str] = &[
    "rms norm: mul, reduceMean, add, sqrt, div, mul",
    "SwiGLU: sigmoid, mul, mul",
    "rotary: reshape, slice, mul, sub, add, concat (host cosines and sines)",
    "attention: reshape, expand (grouped heads), transpose, matmul, mul, add (mask), softmax, matmul",
];

/// A masked score: far enough below any real one that its softmax weight is exactly 0 in f32,
/// and finite, so no backend meets `inf - inf`.
const MASKED: f32 = -1e9;

/// One built graph, with its input and output tensors (reused by every dispatch).
struct Compiled {
    graph: MLGraph,
    inputs: Vec<(String, MLTensor)>,
    output: MLTensor,
}

/// The ops of a model as WebNN graphs on `ctx`.
pub struct WebnnBackend<'c> {
    ctx: &'c MLContext,
    graphs: HashMap<String, Compiled>,
    /// Graphs built, and the milliseconds their building took (part of the run's time).
    pub built: usize,
    pub build_ms: f64,
    /// Notes from building (e.g. 3- and 2-bit codes widened to int4), each once.
    pub notes: Vec<String>,
}

type Built = Result<MLOperand, JsValue>;

/// `f32` constants of `shape`.
fn constant(b: &MLGraphBuilder, shape: &[usize], v: &[f32]) -> Built {
    b.constant(&descriptor("float32", shape), &Float32Array::from(v).into())
}

fn js(o: &MLOperand) -> JsValue {
    o.into()
}

fn shape(s: &[usize]) -> JsValue {
    shape_array(s)
}

impl<'c> WebnnBackend<'c> {
    pub fn new(ctx: &'c MLContext) -> Self {
        WebnnBackend { ctx, graphs: HashMap::new(), built: 0, build_ms: 0.0, notes: Vec::new() }
    }

    fn failed(op: &str, why: String) -> ModelError {
        ModelError::Backend { backend: "webnn".into(), op: op.into(), why }
    }

    /// Runs graph `key` on `inputs` (name, shape, values), building it with `build` first if it is
    /// new; the output has `out_shape`.
    async fn run(
        &mut self,
        op: &str,
        key: String,
        inputs: &[(&str, &[usize], &[f32])],
        out_shape: &[usize],
        build: impl FnOnce(&MLGraphBuilder, &[MLOperand], &mut Vec<String>) -> Built,
    ) -> OpResult<Vec<f32>> {
        if !self.graphs.contains_key(&key) {
            let t0 = Instant::now();
            let compiled = self.build(op, inputs, out_shape, build).await?;
            self.build_ms += t0.elapsed().as_secs_f64() * 1e3;
            self.built += 1;
            self.graphs.insert(key.clone(), compiled);
        }
        let c = &self.graphs[&key];
        for ((_, tensor), (_, _, values)) in c.inputs.iter().zip(inputs) {
            self.ctx
                .write_tensor(tensor, &Float32Array::from(*values).into())
                .map_err(|e| Self::failed(op, describe(&e)))?;
        }
        let ins = object(&c.inputs.iter().map(|(n, t)| (n.as_str(), JsValue::from(t))).collect::<Vec<_>>());
        let outs = object(&[("y", JsValue::from(&c.output))]);
        self.ctx.dispatch(&c.graph, &ins, &outs).map_err(|e| Self::failed(op, describe(&e)))?;
        let bytes = self.ctx.read(&c.output).await.map_err(|e| Self::failed(op, e))?;
        Ok(bytemuck::pod_collect_to_vec::<u8, f32>(&bytes))
    }

    async fn build(
        &mut self,
        op: &str,
        inputs: &[(&str, &[usize], &[f32])],
        out_shape: &[usize],
        build: impl FnOnce(&MLGraphBuilder, &[MLOperand], &mut Vec<String>) -> Built,
    ) -> OpResult<Compiled> {
        let js = |e: JsValue| Self::failed(op, describe(&e));
        let b = MLGraphBuilder::new(self.ctx).map_err(js)?;
        let operands = inputs
            .iter()
            .map(|(name, s, _)| b.input(name, &descriptor("float32", s)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(js)?;
        let mut notes = Vec::new();
        let y = build(&b, &operands, &mut notes).map_err(js)?;
        for n in notes {
            if !self.notes.contains(&n) {
                self.notes.push(n);
            }
        }
        let graph = b.build_graph(&object(&[("y", y.into())])).await.map_err(|e| Self::failed(op, e))?;
        let mut tensors = Vec::with_capacity(inputs.len());
        for (name, s, _) in inputs {
            let t = self.ctx.create_tensor("float32", s, false).await.map_err(|e| Self::failed(op, e))?;
            tensors.push((name.to_string(), t));
        }
        let output = self.ctx.create_tensor("float32", out_shape, true).await.map_err(|e| Self::failed(op, e))?;
        Ok(Compiled { graph, inputs: tensors, output })
    }

    /// Destroys every graph's tensors (the context is the cell's, destroyed by it).
    pub fn release(&mut self) {
        for (_, c) in self.graphs.drain() {
            c.inputs.iter().for_each(|(_, t)| t.destroy());
            c.output.destroy();
        }
    }

    /// Releases every graph's tensors and gives the notes a cell records: what building noted,
    /// what was composed, and how many graphs were built in how long.
    pub fn finish(mut self) -> Vec<String> {
        self.release();
        let mut notes = std::mem::take(&mut self.notes);
        notes.push(format!("WebNN composes what it has no operator for: {}", COMPOSED.join("; ")));
        notes.push(format!("{} graphs built in {:.1} ms (part of the run)", self.built, self.build_ms));
        notes
    }
}

impl Backend for WebnnBackend<'_> {
    /// Graphs built and their milliseconds; what a context holds, WebNN does not say.
    fn footprint(&self) -> Footprint {
        Footprint { compiled: Some((self.built, self.build_ms)), ..Footprint::default() }
    }

    async fn linear(&mut self, x: &[f32], m: usize, l: &Linear) -> OpResult<Vec<f32>> {
        let x = pad_rows(x, m, l.k, l.q.k);
        let (n, k) = (l.n(), l.q.k);
        let key = format!("linear {} m={m}", l.name);
        self.run("linear", key, &[("x", &[m, k], &x)], &[m, n], |b, ins, notes| {
            let w = weight_operand(b, &l.q, "float32", notes).map_err(|f| JsValue::from_str(&f.message))?;
            let y = b.matmul(&ins[0], &w)?;
            match &l.bias {
                Some(bias) => b.call("add", &[y.into(), constant(b, &[n], bias)?.into()]),
                None => Ok(y),
            }
        })
        .await
    }

    async fn layer_norm(&mut self, x: &[f32], dim: usize, w: &NormWeights, eps: f64) -> OpResult<Vec<f32>> {
        let rows = x.len() / dim;
        let beta = w.beta.as_deref().expect("a layer norm has a bias");
        let key = format!("layer_norm {} rows={rows}", w.name);
        self.run("layer_norm", key, &[("x", &[rows, dim], x)], &[rows, dim], |b, ins, _| {
            let opts = object(&[
                ("scale", constant(b, &[dim], &w.gamma)?.into()),
                ("bias", constant(b, &[dim], beta)?.into()),
                ("axes", shape(&[1])),
                ("epsilon", (eps as f32).into()),
            ]);
            b.call("layerNormalization", &[js(&ins[0]), opts.into()])
        })
        .await
    }

    async fn rms_norm(&mut self, x: &[f32], dim: usize, w: &NormWeights, eps: f64) -> OpResult<Vec<f32>> {
        let rows = x.len() / dim;
        let key = format!("rms_norm {} rows={rows}", w.name);
        self.run("rms_norm", key, &[("x", &[rows, dim], x)], &[rows, dim], |b, ins, _| {
            let x: JsValue = js(&ins[0]);
            let sq = b.call("mul", &[x.clone(), x.clone()])?;
            let opts = object(&[("axes", shape(&[1])), ("keepDimensions", true.into())]);
            let ms = b.call("reduceMean", &[sq.into(), opts.into()])?;
            let ms = b.call("add", &[ms.into(), constant(b, &[1], &[eps as f32])?.into()])?;
            let rms = b.call("sqrt", &[ms.into()])?;
            let n = b.call("div", &[x, rms.into()])?;
            b.call("mul", &[n.into(), constant(b, &[dim], &w.gamma)?.into()])
        })
        .await
    }

    async fn gelu(&mut self, x: &[f32]) -> OpResult<Vec<f32>> {
        let n = x.len();
        self.run("gelu", format!("gelu {n}"), &[("x", &[n], x)], &[n], |b, ins, _| b.call("gelu", &[js(&ins[0])])).await
    }

    async fn swiglu(&mut self, gate: &[f32], up: &[f32]) -> OpResult<Vec<f32>> {
        let n = gate.len();
        let inputs: [(&str, &[usize], &[f32]); 2] = [("gate", &[n], gate), ("up", &[n], up)];
        self.run("swiglu", format!("swiglu {n}"), &inputs, &[n], |b, ins, _| {
            let g: JsValue = js(&ins[0]);
            let s = b.call("sigmoid", std::slice::from_ref(&g))?;
            let silu = b.call("mul", &[g, s.into()])?;
            b.call("mul", &[silu.into(), js(&ins[1])])
        })
        .await
    }

    async fn rope(&mut self, x: &[f32], width: usize, head_dim: usize, pos0: usize, base: f64) -> OpResult<Vec<f32>> {
        let (rows, half) = (x.len() / width, head_dim / 2);
        let heads = width / head_dim;
        let table = rope_table(rows, head_dim, pos0, base);
        let (cos, sin): (Vec<f32>, Vec<f32>) = table.iter().map(|[c, s]| (*c, *s)).unzip();
        let angles = [rows, 1, half, 1];
        let inputs: [(&str, &[usize], &[f32]); 3] =
            [("x", &[rows, width], x), ("cos", &angles, &cos), ("sin", &angles, &sin)];
        let key = format!("rope rows={rows} width={width} head={head_dim}");
        self.run("rope", key, &inputs, &[rows, width], |b, ins, _| {
            let pairs = [rows, heads, half, 1];
            let x4 = b.call("reshape", &[js(&ins[0]), shape(&[rows, heads, half, 2])])?;
            let even = b.call("slice", &[js(&x4), shape(&[0, 0, 0, 0]), shape(&pairs)])?;
            let odd = b.call("slice", &[x4.into(), shape(&[0, 0, 0, 1]), shape(&pairs)])?;
            let (c, s): (JsValue, JsValue) = (js(&ins[1]), js(&ins[2]));
            let mul = |a: &MLOperand, t: &JsValue| b.call("mul", &[js(a), t.clone()]);
            let new_even = b.call("sub", &[mul(&even, &c)?.into(), mul(&odd, &s)?.into()])?;
            let new_odd = b.call("add", &[mul(&even, &s)?.into(), mul(&odd, &c)?.into()])?;
            let both: Array = [JsValue::from(new_even), JsValue::from(new_odd)].into_iter().collect();
            let y = b.call("concat", &[both.into(), 3.into()])?;
            b.call("reshape", &[y.into(), shape(&[rows, width])])
        })
        .await
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
        let (qw, kw, d) = (h.q_width(), h.kv_width(), h.head_dim);
        let additive: Vec<f32> = (0..tq)
            .flat_map(|i| (0..tk).map(move |j| (i, j)))
            .map(|(i, j)| if mask.allows(i, j) { 0.0 } else { MASKED })
            .collect();
        let inputs: [(&str, &[usize], &[f32]); 4] =
            [("q", &[tq, qw], q), ("k", &[tk, kw], k), ("v", &[tk, kw], v), ("mask", &[tq, tk], &additive)];
        let key = format!("attention tq={tq} tk={tk} heads={}/{} d={d}", h.heads, h.kv_heads);
        let scale = (1.0 / (d as f64).sqrt()) as f32;
        self.run("attention", key, &inputs, &[tq, qw], |b, ins, _| {
            let reshape = |x: JsValue, s: &[usize]| b.call("reshape", &[x, shape(s)]);
            let transpose = |x: MLOperand, p: &[usize]| {
                b.call("transpose", &[x.into(), object(&[("permutation", shape(p))]).into()])
            };
            // Keys and values per query head: kv head `h / group` serves query head h.
            let per_head = |x: &MLOperand| -> Built {
                let group = h.heads / h.kv_heads;
                if group == 1 {
                    return reshape(js(x), &[tk, h.heads, d]);
                }
                let x = reshape(js(x), &[tk, h.kv_heads, 1, d])?;
                let x = b.call("expand", &[x.into(), shape(&[tk, h.kv_heads, group, d])])?;
                reshape(x.into(), &[tk, h.heads, d])
            };
            let qh = transpose(reshape(js(&ins[0]), &[tq, h.heads, d])?, &[1, 0, 2])?;
            let kt = transpose(per_head(&ins[1])?, &[1, 2, 0])?;
            let vh = transpose(per_head(&ins[2])?, &[1, 0, 2])?;
            let scores = b.matmul(&qh, &kt)?;
            let scores = b.call("mul", &[scores.into(), constant(b, &[1], &[scale])?.into()])?;
            let scores = b.call("add", &[scores.into(), js(&ins[3])])?;
            let p = b.call("softmax", &[scores.into(), 2.into()])?;
            let o = transpose(b.matmul(&p, &vh)?, &[1, 0, 2])?;
            reshape(o.into(), &[tq, qw])
        })
        .await
    }
}
