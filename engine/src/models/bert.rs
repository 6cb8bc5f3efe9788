//! The text family: a BERT encoder (all-MiniLM-L6-v2) with sentence-transformers' pooling.
//!
//! `embeddings = LN(word[id] + position[i] + token_type[0])`, then per layer
//! `h = LN(x + O(attn(Q x, K x, V x)))`, `x = LN(h + W2 gelu(W1 h))` (post-norm, erf GELU),
//! then the mean of the unpadded tokens, L2-normalized.

use serde::Deserialize;

use super::attention::{Heads, Mask};
use super::exec::Backend;
use super::linear::{Linear, ModelPrecision, ModelStorage, NormWeights};
use super::loading::{ready, Loading};
use super::ops::mean_pool_normalized;
use super::safetensors::Safetensors;
use super::ModelError;
use crate::quant::LayerKind;

/// The fields of the model's `config.json` that the forward pass needs.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct BertConfig {
    pub num_hidden_layers: usize,
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub layer_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub hidden_act: String,
}

impl BertConfig {
    pub fn parse(file: &str, json: &str) -> Result<BertConfig, ModelError> {
        let c: BertConfig = serde_json::from_str(json).map_err(|e| ModelError::Format {
            file: file.into(),
            format: "BERT config.json",
            why: e.to_string(),
        })?;
        if c.hidden_act != "gelu" || c.hidden_size % c.num_attention_heads != 0 {
            return Err(ModelError::Format {
                file: file.into(),
                format: "BERT config.json",
                why: format!(
                    "hidden_act `{}` (webq runs erf `gelu`), {} heads of {}",
                    c.hidden_act, c.num_attention_heads, c.hidden_size
                ),
            });
        }
        Ok(c)
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attn_norm: NormWeights,
    up: Linear,
    down: Linear,
    out_norm: NormWeights,
}

impl Layer {
    fn matrices(&self) -> [&Linear; 6] {
        [&self.q, &self.k, &self.v, &self.o, &self.up, &self.down]
    }
}

/// A BERT encoder in one precision.
pub struct Bert {
    pub config: BertConfig,
    word: Linear,
    position: Linear,
    token_type: Linear,
    emb_norm: NormWeights,
    layers: Vec<Layer>,
    pub precision: String,
}

impl Bert {
    /// Reads the first `depth` layers (all when `None`) and stores them in `precision`, in one shot.
    pub fn load(
        file: &str,
        st: &Safetensors,
        config: BertConfig,
        precision: &ModelPrecision,
        depth: Option<usize>,
    ) -> Result<Bert, ModelError> {
        ready(Self::load_staged(file, st, config, precision, depth, &mut Loading::one_shot()))
    }

    /// As [`Bert::load`], stage by stage (the embeddings, then each layer) through `loading`.
    pub async fn load_staged<B: Backend>(
        file: &str,
        st: &Safetensors<'_>,
        config: BertConfig,
        precision: &ModelPrecision,
        depth: Option<usize>,
        loading: &mut Loading<'_, B>,
    ) -> Result<Bert, ModelError> {
        let h = config.hidden_size;
        let linear = |name: &str, kind: LayerKind, bias: bool| -> Result<Linear, ModelError> {
            let shape = st.shape(&format!("{name}.weight"))?;
            let [n, k] = shape[..] else {
                return Err(ModelError::Tensor {
                    file: file.into(),
                    tensor: name.into(),
                    why: format!("shape {shape:?} is not 2-D"),
                });
            };
            let b = if bias { Some(st.f32s(&format!("{name}.bias"))?) } else { None };
            Linear::new(file, name, kind, &st.f32s(&format!("{name}.weight"))?, (n, k), b.as_deref(), precision)
        };
        let norm = |name: &str| -> Result<NormWeights, ModelError> {
            let (g, b) = (st.f32s(&format!("{name}.weight"))?, st.f32s(&format!("{name}.bias"))?);
            if g.len() != h || b.len() != h {
                return Err(ModelError::Tensor {
                    file: file.into(),
                    tensor: name.into(),
                    why: format!("{} weights for hidden size {h}", g.len()),
                });
            }
            Ok(NormWeights::new(name, &g, Some(&b)))
        };
        let depth = depth.unwrap_or(config.num_hidden_layers).min(config.num_hidden_layers);
        loading.expect("bert", depth + 1);
        let word = linear("embeddings.word_embeddings", LayerKind::Embedding, false)?;
        let position = linear("embeddings.position_embeddings", LayerKind::Embedding, false)?;
        let token_type = linear("embeddings.token_type_embeddings", LayerKind::Embedding, false)?;
        let emb_norm = norm("embeddings.LayerNorm")?;
        // The embeddings are looked up on the CPU: nothing of them goes to the device.
        loading.stage("embeddings".into(), None, &[]).await?;
        let mut layers = Vec::with_capacity(depth);
        for i in 0..depth {
            let p = format!("encoder.layer.{i}");
            let l = Layer {
                q: linear(&format!("{p}.attention.self.query"), LayerKind::Attention, true)?,
                k: linear(&format!("{p}.attention.self.key"), LayerKind::Attention, true)?,
                v: linear(&format!("{p}.attention.self.value"), LayerKind::Attention, true)?,
                o: linear(&format!("{p}.attention.output.dense"), LayerKind::Attention, true)?,
                attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                up: linear(&format!("{p}.intermediate.dense"), LayerKind::Mlp, true)?,
                down: linear(&format!("{p}.output.dense"), LayerKind::Mlp, true)?,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
            };
            loading.stage(format!("layer {i}"), Some(i), &l.matrices()).await?;
            layers.push(l);
        }
        Ok(Bert { word, position, token_type, emb_norm, layers, precision: precision.name().into(), config })
    }

