//! The llm family: a llama decoder (SmolLM2-135M) read from GGUF, with a KV cache.
//!
//! Per block: `x += O(attn(rope(Q n), rope(K n), V n))` with `n = rms(x)`, causal, grouped-query;
//! then `x += W_down(silu(W_gate n) * W_up n)` with `n = rms(x)`; finally `logits = head(rms(x))`.
//! Rotary embeddings rotate adjacent pairs (the GGUF converter permuted Q and K for that, see
//! [`super::ops::rope_adjacent`]). The output head is tied to the token embedding when the file
//! has no `output.weight`; it is still stored in the `lm_head` kind's format.

use super::attention::{Heads, KvCache, Mask};
use super::bert::add;
use super::exec::Backend;
use super::gguf::Gguf;
use super::linear::{Linear, ModelPrecision, ModelStorage, NormWeights};
use super::loading::{ready, Loading};
use super::ModelError;
use crate::quant::LayerKind;

/// The shape of the model, from the GGUF metadata (`llama.*`).
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub blocks: usize,
    pub dim: usize,
    pub ffn: usize,
    pub heads: Heads,
    pub rope_base: f64,
    pub eps: f64,
    pub vocab: usize,
}

impl LlamaConfig {
    pub fn from_gguf(file: &str, g: &Gguf) -> Result<LlamaConfig, ModelError> {
        let arch = g.meta("general.architecture")?.as_str().unwrap_or("?").to_string();
        if arch != "llama" {
            return Err(ModelError::Metadata {
                file: file.into(),
                key: "general.architecture".into(),
                why: format!("`{arch}`, webq runs `llama`"),
            });
        }
        let n = |key: &str| g.meta_f64(&format!("llama.{key}"));
        let (dim, heads, kv_heads) = (
            n("embedding_length")? as usize,
            n("attention.head_count")? as usize,
            n("attention.head_count_kv")? as usize,
        );
        if heads == 0 || kv_heads == 0 || dim % heads != 0 || heads % kv_heads != 0 {
            return Err(ModelError::Metadata {
                file: file.into(),
                key: "llama.attention.head_count".into(),
                why: format!("{heads} heads, {kv_heads} kv heads for dim {dim}"),
            });
        }
        let head_dim = dim / heads;
        if let Ok(r) = n("rope.dimension_count") {
            if r as usize != head_dim {
                return Err(ModelError::Metadata {
                    file: file.into(),
                    key: "llama.rope.dimension_count".into(),
                    why: format!("{r}: webq rotates whole heads of {head_dim}"),
                });
            }
        }
        Ok(LlamaConfig {
            blocks: n("block_count")? as usize,
            dim,
            ffn: n("feed_forward_length")? as usize,
            heads: Heads { heads, kv_heads, head_dim },
            rope_base: n("rope.freq_base").unwrap_or(10_000.0),
            eps: n("attention.layer_norm_rms_epsilon")?,
            vocab: g.info("token_embd.weight")?.dims.get(1).copied().unwrap_or(0) as usize,
        })
    }
}

struct Block {
    attn_norm: NormWeights,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ffn_norm: NormWeights,
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Block {
    fn matrices(&self) -> [&Linear; 7] {
        [&self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down]
    }
}

/// A llama decoder in one precision.
pub struct Llama {
    pub config: LlamaConfig,
    embed: Linear,
    blocks: Vec<Block>,
    out_norm: NormWeights,
    head: Linear,
    /// The head is the token embedding (no `output.weight` in the file).
    tied: bool,
    pub precision: String,
}

impl Llama {
    /// Reads the first `depth` blocks (all when `None`), the final norm and the output head, and
    /// stores them in `precision` (from the file's weights dequantized to f32).
    pub fn load(file: &str, g: &Gguf, precision: &ModelPrecision, depth: Option<usize>) -> Result<Llama, ModelError> {
        ready(Self::load_staged(file, g, precision, depth, &mut Loading::one_shot()))
    }