    /// Hands every weight matrix to the backend before a run (see [`Backend::preload`]).
    pub async fn preload<B: Backend>(&self, exec: &mut B) -> Result<(), ModelError> {
        for l in &self.layers {
            for m in l.matrices() {
                exec.preload(m).await?;
            }
        }
        Ok(())
    }

    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    pub fn storage(&self) -> ModelStorage {
        let mut t = vec![self.word.record(), self.position.record(), self.token_type.record(), self.emb_norm.record()];
        for l in &self.layers {
            t.extend([&l.q, &l.k, &l.v, &l.o].map(Linear::record));
            t.push(l.attn_norm.record());
            t.extend([&l.up, &l.down].map(Linear::record));
            t.push(l.out_norm.record());
        }
        ModelStorage::new(&self.precision, t)
    }

    /// The last hidden states of a padded batch (`ids[b]` and `mask[b]` all of one length `t`),
    /// row-major `(b * t) x hidden`. Errors on an id outside the vocabulary.
    pub async fn hidden_states<B: Backend>(
        &self,
        exec: &mut B,
        ids: &[Vec<u32>],
        mask: &[Vec<u32>],
    ) -> Result<Vec<f32>, ModelError> {
        let (h, b) = (self.config.hidden_size, ids.len());
        let t = ids.first().map_or(0, Vec::len);
        if ids.iter().chain(mask).any(|r| r.len() != t) || mask.len() != b || t > self.position.n() {
            return Err(ModelError::Input {
                why: format!("a batch of {b} rows of {t} ids and masks (at most {} positions)", self.position.n()),
            });
        }
        let mut x = Vec::with_capacity(b * t * h);
        let types = self.token_type.row(0);
        for row in ids {
            for (pos, &id) in row.iter().enumerate() {
                if id as usize >= self.word.n() {
                    return Err(ModelError::Input {
                        why: format!("token id {id} is outside the vocabulary of {}", self.word.n()),
                    });
                }
                let (w, p) = (self.word.row(id as usize), self.position.row(pos));
                x.extend(w.iter().zip(&p).zip(&types).map(|((a, b), c)| a + b + c));
            }
        }
        let (eps, hs) = (self.config.layer_norm_eps, h);
        let mut x = exec.layer_norm(&x, hs, &self.emb_norm, eps).await?;
        let heads = Heads {
            heads: self.config.num_attention_heads,
            kv_heads: self.config.num_attention_heads,
            head_dim: h / self.config.num_attention_heads,
        };
        let m = b * t;
        for l in &self.layers {
            let q = exec.linear(&x, m, &l.q).await?;
            let k = exec.linear(&x, m, &l.k).await?;
            let v = exec.linear(&x, m, &l.v).await?;
            let mut ctx = Vec::with_capacity(m * h);
            for (s, sm) in mask.iter().enumerate() {
                let rows = s * t * h..(s + 1) * t * h;
                let (qs, ks, vs) = (&q[rows.clone()], &k[rows.clone()], &v[rows]);
                ctx.extend(exec.attention(qs, ks, vs, t, t, heads, Mask::Padding(sm)).await?);
            }
            let o = exec.linear(&ctx, m, &l.o).await?;
            let hid = exec.layer_norm(&add(&x, &o), hs, &l.attn_norm, eps).await?;
            let f = exec.linear(&hid, m, &l.up).await?;
            let f = exec.gelu(&f).await?;
            let f = exec.linear(&f, m, &l.down).await?;
            x = exec.layer_norm(&add(&hid, &f), hs, &l.out_norm, eps).await?;
        }
        Ok(x)
    }

    /// Sentence embeddings (mean pooling over the mask, L2-normalized), one per row of the batch.
    pub async fn embed<B: Backend>(
        &self,
        exec: &mut B,
        ids: &[Vec<u32>],
        mask: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let h = self.config.hidden_size;
        let x = self.hidden_states(exec, ids, mask).await?;
        let t = ids.first().map_or(0, Vec::len);
        Ok(mask.iter().enumerate().map(|(s, m)| mean_pool_normalized(&x[s * t * h..(s + 1) * t * h], h, m)).collect())
    }
}

/// The residual add.
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}