    /// As [`Llama::load`], stage by stage (the token embedding, each block, the final norm with
    /// the output head) through `loading`.
    pub async fn load_staged<B: Backend>(
        file: &str,
        g: &Gguf<'_>,
        precision: &ModelPrecision,
        depth: Option<usize>,
        loading: &mut Loading<'_, B>,
    ) -> Result<Llama, ModelError> {
        let config = LlamaConfig::from_gguf(file, g)?;
        let linear = |name: &str, tensor: &str, kind: LayerKind| -> Result<Linear, ModelError> {
            let info = g.info(tensor)?;
            let [k, n] = info.dims[..] else {
                return Err(ModelError::Tensor {
                    file: file.into(),
                    tensor: tensor.into(),
                    why: format!("dims {:?} are not 2-D", info.dims),
                });
            };
            Linear::new(file, name, kind, &g.dequantize(tensor)?, (n as usize, k as usize), None, precision)
        };
        let norm = |tensor: &str| -> Result<NormWeights, ModelError> {
            let w = g.dequantize(tensor)?;
            if w.len() != config.dim {
                return Err(ModelError::Tensor {
                    file: file.into(),
                    tensor: tensor.into(),
                    why: format!("{} weights for dim {}", w.len(), config.dim),
                });
            }
            Ok(NormWeights::new(tensor, &w, None))
        };
        let depth = depth.unwrap_or(config.blocks).min(config.blocks);
        loading.expect("llama", depth + 2);
        let embed = linear("token_embd.weight", "token_embd.weight", LayerKind::Embedding)?;
        // The embedding is looked up on the CPU: nothing of it goes to the device.
        loading.stage("token embedding".into(), None, &[]).await?;
        let head = if g.info("output.weight").is_ok() { "output.weight" } else { "token_embd.weight" };
        let (h, q) = (&config.heads, |l: &Linear| (l.n(), l.k));
        let mut blocks = Vec::with_capacity(depth);
        for i in 0..depth {
            let t = |s: &str| format!("blk.{i}.{s}.weight");
            let b = Block {
                attn_norm: norm(&t("attn_norm"))?,
                q: linear(&t("attn_q"), &t("attn_q"), LayerKind::Attention)?,
                k: linear(&t("attn_k"), &t("attn_k"), LayerKind::Attention)?,
                v: linear(&t("attn_v"), &t("attn_v"), LayerKind::Attention)?,
                o: linear(&t("attn_output"), &t("attn_output"), LayerKind::Attention)?,
                ffn_norm: norm(&t("ffn_norm"))?,
                gate: linear(&t("ffn_gate"), &t("ffn_gate"), LayerKind::Mlp)?,
                up: linear(&t("ffn_up"), &t("ffn_up"), LayerKind::Mlp)?,
                down: linear(&t("ffn_down"), &t("ffn_down"), LayerKind::Mlp)?,
            };
            let want = [(h.q_width(), config.dim), (h.kv_width(), config.dim), (config.dim, config.ffn)];
            if q(&b.q) != want[0] || q(&b.k) != want[1] || q(&b.down) != want[2] {
                return Err(ModelError::Tensor {
                    file: file.into(),
                    tensor: format!("blk.{i}"),
                    why: "shapes do not match the metadata".into(),
                });
            }
            loading.stage(format!("block {i}"), Some(i), &b.matrices()).await?;
            blocks.push(b);
        }
        let tied = head == "token_embd.weight";
        let policy = &precision.policy;
        // A tied head in the embedding's format is the same stored matrix: quantized once.
        let head = if tied && policy.format_for(LayerKind::LmHead) == policy.format_for(LayerKind::Embedding) {
            Linear { name: format!("{head} (output head)"), kind: LayerKind::LmHead, ..embed.clone() }
        } else {
            linear(&format!("{head} (output head)"), head, LayerKind::LmHead)?
        };
        let out_norm = norm("output_norm.weight")?;
        loading.stage("final norm and output head".into(), None, &[&head]).await?;
        Ok(Llama { embed, blocks, out_norm, head, tied, precision: precision.name().into(), config })
    }

    /// Hands every weight matrix to the backend before a run (see [`Backend::preload`]).
    pub async fn preload<B: Backend>(&self, exec: &mut B) -> Result<(), ModelError> {
        for b in &self.blocks {
            for m in b.matrices() {
                exec.preload(m).await?;
            }
        }
        exec.preload(&self.head).await
    }

    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.blocks.len(), self.config.heads.kv_width())
    }

    pub fn storage(&self) -> ModelStorage {
        let mut t = vec![self.embed.record()];
        for b in &self.blocks {
            t.push(b.attn_norm.record());
            t.extend([&b.q, &b.k, &b.v, &b.o].map(Linear::record));
            t.push(b.ffn_norm.record());
            t.extend([&b.gate, &b.up, &b.down].map(Linear::record));
        }
        t.push(self.out_norm.record());
        t.push(if self.tied { self.head.tied_record(&self.embed) } else { self.head.record() });
        ModelStorage::new(&self.precision, t)
    }

    /// Runs `tokens` at the positions after those in `cache` (a prefill when it is empty, a decode
    /// step for one token), appends their keys and values, and returns their logits
    /// (`tokens.len() x vocab`).
    pub async fn forward<B: Backend>(
        &self,
        exec: &mut B,
        tokens: &[u32],
        cache: &mut KvCache,
    ) -> Result<Vec<f32>, ModelError> {
        let (dim, t, pos0, eps) = (self.config.dim, tokens.len(), cache.len(), self.config.eps);
        let h = self.config.heads;
        let mut x = Vec::with_capacity(t * dim);
        for &id in tokens {
            if id as usize >= self.embed.n() {
                return Err(ModelError::Input {
                    why: format!("token id {id} is outside the vocabulary of {}", self.embed.n()),
                });
            }
            x.extend(self.embed.row(id as usize));
        }
        for (i, b) in self.blocks.iter().enumerate() {
            let n = exec.rms_norm(&x, dim, &b.attn_norm, eps).await?;
            let (q, k, v) =
                (exec.linear(&n, t, &b.q).await?, exec.linear(&n, t, &b.k).await?, exec.linear(&n, t, &b.v).await?);
            let q = exec.rope(&q, h.q_width(), h.head_dim, pos0, self.config.rope_base).await?;
            let k = exec.rope(&k, h.kv_width(), h.head_dim, pos0, self.config.rope_base).await?;
            exec.cache_append(cache, i, &k, &v);
            let (ks, vs) = cache.layer(i);
            let a = exec.attention(&q, ks, vs, t, pos0 + t, h, Mask::Causal { offset: pos0 }).await?;
            x = add(&x, &exec.linear(&a, t, &b.o).await?);
            let n = exec.rms_norm(&x, dim, &b.ffn_norm, eps).await?;
            let (gate, up) = (exec.linear(&n, t, &b.gate).await?, exec.linear(&n, t, &b.up).await?);
            let s = exec.swiglu(&gate, &up).await?;
            x = add(&x, &exec.linear(&s, t, &b.down).await?);
        }
        let n = exec.rms_norm(&x, dim, &self.out_norm, eps).await?;
        exec.linear(&n, t, &self.head).await
    }
}
